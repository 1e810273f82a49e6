//! The memory-attribute table: which MAIR_EL1 index means what. This is the single source of
//! truth: the descriptor encoder takes indices from [`index_of`], the MMU setup programs
//! [`MAIR_EL1`], both derived from [`ATTRIBUTES`].
//!
//! Attribute encodings (Arm ARM D19.2 "MAIR_EL1", Attr<n>): high nibble outer, low nibble inner;
//! `0b11RW` write-back non-transient, `0b10RW` write-through non-transient, `0b0100`
//! non-cacheable (R/W = read/write-allocate); high nibble `0b0000` with low nibble `0b0000`
//! Device-nGnRnE, `0b0100` Device-nGnRE.
//!
//! | index | memory | Attr byte |
//! |---|---|---|
//! | 0 | Normal, write-back, read/write-allocate (inner and outer) | `0xff` |
//! | 1 | Normal, write-through, read-allocate (inner and outer) | `0xaa` |
//! | 2 | Normal, non-cacheable | `0x44` |
//! | 3 | Device-nGnRE | `0x04` |
//! | 4 | Device-nGnRnE | `0x00` |
//!
//! Translation-table walks use write-back (TCR_EL1.IRGN0/ORGN0 = 0b01), matching index 0.

use awk_paging::MemoryType;

/// One MAIR_EL1 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The Attr<n> byte.
    pub byte: u8,
    /// What it is for.
    pub name: &'static str,
}

/// The attribute table, by index.
pub const ATTRIBUTES: [Attribute; 5] = [
    Attribute {
        byte: 0xff,
        name: "Normal WB RWA",
    },
    Attribute {
        byte: 0xaa,
        name: "Normal WT RA",
    },
    Attribute {
        byte: 0x44,
        name: "Normal NC",
    },
    Attribute {
        byte: 0x04,
        name: "Device-nGnRE",
    },
    Attribute {
        byte: 0x00,
        name: "Device-nGnRnE",
    },
];

/// Index of Normal write-back memory.
pub const NORMAL_WB: u8 = 0;
/// Index of Normal write-through memory.
pub const NORMAL_WT: u8 = 1;
/// Index of Normal non-cacheable memory.
pub const NORMAL_NC: u8 = 2;
/// Index of Device-nGnRE memory (what [`MemoryType::Device`] maps to).
pub const DEVICE_NGNRE: u8 = 3;
/// Index of Device-nGnRnE memory (strongest ordering; decoded as [`MemoryType::Device`]).
pub const DEVICE_NGNRNE: u8 = 4;

/// The MAIR_EL1 value: Attr<n> in bits `8n+7:8n`.
///
/// ```
/// assert_eq!(awk_paging_aarch64::mair::MAIR_EL1, 0x00_04_44_aa_ff);
/// ```
pub const MAIR_EL1: u64 = {
    let mut v = 0u64;
    let mut i = 0;
    while i < ATTRIBUTES.len() {
        v |= (ATTRIBUTES[i].byte as u64) << (8 * i);
        i += 1;
    }
    v
};

/// The attribute index for a memory type.
///
/// ```
/// use awk_paging::MemoryType;
/// assert_eq!(awk_paging_aarch64::mair::index_of(MemoryType::Device), 3);
/// ```
#[must_use]
pub const fn index_of(mt: MemoryType) -> u8 {
    match mt {
        MemoryType::WriteBack => NORMAL_WB,
        MemoryType::WriteThrough => NORMAL_WT,
        MemoryType::Uncached => NORMAL_NC,
        MemoryType::Device => DEVICE_NGNRE,
    }
}

/// The memory type an attribute index stands for (`None` for indices outside the table).
///
/// ```
/// use awk_paging::MemoryType;
/// assert_eq!(awk_paging_aarch64::mair::memory_type(4), Some(MemoryType::Device));
/// assert_eq!(awk_paging_aarch64::mair::memory_type(7), None);
/// ```
#[must_use]
pub const fn memory_type(index: u8) -> Option<MemoryType> {
    match index {
        NORMAL_WB => Some(MemoryType::WriteBack),
        NORMAL_WT => Some(MemoryType::WriteThrough),
        NORMAL_NC => Some(MemoryType::Uncached),
        DEVICE_NGNRE | DEVICE_NGNRNE => Some(MemoryType::Device),
        _ => None,
    }
}
