//! Interrupt masking and CPU identity for the lock behind the seed API, and the lock itself.
//!
//! The seed API's [`GlobalTable`](crate::GlobalTable) is a spin lock that a kernel reaches from
//! anywhere: thread context, interrupt and page-fault handlers, and its own hooks (the TLB hook
//! runs while the table's lock is held; the frame allocator while the allocator's). A plain spin
//! lock deadlocks in two ways there:
//!
//! - an interrupt arrives on a CPU that holds the lock, and its handler takes the lock: it spins
//!   on itself forever;
//! - a hook (or an exception or NMI handler, which masking cannot hold off) calls back into the
//!   seed API while the lock is held: same.
//!
//! So the lock masks interrupts on its CPU while it is held (the first case cannot happen), and
//! records which CPU holds it: a second acquisition on the holder's CPU is reported as an error
//! instead of spinning (the second case). Both need the CPU's help, which an [`IrqControl`]
//! gives: one per backend (`awk_paging_x86_64::X86Irq`, `awk_paging_aarch64::AArch64Irq`), and
//! [`HostIrq`] for host tests, where every thread plays one CPU.
//!
//! # The lock's protocol
//!
//! One word: `0` when free, otherwise the holder's [`IrqControl::cpu_id`] plus one. Acquiring:
//!
//! 1. mask interrupts ([`IrqControl::disable`], keeping the previous state);
//! 2. compare-exchange the word from free to this CPU's id (acquire ordering);
//! 3. on success hold the lock with interrupts masked; on failure restore the saved state, and
//!    - if the word holds this CPU's id: this CPU already holds the lock further up its stack,
//!      which can only be a hook or an exception handler calling back in — report it;
//!    - otherwise another CPU holds it: wait until the word reads free *with interrupts in the
//!      caller's state*, then start again at 1.
//!
//! Releasing stores free (release ordering), then restores the saved interrupt state.
//!
//! Waiting with interrupts restored matters on SMP: a holder whose TLB hook sends a shootdown IPI
//! and waits for every CPU to acknowledge it would otherwise wait forever for a CPU spinning here
//! with interrupts masked. An interrupt handler that runs while this CPU waits finds the lock held
//! by another CPU and waits too; nothing on this CPU holds it.
//!
//! The CPU id only has to be stable while interrupts are masked (nothing can migrate the code to
//! another CPU then) and different on CPUs that run at the same time. A wrong id never breaks
//! mutual exclusion, which rests on the compare-exchange alone: two CPUs sharing an id only see a
//! false "re-entered" error when they contend; one CPU reporting different ids spins on itself
//! as a plain spin lock would.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Masks the current CPU's interrupts and names the CPU, for the lock behind
/// [`GlobalTable`](crate::GlobalTable).
///
/// Implementations: `awk_paging_x86_64::X86Irq` (RFLAGS.IF, APIC ID),
/// `awk_paging_aarch64::AArch64Irq` (PSTATE.DAIF, MPIDR_EL1) and [`HostIrq`] (host threads). A
/// kernel with its own notion of the current CPU (per-CPU data behind GS, TPIDR_EL1) can write
/// its own and use it in its own [`ActiveTable`](crate::ActiveTable) backend.
///
/// ```
/// use awk_paging::irq::IrqControl;
/// use core::cell::Cell;
///
/// /// One CPU with a simulated interrupt flag.
/// struct Uni;
/// std::thread_local!(static MASKED: Cell<bool> = const { Cell::new(false) });
/// impl IrqControl for Uni {
///     type State = bool; // masked before?
///     fn disable() -> bool { MASKED.replace(true) }
///     fn restore(was_masked: bool) { MASKED.set(was_masked) }
///     fn cpu_id() -> usize { 0 }
/// }
///
/// let saved = Uni::disable();
/// assert!(MASKED.get());
/// Uni::restore(saved);
/// assert!(!MASKED.get());
/// ```
pub trait IrqControl {
    /// The interrupt state [`disable`](Self::disable) saved, to give back to
    /// [`restore`](Self::restore).
    type State: Copy;

    /// Masks (maskable) interrupts on the current CPU and returns the state before. Nests:
    /// called with interrupts already masked, it returns a state that restores them masked.
    fn disable() -> Self::State;

    /// Puts the interrupt mask back as it was when `disable` returned `state`. Pass only a state
    /// from this CPU's matching `disable`, in last-in first-out order: restoring an older
    /// state would unmask interrupts in the middle of someone else's masked section.
    fn restore(state: Self::State);

    /// The current CPU: the same value on every call while interrupts are masked, and a
    /// different value on every other CPU running at the same time.
    fn cpu_id() -> usize;
}

/// The [`IrqControl`] for host builds: there are no interrupts to mask, and every thread is a
/// CPU of its own (its id is a per-thread number).
///
/// Without the crate's `std` feature there are no threads to tell apart: every caller reports
/// CPU 0, so re-entry is still detected, but two threads that contend for a
/// [`GlobalTable`](crate::GlobalTable) see a false
/// [`AccessError::Reentered`](crate::AccessError::Reentered). Host tests enable `std`.
///
/// ```
/// use awk_paging::irq::{HostIrq, IrqControl};
/// let here = HostIrq::cpu_id();
/// let there = std::thread::spawn(HostIrq::cpu_id).join().unwrap();
/// assert_eq!(HostIrq::cpu_id(), here);
/// assert_ne!(here, there);
/// HostIrq::restore(HostIrq::disable()); // nothing to mask
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostIrq;

impl IrqControl for HostIrq {
    type State = ();

    #[inline]
    fn disable() {}

    #[inline]
    fn restore(_state: ()) {}

    #[inline]
    fn cpu_id() -> usize {
        host_thread_id()
    }
}

/// A number unique to the calling thread (from 1, in order of first use).
#[cfg(feature = "std")]
fn host_thread_id() -> usize {
    use core::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    // Const-initialised and without a destructor: readable for the whole life of the thread,
    // including other thread-locals' destructors.
    std::thread_local!(static ID: Cell<usize> = const { Cell::new(0) });
    ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// Without `std`: every caller is CPU 0 (see [`HostIrq`]).
#[cfg(not(feature = "std"))]
fn host_thread_id() -> usize {
    0
}

/// The lock word when nobody holds it.
const FREE: usize = 0;

/// The lock word of a lock held by CPU `cpu`: never [`FREE`].
#[inline]
const fn held_by(cpu: usize) -> usize {
    cpu.saturating_add(1)
}

/// Why the lock was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contended {
    /// This CPU holds it already.
    Reentered,
    /// Another CPU holds it.
    Busy,
}

/// A spin lock that masks interrupts while held and refuses re-entry on its holder's CPU (the
/// protocol is in the [module documentation](self)).
pub(crate) struct IrqLock<T, I> {
    /// [`FREE`], or [`held_by`] the holder.
    word: AtomicUsize,
    value: UnsafeCell<T>,
    irq: PhantomData<fn() -> I>,
}

// SAFETY: the value is only reached through a guard, and the compare-exchange on `word` lets one
// guard exist at a time; the lock moves access to `T` between threads, so `T: Send` suffices (as
// for `std::sync::Mutex`).
unsafe impl<T: Send, I> Sync for IrqLock<T, I> {}

impl<T, I: IrqControl> IrqLock<T, I> {
    /// A free lock around `value`.
    pub(crate) const fn new(value: T) -> Self {
        IrqLock {
            word: AtomicUsize::new(FREE),
            value: UnsafeCell::new(value),
            irq: PhantomData,
        }
    }

    /// Takes the lock, waiting while another CPU holds it; `Err` if this CPU holds it.
    pub(crate) fn lock(&self) -> Result<IrqGuard<'_, T, I>, Contended> {
        loop {
            match self.try_lock() {
                // Interrupts are in the caller's state here (try_lock restored them).
                Err(Contended::Busy) => self.wait_until_free(),
                taken_or_reentered => return taken_or_reentered,
            }
        }
    }

    /// Waits (interrupts in the caller's state) until the lock word reads free; takes nothing.
    pub(crate) fn wait_until_free(&self) {
        while self.word.load(Ordering::Relaxed) != FREE {
            core::hint::spin_loop();
        }
    }

    /// Whether this CPU holds the lock. Exact while it does (interrupts are masked then, so the
    /// CPU id is stable); otherwise `false`, or (if the caller migrated between reading its id
    /// and the lock word) a spurious `true`.
    #[inline]
    pub(crate) fn held_here(&self) -> bool {
        self.word.load(Ordering::Relaxed) == held_by(I::cpu_id())
    }

    /// Takes the lock if it is free, never waits.
    pub(crate) fn try_lock(&self) -> Result<IrqGuard<'_, T, I>, Contended> {
        let saved = I::disable();
        let me = held_by(I::cpu_id());
        match self
            .word
            .compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(IrqGuard {
                lock: self,
                saved,
                not_send: PhantomData,
            }),
            Err(holder) => {
                I::restore(saved);
                Err(if holder == me {
                    Contended::Reentered
                } else {
                    Contended::Busy
                })
            }
        }
    }
}

/// A held [`IrqLock`]: interrupts are masked on this CPU until it is dropped. Dropping it (also
/// while unwinding from a panic) frees the lock, then restores the interrupt state saved when it
/// was taken.
pub(crate) struct IrqGuard<'a, T, I: IrqControl> {
    lock: &'a IrqLock<T, I>,
    saved: I::State,
    /// The saved state belongs to this CPU: the guard must not move to another thread.
    not_send: PhantomData<*mut ()>,
}

impl<T, I: IrqControl> core::ops::Deref for IrqGuard<'_, T, I> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard is the lock's one holder.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T, I: IrqControl> core::ops::DerefMut for IrqGuard<'_, T, I> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard is the lock's one holder, borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T, I: IrqControl> Drop for IrqGuard<'_, T, I> {
    #[inline]
    fn drop(&mut self) {
        // Free first: an interrupt taken the moment the state is restored finds the lock free.
        self.lock.word.store(FREE, Ordering::Release);
        I::restore(self.saved);
    }
}
