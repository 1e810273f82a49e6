//! The AArch64 descriptor encoding against bit patterns written out from the Arm ARM field
//! definitions (D8.3): bits[1:0] 0b11 page / 0b01 block, AttrIndx[4:2], AP[7:6] (AP[2] = bit 7
//! read-only, AP[1] = bit 6 EL0), SH[9:8] = 0b11 inner shareable, AF bit 10, nG bit 11,
//! PXN bit 53, UXN bit 54; MAIR indices 0 WB, 1 WT, 2 NC, 3 Device-nGnRE.
//!
//! Entries are read back from emulated memory by an independent raw walk written here.

use awk_paging::arch::{Arch, Entry};
use awk_paging::emu::EmuMemory;
use awk_paging::{Attrs, Flags, MapError, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_aarch64::{mair, mmu, Half, VaSize, A64};

#[path = "../../qemu-tests/src/expect/aarch64.rs"]
mod expect;
use expect::*;

/// An independent raw walk: returns the descriptor that maps `va` and its level (0 = L3).
fn raw_walk(mem: &EmuMemory, root: PhyAddr, va: u64, levels: u8) -> Option<(u64, u8)> {
    let mut table = root.as_u64();
    for level in (0..levels).rev() {
        let index = (va >> (12 + 9 * u32::from(level))) & 0x1ff;
        let d = mem.read_u64(PhyAddr::new(table + index * 8))?;
        match (d & 0b11, level) {
            (0b11, 0) | (0b01, 1 | 2) => return Some((d, level)),
            (0b11, _) => table = d & 0x0000_ffff_ffff_f000,
            _ => return None,
        }
    }
    None
}

#[test]
fn all_32_flag_combinations_encode_as_the_arm_arm_says() {
    let mem = EmuMemory::new(64);
    let regime = A64::default();
    let mut pt = PageTable::new(regime, &mem, &mem, NoTlb).unwrap();
    for (i, expected) in TABLE.iter().enumerate() {
        let flags = Flags::all_combinations()[i];
        let va = 0x0000_1000_0000_0000 + i as u64 * 0x1000;
        let pa = 0x4000_0000 + i as u64 * 0x1000;
        let got = unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(pa), PageSize::Size4K, flags) }
            .map(|f| f.flush());
        match expected {
            Ok(bits) => {
                assert_eq!(got, Ok(()), "row {i}: {flags:?}");
                let (d, level) = raw_walk(&mem, pt.root(), va, 4).expect("mapped");
                assert_eq!(
                    (d, level),
                    (bits | pa, 0),
                    "row {i}: {flags:?}: {d:#x} != {:#x}",
                    bits | pa
                );
                assert_eq!(
                    pt.translate(VirtAddr::new(va)).unwrap().attrs.flags,
                    flags.canonical(),
                    "row {i}"
                );
            }
            Err(e) => assert_eq!(got, Err(MapError::InvalidFlags(*e)), "row {i}"),
        }
    }
}

#[test]
fn user_global_and_block_descriptors() {
    let mem = EmuMemory::new(64);
    let mut pt = PageTable::new(A64::default(), &mem, &mem, NoTlb).unwrap();
    let user_rw = Attrs {
        user: true,
        ..Flags::RW.into()
    };
    let user_rx = Attrs {
        user: true,
        ..Flags::RX.into()
    };
    let global_ro = Attrs {
        global: true,
        ..Flags::RO.into()
    };
    let cases: [(u64, PageSize, Attrs, u64, u8); 5] = [
        // EL0 read-write data: AP = 0b01, never executable anywhere.
        (
            0x1000_0000,
            PageSize::Size4K,
            user_rw,
            PAGE | EL0 | SH_INNER | AF | NG | PXN | UXN,
            0,
        ),
        // EL0 code: executable at EL0 only (PXN set, UXN clear), read-only for both.
        (
            0x1000_1000,
            PageSize::Size4K,
            user_rx,
            PAGE | EL0 | RO | SH_INNER | AF | NG | PXN,
            0,
        ),
        // Global kernel data: nG clear.
        (
            0x1000_2000,
            PageSize::Size4K,
            global_ro,
            PAGE | RO | SH_INNER | AF | PXN | UXN,
            0,
        ),
        // 2 MiB block at Arm level 2, 1 GiB block at Arm level 1.
        (
            0x1020_0000,
            PageSize::Size2M,
            Flags::RW.into(),
            BLOCK | SH_INNER | AF | NG | PXN | UXN,
            1,
        ),
        (
            0x4000_0000,
            PageSize::Size1G,
            Flags::DEVICE.into(),
            BLOCK | DEV | SH_INNER | AF | NG | PXN | UXN,
            2,
        ),
    ];
    for (va, size, attrs, bits, level) in cases {
        let pa = 0x8000_0000 + size.bytes();
        unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(pa), size, attrs) }
            .unwrap()
            .flush();
        assert_eq!(
            raw_walk(&mem, pt.root(), va, 4),
            Some((bits | pa, level)),
            "{attrs:?} {size}"
        );
        let t = pt.translate(VirtAddr::new(va)).unwrap();
        assert_eq!((t.size, t.attrs), (size, attrs.canonical()));
    }
}

/// The access flag (Arm ARM D8.3, bit 10).
const AF: u64 = 1 << 10;

#[test]
fn reserved_encodings_decode_as_invalid() {
    let r = A64::default();
    // bits[1:0] = 0b01 is reserved at Arm level 3 (our 0) and level 0 (our 3).
    assert_eq!(r.decode(0x4000_0000 | BLOCK, 0), Entry::Invalid);
    assert_eq!(r.decode(0x4000_0000 | BLOCK, 3), Entry::Invalid);
    assert_eq!(r.decode(0x4000_0000 | 0b10, 1), Entry::Invalid);
    assert_eq!(
        r.decode(0x4000_0000 | BLOCK | AF, 1),
        Entry::Leaf(PhyAddr::new(0x4000_0000))
    );
    // AF = 0 with hardware AF updates off: an Access flag fault, so no mapping.
    assert_eq!(r.decode(0x4000_0000 | BLOCK, 1), Entry::Invalid);
    assert_eq!(r.decode(0x4000_0000 | PAGE, 0), Entry::Invalid);
    assert_eq!(
        r.decode(0x4000_0000 | PAGE | AF, 0),
        Entry::Leaf(PhyAddr::new(0x4000_0000))
    );
    assert_eq!(
        r.decode(0x4000_1000 | PAGE, 2),
        Entry::Table(PhyAddr::new(0x4000_1000))
    );
    // Block output addresses ignore the bits below the block size.
    assert_eq!(
        r.decode(0x4020_1000 | BLOCK | AF, 1),
        Entry::Leaf(PhyAddr::new(0x4020_0000))
    );
}

#[test]
fn break_before_make_only_when_the_arm_arm_requires_it() {
    let r = A64::default();
    let pa = PhyAddr::new(0x4000_0000);
    let rw = r.leaf_entry(pa, 0, Flags::RW.into());
    let ro = r.leaf_entry(pa, 0, Flags::RO.into());
    let dev = r.leaf_entry(pa, 0, Flags::DEVICE.into());
    let moved = r.leaf_entry(PhyAddr::new(0x4000_1000), 0, Flags::RW.into());
    let global = r.leaf_entry(
        pa,
        0,
        Attrs {
            global: true,
            ..Flags::RW.into()
        },
    );
    assert!(!r.needs_break_before_make(rw, ro, 0), "permission change");
    assert!(r.needs_break_before_make(rw, dev, 0), "memory type change");
    assert!(
        r.needs_break_before_make(rw, moved, 0),
        "output address change"
    );
    assert!(r.needs_break_before_make(rw, global, 0), "nG change");
}

#[test]
fn mair_value_byte_by_byte() {
    let bytes = mair::MAIR_EL1.to_le_bytes();
    assert_eq!(
        bytes[0], 0xff,
        "Attr0: Normal inner/outer write-back non-transient RW-allocate"
    );
    assert_eq!(
        bytes[1], 0xaa,
        "Attr1: Normal inner/outer write-through non-transient R-allocate"
    );
    assert_eq!(bytes[2], 0x44, "Attr2: Normal inner/outer non-cacheable");
    assert_eq!(bytes[3], 0x04, "Attr3: Device-nGnRE");
    assert_eq!(bytes[4], 0x00, "Attr4: Device-nGnRnE");
    assert_eq!(&bytes[5..], &[0, 0, 0], "unused attributes");
}

#[test]
fn tcr_values_for_both_va_sizes() {
    // T0SZ[5:0], IRGN0[9:8]=01, ORGN0[11:10]=01, SH0[13:12]=11, TG0[15:14]=00,
    // T1SZ[21:16], EPD1[23], IRGN1[25:24]=01, ORGN1[27:26]=01, SH1[29:28]=11, TG1[31:30]=10,
    // IPS[34:32].
    let common =
        (1 << 8) | (1 << 10) | (3 << 12) | (1 << 24) | (1 << 26) | (3 << 28) | (2u64 << 30);
    assert_eq!(
        mmu::tcr_el1(VaSize::Bits48, 0b0101, false),
        common | 16 | (16 << 16) | (1 << 23) | (5u64 << 32)
    );
    assert_eq!(
        mmu::tcr_el1(VaSize::Bits39, 0b0010, false),
        common | 25 | (25 << 16) | (1 << 23) | (2u64 << 32)
    );
    assert_eq!(
        mmu::tcr_el1(VaSize::Bits39, 0b0010, true),
        common | 25 | (25 << 16) | (2u64 << 32)
    );
    // A 52-bit PARange is capped at 48 bits: this descriptor layout has no FEAT_LPA2 fields.
    assert_eq!(
        mmu::tcr_el1(VaSize::Bits48, 0b0110, false) >> 32 & 0b111,
        0b101
    );
    assert_eq!(Half::Lower, A64::default().half());
}

#[test]
fn walks_name_upper_half_addresses() {
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(A64::new(VaSize::Bits39, Half::Upper), &mem, &mem, NoTlb).unwrap();
    let va = VirtAddr::new(0xffff_ff80_0020_0000);
    unsafe { pt.map(va, PhyAddr::new(0x4000_0000), PageSize::Size2M, Flags::RW) }
        .unwrap()
        .flush();
    let mut seen = Vec::new();
    pt.for_each_mapping(|m| seen.push((m.page, m.size)));
    assert_eq!(seen, [(va, PageSize::Size2M)]);
}

#[test]
fn output_addresses_above_pa_bits_decode_as_invalid() {
    // The hardware raises an Address size fault for an OA above the configured PA size; the
    // walk stops there as for an invalid entry (and `Arch::decode` may not return such an OA).
    let r = A64::default().with_pa_bits(40);
    let wide = 0x0000_0100_0000_0000; // bit 40
    assert_eq!(r.decode(wide | PAGE, 0), Entry::Invalid);
    assert_eq!(r.decode(wide | PAGE, 2), Entry::Invalid);
    assert_eq!(r.decode(wide | BLOCK, 1), Entry::Invalid);
    assert_eq!(
        r.decode(0x0000_00ff_ffff_f000 | PAGE | AF, 0),
        Entry::Leaf(PhyAddr::new(0x0000_00ff_ffff_f000))
    );
    // With the default 48 bits, bit 47 is the top output-address bit.
    assert_eq!(
        A64::default().decode(0x0000_8000_0000_0000 | PAGE | AF, 0),
        Entry::Leaf(PhyAddr::new(0x0000_8000_0000_0000))
    );
    // Bits above 47 are not output address (upper attributes) and never leak into it.
    assert_eq!(
        A64::default().decode(UXN | PXN | 0x4000_0000 | PAGE | AF, 0),
        Entry::Leaf(PhyAddr::new(0x4000_0000))
    );
    // Clamping of the configured width: 52-bit output needs FEAT_LPA2 fields this layout lacks.
    assert_eq!(A64::default().with_pa_bits(52).pa_bits(), 48);
    assert_eq!(A64::default().with_pa_bits(36).pa_bits(), 36);
}

#[test]
fn bitfield_definitions_sit_at_the_arm_arm_positions() {
    use awk_paging_aarch64::descriptor::{Descriptor, DESCRIPTOR as D};
    // Each field set to all ones, compared with the literal bit positions of D8.3.
    let cases: [(tock_registers::fields::Field<u64, D::Register>, u64); 17] = [
        (D::VALID, 1 << 0),
        (D::TYPE, 1 << 1),
        (D::ATTR_INDX, 0b111 << 2),
        (D::NS, 1 << 5),
        (D::AP, 0b11 << 6),
        (D::SH, 0b11 << 8),
        (D::AF, 1 << 10),
        (D::NG, 1 << 11),
        (D::OUTPUT_ADDR, 0x0000_ffff_ffff_f000),
        (D::CONTIGUOUS, 1 << 52),
        (D::PXN, 1 << 53),
        (D::UXN, 1 << 54),
        (D::SW, 0b1111 << 55),
        (D::PXN_TABLE, 1 << 59),
        (D::UXN_TABLE, 1 << 60),
        (D::AP_TABLE, 0b11 << 61),
        (D::NS_TABLE, 1 << 63),
    ];
    for (field, bits) in cases {
        let mut d = Descriptor::new(0);
        d.modify(field.val(field.mask));
        assert_eq!(d.get(), bits, "field at shift {}", field.shift);
    }
    // A decoded kernel RX page, field by field.
    let raw = A64::default().leaf_entry(PhyAddr::new(0x8_0000_0000), 0, Flags::RX.into());
    let d = Descriptor::new(raw);
    assert_eq!(raw, K | RO | UXN | 0x8_0000_0000);
    assert_eq!(d.read(D::ATTR_INDX), 0);
    assert_eq!(d.read(D::AP), 0b10);
    assert_eq!(d.read(D::SH), 0b11);
    assert_eq!((d.read(D::PXN), d.read(D::UXN)), (0, 1));
    assert_eq!(d.read(D::OUTPUT_ADDR), 0x8_0000_0000 >> 12);
}

#[test]
fn table_descriptors_carry_no_hierarchical_limits() {
    let r = A64::default();
    let user_rx = Attrs {
        user: true,
        ..Flags::RX.into()
    };
    for attrs in [Attrs::from(Flags::RO), user_rx] {
        // VALID | TABLE | address; APTable, UXNTable, PXNTable, NSTable all 0.
        assert_eq!(r.table_entry(PhyAddr::new(0x4321_f000), attrs), 0x4321_f003);
    }
}

#[test]
fn va_ranges_at_their_boundaries() {
    use awk_paging::AddrError::{NonCanonical, OutOfRange};
    let check = |r: A64, va: u64| r.check_va(VirtAddr::new(va));
    let lo48 = A64::new(VaSize::Bits48, Half::Lower);
    let hi48 = A64::new(VaSize::Bits48, Half::Upper);
    let lo39 = A64::new(VaSize::Bits39, Half::Lower);
    let hi39 = A64::new(VaSize::Bits39, Half::Upper);
    assert_eq!(check(lo48, 0x0000_ffff_ffff_f000), Ok(()));
    assert_eq!(check(lo48, 0x0001_0000_0000_0000), Err(NonCanonical));
    assert_eq!(check(lo48, 0xffff_0000_0000_0000), Err(OutOfRange));
    assert_eq!(check(hi48, 0xffff_0000_0000_0000), Ok(()));
    assert_eq!(check(hi48, 0xfffe_ffff_ffff_f000), Err(NonCanonical));
    assert_eq!(check(hi48, 0x0000_ffff_ffff_f000), Err(OutOfRange));
    assert_eq!(check(lo39, 0x0000_007f_ffff_f000), Ok(()));
    assert_eq!(check(lo39, 0x0000_0080_0000_0000), Err(NonCanonical));
    assert_eq!(check(lo39, 0xffff_ff80_0000_0000), Err(OutOfRange));
    assert_eq!(check(hi39, 0xffff_ff80_0000_0000), Ok(()));
    assert_eq!(check(hi39, 0xffff_ff7f_ffff_f000), Err(NonCanonical));
    assert_eq!(check(hi39, 0x0000_007f_ffff_f000), Err(OutOfRange));
}

#[test]
fn mair_table_and_index_mapping_agree() {
    use awk_paging::MemoryType;
    // Index ↔ memory type, written out.
    let expected = [
        (MemoryType::WriteBack, 0u8, 0xffu8),
        (MemoryType::WriteThrough, 1, 0xaa),
        (MemoryType::Uncached, 2, 0x44),
        (MemoryType::Device, 3, 0x04),
    ];
    for (mt, index, byte) in expected {
        assert_eq!(mair::index_of(mt), index, "{mt:?}");
        assert_eq!(mair::ATTRIBUTES[usize::from(index)].byte, byte, "{mt:?}");
        assert_eq!(mair::memory_type(index), Some(mt));
    }
    assert_eq!(mair::memory_type(4), Some(MemoryType::Device)); // nGnRnE reads as Device
    for unused in 5..8 {
        assert_eq!(mair::memory_type(unused), None);
    }
    assert_eq!(
        mair::mair_value(&mair::ATTRIBUTES),
        0x00_00_00_00_04_44_aa_ff
    );
}

/// The walker's packed table limits (`table_limit_bits`) from the Arm ARM's table-descriptor
/// bits (D8.3: PXNTable = bit 59, UXNTable = bit 60, APTable = bits 62:61; `Limits::bits`
/// order: no_exec, no_user_exec, no_user, no_write), for every combination, with unrelated
/// bits (NSTable, output address, valid/table) set or not; and the same as `table_limits`.
#[test]
fn packed_table_limits_follow_the_arm_arm_bits() {
    use awk_paging::arch::Limits;
    let regime = A64::default();
    for combo in 0u64..16 {
        let (pxn, uxn, ap0, ap1) = (
            combo & 1 != 0,
            combo & 2 != 0,
            combo & 4 != 0,
            combo & 8 != 0,
        );
        for noise in [
            0u64,
            0b11 | 0x0000_0000_4000_0000,
            (1 << 63) | 0b11 | 0x0000_ffff_ffff_f000,
        ] {
            let raw = noise
                | u64::from(pxn) << 59
                | u64::from(uxn) << 60
                | u64::from(ap0) << 61
                | u64::from(ap1) << 62;
            let want = Limits {
                no_write: ap1,
                no_user: ap0,
                no_exec: pxn,
                no_user_exec: uxn,
            };
            for level in 1..=3 {
                assert_eq!(regime.table_limits(raw, level), want, "{raw:#x}");
                let bits = regime.table_limit_bits(raw, level);
                assert_eq!(bits, combo as u8, "{raw:#x}");
                assert_eq!(Limits::from_bits(bits), want, "{raw:#x}");
            }
        }
    }
}
