//! The x86_64 entry encoding, against bit patterns written out from the Intel SDM
//! (Vol. 3A §4.5, table 4-19 "Format of a Page-Table Entry that Maps a 4-KByte Page"):
//! P = bit 0, R/W = bit 1, U/S = bit 2, PWT = bit 3, PCD = bit 4, PS = bit 7, G = bit 8,
//! XD = bit 63; power-on PAT: PWT selects WT, PCD selects UC-, both select UC.
//!
//! Every accepted entry is also read back through the `x86_64` crate's own walker.

use awk_paging::emu::EmuMemory;
use awk_paging::{Attrs, Flags, MapError, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_x86_64::{with_offset_page_table, X86_64};
use x86_64::structures::paging::mapper::{MappedFrame, TranslateResult};
use x86_64::structures::paging::Translate;

#[path = "../../qemu-tests/src/expect/x86_64.rs"]
mod expect;
use expect::*;

/// The raw leaf entry and size the `x86_64` crate's walker finds for `va`.
fn walk_with_x86_64_crate<F: awk_paging::FrameAllocator>(
    pt: &mut PageTable<X86_64, awk_paging::OffsetPhysMem, F, NoTlb>,
    va: VirtAddr,
) -> Option<(u64, u64, PageSize)> {
    // SAFETY: the closure only reads the tables.
    unsafe {
        with_offset_page_table(pt, |opt| {
            match opt.translate(x86_64::VirtAddr::new(va.as_u64())) {
                TranslateResult::Mapped {
                    frame,
                    offset: _,
                    flags,
                } => Some(match frame {
                    MappedFrame::Size4KiB(f) => {
                        (flags.bits(), f.start_address().as_u64(), PageSize::Size4K)
                    }
                    MappedFrame::Size2MiB(f) => {
                        (flags.bits(), f.start_address().as_u64(), PageSize::Size2M)
                    }
                    MappedFrame::Size1GiB(f) => {
                        (flags.bits(), f.start_address().as_u64(), PageSize::Size1G)
                    }
                }),
                _ => None,
            }
        })
    }
}

#[test]
fn all_32_flag_combinations_encode_as_the_sdm_says() {
    let mem = EmuMemory::new(64);
    let mut pt =
        PageTable::new(X86_64::new(), unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    for (i, expected) in TABLE.iter().enumerate() {
        let flags = Flags::all_combinations()[i];
        let va = VirtAddr::new(0x7000_0000_0000 + i as u64 * 0x1000);
        let pa = PhyAddr::new(0x1234_5000 + i as u64 * 0x1000);
        let got = unsafe { pt.map(va, pa, PageSize::Size4K, flags) }.map(|f| f.flush());
        match expected {
            Ok(bits) => {
                assert_eq!(got, Ok(()), "row {i}: {flags:?}");
                let (raw, frame, size) = walk_with_x86_64_crate(&mut pt, va).expect("mapped");
                assert_eq!(
                    raw, *bits,
                    "row {i}: {flags:?}: entry bits {raw:#x} != {bits:#x}"
                );
                assert_eq!((frame, size), (pa.as_u64(), PageSize::Size4K), "row {i}");
                // And our own decoder agrees with the canonical form.
                assert_eq!(
                    pt.translate(va).unwrap().attrs.flags,
                    flags.canonical(),
                    "row {i}"
                );
            }
            Err(e) => assert_eq!(got, Err(MapError::InvalidFlags(*e)), "row {i}: {flags:?}"),
        }
    }
}

#[test]
fn user_global_and_huge_bits() {
    let mem = EmuMemory::new(64);
    let regime = X86_64::new().with_1g_pages(true);
    let mut pt = PageTable::new(regime, unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    // The user + global case is refused by the default policy (FlagsError::GlobalUser); its
    // encoding is what this test checks.
    pt.set_policy(awk_paging::Policy {
        allow_global_user: true,
        ..awk_paging::Policy::default()
    });
    let cases: [(u64, PageSize, Attrs, u64); 4] = [
        (
            0x1000_0000,
            PageSize::Size4K,
            Attrs {
                user: true,
                ..Flags::RW.into()
            },
            P | RW | US | XD,
        ),
        (
            0x1020_0000,
            PageSize::Size2M,
            Attrs {
                global: true,
                ..Flags::RX.into()
            },
            P | A | D | PS | G,
        ),
        (
            0x4000_0000,
            PageSize::Size1G,
            Attrs {
                user: true,
                global: true,
                ..Flags::RO.into()
            },
            P | PS | US | G | XD,
        ),
        (
            0x8000_0000,
            PageSize::Size2M,
            Flags::DEVICE.into(),
            P | A | D | RW | PS | PCD | PWT | XD,
        ),
    ];
    for (va, size, attrs, bits) in cases {
        let (va, pa) = (VirtAddr::new(va), PhyAddr::new(0x8000_0000 + size.bytes()));
        unsafe { pt.map(va, pa, size, attrs) }.unwrap().flush();
        let (raw, frame, got_size) = walk_with_x86_64_crate(&mut pt, va).expect("mapped");
        assert_eq!(
            (raw, frame, got_size),
            (bits, pa.as_u64(), size),
            "{attrs:?} {size}"
        );
        assert_eq!(pt.translate(va).unwrap().attrs, attrs.canonical());
    }
}

#[test]
fn user_mappings_open_the_table_entries_above_them() {
    let mem = EmuMemory::new(64);
    let mut pt =
        PageTable::new(X86_64::new(), unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
    let kernel = VirtAddr::new(0x1000_0000);
    let user = VirtAddr::new(0x1000_1000);
    unsafe { pt.map(kernel, PhyAddr::new(0x5000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let l4_entry = |pt: &mut PageTable<X86_64, _, _, _>| {
        // SAFETY: reads only.
        unsafe { with_offset_page_table(pt, |opt| opt.level_4_table()[0].flags().bits()) }
    };
    assert_eq!(l4_entry(&mut pt), P | RW, "kernel-only path has no U/S");
    let attrs = Attrs {
        user: true,
        ..Flags::RW.into()
    };
    unsafe { pt.map(user, PhyAddr::new(0x6000), PageSize::Size4K, attrs) }
        .unwrap()
        .flush();
    assert_eq!(
        l4_entry(&mut pt),
        P | RW | US,
        "shared path opened for the user leaf"
    );
    assert!(
        !pt.translate(kernel).unwrap().attrs.user,
        "kernel leaf stays supervisor-only"
    );
}

/// The walker's packed table limits (`table_limit_bits`) from the SDM's table-entry bits
/// (R/W = bit 1, U/S = bit 2, XD = bit 63; `Limits::bits` order: no_exec, no_user_exec,
/// no_user, no_write), for every combination, with unrelated bits set or not; and the same as
/// the unpacked `table_limits`.
#[test]
fn packed_table_limits_follow_the_sdm_bits() {
    use awk_paging::arch::{Arch, Limits};
    let regime = X86_64::new();
    for combo in 0u64..8 {
        let (rw, us, xd) = (combo & 1 != 0, combo & 2 != 0, combo & 4 != 0);
        for noise in [
            0u64,
            0x0000_0000_1234_5000 | 1 | (1 << 5) | (1 << 6),
            0x7ff0_0000_0000_0e19,
        ] {
            let noise = noise & !((1 << 1) | (1 << 2) | (1 << 63));
            let raw = noise | u64::from(rw) << 1 | u64::from(us) << 2 | u64::from(xd) << 63;
            let want = Limits {
                no_write: !rw,
                no_user: !us,
                no_exec: xd,
                no_user_exec: xd,
            };
            for level in 1..=3 {
                assert_eq!(regime.table_limits(raw, level), want, "{raw:#x}");
                let bits = regime.table_limit_bits(raw, level);
                let expect =
                    u8::from(xd) | u8::from(xd) << 1 | u8::from(!us) << 2 | u8::from(!rw) << 3;
                assert_eq!(bits, expect, "{raw:#x}");
                assert_eq!(Limits::from_bits(bits), want, "{raw:#x}");
            }
        }
    }
}
