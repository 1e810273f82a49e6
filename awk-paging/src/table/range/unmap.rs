//! `unmap_range` and `drop_range`: count the splits, take their tables, then remove leaves and
//! detach emptied (or wholly covered) tables into the gather.

use super::super::chunk::{address_bits, entry_span, Piece};
use super::super::entry::Slot;
use super::super::reserve::Reserve;
use super::super::visit::{Chunk, Step, Visitor};
use super::super::walk::Visited;
use super::split::CountSplits;
use super::{broken, map_to_unmap, size_of, PageTable, Span, Unmapped, UnmappedPage};
use crate::arch::{Arch, Entry};
use crate::{
    Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, RangeError, Tlb,
    UnmapError, VirtAddr, ENTRIES, GATHER_TABLES,
};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Removes every mapping in `va .. va + len` (any sizes), splitting huge pages that straddle
    /// its ends, and calls `f` with each one removed (with its Accessed/Dirty state). Tables that
    /// become empty are detached and freed by [`finish`](Self::finish) after the invalidation.
    ///
    /// Fails, changing nothing, on invalid input or if frames for the splits run out.
    ///
    /// # Safety
    ///
    /// If this table is active, nothing may rely on the range once `gather` is finished; until
    /// then the old translations may still be in use by the hardware.
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
    /// // Unmap one 4 KiB page in the middle of the 2 MiB page: it is split.
    /// let mut gone = Vec::new();
    /// unsafe { pt.unmap_range(VirtAddr::new(0x20_1000), 0x1000, &mut g, |u| gone.push(u.page)) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(gone, [VirtAddr::new(0x20_1000)]);
    /// assert!(pt.translate(VirtAddr::new(0x20_1000)).is_err());
    /// assert_eq!(pt.translate(VirtAddr::new(0x20_2000)).unwrap().size, PageSize::Size4K);
    /// ```
    pub unsafe fn unmap_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
        f: impl FnMut(UnmappedPage),
    ) -> Result<(), RangeError<UnmapError>> {
        self.unmap_impl(va, len, gather, Some(f))
    }

    /// Removes everything in `va .. va + len` like [`unmap_range`](Self::unmap_range), but
    /// without visiting the leaves of tables the range covers whole: such a table is detached
    /// with its whole subtree in one store and freed after the flush (which is then a full
    /// one). The fast way to tear down large regions.
    ///
    /// # Safety
    ///
    /// As [`unmap_range`](Self::unmap_range).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, VirtAddr};
    ///
    /// let mem = EmuMemory::new(16);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let va = VirtAddr::new(0x4000_0000);
    /// let small = RangeOptions { max_page: PageSize::Size4K };
    /// let mut g = pt.gather();
    /// unsafe { pt.map_range(va, PhyAddr::new(0), 0x40_0000, Flags::RW, small, &mut g) }.unwrap();
    /// unsafe { pt.drop_range(va, 0x40_0000, &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), 1);
    /// ```
    pub unsafe fn drop_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
    ) -> Result<(), RangeError<UnmapError>> {
        self.unmap_impl(va, len, gather, None::<fn(UnmappedPage)>)
    }

    fn unmap_impl<G: FnMut(UnmappedPage)>(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
        f: Option<G>,
    ) -> Result<(), RangeError<UnmapError>> {
        let fail = |error| RangeError { at: va, error };
        if gather.root != self.root {
            return Err(fail(UnmapError::InvalidPageTable));
        }
        let span = self.span(va, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut count = CountSplits {
            tables: 0,
            span,
            skip_whole: true,
        };
        self.walk_range(span.start, span.end, &mut count)
            .map_err(|e| self.unmap_error(e))?;
        let reserve = Reserve::take(&self.arch, &self.mem, &mut self.frames, count.tables)
            .map_err(|e| fail(map_to_unmap(e)))?;
        let mut op = UnmapOp {
            span,
            reserve,
            gather,
            f,
            later: [(PhyAddr::ZERO, 0, 0); GATHER_TABLES],
            nlater: 0,
        };
        let r = self.walk_range(span.start, span.end, &mut op);
        op.report_later(self);
        let leftover = core::mem::take(&mut op.reserve);
        leftover.give_back(&self.mem, &mut self.frames);
        r.map_err(|e| self.unmap_error(e))
    }

    fn unmap_error(&self, e: RangeError<MapError>) -> RangeError<UnmapError> {
        RangeError {
            at: self.va_at(e.at.as_u64()),
            error: map_to_unmap(e.error),
        }
    }
    /// Detaches the (empty, or wholly covered) table in `c` and hands it to `gather` to free
    /// after the invalidation; flushes and frees early if the gather is full.
    fn detach(&mut self, c: &Chunk, child: PhyAddr, gather: &mut Gather) {
        if gather.tables_full() {
            self.finish_in_place(gather);
        }
        c.slot
            .clear(&self.mem, self.arch.hardware_updates_entries(), c.raw);
        // The walk cache may point into the detached table.
        self.walk.clear();
        // Any address the table translated names its walk-cache entries; the first one of the
        // range coincides with the leaf invalidations before it, so the gather merges them.
        gather.invalidate(self.va_at(c.piece.start), PageSize::Size4K, true);
        gather.push_table(child, c.level - 1);
    }

    /// Whether the table at `table` (entries at `level`), of which `piece` was just emptied,
    /// has no valid entry. The entries right after and right before the piece are looked at
    /// first: one of them is usually still valid (a page-by-page unmap in either direction),
    /// which answers without scanning the table.
    fn table_is_empty_near(&self, table: PhyAddr, level: u8, piece: &Piece) -> bool {
        let valid = |i: usize| {
            Slot::of(&self.mem, table, i)
                .is_some_and(|s| self.arch.decode(s.load(), level) != Entry::Invalid)
        };
        let shift = 12 + 9 * u32::from(level);
        let span = entry_span(level + 1);
        let index = |bits: u64| ((bits >> shift) & 0x1ff) as usize;
        if piece.end - piece.base < span && valid(index(piece.end)) {
            return false;
        }
        if piece.start > piece.base && valid(index(piece.start - 1)) {
            return false;
        }
        self.table_is_empty(table, level)
    }

    /// Whether the table at `table` (entries at `level`) has no valid entry.
    fn table_is_empty(&self, table: PhyAddr, level: u8) -> bool {
        (0..ENTRIES).all(|i| {
            Slot::of(&self.mem, table, i)
                .is_some_and(|s| self.arch.decode(s.load(), level) == Entry::Invalid)
        })
    }
}

/// Pass 2 of `unmap_range` / `drop_range`: leaves the range covers whole are removed one by
/// one (huge pages it covers in part are split first); tables it covers whole are detached with
/// one store each, their leaves reported (`unmap_range`) by reading the detached table.
struct UnmapOp<'g, G> {
    span: Span,
    reserve: Reserve,
    gather: &'g mut Gather,
    f: Option<G>,
    /// Detached subtrees (table, level, table bits of its first byte) whose leaves are still to
    /// be reported: where the hardware writes entries, their Accessed/Dirty bits are exact only
    /// once no walker can reach them, i.e. after the flush. They sit in `gather` too, which
    /// frees them after reporting.
    later: [(PhyAddr, u8, u64); GATHER_TABLES],
    nlater: usize,
}

impl<G: FnMut(UnmappedPage)> UnmapOp<'_, G> {
    /// Reports the leaves of the subtrees in `later`: invalidates what the gather owes first
    /// (so no walker or TLB can set a bit in them any more), then reads and reports, then frees
    /// every table the gather holds.
    fn report_later<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
    ) {
        if self.nlater == 0 {
            return;
        }
        pt.flush_owed(self.gather);
        if let Some(f) = &mut self.f {
            for &(table, level, base) in &self.later[..self.nlater] {
                report_subtree(pt, table, level, base, f);
            }
        }
        self.nlater = 0;
        pt.free_gathered(self.gather);
    }

    /// Detaches the table `child` of `c` (see [`PageTable::detach`]), first settling `later`
    /// if the detach would flush and free the gather's tables.
    fn detach<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        c: &Chunk,
        child: PhyAddr,
    ) {
        if self.gather.tables_full() {
            self.report_later(pt);
        }
        pt.detach(c, child, self.gather);
    }
}

/// Calls `f` for every leaf of the detached subtree `table` (entries at `level`, first byte at
/// table bits `base`), in address order. Entries leading back into the subtree's own path are
/// skipped, as when it is freed.
fn report_subtree<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    pt: &PageTable<A, M, F, T>,
    table: PhyAddr,
    level: u8,
    base: u64,
    f: &mut impl FnMut(UnmappedPage),
) {
    let mut visited = Visited::new(table);
    report_table(pt, table, level, base, f, &mut visited);
}

fn report_table<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    pt: &PageTable<A, M, F, T>,
    table: PhyAddr,
    level: u8,
    base: u64,
    f: &mut impl FnMut(UnmappedPage),
    visited: &mut Visited,
) {
    let Some(ptr) = pt.mem.frame_ptr(table) else {
        return;
    };
    let arch = pt.arch;
    let span = entry_span(level);
    let size = size_of(level);
    // What a leaf reports depends only on its bits outside the output address (the format
    // passes those through: conformance `leaf_address_bits_pass_through`), so it is decoded
    // once per run of equal such bits: `key` (`addr` matches no entry), the frame's bits
    // outside `addr` (`frame ^ (raw & addr)`, zero for every format here) and the report.
    let addr = address_bits(arch.pa_bits(), level);
    let mut key = addr;
    let mut frame_xor = 0;
    let mut report = (Attrs::from(crate::Flags::RO), false, false);
    for i in 0..ENTRIES {
        // SAFETY: `mem` reaches `table` at `ptr`; detached, not freed before this returns.
        let raw = unsafe { Slot::new(table, ptr.cast(), i) }.load();
        let bits = base + i as u64 * span;
        if raw & !addr != key {
            match arch.decode(raw, level) {
                Entry::Invalid => continue,
                Entry::Leaf(frame) => {
                    let (accessed, dirty) = arch.accessed_dirty(raw, level);
                    report = (arch.leaf_attrs(raw, level), accessed, dirty);
                    frame_xor = frame.as_u64() ^ (raw & addr);
                    key = raw & !addr;
                }
                Entry::Table(next) => {
                    if level > 0 && visited.enter(next) {
                        report_table(pt, next, level - 1, bits, f, visited);
                        visited.leave();
                    }
                    continue;
                }
            }
        }
        let (attrs, accessed, dirty) = report;
        f(UnmappedPage {
            page: pt.va_at(bits),
            unmapped: Unmapped {
                frame: PhyAddr::new((raw & addr) ^ frame_xor),
                size,
                attrs,
                accessed,
                dirty,
            },
        });
    }
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone, G: FnMut(UnmappedPage)>
    Visitor<PageTable<A, M, F, T>> for UnmapOp<'_, G>
{
    type Error = RangeError<MapError>;

    #[inline(always)]
    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        match c.entry {
            Entry::Invalid => Ok(Step::Next),
            Entry::Leaf(frame) if c.piece.whole(c.level) => {
                // In address order: what was detached before is reported first.
                self.report_later(pt);
                let page = pt.va_at(c.piece.base);
                // A run wholly inside the range goes away whole; part of one is unhinted first.
                let raw = if pt.run_covered(c.level, c.piece.base, self.span.start, self.span.end) {
                    c.raw
                } else {
                    pt.unhint(c.slot, c.raw, c.level, page)
                };
                let old = c
                    .slot
                    .clear(&pt.mem, pt.arch.hardware_may_write(raw, c.level), raw);
                let size = size_of(c.level);
                self.gather.invalidate(page, size, false);
                if let Some(f) = &mut self.f {
                    let (accessed, dirty) = pt.arch.accessed_dirty(old, c.level);
                    f(UnmappedPage {
                        page,
                        unmapped: Unmapped {
                            frame,
                            size,
                            attrs: pt.arch.leaf_attrs(old, c.level),
                            accessed,
                            dirty,
                        },
                    });
                }
                Ok(Step::Next)
            }
            Entry::Leaf(_) => {
                let table = pt
                    .split(c, None, &mut self.reserve, self.gather)
                    .ok_or(broken(c.piece.start, false))?;
                Ok(Step::Into(table))
            }
            Entry::Table(next) if c.piece.whole(c.level) && !c.looped && !pt.pinned(c.level) => {
                // The whole subtree goes: one store; every leaf in it leaves the TLB by a full
                // flush, after which its tables are freed.
                self.detach(pt, c, next);
                let len = c.piece.end - c.piece.start;
                self.gather.invalidate_all_in(pt.va_at(c.piece.start), len);
                if let Some(f) = &mut self.f {
                    if pt.arch.hardware_updates_entries() {
                        // Reported once no walker can set Accessed/Dirty in it any more.
                        self.later[self.nlater] = (next, c.level - 1, c.piece.base);
                        self.nlater += 1;
                    } else {
                        // Nothing but this code writes its entries: they are exact now.
                        report_subtree(pt, next, c.level - 1, c.piece.base, f);
                    }
                }
                Ok(Step::Next)
            }
            Entry::Table(next) => Ok(Step::Into(next)),
        }
    }

    fn leave(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        c: &Chunk,
        child: PhyAddr,
    ) -> Result<(), Self::Error> {
        // Tables linked from a shared root stay (other roots link them too).
        if pt.pinned(c.level) {
            return Ok(());
        }
        // A partly covered table may be empty now (a split leaf's table, or a table whose
        // remaining entries the range removed).
        if c.piece.whole(c.level) || pt.table_is_empty_near(child, c.level - 1, &c.piece) {
            // Re-read: a split above changed the entry since the walker read it.
            let now = Chunk {
                raw: c.slot.load(),
                ..*c
            };
            self.detach(pt, &now, child);
        }
        Ok(())
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}
