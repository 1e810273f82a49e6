//! [`GlobalTable`]: a value behind an interrupt-masking lock that knows its holder.

use core::sync::atomic::{AtomicBool, Ordering};

use super::{AccessError, TryAccessError};
use crate::irq::{Contended, IrqControl, IrqLock};

/// A global value behind an interrupt-masking lock: a backend's [`KernelGlobal`](super::KernelGlobal)
/// keeps its table in one and its frame allocator in another.
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

    /// Waits until the lock reads free (with interrupts as the caller has them); takes nothing.
    pub(crate) fn wait_until_free(&self) {
        self.slot.wait_until_free();
    }

    /// Whether this CPU holds the lock (inside a [`with`](Self::with) closure, or a hook or
    /// handler it led to). Does not take the lock. Exact while this CPU holds it; otherwise
    /// `false` (or, if the caller moved to another CPU while asking, possibly a stale `true`).
    ///
    /// ```
    /// # use awk_paging::{GlobalTable, irq::HostIrq};
    /// static CELL: GlobalTable<u8, HostIrq> = GlobalTable::new();
    /// CELL.init(0).unwrap();
    /// assert!(!CELL.held_here());
    /// assert_eq!(CELL.with(|_| CELL.held_here()), Ok(true));
    /// ```
    #[must_use]
    pub fn held_here(&self) -> bool {
        self.slot.held_here()
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
