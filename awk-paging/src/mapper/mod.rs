//! The seed API: static functions on the active page table, and the lock-guarded global instance
//! behind them.
//!
//! A backend owns one `static` [`KernelGlobal`] holding its kernel [`PageTable`] and implements
//! [`ActiveTable`]; the [`Mapper`] implementation is then provided here once for every backend.
//! No `&'static mut` table is ever rebuilt from CR3/TTBR per call: all edits go through the
//! one instance under an interrupt-masking lock that knows its holder (see [`crate::irq`]);
//! translation takes no lock (`read`: the read view and its grace period).
//!
//! `map` and `unmap` run under that lock with interrupts masked, and so does the TLB hook the
//! table calls; the frame allocator is called outside it (`kernel`): what hooks must not do is
//! documented on [`ActiveTable`] (section "Hooks").

mod global;
mod kernel;
mod read;

pub use global::GlobalTable;
pub use kernel::{KernelGlobal, Lent};

use crate::arch::Arch;
use crate::irq::IrqControl;
use crate::{
    Flags, FrameAllocator, FramePool, MapError, PageSize, PageTable, PhyAddr, PhysMem, Tlb,
    TranslateError, UnmapError, Unmapped, VirtAddr, PAGESIZE,
};

/// The seed mapping API, as kernels already call it: static functions on the active table.
///
/// `map` and `unmap` take the table's lock with interrupts masked (the frame allocator is called
/// outside it); `vm_to_phy` takes no lock. The [rules for the hooks](crate::ActiveTable#hooks)
/// say what hooks must not do. The checked forms
/// [`ActiveTable::try_vm_to_phy`] and [`ActiveTable::try_unmap`] tell every failure apart.
///
/// ```ignore
/// // In a kernel, after `X86::init(...)`:
/// unsafe { X86::map(va, pa, Flags::RW) }?;
/// assert_eq!(X86::vm_to_phy(va), Some(pa));
/// unsafe { X86::unmap(va) };
/// ```
pub trait Mapper {
    /// The physical address `vm_addr` translates to, or `None`: not mapped, not initialised or
    /// not a valid address ([`ActiveTable::try_vm_to_phy`] says which). Takes no lock: callable
    /// from anywhere, hooks and interrupt handlers included, concurrently with `map`/`unmap` on
    /// other CPUs (the answer is then the mapping before or after their change).
    fn vm_to_phy(vm_addr: VirtAddr) -> Option<PhyAddr>;

    /// Maps the 4 KiB page at `vm_addr` to `phy_addr` with `flags` and flushes the TLB.
    ///
    /// Fails with [`MapError::NotInitialized`] before the table is installed and with
    /// [`MapError::Reentered`] when called while this CPU holds the table's lock (from the TLB
    /// hook, a `with_table` closure or an exception handler); nothing changed then. The frame
    /// allocator may call it (frames are taken before the lock).
    ///
    /// # Safety
    ///
    /// The mapping must not break the aliasing rules of memory Rust code uses.
    unsafe fn map(vm_addr: VirtAddr, phy_addr: PhyAddr, flags: Flags) -> Result<(), MapError>;

    /// Unmaps the 4 KiB page at `vm_addr` and flushes the TLB. A larger page around it is split
    /// so that exactly that 4 KiB goes (never more); tables that become empty are freed after the
    /// flush and after lock-free translations that may be inside them have left. Unmapping an address that is not mapped, before initialisation or while this CPU
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

/// The instance type behind an [`ActiveTable`] backend, as [`ActiveTable::with_table`] lends it
/// out: the installed table, with a [`FramePool`] in front of the kernel's allocator.
pub type InstanceOf<B> = PageTable<
    <B as ActiveTable>::Arch,
    <B as ActiveTable>::Mem,
    FramePool<<B as ActiveTable>::Mem, Lent<B>>,
    <B as ActiveTable>::Tlb,
>;

/// The table a backend installs ([`ActiveTable::install`]): built or taken over with the
/// kernel's own allocator.
pub type TableOf<B> = PageTable<
    <B as ActiveTable>::Arch,
    <B as ActiveTable>::Mem,
    <B as ActiveTable>::Frames,
    <B as ActiveTable>::Tlb,
>;

/// A backend whose kernel page table lives in a [`KernelGlobal`]. Implementing this provides
/// the seed [`Mapper`] API.
///
/// # Hooks
///
/// The seed calls never call the frame allocator while they hold the table's lock: `map` takes
/// the frames it may need into the table's [`FramePool`] first (under the allocator's own lock),
/// and `unmap` gives surplus frames back after. So **the allocator may call the seed API**
/// (`map`, `unmap`, `vm_to_phy`) from `allocate_frame` and `deallocate_frame` — a heap that grows
/// by mapping pages works. Such a nested call skips the refill and uses the frames already
/// pooled (two calls' worth are kept there).
///
/// [`vm_to_phy`](Mapper::vm_to_phy) takes no lock at all: it works from anywhere, including
/// hooks and interrupt handlers (the rule for concurrent readers is in
/// [`try_vm_to_phy`](Self::try_vm_to_phy)).
///
/// Every seed `map`/`unmap` and every [`with_table`](Self::with_table) closure runs under the
/// table's lock, with interrupts masked on the calling CPU; the [`Tlb`] hook is called from
/// there, and inside `with_table` closures the allocator too. They:
///
/// - must not call `map`, `unmap`, `with_table` or `install` of the same backend: such a call
///   fails at once with the `Reentered` error of its operation (`unmap` does nothing) — it does
///   not deadlock, and nothing changes;
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
/// use awk_paging::{AccessError, ActiveTable, FrameAllocator, KernelGlobal, NoTlb};
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
/// static GLOBAL: KernelGlobal<Backend> = KernelGlobal::new();
/// impl ActiveTable for Backend {
///     type Arch = EmuArch;
///     type Mem = OffsetPhysMem;
///     type Frames = NoFrames;
///     type Tlb = NoTlb;
///     type Irq = HostIrq;
///     fn global() -> &'static KernelGlobal<Self> { &GLOBAL }
/// }
///
/// let va = VirtAddr::new(0x4000);
/// assert_eq!(Backend::with_table(|t| t.root()), Err(AccessError::NotInitialized));
/// assert_eq!(Backend::try_vm_to_phy(va), Err(TranslateError::NotInitialized));
/// ```
pub trait ActiveTable: Sized + 'static {
    /// Descriptor format (a copy is kept for lock-free translation).
    type Arch: Arch + 'static;
    /// Physical-memory accessor (a copy is kept for lock-free translation and the pool).
    type Mem: PhysMem + Clone + 'static;
    /// The kernel's frame allocator.
    type Frames: FrameAllocator + 'static;
    /// TLB hook.
    type Tlb: Tlb + Clone + 'static;
    /// How the global's locks mask interrupts and tell CPUs apart.
    type Irq: IrqControl + 'static;

    /// The backend's global state.
    fn global() -> &'static KernelGlobal<Self>;

    /// Installs `table` as the global instance (once). Its allocator moves behind a lock of its
    /// own, and the pool in front of it is filled. A refused table is dropped (which does not
    /// free its frames).
    ///
    /// # Errors
    ///
    /// [`InitError::AlreadyInitialized`] when a table is installed already.
    fn install(table: TableOf<Self>) -> Result<(), InitError> {
        Self::global().install(table)
    }

    /// Runs `f` on the global instance under its lock (the full instance API), with interrupts
    /// masked on this CPU and the kernel's allocator lent to the table's pool (the allocator is
    /// called under the lock here; a call from inside the allocator gets the pooled frames only).
    /// The rules for `f` are in the [trait documentation](Self#hooks). Code in `f` that frees
    /// tables (the `finish` of a gather holding detached tables) must call
    /// [`KernelGlobal::wait_for_readers`] between the unlink and the `finish`.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotInitialized`] before [`install`](Self::install),
    /// [`AccessError::Reentered`] when this CPU already holds the lock; `f` did not run then.
    fn with_table<R>(f: impl FnOnce(&mut InstanceOf<Self>) -> R) -> Result<R, AccessError> {
        Self::global().with_lent(f)
    }

    /// The checked form of [`Mapper::vm_to_phy`]: why there is no translation.
    ///
    /// Takes no lock: a read-only walk from the root with one atomic load per entry, safe from
    /// any context, concurrently with `map`/`unmap` on other CPUs. While the mapping of `vm_addr`
    /// changes, the result is the mapping before or after the change; tables are freed only
    /// after a grace period that waits for walks in progress. The rules for the kernel are in
    /// [`KernelGlobal`'s documentation](KernelGlobal#lock-free-translation).
    ///
    /// # Errors
    ///
    /// [`TranslateError::NotInitialized`], or the table's own error
    /// ([`TranslateError::NotMapped`], ...). Never [`TranslateError::Reentered`].
    fn try_vm_to_phy(vm_addr: VirtAddr) -> Result<PhyAddr, TranslateError> {
        Self::global().translate(vm_addr)
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
        let g = Self::global();
        let r = g.locked(|t| {
            // The common case: a 4 KiB leaf. Clear it, invalidate it; only when its table is
            // empty now, reclaim (below).
            // SAFETY: forwarded.
            match unsafe { t.unmap(vm_addr, PageSize::Size4K) } {
                Ok((gone, flush)) => {
                    flush.flush();
                    if read::leaf_table_empty(t.arch(), t.mem(), t.root(), vm_addr) {
                        // SAFETY: forwarded (the page is unmapped already; this frees the
                        // tables it emptied).
                        let _ = unsafe { reclaim(g, t, vm_addr) };
                    }
                    Ok(gone)
                }
                Err(UnmapError::NotMapped) => Err(UnmapError::NotMapped),
                // A huge page around it (split), or an input the range engine reports.
                // SAFETY: forwarded.
                Err(_) => {
                    unsafe { reclaim(g, t, vm_addr) }.and_then(|u| u.ok_or(UnmapError::NotMapped))
                }
            }
        })?;
        g.trim();
        r
    }
}

/// Unmaps the 4 KiB page at `va` whatever maps it (a huge page around it is split) with the
/// range engine, and frees the tables that emptied: after the flush and after the lock-free
/// readers' grace period. Returns what was unmapped, if anything.
///
/// # Safety
///
/// As [`Mapper::unmap`].
unsafe fn reclaim<B: ActiveTable>(
    g: &KernelGlobal<B>,
    t: &mut InstanceOf<B>,
    va: VirtAddr,
) -> Result<Option<Unmapped>, UnmapError> {
    let mut gather = t.gather();
    let mut gone = None;
    // SAFETY: forwarded.
    let r = unsafe {
        t.unmap_range(va, PAGESIZE as u64, &mut gather, |u| {
            gone = Some(u.unmapped);
        })
    };
    if !gather.tables().is_empty() {
        g.wait_for_readers();
    }
    // Our own gather: `finish` cannot refuse it.
    let _ = t.finish(gather);
    r.map_err(|e| e.error)?;
    Ok(gone)
}

impl<B: ActiveTable> Mapper for B {
    fn vm_to_phy(vm_addr: VirtAddr) -> Option<PhyAddr> {
        B::try_vm_to_phy(vm_addr).ok()
    }

    unsafe fn map(vm_addr: VirtAddr, phy_addr: PhyAddr, flags: Flags) -> Result<(), MapError> {
        let g = B::global();
        g.refill();
        g.locked(|t| {
            // SAFETY: forwarded.
            unsafe { t.map(vm_addr, phy_addr, PageSize::Size4K, flags) }.map(|f| f.flush())
        })?
    }

    unsafe fn unmap(vm_addr: VirtAddr) {
        // SAFETY: forwarded; errors are the documented no-op.
        let _ = unsafe { B::try_unmap(vm_addr) };
    }
}
