//! The seed API: static functions on the active page table, and the lock-guarded global instance
//! behind them.
//!
//! A backend owns one `static` [`GlobalTable`] holding its kernel [`PageTable`] and implements
//! [`ActiveTable`]; the [`Mapper`] implementation is then provided here once for every backend.
//! No `&'static mut` table is ever rebuilt from CR3/TTBR per call: all access goes through the
//! one instance under an interrupt-masking lock that knows its holder (see [`crate::irq`]).
//!
//! Every seed call runs under that lock with interrupts masked, and so do the frame allocator and
//! TLB hook the table calls: what they must not do is documented on [`ActiveTable`] (section
//! "Hooks").

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::Arch;
use crate::irq::{Contended, IrqControl, IrqLock};
use crate::{
    Flags, FrameAllocator, MapError, PageSize, PageTable, PhyAddr, PhysMem, Tlb, TranslateError,
    UnmapError, Unmapped, VirtAddr, PAGESIZE,
};

/// The seed mapping API, as kernels already call it: static functions on the active table.
///
/// Each call takes the table's lock with interrupts masked; the [rules for the hooks it
/// calls](crate::ActiveTable#hooks) say what they must not do. The checked forms
/// [`ActiveTable::try_vm_to_phy`] and [`ActiveTable::try_unmap`] tell every failure apart.
///
/// ```ignore
/// // In a kernel, after `X86::init(...)`:
/// unsafe { X86::map(va, pa, Flags::RW) }?;
/// assert_eq!(X86::vm_to_phy(va), Some(pa));
/// unsafe { X86::unmap(va) };
/// ```
pub trait Mapper {
    /// The physical address `vm_addr` translates to, or `None`: not mapped, not initialised, or
    /// called from a hook or exception handler while this CPU holds the table's lock
    /// ([`ActiveTable::try_vm_to_phy`] says which).
    fn vm_to_phy(vm_addr: VirtAddr) -> Option<PhyAddr>;

    /// Maps the 4 KiB page at `vm_addr` to `phy_addr` with `flags` and flushes the TLB.
    ///
    /// Fails with [`MapError::NotInitialized`] before the table is installed and with
    /// [`MapError::Reentered`] when called while this CPU holds the table's lock (from the frame
    /// allocator, the TLB hook or an exception handler); nothing changed then.
    ///
    /// # Safety
    ///
    /// The mapping must not break the aliasing rules of memory Rust code uses.
    unsafe fn map(vm_addr: VirtAddr, phy_addr: PhyAddr, flags: Flags) -> Result<(), MapError>;

    /// Unmaps the 4 KiB page at `vm_addr` and flushes the TLB. A larger page around it is split
    /// so that exactly that 4 KiB goes (never more); tables that become empty are freed after the
    /// flush. Unmapping an address that is not mapped, before initialisation or while this CPU
    /// holds the table's lock does nothing; the checked variant is [`ActiveTable::try_unmap`].
    ///
    /// # Safety
    ///
    /// Nothing may use the page afterwards.
    unsafe fn unmap(vm_addr: VirtAddr);
}

/// Why a backend's static API refused to initialise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// Already initialised (or being initialised by an install this one interrupted); the first
    /// table stays in place.
    AlreadyInitialized,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the static page-table API is already initialised")
    }
}

/// Why [`GlobalTable::with`] (and [`ActiveTable::with_table`]) did not run its closure.
///
/// ```
/// use awk_paging::{AccessError, GlobalTable, irq::HostIrq};
/// static CELL: GlobalTable<u32, HostIrq> = GlobalTable::new();
/// assert_eq!(CELL.with(|v| *v), Err(AccessError::NotInitialized));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccessError {
    /// Nothing is installed yet.
    NotInitialized,
    /// This CPU already holds the lock: the call came from inside an operation on the same
    /// table (a frame-allocator or TLB hook, a `with` closure, an exception handler). Waiting
    /// would deadlock.
    Reentered,
}

impl core::fmt::Display for AccessError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AccessError::NotInitialized => "the static page-table API is not initialised",
            AccessError::Reentered => {
                "the page-table lock is already held by this CPU (re-entered from a hook or \
                 handler)"
            }
        })
    }
}

/// Why [`GlobalTable::try_with`] did not run its closure.
///
/// ```
/// use awk_paging::{AccessError, GlobalTable, TryAccessError, irq::HostIrq};
/// static CELL: GlobalTable<u32, HostIrq> = GlobalTable::new();
/// assert_eq!(CELL.try_with(|v| *v), Err(TryAccessError::NotInitialized));
/// assert_eq!(TryAccessError::from(AccessError::Reentered), TryAccessError::Reentered);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TryAccessError {
    /// Nothing is installed yet.
    NotInitialized,
    /// This CPU already holds the lock (as [`AccessError::Reentered`]).
    Reentered,
    /// Another CPU holds the lock; [`GlobalTable::with`] would have waited.
    Busy,
}

impl From<AccessError> for TryAccessError {
    #[inline]
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotInitialized => TryAccessError::NotInitialized,
            AccessError::Reentered => TryAccessError::Reentered,
        }
    }
}

impl core::fmt::Display for TryAccessError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TryAccessError::NotInitialized => AccessError::NotInitialized.fmt(f),
            TryAccessError::Reentered => AccessError::Reentered.fmt(f),
            TryAccessError::Busy => f.write_str("the page-table lock is held by another CPU"),
        }
    }
}

impl From<AccessError> for MapError {
    #[inline]
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotInitialized => MapError::NotInitialized,
            AccessError::Reentered => MapError::Reentered,
        }
    }
}

impl From<AccessError> for UnmapError {
    #[inline]
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotInitialized => UnmapError::NotInitialized,
            AccessError::Reentered => UnmapError::Reentered,
        }
    }
}

impl From<AccessError> for TranslateError {
    #[inline]
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotInitialized => TranslateError::NotInitialized,
            AccessError::Reentered => TranslateError::Reentered,
        }
    }
}

/// The global, lock-guarded instance behind a backend's static API.
///
/// The lock masks interrupts on its CPU while held (through `I`, an [`IrqControl`]), records
/// which CPU holds it, and refuses a second acquisition on that CPU with
/// [`AccessError::Reentered`] instead of spinning on itself; the protocol is in [`crate::irq`],
/// the rules for code running under it in the [module documentation](crate::ActiveTable#hooks).
///
/// ```
/// use awk_paging::{AccessError, GlobalTable, irq::HostIrq};
/// static CELL: GlobalTable<u32, HostIrq> = GlobalTable::new();
/// assert_eq!(CELL.with(|v| *v), Err(AccessError::NotInitialized));
/// assert!(CELL.init(7).is_ok());
/// assert_eq!(CELL.init(8), Err(8));             // only once
/// assert_eq!(CELL.with(|v| { *v += 1; *v }), Ok(8));
/// // From inside: an error, not a deadlock.
/// assert_eq!(CELL.with(|_| CELL.with(|v| *v)), Ok(Err(AccessError::Reentered)));
/// ```
pub struct GlobalTable<P, I> {
    slot: IrqLock<Option<P>, I>,
    /// Set once, after the slot was filled: lets [`is_initialized`](Self::is_initialized) and
    /// [`init`](Self::init) answer without the lock.
    initialized: AtomicBool,
}

impl<P, I: IrqControl> GlobalTable<P, I> {
    /// An uninitialised slot (usable in a `static`).
    ///
    /// ```
    /// # use awk_paging::{GlobalTable, irq::HostIrq};
    /// static CELL: GlobalTable<u64, HostIrq> = GlobalTable::new();
    /// assert!(!CELL.is_initialized());
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        GlobalTable {
            slot: IrqLock::new(None),
            initialized: AtomicBool::new(false),
        }
    }

    /// Installs the instance; gives it back if one is already installed (or an install that
    /// this call interrupted on the same CPU is installing one).
    ///
    /// ```
    /// # use awk_paging::{GlobalTable, irq::HostIrq};
    /// static CELL: GlobalTable<u64, HostIrq> = GlobalTable::new();
    /// assert_eq!(CELL.init(1), Ok(()));
    /// assert_eq!(CELL.init(2), Err(2));
    /// ```
    pub fn init(&self, table: P) -> Result<(), P> {
        if self.initialized.load(Ordering::Acquire) {
            return Err(table);
        }
        let Ok(mut slot) = self.slot.lock() else {
            // Re-entered: an install on this CPU holds the lock and will succeed.
            return Err(table);
        };
        if slot.is_some() {
            return Err(table);
        }
        *slot = Some(table);
        self.initialized.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `f` on the instance under the lock, with interrupts masked on this CPU, waiting
    /// while another CPU holds it.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotInitialized`] before [`init`](Self::init);
    /// [`AccessError::Reentered`] when this CPU already holds the lock (`f` of an outer `with`,
    /// or a hook it calls, calls `with` again). `f` did not run then.
    ///
    /// ```
    /// # use awk_paging::{AccessError, GlobalTable, irq::HostIrq};
    /// static CELL: GlobalTable<u32, HostIrq> = GlobalTable::new();
    /// CELL.init(1).unwrap();
    /// assert_eq!(CELL.with(|v| *v * 2), Ok(2));
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&mut P) -> R) -> Result<R, AccessError> {
        let mut slot = self.slot.lock().map_err(|_| AccessError::Reentered)?;
        let table = slot.as_mut().ok_or(AccessError::NotInitialized)?;
        Ok(f(table))
    }

    /// As [`with`](Self::with), but never waits: [`TryAccessError::Busy`] while another CPU
    /// holds the lock. For handlers that must not spin (NMI, panic and crash paths).
    ///
    /// ```
    /// # use awk_paging::{GlobalTable, TryAccessError, irq::HostIrq};
    /// static CELL: GlobalTable<u32, HostIrq> = GlobalTable::new();
    /// CELL.init(5).unwrap();
    /// assert_eq!(CELL.try_with(|v| *v), Ok(5));
    /// assert_eq!(CELL.with(|_| CELL.try_with(|v| *v)), Ok(Err(TryAccessError::Reentered)));
    /// ```
    pub fn try_with<R>(&self, f: impl FnOnce(&mut P) -> R) -> Result<R, TryAccessError> {
        let mut slot = self.slot.try_lock().map_err(|e| match e {
            Contended::Reentered => TryAccessError::Reentered,
            Contended::Busy => TryAccessError::Busy,
        })?;
        let table = slot.as_mut().ok_or(TryAccessError::NotInitialized)?;
        Ok(f(table))
    }

    /// Whether an instance is installed. Does not take the lock (safe to ask from anywhere).
    ///
    /// ```
    /// # use awk_paging::{GlobalTable, irq::HostIrq};
    /// static CELL: GlobalTable<u8, HostIrq> = GlobalTable::new();
    /// CELL.init(0).unwrap();
    /// assert_eq!(CELL.with(|_| CELL.is_initialized()), Ok(true));
    /// ```
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }
}

impl<P, I: IrqControl> Default for GlobalTable<P, I> {
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
///
/// # Hooks
///
/// Every seed call and every [`with_table`](Self::with_table) closure runs under the global's
/// lock, with interrupts masked on the calling CPU; the table's [`FrameAllocator`] and [`Tlb`]
/// are called from there. They, and `with_table` closures:
///
/// - must not call back into the seed API or `with_table`/`install` of the same backend: such a
///   call fails at once with the `Reentered` error of its operation (`vm_to_phy` returns `None`,
///   `unmap` does nothing) — it does not deadlock, and nothing changes;
/// - must not sleep, yield to a scheduler or wait for an interrupt on this CPU;
/// - may wait for other CPUs (e.g. TLB shootdown acknowledgements): CPUs waiting for the lock
///   keep their interrupts as their callers had them, so they take the IPI — unless a caller
///   itself masked interrupts before calling the seed API, which a kernel whose TLB hook waits
///   for IPIs must therefore not do;
/// - should be short.
///
/// On return (or when unwinding from a panic) the lock is freed and the CPU's interrupt state
/// restored as it was before the call. See the [`crate::irq`] module for the lock's protocol.
///
/// ```
/// use awk_paging::{AccessError, ActiveTable, FrameAllocator, GlobalTable, InstanceOf, NoTlb};
/// use awk_paging::{OffsetPhysMem, PhyAddr, TranslateError, VirtAddr, irq::HostIrq};
/// use awk_paging::emu::EmuArch;
///
/// /// An allocator with nothing to give (a kernel's real one goes here).
/// struct NoFrames;
/// unsafe impl FrameAllocator for NoFrames {
///     fn allocate_frame(&mut self) -> Option<PhyAddr> { None }
///     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
/// }
///
/// struct Backend;
/// static GLOBAL: GlobalTable<InstanceOf<Backend>, HostIrq> = GlobalTable::new();
/// impl ActiveTable for Backend {
///     type Arch = EmuArch;
///     type Mem = OffsetPhysMem;
///     type Frames = NoFrames;
///     type Tlb = NoTlb;
///     type Irq = HostIrq;
///     fn global() -> &'static GlobalTable<InstanceOf<Self>, HostIrq> { &GLOBAL }
/// }
///
/// let va = VirtAddr::new(0x4000);
/// assert_eq!(Backend::with_table(|t| t.root()), Err(AccessError::NotInitialized));
/// assert_eq!(Backend::try_vm_to_phy(va), Err(TranslateError::NotInitialized));
/// ```
pub trait ActiveTable {
    /// Descriptor format.
    type Arch: Arch + 'static;
    /// Physical-memory accessor.
    type Mem: PhysMem + 'static;
    /// Frame allocator.
    type Frames: FrameAllocator + 'static;
    /// TLB hook.
    type Tlb: Tlb + Clone + 'static;
    /// How the global's lock masks interrupts and tells CPUs apart.
    type Irq: IrqControl + 'static;

    /// The backend's global instance.
    fn global() -> &'static GlobalTable<InstanceOf<Self>, Self::Irq>;

    /// Installs `table` as the global instance (once). A refused table is dropped (which does
    /// not free its frames).
    ///
    /// # Errors
    ///
    /// [`InitError::AlreadyInitialized`] when a table is installed already.
    fn install(table: InstanceOf<Self>) -> Result<(), InitError> {
        Self::global()
            .init(table)
            .map_err(|_| InitError::AlreadyInitialized)
    }

    /// Runs `f` on the global instance under its lock (the full instance API), with interrupts
    /// masked on this CPU. The rules for `f` are in the [trait documentation](Self#hooks).
    ///
    /// # Errors
    ///
    /// [`AccessError::NotInitialized`] before [`install`](Self::install),
    /// [`AccessError::Reentered`] when this CPU already holds the lock; `f` did not run then.
    fn with_table<R>(f: impl FnOnce(&mut InstanceOf<Self>) -> R) -> Result<R, AccessError> {
        Self::global().with(f)
    }

    /// The checked form of [`Mapper::vm_to_phy`]: why there is no translation.
    ///
    /// # Errors
    ///
    /// [`TranslateError::NotInitialized`], [`TranslateError::Reentered`], or the table's own
    /// error ([`TranslateError::NotMapped`], ...).
    fn try_vm_to_phy(vm_addr: VirtAddr) -> Result<PhyAddr, TranslateError> {
        Self::global().with(|t| t.translate(vm_addr).map(|t| t.pa))?
    }

    /// The checked form of [`Mapper::unmap`]: the precise error instead of a silent no-op.
    ///
    /// # Errors
    ///
    /// [`UnmapError::NotInitialized`], [`UnmapError::Reentered`], or the table's own error
    /// ([`UnmapError::NotMapped`], ...).
    ///
    /// # Safety
    ///
    /// As [`Mapper::unmap`].
    unsafe fn try_unmap(vm_addr: VirtAddr) -> Result<Unmapped, UnmapError> {
        Self::global().with(|t| {
            // The 4 KiB page at `vm_addr`, whatever maps it: a huge page around it is split
            // (`unmap_range`), and emptied tables are reclaimed after the flush.
            let mut gather = t.gather();
            let mut gone = None;
            // SAFETY: forwarded.
            let r = unsafe {
                t.unmap_range(vm_addr, PAGESIZE as u64, &mut gather, |u| {
                    gone = Some(u.unmapped);
                })
            };
            // Our own gather: `finish` cannot refuse it.
            let _ = t.finish(gather);
            r.map_err(|e| e.error)?;
            gone.ok_or(UnmapError::NotMapped)
        })?
    }
}

impl<B: ActiveTable> Mapper for B {
    fn vm_to_phy(vm_addr: VirtAddr) -> Option<PhyAddr> {
        B::try_vm_to_phy(vm_addr).ok()
    }

    unsafe fn map(vm_addr: VirtAddr, phy_addr: PhyAddr, flags: Flags) -> Result<(), MapError> {
        B::global().with(|t| {
            // SAFETY: forwarded.
            unsafe { t.map(vm_addr, phy_addr, PageSize::Size4K, flags) }.map(|f| f.flush())
        })?
    }

    unsafe fn unmap(vm_addr: VirtAddr) {
        // SAFETY: forwarded; errors are the documented no-op.
        let _ = unsafe { B::try_unmap(vm_addr) };
    }
}
