//! `protect_range`: count the splits, take their tables, then rewrite every leaf in place.

use super::super::reserve::Reserve;
use super::super::visit::{Chunk, Step, Visitor};
use super::split::CountSplits;
use super::{broken, map_to_protect, size_of, PageTable, Span};
use crate::arch::{Arch, Entry};
use crate::{
    Attrs, FrameAllocator, Gather, MapError, PageSize, PhysMem, ProtectError, RangeError, Tlb,
    VirtAddr,
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
                let hw = pt.arch.hardware_updates_entries();
                let mut new = pt.arch.leaf_entry(frame, c.level, self.attrs);
                let page = pt.va_at(c.piece.base);
                let hint = pt.arch.contiguous_hint(c.level).map_or(0, |h| h.bit);
                let mut raw = c.raw;
                if raw & hint != 0 {
                    // A whole run changing permissions only keeps its hint (each entry is
                    // rewritten in place; the gather's flush settles the TLB); anything else
                    // unhints the run first.
                    let keep =
                        pt.run_covered(c.level, c.piece.base, self.span.start, self.span.end)
                            && !pt.arch.needs_break_before_make(raw & !hint, new, c.level);
                    if keep {
                        new |= hint;
                    } else {
                        raw = pt.unhint(c.slot, raw, c.level, page);
                    }
                }
                if pt.arch.needs_break_before_make(raw, new, c.level) {
                    let old = c.slot.clear(&pt.mem, hw, raw);
                    pt.tlb.flush_leaf(page);
                    c.slot
                        .store(&pt.mem, 0, pt.arch.keep_hardware_bits(old, new));
                } else {
                    c.slot
                        .modify(&pt.mem, hw, |old| pt.arch.keep_hardware_bits(old, new));
                }
                self.gather.invalidate(page, size_of(c.level), false);
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

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}
