//! Single-page operations on 262,144 pages (1 GiB of 4 KiB pages, sequential addresses):
//! awk-paging's `AArch64PageTable` side by side with `aarch64-paging`'s `Mapping` (one-page
//! ranges: it has no single-page API), each on its own arena of host memory reached through a
//! direct map. No TLB maintenance for either (awk-paging is given `NoTlb`; aarch64-paging compiles
//! its barriers out on a non-aarch64 host and the table is never activated).
//!
//! `page_table_multiarch` is not in this table: its AArch64 module (and `page_table_entry`'s
//! AArch64 descriptors) only compile for `target_arch = "aarch64"`, so it cannot run on the host.
//!
//! Run: `cargo bench -p awk-paging-aarch64 --bench single_page`.

use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

use awk_paging::emu::EmuMemory;
use awk_paging::{Flags, FrameAllocator, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_aarch64::A64;

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
        PageTable::new(A64::default(), unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    let va = |i: u64| VirtAddr::new(VA_BASE + i * 4096);
    let t = Instant::now();
    for i in 0..PAGES {
        let pa = PhyAddr::new(PA_BASE + i * 4096);
        unsafe { pt.map(va(i), pa, PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
    }
    let map = per_page(t);
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..PAGES {
        sum = sum.wrapping_add(pt.translate(va(i)).unwrap().pa.as_u64());
    }
    black_box(sum);
    let translate = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        unsafe { pt.update_flags(va(i), PageSize::Size4K, Flags::RO) }
            .unwrap()
            .flush();
    }
    let update = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        black_box(unsafe { pt.unmap(va(i), PageSize::Size4K) }.unwrap().1).flush();
    }
    let unmap = per_page(t);
    unsafe { pt.destroy() };
    [map, translate, update, unmap]
}

/// `aarch64-paging`'s table memory: zeroed arena frames reached through the direct map.
struct ArenaTranslation<'a> {
    mem: &'a EmuMemory,
    offset: u64,
}

impl aarch64_paging::paging::Translation<aarch64_paging::descriptor::El1Attributes>
    for ArenaTranslation<'_>
{
    fn allocate_table(
        &mut self,
    ) -> (
        NonNull<aarch64_paging::paging::PageTable<aarch64_paging::descriptor::El1Attributes>>,
        aarch64_paging::descriptor::PhysicalAddress,
    ) {
        let pa = self.mem.allocate_data_frame().expect("arena frame");
        let ptr = NonNull::new((pa.as_u64() + self.offset) as *mut _).expect("non-null");
        (
            ptr,
            aarch64_paging::descriptor::PhysicalAddress(pa.as_u64() as usize),
        )
    }

    unsafe fn deallocate_table(
        &mut self,
        table: NonNull<
            aarch64_paging::paging::PageTable<aarch64_paging::descriptor::El1Attributes>,
        >,
    ) {
        let pa = PhyAddr::new(table.as_ptr() as u64 - self.offset);
        unsafe { (&*self.mem).deallocate_frame(pa) };
    }

    fn physical_to_virtual(
        &self,
        pa: aarch64_paging::descriptor::PhysicalAddress,
    ) -> NonNull<aarch64_paging::paging::PageTable<aarch64_paging::descriptor::El1Attributes>> {
        NonNull::new((pa.0 as u64 + self.offset) as *mut _).expect("non-null")
    }
}

fn aarch64_paging() -> Row {
    use aarch64_paging::descriptor::El1Attributes as A;
    use aarch64_paging::descriptor::PhysicalAddress;
    use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, VaRange};
    use aarch64_paging::Mapping;
    let mem = EmuMemory::new(ARENA_FRAMES);
    let offset = unsafe { mem.offset_mapping() }.offset();
    let mut map = Mapping::with_asid_and_va_range(
        ArenaTranslation { mem: &mem, offset },
        1,
        0,
        El1And0,
        VaRange::Lower,
    );
    let region = |i: u64| {
        let va = (VA_BASE + i * 4096) as usize;
        MemoryRegion::new(va, va + 4096)
    };
    let rw = A::VALID
        | A::ATTRIBUTE_INDEX_0
        | A::INNER_SHAREABLE
        | A::ACCESSED
        | A::NON_GLOBAL
        | A::UXN
        | A::PXN;
    let t = Instant::now();
    for i in 0..PAGES {
        let pa = PhysicalAddress((PA_BASE + i * 4096) as usize);
        map.map_range(&region(i), pa, rw, Constraints::empty())
            .unwrap();
    }
    let map_ns = per_page(t);
    let t = Instant::now();
    let mut sum = 0usize;
    for i in 0..PAGES {
        map.walk_range(&region(i), &mut |_, d, level| {
            if level == 3 {
                sum = sum.wrapping_add(d.output_address().0);
            }
            Ok(())
        })
        .unwrap();
    }
    black_box(sum);
    let translate = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        map.modify_range(&region(i), &|_, d| {
            if d.level() == 3 {
                d.modify_flags(A::READ_ONLY, A::empty())?;
            }
            Ok(())
        })
        .unwrap();
    }
    let update = per_page(t);
    let t = Instant::now();
    for i in 0..PAGES {
        map.map_range(
            &region(i),
            PhysicalAddress(0),
            A::empty(),
            Constraints::empty(),
        )
        .unwrap();
    }
    let unmap = per_page(t);
    [map_ns, translate, update, unmap]
}

fn median(mut runs: Vec<Row>, col: usize) -> f64 {
    runs.sort_by(|a, b| a[col].total_cmp(&b[col]));
    runs[runs.len() / 2][col]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let subjects: [Subject; 2] = [
        ("awk-paging AArch64PageTable", awk),
        ("aarch64-paging Mapping (1-page ranges)", aarch64_paging),
    ];
    println!("{PAGES} pages, median of {ROUNDS} rounds, ns/page\n");
    println!("| implementation | map | translate | update flags | unmap |");
    println!("|---|---:|---:|---:|---:|");
    for (name, f) in subjects {
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
