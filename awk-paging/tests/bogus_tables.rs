//! The editing operations (`unsafe fn`s) on corrupt tables written with safe code: entries
//! outside the arena and recursive slots give precise errors, change nothing, leak nothing, and
//! `destroy` frees every real table exactly once. Also `from_root` + `destroy` accounting.

use awk_paging::arch::{table_index, Arch, Entry};
use awk_paging::emu::{EmuArch, EmuMemory};
use awk_paging::{
    Attrs, CountingFrames, Flags, MapError, NoTlb, PageSize, PageTable, PhyAddr, ProtectError,
    UnmapError, VirtAddr,
};

const ARCH: EmuArch = EmuArch { without: None };
const OUTSIDE: PhyAddr = PhyAddr::new(0xdead_b000);

fn entry(table: PhyAddr, index: usize) -> PhyAddr {
    PhyAddr::new(table.as_u64() + 8 * index as u64)
}

fn next(mem: &EmuMemory, table: PhyAddr, va: VirtAddr, level: u8) -> PhyAddr {
    match ARCH.decode(
        mem.read_u64(entry(table, table_index(va, level))).unwrap(),
        level,
    ) {
        Entry::Table(t) => t,
        e => panic!("{e:?}"),
    }
}

/// Every edit in a range behind an entry pointing outside the arena fails with
/// `InvalidPageTable`, allocates nothing; destroy frees only the real tables.
#[test]
fn edits_behind_entries_outside_the_arena() {
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let good = VirtAddr::new(0x4000_0000);
    unsafe { pt.map(good, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let bogus = ARCH.table_entry(OUTSIDE, Attrs::from(Flags::RW));
    assert!(mem.write_u64(entry(pt.root(), 5), bogus));
    let l2 = next(&mem, pt.root(), good, 3);
    assert!(mem.write_u64(entry(l2, 7), bogus));
    let tables = mem.frames_in_use();
    for v in [
        VirtAddr::new(5 << 39),
        VirtAddr::new((5 << 39) + 0x20_0000),
        VirtAddr::new(7 << 30),
    ] {
        let m = unsafe { pt.map(v, PhyAddr::new(0x9000_0000), PageSize::Size4K, Flags::RW) }
            .map(|f| f.flush());
        assert_eq!(m, Err(MapError::InvalidPageTable), "map {v:?}");
        let m2 = unsafe { pt.map(v, PhyAddr::new(0x9000_0000), PageSize::Size2M, Flags::RW) }
            .map(|f| f.flush());
        assert_eq!(m2, Err(MapError::InvalidPageTable), "map 2M {v:?}");
        assert_eq!(
            unsafe { pt.unmap(v, PageSize::Size4K) }.map(|(u, f)| {
                f.flush();
                u
            }),
            Err(UnmapError::InvalidPageTable),
            "unmap {v:?}"
        );
        assert_eq!(
            unsafe { pt.update_flags(v, PageSize::Size4K, Flags::RO) }.map(|f| f.flush()),
            Err(ProtectError::InvalidPageTable),
            "update {v:?}"
        );
        assert_eq!(mem.frames_in_use(), tables, "allocated for {v:?}");
    }
    assert!(pt.translate(good).is_ok());
    let frees = mem.frees();
    unsafe { pt.destroy() };
    assert_eq!(
        mem.bad_frees(),
        0,
        "destroy freed a frame outside the arena"
    );
    assert_eq!(mem.frees() - frees, 4, "root and the three real tables");
    assert_eq!(mem.frames_in_use(), 0);
}

/// A recursive root slot: edits through it are refused with `RecursiveTable`; destroy frees
/// each table exactly once.
#[test]
fn edits_through_a_recursive_slot() {
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let good = VirtAddr::new(0x4000_0000);
    unsafe { pt.map(good, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    assert!(mem.write_u64(
        entry(pt.root(), 510),
        ARCH.table_entry(pt.root(), Attrs::from(Flags::RW))
    ));
    let slot = 0xffff_ff00_0000_0000u64;
    let tables = mem.frames_in_use();
    for v in [slot, slot + good.as_u64(), slot + (510 << 30)] {
        let v = VirtAddr::new(v);
        let m = unsafe { pt.map(v, PhyAddr::new(0x9000_0000), PageSize::Size4K, Flags::RW) }
            .map(|f| f.flush());
        assert_eq!(m, Err(MapError::RecursiveTable), "map {v:?}");
        assert_eq!(
            unsafe { pt.unmap(v, PageSize::Size4K) }.map(|(u, f)| {
                f.flush();
                u
            }),
            Err(UnmapError::RecursiveTable),
            "unmap {v:?}"
        );
        assert_eq!(
            unsafe { pt.update_flags(v, PageSize::Size4K, Flags::RO) }.map(|f| f.flush()),
            Err(ProtectError::RecursiveTable),
            "update {v:?}"
        );
        assert_eq!(mem.frames_in_use(), tables);
    }
    let frees = mem.frees();
    unsafe { pt.destroy() };
    assert_eq!((mem.frees() - frees, mem.bad_frees()), (4, 0));
    assert_eq!(mem.frames_in_use(), 0);
}

/// Tables built elsewhere, taken over with `from_root` and a counting allocator that never
/// handed them out: destroy returns each once, `outstanding` saturates at 0.
#[test]
fn from_root_then_destroy_with_counting_frames() {
    let mem = EmuMemory::new(16);
    // Built, then abandoned without destroy: the tables stay, owned by nobody.
    let mut built = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let root = built.root();
    for v in [0x4000_0000u64, 0x4000_1000, 0x8000_0000, 0x7f80_0000_0000] {
        unsafe {
            built.map(
                VirtAddr::new(v),
                PhyAddr::new(0x9000_0000),
                PageSize::Size4K,
                Flags::RO,
            )
        }
        .unwrap()
        .flush();
    }
    let tables = mem.frames_in_use();
    let frames = CountingFrames::new(&mem);
    let mut pt = unsafe { PageTable::from_root(ARCH, &mem, frames, NoTlb, root) };
    let mut n = 0;
    pt.for_each_mapping(|_| n += 1);
    assert_eq!(n, 4);
    unsafe {
        pt.map(
            VirtAddr::new(0x1000),
            PhyAddr::new(0x9000_0000),
            PageSize::Size4K,
            Flags::RO,
        )
    }
    .unwrap()
    .flush();
    let added = mem.frames_in_use() - tables;
    let frames = unsafe { pt.destroy() };
    assert_eq!(frames.allocated(), added);
    assert_eq!(frames.freed(), tables + added);
    assert_eq!(frames.outstanding(), 0, "saturates");
    assert_eq!((mem.frames_in_use(), mem.bad_frees()), (0, 0));
}
