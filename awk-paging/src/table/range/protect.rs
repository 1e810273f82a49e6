//! `protect_range`: count the splits, take their tables, then rewrite every leaf in place.

use super::super::entry::Slot;
use super::super::reserve::Reserve;
use super::super::visit::{Chunk, Step, Visitor};
use super::split::CountSplits;
use super::{broken, map_to_protect, size_of, LeafEncoder, PageTable, Span};
use crate::arch::{Arch, Entry};
use crate::{
    Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, ProtectError, RangeError,
    Tlb, VirtAddr,
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

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<A, M, F, T> for ProtectOp<'_> {
    type Error = RangeError<MapError>;

    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        match c.entry {
            Entry::Invalid => Ok(Step::Next),
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
    /// contiguous hint (whether the range covers a run is decided once per run).
    #[inline(always)]
    fn leaf_table(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        c: &Chunk,
        child: PhyAddr,
    ) -> Option<Result<(), Self::Error>> {
        let base = pt.mem.frame_ptr(child)?.cast::<u64>();
        // Copies: the loop's atomic stores would otherwise make the compiler reload them.
        let (arch, span, attrs) = (pt.arch, self.span, self.attrs);
        let hw = arch.hardware_updates_entries();
        let enc = LeafEncoder::new(arch, 0, attrs);
        let soft = arch.software_bit();
        let (hint, run) = arch
            .contiguous_hint(0)
            .map_or((0, 1), |h| (h.bit, h.entries));
        let first = ((c.piece.start >> 12) & 0x1ff) as usize;
        let last = first + ((c.piece.end - c.piece.start) >> 12) as usize;
        let mut i = first;
        while i < last {
            let n = (run - i % run).min(last - i);
            // The whole run lies in the range (the range covers this table's part of it).
            let covered = n == run;
            for i in i..i + n {
                // SAFETY: `mem` reaches `child` at `base` (a live table of this tree); i < 512.
                let slot = unsafe { Slot::new(child, base, i) };
                let raw = slot.load();
                let bits = c.piece.base + ((i as u64) << 12);
                let frame = match arch.decode(raw, 0) {
                    Entry::Invalid => continue,
                    Entry::Leaf(frame) => frame,
                    // No table below level 0: the walker would refuse it the same way.
                    Entry::Table(_) => return Some(Err(broken(bits, false))),
                };
                // The software bit (a copy-on-write mark) is the page's state, not an attribute.
                let new = enc.leaf(frame) | (raw & soft);
                // The common cases in line: a permission change written in place (an unhinted
                // leaf, or one of a run the range covers whole, which keeps its hint).
                let keep = if raw & hint == 0 { 0 } else { hint };
                if !hw
                    && (keep == 0 || covered)
                    && !arch.needs_break_before_make(raw & !keep, new, 0)
                {
                    slot.store(&pt.mem, raw, arch.keep_hardware_bits(raw, new | keep));
                    if !self.gather.flushes_all() {
                        self.gather
                            .invalidate(pt.va_at(bits), PageSize::Size4K, false);
                    }
                    continue;
                }
                let leaf = Leaf {
                    slot,
                    raw,
                    level: 0,
                    frame,
                    base: bits,
                };
                protect_leaf(pt, self.gather, span, attrs, leaf);
            }
            i += n;
        }
        Some(Ok(()))
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
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
    let hw = arch.hardware_updates_entries();
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
