//! [`PageTable`]: one address space's translation tables, generic over the architecture's
//! descriptor format, the physical-memory accessor, the frame allocator and the TLB hook.
//!
//! This is the instance API every backend shares; architecture crates only supply an [`Arch`].

use core::cell::Cell;
use core::ptr::NonNull;

use crate::arch::{table_index, Arch, Entry};
use crate::{
    AddrError, Attrs, Flush, FrameAllocator, MapError, PageSize, PhyAddr, PhysMem, Policy,
    ProtectError, Tlb, TranslateError, UnmapError, VirtAddr,
};

/// Where a virtual address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the translated byte (frame + offset).
    pub pa: PhyAddr,
    /// The first virtual address of the page containing it.
    pub page: VirtAddr,
    /// The first physical address of that page.
    pub frame: PhyAddr,
    /// The size of that page.
    pub size: PageSize,
    /// The attributes the entry grants (canonical form).
    pub attrs: Attrs,
}

/// One mapping found by [`PageTable::for_each_mapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the page.
    pub page: VirtAddr,
    /// First physical address of the page.
    pub frame: PhyAddr,
    /// Page size.
    pub size: PageSize,
    /// Attributes (canonical form).
    pub attrs: Attrs,
}

/// What an unmap removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// The physical frame that was mapped (not freed: data frames belong to the caller).
    pub frame: PhyAddr,
    /// Its size.
    pub size: PageSize,
    /// The attributes it had.
    pub attrs: Attrs,
}

/// The deepest walk: AArch64 and x86 both have at most 4 levels here (5-level paging would be 5).
const MAX_LEVELS: usize = 5;

/// One address space's page tables.
///
/// - `A`: the descriptor format and address rules ([`Arch`]).
/// - `M`: how physical table frames are reached ([`PhysMem`]).
/// - `F`: where table frames come from and go back to ([`FrameAllocator`]).
/// - `T`: TLB maintenance for this address space ([`Tlb`]); cloned into every returned
///   [`Flush`] token.
///
/// Every operation validates its input completely before it writes, builds new tables off to
/// the side and publishes them with one store, so an `Err` leaves tables and allocator exactly as
/// they were.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
///
/// let mem = EmuMemory::new(64);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// let frame = mem.allocate_data_frame().unwrap();
/// let va = VirtAddr::new(0x4000_0000);
/// unsafe { pt.map(va, frame, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// let t = pt.translate(VirtAddr::new(0x4000_0123)).unwrap();
/// assert_eq!(t.pa, PhyAddr::new(frame.as_u64() + 0x123));
/// assert_eq!(t.attrs.flags, Flags::RW);
/// ```
#[derive(Debug)]
pub struct PageTable<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> {
    arch: A,
    mem: M,
    frames: F,
    tlb: T,
    root: PhyAddr,
    policy: Policy,
    /// The last leaf (level-0) table a walk reached: `(va >> 21, first entry)`. Sequential
    /// operations skip the upper levels. Cleared whenever a table could be unlinked or freed.
    leaf_table: Cell<Option<(u64, NonNull<u64>)>>,
}

// SAFETY: the only non-`Send` field is the walk cache, whose pointer targets a table owned by
// this value (moving the value moves that ownership along).
unsafe impl<A, M, F, T> Send for PageTable<A, M, F, T>
where
    A: Arch + Send,
    M: PhysMem + Send,
    F: FrameAllocator + Send,
    T: Tlb + Clone + Send,
{
}

/// The tag of the leaf table covering `va` in the walk cache.
#[inline(always)]
const fn leaf_tag(va: VirtAddr) -> u64 {
    va.as_u64() >> 21
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// A new, empty address space: allocates and zeroes a root table.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// let mem = EmuMemory::new(1);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert_eq!(mem.frames_in_use(), 1); // the root
    /// ```
    pub fn new(arch: A, mem: M, mut frames: F, tlb: T) -> Result<Self, MapError> {
        let root = frames.allocate_frame().ok_or(MapError::OutOfMemory)?;
        let Some(ptr) = mem.frame_ptr(root) else {
            // SAFETY: just allocated, never published.
            unsafe { frames.deallocate_frame(root) };
            return Err(MapError::InvalidPageTable);
        };
        // SAFETY: `PhysMem` guarantees 4 KiB of writable memory for an allocated frame.
        unsafe { zero_frame(ptr) };
        // SAFETY: a zeroed root is a valid empty table, reachable through `mem`, owned by us.
        Ok(unsafe { Self::from_root(arch, mem, frames, tlb, root) })
    }

    /// Takes over existing tables rooted at `root` (e.g. the active CR3/TTBR0 tables).
    ///
    /// # Safety
    ///
    /// `root` and every table reachable from it must be valid tables of format `A`, reachable
    /// through `mem`, owned by this value from now on (frames of tables it frees go to `frames`),
    /// and not edited concurrently by anyone else.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// let mem = EmuMemory::new(4);
    /// let a = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let root = a.root();
    /// core::mem::forget(a);
    /// let b = unsafe { PageTable::from_root(EmuArch::default(), &mem, &mem, NoTlb, root) };
    /// assert_eq!(b.root(), root);
    /// ```
    pub unsafe fn from_root(arch: A, mem: M, frames: F, tlb: T, root: PhyAddr) -> Self {
        PageTable {
            arch,
            mem,
            frames,
            tlb,
            root,
            policy: Policy::default(),
            leaf_table: Cell::new(None),
        }
    }

    /// Drops the cached walk. Call after the tables were edited by other means (e.g. another
    /// crate's mapper freeing empty tables); every operation of this type keeps it valid itself.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(1);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// pt.forget_cached_walks();
    /// ```
    #[inline]
    pub fn forget_cached_walks(&mut self) {
        self.leaf_table.set(None);
    }

    /// The physical address of the root table (what goes into CR3 / TTBRn).
    #[inline]
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.root
    }

    /// The translation regime.
    #[inline]
    #[must_use]
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The physical-memory accessor.
    #[inline]
    #[must_use]
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The frame allocator.
    #[inline]
    #[must_use]
    pub fn frames(&self) -> &F {
        &self.frames
    }

    /// The frame allocator, mutably (e.g. to refill it).
    #[inline]
    pub fn frames_mut(&mut self) -> &mut F {
        &mut self.frames
    }

    /// The TLB hook.
    #[inline]
    #[must_use]
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// The attribute policy (W^X by default).
    #[inline]
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Replaces the attribute policy; existing mappings are not re-checked.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable, Policy};
    /// # let mem = EmuMemory::new(1);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// pt.set_policy(Policy { allow_write_execute: true });
    /// assert!(pt.policy().allow_write_execute);
    /// ```
    #[inline]
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Translates `va`: physical address, page size and attributes.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable, TranslateError, VirtAddr};
    /// # let mem = EmuMemory::new(1);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert_eq!(pt.translate(VirtAddr::new(0x1000)), Err(TranslateError::NotMapped));
    /// ```
    #[inline]
    pub fn translate(&self, va: VirtAddr) -> Result<Translation, TranslateError> {
        self.arch.check_va(va)?;
        let hit = self.find(va).ok_or(TranslateError::InvalidPageTable)?;
        let Entry::Leaf(frame) = hit.entry else {
            return Err(TranslateError::NotMapped);
        };
        let size = PageSize::from_level(hit.level).ok_or(TranslateError::InvalidPageTable)?;
        Ok(Translation {
            pa: PhyAddr::new(frame.as_u64() | va.page_offset(size)),
            page: va.align_down(size),
            frame,
            size,
            attrs: self.arch.leaf_attrs(hit.raw, hit.level),
        })
    }

    /// Maps the page of `size` at `va` to the frame at `pa`.
    ///
    /// Fails, changing nothing, if the input is invalid, the page (or a larger page around it) is
    /// already mapped, or frames for intermediate tables run out.
    ///
    /// # Safety
    ///
    /// If this table is active, the new mapping must not make memory that Rust code relies on
    /// accessible in a way that breaks its aliasing rules.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, MapError, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let (va, pa) = (VirtAddr::new(0x20_0000), PhyAddr::new(0x4000_0000));
    /// unsafe { pt.map(va, pa, PageSize::Size2M, Flags::RO) }.unwrap().flush();
    /// let again = unsafe { pt.map(va, pa, PageSize::Size4K, Flags::RO) };
    /// assert_eq!(again.unwrap_err(), MapError::AlreadyMapped);
    /// ```
    pub unsafe fn map(
        &mut self,
        va: VirtAddr,
        pa: PhyAddr,
        size: PageSize,
        attrs: impl Into<Attrs>,
    ) -> Result<Flush<T>, MapError> {
        let attrs = attrs.into();
        attrs.validate(self.policy)?;
        if !self.arch.page_sizes().contains(size) {
            return Err(MapError::PageSizeNotSupported(size));
        }
        if !va.is_aligned(size) || !pa.is_aligned(size) {
            return Err(MapError::AddressNotAligned);
        }
        self.arch.check_va(va)?;
        if pa.as_u64() >> self.arch.pa_bits() != 0 {
            return Err(MapError::PhysAddrTooWide);
        }
        let target = size.level();
        let leaf = self.arch.leaf_entry(pa, target, attrs);

        if target == 0 {
            if let Some(slot) = self.cached_leaf_slot(va) {
                // SAFETY: the cached table is live (cache invariant).
                if self.arch.decode(unsafe { read_entry(slot) }, 0) != Entry::Invalid {
                    return Err(MapError::AlreadyMapped);
                }
                // SAFETY: as above.
                unsafe { write_entry(slot, leaf) };
                if attrs.user {
                    self.widen_path(va, target, attrs);
                }
                return Ok(Flush::publish(self.tlb.clone()));
            }
        }

        let mut level = self.arch.levels() - 1;
        let mut table = self.root;
        loop {
            let slot = self
                .slot(table, table_index(va, level))
                .ok_or(MapError::InvalidPageTable)?;
            // SAFETY: `slot` points into a live table frame (PhysMem contract).
            let raw = unsafe { read_entry(slot) };
            match self.arch.decode(raw, level) {
                Entry::Invalid if level == target => {
                    // SAFETY: as above.
                    unsafe { write_entry(slot, leaf) };
                    break;
                }
                Entry::Invalid => {
                    self.build_chain(slot, va, level, target, leaf, attrs)?;
                    break;
                }
                Entry::Leaf(_) => return Err(MapError::AlreadyMapped),
                Entry::Table(_) if level == target => return Err(MapError::HugePageConflict),
                Entry::Table(next) => {
                    if level == 1 {
                        self.remember_leaf_table(va, next);
                    }
                    table = next;
                    level -= 1;
                }
            }
        }
        if attrs.user {
            self.widen_path(va, target, attrs);
        }
        Ok(Flush::publish(self.tlb.clone()))
    }

    /// Removes the mapping of the page starting at `va`, whatever its size, and returns what it
    /// mapped. The data frame is not freed.
    ///
    /// # Safety
    ///
    /// If this table is active, nothing may still rely on the mapping once the returned token is
    /// flushed.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, UnmapError, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let va = VirtAddr::new(0x7000);
    /// unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// let (gone, flush) = unsafe { pt.unmap(va) }.unwrap();
    /// flush.flush();
    /// assert_eq!(gone.frame, PhyAddr::new(0x9000));
    /// assert_eq!(unsafe { pt.unmap(va) }.unwrap_err(), UnmapError::NotMapped);
    /// ```
    pub unsafe fn unmap(&mut self, va: VirtAddr) -> Result<(Unmapped, Flush<T>), UnmapError> {
        let (hit, frame, size) = self.leaf_at(va)?;
        let attrs = self.arch.leaf_attrs(hit.raw, hit.level);
        // SAFETY: `hit.slot` points into a live table frame.
        unsafe { write_entry(hit.slot, 0) };
        Ok((
            Unmapped { frame, size, attrs },
            Flush::page(self.tlb.clone(), va),
        ))
    }

    /// Replaces the attributes of the page starting at `va` (keeping its frame). Uses
    /// break-before-make when the architecture requires it (memory-type changes on AArch64).
    ///
    /// # Safety
    ///
    /// As for [`map`](Self::map): the new attributes must not break what Rust code relies on.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let va = VirtAddr::new(0x7000);
    /// unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// unsafe { pt.update_flags(va, Flags::RO) }.unwrap().flush();
    /// assert_eq!(pt.translate(va).unwrap().attrs.flags, Flags::RO);
    /// ```
    pub unsafe fn update_flags(
        &mut self,
        va: VirtAddr,
        attrs: impl Into<Attrs>,
    ) -> Result<Flush<T>, ProtectError> {
        let attrs = attrs.into();
        attrs.validate(self.policy)?;
        let (hit, frame, _size) = self.leaf_at(va)?;
        let new = self.arch.leaf_entry(frame, hit.level, attrs);
        if self.arch.needs_break_before_make(hit.raw, new, hit.level) {
            // SAFETY: live slot; break, invalidate, then make.
            unsafe { write_entry(hit.slot, 0) };
            self.tlb.flush_page(va);
        }
        // SAFETY: live slot.
        unsafe { write_entry(hit.slot, new) };
        if attrs.user {
            self.widen_path(va, hit.level, attrs);
        }
        Ok(Flush::page(self.tlb.clone(), va))
    }

    /// Frees every table of this address space (not the data frames mapped by it) and returns the
    /// allocator. Calls [`Tlb::flush_all`] first, so no cached translation or walk-cache entry
    /// survives into the freed frames' next use.
    ///
    /// # Safety
    ///
    /// The tables must not be active on any CPU (switch away first) nor shared with another
    /// address space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x7000), PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }
    ///     .unwrap()
    ///     .flush();
    /// assert_eq!(mem.frames_in_use(), 4);
    /// unsafe { pt.destroy() };
    /// assert_eq!(mem.frames_in_use(), 0);
    /// ```
    pub unsafe fn destroy(mut self) -> F {
        self.tlb.flush_all();
        let (root, top) = (self.root, self.arch.levels() - 1);
        self.leaf_table.set(None);
        // SAFETY: caller guarantees the tables are unused; every table is freed exactly once
        // because a valid tree has no shared sub-tables.
        unsafe { self.free_table(root, top) };
        self.frames
    }

    /// Calls `f` for every mapping, in ascending order of table index (address order within
    /// each half of the address space). Tables that cannot be reached are skipped.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RO) }
    ///     .unwrap()
    ///     .flush();
    /// let mut seen = Vec::new();
    /// pt.for_each_mapping(|m| seen.push((m.page, m.frame, m.size)));
    /// assert_eq!(seen, [(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M)]);
    /// ```
    pub fn for_each_mapping(&self, mut f: impl FnMut(Mapping)) {
        self.visit(self.root, self.arch.levels() - 1, 0, &mut f);
    }

    fn visit(&self, table: PhyAddr, level: u8, prefix: u64, f: &mut impl FnMut(Mapping)) {
        for i in 0..crate::ENTRIES {
            let Some(slot) = self.slot(table, i) else {
                return;
            };
            // SAFETY: live table frame.
            let raw = unsafe { read_entry(slot) };
            let bits = prefix | (i as u64) << (12 + 9 * u32::from(level));
            match self.arch.decode(raw, level) {
                Entry::Invalid => {}
                Entry::Table(next) if level > 0 => self.visit(next, level - 1, bits, f),
                Entry::Table(_) => {}
                Entry::Leaf(frame) => {
                    if let Some(size) = PageSize::from_level(level) {
                        let page = self.arch.va_from_bits(bits);
                        f(Mapping {
                            page,
                            frame,
                            size,
                            attrs: self.arch.leaf_attrs(raw, level),
                        });
                    }
                }
            }
        }
    }

    // ---- internals -------------------------------------------------------------------------

    /// The leaf mapping the page that starts at `va` (4 KiB-aligned, translated by this regime),
    /// with its frame and size.
    #[inline(always)]
    fn leaf_at(&self, va: VirtAddr) -> Result<(Hit, PhyAddr, PageSize), LeafError> {
        if !va.is_aligned(PageSize::Size4K) {
            return Err(LeafError::NotAligned);
        }
        self.arch.check_va(va).map_err(LeafError::Addr)?;
        let hit = self.find(va).ok_or(LeafError::InvalidTable)?;
        let Entry::Leaf(frame) = hit.entry else {
            return Err(LeafError::NotMapped);
        };
        let size = PageSize::from_level(hit.level).ok_or(LeafError::InvalidTable)?;
        if !va.is_aligned(size) {
            return Err(LeafError::InsideHugePage(size));
        }
        Ok((hit, frame, size))
    }

    /// Pointer to entry `index` of the table at `table`.
    #[inline(always)]
    fn slot(&self, table: PhyAddr, index: usize) -> Option<NonNull<u64>> {
        let base = self.mem.frame_ptr(table)?.cast::<u64>();
        // SAFETY: index < 512 and the frame is 4 KiB (PhysMem contract).
        Some(unsafe { base.add(index) })
    }

    /// The level-0 entry for `va` if the walk cache holds its table.
    #[inline(always)]
    fn cached_leaf_slot(&self, va: VirtAddr) -> Option<NonNull<u64>> {
        match self.leaf_table.get() {
            // SAFETY: index < 512 within a live table frame.
            Some((tag, base)) if tag == leaf_tag(va) => {
                Some(unsafe { base.add(table_index(va, 0)) })
            }
            _ => None,
        }
    }

    /// Records the leaf table covering `va`.
    #[inline(always)]
    fn remember_leaf_table(&self, va: VirtAddr, table: PhyAddr) {
        if let Some(base) = self.mem.frame_ptr(table) {
            self.leaf_table.set(Some((leaf_tag(va), base.cast())));
        }
    }

    /// Walks from the root to the first leaf or invalid entry on the way to `va`. `None` if a
    /// table cannot be reached.
    #[inline(always)]
    fn find(&self, va: VirtAddr) -> Option<Hit> {
        if let Some(slot) = self.cached_leaf_slot(va) {
            // SAFETY: the cached table is live (cache invariant).
            let raw = unsafe { read_entry(slot) };
            return Some(Hit {
                level: 0,
                slot,
                raw,
                entry: self.arch.decode(raw, 0),
            });
        }
        let mut level = self.arch.levels() - 1;
        let mut table = self.root;
        loop {
            let slot = self.slot(table, table_index(va, level))?;
            // SAFETY: live table frame.
            let raw = unsafe { read_entry(slot) };
            match self.arch.decode(raw, level) {
                Entry::Table(next) if level > 0 => {
                    if level == 1 {
                        self.remember_leaf_table(va, next);
                    }
                    table = next;
                    level -= 1;
                }
                Entry::Table(_) => return None,
                entry => {
                    return Some(Hit {
                        level,
                        slot,
                        raw,
                        entry,
                    })
                }
            }
        }
    }

    /// Allocates every table from `level - 1` down to `target`, fills the chain (leaf at the
    /// bottom) and publishes it into `slot` with one store. On failure nothing is linked and every
    /// frame taken is given back.
    fn build_chain(
        &mut self,
        slot: NonNull<u64>,
        va: VirtAddr,
        level: u8,
        target: u8,
        leaf: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let needed = usize::from(level - target);
        let mut new = [(PhyAddr::ZERO, NonNull::<u64>::dangling()); MAX_LEVELS];
        for i in 0..needed {
            let taken = self
                .frames
                .allocate_frame()
                .map(|f| (f, self.mem.frame_ptr(f)));
            let (frame, ptr) = match taken {
                Some((f, Some(p))) => (f, p),
                other => {
                    if let Some((f, None)) = other {
                        // SAFETY: just allocated, never published.
                        unsafe { self.frames.deallocate_frame(f) };
                    }
                    for &(f, _) in &new[..i] {
                        // SAFETY: allocated above, never published.
                        unsafe { self.frames.deallocate_frame(f) };
                    }
                    return Err(if other.is_none() {
                        MapError::OutOfMemory
                    } else {
                        MapError::InvalidPageTable
                    });
                }
            };
            // SAFETY: PhysMem contract for an allocated frame.
            unsafe { zero_frame(ptr) };
            new[i] = (frame, ptr.cast());
        }
        // new[i] is the table at level `level - 1 - i`; the last one is at `target`.
        let (_, bottom) = new[needed - 1];
        // SAFETY: every pointer below is a freshly zeroed, unpublished table frame.
        unsafe {
            write_entry(bottom.add(table_index(va, target)), leaf);
            for i in (0..needed - 1).rev() {
                let (child, _) = new[i + 1];
                let parent_level = level - 1 - i as u8;
                let entry = self.arch.table_entry(child, attrs);
                write_entry(new[i].1.add(table_index(va, parent_level)), entry);
            }
            write_entry(slot, self.arch.table_entry(new[0].0, attrs));
        }
        Ok(())
    }

    /// Widens every table entry above `target` on the walk to `va` for a leaf with `attrs`.
    fn widen_path(&mut self, va: VirtAddr, target: u8, attrs: Attrs) {
        let mut level = self.arch.levels() - 1;
        let mut table = self.root;
        while level > target {
            let Some(slot) = self.slot(table, table_index(va, level)) else {
                return;
            };
            // SAFETY: live table frame.
            let raw = unsafe { read_entry(slot) };
            let Entry::Table(next) = self.arch.decode(raw, level) else {
                return;
            };
            let wide = self.arch.widen_table_entry(raw, attrs);
            if wide != raw {
                // SAFETY: live table frame; only permission bits change.
                unsafe { write_entry(slot, wide) };
            }
            table = next;
            level -= 1;
        }
    }

    /// Frees `table` (at `level`) and every table below it.
    unsafe fn free_table(&mut self, table: PhyAddr, level: u8) {
        if level > 0 {
            for i in 0..crate::ENTRIES {
                let Some(slot) = self.slot(table, i) else {
                    break;
                };
                // SAFETY: live table frame.
                let raw = unsafe { read_entry(slot) };
                if let Entry::Table(next) = self.arch.decode(raw, level) {
                    // SAFETY: forwarded.
                    unsafe { self.free_table(next, level - 1) };
                }
            }
        }
        // SAFETY: caller's contract: the table is unreachable and ours.
        unsafe { self.frames.deallocate_frame(table) };
    }
}

/// Why [`PageTable::leaf_at`] found no leaf starting at an address.
enum LeafError {
    NotAligned,
    Addr(AddrError),
    InvalidTable,
    NotMapped,
    InsideHugePage(PageSize),
}

impl From<LeafError> for UnmapError {
    #[inline]
    fn from(e: LeafError) -> Self {
        match e {
            LeafError::NotAligned => UnmapError::AddressNotAligned,
            LeafError::Addr(a) => a.into(),
            LeafError::InvalidTable => UnmapError::InvalidPageTable,
            LeafError::NotMapped => UnmapError::NotMapped,
            LeafError::InsideHugePage(s) => UnmapError::InsideHugePage(s),
        }
    }
}

impl From<LeafError> for ProtectError {
    #[inline]
    fn from(e: LeafError) -> Self {
        match e {
            LeafError::NotAligned => ProtectError::AddressNotAligned,
            LeafError::Addr(a) => a.into(),
            LeafError::InvalidTable => ProtectError::InvalidPageTable,
            LeafError::NotMapped => ProtectError::NotMapped,
            LeafError::InsideHugePage(s) => ProtectError::InsideHugePage(s),
        }
    }
}

/// Result of a walk that stopped at a leaf or an invalid entry.
#[derive(Clone, Copy)]
struct Hit {
    level: u8,
    slot: NonNull<u64>,
    raw: u64,
    entry: Entry,
}

/// Reads one entry. Volatile: the hardware walker (and, on AArch64, the access-flag hardware
/// update) shares these words with us.
#[inline(always)]
unsafe fn read_entry(slot: NonNull<u64>) -> u64 {
    // SAFETY: caller passes a live, aligned entry pointer.
    unsafe { slot.as_ptr().read_volatile() }
}

/// Writes one entry with a single 64-bit store (never torn for the hardware walker).
#[inline(always)]
unsafe fn write_entry(slot: NonNull<u64>, value: u64) {
    // SAFETY: caller passes a live, aligned entry pointer.
    unsafe { slot.as_ptr().write_volatile(value) }
}

/// Zeroes a 4 KiB frame.
#[inline]
unsafe fn zero_frame(frame: NonNull<u8>) {
    // SAFETY: caller passes a writable 4 KiB frame.
    unsafe { core::ptr::write_bytes(frame.as_ptr(), 0, crate::PAGESIZE) }
}
