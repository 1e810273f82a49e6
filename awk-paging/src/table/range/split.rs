//! Splitting a huge page the range covers in part (break-before-make where required), and the
//! read-only pass that counts the tables splits will need.

use super::super::chunk::{address_bits, entry_span, split_tables};
use super::super::entry::Slot;
use super::super::reserve::Reserve;
use super::super::visit::{Chunk, Step, Visitor};
use super::protect::run_bounds;
use super::{broken, size_of, PageTable, Span};
use crate::arch::{Arch, Entry};
use crate::{Attrs, FrameAllocator, Gather, MapError, PhyAddr, PhysMem, RangeError, Tlb, ENTRIES};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Replaces the leaf in `c` (partly covered by the range) by a table of equivalent
    /// smaller leaves taken from `reserve`, and returns that table. AArch64 (and any format
    /// that needs it): break-before-make — the leaf is made invalid and invalidated first, so
    /// the range is briefly unmapped. x86: the table replaces the leaf in one store; the old
    /// huge page is invalidated through `gather` (with walk caches).
    ///
    /// `then` is what a leaf below will be changed to, so the new table entry permits it
    /// (x86: U/S for a user page); the split leaves themselves keep the old attributes.
    pub(super) fn split(
        &mut self,
        c: &Chunk,
        then: Option<Attrs>,
        reserve: &mut Reserve,
        gather: &mut Gather,
    ) -> Option<PhyAddr> {
        let Entry::Leaf(frame) = c.entry else {
            return None;
        };
        let (table, ptr) = reserve.pop(&self.mem)?;
        let block_va = self.va_at(c.piece.base);
        // A hinted block run loses its hint before one of its blocks becomes a table.
        let raw = self.unhint(c.slot, c.raw, c.level, block_va);
        let child_level = c.level - 1;
        let attrs = self.arch.leaf_attrs(raw, c.level);
        let step = entry_span(child_level);
        // The block is aligned to its size, so every run of children is complete and aligned.
        let hint = self.arch.contiguous_hint(child_level).map_or(0, |h| h.bit);
        for i in 0..ENTRIES {
            let pa = PhyAddr::new(frame.as_u64() + i as u64 * step);
            let leaf = self.arch.leaf_entry(pa, child_level, attrs) | hint;
            // The software bit (a copy-on-write mark) is the page's state, not an attribute.
            let leaf = self.arch.keep_hardware_bits(raw, leaf) | (raw & self.arch.software_bit());
            // SAFETY: a zeroed, unpublished table frame from the reserve; i < 512.
            unsafe { Slot::new(table, ptr.cast(), i) }.store(&self.mem, 0, leaf);
        }
        let permit = Attrs {
            user: attrs.user || then.is_some_and(|a| a.user),
            ..attrs
        };
        let link = self.arch.table_entry(table, permit);
        let hw = self.arch.hardware_updates_entries();
        if self.arch.needs_break_before_make(raw, link, c.level) {
            // Break, invalidate, then make (Arm ARM D8.16.1).
            c.slot.clear(&self.mem, hw, raw);
            self.tlb.flush_leaf(block_va);
            self.tlb.order_table_writes();
            c.slot.store(&self.mem, 0, link);
        } else {
            self.tlb.order_table_writes();
            c.slot.modify(&self.mem, hw, |_| link);
            gather.invalidate(block_va, size_of(c.level), true);
        }
        Some(table)
    }
}

/// Pass 1 of `unmap_range` and `protect_range`: the tables splits will need.
pub(super) struct CountSplits {
    pub(super) tables: usize,
    /// The range walked.
    pub(super) span: Span,
    /// Skip tables the range covers whole (`drop_range`, whose commit does not enter them).
    pub(super) skip_whole: bool,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<PageTable<A, M, F, T>>
    for CountSplits
{
    type Error = RangeError<MapError>;

    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        match c.entry {
            Entry::Invalid => Ok(Step::Next),
            // A block the range covers whole needs no split, nor do the whole blocks and holes
            // after it in the same table: one loop over them.
            Entry::Leaf(_) if c.level > 0 && c.piece.whole(c.level) => {
                let (first, last, _, partial_last) = run_bounds(c, self.span);
                let last = last - usize::from(partial_last);
                // Decoded once per run of entries equal outside the address bits.
                let addr = address_bits(pt.arch.pa_bits(), c.level);
                let mut key = c.raw & !addr;
                let mut next = first + 1;
                while let Some(s) = c.slot.sibling(next).filter(|_| next < last) {
                    let raw = s.load();
                    if raw & !addr != key {
                        match pt.arch.decode(raw, c.level) {
                            Entry::Leaf(_) | Entry::Invalid => key = raw & !addr,
                            Entry::Table(_) => break,
                        }
                    }
                    next += 1;
                }
                Ok(Step::Skip(next - first - 1))
            }
            Entry::Leaf(_) => {
                if !c.piece.whole(c.level) {
                    self.tables += split_tables(c.level, c.piece.start, c.piece.end);
                }
                Ok(Step::Next)
            }
            // Splits only happen to leaves the range covers in part, which a table it covers
            // whole cannot hold: nothing to count below it. unmap_range and drop_range detach
            // such a table without walking it: nothing to check either.
            Entry::Table(_) if self.skip_whole && c.piece.whole(c.level) && !c.looped => {
                Ok(Step::Next)
            }
            // protect_range walks it, so this pass checks what that walk could fail on first:
            // a table of 4 KiB leaves can only be unreachable or on the path (its entries are
            // leaves or invalid), which is checked here without visiting its 512 entries.
            Entry::Table(next)
                if c.level == 1
                    && c.piece.whole(1)
                    && !c.looped
                    && pt.mem.frame_ptr(next).is_some() =>
            {
                Ok(Step::Next)
            }
            Entry::Table(next) => Ok(Step::Into(next)),
        }
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}
