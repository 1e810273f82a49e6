//! Address spaces: a kernel space, user spaces that share its half, ASIDs, activation and
//! copy-on-write.
//!
//! # Two layouts, one API
//!
//! - **Shared root** (x86_64): one root table per process. The kernel half (PML4 entries
//!   256–511) is filled once, in [`KernelSpace::new_shared`], with empty next-level tables that
//!   are never detached afterwards; every [`UserSpace`] root links the *same* tables, so a
//!   kernel mapping made later appears in every process without touching them. A user space
//!   never edits nor frees those entries ([`EditError::KernelHalf`]), and
//!   [`UserSpace::destroy`] unlinks them before it frees its own half.
//! - **Split roots** (AArch64): the kernel has its own table in `TTBR1_EL1`
//!   ([`KernelSpace::new_split`], with the crate's TTBR1 regime); each process has a root of
//!   its own for `TTBR0_EL1` and shares nothing ([`KernelHalf::NONE`]).
//!
//! # ASIDs and activation
//!
//! [`Asids`] hands out ASIDs (PCIDs on x86) with generations and rollover; a [`ContextId`]
//! per space remembers its ASID. [`Asids::switch_to`] answers what the CPU must do, and an
//! [`Activate`] implementation (arch code: CR3 with the PCID, `TTBR0_EL1` with the ASID in
//! bits 63:48 then `isb`; [`EmuMmu`] on the host) does it. A user space's TLB hook is a
//! [`SpaceTlb`]: every invalidation it makes targets that space's ASID only
//! ([`Tlb::flush_page_asid`], [`Tlb::flush_asid`]), so a process's flush never drops the
//! kernel's global entries nor another process's.
//!
//! Kernel mappings are global ([`KernelSpace`] sets `global` on everything and refuses user
//! pages); user mappings are never global (refused by the default [`Policy`](crate::Policy):
//! [`FlagsError::GlobalUser`](crate::FlagsError::GlobalUser)).
//!
//! # Copy-on-write and zero pages
//!
//! [`UserSpace::fork`] maps every writable user page read-only with the format's software bit
//! ([`Arch::software_bit`]) set in both spaces, sharing the frame (owners counted by the
//! kernel's [`FrameRefs`]); [`UserSpace::map_zero`] maps a shared zero frame the same way; and
//! [`UserSpace::resolve_write_fault`] resolves a write fault on such a page: copy (or zero) a
//! new frame if the old one is shared, else make the page writable, and invalidate that page
//! for this space's ASID only.
//!
//! ```
//! use awk_paging::emu::{EmuArch, EmuMemory, EmuTlb};
//! use awk_paging::space::{Asids, ContextId, EmuMmu, KernelSpace, SpaceTlb, UserSpace};
//! use awk_paging::{Attrs, Flags, NoTlb, PageSize, VirtAddr};
//!
//! let mem = EmuMemory::new(600);
//! let cpu = EmuTlb::new();
//! let kernel = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, &cpu, 256).unwrap();
//! let id = ContextId::new();
//! let mut user =
//!     UserSpace::new(EmuArch::default(), &mem, &mem, SpaceTlb::new(&cpu, &id), kernel.half())
//!         .unwrap();
//! let frame = mem.allocate_data_frame().unwrap();
//! let va = VirtAddr::new(0x40_0000);
//! let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
//! unsafe { user.map(va, frame, PageSize::Size4K, rw) }.unwrap().flush();
//!
//! let mut asids = Asids::<1>::new(256).unwrap();
//! let mmu = EmuMmu::new(&cpu);
//! unsafe { user.activate(&mut asids, 0, &id, &mmu) }.unwrap();
//! assert_eq!(mmu.root(), user.root());
//! assert_eq!(cpu.current_asid(), id.asid().unwrap());
//! ```

mod activate;
mod ad;
mod asid;
mod cow;
mod kernel;
mod multi;
mod user;

pub use activate::Activate;
#[cfg(feature = "std")]
pub use activate::EmuMmu;
pub use ad::AccessedDirty;
pub use asid::{Active, AsidError, Asids, ContextId, Switch, MAX_ASIDS};
pub use cow::{FaultError, ForkError, FrameRefs, Resolved};
pub use kernel::KernelSpace;
pub use multi::{dump_roots, walk_roots, Walked};
pub use user::UserSpace;

use core::fmt;

use crate::{PhyAddr, Tlb, VirtAddr, ENTRIES};

#[cfg(doc)]
use crate::arch::Arch;

/// The part of a root table that user spaces share with the kernel: root entries
/// `first..end` of the kernel's root at `root`, copied into every user root at creation.
///
/// ```
/// use awk_paging::space::KernelHalf;
/// assert!(!KernelHalf::NONE.shares(300));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelHalf {
    root: PhyAddr,
    first: usize,
    end: usize,
}

impl KernelHalf {
    /// Nothing shared (split roots: the kernel has a root register of its own).
    ///
    /// ```
    /// assert!(awk_paging::space::KernelHalf::NONE.entries().is_empty());
    /// ```
    pub const NONE: KernelHalf = KernelHalf {
        root: PhyAddr::ZERO,
        first: ENTRIES,
        end: ENTRIES,
    };

    /// Root entries `entries` of an existing kernel root (a boot table whose identity map
    /// user spaces must keep, e.g. a test kernel running in the lower half): user spaces copy
    /// them and never edit them. `None` if the range is empty or beyond 512 entries.
    ///
    /// # Safety
    ///
    /// The tables those entries link must stay linked in `root` and valid for as long as any
    /// user space created with this value lives (never detached or freed by the kernel's own
    /// edits: [`KernelSpace::new_shared`] guarantees it, a table built otherwise must).
    ///
    /// ```
    /// use awk_paging::space::KernelHalf;
    /// use awk_paging::PhyAddr;
    /// let h = unsafe { KernelHalf::from_root(PhyAddr::new(0x4000_0000), 0..1) }.unwrap();
    /// assert!(h.shares(0) && !h.shares(1));
    /// assert!(unsafe { KernelHalf::from_root(PhyAddr::new(0x4000_0000), 3..600) }.is_none());
    /// ```
    #[must_use]
    pub unsafe fn from_root(root: PhyAddr, entries: core::ops::Range<usize>) -> Option<Self> {
        (entries.start < entries.end && entries.end <= ENTRIES).then_some(KernelHalf {
            root,
            first: entries.start,
            end: entries.end,
        })
    }

    /// Whether root entry `index` belongs to the kernel.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::KernelSpace;
    /// # use awk_paging::NoTlb;
    /// let mem = EmuMemory::new(300);
    /// let k = KernelSpace::new_shared(EmuArch::default(), &mem, &mem, NoTlb, 256).unwrap();
    /// assert!(k.half().shares(256) && k.half().shares(511) && !k.half().shares(255));
    /// ```
    #[must_use]
    pub fn shares(&self, index: usize) -> bool {
        (self.first..self.end).contains(&index)
    }

    /// The shared root entries.
    ///
    /// ```
    /// assert!(awk_paging::space::KernelHalf::NONE.entries().is_empty());
    /// ```
    #[must_use]
    pub fn entries(&self) -> core::ops::Range<usize> {
        self.first..self.end
    }

    /// The kernel root the entries come from.
    ///
    /// ```
    /// assert_eq!(awk_paging::space::KernelHalf::NONE.root(), awk_paging::PhyAddr::ZERO);
    /// ```
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.root
    }
}

/// Why an edit of a [`KernelSpace`] or [`UserSpace`] was refused; `E` is the operation's own
/// error. Nothing changed in every case.
///
/// ```
/// use awk_paging::space::EditError;
/// use awk_paging::{MapError, VirtAddr};
/// let e: EditError<MapError> = EditError::KernelHalf(VirtAddr::new(0xffff_8000_0000_0000));
/// assert_eq!(e.to_string(), "address 0xffff800000000000 is in the other half of the address space");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditError<E> {
    /// The address (the range's first one in it) belongs to the other side: the kernel half
    /// for a user space, the user half for the kernel space.
    KernelHalf(VirtAddr),
    /// A user space refuses kernel-only attributes, the kernel space user ones.
    WrongPrivilege,
    /// The zero frame may only be mapped read-only.
    WritableZeroFrame,
    /// The range holds a copy-on-write page (this one): it becomes writable only through the
    /// write-fault helper.
    CopyOnWrite(VirtAddr),
    /// The operation itself failed.
    Op(E),
}

impl<E: fmt::Display> fmt::Display for EditError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::KernelHalf(va) => write!(
                f,
                "address {:#x} is in the other half of the address space",
                va.as_u64()
            ),
            EditError::WrongPrivilege => {
                f.write_str("user pages belong in user spaces, kernel pages in the kernel space")
            }
            EditError::WritableZeroFrame => {
                f.write_str("the zero frame can only be mapped read-only")
            }
            EditError::CopyOnWrite(va) => write!(
                f,
                "copy-on-write page at {:#x}: resolve its write fault instead",
                va.as_u64()
            ),
            EditError::Op(e) => e.fmt(f),
        }
    }
}

impl<E> From<E> for EditError<E> {
    fn from(e: E) -> Self {
        EditError::Op(e)
    }
}

/// The [`Tlb`] hook of one user address space: every invalidation goes to `cpu` for this
/// space's ASID only (read from its [`ContextId`] at the time of the flush, so it follows
/// reallocations). A space that never had an ASID was never active: nothing of it can be
/// cached, and its hook does nothing but order and publish.
///
/// ```
/// use awk_paging::emu::EmuTlb;
/// use awk_paging::space::{Asids, ContextId, SpaceTlb};
/// use awk_paging::{PhyAddr, Tlb, VirtAddr};
/// let cpu = EmuTlb::new();
/// let id = ContextId::new();
/// let hook = SpaceTlb::new(&cpu, &id);
/// hook.flush_all(); // no ASID yet: nothing to do
/// assert_eq!(cpu.full_flushes(), 0);
/// Asids::<1>::new(256).unwrap().switch_to(0, &id, PhyAddr::new(0x1000)).unwrap();
/// hook.flush_page(VirtAddr::new(0x1000));
/// assert_eq!(cpu.page_flushes(), 1);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SpaceTlb<'c, C> {
    cpu: C,
    id: &'c ContextId,
}

impl<'c, C: Tlb> SpaceTlb<'c, C> {
    /// The hook of the space with id `id`, invalidating through `cpu` (which must implement
    /// the per-ASID methods of [`Tlb`]; their defaults flush more, which is correct but slow).
    ///
    /// ```
    /// use awk_paging::space::{ContextId, SpaceTlb};
    /// static ID: ContextId = ContextId::new();
    /// let hook = SpaceTlb::new(awk_paging::NoTlb, &ID);
    /// assert!(core::ptr::eq(hook.id(), &ID));
    /// ```
    #[must_use]
    pub const fn new(cpu: C, id: &'c ContextId) -> Self {
        SpaceTlb { cpu, id }
    }

    /// The space's id.
    ///
    /// ```
    /// # use awk_paging::{space::{ContextId, SpaceTlb}, NoTlb};
    /// let id = ContextId::new();
    /// assert!(SpaceTlb::new(NoTlb, &id).id().asid().is_none());
    /// ```
    #[must_use]
    pub fn id(&self) -> &'c ContextId {
        self.id
    }
}

impl<C: Tlb> Tlb for SpaceTlb<'_, C> {
    #[inline]
    fn flush_page(&self, va: VirtAddr) {
        if let Some(asid) = self.id.asid() {
            self.cpu.flush_page_asid(va, asid);
        }
    }

    #[inline]
    fn flush_leaf(&self, va: VirtAddr) {
        if let Some(asid) = self.id.asid() {
            self.cpu.flush_leaf_asid(va, asid);
        }
    }

    #[inline]
    fn flush_all(&self) {
        if let Some(asid) = self.id.asid() {
            self.cpu.flush_asid(asid);
        }
    }

    #[inline]
    fn publish(&self) {
        self.cpu.publish();
    }

    #[inline]
    fn order_table_writes(&self) {
        self.cpu.order_table_writes();
    }

    #[inline]
    fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
        self.cpu.flush_page_asid(va, asid);
    }

    #[inline]
    fn flush_leaf_asid(&self, va: VirtAddr, asid: u16) {
        self.cpu.flush_leaf_asid(va, asid);
    }

    #[inline]
    fn flush_asid(&self, asid: u16) {
        self.cpu.flush_asid(asid);
    }
}
