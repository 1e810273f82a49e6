//! The memory-attribute table: which MAIR_EL1 index means what. This is the single source of
//! truth: the descriptor encoder takes indices from [`index_of`], the MMU setup programs
//! [`MAIR_EL1`], both derived from [`ATTRIBUTES`].
//!
//! Attribute encodings (Arm ARM register description "MAIR_EL1, Memory Attribute Indirection
//! Register (EL1)", field `Attr<n>`): high nibble outer, low nibble inner policy;
//! `0b11RW` write-back non-transient, `0b10RW` write-through non-transient, `0b0100`
//! non-cacheable, where R (bit 1) and W (bit 0) are the read- and write-allocate hints. A high
//! nibble of `0b0000` selects Device memory, the low nibble its kind: `0b0000` Device-nGnRnE,
//! `0b0100` Device-nGnRE.
//!
//! Write-through is `0b1010` per nibble (non-transient, read-allocate, no write-allocate): a
//! write-through cache gains nothing from allocating on writes, so `0xaa` rather than `0xbb`.
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
///
/// ```
/// use awk_paging_aarch64::mair::{ATTRIBUTES, NORMAL_WB};
/// assert_eq!(ATTRIBUTES[usize::from(NORMAL_WB)].byte, 0xff);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The `Attr<n>` byte.
    pub byte: u8,
    /// What it is for.
    pub name: &'static str,
}

/// The attribute table, by index.
///
/// ```
/// let names: Vec<_> = awk_paging_aarch64::mair::ATTRIBUTES.iter().map(|a| a.name).collect();
/// assert_eq!(names[3], "Device-nGnRE");
/// ```
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
///
/// ```
/// use awk_paging_aarch64::mair;
/// assert_eq!(mair::index_of(awk_paging::MemoryType::WriteBack), mair::NORMAL_WB);
/// ```
pub const NORMAL_WB: u8 = 0;
/// Index of Normal write-through memory.
///
/// ```
/// use awk_paging_aarch64::mair;
/// assert_eq!(mair::index_of(awk_paging::MemoryType::WriteThrough), mair::NORMAL_WT);
/// ```
pub const NORMAL_WT: u8 = 1;
/// Index of Normal non-cacheable memory.
///
/// ```
/// use awk_paging_aarch64::mair;
/// assert_eq!(mair::index_of(awk_paging::MemoryType::Uncached), mair::NORMAL_NC);
/// ```
pub const NORMAL_NC: u8 = 2;
/// Index of Device-nGnRE memory (what [`MemoryType::Device`] maps to).
///
/// ```
/// use awk_paging_aarch64::mair;
/// assert_eq!(mair::index_of(awk_paging::MemoryType::Device), mair::DEVICE_NGNRE);
/// ```
pub const DEVICE_NGNRE: u8 = 3;
/// Index of Device-nGnRnE memory (strongest ordering; decoded as [`MemoryType::Device`]).
///
/// ```
/// use awk_paging_aarch64::mair;
/// assert_eq!(mair::memory_type(mair::DEVICE_NGNRNE), Some(awk_paging::MemoryType::Device));
/// ```
pub const DEVICE_NGNRNE: u8 = 4;

/// The MAIR_EL1 value: `Attr<n>` in bits `8n+7:8n`, built from [`ATTRIBUTES`] at compile time.
///
/// ```
/// assert_eq!(awk_paging_aarch64::mair::MAIR_EL1, 0x00_04_44_aa_ff);
/// ```
pub const MAIR_EL1: u64 = mair_value(&ATTRIBUTES);

/// Packs an attribute table into a MAIR_EL1 value: entry `n` becomes `Attr<n>` (bits
/// `8n+7:8n`); entries past the eighth are ignored (MAIR_EL1 has eight slots), unused slots stay
/// `0x00`.
///
/// ```
/// use awk_paging_aarch64::mair::{mair_value, Attribute};
/// let t = [Attribute { byte: 0xff, name: "WB" }, Attribute { byte: 0x04, name: "dev" }];
/// assert_eq!(mair_value(&t), 0x04ff);
/// ```
#[must_use]
pub const fn mair_value(table: &[Attribute]) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < table.len() && i < 8 {
        v |= (table[i].byte as u64) << (8 * i);
        i += 1;
    }
    v
}

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
