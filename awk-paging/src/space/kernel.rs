//! [`KernelSpace`]: the kernel's half, shared by every user space.

use super::{EditError, KernelHalf};
use crate::arch::{table_index, Arch};
use crate::table::entry::{zero_table, Slot};
use crate::{
    Attrs, Flags, FrameAllocator, Gather, MapError, PageTable, PhyAddr, PhysMem, ProtectError,
    RangeError, RangeOptions, Tlb, UnmapError, UnmappedPage, VirtAddr, ENTRIES,
};

/// The kernel's address space: a [`PageTable`] whose mappings are all global and kernel-only,
/// and, in the shared-root layout, whose root entries `first..512` each link a table that is
/// never detached, so user roots can link the same tables ([`half`](Self::half)).
///
/// Its TLB hook `T` must invalidate for every address space (AArch64 `vaae1is`/`vmalle1is`;
/// x86 `invlpg`, which drops global entries whatever the PCID).
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::space::KernelSpace;
/// use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
///
/// let mem = EmuMemory::new(300);
/// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
/// assert_eq!(mem.frames_in_use(), 1 + 256); // the root and the kernel half's tables
/// let va = VirtAddr::new(0xffff_8000_0000_0000);
/// let mut g = k.gather();
/// unsafe { k.map_range(va, PhyAddr::new(0x20_0000), 0x1000, Flags::RW, RangeOptions::default(), &mut g) }
///     .unwrap();
/// unsafe { k.unmap_range(va, 0x1000, &mut g, |_| {}) }.unwrap();
/// k.finish(g).unwrap();
/// assert_eq!(mem.frames_in_use(), 1 + 256); // the shared tables stay
/// assert!(k.table().translate(va).is_err());
/// ```
#[derive(Debug)]
pub struct KernelSpace<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> {
    pt: PageTable<A, M, F, T>,
    half: KernelHalf,
}

/// The top-level indices `va .. va + len` touches (first, last), if the range is translated
/// by `arch` at all (otherwise the operation reports why).
pub(super) fn top_indices<A: Arch>(arch: &A, va: VirtAddr, len: u64) -> Option<(usize, usize)> {
    let top = arch.levels().checked_sub(1)?;
    let last = va.checked_add(len.saturating_sub(1))?;
    arch.check_va(va).ok()?;
    arch.check_va(last).ok()?;
    Some((table_index(va, top), table_index(last, top)))
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> KernelSpace<A, M, F, T> {
    /// The shared-root layout (x86_64, `first = 256`): a root whose entries `first..512` each
    /// link a new, empty table. Fails with `OutOfMemory` (nothing kept, every frame given back)
    /// if the allocator runs out, `TableFrameTooWide` if a frame is beyond the format's
    /// addresses, `InvalidPageTable` if `first` is 0 or not below 512 (no user half, or no
    /// kernel half).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::space::KernelSpace;
    /// use awk_paging::{MapError, NoTlb};
    /// let mem = EmuMemory::new(100);
    /// let r = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256);
    /// assert_eq!(r.unwrap_err(), MapError::OutOfMemory);
    /// assert_eq!(mem.frames_in_use(), 0);
    /// ```
    pub fn new_shared(arch: A, mem: M, frames: F, tlb: T, first: usize) -> Result<Self, MapError> {
        if first == 0 || first >= ENTRIES {
            return Err(MapError::InvalidPageTable);
        }
        let mut pt = PageTable::new(arch, mem, frames, tlb)?;
        let root = pt.root();
        let link = |pt: &PageTable<A, M, F, T>, table: PhyAddr| {
            pt.arch().table_entry(table, Attrs::from(Flags::RW))
        };
        for i in first..ENTRIES {
            let taken = pt.frames_mut().allocate_frame();
            let ok = taken.and_then(|f| {
                let wide = pt.arch().pa_bits() < 64 && f.as_u64() >> pt.arch().pa_bits() != 0;
                let ptr = pt.mem().frame_ptr(f);
                match (wide, ptr) {
                    (false, Some(p)) => Some((f, p)),
                    _ => {
                        // SAFETY: just allocated, never linked.
                        unsafe { pt.frames_mut().deallocate_frame(f) };
                        None
                    }
                }
            });
            let Some((table, ptr)) = ok else {
                let error = if taken.is_none() {
                    MapError::OutOfMemory
                } else {
                    MapError::TableFrameTooWide
                };
                // SAFETY: never active (just built) and not shared with anyone yet.
                unsafe { pt.destroy() };
                return Err(error);
            };
            // SAFETY: a frame the PhysMem reaches, not linked anywhere yet.
            unsafe { zero_table(pt.mem(), table, ptr) };
            pt.tlb().order_table_writes();
            let Some(slot) = Slot::of(pt.mem(), root, i) else {
                // SAFETY: never linked; then the space was never active nor shared.
                unsafe { pt.frames_mut().deallocate_frame(table) };
                // SAFETY: as above.
                unsafe { pt.destroy() };
                return Err(MapError::InvalidPageTable);
            };
            slot.store(pt.mem(), 0, link(&pt, table));
        }
        pt.pin_top_tables();
        Ok(KernelSpace {
            pt,
            half: KernelHalf {
                root,
                first,
                end: ENTRIES,
            },
        })
    }

    /// The split-roots layout (AArch64, with a TTBR1 regime): a table of its own; user spaces
    /// share nothing with it ([`KernelHalf::NONE`]).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::space::{KernelHalf, KernelSpace};
    /// use awk_paging::NoTlb;
    /// let mem = EmuMemory::new(4);
    /// let k = KernelSpace::new_split(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert_eq!(k.half(), KernelHalf::NONE);
    /// ```
    pub fn new_split(arch: A, mem: M, frames: F, tlb: T) -> Result<Self, MapError> {
        Ok(KernelSpace {
            pt: PageTable::new(arch, mem, frames, tlb)?,
            half: KernelHalf::NONE,
        })
    }

    /// What user spaces share with this space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// assert_eq!(k.half().root(), k.root());
    /// assert_eq!(k.half().entries(), 256..512);
    /// ```
    #[must_use]
    pub fn half(&self) -> KernelHalf {
        self.half
    }

    /// The kernel's tables, for reading (translate, dumps).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// assert!(k.table().translate(va).is_err());
    /// ```
    #[must_use]
    pub fn table(&self) -> &PageTable<A, M, F, T> {
        &self.pt
    }

    /// The root (what goes into the kernel's CR3 / `TTBR1_EL1`).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// assert_eq!(k.root(), k.table().root());
    /// ```
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.pt.root()
    }

    /// An empty [`Gather`] for this space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// let g = k.gather();
    /// assert!(g.is_empty());
    /// k.finish(g).unwrap();
    /// ```
    pub fn gather(&self) -> Gather {
        self.pt.gather()
    }

    /// [`PageTable::finish`] on this space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// let mut g = k.gather();
    /// unsafe { k.map_range(va, PhyAddr::new(0x5000), 0x1000, Flags::RO, RangeOptions::default(), &mut g) }.unwrap();
    /// k.finish(g).unwrap();
    /// assert!(k.table().translate(va).unwrap().attrs.global);
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn finish(&mut self, gather: Gather) -> Result<(), Gather> {
        self.pt.finish(gather)
    }

    /// Checks that `va .. va + len` is the kernel's and `attrs` are kernel attributes, and
    /// returns them made global.
    fn check<E>(
        &self,
        va: VirtAddr,
        len: u64,
        attrs: Option<Attrs>,
    ) -> Result<Attrs, EditError<E>> {
        let attrs = attrs.unwrap_or_default();
        if attrs.user {
            return Err(EditError::WrongPrivilege);
        }
        if self.half != KernelHalf::NONE {
            if let Some((first, last)) = top_indices(self.pt.arch(), va, len) {
                if !(self.half.shares(first) && self.half.shares(last)) {
                    return Err(EditError::KernelHalf(va));
                }
            }
        }
        Ok(Attrs {
            global: true,
            ..attrs
        })
    }

    /// [`PageTable::map_range`] in the kernel half, always global (the entry is shared by
    /// every address space, and a non-global copy per ASID would escape the kernel's flushes).
    /// User attributes are refused ([`EditError::WrongPrivilege`]), and so is a range outside
    /// the kernel half ([`EditError::KernelHalf`]).
    ///
    /// # Safety
    ///
    /// As [`PageTable::map_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// let mut g = k.gather();
    /// let user = awk_paging::Attrs { user: true, ..awk_paging::Attrs::from(Flags::RO) };
    /// let e = unsafe { k.map_range(va, PhyAddr::new(0x5000), 0x1000, user, RangeOptions::default(), &mut g) };
    /// assert_eq!(e.unwrap_err(), awk_paging::space::EditError::WrongPrivilege);
    /// k.finish(g).unwrap();
    /// ```
    pub unsafe fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhyAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        opts: RangeOptions,
        gather: &mut Gather,
    ) -> Result<(), EditError<RangeError<MapError>>> {
        let attrs = self.check(va, len, Some(attrs.into()))?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.map_range(va, pa, len, attrs, opts, gather) }?)
    }

    /// [`PageTable::unmap_range`] in the kernel half; the tables linked from the root stay
    /// (user roots link them), deeper emptied tables are freed after the flush.
    ///
    /// # Safety
    ///
    /// As [`PageTable::unmap_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// let mut g = k.gather();
    /// unsafe { k.map_range(va, PhyAddr::new(0x5000), 0x1000, Flags::RO, RangeOptions::default(), &mut g) }.unwrap();
    /// unsafe { k.unmap_range(va, 0x1000, &mut g, |_| {}) }.unwrap();
    /// k.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), 257);
    /// ```
    pub unsafe fn unmap_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
        f: impl FnMut(UnmappedPage),
    ) -> Result<(), EditError<RangeError<UnmapError>>> {
        self.check(va, len, None)?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.unmap_range(va, len, gather, f) }?)
    }

    /// [`PageTable::drop_range`] in the kernel half: whole tables below the root's entries go
    /// in one store each; the tables linked from the root stay.
    ///
    /// # Safety
    ///
    /// As [`PageTable::drop_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// let mut g = k.gather();
    /// unsafe { k.map_range(va, PhyAddr::new(0x5000), 0x1000, Flags::RO, RangeOptions::default(), &mut g) }.unwrap();
    /// unsafe { k.drop_range(va, 1 << 39, &mut g) }.unwrap();
    /// k.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), 257); // the root's tables stay
    /// ```
    pub unsafe fn drop_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
    ) -> Result<(), EditError<RangeError<UnmapError>>> {
        self.check(va, len, None)?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.drop_range(va, len, gather) }?)
    }

    /// [`PageTable::protect_range`] in the kernel half, always global.
    ///
    /// # Safety
    ///
    /// As [`PageTable::protect_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// let mut g = k.gather();
    /// unsafe { k.map_range(va, PhyAddr::new(0x5000), 0x1000, Flags::RW, RangeOptions::default(), &mut g) }.unwrap();
    /// unsafe { k.protect_range(va, 0x1000, Flags::RO, &mut g) }.unwrap();
    /// k.finish(g).unwrap();
    /// assert!(!k.table().translate(va).unwrap().attrs.flags.write);
    /// ```
    pub unsafe fn protect_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        gather: &mut Gather,
    ) -> Result<(), EditError<RangeError<ProtectError>>> {
        let attrs = self.check(va, len, Some(attrs.into()))?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.protect_range(va, len, attrs, gather) }?)
    }

    /// Frees every table of the kernel space, the shared half included; returns the allocator.
    ///
    /// # Safety
    ///
    /// No user space linking its half may be in use or destroyed later (destroy them first),
    /// and the tables must not be active on any CPU.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// let mut k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let va = VirtAddr::new(0xffff_8000_0000_0000);
    /// unsafe { k.destroy() };
    /// assert_eq!(mem.frames_in_use(), 0);
    /// ```
    pub unsafe fn destroy(self) -> F {
        // SAFETY: forwarded.
        unsafe { self.pt.destroy() }
    }
}
