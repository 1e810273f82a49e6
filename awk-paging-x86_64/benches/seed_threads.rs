//! `X86::vm_to_phy` from several threads at once, with and without a thread mapping and unmapping
//! elsewhere meanwhile: the lock-free walk against the same translation taken under the table's
//! lock (`KernelGlobal::try_with` retried until the lock is free — what `vm_to_phy` did before it
//! stopped taking the lock). Host threads play CPUs; ns per translation, per thread (median of the
//! rounds).
//!
//! `cargo bench -p awk-paging-x86_64 --bench seed_threads [-- --rounds N]`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use awk_paging::{
    ActiveTable, Flags, FrameAllocator, Mapper, NoTlb, OffsetPhysMem, PageTable, PhyAddr, Tlb,
    TryAccessError, VirtAddr, PAGESIZE,
};
use awk_paging_x86_64::{X86, X86_64};

/// Frames of a leaked host buffer (physical = host address − offset).
struct Frames(Mutex<Vec<u64>>);

unsafe impl FrameAllocator for &'static Frames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        self.0.lock().unwrap().pop().map(PhyAddr::new)
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.0.lock().unwrap().push(frame.as_u64());
    }
}

const STABLE: u64 = 0xffff_9000_0000_0000;
const CHURN: u64 = 0xffff_a000_0000_0000;
const PAGES: u64 = 4096;
const CALLS: u64 = 1 << 20;

fn install() {
    let frames = 4096usize;
    let buf: &'static mut [u8] = Box::leak(vec![0u8; (frames + 1) * PAGESIZE].into_boxed_slice());
    let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
    let base = 0x10_0000u64;
    let pool: &'static Frames = Box::leak(Box::new(Frames(Mutex::new(
        (0..frames as u64)
            .map(|i| base + i * PAGESIZE as u64)
            .collect(),
    ))));
    let alloc: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    let tlb: &'static (dyn Tlb + Sync) = &NoTlb;
    // SAFETY: the frames are the leaked buffer, reached at this offset; nothing maps them.
    let mem = unsafe { OffsetPhysMem::new(host - base) };
    let table = PageTable::new(X86_64::new(), mem, alloc, tlb).expect("root");
    X86::install(table).expect("first install");
    for i in 0..PAGES {
        // SAFETY: the table is never active; the frames mapped are never accessed.
        unsafe {
            X86::map(
                VirtAddr::new(STABLE + i * 0x1000),
                PhyAddr::new(i << 12),
                Flags::RW,
            )
        }
        .expect("map");
    }
}

/// `vm_to_phy` as it was: the walk under the table's lock.
fn locked(va: VirtAddr) -> Option<PhyAddr> {
    loop {
        match X86::global().try_with(|t| t.translate(va).ok().map(|t| t.pa)) {
            Ok(r) => return r,
            Err(TryAccessError::Busy) => std::hint::spin_loop(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// ns per call on each of `readers` threads running `f` over the stable pages, with a writer
/// mapping and unmapping pages elsewhere meanwhile if `writer`.
fn run(readers: usize, writer: bool, f: fn(VirtAddr) -> Option<PhyAddr>) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(readers + 1 + usize::from(writer)));
    let w = writer.then(|| {
        let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
        std::thread::spawn(move || {
            start.wait();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let va = VirtAddr::new(CHURN + (i % 1024) * 0x1000);
                // SAFETY: as in `install`.
                unsafe { X86::map(va, PhyAddr::new(0x1000), Flags::RW) }.expect("churn map");
                unsafe { X86::try_unmap(va) }.expect("churn unmap");
                i += 1;
            }
        })
    });
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                let mut sum = 0u64;
                for k in 0..CALLS {
                    let i = (k + r as u64 * 977) % PAGES;
                    let pa = f(black_box(VirtAddr::new(STABLE + i * 0x1000)));
                    sum = sum.wrapping_add(pa.map_or(u64::MAX, PhyAddr::as_u64));
                }
                let ns = t.elapsed().as_nanos() as f64 / CALLS as f64;
                let want: u64 = (0..CALLS)
                    .map(|k| ((k + r as u64 * 977) % PAGES) << 12)
                    .sum();
                assert_eq!(sum, want, "every translation right");
                ns
            })
        })
        .collect();
    start.wait();
    let ns = threads.into_iter().map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = w {
        w.join().unwrap();
    }
    ns
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |r| r.parse().expect("--rounds N"));
    install();
    println!(
        "| readers | writer | lock-free `vm_to_phy` (ns) | under the lock (ns) | lock ÷ lock-free |"
    );
    println!("|---:|---|---:|---:|---:|");
    for readers in [1usize, 2, 4] {
        for writer in [false, true] {
            let free = median(
                (0..rounds)
                    .flat_map(|_| run(readers, writer, X86::vm_to_phy))
                    .collect(),
            );
            let lock = median(
                (0..rounds)
                    .flat_map(|_| run(readers, writer, locked))
                    .collect(),
            );
            println!(
                "| {readers} | {} | {free:.2} | {lock:.2} | {:.2} |",
                if writer { "map+unmap" } else { "—" },
                lock / free
            );
        }
    }
}
