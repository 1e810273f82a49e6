//! Foreign AArch64 tables written by hand with the Arm ARM's descriptor bits (D8.3: bit 0
//! valid, bit 1 table/page, AttrIndx 4:2, AP[1] = 6 (EL0), AP[2] = 7 (read-only), AF = 10,
//! nG = 11, PXN = 53, UXN = 54, PXNTable = 59, UXNTable = 60, APTable = 62:61): hierarchical
//! permissions over all levels, the implicit PXN of EL0-writable memory, level-0 blocks and
//! AF = 0 faults.

use awk_paging::emu::EmuMemory;
use awk_paging::inspect::{Access, Fault, ForeignTable, Invalid, RawDump};
use awk_paging::{MemoryType, PageSize, PhyAddr, VirtAddr};
use awk_paging_aarch64::{Half, VaSize, A64};

const TABLE: u64 = 0b11;
const PAGE: u64 = 0b11;
const BLOCK: u64 = 0b01;
const EL0: u64 = 1 << 6;
const RO: u64 = 1 << 7;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const PXN_T: u64 = 1 << 59;
const UXN_T: u64 = 1 << 60;
const NO_EL0_T: u64 = 1 << 61;
const RO_T: u64 = 1 << 62;
const DEVICE: u64 = 3 << 2; // AttrIndx 3: Device-nGnRE in the crate's MAIR
const BASE: u64 = 0x10_0000;

fn frame(i: u64) -> u64 {
    BASE + 0x1000 * i
}

fn dump(mem: &EmuMemory) -> Vec<u8> {
    (0..8 * 512)
        .flat_map(|w| {
            mem.read_u64(PhyAddr::new(BASE + 8 * w))
                .unwrap()
                .to_le_bytes()
        })
        .collect()
}

fn set(mem: &EmuMemory, table: u64, index: u64, raw: u64) {
    assert!(mem.write_u64(PhyAddr::new(frame(table) + 8 * index), raw));
}

/// Arm L0 (frame 0) entry 0 -> L1 (1) entry 1 -> L2 (2) entry 2 -> L3 (3) entry 3:
/// VA 0x4040_3000 in a 48-bit TTBR0 regime.
const VA: u64 = (1 << 30) | (2 << 21) | (3 << 12);

#[test]
fn hierarchical_permissions_accumulate_over_every_level() {
    let full = Access {
        kernel_read: true,
        kernel_write: true,
        kernel_exec: false,
        user_read: true,
        user_write: true,
        user_exec: true,
    };
    let cases: [([u64; 3], u64, Access); 6] = [
        // An EL0 RW page with PXN = 0: EL1 may not execute it anyway (implicit PXN).
        ([0; 3], EL0, full),
        // APTable[1] at L0: read-only below; EL1 may now execute it (no longer EL0-writable).
        (
            [RO_T, 0, 0],
            EL0,
            Access {
                kernel_write: false,
                user_write: false,
                kernel_exec: true,
                ..full
            },
        ),
        // APTable[0] at L1: no EL0 access below; EL0 execution is UXN's alone.
        (
            [0, NO_EL0_T, 0],
            EL0,
            Access {
                user_read: false,
                user_write: false,
                kernel_exec: true,
                ..full
            },
        ),
        // UXNTable at L2.
        (
            [0, 0, UXN_T],
            EL0,
            Access {
                user_exec: false,
                ..full
            },
        ),
        // PXNTable at L1 on an EL1-only page.
        (
            [0, PXN_T, 0],
            0,
            Access {
                kernel_exec: false,
                user_read: false,
                user_write: false,
                ..full
            },
        ),
        // Leaf UXN + PXN with AP read-only: nothing executes, nothing writes.
        (
            [0; 3],
            EL0 | RO | UXN | PXN,
            Access {
                kernel_write: false,
                user_write: false,
                kernel_exec: false,
                user_exec: false,
                ..full
            },
        ),
    ];
    for (upper, leaf_bits, want) in cases {
        let mem = EmuMemory::new(8);
        set(&mem, 0, 0, frame(1) | TABLE | upper[0]);
        set(&mem, 1, 1, frame(2) | TABLE | upper[1]);
        set(&mem, 2, 2, frame(3) | TABLE | upper[2]);
        set(&mem, 3, 3, 0x8765_4000 | PAGE | AF | leaf_bits);
        let bytes = dump(&mem);
        let t = ForeignTable::new(
            A64::default(),
            RawDump::new(PhyAddr::new(BASE), &bytes),
            PhyAddr::new(frame(0)),
        );
        let r = t.translate(VirtAddr::new(VA + 0x10)).unwrap();
        assert_eq!(r.access, want, "{upper:x?} {leaf_bits:#x}");
        assert_eq!(
            (r.pa, r.size),
            (PhyAddr::new(0x8765_4010), PageSize::Size4K)
        );
    }
}

#[test]
fn level0_blocks_af_clear_and_wide_addresses_fault() {
    let mem = EmuMemory::new(8);
    set(&mem, 0, 0, frame(1) | TABLE);
    set(&mem, 0, 1, 0x80_0000_0000 | BLOCK | AF); // a 512 GiB "block" at Arm level 0
    set(&mem, 1, 0, 0x4000_0000 | BLOCK); // 1 GiB block, AF = 0
    set(&mem, 1, 1, frame(2) | TABLE);
    set(&mem, 1, 2, 0x8000_0000 | BLOCK | AF | DEVICE | PXN | UXN); // 1 GiB device block
    set(&mem, 2, 0, frame(3) | TABLE);
    set(&mem, 3, 0, 0x5000 | PAGE); // page, AF = 0
    set(&mem, 3, 1, 0x5000 | BLOCK | AF); // 0b01 at Arm level 3: reserved
    set(&mem, 3, 2, (1u64 << 44) | PAGE | AF); // beyond a 40-bit PA size
    let bytes = dump(&mem);
    let t = |arch| {
        ForeignTable::new(
            arch,
            RawDump::new(PhyAddr::new(BASE), &bytes),
            PhyAddr::new(frame(0)),
        )
    };
    let a = t(A64::default());
    let inv = |level, raw, why| Err(Fault::Invalid { level, raw, why });
    assert_eq!(
        a.translate(VirtAddr::new(1 << 39)),
        inv(3, 0x80_0000_0000 | BLOCK | AF, Invalid::LeafNotAllowed)
    );
    assert_eq!(
        a.translate(VirtAddr::new(0x10)),
        inv(2, 0x4000_0000 | BLOCK, Invalid::AccessFlag)
    );
    assert_eq!(
        a.translate(VirtAddr::new(0x4000_0000)),
        inv(0, 0x5000 | PAGE, Invalid::AccessFlag)
    );
    assert_eq!(
        a.translate(VirtAddr::new(0x4000_1000)),
        inv(0, 0x5000 | BLOCK | AF, Invalid::LeafNotAllowed)
    );
    assert_eq!(
        a.translate(VirtAddr::new(0x4000_2000)).unwrap().pa,
        PhyAddr::new(1 << 44)
    );
    let narrow = t(A64::default().with_pa_bits(40));
    assert_eq!(
        narrow.translate(VirtAddr::new(0x4000_2000)),
        inv(0, (1u64 << 44) | PAGE | AF, Invalid::AddressSize)
    );
    let dev = a.translate(VirtAddr::new(0x8000_0008)).unwrap();
    assert_eq!(
        (dev.memory_type, dev.size, dev.pa),
        (
            MemoryType::Device,
            PageSize::Size1G,
            PhyAddr::new(0x8000_0008)
        )
    );
    assert!(!dev.access.exec());
    let audit = a.audit(|_| {}).unwrap();
    assert_eq!(
        (
            audit.faults.count,
            audit.mapped.count,
            audit.device_exec.count
        ),
        (4, 2, 0)
    );
    // A 39-bit regime starts at Arm level 1: the same frame 1 as its root.
    let short = ForeignTable::new(
        A64::new(VaSize::Bits39, Half::Lower),
        RawDump::new(PhyAddr::new(BASE), &bytes),
        PhyAddr::new(frame(1)),
    );
    assert_eq!(
        short.translate(VirtAddr::new(0x8000_0000)).unwrap().size,
        PageSize::Size1G
    );
}

#[test]
fn audit_lists_what_the_crate_would_never_build() {
    let mem = EmuMemory::new(8);
    set(&mem, 0, 0, frame(1) | TABLE);
    set(&mem, 1, 0, frame(2) | TABLE);
    set(&mem, 2, 0, frame(3) | TABLE);
    set(&mem, 3, 0, 0x1_0000 | PAGE | AF | UXN); // EL1 RWX
    set(&mem, 3, 1, 0x1_1000 | PAGE | AF | DEVICE | UXN | RO); // executable device
    set(&mem, 3, 2, 0x1_2000 | PAGE | AF | EL0 | RO | NG); // EL0 RX, EL1 may execute
    set(&mem, 3, 3, 0x1_3000 | PAGE | AF | EL0 | PXN | UXN | NG); // EL0 RW data: fine
    let bytes = dump(&mem);
    let t = ForeignTable::new(
        A64::default(),
        RawDump::new(PhyAddr::new(BASE), &bytes),
        PhyAddr::new(frame(0)),
    );
    let mut text = String::new();
    let audit = t.ptdump(&mut text).unwrap();
    let expected = [
        "0x0000000000000000-0x0000000000001000      4K -> 0x000000010000  4K x1     L0 k:rwx u:--- write-back    kernel global",
        "0x0000000000001000-0x0000000000002000      4K -> 0x000000011000  4K x1     L0 k:r-x u:--- device        kernel global",
        "0x0000000000002000-0x0000000000003000      4K -> 0x000000012000  4K x1     L0 k:r-x u:r-x write-back    user   ng",
        "0x0000000000003000-0x0000000000004000      4K -> 0x000000013000  4K x1     L0 k:rw- u:rw- write-back    user   ng",
        "W+X        0x0000000000000000-0x0000000000001000      4K -> 0x000000010000  4K x1     L0 k:rwx u:--- write-back    kernel global",
        "DEVICE+X   0x0000000000001000-0x0000000000002000      4K -> 0x000000011000  4K x1     L0 k:r-x u:--- device        kernel global",
        "USER-KEXEC 0x0000000000002000-0x0000000000003000      4K -> 0x000000012000  4K x1     L0 k:r-x u:r-x write-back    user   ng",
        "4 regions (16K mapped); W+X: 1 (4K); device+X: 1 (4K); user executable by kernel: 1 (4K); faulting entries: 0 (0); broken: 0 (0); 4 tables, 2048 entries read",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "\n{text}");
    assert!(!audit.is_clean());
}

/// `mair_memory_type` and `MairLayout` share one nibble parser: every inner nibble under a
/// Normal outer nibble, against the Arm ARM's MAIR_EL1 `Attr<n>` table written out by hand, and
/// a layout built from bytes with equal nibbles decodes each index to the same type.
#[test]
fn mair_memory_type_every_inner_nibble_and_layout_agree() {
    use awk_paging::MemoryType::{Device, Uncached, WriteBack, WriteThrough};
    use awk_paging_aarch64::mair::MairLayout;
    use awk_paging_aarch64::mair_memory_type;
    let expected = [
        Device,       // 0b0000: reserved under a Normal outer policy
        WriteThrough, // 0b0001..0b0011: write-through transient
        WriteThrough,
        WriteThrough,
        Uncached,  // 0b0100: non-cacheable
        WriteBack, // 0b0101..0b0111: write-back transient
        WriteBack,
        WriteBack,
        WriteThrough, // 0b10RW: write-through non-transient
        WriteThrough,
        WriteThrough,
        WriteThrough,
        WriteBack, // 0b11RW: write-back non-transient
        WriteBack,
        WriteBack,
        WriteBack,
    ];
    for (inner, want) in expected.iter().enumerate() {
        let inner = inner as u8;
        for outer in [0x4u8, 0x8, 0xf] {
            assert_eq!(
                mair_memory_type((outer << 4) | inner),
                *want,
                "outer {outer:#x} inner {inner:#x}"
            );
        }
        // Device-nGnRnE in every high byte of the value, whatever the nibble is.
        assert_eq!(mair_memory_type(inner), Device);
    }
    // Bytes with equal nibbles: WB (0x77 transient), WT (0x33 transient), NC, Device-nGnRE.
    let value = 0x04_44_33_77;
    let layout = MairLayout::from_mair(value).unwrap();
    for index in 0..4u8 {
        let byte = (value >> (8 * index)) as u8;
        assert_eq!(
            layout.memory_type(index).ok(),
            Some(mair_memory_type(byte)),
            "index {index}"
        );
    }
    assert_eq!(layout.memory_type(0), Ok(WriteBack));
    assert_eq!(layout.memory_type(1), Ok(WriteThrough));
}
