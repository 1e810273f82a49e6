//! VMSAv8-64 stage-1 descriptor fields, 4 KiB granule (Arm ARM D8.3 "Translation table
//! descriptor formats").
//!
//! | bits | field | meaning here |
//! |---|---|---|
//! | 0 | VALID | |
//! | 1 | TYPE | table (levels 0–2) / page (level 3) = 1; block (levels 1–2) = 0 |
//! | 4:2 | AttrIndx | index into MAIR_EL1 ([`crate::mair`]) |
//! | 7:6 | AP | AP\[2\] read-only, AP\[1\] EL0 access |
//! | 9:8 | SH | shareability (inner shareable = 0b11) |
//! | 10 | AF | access flag (set in every new leaf; cleared by software to age a page when access tracking is on, see [`Tracking`](crate::features::Tracking)) |
//! | 11 | nG | not global (ASID-tagged) |
//! | 47:12 | OA | output address |
//! | 51 | DBM | dirty bit modifier: with TCR_EL1.HD, a write to a leaf with AP\[2\] = 1 clears AP\[2\] instead of faulting (writable leaves in the dirty-tracking mode) |
//! | 52 | Contiguous | hint for aligned runs of 16 entries |
//! | 53 | PXN | privileged execute-never |
//! | 54 | UXN | unprivileged execute-never |
//! | 58:55 | SW | ignored by hardware, for software: bit 55 marks copy-on-write pages, bit 56 ([`bits::SW_DIRTY`]) keeps the dirty state of a leaf made read-only |
//! | 63:59 | NSTable, APTable, UXNTable, PXNTable | table descriptors only; 0 in tables this crate builds, honoured (and pushed down before lifting) in tables it takes over |

use tock_registers::register_bitfields;

// The macro generates undocumented helper items (field constants, value enums' internals).
#[allow(missing_docs)]
mod fields {
    use super::register_bitfields;
    register_bitfields! {u64,
        /// A stage-1 table, block or page descriptor.
        pub DESCRIPTOR [
            /// Valid.
            VALID OFFSET(0) NUMBITS(1) [],
            /// Table/page (1) or block (0).
            TYPE OFFSET(1) NUMBITS(1) [
                /// Block descriptor (levels 1 and 2).
                Block = 0,
                /// Table descriptor (levels 0–2) or page descriptor (level 3).
                TableOrPage = 1
            ],
            /// MAIR_EL1 attribute index.
            ATTR_INDX OFFSET(2) NUMBITS(3) [],
            /// Non-secure.
            NS OFFSET(5) NUMBITS(1) [],
            /// Access permissions.
            AP OFFSET(6) NUMBITS(2) [
                /// EL1 read-write, EL0 none.
                RwEl1 = 0b00,
                /// EL1 and EL0 read-write.
                RwEl1El0 = 0b01,
                /// EL1 read-only, EL0 none.
                RoEl1 = 0b10,
                /// EL1 and EL0 read-only.
                RoEl1El0 = 0b11
            ],
            /// Shareability.
            SH OFFSET(8) NUMBITS(2) [
                /// Non-shareable.
                NonShareable = 0b00,
                /// Outer shareable.
                OuterShareable = 0b10,
                /// Inner shareable.
                InnerShareable = 0b11
            ],
            /// Access flag.
            AF OFFSET(10) NUMBITS(1) [],
            /// Not global.
            NG OFFSET(11) NUMBITS(1) [],
            /// Output address bits 47:12.
            OUTPUT_ADDR OFFSET(12) NUMBITS(36) [],
            /// Dirty bit modifier (FEAT_HAFDBS with TCR_EL1.HD): the hardware clears AP[2] on
            /// the first write instead of raising a Permission fault.
            DBM OFFSET(51) NUMBITS(1) [],
            /// Contiguous hint.
            CONTIGUOUS OFFSET(52) NUMBITS(1) [],
            /// Privileged execute-never.
            PXN OFFSET(53) NUMBITS(1) [],
            /// Unprivileged execute-never.
            UXN OFFSET(54) NUMBITS(1) [],
            /// Software bits.
            SW OFFSET(55) NUMBITS(4) [],
            /// Table: privileged execute-never below.
            PXN_TABLE OFFSET(59) NUMBITS(1) [],
            /// Table: unprivileged execute-never below.
            UXN_TABLE OFFSET(60) NUMBITS(1) [],
            /// Table: access-permission limits below.
            AP_TABLE OFFSET(61) NUMBITS(2) [],
            /// Table: non-secure below.
            NS_TABLE OFFSET(63) NUMBITS(1) []
        ]
    }
}
pub use fields::DESCRIPTOR;

/// A descriptor value read or built through the bitfields.
///
/// ```
/// use awk_paging::{arch::Arch, Flags, PhyAddr};
/// use awk_paging_aarch64::descriptor::{Descriptor, DESCRIPTOR};
/// use awk_paging_aarch64::{mair, A64};
///
/// let raw = A64::default().leaf_entry(PhyAddr::new(0x4000_0000), 0, Flags::DEVICE.into());
/// let d = Descriptor::new(raw);
/// assert!(d.is_set(DESCRIPTOR::VALID) && d.is_set(DESCRIPTOR::AF));
/// assert_eq!(d.read(DESCRIPTOR::ATTR_INDX), u64::from(mair::DEVICE_NGNRE));
/// assert_eq!(d.read_as_enum(DESCRIPTOR::AP), Some(DESCRIPTOR::AP::Value::RwEl1));
/// assert!(d.is_set(DESCRIPTOR::UXN) && d.is_set(DESCRIPTOR::PXN));
/// assert_eq!(d.read(DESCRIPTOR::OUTPUT_ADDR) << 12, 0x4000_0000);
///
/// let mut built = Descriptor::new(0);
/// built.modify(DESCRIPTOR::VALID::SET + DESCRIPTOR::TYPE::TableOrPage);
/// assert_eq!(built.get(), 0b11);
/// ```
pub type Descriptor = tock_registers::LocalRegisterCopy<u64, DESCRIPTOR::Register>;

/// Mask of the output-address field (bits 47:12).
///
/// ```
/// use awk_paging_aarch64::descriptor::{DESCRIPTOR, OA_MASK};
/// assert_eq!(OA_MASK, DESCRIPTOR::OUTPUT_ADDR.mask << DESCRIPTOR::OUTPUT_ADDR.shift);
/// ```
pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Single-bit masks taken from the bitfield definitions above (so those stay the one source of
/// truth) for the encoder's hot path, where plain constants fold better than field arithmetic.
///
/// ```
/// use awk_paging_aarch64::descriptor::bits;
/// assert_eq!(bits::AP_RO, 1 << 7); // AP[2]
/// assert_eq!(bits::AP_EL0, 1 << 6); // AP[1]
/// assert_eq!(bits::UXN | bits::PXN, 0b11 << 53);
/// assert_eq!(bits::DBM, 1 << 51);
/// assert_eq!(bits::SW_DIRTY, 1 << 56);
/// ```
pub mod bits {
    use super::DESCRIPTOR as D;

    /// VALID.
    pub const VALID: u64 = D::VALID::SET.value;
    /// TYPE = table/page.
    pub const TABLE_OR_PAGE: u64 = D::TYPE::TableOrPage.value;
    /// AttrIndx field shift.
    pub const ATTR_INDX_SHIFT: usize = D::ATTR_INDX.shift;
    /// AttrIndx field mask (in place).
    pub const ATTR_INDX_MASK: u64 = D::ATTR_INDX.mask << D::ATTR_INDX.shift;
    /// AP\[1\]: EL0 access.
    pub const AP_EL0: u64 = D::AP::RwEl1El0.value;
    /// AP\[2\]: read-only.
    pub const AP_RO: u64 = D::AP::RoEl1.value;
    /// SH = inner shareable.
    pub const SH_INNER: u64 = D::SH::InnerShareable.value;
    /// SH field mask.
    pub const SH_MASK: u64 = D::SH.mask << D::SH.shift;
    /// Access flag.
    pub const AF: u64 = D::AF::SET.value;
    /// Not global.
    pub const NG: u64 = D::NG::SET.value;
    /// Privileged execute-never.
    pub const PXN: u64 = D::PXN::SET.value;
    /// Unprivileged execute-never.
    pub const UXN: u64 = D::UXN::SET.value;
    /// PXNTable (table descriptors): nothing below executes at EL1.
    pub const PXN_TABLE: u64 = D::PXN_TABLE::SET.value;
    /// UXNTable (table descriptors): nothing below executes at EL0.
    pub const UXN_TABLE: u64 = D::UXN_TABLE::SET.value;
    /// APTable\[0\] (table descriptors): nothing below is accessible from EL0.
    pub const AP_TABLE_NO_EL0: u64 = 1 << D::AP_TABLE.shift;
    /// APTable\[1\] (table descriptors): nothing below is writable.
    pub const AP_TABLE_RO: u64 = 2 << D::AP_TABLE.shift;
    /// Contiguous hint (leaves).
    pub const CONTIGUOUS: u64 = D::CONTIGUOUS::SET.value;
    /// Dirty bit modifier (leaves): with TCR_EL1.HD the hardware records the first write by
    /// clearing AP\[2\] (Arm ARM D8.4, hardware management of the dirty state).
    pub const DBM: u64 = D::DBM::SET.value;
    /// Software dirty bit (leaves; bit 56, the second software bit — bit 55 marks
    /// copy-on-write): set when a dirty leaf loses write permission, so the dirty state
    /// (otherwise recorded as AP\[2\] = 0 of a DBM leaf) is not lost.
    pub const SW_DIRTY: u64 = 1 << (D::SW.shift + 1);
}
