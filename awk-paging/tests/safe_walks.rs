//! What safe code can do with the crate, compiled with `unsafe_code` forbidden: build tables
//! over the emulator's bounds-checked memory, write entries by hand (even bogus ones) and walk
//! them. Nothing here can reach memory outside the arena: a corrupt entry yields a precise
//! error or is skipped, never a dereference. (Editing operations are `unsafe fn`s; their
//! behaviour on the same tables is in `bogus_tables.rs`.) Runs under miri.
#![forbid(unsafe_code)]

use awk_paging::arch::{check_sign_extended, table_index, Arch};
use awk_paging::emu::{EmuArch, EmuMemory};
use awk_paging::{
    AddrError, Attrs, Flags, Mapping, NoTlb, PageSize, PageTable, PhyAddr, TranslateError, VirtAddr,
};

const ARCH: EmuArch = EmuArch { without: None };
/// Far outside any arena here (arenas start at 1 MiB and have a few frames).
const OUTSIDE: PhyAddr = PhyAddr::new(0xdead_b000);

type Table<'a> = PageTable<EmuArch, &'a EmuMemory, &'a EmuMemory, NoTlb>;

fn entry(table: PhyAddr, index: usize) -> PhyAddr {
    PhyAddr::new(table.as_u64() + 8 * index as u64)
}

/// Links a new zeroed table below entry `index` of `table` (by hand) and returns it.
fn link(mem: &EmuMemory, table: PhyAddr, index: usize) -> PhyAddr {
    let next = mem.allocate_data_frame().expect("frame");
    assert!(mem.write_u64(
        entry(table, index),
        ARCH.table_entry(next, Attrs::from(Flags::RW))
    ));
    next
}

/// Maps `va` (4 KiB) to `pa` by hand: tables built with `write_u64`, no `unsafe` needed.
fn map_by_hand(mem: &EmuMemory, root: PhyAddr, va: VirtAddr, pa: PhyAddr) {
    let mut table = root;
    for level in (1..4).rev() {
        let at = entry(table, table_index(va, level));
        table = match ARCH.decode(mem.read_u64(at).unwrap(), level) {
            awk_paging::arch::Entry::Table(t) => t,
            _ => link(mem, table, table_index(va, level)),
        };
    }
    assert!(mem.write_u64(
        entry(table, table_index(va, 0)),
        ARCH.leaf_entry(pa, 0, Attrs::from(Flags::RW))
    ));
}

fn mappings(pt: &Table<'_>) -> Vec<Mapping> {
    let mut seen = Vec::new();
    pt.for_each_mapping(|m| seen.push(m));
    seen
}

#[test]
fn new_table_over_emulated_memory() {
    let mem = EmuMemory::new(8);
    let pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    assert_eq!(mem.frames_in_use(), 1);
    assert_eq!(
        pt.translate(VirtAddr::new(0x1000)),
        Err(TranslateError::NotMapped)
    );
    assert!(mappings(&pt).is_empty());
    let mut text = String::new();
    awk_paging::dump::write(&pt, &mut text).unwrap();
    assert_eq!(text.lines().count(), 0, "{text}");
}

#[test]
fn tables_written_by_hand_are_walked() {
    let mem = EmuMemory::new(16);
    let pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let (va, pa) = (VirtAddr::new(0x4000_3000), PhyAddr::new(0x8000_0000));
    map_by_hand(&mem, pt.root(), va, pa);
    let t = pt.translate(VirtAddr::new(va.as_u64() + 0x12)).unwrap();
    assert_eq!(
        (t.pa, t.frame, t.size, t.attrs),
        (
            PhyAddr::new(pa.as_u64() + 0x12),
            pa,
            PageSize::Size4K,
            Attrs::from(Flags::RW)
        )
    );
    assert_eq!(
        mappings(&pt),
        [Mapping {
            page: va,
            frame: pa,
            size: PageSize::Size4K,
            attrs: Attrs::from(Flags::RW)
        }]
    );
}

/// Table entries pointing outside the arena, at every level: translate reports
/// `InvalidPageTable`, walks skip them and still report every real mapping.
#[test]
fn entries_pointing_outside_the_arena() {
    let mem = EmuMemory::new(16);
    let pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let good = VirtAddr::new(0x4000_0000);
    map_by_hand(&mem, pt.root(), good, PhyAddr::new(0x8000_0000));
    let bogus = ARCH.table_entry(OUTSIDE, Attrs::from(Flags::RW));
    // Root entry 5, and one entry of each lower table on the good path.
    assert!(mem.write_u64(entry(pt.root(), 5), bogus));
    let mut table = pt.root();
    let mut probes = vec![VirtAddr::new(5 << 39)];
    for level in (1..4).rev() {
        let next = match ARCH.decode(
            mem.read_u64(entry(table, table_index(good, level)))
                .unwrap(),
            level,
        ) {
            awk_paging::arch::Entry::Table(t) => t,
            e => panic!("{e:?}"),
        };
        if level > 1 {
            assert!(mem.write_u64(entry(next, 7), bogus));
            let shift = 12 + 9 * u32::from(level - 1);
            probes.push(VirtAddr::new(
                (good.as_u64() & !((1u64 << (shift + 9)) - 1)) | 7 << shift,
            ));
        }
        table = next;
    }
    for v in &probes {
        assert_eq!(
            pt.translate(*v),
            Err(TranslateError::InvalidPageTable),
            "{v:?}"
        );
    }
    assert_eq!(mappings(&pt).len(), 1, "only the real mapping");
    assert!(pt.translate(good).is_ok());
    // A leaf may point anywhere: data frames are never dereferenced.
    assert!(mem.write_u64(
        entry(table, 9),
        ARCH.leaf_entry(OUTSIDE, 0, Attrs::from(Flags::RO))
    ));
    assert_eq!(
        pt.translate(VirtAddr::new(good.as_u64() + 9 * 0x1000))
            .map(|t| t.frame),
        Ok(OUTSIDE)
    );
    let mut text = String::new();
    awk_paging::dump::write(&pt, &mut text).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

/// A recursive root slot (root entry 510 → the root): walks report no phantom mappings, and
/// translations through the slot are refused instead of treating tables as pages.
#[test]
fn recursive_root_slot() {
    let mem = EmuMemory::new(16);
    let pt = PageTable::new(ARCH, &mem, &mem, NoTlb).unwrap();
    let good = VirtAddr::new(0x4000_0000);
    map_by_hand(&mem, pt.root(), good, PhyAddr::new(0x8000_0000));
    assert!(mem.write_u64(
        entry(pt.root(), 510),
        ARCH.table_entry(pt.root(), Attrs::from(Flags::RW))
    ));
    let m = mappings(&pt);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].page, good);
    let slot = VirtAddr::new(0xffff_ff00_0000_0000); // root index 510
    assert_eq!(table_index(slot, 3), 510);
    for probe in [slot, VirtAddr::new(slot.as_u64() + good.as_u64())] {
        assert_eq!(
            pt.translate(probe),
            Err(TranslateError::InvalidPageTable),
            "{probe:?}"
        );
    }
    // A loop further down: a level-1 entry pointing back at its level-2 table.
    let l2 = match ARCH.decode(
        mem.read_u64(entry(pt.root(), table_index(good, 3)))
            .unwrap(),
        3,
    ) {
        awk_paging::arch::Entry::Table(t) => t,
        e => panic!("{e:?}"),
    };
    let l1 = match ARCH.decode(mem.read_u64(entry(l2, table_index(good, 2))).unwrap(), 2) {
        awk_paging::arch::Entry::Table(t) => t,
        e => panic!("{e:?}"),
    };
    assert!(mem.write_u64(entry(l1, 100), ARCH.table_entry(l2, Attrs::from(Flags::RW))));
    assert_eq!(mappings(&pt).len(), 1);
    let back = VirtAddr::new(good.as_u64() + 100 * 0x20_0000);
    assert_eq!(pt.translate(back), Err(TranslateError::InvalidPageTable));
}

/// The address helpers are total: out-of-range arguments are clamped, never a panic or an
/// overflowing shift.
#[test]
fn address_helpers_are_total() {
    let va = VirtAddr::new(0x0000_7fff_ffff_f000);
    assert_eq!(table_index(va, 7), table_index(va, 5));
    assert_eq!(table_index(va, u8::MAX), table_index(va, 5));
    assert_eq!(check_sign_extended(VirtAddr::new(0), 0), Ok(()));
    assert_eq!(check_sign_extended(VirtAddr::new(u64::MAX), 0), Ok(()));
    assert_eq!(
        check_sign_extended(VirtAddr::new(1), 0),
        Err(AddrError::NonCanonical)
    );
    assert_eq!(check_sign_extended(VirtAddr::new(0x1234), 65), Ok(()));
    assert_eq!(
        check_sign_extended(VirtAddr::new(0x8000_0000_0000_0000), u32::MAX),
        Ok(())
    );
}
