//! Single-page operations on 262,144 pages (1 GiB of 4 KiB pages, sequential addresses):
//! awk-paging's `X86PageTable` side by side with the raw `x86_64` crate's `OffsetPageTable` and
//! `page_table_multiarch`'s `X64PageTable`, each on its own arena of host memory reached through
//! a direct map (the bare-metal configuration). TLB maintenance is off for all three (no CPU to
//! flush on the host): awk-paging uses `NoTlb`, the `x86_64` crate's tokens are ignored,
//! `page_table_multiarch` skips flushes when not on bare metal.
//!
//! Run: `cargo bench -p awk-paging-x86_64 --bench single_page` (prints a Markdown table; the
//! median of several rounds, each on fresh tables).

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use awk_paging::emu::EmuMemory;
use awk_paging::{Flags, FrameAllocator, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_x86_64::X86_64;

const PAGES: u64 = 262_144;
const ROUNDS: usize = 9;
const VA_BASE: u64 = 0x0000_1000_0000_0000;
const PA_BASE: u64 = 0x1_0000_0000;
const ARENA_FRAMES: usize = 1024;

/// ns per page for map, translate, update flags, unmap.
type Row = [f64; 4];

/// A named benchmark subject: one full round on fresh tables.
type Subject = (&'static str, fn() -> Row);

fn per_page(start: Instant) -> f64 {
    start.elapsed().as_nanos() as f64 / PAGES as f64
}

fn awk() -> Row {
    let mem = EmuMemory::new(ARENA_FRAMES);
    let mut pt =
        PageTable::new(X86_64::new(), unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    let t = Instant::now();
    for i in 0..PAGES {
        let (va, pa) = (
            VirtAddr::new(VA_BASE + i * 4096),
            PhyAddr::new(PA_BASE + i * 4096),
        );
        unsafe { pt.map(va, pa, PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
    }
    let map = per_page(t);
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..PAGES {
        sum = sum.wrapping_add(
            pt.translate(VirtAddr::new(VA_BASE + i * 4096))
                .unwrap()
                .pa
                .as_u64(),
        );
    }
    black_box(sum);
    let translate = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        unsafe {
            pt.update_flags(
                VirtAddr::new(VA_BASE + i * 4096),
                PageSize::Size4K,
                Flags::RO,
            )
        }
        .unwrap()
        .flush();
    }
    let update = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        black_box(
            unsafe { pt.unmap(VirtAddr::new(VA_BASE + i * 4096), PageSize::Size4K) }
                .unwrap()
                .1,
        )
        .flush();
    }
    let unmap = per_page(t);
    unsafe { pt.destroy() };
    [map, translate, update, unmap]
}

fn raw_x86_64() -> Row {
    use x86_64::structures::paging::{
        FrameAllocator as X86Alloc, Mapper, OffsetPageTable, Page, PageTable as X86Table,
        PageTableFlags as F, PhysFrame, Size4KiB, Translate,
    };
    struct Lend<'a>(&'a EmuMemory);
    unsafe impl X86Alloc<Size4KiB> for Lend<'_> {
        fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
            let f = (&*self.0).allocate_frame()?;
            Some(PhysFrame::containing_address(x86_64::PhysAddr::new(
                f.as_u64(),
            )))
        }
    }
    let mem = EmuMemory::new(ARENA_FRAMES);
    let offset = unsafe { mem.offset_mapping() }.offset();
    let root = (&mem).allocate_frame().unwrap();
    let l4 = (root.as_u64() + offset) as *mut X86Table;
    let mut opt = unsafe {
        l4.write(X86Table::new());
        OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(offset))
    };
    let mut alloc = Lend(&mem);
    let page =
        |i: u64| Page::<Size4KiB>::containing_address(x86_64::VirtAddr::new(VA_BASE + i * 4096));
    let rw = F::PRESENT | F::WRITABLE | F::NO_EXECUTE;
    let t = Instant::now();
    for i in 0..PAGES {
        let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(PA_BASE + i * 4096));
        unsafe { opt.map_to(page(i), frame, rw, &mut alloc) }
            .unwrap()
            .ignore();
    }
    let map = per_page(t);
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..PAGES {
        sum = sum.wrapping_add(
            opt.translate_addr(x86_64::VirtAddr::new(VA_BASE + i * 4096))
                .unwrap()
                .as_u64(),
        );
    }
    black_box(sum);
    let translate = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        unsafe { opt.update_flags(page(i), F::PRESENT | F::NO_EXECUTE) }
            .unwrap()
            .ignore();
    }
    let update = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        black_box(opt.unmap(page(i)).unwrap().0);
    }
    let unmap = per_page(t);
    [map, translate, update, unmap]
}

/// `page_table_multiarch` reaches memory and frames through static functions: one global arena.
struct PtmArena {
    offset: u64,
    free: Mutex<Vec<u64>>,
}
static PTM: Mutex<Option<&'static PtmArena>> = Mutex::new(None);

struct PtmHandler;
impl page_table_multiarch::PagingHandler for PtmHandler {
    fn alloc_frames(num: usize, _align: usize) -> Option<memory_addr::PhysAddr> {
        assert_eq!(num, 1);
        let arena = PTM.lock().unwrap().expect("arena");
        let f = arena.free.lock().unwrap().pop()?;
        Some(memory_addr::PhysAddr::from(f as usize))
    }
    fn dealloc_frames(paddr: memory_addr::PhysAddr, _num: usize) {
        let arena = PTM.lock().unwrap().expect("arena");
        arena.free.lock().unwrap().push(paddr.as_usize() as u64);
    }
    fn phys_to_virt(paddr: memory_addr::PhysAddr) -> memory_addr::VirtAddr {
        // Read once per call without the lock: the offset never changes after setup.
        memory_addr::VirtAddr::from((paddr.as_usize() as u64 + PTM_OFFSET.load()) as usize)
    }
}

/// The arena offset, readable without locking on the hot path.
struct Offset(std::sync::atomic::AtomicU64);
impl Offset {
    fn load(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
static PTM_OFFSET: Offset = Offset(std::sync::atomic::AtomicU64::new(0));

fn page_table_multiarch() -> Row {
    use page_table_multiarch::x86_64::X64PageTable;
    use page_table_multiarch::{MappingFlags, PageSize as PtmSize};
    let mem: &'static EmuMemory = Box::leak(Box::new(EmuMemory::new(ARENA_FRAMES)));
    let mut free = Vec::new();
    while let Some(f) = (&*mem).allocate_frame() {
        free.push(f.as_u64());
    }
    free.reverse();
    let arena: &'static PtmArena = Box::leak(Box::new(PtmArena {
        offset: unsafe { mem.offset_mapping() }.offset(),
        free: Mutex::new(free),
    }));
    PTM_OFFSET
        .0
        .store(arena.offset, std::sync::atomic::Ordering::Relaxed);
    *PTM.lock().unwrap() = Some(arena);
    let mut pt = X64PageTable::<PtmHandler>::try_new().unwrap();
    let va = |i: u64| memory_addr::VirtAddr::from((VA_BASE + i * 4096) as usize);
    let t = Instant::now();
    {
        let mut c = pt.cursor();
        for i in 0..PAGES {
            let pa = memory_addr::PhysAddr::from((PA_BASE + i * 4096) as usize);
            c.map(
                va(i),
                pa,
                PtmSize::Size4K,
                MappingFlags::READ | MappingFlags::WRITE,
            )
            .unwrap();
        }
    }
    let map = per_page(t);
    let t = Instant::now();
    let mut sum = 0usize;
    for i in 0..PAGES {
        sum = sum.wrapping_add(pt.query(va(i)).unwrap().0.as_usize());
    }
    black_box(sum);
    let translate = per_page(t);
    let t = Instant::now();
    {
        let mut c = pt.cursor();
        for i in 0..PAGES {
            c.protect(va(i), MappingFlags::READ).unwrap();
        }
    }
    let update = per_page(t);
    let t = Instant::now();
    {
        let mut c = pt.cursor();
        for i in 0..PAGES {
            black_box(c.unmap(va(i)).unwrap().0);
        }
    }
    let unmap = per_page(t);
    [map, translate, update, unmap]
}

fn median(mut runs: Vec<Row>, col: usize) -> f64 {
    runs.sort_by(|a, b| a[col].total_cmp(&b[col]));
    runs[runs.len() / 2][col]
}

fn main() {
    // `cargo test --benches` passes `--bench`-less args; only run when asked to benchmark.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let subjects: [Subject; 3] = [
        ("awk-paging X86PageTable", awk),
        ("x86_64 OffsetPageTable", raw_x86_64),
        ("page_table_multiarch X64PageTable", page_table_multiarch),
    ];
    println!("{PAGES} pages, median of {ROUNDS} rounds, ns/page\n");
    println!("| implementation | map | translate | update flags | unmap |");
    println!("|---|---:|---:|---:|---:|");
    for (name, f) in subjects {
        // Warm-up round, then measured rounds.
        f();
        let runs: Vec<Row> = (0..ROUNDS).map(|_| f()).collect();
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            median(runs.clone(), 0),
            median(runs.clone(), 1),
            median(runs.clone(), 2),
            median(runs, 3)
        );
    }
}
