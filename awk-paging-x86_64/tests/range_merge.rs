//! A range map over a span whose tables stayed but hold nothing (the `x86_64` crate's unmap
//! keeps them) replaces the empty subtree with one large page — here a 1 GiB page over an
//! empty page directory that still links an empty page table — and frees both tables after
//! the flush. x86 needs no break-before-make for it: one store, and the gather's invalidation
//! (walk caches included) comes before the frees.

use awk_paging::arch::Arch;
use awk_paging::emu::EmuMemory;
use awk_paging::{Attrs, Flags, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, VirtAddr};
use awk_paging_x86_64::X86_64;

#[test]
fn map_range_replaces_an_empty_subtree_by_a_gigabyte_page() {
    const BASE: u64 = 0x40_0000_0000; // 1 GiB-aligned, PML4 entry 0
    let mem = EmuMemory::new(16);
    let regime = X86_64::new().with_1g_pages(true);
    let link = |parent: PhyAddr, index: u64, child: PhyAddr| {
        let e = regime.table_entry(child, Attrs::from(Flags::RW));
        assert!(mem.write_u64(PhyAddr::new(parent.as_u64() + 8 * index), e));
    };
    let frame = || mem.allocate_data_frame().unwrap();
    let (pml4, pdpt, pd, pt_) = (frame(), frame(), frame(), frame());
    link(pml4, (BASE >> 39) & 0x1ff, pdpt);
    link(pdpt, (BASE >> 30) & 0x1ff, pd);
    link(pd, 7, pt_);
    let before = mem.frames_in_use();
    // SAFETY: a valid x86_64 tree in emulated memory, owned by the table from now on.
    let mut pt = unsafe { PageTable::from_root(regime, &mem, &mem, NoTlb, pml4) };
    let (va, pa) = (VirtAddr::new(BASE), PhyAddr::new(0x1_0000_0000));
    let mut g = pt.gather();
    unsafe { pt.map_range(va, pa, 1 << 30, Flags::RW, RangeOptions::default(), &mut g) }.unwrap();
    pt.finish(g).unwrap();
    let t = pt.translate(VirtAddr::new(BASE + 0x1234_5678)).unwrap();
    assert_eq!(
        (t.size, t.pa),
        (PageSize::Size1G, PhyAddr::new(0x1_1234_5678))
    );
    // The page directory and the page table under it went back to the allocator.
    assert_eq!(mem.frames_in_use(), before - 2);
    // The PDPT entry is now the 1 GiB leaf (PS = bit 7), nothing else changed there.
    let e = mem
        .read_u64(PhyAddr::new(pdpt.as_u64() + 8 * ((BASE >> 30) & 0x1ff)))
        .unwrap();
    assert_eq!(e & (1 | 1 << 7), 1 | 1 << 7);
    unsafe { pt.destroy() };
}

/// The same merge, traced: the old tables are freed only after an invalidation of their walk
/// (no `FreeBeforeFlush`), and linking, zeroing and ordering stay clean.
#[test]
fn merged_tables_are_freed_after_the_walk_invalidation() {
    use awk_paging::emu::Tracer;
    const BASE: u64 = 0x40_0000_0000;
    let mem = EmuMemory::new(16);
    let regime = X86_64::new();
    let link = |parent: PhyAddr, index: u64, child: PhyAddr| {
        let e = regime.table_entry(child, Attrs::from(Flags::RW));
        assert!(mem.write_u64(PhyAddr::new(parent.as_u64() + 8 * index), e));
    };
    let frame = || mem.allocate_data_frame().unwrap();
    let (pml4, pdpt, pd, pt_) = (frame(), frame(), frame(), frame());
    link(pml4, (BASE >> 39) & 0x1ff, pdpt);
    link(pdpt, (BASE >> 30) & 0x1ff, pd);
    link(pd, 3, pt_);
    let t = Tracer::new(regime, &mem, None);
    t.adopt(pml4);
    // SAFETY: a valid x86_64 tree in the tracer's memory, owned by the table from now on.
    let mut pt = unsafe { PageTable::from_root(regime, &t, &t, &t, pml4) };
    let (va, pa) = (VirtAddr::new(BASE + (3 << 21)), PhyAddr::new(0x1_0000_0000));
    let mut g = pt.gather();
    unsafe { pt.map_range(va, pa, 1 << 21, Flags::RW, RangeOptions::default(), &mut g) }.unwrap();
    pt.finish(g).unwrap();
    assert_eq!(pt.translate(va).unwrap().size, PageSize::Size2M);
    assert_eq!(t.violations(), vec![], "tracer");
    unsafe { pt.destroy() };
}
