//! The seed API: static functions on the active page table, and the lock-guarded global instance
//! behind them.
//!
//! A backend owns one `static` [`GlobalTable`] holding its kernel [`PageTable`] and implements
//! [`ActiveTable`]; the [`Mapper`] implementation is then provided here once for every backend.
//! No `&'static mut` table is ever rebuilt from CR3/TTBR per call: all access goes through the
//! one instance under a [`spin::Mutex`].

use crate::arch::Arch;
use crate::{
    Flags, FrameAllocator, MapError, PageSize, PageTable, PhyAddr, PhysMem, Tlb, UnmapError,
    Unmapped, VirtAddr,
};

/// The seed mapping API, as kernels already call it: static functions on the active table.
///
/// ```ignore
/// // In a kernel, after `X86::init(...)`:
/// unsafe { X86::map(va, pa, Flags::RW) }?;
/// assert_eq!(X86::vm_to_phy(va), Some(pa));
/// unsafe { X86::unmap(va) };
/// ```
pub trait Mapper {
    /// The physical address `vm_addr` translates to, or `None` (also before initialisation).
    fn vm_to_phy(vm_addr: VirtAddr) -> Option<PhyAddr>;

    /// Maps the 4 KiB page at `vm_addr` to `phy_addr` with `flags` and flushes the TLB.
    ///
    /// # Safety
    ///
    /// The mapping must not break the aliasing rules of memory Rust code uses.
    unsafe fn map(vm_addr: VirtAddr, phy_addr: PhyAddr, flags: Flags) -> Result<(), MapError>;

    /// Unmaps the page at `vm_addr` and flushes the TLB. Unmapping an address that is not mapped
    /// (or lies inside a larger page) does nothing; the checked variant is
    /// [`ActiveTable::try_unmap`].
    ///
    /// # Safety
    ///
    /// Nothing may use the page afterwards.
    unsafe fn unmap(vm_addr: VirtAddr);
}

/// Why a backend's static API refused to initialise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// Already initialised; the first table stays in place.
    AlreadyInitialized,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the static page-table API is already initialised")
    }
}

/// The global, lock-guarded instance behind a backend's static API.
///
/// ```
/// use awk_paging::GlobalTable;
/// static CELL: GlobalTable<u32> = GlobalTable::new();
/// assert_eq!(CELL.with(|v| *v), None);          // not initialised yet
/// assert!(CELL.init(7).is_ok());
/// assert_eq!(CELL.init(8), Err(8));             // only once
/// assert_eq!(CELL.with(|v| { *v += 1; *v }), Some(8));
/// ```
pub struct GlobalTable<P> {
    inner: spin::Mutex<Option<P>>,
}

impl<P> GlobalTable<P> {
    /// An uninitialised slot (usable in a `static`).
    #[must_use]
    pub const fn new() -> Self {
        GlobalTable {
            inner: spin::Mutex::new(None),
        }
    }

    /// Installs the instance; gives it back if one is already installed.
    pub fn init(&self, table: P) -> Result<(), P> {
        let mut slot = self.inner.lock();
        if slot.is_some() {
            return Err(table);
        }
        *slot = Some(table);
        Ok(())
    }

    /// Runs `f` on the instance under the lock; `None` before initialisation.
    pub fn with<R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<R> {
        self.inner.lock().as_mut().map(f)
    }

    /// Whether an instance is installed.
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        self.inner.lock().is_some()
    }
}

impl<P> Default for GlobalTable<P> {
    fn default() -> Self {
        Self::new()
    }
}

/// The instance type behind an [`ActiveTable`] backend.
pub type InstanceOf<B> = PageTable<
    <B as ActiveTable>::Arch,
    <B as ActiveTable>::Mem,
    <B as ActiveTable>::Frames,
    <B as ActiveTable>::Tlb,
>;

/// A backend whose kernel page table lives in a [`GlobalTable`]. Implementing this provides the
/// seed [`Mapper`] API.
pub trait ActiveTable {
    /// Descriptor format.
    type Arch: Arch + 'static;
    /// Physical-memory accessor.
    type Mem: PhysMem + 'static;
    /// Frame allocator.
    type Frames: FrameAllocator + 'static;
    /// TLB hook.
    type Tlb: Tlb + Clone + 'static;

    /// The backend's global instance.
    fn global() -> &'static GlobalTable<InstanceOf<Self>>;

    /// Installs `table` as the global instance (once).
    fn install(table: InstanceOf<Self>) -> Result<(), InitError> {
        Self::global()
            .init(table)
            .map_err(|_| InitError::AlreadyInitialized)
    }

    /// Runs `f` on the global instance under its lock (the full instance API); `None` before
    /// initialisation.
    fn with_table<R>(f: impl FnOnce(&mut InstanceOf<Self>) -> R) -> Option<R> {
        Self::global().with(f)
    }

    /// The checked form of [`Mapper::unmap`]: the precise error instead of a silent no-op.
    ///
    /// # Safety
    ///
    /// As [`Mapper::unmap`].
    unsafe fn try_unmap(vm_addr: VirtAddr) -> Result<Unmapped, UnmapError> {
        Self::global()
            .with(|t| {
                // SAFETY: forwarded.
                let (gone, flush) = unsafe { t.unmap(vm_addr, PageSize::Size4K) }?;
                flush.flush();
                Ok(gone)
            })
            .unwrap_or(Err(UnmapError::InvalidPageTable))
    }
}

impl<B: ActiveTable> Mapper for B {
    fn vm_to_phy(vm_addr: VirtAddr) -> Option<PhyAddr> {
        B::global()
            .with(|t| t.translate(vm_addr).ok().map(|t| t.pa))
            .flatten()
    }

    unsafe fn map(vm_addr: VirtAddr, phy_addr: PhyAddr, flags: Flags) -> Result<(), MapError> {
        B::global()
            .with(|t| {
                // SAFETY: forwarded.
                unsafe { t.map(vm_addr, phy_addr, PageSize::Size4K, flags) }.map(|f| f.flush())
            })
            .unwrap_or(Err(MapError::InvalidPageTable))
    }

    unsafe fn unmap(vm_addr: VirtAddr) {
        // SAFETY: forwarded; errors are the documented no-op.
        let _ = unsafe { B::try_unmap(vm_addr) };
    }
}
