//! The cross-CPU shootdown protocol with threads as CPUs: an IPI sets the target's pending
//! flag, and the target's "interrupt handler" (its thread's loop) runs `Shootdown::handle`.
//! Each CPU's local TLB hook records what it invalidated.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use awk_paging::{Ipi, Request, Shootdown, ShootdownTlb, Tlb, VirtAddr};

const CPUS: usize = 4;

/// What each CPU invalidated, in order.
struct Log(Mutex<Vec<Request>>);

impl Tlb for &Log {
    fn flush_page(&self, va: VirtAddr) {
        self.0.lock().unwrap().push(Request::Page(va));
    }
    fn flush_leaf(&self, va: VirtAddr) {
        self.0.lock().unwrap().push(Request::Leaf(va));
    }
    fn flush_all(&self) {
        self.0.lock().unwrap().push(Request::All);
    }
}

struct Machine {
    shootdown: Shootdown<CPUS>,
    pending: [AtomicBool; CPUS],
    /// IPIs each CPU received.
    ipis: [AtomicUsize; CPUS],
    logs: [Log; CPUS],
    stop: AtomicBool,
}

impl Machine {
    fn new() -> Self {
        Machine {
            shootdown: Shootdown::new(),
            pending: [const { AtomicBool::new(false) }; CPUS],
            ipis: [const { AtomicUsize::new(0) }; CPUS],
            logs: [const { Log(Mutex::new(Vec::new())) }; CPUS],
            stop: AtomicBool::new(false),
        }
    }

    /// A CPU taking interrupts: runs the handler whenever an IPI is pending.
    fn cpu(&self, n: usize) {
        while !self.stop.load(SeqCst) {
            if self.pending[n].swap(false, SeqCst) {
                self.shootdown.handle(n, &&self.logs[n]);
            }
            std::hint::spin_loop();
        }
    }

    fn log(&self, n: usize) -> Vec<Request> {
        self.logs[n].0.lock().unwrap().clone()
    }
}

impl Ipi for &Machine {
    fn send(&self, cpus: u64) {
        for n in 0..CPUS {
            if cpus & (1 << n) != 0 {
                self.ipis[n].fetch_add(1, SeqCst);
                self.pending[n].store(true, SeqCst);
            }
        }
    }
}

/// Ends the test process with a failure if the guard lives longer than `secs` seconds (a
/// deadlocked shootdown would otherwise hang the test run).
struct Watchdog(std::sync::Arc<AtomicBool>);

impl Watchdog {
    fn new(what: &'static str, secs: u64) -> Self {
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                if flag.load(SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            eprintln!("{what}: no progress after {secs} s (deadlocked shootdown)");
            std::process::exit(101);
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

fn page(n: u64) -> VirtAddr {
    VirtAddr::new(0x4000_0000 + n * 0x1000)
}

/// Only the CPUs running the address space are interrupted, each runs the invalidation once,
/// and the initiator runs it locally.
#[test]
fn only_active_cpus_are_interrupted_and_each_invalidates() {
    let m = Machine::new();
    std::thread::scope(|s| {
        for n in 1..CPUS {
            let m = &m;
            s.spawn(move || m.cpu(n));
        }
        // The address space runs on CPUs 0, 1 and 3.
        m.shootdown
            .request(0, 0b1011, Request::Page(page(1)), &&m.logs[0], &&m);
        m.stop.store(true, SeqCst);
    });
    assert_eq!(m.log(0), [Request::Page(page(1))]);
    assert_eq!(m.log(1), [Request::Page(page(1))]);
    assert_eq!(m.log(2), []);
    assert_eq!(m.log(3), [Request::Page(page(1))]);
    let ipis: Vec<usize> = m.ipis.iter().map(|i| i.load(SeqCst)).collect();
    assert_eq!(ipis, [0, 1, 0, 1]);
}

/// The initiator returns only once the target has run the invalidation: a target that takes
/// its interrupt late keeps the initiator waiting that long.
#[test]
fn the_initiator_waits_for_the_acknowledgement() {
    let _watchdog = Watchdog::new("waiting initiator", if cfg!(miri) { 600 } else { 30 });
    let m = Machine::new();
    let delay = Duration::from_millis(if cfg!(miri) { 20 } else { 50 });
    let returned_after = AtomicU64::new(0);
    std::thread::scope(|s| {
        let m = &m;
        s.spawn(move || {
            // Interrupts masked for a while: the IPI stays pending.
            std::thread::sleep(delay);
            m.cpu(1);
        });
        let t = Instant::now();
        m.shootdown.request(0, 0b11, Request::All, &&m.logs[0], &m);
        returned_after.store(t.elapsed().as_micros() as u64, SeqCst);
        // The target had run it by then.
        assert_eq!(m.log(1), [Request::All]);
        m.stop.store(true, SeqCst);
    });
    assert!(
        returned_after.load(SeqCst) >= delay.as_micros() as u64,
        "returned after {} us, before the target acknowledged",
        returned_after.load(SeqCst)
    );
}

/// Two CPUs shoot each other down at the same time with interrupts masked (their threads never
/// run the handler outside `request`): both finish, because a waiting initiator serves its own
/// mailbox; and every request reaches its target (none lost), many times over.
#[test]
fn concurrent_shootdowns_with_interrupts_masked_neither_deadlock_nor_lose_requests() {
    let rounds = if cfg!(miri) { 20 } else { 2000 };
    let _watchdog = Watchdog::new("concurrent shootdowns", if cfg!(miri) { 600 } else { 30 });
    let m = Machine::new();
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for (me, other) in [(0usize, 1usize), (1, 0)] {
            let (m, finished) = (&m, &finished);
            s.spawn(move || {
                for r in 0..rounds {
                    let va = page((me * 1_000_000 + r) as u64);
                    m.shootdown.request(
                        me,
                        1 << me | 1 << other,
                        Request::Leaf(va),
                        &&m.logs[me],
                        &m,
                    );
                }
                // Done initiating; a running CPU still takes the other's IPIs.
                finished.fetch_add(1, SeqCst);
                while finished.load(SeqCst) < 2 {
                    m.shootdown.handle(me, &&m.logs[me]);
                    std::hint::spin_loop();
                }
            });
        }
    });
    for (me, other) in [(0usize, 1usize), (1, 0)] {
        let log = m.log(me);
        let mine: Vec<_> = (0..rounds)
            .map(|r| Request::Leaf(page((me * 1_000_000 + r) as u64)))
            .collect();
        let theirs: Vec<_> = (0..rounds)
            .map(|r| Request::Leaf(page((other * 1_000_000 + r) as u64)))
            .collect();
        // In order, each exactly once.
        let got_mine: Vec<_> = log.iter().filter(|r| mine.contains(r)).copied().collect();
        let got_theirs: Vec<_> = log.iter().filter(|r| theirs.contains(r)).copied().collect();
        assert_eq!(got_mine, mine, "CPU {me}: its own invalidations");
        assert_eq!(got_theirs, theirs, "CPU {me}: every one of CPU {other}'s");
    }
}

/// `ShootdownTlb` sends every hook through the shootdown with the address space's CPU set read
/// at the time (a CPU that joined meanwhile is included).
#[test]
fn shootdown_tlb_follows_the_active_set() {
    let m = Machine::new();
    let active = AtomicU64::new(0b01);
    std::thread::scope(|s| {
        for n in 1..CPUS {
            let m = &m;
            s.spawn(move || m.cpu(n));
        }
        let tlb = ShootdownTlb {
            shootdown: &m.shootdown,
            active: &active,
            this_cpu: || 0,
            local: &m.logs[0],
            ipi: &m,
        };
        tlb.flush_page(page(7));
        active.fetch_or(0b100, SeqCst); // CPU 2 switched to the address space
        tlb.flush_leaf(page(8));
        tlb.flush_all();
        m.stop.store(true, SeqCst);
    });
    assert_eq!(
        m.log(0),
        [Request::Page(page(7)), Request::Leaf(page(8)), Request::All]
    );
    assert_eq!(m.log(1), []);
    assert_eq!(m.log(2), [Request::Leaf(page(8)), Request::All]);
}
