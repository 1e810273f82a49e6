//! The TLB model itself: walk caches that outlive their tables unless invalidated with the
//! right operation, ASID tagging and global entries, and the counters tests rely on.

use awk_paging::arch::{table_index, Arch, Entry};
use awk_paging::emu::{CpuAccess, EmuArch, EmuMemory, EmuTlb};
use awk_paging::{Attrs, Flags, FrameAllocator, PageSize, PageTable, PhyAddr, Tlb, VirtAddr};

const ARCH: EmuArch = EmuArch { without: None };

/// The physical address of the entry at `level` on the walk to `va`.
fn entry_at(mem: &EmuMemory, root: PhyAddr, va: VirtAddr, level: u8) -> PhyAddr {
    let mut l = ARCH.levels() - 1;
    let mut table = root;
    loop {
        let at = PhyAddr::new(table.as_u64() + 8 * table_index(va, l) as u64);
        if l == level {
            return at;
        }
        match ARCH.decode(mem.read_u64(at).unwrap(), l) {
            Entry::Table(next) => (table, l) = (next, l - 1),
            e => panic!("no table at level {l}: {e:?}"),
        }
    }
}

fn map<T: Tlb + Clone>(
    pt: &mut PageTable<EmuArch, &EmuMemory, &EmuMemory, T>,
    va: u64,
    pa: u64,
    attrs: impl Into<Attrs>,
) {
    unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(pa), PageSize::Size4K, attrs) }
        .unwrap()
        .flush();
}

/// A leaf table unlinked by hand and reused for something else: after a leaf-only
/// invalidation (`tlbi vale1is`) the model still walks through the cached table and finds what
/// the frame holds now; after a walk-cache-inclusive one (`tlbi vae1is`, `invlpg`) it faults.
#[test]
fn unlinked_table_needs_a_walk_cache_invalidation() {
    for walk_flush in [false, true] {
        let mem = EmuMemory::new(16);
        let tlb = EmuTlb::new();
        let mut pt = PageTable::new(ARCH, &mem, &mem, &tlb).unwrap();
        let (v, w) = (VirtAddr::new(0x4000_0000), VirtAddr::new(0x4000_1000));
        map(&mut pt, v.as_u64(), 0x8000_0000, Flags::RW);
        assert_eq!(
            tlb.access_walk(&mem, &ARCH, pt.root(), v),
            CpuAccess::Mapped(PhyAddr::new(0x8000_0000))
        );
        let pde = entry_at(&mem, pt.root(), v, 1);
        let leaf_table = PhyAddr::new(entry_at(&mem, pt.root(), v, 0).as_u64() & !0xfff);
        assert_eq!(tlb.cached_table(v, 0), Some(leaf_table));
        // Unlink the leaf table and invalidate.
        assert!(mem.write_u64(pde, 0));
        if walk_flush {
            tlb.flush_page(v);
        } else {
            tlb.flush_leaf(v);
        }
        // The frame is reused: it now holds a "leaf" where `w` would be.
        assert!(mem.write_u64(
            PhyAddr::new(leaf_table.as_u64() + 8 * table_index(w, 0) as u64),
            ARCH.leaf_entry(PhyAddr::new(0x6660_0000), 0, Flags::RW.into()),
        ));
        let seen = tlb.access_walk(&mem, &ARCH, pt.root(), w);
        if walk_flush {
            assert_eq!(seen, CpuAccess::Fault, "after a walk-cache invalidation");
            assert_eq!(tlb.cached_table(v, 0), None);
        } else {
            assert_eq!(
                seen,
                CpuAccess::Mapped(PhyAddr::new(0x6660_0000)),
                "a leaf-only invalidation leaves the walk cache pointing at the old table"
            );
        }
    }
}

/// `destroy` must invalidate before its frames come back: a new table on the same CPU that
/// gets the frames (shifted, so levels do not line up) sees only its own mappings.
#[test]
fn destroyed_tables_leave_nothing_cached() {
    let mem = EmuMemory::new(32);
    let tlb = EmuTlb::new();
    let mut old = PageTable::new(ARCH, &mem, &mem, &tlb).unwrap();
    let (v, w) = (0x4000_0000u64, 0x4000_1000u64);
    map(&mut old, v, 0x8000_0000, Flags::RW);
    // Leaf of v and every walk step cached; w faults at the leaf, walks cached.
    assert!(matches!(
        tlb.access_walk(&mem, &ARCH, old.root(), VirtAddr::new(v)),
        CpuAccess::Mapped(_)
    ));
    assert_eq!(
        tlb.access_walk(&mem, &ARCH, old.root(), VirtAddr::new(w)),
        CpuAccess::Fault
    );
    assert!(tlb.cached_walks() >= 3);
    unsafe { old.destroy() };
    // Shift the free list by one frame, so reused frames change level.
    let spacer = mem.allocate_data_frame().unwrap();
    let mut new = PageTable::new(ARCH, &mem, &mem, &tlb).unwrap();
    map(&mut new, v, 0x9000_0000, Flags::RO);
    map(&mut new, w, 0x9000_1000, Flags::RO);
    for (va, pa) in [(v, 0x9000_0000u64), (w, 0x9000_1000)] {
        assert_eq!(
            tlb.access_walk(&mem, &ARCH, new.root(), VirtAddr::new(va)),
            CpuAccess::Mapped(PhyAddr::new(pa)),
            "{va:#x}"
        );
    }
    assert_eq!(tlb.cached_attrs(VirtAddr::new(v)).unwrap().flags, Flags::RO);
    assert_eq!(tlb.full_flushes(), 1, "destroy flushes everything once");
    let mut frames = unsafe { new.destroy() };
    unsafe { frames.deallocate_frame(spacer) };
    assert_eq!((mem.frames_in_use(), mem.bad_frees()), (0, 0));
}

/// Two address spaces with ASIDs 1 and 2 on one CPU: entries are tagged, a flush through one
/// space's hook leaves the other's entries, global entries match every ASID, survive an
/// ASID-scoped full flush and fall to a page flush or a full flush without ASID.
#[test]
fn asids_and_global_entries() {
    let mem = EmuMemory::new(32);
    let cpu = EmuTlb::with_asid(Some(1));
    let (hook_a, hook_b) = (cpu.for_asid(Some(1)), cpu.for_asid(Some(2)));
    let mut a = PageTable::new(ARCH, &mem, &mem, hook_a).unwrap();
    let mut b = PageTable::new(ARCH, &mem, &mem, hook_b).unwrap();
    let (v, g) = (VirtAddr::new(0x4000_0000), VirtAddr::new(0x7000_0000));
    let (fa, fb, fg) = (
        PhyAddr::new(0xa000_0000),
        PhyAddr::new(0xb000_0000),
        PhyAddr::new(0xc000_0000),
    );
    map(&mut a, v.as_u64(), fa.as_u64(), Flags::RW);
    map(&mut b, v.as_u64(), fb.as_u64(), Flags::RW);
    let global = Attrs {
        global: true,
        ..Attrs::from(Flags::RO)
    };
    map(&mut a, g.as_u64(), fg.as_u64(), global);

    cpu.set_current_asid(1);
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, a.root(), v),
        CpuAccess::Mapped(fa)
    );
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, a.root(), g),
        CpuAccess::Mapped(fg)
    );
    cpu.set_current_asid(2);
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, b.root(), v),
        CpuAccess::Mapped(fb),
        "ASID 2 does not see ASID 1's entry"
    );
    let hits = cpu.tlb_hits();
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, b.root(), g),
        CpuAccess::Mapped(fg),
        "a global entry matches every ASID (b does not map g at all)"
    );
    assert_eq!(cpu.tlb_hits(), hits + 1);

    // Unmap in a (ASID 1): b's entry survives.
    let (_, token) = unsafe { a.unmap(v, PageSize::Size4K) }.unwrap();
    token.flush();
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, b.root(), v),
        CpuAccess::Mapped(fb)
    );
    cpu.set_current_asid(1);
    assert_eq!(cpu.access_walk(&mem, &ARCH, a.root(), v), CpuAccess::Fault);

    // A full flush of ASID 2 keeps the global entry; a page flush of ASID 2 hits it.
    hook_b.flush_all();
    cpu.set_current_asid(2);
    assert_eq!(cpu.cached_attrs(v), None, "ASID 2's entries are gone");
    assert!(cpu.cached_attrs(g).is_some(), "global entry kept");
    hook_b.flush_page(g);
    assert!(
        cpu.cached_attrs(g).is_none(),
        "page flush hits global entries"
    );

    // Without ASID, a full flush drops everything.
    cpu.set_current_asid(1);
    assert!(matches!(
        cpu.access_walk(&mem, &ARCH, a.root(), g),
        CpuAccess::Mapped(_)
    ));
    cpu.for_asid(None).flush_all();
    assert_eq!((cpu.cached(), cpu.cached_walks()), (0, 0));
    assert_eq!(cpu.full_flushes(), 2);
    unsafe { a.destroy() };
    unsafe { b.destroy() };
}

/// Walk caches are per ASID too: ASID 2 walks from the root even where ASID 1 has cached
/// steps.
#[test]
fn walk_caches_are_tagged() {
    let mem = EmuMemory::new(16);
    let cpu = EmuTlb::new();
    let mut pt = PageTable::new(ARCH, &mem, &mem, &cpu).unwrap();
    let v = VirtAddr::new(0x4000_0000);
    map(&mut pt, v.as_u64(), 0x8000_0000, Flags::RW);
    let near = VirtAddr::new(0x4000_1000);
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, pt.root(), near),
        CpuAccess::Fault
    );
    assert_eq!(cpu.walk_cache_hits(), 0);
    assert!(cpu.access_walk(&mem, &ARCH, pt.root(), v) != CpuAccess::Fault);
    assert_eq!(
        cpu.walk_cache_hits(),
        1,
        "second walk starts at the cached leaf table"
    );
    cpu.set_current_asid(2);
    assert_eq!(cpu.cached_table(v, 0), None);
    assert!(cpu.access_walk(&mem, &ARCH, pt.root(), v) != CpuAccess::Fault);
    assert_eq!(cpu.walk_cache_hits(), 1, "no cached steps for ASID 2");
    assert_eq!(cpu.walks(), 3);
}

/// The counters: one per hook call, walks only on misses.
#[test]
fn counters() {
    let mem = EmuMemory::new(16);
    let tlb = EmuTlb::new();
    let mut pt = PageTable::new(ARCH, &mem, &mem, &tlb).unwrap();
    let v = VirtAddr::new(0x4000_0000);
    map(&mut pt, v.as_u64(), 0x8000_0000, Flags::RW);
    assert_eq!((tlb.order_barriers(), tlb.publishes()), (1, 1));
    for _ in 0..3 {
        assert!(tlb.access_walk(&mem, &ARCH, pt.root(), v) != CpuAccess::Fault);
    }
    assert_eq!((tlb.walks(), tlb.tlb_hits()), (1, 2));
    unsafe { pt.update_flags(v, PageSize::Size4K, Flags::RO) }
        .unwrap()
        .flush();
    // The emulator's format needs no break-before-make for a permission change.
    assert_eq!((tlb.leaf_flushes(), tlb.page_flushes()), (1, 0));
    let (_, t) = unsafe { pt.unmap(v, PageSize::Size4K) }.unwrap();
    t.flush();
    assert_eq!(tlb.leaf_flushes(), 2);
    // Memory-type change on the emulator's format: break-before-make, two leaf flushes.
    map(&mut pt, v.as_u64(), 0x8000_0000, Flags::RW);
    unsafe { pt.update_flags(v, PageSize::Size4K, Flags::DEVICE) }
        .unwrap()
        .flush();
    assert_eq!(tlb.leaf_flushes(), 4);
    unsafe { pt.destroy() };
    assert_eq!(
        (tlb.full_flushes(), tlb.page_flushes(), tlb.publishes()),
        (1, 0, 2)
    );
}
