//! The read-only walker and foreign translation on hostile tables written by hand in the
//! emulator's reference format (bits: 0 valid, 1 table, 2 write, 3 execute, 6 user; arena at
//! 1 MiB): loops, entries outside readable memory, tables shared so often the walk would not
//! end without its budget, callbacks in order, batches and the cache agreeing with single
//! translations.

use core::ops::ControlFlow;

use awk_paging::emu::{EmuArch, EmuMemory};
use awk_paging::inspect::{
    Broken, Fault, ForeignTable, Hole, Leaf, LiveMem, RawDump, TableVisit, TranslationCache,
    Visitor, WalkError,
};
use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};

const ARCH: EmuArch = EmuArch { without: None };
const TABLE: u64 = 0b11; // valid | table
const LEAF: u64 = 0b01; // valid leaf, read-only
const BASE: u64 = 0x10_0000; // EmuMemory's first frame

fn frame(i: u64) -> u64 {
    BASE + 0x1000 * i
}

fn set(mem: &EmuMemory, table: u64, index: u64, raw: u64) {
    assert!(mem.write_u64(PhyAddr::new(table + 8 * index), raw));
}

/// Records every callback as text.
#[derive(Default)]
struct Log(Vec<String>);

impl Visitor for Log {
    type Break = ();
    fn leaf(&mut self, l: &Leaf) -> ControlFlow<()> {
        self.0.push(format!(
            "leaf {:#x} -> {:#x} L{}",
            l.va.as_u64(),
            l.frame.as_u64(),
            l.level
        ));
        ControlFlow::Continue(())
    }
    fn hole(&mut self, h: &Hole) -> ControlFlow<()> {
        if h.raw != 0 {
            self.0.push(format!(
                "hole {:#x}+{:#x} L{} raw {:#x}",
                h.va.as_u64(),
                h.len,
                h.level,
                h.raw
            ));
        }
        ControlFlow::Continue(())
    }
    fn enter(&mut self, t: &TableVisit) -> ControlFlow<()> {
        self.0
            .push(format!("enter {:#x} L{}", t.table.as_u64(), t.level));
        ControlFlow::Continue(())
    }
    fn leave(&mut self, t: &TableVisit) -> ControlFlow<()> {
        self.0
            .push(format!("leave {:#x} L{}", t.table.as_u64(), t.level));
        ControlFlow::Continue(())
    }
    fn broken(&mut self, b: &Broken) -> ControlFlow<()> {
        self.0.push(format!(
            "broken {:#x}+{:#x} L{} {}",
            b.va.as_u64(),
            b.len,
            b.level,
            b.kind
        ));
        ControlFlow::Continue(())
    }
}

/// Root (frame 0) -> L2 (frame 1) -> L1 (frame 2) -> L0 (frame 3), one 4 KiB leaf at
/// 0x4000_3000 and one 2 MiB leaf at 0x4020_0000; everything written by hand.
fn chain(mem: &EmuMemory) {
    set(mem, frame(0), 0, frame(1) | TABLE);
    set(mem, frame(1), 1, frame(2) | TABLE); // 1 GiB .. 2 GiB
    set(mem, frame(2), 0, frame(3) | TABLE); // 0x4000_0000 .. +2 MiB
    set(mem, frame(2), 1, 0x80_0000 | LEAF); // 0x4020_0000: 2 MiB leaf
    set(mem, frame(3), 3, 0x7000 | LEAF | 0b100); // 0x4000_3000: 4 KiB, writable
}

#[test]
fn callbacks_come_in_walk_order_and_nest() {
    let mem = EmuMemory::new(8);
    chain(&mem);
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0)));
    let mut log = Log::default();
    let walked = t.walk(&mut log).unwrap();
    assert_eq!(
        log.0,
        [
            "enter 0x100000 L3",
            "enter 0x101000 L2",
            "enter 0x102000 L1",
            "enter 0x103000 L0",
            "leaf 0x40003000 -> 0x7000 L0",
            "leave 0x103000 L0",
            "leaf 0x40200000 -> 0x800000 L1",
            "leave 0x102000 L1",
            "leave 0x101000 L2",
            "leave 0x100000 L3",
        ]
    );
    assert_eq!(
        (walked.tables, walked.entries, walked.leaves, walked.broken),
        (4, 2048, 2, 0)
    );
}

#[test]
fn range_walks_read_only_the_entries_the_range_touches() {
    let mem = EmuMemory::new(8);
    chain(&mem);
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0)));
    let mut log = Log::default();
    // 0x4000_2000 ..= 0x4020_0fff: L0 entries 2..=511, L1 entries 0 and 1.
    let walked = t
        .walk_range(
            VirtAddr::new(0x4000_2000),
            VirtAddr::new(0x4020_0fff),
            &mut log,
        )
        .unwrap();
    assert_eq!(walked.entries, 1 + 1 + 2 + 510);
    assert_eq!(
        log.0
            .iter()
            .filter(|l| l.starts_with("leaf"))
            .collect::<Vec<_>>(),
        [
            "leaf 0x40003000 -> 0x7000 L0",
            "leaf 0x40200000 -> 0x800000 L1"
        ]
    );
}

#[test]
fn loops_are_reported_not_followed() {
    let mem = EmuMemory::new(8);
    // Root entry 0 -> root itself; root entry 1 -> L2 whose entry 2 -> root (a 2-cycle);
    // root entry 3 -> L2 entry 0 -> L1 whose entry 0 points at itself.
    set(&mem, frame(0), 0, frame(0) | TABLE);
    set(&mem, frame(0), 1, frame(1) | TABLE);
    set(&mem, frame(1), 2, frame(0) | TABLE);
    set(&mem, frame(0), 3, frame(2) | TABLE);
    set(&mem, frame(2), 0, frame(3) | TABLE);
    set(&mem, frame(3), 0, frame(3) | TABLE);
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0)));
    let mut log = Log::default();
    let walked = t.walk(&mut log).unwrap();
    let broken: Vec<_> = log.0.iter().filter(|l| l.starts_with("broken")).collect();
    assert_eq!(
        broken,
        [
            "broken 0x0+0x8000000000 L3 table 0x100000 is already on the walk's path (loop)",
            "broken 0x8080000000+0x40000000 L2 table 0x100000 is already on the walk's path (loop)",
            "broken 0x18000000000+0x200000 L1 table 0x103000 is already on the walk's path (loop)",
        ]
    );
    assert_eq!(walked.broken, 3);
    assert_eq!(
        t.translate(VirtAddr::new(0x1000)),
        Err(Fault::Loop {
            level: 3,
            table: PhyAddr::new(frame(0))
        })
    );
    assert_eq!(
        t.translate(VirtAddr::new(0x80_8000_0000)),
        Err(Fault::Loop {
            level: 2,
            table: PhyAddr::new(frame(0))
        })
    );
    assert_eq!(
        t.translate(VirtAddr::new(0x180_0000_0000)),
        Err(Fault::Loop {
            level: 1,
            table: PhyAddr::new(frame(3))
        })
    );
}

#[test]
fn unreadable_tables_are_reported_where_met() {
    let mem = EmuMemory::new(4);
    set(&mem, frame(0), 2, 0xdead_0000 | TABLE); // outside the 4-frame arena
    set(&mem, frame(0), 3, frame(1) | TABLE);
    set(&mem, frame(1), 0, frame(2) | TABLE);
    set(&mem, frame(2), 5, 0xbeef_0000 | TABLE);
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0)));
    let mut log = Log::default();
    t.walk(&mut log).unwrap();
    let broken: Vec<_> = log.0.iter().filter(|l| l.starts_with("broken")).collect();
    assert_eq!(
        broken,
        [
            "broken 0x10000000000+0x8000000000 L2 0xdead0000 not readable",
            "broken 0x18000a00000+0x200000 L0 0xbeef0000 not readable",
        ]
    );
    assert_eq!(
        t.translate(VirtAddr::new(0x100_0000_0000)),
        Err(Fault::Unreadable {
            level: 2,
            table: PhyAddr::new(0xdead_0000)
        })
    );
    // A root outside memory: one report for the whole space, no panic.
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(0x4000_0000));
    let mut log = Log::default();
    assert_eq!(t.walk(&mut log).unwrap().broken, 1);
    assert_eq!(
        log.0[1],
        "broken 0x0+0x1000000000000 L3 0x40000000 not readable"
    );
    // The same through a raw dump that lacks the frame.
    let bytes = vec![0u8; 0x1000];
    let dump = RawDump::new(PhyAddr::new(frame(0)), &bytes);
    let t = ForeignTable::new(ARCH, dump, PhyAddr::new(frame(1)));
    assert_eq!(
        t.translate(VirtAddr::new(0)),
        Err(Fault::Unreadable {
            level: 3,
            table: PhyAddr::new(frame(1))
        })
    );
}

/// Every entry of every table points at the next table: 512^3 leaf tables to visit without a
/// budget. The walk stops after exactly `budget` entries.
#[test]
fn shared_tables_cannot_make_the_walk_endless() {
    let mem = EmuMemory::new(4);
    for i in 0..512 {
        set(&mem, frame(0), i, frame(1) | TABLE);
        set(&mem, frame(1), i, frame(2) | TABLE);
        set(&mem, frame(2), i, frame(3) | TABLE);
        set(&mem, frame(3), i, 0x9000 | LEAF);
    }
    let t =
        ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0))).with_budget(100_000);
    let mut leaves = 0u64;
    struct Count<'a>(&'a mut u64);
    impl Visitor for Count<'_> {
        type Break = ();
        fn leaf(&mut self, _: &Leaf) -> ControlFlow<()> {
            *self.0 += 1;
            ControlFlow::Continue(())
        }
    }
    let r = t.walk(&mut Count(&mut leaves));
    // One root entry and one level-2 entry, then per leaf table one level-1 entry and 512
    // leaves: 99_998 = 194 x 513 + 476, so 194 full leaf tables, a 195th level-1 entry and
    // 475 leaves of the 195th table.
    assert!(matches!(r, Err(WalkError::Budget { .. })), "{r:?}");
    assert_eq!(leaves, 100_000 - 2 - 195);
    // A single translation is not affected (one entry per level).
    assert_eq!(
        t.translate(VirtAddr::new(0x7fff_ffff_f123)).unwrap().pa,
        PhyAddr::new(0x9123)
    );
}

#[test]
fn a_visitor_can_stop_the_walk() {
    let mem = EmuMemory::new(8);
    chain(&mem);
    struct First;
    impl Visitor for First {
        type Break = VirtAddr;
        fn leaf(&mut self, l: &Leaf) -> ControlFlow<VirtAddr> {
            ControlFlow::Break(l.va)
        }
    }
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0)));
    assert_eq!(
        t.walk(&mut First),
        Err(WalkError::Stopped(VirtAddr::new(0x4000_3000)))
    );
}

#[test]
fn bad_ranges_are_refused() {
    let mem = EmuMemory::new(1);
    let t = ForeignTable::new(ARCH, LiveMem::new(&mem), PhyAddr::new(frame(0)));
    let mut log = Log::default();
    assert_eq!(
        t.walk_range(
            VirtAddr::new(0x8000_0000_0000),
            VirtAddr::new(0x9000_0000_0000),
            &mut log
        ),
        Err(WalkError::Range(awk_paging::AddrError::NonCanonical))
    );
    // Across the halves in table order: lower half's end to the upper half's start is fine.
    let w = t
        .walk_range(
            VirtAddr::new(0x7fff_ffff_f000),
            VirtAddr::new(0xffff_8000_0000_0fff),
            &mut log,
        )
        .unwrap();
    assert_eq!(w.entries, 2);
}

/// Batches and the cache answer exactly what single translations answer, over a table built
/// by the crate itself (4 KiB, 2 MiB and 1 GiB pages, holes between them).
#[test]
fn batches_and_the_cache_agree_with_single_translations() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    for (va, pa, size) in [
        (0x1000u64, 0x10_0000u64, PageSize::Size4K),
        (0x2000, 0x30_0000, PageSize::Size4K),
        (0x20_0000, 0x4000_0000, PageSize::Size2M),
        (0x4000_0000, 0x8000_0000, PageSize::Size1G),
        (0xffff_8000_0000_0000, 0x5000, PageSize::Size4K),
    ] {
        unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(pa), size, Flags::RW) }
            .unwrap()
            .flush();
    }
    let t = pt.inspect();
    let mut vas = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = [
            0x1000,
            0x2000,
            0x3000,
            0x20_0000,
            0x4000_0000,
            0xffff_8000_0000_0000,
        ][(x % 6) as usize];
        vas.push(VirtAddr::new(base + (x >> 40) % 0x4000));
    }
    vas.push(VirtAddr::new(0x8000_0000_0000)); // not canonical
    let single: Vec<_> = vas.iter().map(|&va| t.translate(va)).collect();
    let mut batch = Vec::new();
    t.translate_many(vas.iter().copied(), |_, r| batch.push(r));
    assert_eq!(batch, single);
    let mut cache = TranslationCache::<32>::new();
    let mut cached = Vec::new();
    cache.translate_many(&t, vas.iter().copied(), |_, r| cached.push(r));
    assert_eq!(cached, single);
    let s = cache.stats();
    assert_eq!(s.hits + s.misses, vas.len() as u64);
    // About half the addresses fall on mapped pages (24 distinct 4 KiB pages and two larger
    // ones); faults are never cached.
    assert!(s.hits > 1500, "{s:?}");
    // Spot checks written out by hand.
    assert_eq!(
        t.translate(VirtAddr::new(0x2abc)).unwrap().pa,
        PhyAddr::new(0x30_0abc)
    );
    assert_eq!(
        t.translate(VirtAddr::new(0x4000_1234)).unwrap().pa,
        PhyAddr::new(0x8000_1234)
    );
    assert_eq!(
        t.translate(VirtAddr::new(0x3000)),
        Err(Fault::NotMapped { level: 0 })
    );
    assert_eq!(
        t.translate(VirtAddr::new(0x8000_0000)),
        Err(Fault::NotMapped { level: 2 })
    );
}

#[test]
fn the_cache_forgets_on_a_new_generation_a_new_root_and_invalidation() {
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let va = VirtAddr::new(0x20_0000);
    unsafe { pt.map(va, PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RW) }
        .unwrap()
        .flush();
    let mut cache = TranslationCache::<4>::new();
    assert_eq!(
        cache
            .translate(&pt.inspect(), VirtAddr::new(0x20_0010))
            .unwrap()
            .pa,
        PhyAddr::new(0x40_0010)
    );
    // Remap: the cache still answers the old frame until told.
    unsafe { pt.unmap(va, PageSize::Size2M) }.unwrap().1.flush();
    unsafe { pt.map(va, PhyAddr::new(0x60_0000), PageSize::Size2M, Flags::RW) }
        .unwrap()
        .flush();
    assert_eq!(
        cache
            .translate(&pt.inspect(), VirtAddr::new(0x3f_fff0))
            .unwrap()
            .pa,
        PhyAddr::new(0x5f_fff0)
    );
    cache.sync(1);
    assert_eq!(
        cache
            .translate(&pt.inspect(), VirtAddr::new(0x3f_fff0))
            .unwrap()
            .pa,
        PhyAddr::new(0x7f_fff0)
    );
    // Explicit invalidation of one byte of the page drops it.
    unsafe { pt.unmap(va, PageSize::Size2M) }.unwrap().1.flush();
    cache.invalidate(VirtAddr::new(0x30_0000), 1);
    assert!(cache
        .translate(&pt.inspect(), va)
        .unwrap_err()
        .is_not_mapped());
    // Another root: everything dropped.
    let other = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let flushes = cache.stats().flushes;
    let _ = cache.translate(&other.inspect(), va);
    assert_eq!(cache.stats().flushes, flushes + 1);
}
