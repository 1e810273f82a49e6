//! Several threads — several "CPUs" to the lock, each with its own owner id — use the seed API
//! at once: every operation completes with its ordinary result. Waiting for another thread's
//! lock is not mistaken for re-entry, and re-entry on one thread is still detected while the
//! others run.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use awk_paging::{
    ActiveTable, Flags, FrameAllocator, MapError, Mapper, NoTlb, PhyAddr, TranslateError, VirtAddr,
};
use awk_paging_x86_64::{X86, X86_64};
use common::{within_for, HostFrames};

const THREADS: u64 = 4;
const PAGES: u64 = 256;
const ROUNDS: u64 = 16;

#[test]
fn concurrent_threads_all_complete() {
    let pool = HostFrames::leak(64);
    let frames: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    assert_eq!(
        unsafe { X86::init(pool.boot_table(), X86_64::new(), frames, &NoTlb) },
        Ok(())
    );

    static REENTRIES_SEEN: AtomicUsize = AtomicUsize::new(0);
    within_for(Duration::from_secs(120), "concurrent seed API", || {
        let start = Arc::new(Barrier::new(THREADS as usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait(); // all at once: the lock is contended
                                  // One 1 GiB region per thread; frames 16 MiB apart.
                    let base = 0xffff_9000_0000_0000 + t * 0x4000_0000;
                    let pa_base = 0x100_0000 * (t + 1);
                    for round in 0..ROUNDS {
                        for i in 0..PAGES {
                            let (va, pa) = (
                                VirtAddr::new(base + i * 0x1000),
                                PhyAddr::new(pa_base + i * 0x1000),
                            );
                            assert_eq!(
                                unsafe { X86::map(va, pa, Flags::RW) },
                                Ok(()),
                                "thread {t} round {round} map {i}"
                            );
                            assert_eq!(X86::try_vm_to_phy(va), Ok(pa), "thread {t} translate");
                            if i % 64 == 0 {
                                // Re-entry on this thread is still caught while others run
                                // (translation takes no lock: it answers).
                                let inner = X86::with_table(|_| {
                                    (X86::try_vm_to_phy(va), unsafe {
                                        X86::map(va, pa, Flags::RW)
                                    })
                                });
                                assert_eq!(
                                    inner,
                                    Ok((Ok(pa), Err(MapError::Reentered))),
                                    "thread {t} re-entry"
                                );
                                REENTRIES_SEEN.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        for i in 0..PAGES {
                            let va = VirtAddr::new(base + i * 0x1000);
                            assert_eq!(
                                unsafe { X86::try_unmap(va) }.map(|u| u.frame),
                                Ok(PhyAddr::new(pa_base + i * 0x1000)),
                                "thread {t} round {round} unmap {i}"
                            );
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker panicked");
        }
    });
    assert_eq!(
        REENTRIES_SEEN.load(Ordering::SeqCst) as u64,
        THREADS * ROUNDS * PAGES / 64
    );
    // Everything unmapped, and every table the maps built (PDPT, one PD and one PT per thread)
    // reclaimed by the seed unmap once empty: the frames still out are exactly the ones in the
    // table's pool, at most four calls' worth (the rest went back to the allocator).
    assert_eq!(pool.live(), X86::global().pooled());
    assert!(X86::global().pooled() <= 12);
    assert_eq!(
        X86::try_vm_to_phy(VirtAddr::new(0xffff_9000_0000_0000)),
        Err(TranslateError::NotMapped)
    );
}
