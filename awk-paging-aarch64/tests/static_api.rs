//! The seed static API (`AArch64` as `Mapper`) on the host: not initialised before `init`,
//! re-entry from inside `with_table` and from a frame allocator that calls back is an error (not
//! a deadlock), and several threads share the global.
//!
//! One test function: the global is process-wide and the order is the point. Calls that a
//! regression could deadlock run under a timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use awk_paging::{
    AccessError, ActiveTable, Flags, FrameAllocator, MapError, Mapper, NoTlb, OffsetPhysMem,
    PageTable, PhyAddr, Tlb, TranslateError, UnmapError, VirtAddr, PAGESIZE,
};
use awk_paging_aarch64::{AArch64, A64};

/// Runs `f` on a thread of its own; panics if it has not returned within `secs` (a deadlock).
fn within<T: Send + 'static>(what: &str, secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    // Miri runs orders of magnitude slower: the guard is for deadlocks, not speed.
    let secs = if cfg!(miri) { secs * 1000 } else { secs };
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: no answer after {secs} s — deadlocked?"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Host "physical memory" at physical 1 MiB with a free list; calls back into the seed API from
/// `allocate_frame` while `CALL_BACK` is set, and records what it got.
struct Frames {
    free: Mutex<Vec<u64>>,
}

static CALL_BACK: AtomicBool = AtomicBool::new(false);
/// What one callback got: `try_vm_to_phy` and `map`.
type Seen = (Result<PhyAddr, TranslateError>, Result<(), MapError>);
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

unsafe impl FrameAllocator for &'static Frames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        if CALL_BACK.load(Ordering::SeqCst) {
            let probe = VirtAddr::new(0x1_0000_0000);
            SEEN.lock()
                .unwrap()
                .push((AArch64::try_vm_to_phy(probe), unsafe {
                    AArch64::map(
                        VirtAddr::new(0x3000_0000),
                        PhyAddr::new(0x4000_0000),
                        Flags::RW,
                    )
                }));
        }
        self.free.lock().unwrap().pop().map(PhyAddr::new)
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.free.lock().unwrap().push(frame.as_u64());
    }
}

#[test]
fn seed_api_errors_instead_of_deadlocks() {
    let va = VirtAddr::new(0x1_0000_0000);
    let pa = PhyAddr::new(0x4000_0000);

    // Before init.
    assert_eq!(AArch64::vm_to_phy(va), None);
    assert_eq!(
        AArch64::try_vm_to_phy(va),
        Err(TranslateError::NotInitialized)
    );
    assert_eq!(
        unsafe { AArch64::map(va, pa, Flags::RW) },
        Err(MapError::NotInitialized)
    );
    assert_eq!(
        unsafe { AArch64::try_unmap(va) },
        Err(UnmapError::NotInitialized)
    );
    assert_eq!(
        AArch64::with_table(|t| t.root()),
        Err(AccessError::NotInitialized)
    );

    // 64 frames of leaked host memory reached through an offset, as a kernel's linear map.
    let frames = 64u64;
    let buf: &'static mut [u8] =
        Box::leak(vec![0u8; (frames as usize + 1) * PAGESIZE].into_boxed_slice());
    let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
    let base = 0x10_0000u64;
    let pool: &'static Frames = Box::leak(Box::new(Frames {
        free: Mutex::new((0..frames).map(|i| base + i * PAGESIZE as u64).collect()),
    }));
    let alloc: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    let tlb: &'static (dyn Tlb + Sync) = &NoTlb;
    // SAFETY: the pool's frames are exactly the leaked buffer, reached at this offset, and the
    // table only ever points at frames from the pool.
    let direct = unsafe { OffsetPhysMem::new(host - base) };
    let table = PageTable::new(A64::default(), direct, alloc, tlb).expect("root");
    assert_eq!(AArch64::init(table), Ok(()));
    assert_eq!(unsafe { AArch64::map(va, pa, Flags::RW) }, Ok(()));
    assert_eq!(AArch64::try_vm_to_phy(va), Ok(pa));

    // From inside with_table: edits are refused at once; translation takes no lock and answers.
    let inner = within(
        "AArch64::vm_to_phy inside AArch64::with_table",
        10,
        move || {
            AArch64::with_table(|_| {
                (
                    AArch64::vm_to_phy(va),
                    AArch64::try_vm_to_phy(va),
                    unsafe { AArch64::try_unmap(va) }.map(|_| ()),
                )
            })
        },
    );
    assert_eq!(inner, Ok((Some(pa), Ok(pa), Err(UnmapError::Reentered))));

    // From the allocator: it is called outside the table lock (refilling the pool before the
    // outer map), so its own map and translate work; the outer map (two new tables) completes.
    CALL_BACK.store(true, Ordering::SeqCst);
    let far = VirtAddr::new(0x40_0000_0000);
    let mapped = within("map with a re-entrant allocator", 10, move || unsafe {
        AArch64::map(far, PhyAddr::new(0x4020_0000), Flags::RW)
    });
    CALL_BACK.store(false, Ordering::SeqCst);
    assert_eq!(mapped, Ok(()));
    let seen = SEEN.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert_eq!(seen[0], (Ok(pa), Ok(())), "the first callback maps");
    assert!(
        seen[1..]
            .iter()
            .all(|s| *s == (Ok(pa), Err(MapError::AlreadyMapped))),
        "{seen:?}"
    );
    assert_eq!(AArch64::try_vm_to_phy(far), Ok(PhyAddr::new(0x4020_0000)));
    assert_eq!(
        AArch64::try_vm_to_phy(VirtAddr::new(0x3000_0000)),
        Ok(PhyAddr::new(0x4000_0000))
    );

    // Two threads at once: no false re-entry.
    within("two threads", 60, move || {
        let start = Arc::new(Barrier::new(2));
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait(); // at once: the lock is contended
                                  // Under Miri (which interprets every step), a few rounds prove the same.
                    let rounds = if cfg!(miri) { 32 } else { 8 * 512 };
                    for i in (0..512u64).cycle().take(rounds) {
                        let v = VirtAddr::new(0x2_0000_0000 + t * 0x4000_0000 + i * 0x1000);
                        let p = PhyAddr::new(0x8000_0000 + i * 0x1000);
                        assert_eq!(unsafe { AArch64::map(v, p, Flags::RW) }, Ok(()));
                        assert_eq!(AArch64::try_vm_to_phy(v), Ok(p));
                        assert!(unsafe { AArch64::try_unmap(v) }.is_ok());
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
    });
}
