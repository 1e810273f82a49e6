//! Single-page operations: translate, map, unmap and protect one page of a given size.

use super::walk::{Hit, WalkError};
use super::{PageTable, Translation, Unmapped};
use crate::arch::{Arch, Entry};
use crate::{
    AddrError, Attrs, Flush, FrameAllocator, MapError, PageSize, PhyAddr, PhysMem, ProtectError,
    Tlb, TranslateError, UnmapError, VirtAddr,
};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Translates `va` as the MMU would: physical address, page size and the effective
    /// attributes over all levels. Entries the hardware would fault on (reserved bits, output
    /// addresses beyond the output size) count as not mapped.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable, TranslateError, VirtAddr};
    /// # let mem = EmuMemory::new(1);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert_eq!(pt.translate(VirtAddr::new(0x1000)), Err(TranslateError::NotMapped));
    /// ```
    #[inline(always)]
    pub fn translate(&self, va: VirtAddr) -> Result<Translation, TranslateError> {
        self.arch.check_va(va)?;
        let hit = self
            .find(va)
            .map_err(|_| TranslateError::InvalidPageTable)?;
        let Entry::Leaf(frame) = hit.entry else {
            return Err(TranslateError::NotMapped);
        };
        let size = PageSize::from_level(hit.level).ok_or(TranslateError::InvalidPageTable)?;
        Ok(Translation {
            pa: PhyAddr::new(frame.as_u64() | va.page_offset(size)),
            page: va.align_down(size),
            frame,
            size,
            attrs: self
                .arch
                .effective_attrs(hit.raw, hit.level, hit.limits.get()),
        })
    }

    /// The raw leaf descriptor translating `va` and its level (0 = 4 KiB), for inspection
    /// (dumps, tests, debugging a format's bits).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RO) }
    ///     .unwrap()
    ///     .flush();
    /// let (level, raw) = pt.raw_entry(VirtAddr::new(0x20_1000)).unwrap();
    /// assert_eq!((level, raw & 0x000f_ffff_ffff_f000), (1, 0x40_0000));
    /// ```
    pub fn raw_entry(&self, va: VirtAddr) -> Result<(u8, u64), TranslateError> {
        self.arch.check_va(va)?;
        let hit = self
            .find(va)
            .map_err(|_| TranslateError::InvalidPageTable)?;
        match hit.entry {
            Entry::Leaf(_) => Ok((hit.level, hit.raw)),
            _ => Err(TranslateError::NotMapped),
        }
    }

    /// Maps the page of `size` at `va` to the frame at `pa`.
    ///
    /// Fails, changing nothing, if the input is invalid, the page (or a larger page around it) is
    /// already mapped, or frames for intermediate tables run out. If a table entry above
    /// restricts what `attrs` grant (taken-over tables), the restriction is pushed down to the
    /// existing entries below it and lifted (see the `widen` module); the token then
    /// invalidates walk caches too.
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
    #[inline(always)]
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
        if self.arch.pa_bits() < 64 && pa.as_u64() >> self.arch.pa_bits() != 0 {
            return Err(MapError::PhysAddrTooWide);
        }
        let target = size.level();
        let leaf = self.arch.leaf_entry(pa, target, attrs);
        let hit = self.find_to(va, target).map_err(|e| match e {
            WalkError::Unreachable => MapError::InvalidPageTable,
            WalkError::Recursive => MapError::RecursiveTable,
        })?;
        // The common case: the entry is there and free, and nothing above restricts the leaf.
        if hit.level == target && hit.entry == Entry::Invalid && !hit.limits.get().blocks(attrs) {
            // Into a hole of someone else's hinted run: unhint the run first.
            self.unhint_hole(hit.slot, target, va);
            hit.slot.store(&self.mem, hit.raw, leaf);
            return Ok(Flush::publish(self.tlb.clone()));
        }
        self.map_rest(va, hit, target, leaf, attrs)
    }

    /// The rest of [`map`](Self::map): conflicts, new tables, lifted restrictions.
    #[inline(never)]
    fn map_rest(
        &mut self,
        va: VirtAddr,
        hit: Hit,
        target: u8,
        leaf: u64,
        attrs: Attrs,
    ) -> Result<Flush<T>, MapError> {
        let chain = match hit.entry {
            Entry::Leaf(_) => return Err(MapError::AlreadyMapped),
            Entry::Table(_) => return Err(MapError::HugePageConflict),
            Entry::Invalid if hit.level == target => None,
            Entry::Invalid => Some(self.build_chain(va, hit.level, target, leaf, attrs)?),
        };
        // Nothing can fail from here on.
        let widened = hit.limits.get().blocks(attrs) && self.widen_path(va, hit.level, attrs);
        match chain {
            None => {
                // Into a hole of someone else's hinted run: unhint the run first.
                self.unhint_hole(hit.slot, target, va);
                hit.slot.store(&self.mem, hit.raw, leaf)
            }
            Some(chain) => self.link_chain(hit.slot, hit.raw, chain, attrs),
        }
        Ok(if widened {
            Flush::page(self.tlb.clone(), va)
        } else {
            Flush::publish(self.tlb.clone())
        })
    }

    /// Removes the mapping of the page of `size` starting at `va` and returns what it mapped,
    /// with the Accessed/Dirty state the entry held (read and cleared in one atomic swap where
    /// the hardware writes entries). The data frame is not freed; emptied tables are not
    /// reclaimed (the token owns no frames: use [`unmap_range`](Self::unmap_range) for both).
    ///
    /// Refuses to act on another size than asked: a 4 KiB page inside (or at the start of) a
    /// larger page is `InsideHugePage(larger)` — [`unmap_range`](Self::unmap_range) splits it —
    /// and a smaller page where a larger one was asked is `PageSizeMismatch(smaller)`.
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
    /// let (gone, flush) = unsafe { pt.unmap(va, PageSize::Size4K) }.unwrap();
    /// flush.flush();
    /// assert_eq!(gone.frame, PhyAddr::new(0x9000));
    /// assert_eq!(unsafe { pt.unmap(va, PageSize::Size4K) }.unwrap_err(), UnmapError::NotMapped);
    /// ```
    #[inline(always)]
    pub unsafe fn unmap(
        &mut self,
        va: VirtAddr,
        size: PageSize,
    ) -> Result<(Unmapped, Flush<T>), UnmapError> {
        let (hit, frame) = self.leaf_at(va, size)?;
        // One entry of a hinted run is about to change: unhint the run first.
        let raw = self.unhint(hit.slot, hit.raw, hit.level, va);
        let hw = self.arch.hardware_may_write(raw, hit.level);
        let old = hit.slot.clear(&self.mem, hw, raw);
        let attrs = self.arch.leaf_attrs(old, hit.level);
        let (accessed, dirty) = self.arch.accessed_dirty(old, hit.level);
        Ok((
            Unmapped {
                frame,
                size,
                attrs,
                accessed,
                dirty,
            },
            Flush::leaf(self.tlb.clone(), va),
        ))
    }

    /// Replaces the attributes of the page of `size` starting at `va` (keeping its frame and
    /// the hardware's Accessed/Dirty bits); refuses another size as [`unmap`](Self::unmap)
    /// does ([`protect_range`](Self::protect_range) splits). Uses break-before-make when the architecture requires it
    /// (memory-type changes on AArch64); lifts upper-level restrictions as [`map`](Self::map)
    /// does.
    ///
    /// Changing the memory type of a page (e.g. write-back to device) needs cache maintenance
    /// by the caller as well: see the crate documentation of each backend.
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
    /// unsafe { pt.update_flags(va, PageSize::Size4K, Flags::RO) }.unwrap().flush();
    /// assert_eq!(pt.translate(va).unwrap().attrs.flags, Flags::RO);
    /// ```
    #[inline(always)]
    pub unsafe fn update_flags(
        &mut self,
        va: VirtAddr,
        size: PageSize,
        attrs: impl Into<Attrs>,
    ) -> Result<Flush<T>, ProtectError> {
        let attrs = attrs.into();
        attrs.validate(self.policy)?;
        let (hit, frame) = self.leaf_at(va, size)?;
        let widened = hit.limits.get().blocks(attrs) && self.widen_path(va, hit.level, attrs);
        let hw = self.arch.hardware_updates_entries();
        // The software bit (a copy-on-write mark) is the page's state, not an attribute.
        let new =
            self.arch.leaf_entry(frame, hit.level, attrs) | (hit.raw & self.arch.software_bit());
        // The entry may have gained restrictions pushed down by the widening: read it again
        // then; and unhint its contiguous run (one entry of it is about to change).
        let raw = if widened { hit.slot.load() } else { hit.raw };
        let current = self.unhint(hit.slot, raw, hit.level, va);
        let hw = hw && self.arch.hardware_may_write(current, hit.level);
        if self.arch.needs_break_before_make(current, new, hit.level) {
            // Break (atomically, keeping what the hardware wrote), invalidate, then make.
            let old = hit.slot.clear(&self.mem, hw, current);
            self.tlb.flush_leaf(va);
            hit.slot
                .store(&self.mem, 0, self.arch.keep_hardware_bits(old, new));
        } else if hw {
            hit.slot.modify(&self.mem, true, |old| {
                self.arch.keep_hardware_bits(old, new)
            });
        } else {
            // Nothing else writes entries of this format: the entry still holds `current`.
            let next = self.arch.keep_hardware_bits(current, new);
            hit.slot.store(&self.mem, current, next);
        }
        Ok(if widened {
            Flush::page(self.tlb.clone(), va)
        } else {
            Flush::leaf(self.tlb.clone(), va)
        })
    }

    /// The leaf mapping the page of `size` that starts at `va` (translated by this regime),
    /// with its frame. The walk stops at the level of `size`; what else it finds there is
    /// sorted out by [`leaf_error`](Self::leaf_error), off the hot path.
    #[inline(always)]
    pub(crate) fn leaf_at(
        &self,
        va: VirtAddr,
        size: PageSize,
    ) -> Result<(Hit, PhyAddr), LeafError> {
        if !va.is_aligned(size) {
            return Err(LeafError::NotAligned);
        }
        self.arch.check_va(va).map_err(LeafError::Addr)?;
        let target = size.level();
        match self.find_to(va, target) {
            Ok(hit) => match hit.entry {
                Entry::Leaf(frame) if hit.level == target => Ok((hit, frame)),
                _ => Err(self.leaf_error(va, target, hit)),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Why the walk to `va` (for a leaf at `target`) ended at `hit` instead: nothing mapped,
    /// a larger page around `va`, or a table where the leaf should be (then the walk goes on
    /// to report the smaller page below it, if there is one at `va`).
    #[cold]
    #[inline(never)]
    fn leaf_error(&self, va: VirtAddr, target: u8, hit: Hit) -> LeafError {
        let hit = match hit.entry {
            Entry::Table(_) => match self.find(va) {
                Ok(below) => below,
                Err(e) => return e.into(),
            },
            _ => hit,
        };
        let Entry::Leaf(_) = hit.entry else {
            return LeafError::NotMapped;
        };
        match PageSize::from_level(hit.level) {
            Some(found) if hit.level > target => LeafError::InsideHugePage(found),
            Some(found) => LeafError::SizeMismatch(found),
            None => LeafError::InvalidTable,
        }
    }
}

impl From<WalkError> for LeafError {
    #[inline]
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::Unreachable => LeafError::InvalidTable,
            WalkError::Recursive => LeafError::Recursive,
        }
    }
}

/// Why [`PageTable::leaf_at`] found no leaf starting at an address.
pub(crate) enum LeafError {
    NotAligned,
    Addr(AddrError),
    InvalidTable,
    Recursive,
    NotMapped,
    InsideHugePage(PageSize),
    SizeMismatch(PageSize),
}

impl From<LeafError> for UnmapError {
    #[inline]
    fn from(e: LeafError) -> Self {
        match e {
            LeafError::NotAligned => UnmapError::AddressNotAligned,
            LeafError::Addr(a) => a.into(),
            LeafError::InvalidTable => UnmapError::InvalidPageTable,
            LeafError::Recursive => UnmapError::RecursiveTable,
            LeafError::NotMapped => UnmapError::NotMapped,
            LeafError::InsideHugePage(s) => UnmapError::InsideHugePage(s),
            LeafError::SizeMismatch(s) => UnmapError::PageSizeMismatch(s),
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
            LeafError::Recursive => ProtectError::RecursiveTable,
            LeafError::NotMapped => ProtectError::NotMapped,
            LeafError::InsideHugePage(s) => ProtectError::InsideHugePage(s),
            LeafError::SizeMismatch(s) => ProtectError::PageSizeMismatch(s),
        }
    }
}
