//! [`UserSpace`]: one process's address space.

use super::activate::Activate;
use super::asid::{AsidError, Asids, ContextId, Switch};
use super::kernel::top_indices;
use super::{EditError, KernelHalf};
use crate::arch::Arch;
use crate::table::entry::Slot;
use crate::{
    Attrs, Flush, FrameAllocator, Gather, MapError, PageSize, PageTable, PhyAddr, PhysMem,
    ProtectError, RangeError, RangeOptions, Tlb, TranslateError, Translation, UnmapError, Unmapped,
    UnmappedPage, VirtAddr,
};

/// One process's address space: a root of its own whose kernel half (shared-root layout)
/// links the kernel's tables, and whose own half holds user mappings.
///
/// Every edit checks that it stays in the user half ([`EditError::KernelHalf`]) and maps user
/// pages only ([`EditError::WrongPrivilege`]); global user pages are refused by the default
/// [`Policy`](crate::Policy). `T` is normally a [`SpaceTlb`](super::SpaceTlb), so every
/// invalidation targets this space's ASID. An inactive space is edited the same way: its
/// flushes then drop nothing that is in use.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::space::{EditError, KernelSpace, UserSpace};
/// use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, VirtAddr};
///
/// let mem = EmuMemory::new(300);
/// let kernel = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
/// let mut user = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, kernel.half()).unwrap();
/// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
/// let kva = VirtAddr::new(0xffff_8000_0000_0000);
/// let e = unsafe { user.map(kva, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap_err();
/// assert_eq!(e, EditError::KernelHalf(kva));
/// let before = mem.frames_in_use();
/// unsafe { user.destroy() };
/// assert_eq!(mem.frames_in_use(), before - 1); // its root only: the kernel's tables stay
/// ```
#[derive(Debug)]
pub struct UserSpace<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> {
    pub(super) pt: PageTable<A, M, F, T>,
    pub(super) half: KernelHalf,
    pub(super) zero: Option<PhyAddr>,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> UserSpace<A, M, F, T> {
    /// A new, empty user space: a root whose kernel entries ([`KernelHalf::entries`]) are
    /// copies of the kernel root's, read through `mem`. Fails with `OutOfMemory` (nothing
    /// kept), or `InvalidPageTable` if the kernel root cannot be read or `arch` has another
    /// number of levels than entries to share.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::space::{KernelHalf, UserSpace};
    /// use awk_paging::NoTlb;
    /// let mem = EmuMemory::new(2);
    /// let user = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// assert_eq!(mem.frames_in_use(), 1);
    /// ```
    pub fn new(arch: A, mem: M, frames: F, tlb: T, half: KernelHalf) -> Result<Self, MapError> {
        let pt = PageTable::new(arch, mem, frames, tlb)?;
        let root = pt.root();
        for i in half.entries() {
            let from = Slot::of(pt.mem(), half.root(), i);
            let to = Slot::of(pt.mem(), root, i);
            let (Some(from), Some(to)) = (from, to) else {
                // SAFETY: never active, nothing shared linked yet (entries below `i` are
                // copies: clear them first).
                unsafe { Self::unlink_half(&pt, half, i) };
                // SAFETY: as above.
                unsafe { pt.destroy() };
                return Err(MapError::InvalidPageTable);
            };
            // A fresh, unpublished root: a plain store.
            to.store(pt.mem(), 0, from.load());
        }
        Ok(UserSpace {
            pt,
            half,
            zero: None,
        })
    }

    /// Clears the shared root entries below `upto` of `pt`'s root.
    ///
    /// # Safety
    ///
    /// The root is not active anywhere.
    unsafe fn unlink_half(pt: &PageTable<A, M, F, T>, half: KernelHalf, upto: usize) {
        for i in half.entries().take_while(|&i| i < upto) {
            if let Some(slot) = Slot::of(pt.mem(), pt.root(), i) {
                slot.store(pt.mem(), slot.load(), 0);
            }
        }
    }

    /// The root (what goes into CR3 / `TTBR0_EL1`).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// assert_ne!(u.root(), k.root());
    /// ```
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.pt.root()
    }

    /// This space's TLB hook.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// assert_eq!(*u.tlb(), NoTlb);
    /// ```
    #[must_use]
    pub fn tlb(&self) -> &T {
        self.pt.tlb()
    }

    /// Calls `f` for every mapping of this space, the kernel half's included
    /// ([`PageTable::for_each_mapping`]).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap().flush();
    /// let mut n = 0;
    /// u.for_each_mapping(|_| n += 1);
    /// assert_eq!(n, 1);
    /// ```
    pub fn for_each_mapping(&self, f: impl FnMut(crate::Mapping)) {
        self.pt.for_each_mapping(f);
    }

    /// What this space shares with the kernel.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// assert_eq!(u.half(), k.half());
    /// ```
    #[must_use]
    pub fn half(&self) -> KernelHalf {
        self.half
    }

    /// [`PageTable::translate`]: with the effective permissions over every level, `attrs.user`
    /// saying whether user code may access the page. Kernel-half addresses are translated
    /// through the kernel's tables without keeping them in this space's walk cache (the kernel
    /// may free them).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap().flush();
    /// let t = u.translate(va).unwrap();
    /// assert!(t.attrs.user && t.attrs.flags.write);
    /// ```
    pub fn translate(&self, va: VirtAddr) -> Result<Translation, TranslateError> {
        let t = self.pt.translate(va);
        self.forget_kernel_walk(va);
        t
    }

    /// [`PageTable::raw_entry`], as [`translate`](Self::translate) walks.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap().flush();
    /// assert_eq!(u.raw_entry(va).unwrap().0, 0);
    /// ```
    pub fn raw_entry(&self, va: VirtAddr) -> Result<(u8, u64), TranslateError> {
        let r = self.pt.raw_entry(va);
        self.forget_kernel_walk(va);
        r
    }

    /// After a walk to `va`: if it went through the kernel's tables, forget it.
    fn forget_kernel_walk(&self, va: VirtAddr) {
        if self.check_range::<()>(va, 1).is_err() {
            self.pt.clear_walk_cache();
        }
    }

    /// Whether `va .. va + len` lies in the user half (ranges the regime does not translate
    /// are left to the operation, which reports why).
    pub(super) fn check_range<E>(&self, va: VirtAddr, len: u64) -> Result<(), EditError<E>> {
        if let Some((first, last)) = top_indices(self.pt.arch(), va, len) {
            let shared = self.half.entries();
            if first.max(shared.start) <= last.min(shared.end.saturating_sub(1)) {
                let at = if self.half.shares(first) {
                    va
                } else {
                    // The first address of the kernel half inside the range.
                    let top = self.pt.arch().levels() - 1;
                    let bits = (shared.start as u64) << (12 + 9 * u32::from(top));
                    self.pt.arch().va_from_bits(bits)
                };
                return Err(EditError::KernelHalf(at));
            }
        }
        Ok(())
    }

    fn check_attrs<E>(&self, attrs: Attrs, pa: PhyAddr, len: u64) -> Result<(), EditError<E>> {
        if !attrs.user {
            return Err(EditError::WrongPrivilege);
        }
        if let Some(z) = self.zero {
            let hits = pa.as_u64() <= z.as_u64() && z.as_u64() - pa.as_u64() < len.max(1);
            if hits && attrs.flags.write {
                return Err(EditError::WritableZeroFrame);
            }
        }
        Ok(())
    }

    /// [`PageTable::map`] in the user half, user attributes only.
    ///
    /// # Safety
    ///
    /// As [`PageTable::map`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap().flush();
    /// let kernel_only = unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, Flags::RW) };
    /// assert_eq!(kernel_only.unwrap_err(), awk_paging::space::EditError::WrongPrivilege);
    /// ```
    pub unsafe fn map(
        &mut self,
        va: VirtAddr,
        pa: PhyAddr,
        size: PageSize,
        attrs: impl Into<Attrs>,
    ) -> Result<Flush<T>, EditError<MapError>> {
        let attrs = attrs.into();
        self.check_range(va, size.bytes())?;
        self.check_attrs(attrs, pa, size.bytes())?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.map(va, pa, size, attrs) }?)
    }

    /// [`PageTable::unmap`] in the user half.
    ///
    /// # Safety
    ///
    /// As [`PageTable::unmap`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap().flush();
    /// let (gone, flush) = unsafe { u.unmap(va, PageSize::Size4K) }.unwrap();
    /// flush.flush();
    /// assert_eq!(gone.frame, PhyAddr::new(0x5000));
    /// ```
    pub unsafe fn unmap(
        &mut self,
        va: VirtAddr,
        size: PageSize,
    ) -> Result<(Unmapped, Flush<T>), EditError<UnmapError>> {
        self.check_range(va, size.bytes())?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.unmap(va, size) }?)
    }

    /// An empty [`Gather`] for this space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// let g = u.gather();
    /// u.finish(g).unwrap();
    /// ```
    pub fn gather(&self) -> Gather {
        self.pt.gather()
    }

    /// [`PageTable::finish`] on this space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// let mut g = u.gather();
    /// unsafe { u.map_range(va, PhyAddr::new(0x5000), 0x2000, rw, RangeOptions::default(), &mut g) }.unwrap();
    /// u.finish(g).unwrap();
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn finish(&mut self, gather: Gather) -> Result<(), Gather> {
        self.pt.finish(gather)
    }

    /// [`PageTable::map_range`] in the user half, user attributes only.
    ///
    /// # Safety
    ///
    /// As [`PageTable::map_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// let mut g = u.gather();
    /// unsafe { u.map_range(va, PhyAddr::new(0x5000), 0x2000, rw, RangeOptions::default(), &mut g) }.unwrap();
    /// u.finish(g).unwrap();
    /// assert!(u.translate(VirtAddr::new(0x40_1000)).is_ok());
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
        let attrs = attrs.into();
        self.check_range(va, len)?;
        self.check_attrs(attrs, pa, len)?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.map_range(va, pa, len, attrs, opts, gather) }?)
    }

    /// [`PageTable::unmap_range`] in the user half: emptied tables are freed after the flush
    /// (the range engine's reclaim), the kernel's never (they are not in the range).
    ///
    /// # Safety
    ///
    /// As [`PageTable::unmap_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// let before = mem.frames_in_use();
    /// let mut g = u.gather();
    /// unsafe { u.map_range(va, PhyAddr::new(0x5000), 0x2000, rw, RangeOptions::default(), &mut g) }.unwrap();
    /// unsafe { u.unmap_range(va, 0x2000, &mut g, |_| {}) }.unwrap();
    /// u.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), before); // emptied tables reclaimed
    /// ```
    pub unsafe fn unmap_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
        f: impl FnMut(UnmappedPage),
    ) -> Result<(), EditError<RangeError<UnmapError>>> {
        self.check_range(va, len)?;
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.unmap_range(va, len, gather, f) }?)
    }

    /// [`PageTable::protect_range`] in the user half, user attributes only. Copy-on-write
    /// pages keep their mark; making one writable is refused
    /// ([`EditError::CopyOnWrite`], nothing changed): a shared frame becomes writable only
    /// through [`resolve_write_fault`](Self::resolve_write_fault).
    ///
    /// # Safety
    ///
    /// As [`PageTable::protect_range`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// let mut g = u.gather();
    /// unsafe { u.map_range(va, PhyAddr::new(0x5000), 0x1000, rw, RangeOptions::default(), &mut g) }.unwrap();
    /// let ro = Attrs { user: true, ..Attrs::from(Flags::RO) };
    /// unsafe { u.protect_range(va, 0x1000, ro, &mut g) }.unwrap();
    /// u.finish(g).unwrap();
    /// assert!(!u.translate(va).unwrap().attrs.flags.write);
    /// ```
    pub unsafe fn protect_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        gather: &mut Gather,
    ) -> Result<(), EditError<RangeError<ProtectError>>> {
        let attrs = attrs.into();
        self.check_range(va, len)?;
        if !attrs.user {
            return Err(EditError::WrongPrivilege);
        }
        let bit = self.pt.arch().software_bit();
        if attrs.flags.write && bit != 0 {
            let end = va.as_u64().saturating_add(len);
            let mut cow = None;
            self.pt.for_each_mapping(|m| {
                let inside = m.page.as_u64() < end
                    && m.page.as_u64().saturating_add(m.size.bytes()) > va.as_u64();
                if cow.is_none() && inside && self.check_range::<()>(m.page, 1).is_ok() {
                    let raw = self.pt.raw_entry(m.page).map_or(0, |(_, r)| r);
                    if raw & bit != 0 {
                        cow = Some(m.page);
                    }
                }
            });
            if let Some(at) = cow {
                return Err(EditError::CopyOnWrite(at));
            }
        }
        // SAFETY: forwarded.
        Ok(unsafe { self.pt.protect_range(va, len, attrs, gather) }?)
    }

    /// Runs this space on CPU `cpu`: [`Asids::switch_to`] (its ASID, or a new one), then
    /// `mmu` loads the root with it. Returns what the switch did.
    ///
    /// # Safety
    ///
    /// Called on CPU `cpu` itself, under the lock that guards `asids`; `id` is this space's own
    /// [`ContextId`] (the one its [`SpaceTlb`](super::SpaceTlb) reads); the space outlives its
    /// activation (switch away before dropping or destroying it).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory, EmuTlb};
    /// # use awk_paging::space::{Asids, ContextId, EmuMmu, KernelHalf, SpaceTlb, UserSpace};
    /// let (mem, cpu, id) = (EmuMemory::new(4), EmuTlb::new(), ContextId::new());
    /// let u = UserSpace::new(EmuArch::default(), &mem, &mem, SpaceTlb::new(&cpu, &id), KernelHalf::NONE).unwrap();
    /// let mut asids = Asids::<1>::new(256).unwrap();
    /// let s = unsafe { u.activate(&mut asids, 0, &id, &EmuMmu::new(&cpu)) }.unwrap();
    /// assert_eq!((Some(s.asid), cpu.current_asid()), (id.asid(), s.asid));
    /// assert_eq!(asids.active(0).unwrap().root, u.root());
    /// ```
    pub unsafe fn activate<const CPUS: usize, X: Activate>(
        &self,
        asids: &mut Asids<CPUS>,
        cpu: usize,
        id: &ContextId,
        mmu: &X,
    ) -> Result<Switch, AsidError> {
        let s = asids.switch_to(cpu, id, self.root())?;
        // SAFETY: a valid root of this format whose kernel half is the kernel's (caller).
        unsafe { mmu.activate(self.root(), s) };
        Ok(s)
    }

    /// Frees this space's own tables (the user half, [`PageTable::destroy`], after a flush of
    /// its ASID) and returns the allocator. The kernel's shared tables are unlinked from the
    /// root first, so they are neither freed nor touched. Data frames stay the caller's (unmap
    /// them first with [`unmap_range`](Self::unmap_range) to learn which they are).
    ///
    /// # Safety
    ///
    /// The space is not active on any CPU ([`Asids::is_active`] is false for its id).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelSpace, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
    /// # let mem = EmuMemory::new(300);
    /// # let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, k.half()).unwrap();
    /// let (va, rw) = (VirtAddr::new(0x40_0000), Attrs { user: true, ..Attrs::from(Flags::RW) });
    /// let before = mem.frames_in_use();
    /// unsafe { u.map(va, PhyAddr::new(0x5000), PageSize::Size4K, rw) }.unwrap().flush();
    /// unsafe { u.destroy() };
    /// assert_eq!(mem.frames_in_use(), before - 1); // its root and tables; the kernel's stay
    /// ```
    pub unsafe fn destroy(self) -> F {
        // SAFETY: inactive (caller): the root is edited like any unpublished table.
        unsafe { Self::unlink_half(&self.pt, self.half, usize::MAX) };
        // SAFETY: inactive, and nothing shared is reachable any more.
        unsafe { self.pt.destroy() }
    }
}
