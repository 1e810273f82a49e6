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

/// How the memory types map to the indices of one MAIR_EL1 value: the index the encoder writes
/// for each [`MemoryType`], and the memory type each of the eight indices decodes to. Carried by
/// the regime ([`A64::with_mair`](crate::A64::with_mair)), so a kernel keeps its own MAIR_EL1 when
/// it hands its live tables over.
///
/// [`MairLayout::DEFAULT`] is this crate's own table ([`ATTRIBUTES`], [`MAIR_EL1`]);
/// [`MairLayout::from_mair`] reads any other value.
///
/// ```
/// use awk_paging::MemoryType;
/// use awk_paging_aarch64::mair::MairLayout;
/// // A kernel's layout: 0 = Device-nGnRnE, 1 = Normal NC, 2 = Normal WB, 3 = Normal WT,
/// // 4 = Device-nGnRE.
/// let l = MairLayout::from_mair(0x04_bb_ff_44_00).unwrap();
/// assert_eq!(l.index_of(MemoryType::WriteBack), 2);
/// assert_eq!(l.index_of(MemoryType::Device), 4); // nGnRE preferred over nGnRnE
/// assert_eq!(l.memory_type(0), Ok(MemoryType::Device));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MairLayout {
    /// The MAIR_EL1 value described.
    value: u64,
    /// The index for each memory type, by [`slot`].
    index: [u8; 4],
    /// The memory type of each index, by [`slot`], or [`NONE`].
    decode: [u8; 8],
}

/// No memory type: an index whose attribute this crate does not use.
const NONE: u8 = 0xff;

/// The memory types by slot number (the inverse of [`slot`]).
const TYPES: [MemoryType; 4] = [
    MemoryType::WriteBack,
    MemoryType::WriteThrough,
    MemoryType::Uncached,
    MemoryType::Device,
];

/// A memory type's position in [`MairLayout`]'s tables.
#[inline(always)]
const fn slot(mt: MemoryType) -> usize {
    match mt {
        MemoryType::WriteBack => 0,
        MemoryType::WriteThrough => 1,
        MemoryType::Uncached => 2,
        MemoryType::Device => 3,
    }
}

/// `Attr<index>` of a MAIR_EL1 value (`index` taken modulo 8, as the 3-bit AttrIndx field
/// always is).
pub(crate) const fn attr_byte(value: u64, index: u64) -> u8 {
    (value >> (8 * (index & 7))) as u8
}

/// What an `Attr<n>` byte is, as far as this crate's memory types go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One of the four memory types; `preferred` for the one the encoder picks first
    /// (Device-nGnRE over Device-nGnRnE; every Normal kind is preferred).
    Type { mt: MemoryType, preferred: bool },
    /// Anything else: mixed inner/outer policies, Device-nGRE/GRE (which allow gathering or
    /// reordering), tagged Normal memory (FEAT_MTE `0xf0`), reserved encodings.
    Other,
}

/// The cacheability of one nibble of a Normal attribute (Arm ARM, MAIR_EL1 `Attr<n>`):
/// `0b0100` non-cacheable; `0b11RW`, `0b01RW` (RW ≠ 00) write-back non-transient, transient;
/// `0b10RW`, `0b00RW` (RW ≠ 00) write-through non-transient, transient.
///
/// The crate's one MAIR nibble parser: [`MairLayout`] classifies bytes with it (both nibbles),
/// and so does [`mair_memory_type`](crate::mair_memory_type) (the inner nibble) for
/// [`ForeignMair`](crate::ForeignMair).
pub(crate) const fn nibble(n: u8) -> Option<MemoryType> {
    let (policy, alloc) = (n >> 2, n & 0b11);
    match (policy, alloc) {
        (0b01, 0) => Some(MemoryType::Uncached),
        (0b11 | 0b01, _) => Some(MemoryType::WriteBack),
        (0b10, _) => Some(MemoryType::WriteThrough),
        (0b00, a) if a != 0 => Some(MemoryType::WriteThrough),
        _ => None,
    }
}

/// Classifies one `Attr<n>` byte. A high nibble of zero is Device memory (low nibble
/// `0b0000` nGnRnE, `0b0100` nGnRE; Arm ARM, MAIR_EL1); otherwise Normal memory, usable only
/// when inner and outer policies agree.
const fn kind(byte: u8) -> Kind {
    let (outer, inner) = (byte >> 4, byte & 0xf);
    if outer == 0 {
        return match inner {
            0b0100 => Kind::Type {
                mt: MemoryType::Device,
                preferred: true,
            },
            0b0000 => Kind::Type {
                mt: MemoryType::Device,
                preferred: false,
            },
            _ => Kind::Other,
        };
    }
    match (nibble(outer), nibble(inner)) {
        (Some(o), Some(i)) if slot(o) == slot(i) => Kind::Type {
            mt: o,
            preferred: true,
        },
        _ => Kind::Other,
    }
}

/// Why a MAIR_EL1 value cannot serve this crate.
///
/// ```
/// use awk_paging::MemoryType;
/// use awk_paging_aarch64::mair::{MairError, MairLayout};
/// // Normal WB, WT and NC, but no Device attribute (a zero byte would be Device-nGnRnE, so
/// // every slot is taken).
/// assert_eq!(
///     MairLayout::from_mair(0x44_44_44_44_44_44_aa_ff),
///     Err(MairError::Missing(MemoryType::Device))
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MairError {
    /// No index holds an attribute suitable for this memory type (Normal memory with equal
    /// inner and outer policy of that kind; for [`MemoryType::Device`], Device-nGnRE or
    /// Device-nGnRnE). The first type missing, in the order write-back, write-through,
    /// non-cacheable, device.
    Missing(MemoryType),
}

impl core::fmt::Display for MairError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MairError::Missing(mt) => {
                write!(f, "MAIR_EL1 has no attribute suitable for {mt:?} memory")
            }
        }
    }
}

/// An AttrIndx whose MAIR_EL1 attribute is none of this crate's memory types.
///
/// ```
/// use awk_paging_aarch64::mair::{MairLayout, UnknownAttr};
/// let l = MairLayout::from_mair(0xf0_04_44_aa_ff).unwrap();
/// assert_eq!(l.memory_type(4), Err(UnknownAttr { index: 4, byte: 0xf0 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownAttr {
    /// The index (0..=7; larger indices are reported with `byte` 0).
    pub index: u8,
    /// Its `Attr<n>` byte.
    pub byte: u8,
}

impl core::fmt::Display for UnknownAttr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "AttrIndx {} (MAIR_EL1 byte {:#04x}) is none of the memory types this crate uses",
            self.index, self.byte
        )
    }
}

impl MairLayout {
    /// This crate's own layout: [`ATTRIBUTES`] at the indices [`NORMAL_WB`] ..
    /// [`DEVICE_NGNRNE`], MAIR_EL1 = [`MAIR_EL1`].
    ///
    /// ```
    /// use awk_paging_aarch64::mair::{MairLayout, MAIR_EL1};
    /// assert_eq!(MairLayout::DEFAULT.value(), MAIR_EL1);
    /// assert_eq!(MairLayout::from_mair(MAIR_EL1), Ok(MairLayout::DEFAULT));
    /// ```
    pub const DEFAULT: MairLayout = match MairLayout::from_mair(MAIR_EL1) {
        Ok(l) => l,
        Err(_) => panic!("the crate's own MAIR_EL1 lacks a memory type"),
    };

    /// Reads a MAIR_EL1 value (the kernel's, as it is programmed): for each memory type, the
    /// lowest index holding a suitable attribute (Device-nGnRE preferred over Device-nGnRnE for
    /// [`MemoryType::Device`]); for each index, the memory type its attribute is, if any.
    ///
    /// # Errors
    ///
    /// [`MairError::Missing`] with the first memory type no index suits.
    ///
    /// ```
    /// use awk_paging::MemoryType;
    /// use awk_paging_aarch64::mair::MairLayout;
    /// // Device-nGnRnE only: used for Device.
    /// let l = MairLayout::from_mair(0x00_44_aa_ff).unwrap();
    /// assert_eq!(l.index_of(MemoryType::Device), 3);
    /// ```
    pub const fn from_mair(value: u64) -> Result<MairLayout, MairError> {
        MairLayout::read(value, false)
    }

    /// [`from_mair`](Self::from_mair), except that when no index holds a write-through
    /// attribute, [`MemoryType::WriteThrough`] is encoded with the non-cacheable one: nothing
    /// is cached, which is stronger than write-through (never stale), only slower. Many
    /// kernels program no write-through attribute at all (awkernel's MAIR_EL1 is `0x44_04_ff`:
    /// write-back, Device-nGnRE, non-cacheable). Such pages read back as
    /// [`MemoryType::Uncached`] (the index decodes as what it holds).
    ///
    /// # Errors
    ///
    /// [`MairError::Missing`] for a missing write-back, non-cacheable or device attribute.
    ///
    /// ```
    /// use awk_paging::MemoryType;
    /// use awk_paging_aarch64::mair::{MairError, MairLayout};
    /// let awkernel = 0x44_04_ff;
    /// assert_eq!(
    ///     MairLayout::from_mair(awkernel),
    ///     Err(MairError::Missing(MemoryType::WriteThrough))
    /// );
    /// let l = MairLayout::from_mair_uncached_write_through(awkernel).unwrap();
    /// assert_eq!(l.index_of(MemoryType::WriteThrough), 2);
    /// assert_eq!(l.index_of(MemoryType::Device), 1);
    /// ```
    pub const fn from_mair_uncached_write_through(value: u64) -> Result<MairLayout, MairError> {
        MairLayout::read(value, true)
    }

    /// [`from_mair`](Self::from_mair), with the write-through substitute if `substitute`.
    const fn read(value: u64, substitute: bool) -> Result<MairLayout, MairError> {
        let mut index = [NONE; 4];
        let mut decode = [NONE; 8];
        let mut device_preferred = false;
        let mut i = 0;
        while i < 8 {
            let byte = attr_byte(value, i as u64);
            if let Kind::Type { mt, preferred } = kind(byte) {
                let s = slot(mt);
                decode[i] = s as u8;
                let better = index[s] == NONE
                    || (matches!(mt, MemoryType::Device) && preferred && !device_preferred);
                if better {
                    index[s] = i as u8;
                    if matches!(mt, MemoryType::Device) {
                        device_preferred = preferred;
                    }
                }
            }
            i += 1;
        }
        let (wt, nc) = (slot(MemoryType::WriteThrough), slot(MemoryType::Uncached));
        if substitute && index[wt] == NONE {
            index[wt] = index[nc];
        }
        let mut s = 0;
        while s < 4 {
            // With the substitute, write-through is missing only with non-cacheable: name that.
            if index[s] == NONE && !(substitute && s == wt) {
                return Err(MairError::Missing(TYPES[s]));
            }
            s += 1;
        }
        Ok(MairLayout {
            value,
            index,
            decode,
        })
    }

    /// The MAIR_EL1 value this layout describes (what the kernel programs).
    ///
    /// ```
    /// use awk_paging_aarch64::mair::MairLayout;
    /// assert_eq!(MairLayout::from_mair(0x04_44_aa_ff).unwrap().value(), 0x04_44_aa_ff);
    /// ```
    #[must_use]
    pub const fn value(&self) -> u64 {
        self.value
    }

    /// The AttrIndx the encoder writes for `mt`.
    ///
    /// ```
    /// use awk_paging::MemoryType;
    /// use awk_paging_aarch64::mair::{MairLayout, NORMAL_NC};
    /// assert_eq!(MairLayout::DEFAULT.index_of(MemoryType::Uncached), NORMAL_NC);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn index_of(&self, mt: MemoryType) -> u8 {
        self.index[slot(mt)]
    }

    /// The memory type AttrIndx `index` stands for.
    ///
    /// # Errors
    ///
    /// [`UnknownAttr`] when the attribute at `index` is none of the crate's memory types (or
    /// `index` is above 7).
    ///
    /// ```
    /// use awk_paging::MemoryType;
    /// use awk_paging_aarch64::mair::{MairLayout, UnknownAttr};
    /// let l = MairLayout::DEFAULT;
    /// assert_eq!(l.memory_type(4), Ok(MemoryType::Device));
    /// assert_eq!(l.memory_type(8), Err(UnknownAttr { index: 8, byte: 0 }));
    /// // Mixed inner/outer policy (inner WB, outer NC): none of the crate's types.
    /// let k = MairLayout::from_mair(0x4f_04_44_aa_ff).unwrap();
    /// assert_eq!(k.memory_type(4), Err(UnknownAttr { index: 4, byte: 0x4f }));
    /// ```
    pub const fn memory_type(&self, index: u8) -> Result<MemoryType, UnknownAttr> {
        if index >= 8 {
            return Err(UnknownAttr { index, byte: 0 });
        }
        match self.decode[index as usize] {
            NONE => Err(UnknownAttr {
                index,
                byte: (self.value >> (8 * index)) as u8,
            }),
            s => Ok(TYPES[s as usize]),
        }
    }
}

impl Default for MairLayout {
    fn default() -> Self {
        MairLayout::DEFAULT
    }
}
