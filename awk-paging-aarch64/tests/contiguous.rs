//! The contiguous hint: set only on complete, aligned, identically attributed 16-entry runs that
//! one range call maps, and kept correct afterwards — any change to part of a run first clears
//! the hint on the whole run with break-before-make (Arm ARM D8.6.1).

use std::cell::RefCell;

use awk_paging::emu::EmuMemory;
use awk_paging::{
    Flags, Gather, MemoryType, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, Tlb, VirtAddr,
};
use awk_paging_aarch64::descriptor::bits::CONTIGUOUS;
use awk_paging_aarch64::A64;

const K64: u64 = 0x1_0000;
const M2: u64 = 0x20_0000;

fn hinted<T: Tlb + Clone>(pt: &PageTable<A64, &EmuMemory, &EmuMemory, T>, va: u64) -> bool {
    pt.raw_entry(VirtAddr::new(va)).unwrap().1 & CONTIGUOUS != 0
}

fn map<T: Tlb + Clone>(
    pt: &mut PageTable<A64, &EmuMemory, &EmuMemory, T>,
    va: u64,
    pa: u64,
    len: u64,
    flags: Flags,
    max: PageSize,
) {
    let mut g = pt.gather();
    unsafe {
        pt.map_range(
            VirtAddr::new(va),
            PhyAddr::new(pa),
            len,
            flags,
            RangeOptions { max_page: max },
            &mut g,
        )
    }
    .unwrap();
    pt.finish(g).unwrap();
}

fn finish<T: Tlb + Clone>(pt: &mut PageTable<A64, &EmuMemory, &EmuMemory, T>, g: Gather) {
    pt.finish(g).unwrap();
}

#[test]
fn complete_aligned_runs_are_hinted_and_partial_ones_are_not() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(A64::default(), &mem, &mem, NoTlb).unwrap();
    // 64 KiB + 4 KiB from an aligned VA/PA: the first 16 pages form a run, the 17th does not.
    map(
        &mut pt,
        0x4000_0000,
        0x8000_0000,
        K64 + 0x1000,
        Flags::RW,
        PageSize::Size4K,
    );
    for i in 0..16 {
        assert!(hinted(&pt, 0x4000_0000 + i * 0x1000), "page {i}");
    }
    assert!(!hinted(&pt, 0x4000_0000 + K64));
    // VA aligned, PA not aligned to 64 KiB: no run.
    map(
        &mut pt,
        0x4010_0000,
        0x8010_1000,
        K64,
        Flags::RW,
        PageSize::Size4K,
    );
    assert!((0..16).all(|i| !hinted(&pt, 0x4010_0000 + i * 0x1000)));
    // 16 aligned 2 MiB blocks (32 MiB) are a run of blocks.
    map(
        &mut pt,
        0x8000_0000,
        0x2_0000_0000,
        16 * M2,
        Flags::RO,
        PageSize::Size2M,
    );
    assert!((0..16).all(|i| hinted(&pt, 0x8000_0000 + i * M2)));
    assert_eq!(pt.raw_entry(VirtAddr::new(0x8000_0000)).unwrap().0, 1);
}

/// A TLB that records, at each leaf invalidation, whether every entry of the run at
/// `0x4000_0000` was invalid at that moment (break-before-make over the run).
#[derive(Default)]
struct Watch<'m> {
    mem: Option<&'m EmuMemory>,
    run: RefCell<Vec<PhyAddr>>,
    seen: RefCell<Vec<(VirtAddr, bool)>>,
}

impl Tlb for &Watch<'_> {
    fn flush_page(&self, va: VirtAddr) {
        self.flush_leaf(va);
    }
    fn flush_leaf(&self, va: VirtAddr) {
        let mem = self.mem.unwrap();
        let broken = self
            .run
            .borrow()
            .iter()
            .all(|&e| mem.read_u64(e) == Some(0));
        self.seen.borrow_mut().push((va, broken));
    }
    fn flush_all(&self) {}
}

#[test]
fn changing_part_of_a_run_unhints_the_whole_run_with_break_before_make() {
    let mem = EmuMemory::new(64);
    let watch = Watch {
        mem: Some(&mem),
        ..Watch::default()
    };
    let mut pt = PageTable::new(A64::default(), &mem, &mem, &watch).unwrap();
    let base = 0x4000_0000u64;
    map(&mut pt, base, 0x8000_0000, K64, Flags::RW, PageSize::Size4K);
    // The physical addresses of the run's 16 entries (the level-0 table's first 16 words).
    let (_, first) = pt.raw_entry(VirtAddr::new(base)).unwrap();
    assert_ne!(first & CONTIGUOUS, 0);
    let table = find_leaf_table(&mem, &pt, base);
    *watch.run.borrow_mut() = (0..16).map(|i| PhyAddr::new(table + 8 * i)).collect();
    watch.seen.borrow_mut().clear();

    let mut g = pt.gather();
    unsafe { pt.protect_range(VirtAddr::new(base + 0x3000), 0x1000, Flags::RO, &mut g) }.unwrap();
    finish(&mut pt, g);

    let seen = watch.seen.borrow().clone();
    let during: Vec<_> = seen
        .iter()
        .filter(|(_, broken)| *broken)
        .map(|(va, _)| *va)
        .collect();
    let expected: Vec<_> = (0..16).map(|i| VirtAddr::new(base + i * 0x1000)).collect();
    assert_eq!(
        during, expected,
        "every page of the run invalidated while the run was invalid"
    );
    assert!(
        (0..16).all(|i| !hinted(&pt, base + i * 0x1000)),
        "hint gone from the whole run"
    );
    let t = |off: u64| pt.translate(VirtAddr::new(base + off)).unwrap();
    assert_eq!(t(0x3000).attrs.flags, Flags::RO);
    assert_eq!(
        (t(0x4000).attrs.flags, t(0x4000).frame),
        (Flags::RW, PhyAddr::new(0x8000_4000))
    );
}

#[test]
fn a_whole_run_keeps_its_hint_through_a_permission_change_but_not_a_type_change() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(A64::default(), &mem, &mem, NoTlb).unwrap();
    let base = 0x4000_0000u64;
    map(&mut pt, base, 0x8000_0000, K64, Flags::RW, PageSize::Size4K);
    let mut g = pt.gather();
    unsafe { pt.protect_range(VirtAddr::new(base), K64, Flags::RO, &mut g) }.unwrap();
    finish(&mut pt, g);
    assert!(
        (0..16).all(|i| hinted(&pt, base + i * 0x1000)),
        "permission-only: kept"
    );
    assert_eq!(
        pt.translate(VirtAddr::new(base + 0xf000))
            .unwrap()
            .attrs
            .flags,
        Flags::RO
    );
    let device = MemoryType::Device.with_permissions(false, false);
    let mut g = pt.gather();
    unsafe { pt.protect_range(VirtAddr::new(base), K64, device, &mut g) }.unwrap();
    finish(&mut pt, g);
    assert!(
        (0..16).all(|i| !hinted(&pt, base + i * 0x1000)),
        "memory type: unhinted"
    );
}

#[test]
fn unmapping_part_of_a_run_or_splitting_a_hinted_block_unhints_the_rest() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(A64::default(), &mem, &mem, NoTlb).unwrap();
    let base = 0x4000_0000u64;
    map(&mut pt, base, 0x8000_0000, K64, Flags::RW, PageSize::Size4K);
    let (gone, f) = unsafe { pt.unmap(VirtAddr::new(base + 0x5000), PageSize::Size4K) }.unwrap();
    f.flush();
    assert_eq!(gone.frame, PhyAddr::new(0x8000_5000));
    assert!((0..16)
        .filter(|&i| i != 5)
        .all(|i| !hinted(&pt, base + i * 0x1000)));
    // 32 MiB of hinted 2 MiB blocks; unmapping 4 KiB inside block 3 splits it: the other
    // blocks lose the hint, the new 4 KiB runs of block 3 are hinted except the broken one.
    let big = 0x8000_0000u64;
    map(
        &mut pt,
        big,
        0x2_0000_0000,
        16 * M2,
        Flags::RW,
        PageSize::Size2M,
    );
    let mut g = pt.gather();
    unsafe { pt.unmap_range(VirtAddr::new(big + 3 * M2 + 0x1000), 0x1000, &mut g, |_| {}) }
        .unwrap();
    finish(&mut pt, g);
    assert!(
        (0..16)
            .filter(|&i| i != 3)
            .all(|i| !hinted(&pt, big + i * M2)),
        "blocks unhinted"
    );
    assert!(!hinted(&pt, big + 3 * M2), "the broken 4 KiB run");
    assert!(
        hinted(&pt, big + 3 * M2 + K64),
        "an intact 4 KiB run of the split block"
    );
    assert_eq!(
        pt.translate(VirtAddr::new(big + 3 * M2 + K64))
            .unwrap()
            .frame,
        PhyAddr::new(0x2_0000_0000 + 3 * M2 + K64)
    );
    // Unmapping a whole run clears it without unhinting first.
    let mut g = pt.gather();
    unsafe { pt.unmap_range(VirtAddr::new(big + 3 * M2 + K64), K64, &mut g, |_| {}) }.unwrap();
    finish(&mut pt, g);
    assert!(pt.translate(VirtAddr::new(big + 3 * M2 + K64)).is_err());
    assert!(
        hinted(&pt, big + 3 * M2 + 2 * K64),
        "the next run is untouched"
    );
}

/// The physical address of the level-0 table that maps `va` (48-bit regime: 4 levels).
fn find_leaf_table<T: Tlb + Clone>(
    mem: &EmuMemory,
    pt: &PageTable<A64, &EmuMemory, &EmuMemory, T>,
    va: u64,
) -> u64 {
    let mut table = pt.root().as_u64();
    for level in (1..4).rev() {
        let index = (va >> (12 + 9 * level)) & 0x1ff;
        let raw = mem.read_u64(PhyAddr::new(table + 8 * index)).unwrap();
        table = raw & 0x0000_ffff_ffff_f000;
    }
    table
}
