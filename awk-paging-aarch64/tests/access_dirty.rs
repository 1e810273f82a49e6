//! The Access flag and dirty state (Arm ARM D8.4, hardware management of the Access flag and
//! dirty state; FEAT_HAFDBS) in each [`Tracking`] mode: the encoding, the hooks the walker asks
//! (as truth tables written out by hand), and the whole flow through `UserSpace` on the host
//! emulator, with one thread playing the hardware's atomic descriptor updates.
//!
//! Every expected descriptor value below is spelled out from the Arm ARM bit positions, never
//! computed by the code under test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use awk_paging::arch::{table_index, Arch, Entry, Limits};
use awk_paging::emu::{CpuAccess, EmuMemory, EmuTlb};
use awk_paging::space::{Asids, ContextId, EditError, EmuMmu, KernelHalf, SpaceTlb, UserSpace};
use awk_paging::{
    Attrs, Flags, NoTlb, PageSize, PhyAddr, PhysMem, RangeOptions, TranslateError, VirtAddr,
};
use awk_paging_aarch64::features::Tracking;
use awk_paging_aarch64::{AArch64PageTable, A64};

// Descriptor bits (Arm ARM D8.3), by hand.
const PAGE: u64 = 0b11; // valid + page (level 3) / table
const BLOCK: u64 = 0b01; // valid + block
const AP_EL0: u64 = 1 << 6; // AP[1]
const AP_RO: u64 = 1 << 7; // AP[2]
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const DBM: u64 = 1 << 51;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const COW: u64 = 1 << 55;
const SW_DIRTY: u64 = 1 << 56;
const AP_TABLE_RO: u64 = 1 << 62;

const MODES: [Tracking; 4] = [
    Tracking::Off,
    Tracking::SoftwareAccess,
    Tracking::HardwareAccess,
    Tracking::HardwareAccessDirty,
];

fn regime(mode: Tracking) -> A64 {
    A64::default().with_tracking(mode)
}

fn user(flags: Flags) -> Attrs {
    Attrs {
        user: true,
        ..Attrs::from(flags)
    }
}

fn kernel(flags: Flags) -> Attrs {
    Attrs {
        global: true,
        ..Attrs::from(flags)
    }
}

const PA: u64 = 0x4000_0000;
/// A user read-write, non-executable 4 KiB page of write-back memory (AttrIndx 0), without
/// AP[2] / DBM (the part every mode shares).
const USER_RW_BASE: u64 = PA | PAGE | AF | SH_INNER | AP_EL0 | NG | PXN | UXN;
/// [`USER_RW_BASE`] writable-clean (DBM, AP[2] = 1).
const CLEAN: u64 = USER_RW_BASE | AP_RO | DBM;
/// [`USER_RW_BASE`] writable-dirty (DBM, AP[2] = 0).
const DIRTY: u64 = USER_RW_BASE | DBM;
/// [`USER_RW_BASE`] read-only (AP[2] = 1, no DBM).
const RO: u64 = USER_RW_BASE | AP_RO;

#[test]
fn encoding_per_mode() {
    let pa = PhyAddr::new(PA);
    for mode in MODES {
        let r = regime(mode);
        let hd = mode == Tracking::HardwareAccessDirty;
        let urw = r.leaf_entry(pa, 0, user(Flags::RW));
        let want = if hd {
            USER_RW_BASE | AP_RO | DBM // writable-clean
        } else {
            USER_RW_BASE
        };
        assert_eq!(urw, want, "{mode:?} user RW: {urw:#x}");
        let uro = r.leaf_entry(pa, 0, user(Flags::RO));
        assert_eq!(uro, USER_RW_BASE | AP_RO, "{mode:?} user RO: no DBM");
        let krw = r.leaf_entry(pa, 0, kernel(Flags::RW));
        let kbase = PA | PAGE | AF | SH_INNER | PXN | UXN;
        let want = if hd { kbase | DBM } else { kbase }; // writable-dirty: AP[2] = 0
        assert_eq!(krw, want, "{mode:?} kernel RW: {krw:#x}");
        let kro = r.leaf_entry(pa, 0, kernel(Flags::RO));
        assert_eq!(kro, kbase | AP_RO, "{mode:?} kernel RO");
        // A 2 MiB block: TYPE = 0, the same AP/DBM choice.
        let blk = r.leaf_entry(pa, 1, user(Flags::RW));
        let bbase = PA | BLOCK | AF | SH_INNER | AP_EL0 | NG | PXN | UXN;
        assert_eq!(
            blk,
            if hd { bbase | AP_RO | DBM } else { bbase },
            "{mode:?}"
        );
        // The template is the entry with the address ORed in.
        for level in 0..3u8 {
            for a in [user(Flags::RW), kernel(Flags::RW), user(Flags::RO)] {
                let t = r.leaf_template(level, a).unwrap();
                let at = PhyAddr::new(0x8000_0000);
                assert_eq!(t | 0x8000_0000, r.leaf_entry(at, level, a), "{mode:?}");
            }
        }
    }
}

#[test]
fn writable_by_dbm_only_with_hardware_dirty_state() {
    for mode in MODES {
        let r = regime(mode);
        let hd = mode == Tracking::HardwareAccessDirty;
        assert_eq!(r.leaf_attrs(CLEAN, 0).flags.write, hd, "{mode:?}");
        assert!(r.leaf_attrs(DIRTY, 0).flags.write, "{mode:?}");
        assert!(!r.leaf_attrs(RO, 0).flags.write, "{mode:?}");
        assert_eq!(
            r.effective_attrs(CLEAN, 0, Limits::NONE).flags.write,
            hd,
            "{mode:?}"
        );
        // APTable[1] still wins over DBM.
        let no_write = Limits {
            no_write: true,
            ..Limits::NONE
        };
        assert!(
            !r.effective_attrs(CLEAN, 0, no_write).flags.write,
            "{mode:?}"
        );
        // Pushing a no-write limit down onto a DBM leaf takes write permission away for good
        // and keeps a recorded write.
        let limited = r.limit_entry(DIRTY, 0, no_write);
        assert!(
            !r.leaf_attrs(limited, 0).flags.write,
            "{mode:?}: {limited:#x}"
        );
        if hd {
            assert_eq!(limited, USER_RW_BASE | AP_RO | SW_DIRTY, "{limited:#x}");
            assert_eq!(
                r.limit_entry(CLEAN, 0, no_write),
                USER_RW_BASE | AP_RO,
                "clean stays clean"
            );
        }
        // A table's APTable is unaffected by any of this.
        let table = 0x5000 | PAGE;
        assert_eq!(r.limit_entry(table, 1, no_write), table | AP_TABLE_RO);
    }
}

#[test]
fn access_flag_zero_decodes_as_a_mapping_unless_tracking_is_off() {
    for mode in MODES {
        let r = regime(mode);
        let want = |pa: u64| {
            if mode == Tracking::Off {
                Entry::Invalid
            } else {
                Entry::Leaf(PhyAddr::new(pa))
            }
        };
        assert_eq!(r.decode(PA | PAGE, 0), want(PA), "{mode:?} page");
        assert_eq!(r.decode(PA | BLOCK, 1), want(PA), "{mode:?} 2 MiB block");
        assert_eq!(r.decode(PA | BLOCK, 2), want(PA), "{mode:?} 1 GiB block");
        // Still invalid whatever the mode: block at level 0 / 3, not valid, too wide.
        assert_eq!(r.decode(PA | BLOCK, 0), Entry::Invalid, "{mode:?}");
        assert_eq!(r.decode(PA | BLOCK, 3), Entry::Invalid, "{mode:?}");
        assert_eq!(r.decode(PA | 0b10, 0), Entry::Invalid, "{mode:?}");
        let narrow = r.with_pa_bits(32);
        assert_eq!(narrow.decode(PA | (1 << 40) | PAGE, 0), Entry::Invalid);
        // A table entry is a table (AF means nothing there).
        assert_eq!(r.decode(PA | PAGE, 1), Entry::Table(PhyAddr::new(PA)));
    }
}

#[test]
fn accessed_dirty_truth_table() {
    // (raw, HardwareAccessDirty answer)
    let cases = [
        (USER_RW_BASE | AP_RO | DBM, (true, false)), // writable-clean
        (USER_RW_BASE | DBM, (true, true)),          // writable-dirty
        ((USER_RW_BASE | DBM) & !AF, (false, true)), // dirty, aged
        ((USER_RW_BASE | AP_RO | DBM) & !AF, (false, false)), // clean, aged
        (USER_RW_BASE | AP_RO, (true, false)),       // read-only, clean
        (USER_RW_BASE | AP_RO | SW_DIRTY, (true, true)), // read-only, written before
        (USER_RW_BASE, (true, true)),                // writable without DBM
        (USER_RW_BASE | AP_RO | COW, (true, false)), // the COW bit is not dirt
    ];
    for (raw, hd) in cases {
        for mode in MODES {
            let got = regime(mode).accessed_dirty(raw, 0);
            let want = if mode == Tracking::HardwareAccessDirty {
                hd
            } else {
                (raw & AF != 0, true) // no dirty record
            };
            assert_eq!(got, want, "{mode:?} {raw:#x}");
        }
    }
}

#[test]
fn clear_accessed_dirty_truth_table() {
    for raw in [CLEAN, DIRTY, USER_RW_BASE, USER_RW_BASE | AP_RO | SW_DIRTY] {
        for (a, d) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                regime(Tracking::Off).clear_accessed_dirty(raw, 0, a, d),
                None,
                "Off keeps no record"
            );
        }
    }
    let hd = regime(Tracking::HardwareAccessDirty);
    let cases = [
        // (raw, accessed, dirty, HD result)
        (DIRTY, true, true, (USER_RW_BASE | DBM | AP_RO) & !AF),
        (DIRTY, false, true, USER_RW_BASE | DBM | AP_RO),
        (DIRTY, true, false, (USER_RW_BASE | DBM) & !AF),
        (DIRTY, false, false, DIRTY),
        (CLEAN, true, true, CLEAN & !AF),
        (
            USER_RW_BASE | AP_RO | SW_DIRTY,
            false,
            true,
            USER_RW_BASE | AP_RO,
        ),
        (
            USER_RW_BASE | AP_RO | SW_DIRTY | COW,
            true,
            true,
            (USER_RW_BASE | AP_RO | COW) & !AF,
        ),
        // Writable without DBM: cannot be made clean (AP[2] stays 0).
        (USER_RW_BASE, false, true, USER_RW_BASE),
    ];
    for (raw, a, d, want) in cases {
        assert_eq!(
            hd.clear_accessed_dirty(raw, 0, a, d),
            Some(want),
            "HD {raw:#x} {a} {d}"
        );
    }
    // Access only: AF cleared on request, AP and the software bits never touched.
    for mode in [Tracking::SoftwareAccess, Tracking::HardwareAccess] {
        let r = regime(mode);
        assert_eq!(
            r.clear_accessed_dirty(DIRTY, 0, true, true),
            Some((USER_RW_BASE | DBM) & !AF),
            "{mode:?}"
        );
        assert_eq!(
            r.clear_accessed_dirty(USER_RW_BASE | AP_RO | SW_DIRTY, 0, false, true),
            Some(USER_RW_BASE | AP_RO | SW_DIRTY),
            "{mode:?}"
        );
        assert_eq!(
            r.clear_accessed_dirty(USER_RW_BASE, 0, true, false),
            Some(USER_RW_BASE & !AF),
            "{mode:?}"
        );
    }
}

#[test]
fn keep_hardware_bits_truth_table() {
    let aged = |x: u64| x & !AF;
    // Off: `new` as it is, whatever `old` says.
    for old in [aged(DIRTY), DIRTY, RO | SW_DIRTY] {
        for new in [CLEAN, RO] {
            assert_eq!(regime(Tracking::Off).keep_hardware_bits(old, new), new);
        }
    }
    // Access only: AF = 0 carried; no dirty state to carry.
    for mode in [Tracking::SoftwareAccess, Tracking::HardwareAccess] {
        let r = regime(mode);
        assert_eq!(r.keep_hardware_bits(aged(RO), RO), aged(RO), "{mode:?}");
        assert_eq!(
            r.keep_hardware_bits(RO, USER_RW_BASE),
            USER_RW_BASE,
            "{mode:?}"
        );
        assert_eq!(r.keep_hardware_bits(DIRTY, RO), RO, "{mode:?}");
    }
    let hd = regime(Tracking::HardwareAccessDirty);
    let cases = [
        // (old, new, kept)
        (DIRTY, CLEAN, DIRTY),      // writable → writable: stays dirty
        (DIRTY, RO, RO | SW_DIRTY), // loses write: dirt in SW_DIRTY
        (CLEAN, RO, RO),            // clean stays clean
        (CLEAN, CLEAN, CLEAN),
        (RO | SW_DIRTY, CLEAN, DIRTY), // regains write: writable-dirty
        (RO | SW_DIRTY, RO, RO | SW_DIRTY),
        (RO, CLEAN, CLEAN),
        (aged(CLEAN), RO, aged(RO)), // aged stays aged
        (aged(DIRTY), RO, aged(RO) | SW_DIRTY),
        (USER_RW_BASE, RO, RO | SW_DIRTY), // writable without DBM counts as dirty
        (DIRTY, RO | COW, RO | COW | SW_DIRTY), // fork: COW mark and the dirt
    ];
    for (old, new, want) in cases {
        assert_eq!(
            hd.keep_hardware_bits(old, new),
            want,
            "HD old {old:#x} new {new:#x}"
        );
    }
}

#[test]
fn hardware_may_write_truth_table() {
    let block_clean = PA | BLOCK | AF | SH_INNER | AP_EL0 | AP_RO | DBM;
    // (raw, level, HardwareAccess, HardwareAccessDirty)
    let cases = [
        (CLEAN, 0, false, true),   // HD clears AP[2] on the first write
        (DIRTY, 0, false, false),  // settled
        (RO, 0, false, false),     // settled
        (RO & !AF, 0, true, true), // the walk sets AF
        (DIRTY & !AF, 0, true, true),
        (block_clean, 1, false, true),
        (block_clean & !AF, 1, true, true),
        (0x5000 | PAGE, 1, false, false), // a table entry (AF = 0 there means nothing)
        (0, 0, false, false),             // invalid
        ((CLEAN & !AF) & !1, 0, false, false), // not valid
        (CLEAN | BLOCK, 3, false, false), // reserved block at Arm level 0
    ];
    for (raw, level, ha, hd) in cases {
        for mode in MODES {
            let want = match mode {
                Tracking::Off | Tracking::SoftwareAccess => false,
                Tracking::HardwareAccess => ha,
                Tracking::HardwareAccessDirty => hd,
            };
            assert_eq!(
                regime(mode).hardware_may_write(raw, level),
                want,
                "{mode:?} {raw:#x} at {level}"
            );
        }
    }
    for mode in MODES {
        let r = regime(mode);
        let hw = matches!(
            mode,
            Tracking::HardwareAccess | Tracking::HardwareAccessDirty
        );
        assert_eq!(r.hardware_updates_entries(), hw, "{mode:?}");
    }
}

#[test]
fn set_accessed_and_break_before_make() {
    for mode in MODES {
        let r = regime(mode);
        let got = r.set_accessed(ro_aged(), 0);
        if mode == Tracking::Off {
            assert_eq!(got, None);
        } else {
            assert_eq!(got, Some(USER_RW_BASE | AP_RO), "{mode:?}");
        }
        // AF, DBM, AP and the software bits change in place.
        for flip in [
            AF,
            DBM,
            AP_RO,
            AP_EL0,
            SW_DIRTY,
            COW,
            DBM | AP_RO | SW_DIRTY,
        ] {
            let old = USER_RW_BASE | DBM;
            assert!(
                !r.needs_break_before_make(old, old ^ flip, 0),
                "{mode:?} flip {flip:#x}"
            );
        }
    }
}

fn ro_aged() -> u64 {
    RO & !AF
}

/// The physical address of the leaf entry for `va` at `level` under `root` (48-bit VA).
fn entry_at(mem: &EmuMemory, root: PhyAddr, va: VirtAddr, level: u8) -> PhyAddr {
    let mut table = root;
    for l in (level..4u8).rev() {
        let at = PhyAddr::new(table.as_u64() + 8 * table_index(va, l) as u64);
        if l == level {
            return at;
        }
        let raw = mem.read_u64(at).unwrap();
        assert_eq!(raw & 0b11, PAGE, "level {l}: {raw:#x} is no table");
        table = PhyAddr::new(raw & 0x0000_ffff_ffff_f000);
    }
    unreachable!()
}

/// Harvesting in the dirty-tracking mode: the hardware's write (AP[2] cleared) is reported,
/// the page is made writable-clean again, and the token drops the cached writable-dirty
/// translation (which would let writes through without touching the descriptor).
#[test]
fn harvest_dirty_through_user_space() {
    let arch = regime(Tracking::HardwareAccessDirty);
    let mem = EmuMemory::new(256);
    let cpu = EmuTlb::new();
    let id = ContextId::new();
    let mut u =
        UserSpace::new(arch, &mem, &mem, SpaceTlb::new(&cpu, &id), KernelHalf::NONE).unwrap();
    let va = VirtAddr::new(0x40_0000);
    let frame = mem.allocate_data_frame().unwrap();
    unsafe { u.map(va, frame, PageSize::Size4K, user(Flags::RW)) }
        .unwrap()
        .flush();
    let at = entry_at(&mem, u.root(), va, 0);
    let fresh = frame.as_u64() | PAGE | AF | SH_INNER | AP_EL0 | NG | PXN | UXN | AP_RO | DBM;
    assert_eq!(mem.read_u64(at), Some(fresh), "created writable-clean");
    assert!(u.translate(va).unwrap().attrs.flags.write);

    let mut asids = Asids::<1>::new(256).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { u.activate(&mut asids, 0, &id, &mmu) }.unwrap();
    assert_eq!(
        cpu.access_walk(&mem, &arch, mmu.root(), va),
        CpuAccess::Mapped(frame)
    );
    // The CPU's first write: AP[2] cleared by the hardware (done by hand here).
    mem.write_u64(at, fresh & !AP_RO);

    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, false, true)
        .unwrap();
    assert!(got.accessed && got.dirty, "{got:?}");
    assert_eq!(
        mem.read_u64(at),
        Some(fresh),
        "writable-clean again, AF kept"
    );
    assert!(cpu.cached_attrs(va).is_some());
    flush.flush();
    assert!(cpu.cached_attrs(va).is_none(), "the cached entry is gone");

    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, true, true)
        .unwrap();
    flush.flush();
    assert!(got.accessed && !got.dirty, "{got:?}");
    assert_eq!(mem.read_u64(at), Some(fresh & !AF));
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, true, true)
        .unwrap();
    flush.ignore();
    assert!(!got.accessed && !got.dirty, "{got:?}");
    assert_eq!(u.translate(va).unwrap().frame, frame, "still mapped");

    // Dirty again, then write-protected: the dirt survives in SW_DIRTY (the aged AF too).
    mem.write_u64(at, fresh & !AP_RO & !AF);
    let mut g = u.gather();
    unsafe { u.protect_range(va, 0x1000, user(Flags::RO), &mut g) }.unwrap();
    u.finish(g).unwrap();
    let ro = frame.as_u64() | PAGE | SH_INNER | AP_EL0 | NG | PXN | UXN | AP_RO;
    assert_eq!(
        mem.read_u64(at),
        Some(ro | SW_DIRTY),
        "read-only, dirty kept"
    );
    assert!(!u.translate(va).unwrap().attrs.flags.write);
    // Writable again: writable-dirty (the hardware has nothing to record).
    let mut g = u.gather();
    unsafe { u.protect_range(va, 0x1000, user(Flags::RW), &mut g) }.unwrap();
    u.finish(g).unwrap();
    assert_eq!(mem.read_u64(at), Some((ro & !AP_RO) | DBM));
    // Read-only again, then harvested: reported dirty once, SW_DIRTY gone.
    let mut g = u.gather();
    unsafe { u.protect_range(va, 0x1000, user(Flags::RO), &mut g) }.unwrap();
    u.finish(g).unwrap();
    assert_eq!(mem.read_u64(at), Some(ro | SW_DIRTY));
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, false, true)
        .unwrap();
    flush.flush();
    assert!(!got.accessed && got.dirty, "{got:?}");
    assert_eq!(mem.read_u64(at), Some(ro));
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, false, true)
        .unwrap();
    flush.flush();
    assert!(!got.dirty, "{got:?}");

    // Unmap reports the record too.
    mem.write_u64(at, ro | SW_DIRTY | AF);
    let (gone, flush) = unsafe { u.unmap(va, PageSize::Size4K) }.unwrap();
    flush.flush();
    assert!(gone.accessed && gone.dirty, "{gone:?}");
    let _ = unsafe { u.destroy() };
}

/// The single-page path (`PageTable::update_flags`) keeps the dirt as the range path does.
#[test]
fn update_flags_keeps_dirty_state() {
    let arch = regime(Tracking::HardwareAccessDirty);
    let mem = EmuMemory::new(64);
    let mut pt = AArch64PageTable::new(arch, &mem, &mem, NoTlb).unwrap();
    let va = VirtAddr::new(0x20_0000);
    let frame = mem.allocate_data_frame().unwrap();
    unsafe { pt.map(va, frame, PageSize::Size4K, user(Flags::RW)) }
        .unwrap()
        .flush();
    let at = entry_at(&mem, pt.root(), va, 0);
    let base = frame.as_u64() | PAGE | AF | SH_INNER | AP_EL0 | NG | PXN | UXN;
    assert_eq!(mem.read_u64(at), Some(base | AP_RO | DBM));
    mem.write_u64(at, base | DBM); // the hardware's write
    unsafe { pt.update_flags(va, PageSize::Size4K, user(Flags::RO)) }
        .unwrap()
        .flush();
    assert_eq!(mem.read_u64(at), Some(base | AP_RO | SW_DIRTY));
    unsafe { pt.update_flags(va, PageSize::Size4K, user(Flags::RW)) }
        .unwrap()
        .flush();
    assert_eq!(mem.read_u64(at), Some(base | DBM), "writable-dirty");
}

/// Software Access flag: an aged page is still a mapping; the fault helper sets AF once.
#[test]
fn software_access_flag_through_user_space() {
    let arch = regime(Tracking::SoftwareAccess);
    let mem = EmuMemory::new(256);
    let mut u = UserSpace::new(arch, &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    let va = VirtAddr::new(0x40_0000);
    let frame = mem.allocate_data_frame().unwrap();
    unsafe { u.map(va, frame, PageSize::Size4K, user(Flags::RW)) }
        .unwrap()
        .flush();
    let at = entry_at(&mem, u.root(), va, 0);
    let fresh = frame.as_u64() | PAGE | AF | SH_INNER | AP_EL0 | NG | PXN | UXN;
    assert_eq!(mem.read_u64(at), Some(fresh), "no DBM without HD");
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, true, true)
        .unwrap();
    flush.flush();
    assert!(got.accessed && got.dirty, "{got:?}");
    assert_eq!(mem.read_u64(at), Some(fresh & !AF), "aged: AF = 0");
    let t = u.translate(va).unwrap();
    assert_eq!(
        (t.frame, t.size),
        (frame, PageSize::Size4K),
        "still a mapping"
    );
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, true, false)
        .unwrap();
    flush.flush();
    assert!(!got.accessed && got.dirty, "no dirty record: {got:?}");

    assert_eq!(u.set_accessed(VirtAddr::new(0x40_0abc)), Ok(true));
    assert_eq!(mem.read_u64(at), Some(fresh));
    assert_eq!(u.set_accessed(va), Ok(false), "already set");
    assert_eq!(
        u.set_accessed(VirtAddr::new(0x80_0000)),
        Err(EditError::Op(TranslateError::NotMapped))
    );

    // A 2 MiB page: found whatever its size.
    let huge = VirtAddr::new(0x4000_0000);
    let mut g = u.gather();
    unsafe {
        u.map_range(
            huge,
            PhyAddr::new(0x8000_0000),
            0x20_0000,
            user(Flags::RO),
            RangeOptions::default(),
            &mut g,
        )
    }
    .unwrap();
    u.finish(g).unwrap();
    let hat = entry_at(&mem, u.root(), huge, 1);
    let hraw = mem.read_u64(hat).unwrap();
    assert_eq!(hraw & 0b11, BLOCK, "{hraw:#x}");
    mem.write_u64(hat, hraw & !AF);
    assert_eq!(u.translate(huge).unwrap().size, PageSize::Size2M);
    assert_eq!(u.set_accessed(VirtAddr::new(0x4012_3456)), Ok(true));
    assert_eq!(mem.read_u64(hat), Some(hraw));

    // An aged page is unmapped like any other, reporting the record.
    mem.write_u64(at, fresh & !AF);
    let (gone, flush) = unsafe { u.unmap(va, PageSize::Size4K) }.unwrap();
    flush.flush();
    assert_eq!(
        (gone.frame, gone.accessed, gone.dirty),
        (frame, false, true)
    );
    assert_eq!(mem.read_u64(at), Some(0));
    let _ = unsafe { u.destroy() };
}

/// With tracking off an AF = 0 leaf is no mapping, and there is no fault to resolve.
#[test]
fn tracking_off_keeps_todays_behaviour() {
    let mem = EmuMemory::new(64);
    let mut u = UserSpace::new(A64::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    let va = VirtAddr::new(0x40_0000);
    let frame = mem.allocate_data_frame().unwrap();
    unsafe { u.map(va, frame, PageSize::Size4K, user(Flags::RW)) }
        .unwrap()
        .flush();
    assert_eq!(u.set_accessed(va), Ok(false), "AF already set; no record");
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, true, true)
        .unwrap();
    flush.flush();
    assert!(got.accessed && got.dirty);
    let at = entry_at(&mem, u.root(), va, 0);
    let raw = mem.read_u64(at).unwrap();
    assert_eq!(raw & (AF | DBM | AP_RO), AF, "nothing cleared: {raw:#x}");
    mem.write_u64(at, raw & !AF);
    assert_eq!(u.translate(va).unwrap_err(), TranslateError::NotMapped);
    assert_eq!(
        u.set_accessed(va),
        Err(EditError::Op(TranslateError::NotMapped))
    );
}

/// One thread plays the hardware (FEAT_HAFDBS with HA and HD): on "accesses" it sets AF, on
/// "writes" it clears AP[2] of the DBM leaf, each with an atomic update of the descriptor as
/// the Arm ARM requires of the hardware. The main thread harvests meanwhile. Every transition
/// the hardware made (AF 0 → 1, AP[2] 1 → 0) must be reported by exactly one harvest: none is
/// lost between a harvest's read and its write.
#[test]
fn concurrent_hardware_updates_are_never_lost() {
    const HARVESTS: usize = 4000;
    let arch = regime(Tracking::HardwareAccessDirty);
    let mem = EmuMemory::new(64);
    let mut u = UserSpace::new(arch, &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    let va = VirtAddr::new(0x40_0000);
    let frame = mem.allocate_data_frame().unwrap();
    unsafe { u.map(va, frame, PageSize::Size4K, user(Flags::RW)) }
        .unwrap()
        .flush();
    let at = entry_at(&mem, u.root(), va, 0);
    let table = PhyAddr::new(at.as_u64() & !0xfff);
    let word = unsafe {
        mem.frame_ptr(table)
            .unwrap()
            .as_ptr()
            .add((at.as_u64() & 0xfff) as usize)
    } as usize;
    let fresh = mem.read_u64(at).unwrap();
    assert_eq!(fresh & (AF | AP_RO | DBM), AF | AP_RO | DBM);

    let (started, stop) = (AtomicBool::new(false), AtomicBool::new(false));
    let (made_dirty, made_accessed) = (AtomicU64::new(0), AtomicU64::new(0));
    let (mut seen_dirty, mut seen_accessed) = (0u64, 0u64);
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the descriptor word lives as long as `mem`, which outlives the scope;
            // it is 8-byte aligned, and every other access to it is atomic too.
            let d = unsafe { AtomicU64::from_ptr(word as *mut u64) };
            let mut i = 0u64;
            started.store(true, SeqCst);
            while !stop.load(SeqCst) {
                i += 1;
                // An access: the walk sets AF if clear.
                let old = d.fetch_or(AF, SeqCst);
                if old & AF == 0 {
                    made_accessed.fetch_add(1, SeqCst);
                }
                if i.is_multiple_of(2) {
                    // A write: a writable-clean leaf becomes writable-dirty.
                    let r = d.fetch_update(SeqCst, SeqCst, |v| {
                        (v & (DBM | AP_RO | 1) == DBM | AP_RO | 1).then_some(v & !AP_RO)
                    });
                    if r.is_ok() {
                        made_dirty.fetch_add(1, SeqCst);
                    }
                }
                std::hint::spin_loop();
            }
        });
        // Stops the hardware thread however this side ends (a failed assertion must not
        // leave the scope waiting for it forever).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        let _stop = Stop(&stop);
        while !started.load(SeqCst) {
            std::hint::spin_loop();
        }
        for i in 0..HARVESTS {
            let (got, flush) = u
                .clear_accessed_dirty(va, PageSize::Size4K, true, i % 3 != 0)
                .unwrap();
            flush.flush();
            seen_accessed += u64::from(got.accessed);
            // Only harvests that clear the dirty record take the dirt away.
            if i % 3 != 0 {
                seen_dirty += u64::from(got.dirty);
            }
        }
    });
    // The last state still held (not yet harvested).
    let (got, flush) = u
        .clear_accessed_dirty(va, PageSize::Size4K, true, true)
        .unwrap();
    flush.flush();
    seen_accessed += u64::from(got.accessed);
    seen_dirty += u64::from(got.dirty);
    // The map itself created the leaf accessed (AF = 1): one report not made by the thread.
    assert_eq!(
        seen_accessed,
        made_accessed.load(SeqCst) + 1,
        "accesses reported vs made"
    );
    assert_eq!(
        seen_dirty,
        made_dirty.load(SeqCst),
        "writes reported vs made"
    );
    assert!(made_dirty.load(SeqCst) > 0, "the hardware thread ran");
    let end = mem.read_u64(at).unwrap();
    assert_eq!(end, fresh & !AF, "clean and aged, nothing else changed");
}
