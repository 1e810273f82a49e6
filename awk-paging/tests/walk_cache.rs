//! The walk cache holds the tables of the last walk (leaf table, table of 2 MiB entries, ...):
//! every entry is still read afresh, and the cache is dropped whenever a table goes away.

use awk_paging::emu::{EmuArch, EmuMemory};
use awk_paging::{
    Flags, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, TranslateError, VirtAddr,
};

const GIB: u64 = 1 << 30;

#[test]
fn huge_page_split_and_reclaim_are_seen_through_the_cache() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    let va = VirtAddr::new(GIB);
    unsafe { pt.map(va, PhyAddr::new(0x4000_0000), PageSize::Size2M, Flags::RW) }
        .unwrap()
        .flush();
    // Served from the cached table of 2 MiB entries.
    for off in [0u64, 0x1000, 0x1f_f000] {
        let t = pt.translate(VirtAddr::new(GIB + off)).unwrap();
        assert_eq!(
            (t.size, t.pa.as_u64()),
            (PageSize::Size2M, 0x4000_0000 + off)
        );
    }
    // Split by unmapping one 4 KiB page: the cached table now holds a table entry there.
    let mut g = pt.gather();
    unsafe { pt.unmap_range(VirtAddr::new(GIB + 0x1000), 0x1000, &mut g, |_| {}) }.unwrap();
    pt.finish(g).unwrap();
    assert_eq!(
        pt.translate(VirtAddr::new(GIB + 0x1000)),
        Err(TranslateError::NotMapped)
    );
    let t = pt.translate(VirtAddr::new(GIB + 0x2000)).unwrap();
    assert_eq!((t.size, t.pa.as_u64()), (PageSize::Size4K, 0x4000_2000));
    // Reclaim: the whole 1 GiB goes, with its tables; a new mapping there builds new ones.
    let mut g = pt.gather();
    unsafe { pt.drop_range(VirtAddr::new(GIB), GIB, &mut g) }.unwrap();
    pt.finish(g).unwrap();
    assert_eq!(mem.frames_in_use(), 1); // the root alone
    assert_eq!(
        pt.translate(VirtAddr::new(GIB + 0x2000)),
        Err(TranslateError::NotMapped)
    );
    let mut g = pt.gather();
    let small = RangeOptions {
        max_page: PageSize::Size4K,
    };
    unsafe {
        pt.map_range(
            VirtAddr::new(GIB),
            PhyAddr::new(0),
            0x2000,
            Flags::RO,
            small,
            &mut g,
        )
    }
    .unwrap();
    pt.finish(g).unwrap();
    assert_eq!(
        pt.translate(VirtAddr::new(GIB + 0x1000)).unwrap().pa,
        PhyAddr::new(0x1000)
    );
}

#[test]
fn walks_from_cached_tables_match_walks_from_the_root() {
    let mem = EmuMemory::new(256);
    let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    // 4 KiB and 2 MiB pages in several GiB, visited in an order that starts walks at every
    // depth of the cache.
    let pages: Vec<(u64, PageSize)> = (0..4u64)
        .flat_map(|g| {
            [
                (g * GIB + 0x1000, PageSize::Size4K),
                (g * GIB + 0x40_0000, PageSize::Size2M),
                (g * GIB + 0x20_3000, PageSize::Size4K),
            ]
        })
        .collect();
    for &(va, size) in &pages {
        unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(va), size, Flags::RW) }
            .unwrap()
            .flush();
    }
    for round in 0..3 {
        for (k, &(va, size)) in pages.iter().enumerate() {
            let (va, size) = if round == 1 {
                pages[pages.len() - 1 - k]
            } else {
                (va, size)
            };
            let t = pt.translate(VirtAddr::new(va + 0x10)).unwrap();
            assert_eq!((t.pa.as_u64(), t.size), (va + 0x10, size), "{va:#x}");
            pt.forget_cached_walks();
            let cold = pt.translate(VirtAddr::new(va + 0x10)).unwrap();
            assert_eq!(t, cold);
        }
    }
    // Every page unmapped through the cache, each size checked.
    for &(va, size) in &pages {
        let wrong = if size == PageSize::Size4K {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        assert!(unsafe { pt.unmap(VirtAddr::new(va), wrong) }.is_err());
        let (gone, f) = unsafe { pt.unmap(VirtAddr::new(va), size) }.unwrap();
        f.flush();
        assert_eq!(gone.frame, PhyAddr::new(va));
    }
}

/// Loops met by walks that start at a cached table (the fast path): a table entry leading back
/// to a table on the path is refused, by translate and by map, whichever cached table the walk
/// starts at; nothing is written through it.
#[test]
fn loops_are_refused_from_cached_tables() {
    use awk_paging::arch::{table_index, Arch, Entry};
    use awk_paging::{Attrs, MapError};
    let arch = EmuArch::default();
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(arch, &mem, &mem, NoTlb).unwrap();
    let good = VirtAddr::new(GIB + 0x1000);
    unsafe { pt.map(good, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    // The path to `good`: root (level 3), then the tables at levels 2 and 1.
    let next = |table: PhyAddr, level: u8| {
        let raw = mem
            .read_u64(PhyAddr::new(
                table.as_u64() + 8 * table_index(good, level) as u64,
            ))
            .unwrap();
        match arch.decode(raw, level) {
            Entry::Table(t) => t,
            e => panic!("{e:?}"),
        }
    };
    let l2 = next(pt.root(), 3);
    let l1 = next(l2, 2);
    let link = |table: PhyAddr, index: u64, to: PhyAddr| {
        assert!(mem.write_u64(
            PhyAddr::new(table.as_u64() + 8 * index),
            arch.table_entry(to, Attrs::from(Flags::RW))
        ));
    };
    // Level-1 entry 100 → its own parent (level 2); level-2 entry 7 → the root. Index 0x1ff
    // below each (where a walk that entered the loop would read next) is invalid in both.
    link(l1, 100, l2);
    link(l2, 7, pt.root());
    let via_l1 = VirtAddr::new(GIB + 100 * 0x20_0000 + 0x1ff * 0x1000);
    let via_l2 = VirtAddr::new(7 * GIB + 0x1ff * 0x20_0000 + 0x1ff * 0x1000);
    let before = |t: PhyAddr| mem.read_u64(PhyAddr::new(t.as_u64() + 8 * 0x1ff)).unwrap();
    let (l2_before, root_before) = (before(l2), before(pt.root()));
    for probe in [via_l1, via_l2] {
        for warm in [good, VirtAddr::new(GIB + 0x20_0000)] {
            // Warm the cache (leaf table, or table of 2 MiB entries, of `good`'s GiB).
            let _ = pt.translate(warm);
            assert_eq!(
                pt.translate(probe),
                Err(TranslateError::InvalidPageTable),
                "{probe:?}"
            );
            let _ = pt.translate(warm);
            let err = unsafe { pt.map(probe, PhyAddr::new(0), PageSize::Size4K, Flags::RO) };
            assert_eq!(err.unwrap_err(), MapError::RecursiveTable, "{probe:?}");
            let _ = pt.translate(warm);
            let err = unsafe { pt.unmap(probe, PageSize::Size4K) };
            assert!(err.is_err(), "{probe:?}");
        }
    }
    assert_eq!((before(l2), before(pt.root())), (l2_before, root_before));
    assert_eq!(pt.translate(good).unwrap().pa, PhyAddr::new(0x9000));
}
