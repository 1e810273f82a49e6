//! The x86_64 entry encoding, against bit patterns written out from the Intel SDM
//! (Vol. 3A §4.5, table 4-19 "Format of a Page-Table Entry that Maps a 4-KByte Page"):
//! P = bit 0, R/W = bit 1, U/S = bit 2, PWT = bit 3, PCD = bit 4, PS = bit 7, G = bit 8,
//! XD = bit 63; power-on PAT: PWT selects WT, PCD selects UC-, both select UC.
//!
//! Every accepted entry is also read back through the `x86_64` crate's own walker.

use awk_paging::emu::EmuMemory;
use awk_paging::{
    Attrs, Flags, FlagsError, MapError, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr,
};
use awk_paging_x86_64::{with_offset_page_table, X86_64};
use x86_64::structures::paging::mapper::{MappedFrame, TranslateResult};
use x86_64::structures::paging::Translate;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const XD: u64 = 1 << 63;

const WX: Result<u64, FlagsError> = Err(FlagsError::WritableAndExecutable);
const DX: Result<u64, FlagsError> = Err(FlagsError::ExecutableDevice);

/// Index = execute | write << 1 | cache << 2 | write_through << 3 | device << 4.
const TABLE: [Result<u64, FlagsError>; 32] = [
    Ok(P | PCD | XD),            // 0: uncached RO
    Ok(P | PCD),                 // 1: uncached RX
    Ok(P | RW | PCD | XD),       // 2: uncached RW
    WX,                          // 3
    Ok(P | XD),                  // 4: WB RO
    Ok(P),                       // 5: WB RX
    Ok(P | RW | XD),             // 6: WB RW
    WX,                          // 7
    Ok(P | PCD | XD),            // 8: write_through without cache = uncached
    Ok(P | PCD),                 // 9
    Ok(P | RW | PCD | XD),       // 10
    WX,                          // 11
    Ok(P | PWT | XD),            // 12: WT RO
    Ok(P | PWT),                 // 13: WT RX
    Ok(P | RW | PWT | XD),       // 14: WT RW
    WX,                          // 15
    Ok(P | PCD | PWT | XD),      // 16: device RO (UC)
    DX,                          // 17
    Ok(P | RW | PCD | PWT | XD), // 18: device RW
    DX,                          // 19
    Ok(P | PCD | PWT | XD),      // 20: device ignores cache
    DX,                          // 21
    Ok(P | RW | PCD | PWT | XD), // 22
    DX,                          // 23
    Ok(P | PCD | PWT | XD),      // 24: device ignores write_through
    DX,                          // 25
    Ok(P | RW | PCD | PWT | XD), // 26
    DX,                          // 27
    Ok(P | PCD | PWT | XD),      // 28
    DX,                          // 29
    Ok(P | RW | PCD | PWT | XD), // 30
    DX,                          // 31
];

fn flags_of(i: usize) -> Flags {
    Flags {
        execute: i & 1 != 0,
        write: i & 2 != 0,
        cache: i & 4 != 0,
        write_through: i & 8 != 0,
        device: i & 16 != 0,
    }
}

/// The raw leaf entry and size the `x86_64` crate's walker finds for `va`.
fn walk_with_x86_64_crate<F: awk_paging::FrameAllocator>(
    pt: &mut PageTable<X86_64, awk_paging::OffsetPhysMem, F, NoTlb>,
    va: VirtAddr,
) -> Option<(u64, u64, PageSize)> {
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

#[test]
fn all_32_flag_combinations_encode_as_the_sdm_says() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(X86_64::new(), mem.offset_mapping(), &mem, NoTlb).unwrap();
    for (i, expected) in TABLE.iter().enumerate() {
        let flags = flags_of(i);
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
    let mut pt = PageTable::new(regime, mem.offset_mapping(), &mem, NoTlb).unwrap();
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
            P | PS | G,
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
            P | RW | PS | PCD | PWT | XD,
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
    let mut pt = PageTable::new(X86_64::new(), mem.offset_mapping(), &mem, NoTlb).unwrap();
    let kernel = VirtAddr::new(0x1000_0000);
    let user = VirtAddr::new(0x1000_1000);
    unsafe { pt.map(kernel, PhyAddr::new(0x5000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let l4_entry = |pt: &mut PageTable<X86_64, _, _, _>| {
        with_offset_page_table(pt, |opt| opt.level_4_table()[0].flags().bits())
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
