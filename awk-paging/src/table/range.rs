//! Range operations: map, unmap and protect `va .. va + len` in one walk, as visitors of the
//! range walker, each in two passes — a read-only count of the frames the commit will need
//! (new tables, splits), taking them all into a [`Reserve`], then a commit that cannot fail.

use super::chunk::{entry_span, leaf_fits, new_tables, split_tables, Piece};
use super::entry::Slot;
use super::reserve::Reserve;
use super::visit::{Chunk, Step, Visitor};
use super::{PageTable, Unmapped};
use crate::arch::{Arch, Entry};
use crate::{
    AddrError, Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, ProtectError,
    RangeError, Tlb, UnmapError, VirtAddr, ENTRIES,
};

/// Options of [`PageTable::map_range`].
///
/// ```
/// use awk_paging::{PageSize, RangeOptions};
/// let small = RangeOptions { max_page: PageSize::Size4K };
/// assert_eq!(RangeOptions::default().max_page, PageSize::Size1G);
/// # let _ = small;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeOptions {
    /// The largest page size to use (e.g. 4 KiB only, for memory that will be split often).
    /// Sizes the regime lacks are never used anyway (1 GiB needs CPU support on x86).
    pub max_page: PageSize,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            max_page: PageSize::Size1G,
        }
    }
}

/// One mapping removed by [`PageTable::unmap_range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmappedPage {
    /// First virtual address of the page (or block).
    pub page: VirtAddr,
    /// What it mapped, with its Accessed/Dirty state.
    pub unmapped: Unmapped,
}

/// A validated range in table bits.
#[derive(Clone, Copy)]
pub(super) struct Span {
    pub(super) start: u64,
    pub(super) end: u64,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// An empty [`Gather`] for this table.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(1);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let g = pt.gather();
    /// pt.finish(g).unwrap();
    /// ```
    pub fn gather(&self) -> Gather {
        Gather::new(self.root)
    }

    /// Does what `gather` owes: invalidates (per page or block below the threshold, else the
    /// whole address space; walk caches wherever a table changed), **then** frees the tables
    /// the operations detached. Gives the gather back, untouched, if it belongs to another
    /// table.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(2);
    /// let mut a = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let b = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert!(a.finish(b.gather()).is_err()); // not a's
    /// ```
    // The gather is handed back by value on purpose: it owns detached tables, and the caller
    // must keep it to finish it on the right table (boxing would need an allocator).
    #[allow(clippy::result_large_err)]
    pub fn finish(&mut self, mut gather: Gather) -> Result<(), Gather> {
        if gather.root != self.root {
            return Err(gather);
        }
        self.finish_in_place(&mut gather);
        Ok(())
    }

    /// [`finish`](Self::finish) without the ownership check, leaving `g` empty for reuse.
    pub(crate) fn finish_in_place(&mut self, g: &mut Gather) {
        let (pending, publish) = g.pending();
        match pending {
            None => self.tlb.flush_all(),
            Some(list) => {
                if !list.is_empty() {
                    self.tlb.flush_pages(list);
                } else if publish {
                    self.tlb.publish();
                }
            }
        }
        for &(table, level) in g.tables() {
            let mut visited = super::walk::Visited::new(table);
            // SAFETY: detached from the tree and invalidated everywhere just above.
            unsafe { self.free_table(table, level, &mut visited) };
        }
        g.clear();
    }

    /// Checks a range (4 KiB-aligned start and length, translated by this regime, inside one
    /// half) and turns it into table bits.
    pub(super) fn span<E: From<AddrError>>(
        &self,
        va: VirtAddr,
        len: u64,
    ) -> Result<Span, RangeError<E>> {
        let fail = |e: AddrError| RangeError {
            at: va,
            error: e.into(),
        };
        if !va.is_aligned(PageSize::Size4K) || len & 0xfff != 0 {
            return Err(fail(AddrError::NotAligned));
        }
        self.arch.check_va(va).map_err(fail)?;
        let last = va
            .checked_add(len.saturating_sub(1))
            .ok_or(fail(AddrError::Overflow))?;
        self.arch.check_va(last).map_err(|e| RangeError {
            at: last,
            error: e.into(),
        })?;
        let mask = entry_span(self.arch.levels()).wrapping_sub(1);
        let start = va.as_u64() & mask;
        let end = start + len;
        // Contiguous in table bits: the range does not cross from one half into the other.
        if len > 0 && (last.as_u64() & mask) != end - 1 {
            return Err(fail(AddrError::OutOfRange));
        }
        Ok(Span { start, end })
    }

    /// The virtual address of table bits `bits`.
    #[inline(always)]
    pub(super) fn va_at(&self, bits: u64) -> VirtAddr {
        self.arch.va_from_bits(bits)
    }

    /// Maps `va .. va + len` to `pa .. pa + len` with `attrs`, choosing for each part the largest
    /// page size that VA, PA and the remaining length allow (up to `opts.max_page` and what the
    /// regime supports), in one walk. New tables are built off to the side and linked with one
    /// store each; upper-level restrictions are lifted as [`map`](Self::map) does. What the TLB
    /// owes goes into `gather`.
    ///
    /// Fails, changing nothing (tables and allocator byte-for-byte as before), if the input is
    /// invalid, anything in the range is already mapped, or the frames for the new tables cannot
    /// all be taken.
    ///
    /// # Safety
    ///
    /// As for [`map`](Self::map), for every page of the range.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, VirtAddr};
    ///
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// // 4 KiB + 2 MiB + 4 KiB: the middle becomes one 2 MiB page.
    /// let (va, pa) = (VirtAddr::new(0x1f_f000), PhyAddr::new(0x81f_f000));
    /// let mut g = pt.gather();
    /// unsafe { pt.map_range(va, pa, 0x20_2000, Flags::RW, RangeOptions::default(), &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(pt.translate(VirtAddr::new(0x30_0000)).unwrap().size, PageSize::Size2M);
    /// assert_eq!(pt.translate(VirtAddr::new(0x1f_f000)).unwrap().size, PageSize::Size4K);
    /// ```
    pub unsafe fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhyAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        opts: RangeOptions,
        gather: &mut Gather,
    ) -> Result<(), RangeError<MapError>> {
        let attrs = attrs.into();
        let fail = |error| RangeError { at: va, error };
        if gather.root != self.root {
            return Err(fail(MapError::InvalidPageTable));
        }
        attrs.validate(self.policy).map_err(|e| fail(e.into()))?;
        let span = self.span(va, len)?;
        if !pa.is_aligned(PageSize::Size4K) {
            return Err(fail(MapError::AddressNotAligned));
        }
        let pa_end = pa.as_u64().checked_add(len);
        if pa_end.is_none_or(|e| self.arch.pa_bits() < 64 && (e - 1) >> self.arch.pa_bits() != 0) {
            return Err(fail(MapError::PhysAddrTooWide));
        }
        if len == 0 {
            return Ok(());
        }
        let plan = MapPlan {
            start: span.start,
            end: span.end,
            pa: pa.as_u64(),
            attrs,
            cap: opts.max_page,
            tables: 0,
            reserve: Reserve::default(),
            gather,
            widened: false,
            data: None,
        };
        self.run_map_plan(va, span, plan, None)
    }

    /// The passes of a range map: count (read-only; any conflict is an error before anything
    /// changes), take every table frame — and `data` fresh data frames (with whether to zero
    /// them) for an allocating map — or nothing, commit (cannot fail), give leftovers back.
    pub(super) fn run_map_plan(
        &mut self,
        va: VirtAddr,
        span: Span,
        mut plan: MapPlan<'_>,
        data: Option<(usize, bool)>,
    ) -> Result<(), RangeError<MapError>> {
        let fail = |error| RangeError { at: va, error };
        plan.count_only_walk(self, span)?;
        plan.reserve =
            Reserve::take(&self.arch, &self.mem, &mut self.frames, plan.tables).map_err(fail)?;
        if let Some((frames, zero)) = data {
            match Reserve::take(&self.arch, &self.mem, &mut self.frames, frames) {
                Ok(taken) => plan.data = Some((taken, zero)),
                Err(e) => {
                    core::mem::take(&mut plan.reserve).give_back(&self.mem, &mut self.frames);
                    return Err(fail(e));
                }
            }
        }
        let committed = self.walk_range(span.start, span.end, &mut Commit(&mut plan));
        core::mem::take(&mut plan.reserve).give_back(&self.mem, &mut self.frames);
        if let Some((leftover, _)) = plan.data.take() {
            leftover.give_back(&self.mem, &mut self.frames);
        }
        committed.map_err(|e| RangeError {
            at: self.va_at(e.at.as_u64()),
            error: e.error,
        })?;
        plan.gather.publish();
        if plan.widened {
            plan.gather.invalidate(va, PageSize::Size4K, true);
        }
        Ok(())
    }

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
            skip_whole: f.is_none(),
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
        };
        let r = self.walk_range(span.start, span.end, &mut op);
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

    // ---- shared steps ------------------------------------------------------------------

    /// Replaces the leaf in `c` (partly covered by the range) by a table of equivalent
    /// smaller leaves taken from `reserve`, and returns that table. AArch64 (and any format
    /// that needs it): break-before-make — the leaf is made invalid and invalidated first, so
    /// the range is briefly unmapped. x86: the table replaces the leaf in one store; the old
    /// huge page is invalidated through `gather` (with walk caches).
    ///
    /// `then` is what a leaf below will be changed to, so the new table entry permits it
    /// (x86: U/S for a user page); the split leaves themselves keep the old attributes.
    fn split(
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

/// The page size of a leaf at `level` (4 KiB for out-of-range levels, which never hold leaves).
fn size_of(level: u8) -> PageSize {
    PageSize::from_level(level).unwrap_or(PageSize::Size4K)
}

fn map_to_unmap(e: MapError) -> UnmapError {
    match e {
        MapError::OutOfMemory => UnmapError::OutOfMemory,
        MapError::TableFrameTooWide => UnmapError::TableFrameTooWide,
        MapError::RecursiveTable => UnmapError::RecursiveTable,
        _ => UnmapError::InvalidPageTable,
    }
}

fn map_to_protect(e: MapError) -> ProtectError {
    match e {
        MapError::OutOfMemory => ProtectError::OutOfMemory,
        MapError::TableFrameTooWide => ProtectError::TableFrameTooWide,
        MapError::RecursiveTable => ProtectError::RecursiveTable,
        _ => ProtectError::InvalidPageTable,
    }
}

/// The error for a broken walk at table bits `at` (converted to an address by the caller).
fn broken(at: u64, recursive: bool) -> RangeError<MapError> {
    RangeError {
        at: VirtAddr::new(at),
        error: if recursive {
            MapError::RecursiveTable
        } else {
            MapError::InvalidPageTable
        },
    }
}

// ---- map ---------------------------------------------------------------------------------

/// One `map_range` call: its input and what the passes found.
pub(super) struct MapPlan<'g> {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) pa: u64,
    pub(super) attrs: Attrs,
    pub(super) cap: PageSize,
    pub(super) tables: usize,
    pub(super) reserve: Reserve,
    pub(super) gather: &'g mut Gather,
    pub(super) widened: bool,
    /// Fresh data frames for the leaves (allocating maps; 4 KiB leaves only), and whether to
    /// zero them.
    pub(super) data: Option<(Reserve, bool)>,
}

impl MapPlan<'_> {
    #[inline(always)]
    fn pa_of(&self, piece: &Piece) -> u64 {
        self.pa + (piece.start - self.start)
    }

    pub(super) fn count_only_walk<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        span: Span,
    ) -> Result<(), RangeError<MapError>> {
        let r = pt.walk_range(span.start, span.end, &mut Count(self));
        r.map_err(|e| RangeError {
            at: pt.va_at(e.at.as_u64()),
            error: e.error,
        })
    }
}

/// Pass 1 of `map_range`.
struct Count<'p, 'g>(&'p mut MapPlan<'g>);

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<A, M, F, T> for Count<'_, '_> {
    type Error = RangeError<MapError>;

    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        let p = &mut *self.0;
        let sizes = pt.arch.page_sizes();
        let pa = p.pa_of(&c.piece);
        match c.entry {
            Entry::Invalid => {
                if !leaf_fits(c.level, &c.piece, pa, sizes, p.cap) {
                    p.tables +=
                        1 + new_tables(c.level - 1, c.piece.start, c.piece.end, pa, sizes, p.cap);
                }
                Ok(Step::Next)
            }
            Entry::Leaf(_) => Err(RangeError {
                at: VirtAddr::new(c.piece.start),
                error: MapError::AlreadyMapped,
            }),
            Entry::Table(next) => Ok(Step::Into(next)),
        }
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}

/// Writes the 4 KiB leaves of `piece` (a level-1 entry's share of the range) into the fresh,
/// zeroed, unlinked leaf table `table` (reached at `base`), with the contiguous hint on every
/// complete aligned run inside the range.
#[inline(always)]
fn fill_leaf_table<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    pt: &PageTable<A, M, F, T>,
    p: &MapPlan<'_>,
    table: PhyAddr,
    base: core::ptr::NonNull<u64>,
    piece: &Piece,
) {
    let first = ((piece.start >> 12) & 0x1ff) as usize;
    let count = ((piece.end - piece.start) >> 12) as usize;
    let pa0 = p.pa_of(piece);
    for i in 0..count {
        let bits = piece.start + ((i as u64) << 12);
        let pa = pa0 + ((i as u64) << 12);
        let mut leaf = pt.arch.leaf_entry(PhyAddr::new(pa), 0, p.attrs);
        if let Some(bit) = pt.run_hintable(0, bits, p.start, p.end, pa) {
            leaf |= bit;
        }
        // SAFETY: a zeroed, unpublished table frame from the reserve; first + i < 512 (the
        // piece lies inside one level-1 entry).
        unsafe { Slot::new(table, base, first + i) }.store(&pt.mem, 0, leaf);
    }
}

/// Pass 2 of `map_range`.
pub(super) struct Commit<'p, 'g>(pub(super) &'p mut MapPlan<'g>);

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<A, M, F, T>
    for Commit<'_, '_>
{
    type Error = RangeError<MapError>;

    #[inline(always)]
    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        let p = &mut *self.0;
        let pa = p.pa_of(&c.piece);
        match c.entry {
            Entry::Invalid => {
                if leaf_fits(c.level, &c.piece, pa, pt.arch.page_sizes(), p.cap) {
                    let pa = match &mut p.data {
                        None => pa,
                        Some((frames, zero)) => {
                            let taken = if *zero {
                                frames.pop(&pt.mem)
                            } else {
                                frames.pop_raw(&pt.mem)
                            };
                            taken.ok_or(broken(c.piece.start, false))?.0.as_u64()
                        }
                    };
                    let mut leaf = pt.arch.leaf_entry(PhyAddr::new(pa), c.level, p.attrs);
                    if p.data.is_none() {
                        // Part of a complete, aligned run mapped by this call: hint it.
                        if let Some(bit) =
                            pt.run_hintable(c.level, c.piece.base, p.start, p.end, pa)
                        {
                            leaf |= bit;
                        }
                    }
                    c.slot.store(&pt.mem, c.raw, leaf);
                    return Ok(Step::Next);
                }
                // A new table, filled off to the side and linked in `leave`.
                let (table, ptr) = p.reserve.pop(&pt.mem).ok_or(broken(c.piece.start, false))?;
                if c.level == 1 && p.data.is_none() {
                    // A new leaf table holds only new 4 KiB leaves: fill it in one tight loop
                    // (no per-entry visit), then link it as `leave` would.
                    fill_leaf_table(pt, p, table, ptr.cast(), &c.piece);
                    pt.tlb.order_table_writes();
                    c.slot
                        .store(&pt.mem, c.raw, pt.arch.table_entry(table, p.attrs));
                    return Ok(Step::Next);
                }
                Ok(Step::Into(table))
            }
            Entry::Table(next) => {
                if pt.arch.table_limits(c.raw, c.level).blocks(p.attrs) {
                    pt.lift_limits(c.slot, c.raw, c.level, next, p.attrs);
                    p.widened = true;
                }
                Ok(Step::Into(next))
            }
            Entry::Leaf(_) => Err(RangeError {
                at: VirtAddr::new(c.piece.start),
                error: MapError::AlreadyMapped,
            }),
        }
    }

    fn leave(
        &mut self,
        pt: &mut PageTable<A, M, F, T>,
        c: &Chunk,
        child: PhyAddr,
    ) -> Result<(), Self::Error> {
        if c.entry == Entry::Invalid {
            pt.tlb.order_table_writes();
            c.slot
                .store(&pt.mem, c.raw, pt.arch.table_entry(child, self.0.attrs));
        }
        Ok(())
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}

// ---- unmap and protect -----------------------------------------------------------------

/// Pass 1 of `unmap_range` and `protect_range`: the tables splits will need.
struct CountSplits {
    tables: usize,
    /// Skip tables the range covers whole (`drop_range`, whose commit does not enter them).
    skip_whole: bool,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<A, M, F, T> for CountSplits {
    type Error = RangeError<MapError>;

    fn visit(&mut self, _pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        match c.entry {
            Entry::Invalid => Ok(Step::Next),
            Entry::Leaf(_) => {
                if !c.piece.whole(c.level) {
                    self.tables += split_tables(c.level, c.piece.start, c.piece.end);
                }
                Ok(Step::Next)
            }
            // drop_range detaches a table it covers whole without walking it, and splits only
            // happen to leaves the range covers in part, which such a table cannot hold:
            // nothing to count (or check) below it. Other passes walk it, so this one does.
            Entry::Table(_) if self.skip_whole && c.piece.whole(c.level) => Ok(Step::Next),
            Entry::Table(next) => Ok(Step::Into(next)),
        }
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}

/// Pass 2 of `unmap_range` / `drop_range` (`f` is `None`: whole tables go without a visit).
struct UnmapOp<'g, G> {
    span: Span,
    reserve: Reserve,
    gather: &'g mut Gather,
    f: Option<G>,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone, G: FnMut(UnmappedPage)>
    Visitor<A, M, F, T> for UnmapOp<'_, G>
{
    type Error = RangeError<MapError>;

    #[inline(always)]
    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error> {
        match c.entry {
            Entry::Invalid => Ok(Step::Next),
            Entry::Leaf(frame) if c.piece.whole(c.level) => {
                let page = pt.va_at(c.piece.base);
                // A run wholly inside the range goes away whole; part of one is unhinted first.
                let raw = if pt.run_covered(c.level, c.piece.base, self.span.start, self.span.end) {
                    c.raw
                } else {
                    pt.unhint(c.slot, c.raw, c.level, page)
                };
                let old = c
                    .slot
                    .clear(&pt.mem, pt.arch.hardware_updates_entries(), raw);
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
            Entry::Table(next)
                if self.f.is_none() && c.piece.whole(c.level) && !pt.pinned(c.level) =>
            {
                // Drop the whole subtree: one store, everything freed after a full flush.
                pt.detach(c, next, self.gather);
                self.gather.invalidate_all();
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
        // A wholly covered table is empty now; a partly covered one may be.
        if c.piece.whole(c.level) || pt.table_is_empty_near(child, c.level - 1, &c.piece) {
            // Re-read: a split above changed the entry since the walker read it.
            let now = Chunk {
                raw: c.slot.load(),
                ..*c
            };
            pt.detach(&now, child, self.gather);
        }
        Ok(())
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
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
                // The software bit (a copy-on-write mark) is the page's state, not an attribute.
                let soft = c.raw & pt.arch.software_bit();
                let mut new = pt.arch.leaf_entry(frame, c.level, self.attrs) | soft;
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
