//! [`KernelGlobal`]: what a backend's static API keeps — the table behind its lock, the
//! kernel's frame allocator behind a lock of its own, the frames taken for the table in advance,
//! and the lock-free read view.
//!
//! Lock order: the allocator's lock, then the table's. The seed `map` and `unmap` never hold
//! both: they take frames (allocator lock), then edit (table lock), then give surplus frames
//! back (allocator lock). So the allocator may call the seed API: a call from inside
//! `allocate_frame` finds the allocator lock held by its own CPU, skips the refill, and maps
//! with the frames already pooled.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::global::GlobalTable;
use super::read::ReadView;
use super::{AccessError, ActiveTable, InitError, InstanceOf, TableOf, TryAccessError};
use crate::arch::Arch;
use crate::{FrameAllocator, FramePool, PageTable, PhyAddr, TranslateError, VirtAddr};

/// At most this many frames move between the allocator and the pool per lock round.
const BATCH: usize = 8;

/// The global state behind an [`ActiveTable`] backend's static API (one `static` per backend).
///
/// # Lock-free translation
///
/// [`ActiveTable::try_vm_to_phy`] (and `vm_to_phy`) never take the lock `map`/`unmap` hold. A
/// reader walks from the root with one atomic load per entry, so it never sees a torn entry; a
/// table it reaches through a link it loaded was initialised before the link was stored (the
/// writer's [`Tlb::order_table_writes`](crate::Tlb::order_table_writes), a release fence or
/// stronger, precedes every link).
///
/// What a reader sees while another CPU changes the mapping of its address: the mapping before
/// the change or the one after, never a mix (during an unmap: the old frame or "not mapped";
/// during a map: "not mapped" or the new frame). A reader that got the old frame may still hold
/// it after the unmap returned: **a kernel frees a data frame only when no CPU can still use a
/// translation of it** — the same rule as for the TLB; do not translate a page that is being
/// unmapped and keep using the answer.
///
/// Tables are different: a reader must never load from a table after its frame was freed. So
/// readers announce themselves (in per-epoch counters) for the length of their walk, and the seed
/// `unmap`, after unlinking emptied tables and before freeing them, waits until every reader that
/// could still be inside them has left ([`wait_for_readers`](Self::wait_for_readers)): a grace
/// period. Readers that keep arriving cannot stall it (they use the next epoch's counters).
/// **Code that unlinks tables itself inside [`ActiveTable::with_table`]** (`unmap_range`, then
/// `finish`) **calls `wait_for_readers` between the two.**
///
/// Unlike [`PageTable::translate`], the lock-free walk does not refuse an entry that leads back to
/// a table on its path (a recursive slot): it reads on, one level at a time, as the hardware
/// walker does.
///
/// ```
/// use awk_paging::{ActiveTable, KernelGlobal};
/// # use awk_paging::{FrameAllocator, NoTlb, OffsetPhysMem, PhyAddr, irq::HostIrq};
/// # use awk_paging::emu::EmuArch;
/// # struct NoFrames;
/// # unsafe impl FrameAllocator for NoFrames {
/// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { None }
/// #     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
/// # }
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
/// assert!(!GLOBAL.is_initialized());
/// ```
pub struct KernelGlobal<B: ActiveTable> {
    table: GlobalTable<InstanceOf<B>, B::Irq>,
    frames: GlobalTable<B::Frames, B::Irq>,
    /// The allocator while a [`with_table`](ActiveTable::with_table) closure may use it
    /// through [`Lent`]; null otherwise, and while a `Lent` call is using it.
    lent: AtomicPtr<B::Frames>,
    /// How many frames the table's pool held when last looked at (a hint read without lock).
    pooled: AtomicUsize,
    /// Below this many pooled frames `map` refills first (two calls' worth; set at install).
    low: AtomicUsize,
    view: ReadView<B::Arch, B::Mem>,
}

// SAFETY: the table and the allocator are behind `GlobalTable` locks (Sync for `Send` values);
// `lent` is only dereferenced by whoever swapped it out of the cell (one at a time), while the
// allocator's lock is held by the `with_table` that lent it; the view is Sync on its own terms.
unsafe impl<B: ActiveTable> Sync for KernelGlobal<B>
where
    InstanceOf<B>: Send,
    B::Frames: Send,
    B::Arch: Sync,
    B::Mem: Sync,
{
}

impl<B: ActiveTable> KernelGlobal<B> {
    /// An uninitialised global (usable in a `static`).
    ///
    /// ```
    /// # use awk_paging::{ActiveTable, KernelGlobal};
    /// fn fresh<B: ActiveTable>() -> KernelGlobal<B> { KernelGlobal::new() }
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        KernelGlobal {
            table: GlobalTable::new(),
            frames: GlobalTable::new(),
            lent: AtomicPtr::new(ptr::null_mut()),
            pooled: AtomicUsize::new(0),
            low: AtomicUsize::new(0),
            view: ReadView::new(),
        }
    }

    /// Whether a table is installed. Does not take any lock.
    ///
    /// ```
    /// # use awk_paging::{ActiveTable, KernelGlobal};
    /// fn ready<B: ActiveTable>() -> bool { B::global().is_initialized() }
    /// ```
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        self.view.parts().is_some() && self.table.is_initialized()
    }

    /// Runs `f` on the table if its lock is free, never waiting: for handlers that must not
    /// spin (NMI, panic and crash paths). The allocator is not lent: the table's pool has only
    /// its pooled frames.
    ///
    /// # Errors
    ///
    /// [`TryAccessError::NotInitialized`], [`TryAccessError::Reentered`] (this CPU holds the
    /// lock), [`TryAccessError::Busy`] (another CPU does).
    ///
    /// ```
    /// # use awk_paging::{ActiveTable, KernelGlobal, TryAccessError};
    /// fn root<B: ActiveTable>() -> Result<awk_paging::PhyAddr, TryAccessError> {
    ///     B::global().try_with(|t| t.root())
    /// }
    /// ```
    pub fn try_with<R>(
        &self,
        f: impl FnOnce(&mut InstanceOf<B>) -> R,
    ) -> Result<R, TryAccessError> {
        self.table.try_with(|t| {
            let r = f(t);
            self.pooled.store(t.frames().len(), Ordering::Relaxed);
            r
        })
    }

    /// How many frames the table's pool held after the last seed call (without a lock: a hint,
    /// exact while no other CPU edits the table).
    ///
    /// ```
    /// # use awk_paging::{ActiveTable, KernelGlobal};
    /// fn pooled<B: ActiveTable>() -> usize { B::global().pooled() }
    /// ```
    #[must_use]
    pub fn pooled(&self) -> usize {
        self.pooled.load(Ordering::Relaxed)
    }

    /// Waits until no lock-free translation that could have started before this call is still
    /// walking the tables (the grace period of [`ActiveTable::try_vm_to_phy`]). Call it inside
    /// [`ActiveTable::with_table`], after unlinking tables and before freeing them (before the
    /// `finish` of a gather that detached tables). The seed `unmap` does it itself.
    ///
    /// ```
    /// # use awk_paging::{ActiveTable, KernelGlobal};
    /// fn quiesce<B: ActiveTable>() { B::global().wait_for_readers() }
    /// ```
    pub fn wait_for_readers(&self) {
        self.view.wait_for_readers();
    }

    /// The frames one seed call may need at most: a table per level below the root.
    #[inline]
    fn per_call(&self) -> usize {
        self.view
            .parts()
            .map_or(0, |(a, _)| usize::from(a.levels().saturating_sub(1)))
    }

    /// Installs `table`: its allocator goes behind the allocator lock, the table (with a
    /// [`FramePool`] over [`Lent`] as its allocator) behind the table lock, and its format,
    /// accessor and root into the read view; then the pool is filled.
    pub(super) fn install(&'static self, table: TableOf<B>) -> Result<(), InitError> {
        let root = table.root();
        let policy = table.policy();
        let table = core::mem::ManuallyDrop::new(table);
        // SAFETY: moving every part out of a value that is never used or dropped again
        // (`ManuallyDrop`): each is read exactly once.
        let (arch, mem, frames, tlb) = unsafe {
            (
                ptr::read(table.arch()),
                ptr::read(table.mem()),
                ptr::read(table.frames()),
                ptr::read(table.tlb()),
            )
        };
        if self.frames.init(frames).is_err() {
            // Refused: its parts are dropped (which frees no frame, as dropping a table).
            return Err(InitError::AlreadyInitialized);
        }
        let pool = FramePool::new(mem.clone(), Lent::new());
        let (view_arch, view_mem) = (arch, mem.clone());
        // SAFETY: the same tables, the same accessor, and an allocator that frees into the
        // same allocator (through the pool): what `table` owned, this value owns.
        let mut inst = unsafe { PageTable::from_root(arch, mem, pool, tlb, root) };
        inst.set_policy(policy);
        self.low.store(
            2 * usize::from(view_arch.levels().saturating_sub(1)),
            Ordering::Relaxed,
        );
        // SAFETY: only the caller that installed the allocator gets here, once.
        unsafe { self.view.publish(view_arch, view_mem, root) };
        self.table
            .init(inst)
            .map_err(|_| InitError::AlreadyInitialized)?;
        self.refill();
        Ok(())
    }

    /// Tops the pool up to two calls' worth of frames, taking them from the allocator under its
    /// own lock, never under the table lock. Skipped when the allocator's lock is held on this
    /// CPU (a seed call from inside the allocator): the pool then has enough left for that call,
    /// since it held two calls' worth before the outer call started.
    #[inline]
    pub(super) fn refill(&self) {
        if self.pooled.load(Ordering::Relaxed) < self.low.load(Ordering::Relaxed) {
            self.refill_slow();
        }
    }

    /// [`refill`](Self::refill) when the pool is low.
    #[cold]
    #[inline(never)]
    fn refill_slow(&self) {
        let target = 2 * self.per_call();
        let have = self.pooled.load(Ordering::Relaxed);
        if have >= target {
            return;
        }
        if self.table.held_here() {
            // A seed call from a hook of an operation on this CPU (refused anyway): the
            // allocator must not run under the table lock.
            return;
        }
        let want = (target - have).min(BATCH);
        let mut got = [PhyAddr::ZERO; BATCH];
        let mut n = 0;
        let taken = self.frames.with(|f| {
            while n < want {
                let Some(frame) = f.allocate_frame() else {
                    break;
                };
                got[n] = frame;
                n += 1;
            }
        });
        if taken.is_err() || n == 0 {
            return;
        }
        let pushed = self.table.with(|t| {
            for &frame in &got[..n] {
                // SAFETY: fresh frames of the allocator behind the pool's `Lent`, unused.
                unsafe { t.frames_mut().push(frame) };
            }
            self.pooled.store(t.frames().len(), Ordering::Relaxed);
        });
        if pushed.is_err() {
            // Cannot happen (the allocator lock was free on this CPU, so no closure of this
            // CPU holds the table lock); give them back rather than leak.
            let _ = self.frames.with(|f| {
                if f.can_free() {
                    for &frame in &got[..n] {
                        // SAFETY: just allocated, never used.
                        unsafe { f.deallocate_frame(frame) };
                    }
                }
            });
        }
    }

    /// Gives frames above four calls' worth back to the allocator (if it can free), outside the
    /// table lock.
    #[inline]
    pub(super) fn trim(&self) {
        if self.pooled.load(Ordering::Relaxed) > 2 * self.low.load(Ordering::Relaxed) {
            self.trim_slow();
        }
    }

    /// [`trim`](Self::trim) when the pool is high.
    #[cold]
    #[inline(never)]
    fn trim_slow(&self) {
        let high = 4 * self.per_call();
        if self.table.held_here() {
            return;
        }
        let Ok(true) = self.frames.with(|f| f.can_free()) else {
            return;
        };
        let mut out = [PhyAddr::ZERO; BATCH];
        let mut n = 0;
        let _ = self.table.with(|t| {
            while n < BATCH && t.frames().len() > high {
                let Some(frame) = t.frames_mut().pop() else {
                    break;
                };
                out[n] = frame;
                n += 1;
            }
            self.pooled.store(t.frames().len(), Ordering::Relaxed);
        });
        let back = self.frames.with(|f| {
            for &frame in &out[..n] {
                // SAFETY: pooled frames are the allocator's and unused.
                unsafe { f.deallocate_frame(frame) };
            }
        });
        if back.is_err() && n > 0 {
            // Re-entered from inside the allocator: keep them.
            let _ = self.table.with(|t| {
                for &frame in &out[..n] {
                    // SAFETY: as above; back into the pool they came from.
                    unsafe { t.frames_mut().push(frame) };
                }
                self.pooled.store(t.frames().len(), Ordering::Relaxed);
            });
        }
    }

    /// Runs `f` under the table lock only (the seed calls).
    pub(super) fn locked<R>(
        &self,
        f: impl FnOnce(&mut InstanceOf<B>) -> R,
    ) -> Result<R, AccessError> {
        self.table.with(|t| {
            let r = f(t);
            self.pooled.store(t.frames().len(), Ordering::Relaxed);
            r
        })
    }

    /// Runs `f` under both locks with the allocator lent to the pool (`with_table`); under the
    /// table lock alone when this CPU already holds the allocator lock (a call from inside the
    /// allocator: the pool then has only its pooled frames).
    ///
    /// The allocator lock is taken first (a seed call from inside the allocator takes the table
    /// lock under it, so the other order could deadlock), and the table lock is only *tried*
    /// under it: while another CPU holds the table lock, this one lets the allocator lock go and
    /// waits with interrupts as the caller had them. Spinning with the allocator lock held would
    /// spin with interrupts masked, and a table-lock holder whose TLB hook waits for this CPU to
    /// take its shootdown IPI would wait forever.
    pub(super) fn with_lent<R>(
        &self,
        f: impl FnOnce(&mut InstanceOf<B>) -> R,
    ) -> Result<R, AccessError> {
        let mut f = Some(f);
        loop {
            let lent = self.frames.with(|frames| {
                let p: *mut B::Frames = frames;
                self.table.try_with(|t| {
                    self.lent.store(p, Ordering::Release);
                    // Takes the allocator back when the closure returns or unwinds.
                    let _back = Unlend { global: self, p };
                    let r = f.take().map(|f| f(t));
                    self.pooled.store(t.frames().len(), Ordering::Relaxed);
                    r
                })
            });
            let done = match lent {
                // Another CPU holds the table lock: wait for it without the allocator lock.
                Ok(Err(TryAccessError::Busy)) => {
                    self.table.wait_until_free();
                    continue;
                }
                Ok(Ok(Some(r))) => Ok(r),
                // The closure runs at most once: `None` would mean it was taken already.
                Ok(Ok(None)) | Ok(Err(TryAccessError::Reentered)) => Err(AccessError::Reentered),
                Ok(Err(TryAccessError::NotInitialized)) => Err(AccessError::NotInitialized),
                Err(AccessError::Reentered) => match f.take() {
                    Some(f) => self.locked(f),
                    None => Err(AccessError::Reentered),
                },
                Err(e) => Err(e),
            };
            return done;
        }
    }

    /// Lock-free translation (see [`ActiveTable::try_vm_to_phy`]).
    #[inline]
    pub(super) fn translate(&self, va: VirtAddr) -> Result<PhyAddr, TranslateError> {
        self.view.translate(va)
    }

    /// Runs `f` with the allocator if it is lent out right now and nobody else uses it.
    #[inline]
    fn borrow_lent<R>(&self, f: impl FnOnce(&mut B::Frames) -> R) -> Option<R> {
        // Nothing lent (every seed call): answer without a read-modify-write.
        if self.lent.load(Ordering::Relaxed).is_null() {
            return None;
        }
        let p = self.lent.swap(ptr::null_mut(), Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null only while a `with_lent` holds the allocator's lock and has stopped
        // using its own reference; the swap made this call its only user until the store below.
        let r = f(unsafe { &mut *p });
        self.lent.store(p, Ordering::Release);
        Some(r)
    }
}

/// Ends a loan of the allocator to [`Lent`] (also while unwinding from a panic in the
/// `with_table` closure, before the allocator's lock is released): waits for a `Lent` call still
/// using it (on another CPU: one of this CPU's has returned by now), then clears the cell.
struct Unlend<'a, B: ActiveTable> {
    global: &'a KernelGlobal<B>,
    p: *mut B::Frames,
}

impl<B: ActiveTable> Drop for Unlend<'_, B> {
    fn drop(&mut self) {
        while self
            .global
            .lent
            .compare_exchange_weak(
                self.p,
                ptr::null_mut(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
}

impl<B: ActiveTable> Default for KernelGlobal<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// The allocator of the global instance's [`FramePool`]: the kernel's allocator while a
/// [`with_table`](ActiveTable::with_table) closure runs, nothing otherwise (the seed calls use
/// only pooled frames, taken before the lock). A frame given back while nothing is lent stays in
/// the pool.
///
/// ```
/// # use awk_paging::{ActiveTable, FrameAllocator, Lent};
/// fn outside<B: ActiveTable>() {
///     let mut l = Lent::<B>::new();
///     assert_eq!(l.allocate_frame(), None); // no `with_table` running
///     assert!(!l.can_free());
/// }
/// ```
pub struct Lent<B>(core::marker::PhantomData<fn() -> B>);

impl<B> Lent<B> {
    /// The handle (all handles reach the one global allocator).
    ///
    /// ```
    /// # use awk_paging::{ActiveTable, Lent};
    /// fn handle<B: ActiveTable>() -> Lent<B> { Lent::new() }
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        Lent(core::marker::PhantomData)
    }
}

impl<B> Default for Lent<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> core::fmt::Debug for Lent<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Lent")
    }
}

// SAFETY: forwards to the backend's allocator (its contract) while it is lent, else hands out
// nothing.
unsafe impl<B: ActiveTable> FrameAllocator for Lent<B> {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        B::global().borrow_lent(|f| f.allocate_frame()).flatten()
    }

    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        // Only called when `can_free` said so (by the pool); if the allocator is not lent any
        // more the frame is lost rather than freed into nothing.
        // SAFETY: forwarded contract.
        let _ = B::global().borrow_lent(|f| unsafe { f.deallocate_frame(frame) });
    }

    fn can_free(&self) -> bool {
        B::global().borrow_lent(|f| f.can_free()).unwrap_or(false)
    }
}
