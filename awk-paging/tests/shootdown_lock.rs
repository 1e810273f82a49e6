//! The seed global's locks against a shootdown TLB hook, with threads as CPUs: a CPU whose seed
//! call holds the table lock and whose TLB hook waits for every other CPU to take its IPI (to
//! have interrupts enabled at some moment) must not wait forever for a CPU that is entering
//! [`ActiveTable::with_table`]. `with_table` takes the allocator lock, then the table lock; if
//! it spun for the table lock while holding the allocator's, it would spin with interrupts
//! masked and never take the IPI (a deadlock seen on the x86 test kernel with four CPUs).
//!
//! The fake [`IrqControl`] publishes each thread's interrupt flag; the fake hook waits until
//! every other participating thread shows it enabled, and gives up after a bound, counting it.
//! One test function: the global is process-wide.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use awk_paging::emu::EmuArch;
use awk_paging::irq::{HostIrq, IrqControl};
use awk_paging::{
    ActiveTable, Flags, FrameAllocator, KernelGlobal, Mapper, PageTable, PhyAddr, PhysMem, Tlb,
    VirtAddr, PAGESIZE,
};

const FRAMES: usize = 256;
const BASE: u64 = 0x10_0000;
const CPUS: usize = 64;

#[derive(Clone, Copy)]
struct Mem {
    offset: u64,
}

// SAFETY: every frame of the buffer is reached at its host address; others are unreachable.
unsafe impl PhysMem for Mem {
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        let f = frame.as_u64();
        if !(BASE..BASE + (FRAMES * PAGESIZE) as u64).contains(&f) {
            return None;
        }
        NonNull::new((f + self.offset) as *mut u8)
    }
}

struct Frames {
    free: Mutex<Vec<u64>>,
}

// SAFETY: hands out each buffer frame once until it comes back.
unsafe impl FrameAllocator for &'static Frames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        self.free.lock().unwrap().pop().map(PhyAddr::new)
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.free.lock().unwrap().push(frame.as_u64());
    }
}

std::thread_local! {
    static MASKED: Cell<bool> = const { Cell::new(false) };
}

/// Per CPU (thread id): interrupts masked right now.
static MASKED_ON: [AtomicBool; CPUS] = [const { AtomicBool::new(false) }; CPUS];
/// Per CPU: how often it enabled interrupts (a moment an IPI would be taken).
static ENABLES: [AtomicU64; CPUS] = [const { AtomicU64::new(0) }; CPUS];
/// The CPUs the hook shoots down.
static PARTICIPANTS: AtomicU64 = AtomicU64::new(0);
/// Shootdowns that gave up waiting for a CPU.
static STUCK: AtomicUsize = AtomicUsize::new(0);
static SHOOTDOWNS: AtomicUsize = AtomicUsize::new(0);

fn me() -> usize {
    HostIrq::cpu_id() % CPUS
}

/// Each thread is a CPU with an interrupt flag the others can see.
struct Irq;

impl IrqControl for Irq {
    type State = bool;
    fn disable() -> bool {
        MASKED_ON[me()].store(true, Ordering::SeqCst);
        MASKED.replace(true)
    }
    fn restore(was: bool) {
        MASKED.set(was);
        MASKED_ON[me()].store(was, Ordering::SeqCst);
        if !was {
            ENABLES[me()].fetch_add(1, Ordering::SeqCst);
        }
    }
    fn cpu_id() -> usize {
        HostIrq::cpu_id()
    }
}

/// A shootdown: returns once every other participant has shown interrupts enabled (taken the
/// IPI), or after 2 s (counted in [`STUCK`]).
#[derive(Clone, Copy)]
struct IpiTlb;

impl IpiTlb {
    fn shoot(&self) {
        SHOOTDOWNS.fetch_add(1, Ordering::SeqCst);
        let me = me();
        let others = PARTICIPANTS.load(Ordering::SeqCst) & !(1 << me);
        let start = Instant::now();
        for cpu in (0..CPUS).filter(|c| others & (1 << c) != 0) {
            let seen = ENABLES[cpu].load(Ordering::SeqCst);
            while MASKED_ON[cpu].load(Ordering::SeqCst)
                && ENABLES[cpu].load(Ordering::SeqCst) == seen
            {
                if start.elapsed() > Duration::from_secs(2) {
                    STUCK.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                std::hint::spin_loop();
            }
        }
    }
}

impl Tlb for IpiTlb {
    fn flush_page(&self, _: VirtAddr) {
        self.shoot();
    }
    fn flush_leaf(&self, _: VirtAddr) {
        self.shoot();
    }
    fn flush_all(&self) {
        self.shoot();
    }
}

struct Seed;
static GLOBAL: KernelGlobal<Seed> = KernelGlobal::new();

impl ActiveTable for Seed {
    type Arch = EmuArch;
    type Mem = Mem;
    type Frames = &'static Frames;
    type Tlb = IpiTlb;
    type Irq = Irq;
    fn global() -> &'static KernelGlobal<Self> {
        &GLOBAL
    }
}

fn install() {
    let buf: &'static mut [u8] = Box::leak(vec![0u8; (FRAMES + 1) * PAGESIZE].into_boxed_slice());
    let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
    let frames: &'static Frames = Box::leak(Box::new(Frames {
        free: Mutex::new(
            (1..FRAMES as u64)
                .rev()
                .map(|i| BASE + i * PAGESIZE as u64)
                .collect(),
        ),
    }));
    let mem = Mem {
        offset: host - BASE,
    };
    // SAFETY: frame 0 of the zeroed buffer is an empty table nobody else uses.
    let table = unsafe {
        PageTable::from_root(EmuArch::default(), mem, frames, IpiTlb, PhyAddr::new(BASE))
    };
    assert!(Seed::install(table).is_ok());
}

#[test]
fn with_table_never_spins_masked_while_a_holder_shoots_down() {
    install();
    const ROUNDS: u64 = 2000;
    let start = Arc::new(Barrier::new(2));
    let done = Arc::new(AtomicBool::new(false));
    // CPU B: the instance API under the lock, over and over.
    let b = {
        let (start, done) = (start.clone(), done.clone());
        std::thread::spawn(move || {
            PARTICIPANTS.fetch_or(1 << me(), Ordering::SeqCst);
            start.wait();
            let mut calls = 0u64;
            while !done.load(Ordering::SeqCst) {
                let va = VirtAddr::new(0x40_0000 + (calls % 16) * 0x1000);
                let r = Seed::with_table(|t| t.translate(va).is_ok());
                assert!(r.is_ok(), "with_table: {r:?}");
                calls += 1;
            }
            PARTICIPANTS.fetch_and(!(1 << me()), Ordering::SeqCst);
            calls
        })
    };
    // CPU A: seed map/unmap; each unmap's flush is a shootdown of B.
    PARTICIPANTS.fetch_or(1 << me(), Ordering::SeqCst);
    start.wait();
    for i in 0..ROUNDS {
        let va = VirtAddr::new(0x40_0000 + (i % 16) * 0x1000);
        // SAFETY: test addresses over frames nobody reads.
        unsafe {
            assert_eq!(Seed::map(va, PhyAddr::new(0x5000_0000), Flags::RW), Ok(()));
            Seed::unmap(va);
        }
        if STUCK.load(Ordering::SeqCst) != 0 {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    let calls = b.join().unwrap();
    assert!(calls > 0, "B ran");
    assert_eq!(
        STUCK.load(Ordering::SeqCst),
        0,
        "a shootdown waited 2 s for a CPU spinning with interrupts masked in with_table"
    );
    assert!(
        SHOOTDOWNS.load(Ordering::SeqCst) >= ROUNDS as usize,
        "every unmap shot down"
    );
    // The instance API still works on this thread.
    assert_eq!(
        Seed::with_table(|t| t.translate(VirtAddr::new(0x40_0000)).is_ok()),
        Ok(false)
    );
}
