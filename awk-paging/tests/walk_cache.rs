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
