//! Lock-free translation through the seed API ([`ActiveTable::try_vm_to_phy`]) against
//! concurrent `map`/`unmap` on other threads, on a backend over host memory:
//!
//! - the grace period: a reader stopped in the middle of its walk (inside the memory accessor,
//!   after it announced itself) keeps the seed `unmap` from freeing the tables it emptied until
//!   the reader has left;
//! - a stress run: readers translate stable mappings (always the same answer) and addresses a
//!   writer maps and unmaps with alternating frames (always the old or the new mapping, never
//!   anything else), while the writer's unmaps reclaim tables.
//!
//! One test function: the global is process-wide. Waits that a regression could turn into a
//! deadlock are bounded.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use awk_paging::emu::EmuArch;
use awk_paging::irq::HostIrq;
use awk_paging::{
    ActiveTable, Flags, FrameAllocator, KernelGlobal, Lent, Mapper, NoTlb, PageSize, PageTable,
    PhyAddr, PhysMem, TranslateError, VirtAddr, PAGESIZE,
};

const FRAMES: usize = 256;
/// Physical address of the first frame of the host buffer.
const BASE: u64 = 0x10_0000;

/// Host "physical memory": a leaked buffer, frames `BASE ..`; the accessor can stop a reader.
#[derive(Clone, Copy)]
struct Mem {
    /// Host address minus physical address.
    offset: u64,
}

/// Whether the next reader walk stops (at its 4th table, the leaf table).
static ARMED: AtomicBool = AtomicBool::new(false);
/// Set by the stopped reader; it waits for [`RELEASE`].
static STOPPED: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);

std::thread_local! {
    /// This thread is the reader [`ARMED`] stops; tables reached so far in its walk.
    static READER: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: every frame of the buffer is reached at its host address; frames outside it are not
// reachable (`None`).
unsafe impl PhysMem for Mem {
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        let f = frame.as_u64();
        if !(BASE..BASE + (FRAMES * PAGESIZE) as u64).contains(&f) {
            return None;
        }
        if let Some(n) = READER.get() {
            READER.set(Some(n + 1));
            if n + 1 == 4 && ARMED.load(Ordering::SeqCst) {
                STOPPED.store(true, Ordering::SeqCst);
                while !RELEASE.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
            }
        }
        NonNull::new((f + self.offset) as *mut u8)
    }
}

/// Free frames of the buffer (frame 0 is never handed out).
struct Frames {
    free: Mutex<Vec<u64>>,
    live: AtomicUsize,
}

unsafe impl FrameAllocator for &'static Frames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        let f = self.free.lock().unwrap().pop()?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Some(PhyAddr::new(f))
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.free.lock().unwrap().push(frame.as_u64());
    }
}

struct Seed;
static GLOBAL: KernelGlobal<Seed> = KernelGlobal::new();

impl ActiveTable for Seed {
    type Arch = EmuArch;
    type Mem = Mem;
    type Frames = &'static Frames;
    type Tlb = NoTlb;
    type Irq = HostIrq;
    fn global() -> &'static KernelGlobal<Self> {
        &GLOBAL
    }
}

fn install() -> &'static Frames {
    let buf: &'static mut [u8] = Box::leak(vec![0u8; (FRAMES + 1) * PAGESIZE].into_boxed_slice());
    let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
    let frames: &'static Frames = Box::leak(Box::new(Frames {
        free: Mutex::new(
            (1..FRAMES as u64)
                .rev()
                .map(|i| BASE + i * PAGESIZE as u64)
                .collect(),
        ),
        live: AtomicUsize::new(0),
    }));
    let mem = Mem {
        offset: host - BASE,
    };
    // The root: frame 0, zeroed by the buffer.
    // SAFETY: frame 0 of the buffer is an empty table nobody else uses.
    let table =
        unsafe { PageTable::from_root(EmuArch::default(), mem, frames, NoTlb, PhyAddr::new(BASE)) };
    assert!(Seed::install(table).is_ok());
    frames
}

/// Polls `done` for up to `limit`.
fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

#[test]
fn translate_without_the_lock() {
    assert_eq!(
        Seed::try_vm_to_phy(VirtAddr::new(0x1000)),
        Err(TranslateError::NotInitialized)
    );
    let frames = install();

    // --- The grace period. ---
    let va = VirtAddr::new(0x7f00_0000_0000);
    let pa = PhyAddr::new(0x5000_0000);
    assert_eq!(unsafe { Seed::map(va, pa, Flags::RW) }, Ok(()));
    ARMED.store(true, Ordering::SeqCst);
    let reader = std::thread::spawn(move || {
        READER.set(Some(0));
        Seed::try_vm_to_phy(va)
    });
    assert!(
        eventually(Duration::from_secs(10), || STOPPED.load(Ordering::SeqCst)),
        "the reader reached the leaf table"
    );
    ARMED.store(false, Ordering::SeqCst);
    let pooled = Seed::global().pooled();
    let unmapped = Arc::new(AtomicBool::new(false));
    let writer = {
        let unmapped = Arc::clone(&unmapped);
        std::thread::spawn(move || {
            // Empties the leaf table, the table above it and the one above that: all three
            // are detached, then freed after the flush — after the grace period.
            let r = unsafe { Seed::try_unmap(va) }.map(|u| u.frame);
            unmapped.store(true, Ordering::SeqCst);
            r
        })
    };
    // The writer cleared the entry and unlinked the tables, and now waits for the reader.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !unmapped.load(Ordering::SeqCst),
        "unmap must not free tables a reader may still be walking"
    );
    assert_eq!(Seed::global().pooled(), pooled, "nothing freed yet");
    RELEASE.store(true, Ordering::SeqCst);
    let seen = reader.join().unwrap();
    assert!(
        seen == Ok(pa) || seen == Err(TranslateError::NotMapped),
        "old or new mapping, got {seen:?}"
    );
    assert_eq!(writer.join().unwrap(), Ok(pa));
    assert_eq!(
        Seed::global().pooled(),
        pooled + 3,
        "the three emptied tables, freed into the pool after the grace period"
    );
    assert_eq!(Seed::try_vm_to_phy(va), Err(TranslateError::NotMapped));

    // --- Stress: readers against a writer. ---
    // Stable mappings, in a 512 GiB slot of their own.
    let stable: Vec<(VirtAddr, PhyAddr)> = (0..16u64)
        .map(|i| {
            (
                VirtAddr::new(0x1000_0000_0000 + i * 0x20_1000),
                PhyAddr::new(0x6000_0000 + i * 0x1000),
            )
        })
        .collect();
    for &(v, p) in &stable {
        assert_eq!(unsafe { Seed::map(v, p, Flags::RW) }, Ok(()));
    }
    // Churned by the writer: each in a slot whose tables its unmap reclaims; mapped to frame A
    // on even rounds, B on odd ones.
    let churn: Vec<VirtAddr> = (0..4u64)
        .map(|i| VirtAddr::new(0x2000_0000_0000 + i * 0x80_0000_0000 + i * 0x1000))
        .collect();
    const A: u64 = 0x7000_0000;
    const B: u64 = 0x7100_0000;
    let rounds = if cfg!(miri) { 4 } else { 3000 };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (stable, churn) = (stable.clone(), churn.clone());
            let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let (mut reads, mut hits) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for &(v, p) in &stable {
                        assert_eq!(Seed::try_vm_to_phy(v), Ok(p), "stable mapping");
                        reads += 1;
                    }
                    for &v in &churn {
                        let off = v.as_u64() & 0xfff;
                        match Seed::try_vm_to_phy(v) {
                            Ok(p) if p.as_u64() == A + off || p.as_u64() == B + off => hits += 1,
                            Err(TranslateError::NotMapped) => {}
                            other => panic!("churned {v:?}: {other:?}"),
                        }
                        reads += 1;
                    }
                }
                (reads, hits)
            })
        })
        .collect();
    start.wait();
    for round in 0..rounds {
        let frame = if round % 2 == 0 { A } else { B };
        for &v in &churn {
            let page = VirtAddr::new(v.as_u64() & !0xfff);
            assert_eq!(
                unsafe { Seed::map(page, PhyAddr::new(frame), Flags::RW) },
                Ok(())
            );
        }
        for &v in &churn {
            let page = VirtAddr::new(v.as_u64() & !0xfff);
            assert_eq!(
                unsafe { Seed::try_unmap(page) }.map(|u| u.frame),
                Ok(PhyAddr::new(frame))
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = (0, 0);
    for r in readers {
        let (reads, hits) = r.join().expect("reader");
        total = (total.0 + reads, total.1 + hits);
    }
    assert!(total.0 > 0, "the readers ran");
    // Every table the churn built was reclaimed: what is out is the stable mappings' tables
    // (a PDPT, a PD and 16 PTs: one per 2 MiB), the root's none (frame 0 is not the
    // allocator's) and the pool.
    assert_eq!(
        frames.live.load(Ordering::SeqCst),
        2 + 16 + Seed::global().pooled()
    );

    // --- The seed unmap of a 4 KiB page inside a 2 MiB page splits it (the range path). ---
    let huge = VirtAddr::new(0x3000_0000_0000);
    let huge_pa = 0x8000_0000u64;
    let mapped = Seed::with_table(|t| {
        unsafe { t.map(huge, PhyAddr::new(huge_pa), PageSize::Size2M, Flags::RW) }
            .map(|f| f.flush())
    });
    assert_eq!(mapped, Ok(Ok(())));
    let inside = VirtAddr::new(huge.as_u64() + 0x5000);
    assert_eq!(
        unsafe { Seed::try_unmap(inside) }.map(|u| (u.frame, u.size)),
        Ok((PhyAddr::new(huge_pa + 0x5000), PageSize::Size4K))
    );
    assert_eq!(Seed::try_vm_to_phy(inside), Err(TranslateError::NotMapped));
    for off in [0u64, 0x4000, 0x6000, 0x1f_f000] {
        assert_eq!(
            Seed::try_vm_to_phy(VirtAddr::new(huge.as_u64() + off)),
            Ok(PhyAddr::new(huge_pa + off)),
            "the rest of the 2 MiB page stays, at {off:#x}"
        );
    }

    // --- The walk hint never outlives a grace period. ---
    // An anchor keeps the 512 GiB slot's table of 1 GiB entries alive; `va` has the same index
    // (5) at the last two levels, and `va2` (the next 1 GiB) the same indices as `va` there.
    let anchor = VirtAddr::new(0x4000_0000_0000);
    let va = VirtAddr::new(0x4000_4000_0000 + (5 << 21) + (5 << 12));
    let va2 = VirtAddr::new(va.as_u64() + (1 << 30));
    assert_eq!(
        unsafe { Seed::map(anchor, PhyAddr::new(0x9000_0000), Flags::RW) },
        Ok(())
    );
    assert_eq!(
        unsafe { Seed::map(va, PhyAddr::new(0x9100_0000), Flags::RW) },
        Ok(())
    );
    // A reader records the table of 2 MiB entries of `va`'s 1 GiB region.
    assert_eq!(Seed::try_vm_to_phy(va), Ok(PhyAddr::new(0x9100_0000)));
    // Unmapping frees that table and the leaf table below it (into the pool)...
    assert!(unsafe { Seed::try_unmap(va) }.is_ok());
    // ... and the next map reuses both frames for `va2`'s region.
    assert_eq!(
        unsafe { Seed::map(va2, PhyAddr::new(0x9200_0000), Flags::RW) },
        Ok(())
    );
    // A walk that started at the recorded frame would now read `va2`'s tables.
    assert_eq!(Seed::try_vm_to_phy(va), Err(TranslateError::NotMapped));
    assert_eq!(Seed::try_vm_to_phy(va2), Ok(PhyAddr::new(0x9200_0000)));

    // --- A panic inside `with_table` ends the allocator's loan. ---
    let caught = std::panic::catch_unwind(|| {
        Seed::with_table(|t| {
            // The allocator is lent to the table's pool while the closure runs.
            assert!(Lent::<Seed>::new().can_free());
            let _ = t;
            panic!("inside with_table");
        })
    });
    assert!(caught.is_err());
    // Afterwards (the allocator's lock is free again) nothing can reach it through the pool.
    assert!(!Lent::<Seed>::new().can_free());
    assert_eq!(Lent::<Seed>::new().allocate_frame(), None);
    assert_eq!(
        unsafe {
            Seed::map(
                VirtAddr::new(0x5000_0000_0000),
                PhyAddr::new(0x9300_0000),
                Flags::RW,
            )
        },
        Ok(())
    );
    assert_eq!(Seed::with_table(|_| ()), Ok(()));
}
