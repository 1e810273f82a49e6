//! The lock behind the seed API ([`GlobalTable`]) with a fake [`IrqControl`] that simulates one
//! interrupt flag per thread and records every `disable`/`restore`: interrupts are masked while
//! the closure runs and restored to their previous state on every path (success, not
//! initialised, re-entered, busy, panic); re-entry on the holding "CPU" is an error, not a
//! deadlock; waiting for another CPU is not mistaken for re-entry and happens with interrupts in
//! the caller's state.
//!
//! Anything a regression could deadlock runs under a timeout ([`within`]).

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use awk_paging::irq::{HostIrq, IrqControl};
use awk_paging::{AccessError, GlobalTable, TryAccessError};

/// One call to the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// `disable` found interrupts masked (`true`) or enabled.
    Disable(bool),
    /// `restore` put them back masked (`true`) or enabled.
    Restore(bool),
}

std::thread_local! {
    static MASKED: Cell<bool> = const { Cell::new(false) };
    static LOG: RefCell<Vec<Ev>> = const { RefCell::new(Vec::new()) };
    /// This thread's state is also published in [`WAITER_RESTORES`] and [`WAITER_MASKED`].
    static WAITER: Cell<bool> = const { Cell::new(false) };
}

/// Restores by the thread marked [`WAITER`] (one test uses it).
static WAITER_RESTORES: AtomicUsize = AtomicUsize::new(0);
/// Whether the thread marked [`WAITER`] has interrupts masked.
static WAITER_MASKED: AtomicBool = AtomicBool::new(false);

/// Each thread is a CPU with its own interrupt flag.
struct Fake;

impl IrqControl for Fake {
    type State = bool;
    fn disable() -> bool {
        if WAITER.get() {
            WAITER_MASKED.store(true, Ordering::SeqCst);
        }
        let was = MASKED.replace(true);
        LOG.with_borrow_mut(|l| l.push(Ev::Disable(was)));
        was
    }
    fn restore(was: bool) {
        if WAITER.get() {
            WAITER_MASKED.store(was, Ordering::SeqCst);
            WAITER_RESTORES.fetch_add(1, Ordering::SeqCst);
        }
        MASKED.set(was);
        LOG.with_borrow_mut(|l| l.push(Ev::Restore(was)));
    }
    fn cpu_id() -> usize {
        HostIrq::cpu_id()
    }
}

fn masked() -> bool {
    MASKED.get()
}

/// This thread's calls so far, and forgets them.
fn take_log() -> Vec<Ev> {
    LOG.take()
}

/// Runs `f` on a thread of its own; panics if it has not returned within 10 s (a deadlock) or
/// panicked.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    // Miri runs orders of magnitude slower: the guard is for deadlocks, not speed.
    let secs = if cfg!(miri) { 10_000 } else { 10 };
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: no answer after {secs} s — deadlocked?"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

#[test]
fn enabled_interrupts_are_masked_inside_and_enabled_after() {
    static T: GlobalTable<u32, Fake> = GlobalTable::new();
    T.init(1).unwrap();
    take_log();
    assert!(!masked());
    assert_eq!(T.with(|v| (*v, masked())), Ok((1, true)));
    assert!(!masked());
    assert_eq!(take_log(), [Ev::Disable(false), Ev::Restore(false)]);
}

#[test]
fn masked_interrupts_stay_masked() {
    static T: GlobalTable<u32, Fake> = GlobalTable::new();
    T.init(1).unwrap();
    MASKED.set(true);
    take_log();
    assert_eq!(T.with(|_| masked()), Ok(true));
    assert!(
        masked(),
        "a caller with interrupts masked keeps them masked"
    );
    assert_eq!(take_log(), [Ev::Disable(true), Ev::Restore(true)]);
    assert_eq!(T.try_with(|_| masked()), Ok(true));
    assert!(masked());
    assert_eq!(take_log(), [Ev::Disable(true), Ev::Restore(true)]);
}

#[test]
fn not_initialised_is_its_own_error_and_restores() {
    static T: GlobalTable<u32, Fake> = GlobalTable::new();
    assert_eq!(T.with(|v| *v), Err(AccessError::NotInitialized));
    assert!(!masked());
    assert_eq!(T.try_with(|v| *v), Err(TryAccessError::NotInitialized));
    assert!(!masked());
    assert_eq!(
        take_log(),
        [
            Ev::Disable(false),
            Ev::Restore(false),
            Ev::Disable(false),
            Ev::Restore(false)
        ]
    );
    assert!(!T.is_initialized());
}

#[test]
fn reentry_is_an_error_not_a_deadlock() {
    static T: GlobalTable<u32, Fake> = GlobalTable::new();
    T.init(7).unwrap();
    let (outcome, log, after) = within("with inside with", || {
        let outcome = T.with(|v| {
            *v += 1;
            let inner = T.with(|v| *v);
            let inner_try = T.try_with(|v| *v);
            (inner, inner_try, masked())
        });
        (outcome, take_log(), masked())
    });
    assert_eq!(
        outcome,
        Ok((
            Err(AccessError::Reentered),
            Err(TryAccessError::Reentered),
            true // the refused inner calls leave the outer section masked
        ))
    );
    assert!(!after, "interrupts enabled again after the outer call");
    assert_eq!(
        log,
        [
            Ev::Disable(false), // outer
            Ev::Disable(true),  // inner with, refused
            Ev::Restore(true),
            Ev::Disable(true), // inner try_with, refused
            Ev::Restore(true),
            Ev::Restore(false), // outer
        ]
    );
    assert_eq!(within("with after re-entry", || T.with(|v| *v)), Ok(8));
}

#[test]
fn panic_in_closure_releases_the_lock_and_restores() {
    static T: GlobalTable<u32, Fake> = GlobalTable::new();
    T.init(0).unwrap();
    take_log();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _ = T.with(|v| {
            *v = 5;
            panic!("a hook panicked");
        });
    }));
    assert!(r.is_err());
    assert!(!masked(), "restored while unwinding");
    assert_eq!(take_log(), [Ev::Disable(false), Ev::Restore(false)]);
    // Not poisoned: the next caller (same thread, or another) gets the lock.
    assert_eq!(T.with(|v| *v), Ok(5));
    assert_eq!(within("with after a panic", || T.with(|v| *v)), Ok(5));
}

/// Another thread holds the lock until told to let go; returns the release handle.
fn hold_elsewhere(
    t: &'static GlobalTable<u32, Fake>,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let held = Arc::new(Barrier::new(2));
    let (release, wait) = mpsc::channel::<()>();
    let h = Arc::clone(&held);
    let holder = std::thread::spawn(move || {
        t.with(|_| {
            h.wait();
            let _ = wait.recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
    });
    held.wait();
    (release, holder)
}

#[test]
fn busy_elsewhere_is_not_reentry() {
    static T: GlobalTable<u32, Fake> = GlobalTable::new();
    T.init(3).unwrap();
    let (release, holder) = hold_elsewhere(&T);
    take_log();
    // try_with never waits: busy, not re-entered, interrupts as before.
    assert_eq!(T.try_with(|v| *v), Err(TryAccessError::Busy));
    assert!(!masked());
    assert_eq!(take_log(), [Ev::Disable(false), Ev::Restore(false)]);
    // with waits for the other CPU, with interrupts enabled while it waits, then gets it.
    let waiter = std::thread::spawn(|| {
        WAITER.set(true);
        let r = T.with(|v| (*v, masked()));
        (r, take_log(), masked())
    });
    // Let go only after the waiter was refused once (its first restore comes from a refused
    // attempt: a successful one restores only when its closure is done).
    within("waiter refused once", || {
        while WAITER_RESTORES.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
    });
    // It is spinning now; with interrupts enabled, as its caller had them.
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !WAITER_MASKED.load(Ordering::SeqCst),
        "waiting for another CPU with interrupts masked"
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    let (r, log, after) = waiter.join().unwrap();
    assert_eq!(r, Ok((3, true)));
    assert!(!after);
    // At least one refused attempt (disable, restore) before the one that took the lock: the
    // wait happened with the caller's interrupt state back in place.
    assert!(log.len() >= 4, "{log:?}");
    for pair in log.chunks(2) {
        assert_eq!(pair, [Ev::Disable(false), Ev::Restore(false)], "{log:?}");
    }
}

#[test]
fn many_threads_share_the_lock() {
    static T: GlobalTable<u64, HostIrq> = GlobalTable::new();
    T.init(0).unwrap();
    const THREADS: u64 = 4;
    const EACH: u64 = 20_000;
    let total = within("four threads incrementing", || {
        let start = Arc::new(Barrier::new(THREADS as usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..EACH {
                        // Not a single false "re-entered" among contending threads.
                        T.with(|v| {
                            // Hold it a moment, so that the others really wait.
                            for _ in 0..50 {
                                std::hint::spin_loop();
                            }
                            *v += 1
                        })
                        .expect("with from another thread");
                    }
                    // Re-entry on this thread is still caught.
                    assert_eq!(T.with(|_| T.with(|_| ())), Ok(Err(AccessError::Reentered)));
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        T.with(|v| *v).unwrap()
    });
    assert_eq!(total, THREADS * EACH);
}
