//! `protect_range`: count the splits, take their tables, then rewrite every leaf in place.

use super::super::chunk::{address_bits, entry_span};
use super::super::entry::Slot;
use super::super::reserve::Reserve;
use super::super::visit::{Chunk, Step, Visitor};
use super::split::CountSplits;
use super::{broken, map_to_protect, size_of, LeafEncoder, PageTable, Span};
use crate::arch::{Arch, Entry};
use crate::{
    Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, ProtectError, RangeError,
    Tlb, VirtAddr, ENTRIES,
};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Gives every mapping in `va .. va + len` the attributes `attrs` (keeping frames and
    /// Accessed/Dirty), splitting huge pages that straddle its ends; holes are skipped. Uses
    /// break-before-make where the architecture requires it; lifts upper-level restrictions
    /// as [`map`](Self::map) does.
    ///
    /// Fails, changing nothing, on invalid input or if frames for the splits run out.
    ///
    /// # Safety
    ///
    /// As for [`update_flags`](Self::update_flags), for every page of the range.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, VirtAddr};
    ///
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let va = VirtAddr::new(0x20_0000);
    /// let mut g = pt.gather();
    /// unsafe { pt.map_range(va, PhyAddr::new(0x40_0000), 0x20_0000, Flags::RW, RangeOptions::default(), &mut g) }.unwrap();
    /// unsafe { pt.protect_range(VirtAddr::new(0x20_3000), 0x1000, Flags::RO, &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(pt.translate(VirtAddr::new(0x20_3000)).unwrap().attrs.flags, Flags::RO);
    /// assert_eq!(pt.translate(VirtAddr::new(0x20_4000)).unwrap().attrs.flags, Flags::RW);
    /// ```
    pub unsafe fn protect_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        gather: &mut Gather,
    ) -> Result<(), RangeError<ProtectError>> {
        let attrs = attrs.into();
        let fail = |error| RangeError { at: va, error };
        if gather.root != self.root {
            return Err(fail(ProtectError::InvalidPageTable));
        }
        attrs.validate(self.policy).map_err(|e| fail(e.into()))?;
        let span = self.span(va, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut count = CountSplits {
            tables: 0,
            span,
            skip_whole: false,
        };
        let conv = |pt: &Self, e: RangeError<MapError>| RangeError {
            at: pt.va_at(e.at.as_u64()),
            error: map_to_protect(e.error),
        };
        self.walk_range(span.start, span.end, &mut count)
            .map_err(|e| conv(self, e))?;
        let reserve = Reserve::take(&self.arch, &self.mem, &mut self.frames, count.tables)
            .map_err(|e| fail(map_to_protect(e)))?;
        let mut op = ProtectOp {
            span,
            attrs,
            reserve,
            gather,
        };
        // The rewrite loops stop recording pages once the gather flushes everything: the
        // whole range stands for them.
        op.gather.invalidate_span(va, len, false);
        let r = self.walk_range(span.start, span.end, &mut op);
        let leftover = core::mem::take(&mut op.reserve);
        leftover.give_back(&self.mem, &mut self.frames);
        r.map_err(|e| conv(self, e))
    }
}

/// Pass 2 of `protect_range`.
struct ProtectOp<'g> {
    span: Span,
    attrs: Attrs,
    reserve: Reserve,
    gather: &'g mut Gather,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<PageTable<A, M, F, T>>
    for ProtectOp<'_>
{
    type Error = RangeError<MapError>;

    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        match c.entry {
            Entry::Invalid => Ok(Step::Next),
            // A block the range covers whole: it and the siblings after it in one loop.
            Entry::Leaf(_) if c.level > 0 && c.piece.whole(c.level) => {
                let (first, last, table_base, partial_last) = run_bounds(c, self.span);
                let table = c.slot.table();
                let Some(base) = pt.mem.frame_ptr(table) else {
                    return Err(broken(c.piece.start, false));
                };
                // SAFETY: `mem` reaches `table` at `base` (it holds the entry just visited).
                let run = Run {
                    table,
                    base: base.cast(),
                    level: c.level,
                    range: first..last,
                    table_base,
                    partial_last,
                };
                let stop = unsafe { self.rewrite_run(pt, run) }?;
                // The first entry (a whole leaf) is always handled.
                Ok(Step::Skip(stop.saturating_sub(first + 1)))
            }
            Entry::Leaf(frame) if c.piece.whole(c.level) => {
                let leaf = Leaf {
                    slot: c.slot,
                    raw: c.raw,
                    level: c.level,
                    frame,
                    base: c.piece.base,
                };
                protect_leaf(pt, self.gather, self.span, self.attrs, leaf);
                Ok(Step::Next)
            }
            Entry::Leaf(_) => {
                let table = pt
                    .split(c, Some(self.attrs), &mut self.reserve, self.gather)
                    .ok_or(broken(c.piece.start, false))?;
                Ok(Step::Into(table))
            }
            Entry::Table(next) => {
                if pt.arch.table_limits(c.raw, c.level).blocks(self.attrs) {
                    pt.lift_limits(c.slot, c.raw, c.level, next, self.attrs);
                    self.gather
                        .invalidate(pt.va_at(c.piece.base), PageSize::Size4K, true);
                }
                Ok(Step::Into(next))
            }
        }
    }

    /// A table of 4 KiB leaves: one loop over its entries in the range, run by run of the
    /// contiguous hint (whether the range covers a run is decided once per run), each entry
    /// rewritten through the memoized [`Rewrite`].
    #[inline(always)]
    fn leaf_table(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        c: &Chunk,
        child: PhyAddr,
    ) -> Option<Result<(), Self::Error>> {
        let base = pt.mem.frame_ptr(child)?.cast::<u64>();
        let first = ((c.piece.start >> 12) & 0x1ff) as usize;
        let last = first + ((c.piece.end - c.piece.start) >> 12) as usize;
        // SAFETY: `mem` reaches `child` at `base`, a live table of this tree.
        let run = Run {
            table: child,
            base,
            level: 0,
            range: first..last,
            table_base: c.piece.base,
            partial_last: false,
        };
        let r = unsafe { self.rewrite_run(pt, run) };
        Some(r.map(|_| ()))
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}

impl ProtectOp<'_> {
    /// Rewrites the entries of `run` (see [`Run`]), run by run of the contiguous hint: the
    /// common case (a leaf whose rewrite keeps its frame and needs no break-before-make) in
    /// line, through the memoized [`Rewrite`]; everything else through [`protect_leaf`].
    /// Stops at the first entry that is not a leaf or a hole (a table below `level`, or the
    /// last entry if `run.partial_last`: the range covers it in part) and returns its index;
    /// `run.range.end` if it handled them all.
    /// A table entry at level 0 is an error (the walker would refuse it the same way).
    ///
    /// # Safety
    ///
    /// `run.base` is what `pt.mem` returned for `run.table`, a live table of this tree;
    /// `run.range` lies in `0..512`.
    #[inline(always)]
    unsafe fn rewrite_run<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        run: Run,
    ) -> Result<usize, RangeError<MapError>> {
        let Run {
            table,
            base,
            level,
            range,
            table_base,
            partial_last,
        } = run;
        // Copies: the loop's atomic stores would otherwise make the compiler reload them.
        let (arch, span, attrs) = (pt.arch, self.span, self.attrs);
        let hw = arch.hardware_updates_entries();
        let rw = Rewrite::new(arch, level, attrs);
        let addr = rw.addr;
        // The memo, in registers: an entry whose non-address bits are `key` becomes
        // `(raw & addr) | bits`, atomically if `atomic` (the hardware may still write it:
        // decided by its non-address bits too); `key == addr` matches no entry.
        let (mut key, mut bits, mut atomic) = (addr, 0, hw);
        // Runs of the contiguous hint (a power of two); without one, the whole table is one
        // run (no entry is hinted, so whether a run is covered never matters).
        let (hint, hinted) = arch
            .contiguous_hint(level)
            .map_or((0, ENTRIES), |h| (h.bit, h.entries));
        debug_assert!(hinted.is_power_of_two());
        let shift = 12 + 9 * u32::from(level);
        let last = range.end;
        // Whether the gather already invalidates everything.
        let mut all = self.gather.flushes_all();
        let mut i = range.start;
        while i < last {
            let n = (hinted - (i & (hinted - 1))).min(last - i);
            // The whole run lies in the range (the range covers this table's part of it): a
            // hinted leaf keeps its hint only then.
            let covered = n == hinted;
            if !covered && key & hint != 0 {
                key = addr;
            }
            let end = i + n;
            // The last entry may be covered in part: never in the tight loop.
            let tight_end = if partial_last { end.min(last - 1) } else { end };
            let mut next = i;
            while next < end {
                // The common case, tight: entries equal to the memo's outside the address
                // bits, written with plain stores, the gather already invalidating everything.
                if all && !atomic {
                    while next < tight_end {
                        // SAFETY: `base` reaches `table` (caller); next < 512.
                        let slot = unsafe { Slot::new(table, base, next) };
                        let raw = slot.load();
                        if raw & !addr != key {
                            break;
                        }
                        slot.store(&pt.mem, raw, (raw & addr) | bits);
                        next += 1;
                    }
                    if next == end {
                        break;
                    }
                }
                let i = next;
                next += 1;
                // SAFETY: `base` reaches `table` (caller); i < 512.
                let slot = unsafe { Slot::new(table, base, i) };
                let mut raw = slot.load();
                let at = table_base + ((i as u64) << shift);
                // A leaf the range covers in part (only the last entry of a level above 0).
                if partial_last && i + 1 == last && raw != 0 {
                    return Ok(i);
                }
                loop {
                    if raw & !addr != key {
                        let out = if raw & hint == 0 || covered {
                            rw.compute(raw)
                        } else {
                            Out::Slow
                        };
                        match out {
                            Out::Skip => break,
                            Out::Bits(b) => {
                                (key, bits) = (raw & !addr, b);
                                atomic = hw && arch.hardware_may_write(raw, level);
                            }
                            Out::Slow => {
                                match arch.decode(raw, level) {
                                    Entry::Invalid => {}
                                    Entry::Leaf(frame) => {
                                        let leaf = Leaf {
                                            slot,
                                            raw,
                                            level,
                                            frame,
                                            base: at,
                                        };
                                        protect_leaf(pt, self.gather, span, attrs, leaf);
                                        all = self.gather.flushes_all();
                                    }
                                    Entry::Table(_) if level > 0 => return Ok(i),
                                    // No table below level 0: the walker would refuse it the
                                    // same way.
                                    Entry::Table(_) => return Err(broken(at, false)),
                                }
                                break;
                            }
                        }
                    }
                    let new = (raw & addr) | bits;
                    if atomic {
                        // The hardware may set Accessed/Dirty meanwhile: retry on the value it
                        // left.
                        if let Err(now) = slot.replace(&pt.mem, raw, new) {
                            raw = now;
                            continue;
                        }
                    } else {
                        slot.store(&pt.mem, raw, new);
                    }
                    if !all {
                        self.gather.invalidate(pt.va_at(at), size_of(level), false);
                        all = self.gather.flushes_all();
                    }
                    break;
                }
            }
            i += n;
        }
        Ok(last)
    }
}

/// Entries of one table that [`ProtectOp::rewrite_run`] rewrites.
struct Run {
    /// The table.
    table: PhyAddr,
    /// Where `mem` reaches it.
    base: core::ptr::NonNull<u64>,
    /// The level of its entries.
    level: u8,
    /// The entries.
    range: core::ops::Range<usize>,
    /// Table bits of the table's first byte.
    table_base: u64,
    /// Whether the range covers the last of them in part.
    partial_last: bool,
}

/// For a whole entry `c` of a level above 0: its index, the end of the range's entries in its
/// table, the table bits of the table's first byte, and whether the last of those entries is
/// covered in part.
pub(super) fn run_bounds(c: &Chunk, span: Span) -> (usize, usize, u64, bool) {
    let size = entry_span(c.level);
    let first = c.slot.index();
    let table_base = c.piece.base - first as u64 * size;
    let end = span.end.min(table_base + ENTRIES as u64 * size);
    let last = (end - table_base).div_ceil(size) as usize;
    (first, last, table_base, end & (size - 1) != 0)
}

/// What protect does to one leaf at a level, decided once per distinct non-address state of
/// the entries it meets (the caller keeps the last answer): the entries of one mapping differ only in their output address, so
/// the decode, the encode and the break-before-make test run once per run of equal
/// attributes, not once per entry. The memo holds because every format's `decode`,
/// `leaf_entry`, `keep_hardware_bits` and `needs_break_before_make` pass the output-address
/// bits through untouched (the conformance check
/// [`address_transparency`](crate::conformance::address_transparency) pins this per backend),
/// and [`Rewrite::compute`] still checks, for the entry it is computed from, that the new entry
/// keeps the address bits exactly.
struct Rewrite<A: Arch> {
    arch: A,
    enc: LeafEncoder<A>,
    level: u8,
    soft: u64,
    hint: u64,
    /// The output-address bits of a leaf at `level` (bits `12 + 9 × level .. pa_bits`).
    addr: u64,
}

/// [`Rewrite`]'s answer for an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    /// Not a mapping: nothing to do.
    Skip,
    /// Anything else: a table entry, a change that needs break-before-make or would move the
    /// frame, a hinted leaf of a run the range covers in part.
    Slow,
    /// The new entry is `(raw & addr) | bits`, written over `raw` in place.
    Bits(u64),
}

impl<A: Arch> Rewrite<A> {
    #[inline(always)]
    fn new(arch: A, level: u8, attrs: Attrs) -> Self {
        let addr = address_bits(arch.pa_bits(), level);
        Rewrite {
            arch,
            enc: LeafEncoder::new(arch, level, attrs),
            level,
            soft: arch.software_bit(),
            hint: arch.contiguous_hint(level).map_or(0, |h| h.bit),
            addr,
        }
    }

    /// The answer for `raw` (a hinted `raw` only where the range covers its whole run); the
    /// caller keeps it for every entry equal to `raw` outside the address bits.
    #[inline(never)]
    fn compute(&self, raw: u64) -> Out {
        let frame = match self.arch.decode(raw, self.level) {
            Entry::Invalid => return Out::Skip,
            Entry::Table(_) => return Out::Slow,
            Entry::Leaf(frame) => frame,
        };
        // A whole run changing permissions only keeps its hint.
        let keep = raw & self.hint;
        let new = self.enc.leaf(frame) | (raw & self.soft);
        if self
            .arch
            .needs_break_before_make(raw & !keep, new, self.level)
        {
            return Out::Slow;
        }
        let new = self.arch.keep_hardware_bits(raw, new | keep);
        if (new ^ raw) & self.addr != 0 {
            return Out::Slow;
        }
        Out::Bits(new & !self.addr)
    }
}

/// A leaf the range covers whole.
#[derive(Clone, Copy)]
struct Leaf {
    slot: Slot,
    /// What it held when read.
    raw: u64,
    level: u8,
    frame: PhyAddr,
    /// Table bits of its first byte.
    base: u64,
}

/// Gives `leaf` the attributes `attrs` (inside the range `span`), recording its invalidation in
/// `gather`. A hinted run keeps its hint only if the range covers all of it and the change
/// needs no break-before-make; otherwise the run is unhinted first. A change that needs
/// break-before-make breaks, invalidates, then makes; any other is one atomic update where the
/// hardware writes entries (keeping its Accessed/Dirty), else one store over the value read.
#[inline(always)]
fn protect_leaf<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    pt: &mut PageTable<A, M, F, T>,
    gather: &mut Gather,
    span: Span,
    attrs: Attrs,
    leaf: Leaf,
) {
    let Leaf {
        slot,
        mut raw,
        level,
        frame,
        base,
    } = leaf;
    let arch = pt.arch;
    // The software bit (a copy-on-write mark) is the page's state, not an attribute.
    let mut new = arch.leaf_entry(frame, level, attrs) | (raw & arch.software_bit());
    let hint = arch.contiguous_hint(level).map_or(0, |h| h.bit);
    if raw & hint != 0 {
        // A whole run changing permissions only keeps its hint (each entry is rewritten in
        // place; the gather's flush settles the TLB); anything else unhints the run first.
        let keep = pt.run_covered(level, base, span.start, span.end)
            && !arch.needs_break_before_make(raw & !hint, new, level);
        if keep {
            new |= hint;
        } else {
            raw = pt.unhint(slot, raw, level, pt.va_at(base));
        }
    }
    let hw = arch.hardware_may_write(raw, level);
    if arch.needs_break_before_make(raw, new, level) {
        let page = pt.va_at(base);
        let old = slot.clear(&pt.mem, hw, raw);
        pt.tlb.flush_leaf(page);
        slot.store(&pt.mem, 0, arch.keep_hardware_bits(old, new));
    } else if hw {
        slot.update(&pt.mem, |old| arch.keep_hardware_bits(old, new));
    } else {
        // Nothing else writes the entry: the value read is still current.
        slot.store(&pt.mem, raw, arch.keep_hardware_bits(raw, new));
    }
    if !gather.flushes_all() {
        gather.invalidate(pt.va_at(base), size_of(level), false);
    }
}
