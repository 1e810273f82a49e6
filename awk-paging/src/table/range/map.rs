//! `map_range`: a read-only count of the new tables, then a commit that cannot fail.

use core::ptr::NonNull;

use super::super::chunk::{entry_span, leaf_fits, new_tables, Piece};
use super::super::entry::Slot;
use super::super::reserve::Reserve;
use super::super::visit::{Chunk, Step, Visitor};
use super::{broken, LeafEncoder, PageTable, Span};
use crate::arch::{Arch, Entry};
use crate::{
    Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, RangeError, RangeOptions,
    Tlb, VirtAddr, ENTRIES,
};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Maps `va .. va + len` to `pa .. pa + len` with `attrs`, choosing for each part the largest
    /// page size that VA, PA and the remaining length allow (up to `opts.max_page` and what the
    /// regime supports), in one walk. New tables are built off to the side and linked with one
    /// store each; upper-level restrictions are lifted as [`map`](Self::map) does. What the TLB
    /// owes goes into `gather`.
    ///
    /// A table whose whole subtree maps nothing, where a leaf fits, is replaced by that leaf
    /// (with break-before-make where the format needs it) and freed by
    /// [`finish`](Self::finish) after the invalidation.
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
    pub(in crate::table) fn run_map_plan(
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
}

/// One `map_range` call: its input and what the passes found.
pub(in crate::table) struct MapPlan<'g> {
    pub(in crate::table) start: u64,
    pub(in crate::table) end: u64,
    pub(in crate::table) pa: u64,
    pub(in crate::table) attrs: Attrs,
    pub(in crate::table) cap: PageSize,
    pub(in crate::table) tables: usize,
    pub(in crate::table) reserve: Reserve,
    pub(in crate::table) gather: &'g mut Gather,
    pub(in crate::table) widened: bool,
    /// Fresh data frames for the leaves (allocating maps; 4 KiB leaves only), and whether to
    /// zero them.
    pub(in crate::table) data: Option<(Reserve, bool)>,
}

impl MapPlan<'_> {
    #[inline(always)]
    fn pa_of(&self, piece: &Piece) -> u64 {
        self.pa + (piece.start - self.start)
    }

    pub(in crate::table) fn count_only_walk<
        A: Arch,
        M: PhysMem,
        F: FrameAllocator,
        T: Tlb + Clone,
    >(
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

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<PageTable<A, M, F, T>>
    for Count<'_, '_>
{
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
            // An empty subtree where a leaf fits: the commit replaces it (no frames needed).
            Entry::Table(next) if p.merges(pt, c, next, pa) => Ok(Step::Next),
            Entry::Table(next) => Ok(Step::Into(next)),
        }
    }

    fn broken(&self, at: u64, recursive: bool) -> Self::Error {
        broken(at, recursive)
    }
}

impl MapPlan<'_> {
    /// Whether the table entry `c` (pointing to `next`), a piece the range covers whole, is
    /// replaced by one leaf mapping `pa`: a leaf of its level fits there and every table below
    /// it is empty (what a range map over a span whose mappings are gone but whose tables
    /// stayed, e.g. after another mapper's unmap, merges into a block). Tables of a shared
    /// kernel half stay; so does an entry back into the walk's path. Pure: both passes ask it
    /// and get the same answer.
    #[inline(always)]
    fn merges<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
        &self,
        pt: &PageTable<A, M, F, T>,
        c: &Chunk,
        next: PhyAddr,
        pa: u64,
    ) -> bool {
        self.data.is_none()
            && leaf_fits(c.level, &c.piece, pa, pt.arch.page_sizes(), self.cap)
            && !c.looped
            && !pt.pinned(c.level)
            && pt.subtree_is_empty(next, c.level - 1)
    }
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Whether the table `table` (entries at `level`) and every table below it hold no
    /// mapping. A table the accessor cannot reach, or a table entry where the format has none,
    /// counts as not empty (nothing is merged over it). Each step goes one level down, so the
    /// scan ends even over entries that loop.
    fn subtree_is_empty(&self, table: PhyAddr, level: u8) -> bool {
        let Some(base) = self.mem.frame_ptr(table) else {
            return false;
        };
        (0..ENTRIES).all(|i| {
            // SAFETY: `mem` reaches `table` at `base`; i < 512.
            let raw = unsafe { Slot::new(table, base.cast(), i) }.load();
            match self.arch.decode(raw, level) {
                Entry::Invalid => true,
                Entry::Leaf(_) => false,
                Entry::Table(next) => level > 0 && self.subtree_is_empty(next, level - 1),
            }
        })
    }

    /// Replaces the table entry `c` (pointing to the empty subtree `old`) with `leaf`, and
    /// hands the old tables to `gather` to free after its flush (walk caches included). Where
    /// the format needs break-before-make (AArch64: a table becoming a block, Arm ARM
    /// D8.16.1): the entry is made invalid and invalidated first; else (x86) one store, the
    /// gather invalidating the old walk before the tables are freed.
    fn merge(&mut self, c: &Chunk, old: PhyAddr, leaf: u64, gather: &mut Gather) {
        if gather.tables_full() {
            self.finish_in_place(gather);
        }
        let va = self.va_at(c.piece.base);
        let hw = self.arch.hardware_may_write(c.raw, c.level);
        // Into someone else's hinted run: unhint it first.
        self.unhint_hole(c.slot, c.level, va);
        if self.arch.needs_break_before_make(c.raw, leaf, c.level) {
            c.slot.clear(&self.mem, hw, c.raw);
            self.tlb.flush_page(va);
            c.slot.store(&self.mem, 0, leaf);
        } else {
            c.slot.modify(&self.mem, hw, |_| leaf);
        }
        // The walk cache may hold the old tables.
        self.walk.clear();
        gather.invalidate(
            va,
            PageSize::from_level(c.level).unwrap_or(PageSize::Size4K),
            true,
        );
        gather.push_table(old, c.level - 1);
    }
}

/// Whether every entry of a new table at `level` for `piece` (mapped from `pa`) is a leaf of
/// that level: the piece and `pa` are aligned to the level's entries and the level has leaves
/// the call may use. Such a table is written by [`fill_table`] in one loop.
#[inline(always)]
fn all_leaves<A: Arch>(arch: &A, p: &MapPlan<'_>, level: u8, piece: &Piece, pa: u64) -> bool {
    let mask = entry_span(level) - 1;
    PageSize::from_level(level)
        .is_some_and(|size| level <= p.cap.level() && arch.page_sizes().contains(size))
        && (piece.start | piece.end | pa) & mask == 0
}

/// Writes every entry of the unpublished table frame `table` (reached at `base`; its contents
/// are not read and need not be zeroed): leaves at `level` for `piece` (a `level + 1` entry's
/// share of the range, [`all_leaves`]), with the contiguous hint on every complete aligned run
/// inside the range, and 0 everywhere else. Reports the frame as initialised to the accessor
/// (the same as zeroed, then filled).
#[inline(always)]
fn fill_table<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    pt: &PageTable<A, M, F, T>,
    p: &MapPlan<'_>,
    (table, base): (PhyAddr, NonNull<u64>),
    level: u8,
    piece: &Piece,
) {
    let shift = 12 + 9 * u32::from(level);
    let step = 1u64 << shift;
    let first = ((piece.start >> shift) & 0x1ff) as usize;
    let count = ((piece.end - piece.start) >> shift) as usize;
    let last = first + count;
    let pa0 = p.pa_of(piece);
    // Locals, not loads through `pt` and `p` inside the loop: the atomic stores there would
    // make the compiler reload and re-encode them for every entry.
    let enc = LeafEncoder::new(pt.arch, level, p.attrs);
    pt.mem.note_zeroed(table);
    // SAFETY (every `Slot::new` below): an unpublished table frame from the reserve, reached at
    // `base`; indices stay below 512 (the piece lies inside one entry of the level above).
    let store = |i: usize, v: u64| unsafe { Slot::new(table, base, i) }.store(&pt.mem, 0, v);
    for i in 0..first {
        store(i, 0);
    }
    // Runs of the contiguous hint (or one run without it): the hint is decided once per run.
    let run = pt
        .arch
        .contiguous_hint(level)
        .map_or(ENTRIES, |h| h.entries);
    let mut i = first;
    while i < last {
        let n = (run - i % run).min(last - i);
        let off = (i - first) as u64 * step;
        let (bits, pa) = (piece.start + off, pa0 + off);
        let bit = pt
            .run_hintable(level, bits, p.start, p.end, pa)
            .unwrap_or(0);
        for j in 0..n {
            let leaf = enc.leaf(PhyAddr::new(pa + j as u64 * step));
            store(i + j, leaf | bit);
        }
        i += n;
    }
    for i in last..ENTRIES {
        store(i, 0);
    }
}

/// Pass 2 of `map_range`.
pub(in crate::table) struct Commit<'p, 'g>(pub(in crate::table) &'p mut MapPlan<'g>);

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Visitor<PageTable<A, M, F, T>>
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
                    // Into a hole of someone else's hinted run: unhint the run first.
                    pt.unhint_hole(c.slot, c.level, pt.va_at(c.piece.base));
                    c.slot.store(&pt.mem, c.raw, leaf);
                    return Ok(Step::Next);
                }
                if p.data.is_none() && all_leaves(&pt.arch, p, c.level - 1, &c.piece, pa) {
                    // A new table holding only new leaves: filled in one tight loop (no
                    // per-entry visit, no zeroing first), then linked as `leave` would.
                    let new = p.reserve.pop_raw(&pt.mem);
                    let (table, ptr) = new.ok_or(broken(c.piece.start, false))?;
                    fill_table(pt, p, (table, ptr.cast()), c.level - 1, &c.piece);
                    pt.tlb.order_table_writes();
                    c.slot
                        .store(&pt.mem, c.raw, pt.arch.table_entry(table, p.attrs));
                    return Ok(Step::Next);
                }
                // A new table, filled off to the side and linked in `leave`.
                let (table, _) = p.reserve.pop(&pt.mem).ok_or(broken(c.piece.start, false))?;
                Ok(Step::Into(table))
            }
            Entry::Table(next) if p.merges(pt, c, next, pa) => {
                let mut leaf = pt.arch.leaf_entry(PhyAddr::new(pa), c.level, p.attrs);
                if let Some(bit) = pt.run_hintable(c.level, c.piece.base, p.start, p.end, pa) {
                    leaf |= bit;
                }
                pt.merge(c, next, leaf, p.gather);
                Ok(Step::Next)
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
