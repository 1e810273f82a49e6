//! A range map over a span whose tables stayed but hold nothing (another mapper unmapped the
//! pages and kept the tables) replaces the empty table with one block — the merge
//! `aarch64-paging` users ask for — with break-before-make (Arm ARM D8.16.1: a table entry
//! becoming a block is made invalid and invalidated first), and frees the empty tables after
//! the flush.

use awk_paging::arch::Arch;
use awk_paging::emu::{EmuMemory, Event, Tracer};
use awk_paging::{Attrs, Flags, PageSize, PageTable, PhyAddr, RangeOptions, VirtAddr};
use awk_paging_aarch64::A64;

const BASE: u64 = 0x4000_0000;

/// root → L2 → L1 → one empty leaf table per `empty` level-1 entry at `BASE`. Returns the root
/// and the level-1 table.
fn build(mem: &EmuMemory, regime: &A64, empty: u64) -> (PhyAddr, PhyAddr) {
    let link = |parent: PhyAddr, index: u64, child: PhyAddr| {
        let e = regime.table_entry(child, Attrs::from(Flags::RW));
        assert!(mem.write_u64(PhyAddr::new(parent.as_u64() + 8 * index), e));
    };
    let frame = || mem.allocate_data_frame().unwrap();
    let (root, l2, l1) = (frame(), frame(), frame());
    link(root, (BASE >> 39) & 0x1ff, l2);
    link(l2, (BASE >> 30) & 0x1ff, l1);
    for i in 0..empty {
        link(l1, ((BASE >> 21) & 0x1ff) + i, frame());
    }
    (root, l1)
}

#[test]
fn map_range_replaces_empty_tables_by_blocks_with_break_before_make() {
    let mem = EmuMemory::new(32);
    let regime = A64::default();
    let (root, l1) = build(&mem, &regime, 3);
    let before = mem.frames_in_use();
    let t = Tracer::new(regime, &mem, None);
    t.adopt(root);
    // SAFETY: a valid A64 tree in the tracer's memory, owned by the table from now on.
    let mut pt = unsafe { PageTable::from_root(regime, &t, &t, &t, root) };
    let (va, pa) = (VirtAddr::new(BASE), PhyAddr::new(0x8000_0000));
    let mut g = pt.gather();
    // 3 × 2 MiB over the three empty tables, and a fourth 2 MiB where there was nothing.
    let r = unsafe { pt.map_range(va, pa, 4 << 21, Flags::RW, RangeOptions::default(), &mut g) };
    r.unwrap();
    pt.finish(g).unwrap();
    for i in 0..4u64 {
        let v = VirtAddr::new(BASE + (i << 21) + 0x1234);
        let tr = pt.translate(v).unwrap();
        assert_eq!(
            (tr.size, tr.pa),
            (
                PageSize::Size2M,
                PhyAddr::new(0x8000_0000 + (i << 21) + 0x1234)
            ),
            "block {i}"
        );
    }
    // The three empty tables went back to the allocator (after the flush).
    assert_eq!(mem.frames_in_use(), before - 3);
    // Each of the three entries: broken (table entry → 0), its address invalidated, then made.
    let events = t.events();
    for i in 0..3usize {
        let index = ((BASE >> 21) & 0x1ff) as usize + i;
        let stores: Vec<(usize, u64, u64)> = events
            .iter()
            .enumerate()
            .filter_map(|(k, e)| match *e {
                Event::Store {
                    table,
                    index: j,
                    old,
                    new,
                } if table == l1 && j == index => Some((k, old, new)),
                _ => None,
            })
            .collect();
        assert_eq!(
            stores.len(),
            2,
            "entry {index}: break, then make: {stores:x?}"
        );
        let ((brk, old, zero), (make, _, block)) = (stores[0], stores[1]);
        assert!(old != 0 && zero == 0 && block & 0b11 == 0b01, "{stores:x?}");
        let v = VirtAddr::new(BASE + ((i as u64) << 21));
        assert!(
            events[brk..make]
                .iter()
                .any(|e| matches!(*e, Event::FlushPage(x) if x == v)),
            "entry {index}: walk invalidated between break and make"
        );
    }
    assert_eq!(t.violations(), vec![], "tracer");
    unsafe { pt.destroy() };
}

#[test]
fn a_table_holding_a_mapping_is_not_merged() {
    let mem = EmuMemory::new(32);
    let regime = A64::default();
    let (root, l1) = build(&mem, &regime, 1);
    let t = Tracer::new(regime, &mem, None);
    t.adopt(root);
    // SAFETY: as above.
    let mut pt = unsafe { PageTable::from_root(regime, &t, &t, &t, root) };
    // One 4 KiB page in the (otherwise empty) table: the 2 MiB range is already mapped there.
    let page = VirtAddr::new(BASE + 0x5000);
    unsafe { pt.map(page, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RO) }
        .unwrap()
        .flush();
    let snapshot: Vec<u64> = (0..512)
        .map(|i| mem.read_u64(PhyAddr::new(l1.as_u64() + 8 * i)).unwrap())
        .collect();
    let mut g = pt.gather();
    let r = unsafe {
        pt.map_range(
            VirtAddr::new(BASE),
            PhyAddr::new(0x8000_0000),
            1 << 21,
            Flags::RW,
            RangeOptions::default(),
            &mut g,
        )
    };
    pt.finish(g).unwrap();
    assert_eq!(r.unwrap_err().error, awk_paging::MapError::AlreadyMapped);
    let after: Vec<u64> = (0..512)
        .map(|i| mem.read_u64(PhyAddr::new(l1.as_u64() + 8 * i)).unwrap())
        .collect();
    assert_eq!(after, snapshot, "nothing changed");
    assert_eq!(pt.translate(page).unwrap().size, PageSize::Size4K);
    unsafe { pt.destroy() };
}
