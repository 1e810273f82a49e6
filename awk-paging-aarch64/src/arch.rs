//! The AArch64 stage-1 EL1&0 regime with the 4 KiB granule.

use awk_paging::arch::{Arch, Entry};
use awk_paging::{AddrError, Attrs, MemoryType, PageSize, PageSizes, PhyAddr, VirtAddr};

use crate::descriptor::{Descriptor, DESCRIPTOR as D, OA_MASK};
use crate::mair;

/// Virtual address size (TnSZ = 64 − bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaSize {
    /// 39 bits, 3 levels (root at Arm level 1), T0SZ = 25.
    Bits39,
    /// 48 bits, 4 levels (root at Arm level 0), T0SZ = 16.
    Bits48,
}

impl VaSize {
    /// The number of VA bits.
    ///
    /// ```
    /// assert_eq!(awk_paging_aarch64::VaSize::Bits39.bits(), 39);
    /// ```
    #[must_use]
    pub const fn bits(self) -> u32 {
        match self {
            VaSize::Bits39 => 39,
            VaSize::Bits48 => 48,
        }
    }
}

/// Which half of the address space a table translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// TTBR0: `0 .. 2^bits`.
    Lower,
    /// TTBR1: `2^64 − 2^bits .. 2^64`.
    Upper,
}

/// The AArch64 translation regime of one table.
///
/// ```
/// use awk_paging::{arch::Arch, AddrError, VirtAddr};
/// use awk_paging_aarch64::{Half, VaSize, A64};
/// let lower = A64::new(VaSize::Bits48, Half::Lower);
/// assert_eq!(lower.levels(), 4);
/// assert_eq!(lower.check_va(VirtAddr::new(0xffff_8000_0000_0000)), Err(AddrError::OutOfRange));
/// assert_eq!(lower.check_va(VirtAddr::new(0x0001_0000_0000_0000)), Err(AddrError::NonCanonical));
/// let upper = A64::new(VaSize::Bits39, Half::Upper);
/// assert_eq!(upper.levels(), 3);
/// assert!(upper.check_va(VirtAddr::new(0xffff_ff80_0000_0000)).is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct A64 {
    va: VaSize,
    half: Half,
    pa_bits: u8,
}

impl Default for A64 {
    fn default() -> Self {
        A64::new(VaSize::Bits48, Half::Lower)
    }
}

impl A64 {
    /// A regime with 48-bit output addresses.
    ///
    /// ```
    /// use awk_paging::arch::Arch;
    /// let r = awk_paging_aarch64::A64::new(awk_paging_aarch64::VaSize::Bits48, awk_paging_aarch64::Half::Lower);
    /// assert_eq!(r.pa_bits(), 48);
    /// ```
    #[must_use]
    pub const fn new(va: VaSize, half: Half) -> Self {
        A64 {
            va,
            half,
            pa_bits: 48,
        }
    }

    /// Limits output addresses to `bits` (from ID_AA64MMFR0_EL1.PARange; see
    /// [`crate::mmu::pa_bits_of_parange`]); clamped to 32..=48 (52-bit output needs FEAT_LPA2,
    /// which this descriptor layout does not use).
    ///
    /// ```
    /// use awk_paging::arch::Arch;
    /// let r = awk_paging_aarch64::A64::default().with_pa_bits(40);
    /// assert_eq!(r.pa_bits(), 40);
    /// ```
    #[must_use]
    pub const fn with_pa_bits(mut self, bits: u8) -> Self {
        self.pa_bits = if bits < 32 {
            32
        } else if bits > 48 {
            48
        } else {
            bits
        };
        self
    }

    /// The VA size.
    #[must_use]
    pub const fn va_size(&self) -> VaSize {
        self.va
    }

    /// The half this table translates.
    #[must_use]
    pub const fn half(&self) -> Half {
        self.half
    }

    /// Fields that, when they change on a valid leaf, need break-before-make: output address,
    /// memory attributes, shareability and nG (Arm ARM D8.16.1).
    const BBM_FIELDS: u64 = OA_MASK | (0b111 << 2) | (0b11 << 8) | (1 << 11);
}

// SAFETY: `decode` masks output addresses to bits 47:12 (below 2^48 >= 2^pa_bits for addresses
// this type encodes); encodings follow the Arm ARM descriptor formats.
unsafe impl Arch for A64 {
    #[inline(always)]
    fn levels(&self) -> u8 {
        match self.va {
            VaSize::Bits39 => 3,
            VaSize::Bits48 => 4,
        }
    }

    #[inline(always)]
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError> {
        let top = (va.as_u64() as i64) >> self.va.bits();
        match (top, self.half) {
            (0, Half::Lower) | (-1, Half::Upper) => Ok(()),
            (0, Half::Upper) | (-1, Half::Lower) => Err(AddrError::OutOfRange),
            _ => Err(AddrError::NonCanonical),
        }
    }

    #[inline(always)]
    fn pa_bits(&self) -> u32 {
        u32::from(self.pa_bits)
    }

    #[inline(always)]
    fn page_sizes(&self) -> PageSizes {
        PageSizes::ALL
    }

    #[inline(always)]
    fn decode(&self, raw: u64, level: u8) -> Entry {
        // bits[1:0]: 0b11 table (levels 3..1 here) or page (level 0 here); 0b01 block at
        // Arm levels 1 and 2 (our 2 and 1), reserved (invalid) elsewhere.
        match (raw & 0b11, level) {
            (0b11, 0) => Entry::Leaf(PhyAddr::new(raw & OA_MASK)),
            (0b11, _) => Entry::Table(PhyAddr::new(raw & OA_MASK)),
            (0b01, 1 | 2) => {
                let size = if level == 1 {
                    PageSize::Size2M
                } else {
                    PageSize::Size1G
                };
                Entry::Leaf(PhyAddr::new(raw & OA_MASK & !size.offset_mask()))
            }
            _ => Entry::Invalid,
        }
    }

    #[inline(always)]
    fn table_entry(&self, table: PhyAddr, _attrs: Attrs) -> u64 {
        // No APTable/XNTable limits: the leaf decides.
        (D::VALID::SET + D::TYPE::TableOrPage).value | (table.as_u64() & OA_MASK)
    }

    #[inline(always)]
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64 {
        let f = attrs.flags;
        let mt = f.memory_type();
        let ap = match (f.write, attrs.user) {
            (true, false) => D::AP::RwEl1,
            (true, true) => D::AP::RwEl1El0,
            (false, false) => D::AP::RoEl1,
            (false, true) => D::AP::RoEl1El0,
        };
        let exec = f.execute && mt != MemoryType::Device;
        // Kernel pages never run at EL0; user pages never run at EL1.
        let uxn = !(exec && attrs.user);
        let pxn = !exec || attrs.user;
        let kind = if level == 0 {
            D::TYPE::TableOrPage
        } else {
            D::TYPE::Block
        };
        let fields = D::VALID::SET
            + kind
            + D::ATTR_INDX.val(u64::from(mair::index_of(mt)))
            + ap
            + D::SH::InnerShareable
            + D::AF::SET
            + D::NG.val(u64::from(!attrs.global))
            + D::PXN.val(u64::from(pxn))
            + D::UXN.val(u64::from(uxn));
        fields.value | (pa.as_u64() & OA_MASK)
    }

    #[inline]
    fn leaf_attrs(&self, raw: u64, _level: u8) -> Attrs {
        let d = Descriptor::new(raw);
        let mt = mair::memory_type(d.read(D::ATTR_INDX) as u8).unwrap_or(MemoryType::Device);
        let ap = d.read(D::AP);
        let (write, user) = (ap & 0b10 == 0, ap & 0b01 != 0);
        let execute = if user {
            !d.is_set(D::UXN)
        } else {
            !d.is_set(D::PXN)
        };
        Attrs {
            flags: mt.with_permissions(write, execute),
            user,
            global: !d.is_set(D::NG),
        }
    }

    #[inline]
    fn needs_break_before_make(&self, old: u64, new: u64, _level: u8) -> bool {
        (old ^ new) & Self::BBM_FIELDS != 0
    }
}
