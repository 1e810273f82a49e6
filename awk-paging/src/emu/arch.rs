//! A deliberately plain descriptor format for testing the shared walker without any real
//! architecture's quirks.
//!
//! Bits: 0 valid, 1 table (levels above 0), 2 write, 3 execute, 4–5 memory type, 6 user,
//! 7 global, 8 software (copy-on-write mark), 12–51 output address. 4 levels, 48-bit canonical VAs, 52-bit PAs, all page sizes.

use crate::arch::{check_sign_extended, Arch, Entry};
use crate::{AddrError, Attrs, MemoryType, PageSizes, PhyAddr, VirtAddr};

const VALID: u64 = 1 << 0;
const TABLE: u64 = 1 << 1;
const WRITE: u64 = 1 << 2;
const EXEC: u64 = 1 << 3;
const MT_SHIFT: u32 = 4;
const USER: u64 = 1 << 6;
const GLOBAL: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The emulator's reference descriptor format (see the module docs).
///
/// ```
/// use awk_paging::{arch::Arch, emu::EmuArch, VirtAddr};
/// let a = EmuArch::default();
/// assert_eq!(a.levels(), 4);
/// assert!(a.check_va(VirtAddr::new(0xffff_8000_0000_0000)).is_ok());
/// assert!(a.check_va(VirtAddr::new(0x0001_0000_0000_0000)).is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmuArch {
    /// Leaf sizes to refuse (to exercise `PageSizeNotSupported`).
    pub without: Option<crate::PageSize>,
}

// SAFETY: decode masks output addresses to 52 bits; the format is only read by the emulator.
unsafe impl Arch for EmuArch {
    #[inline]
    fn levels(&self) -> u8 {
        4
    }

    #[inline]
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError> {
        // Canonical: bits 63..=47 all equal (sign extension of bit 47).
        check_sign_extended(va, 48)
    }

    #[inline]
    fn pa_bits(&self) -> u32 {
        52
    }

    #[inline]
    fn page_sizes(&self) -> PageSizes {
        match self.without {
            Some(s) => PageSizes::ALL.without(s),
            None => PageSizes::ALL,
        }
    }

    #[inline]
    fn decode(&self, raw: u64, level: u8) -> Entry {
        if raw & VALID == 0 {
            Entry::Invalid
        } else if level > 0 && raw & TABLE != 0 {
            Entry::Table(PhyAddr::new(raw & ADDR))
        } else {
            Entry::Leaf(PhyAddr::new(raw & ADDR))
        }
    }

    #[inline]
    fn table_entry(&self, table: PhyAddr, attrs: Attrs) -> u64 {
        VALID | TABLE | if attrs.user { USER } else { 0 } | (table.as_u64() & ADDR)
    }

    #[inline]
    fn widen_table_entry(&self, raw: u64, attrs: Attrs) -> u64 {
        if attrs.user {
            raw | USER
        } else {
            raw
        }
    }

    #[inline]
    fn software_bit(&self) -> u64 {
        1 << 8
    }

    #[inline]
    fn leaf_entry(&self, pa: PhyAddr, _level: u8, attrs: Attrs) -> u64 {
        let f = attrs.flags;
        let mt = match f.memory_type() {
            MemoryType::WriteBack => 0,
            MemoryType::WriteThrough => 1,
            MemoryType::Uncached => 2,
            MemoryType::Device => 3,
        };
        VALID
            | (pa.as_u64() & ADDR)
            | if f.write { WRITE } else { 0 }
            | if f.execute { EXEC } else { 0 }
            | mt << MT_SHIFT
            | if attrs.user { USER } else { 0 }
            | if attrs.global { GLOBAL } else { 0 }
    }

    #[inline]
    fn leaf_attrs(&self, raw: u64, _level: u8) -> Attrs {
        let mt = match (raw >> MT_SHIFT) & 3 {
            0 => MemoryType::WriteBack,
            1 => MemoryType::WriteThrough,
            2 => MemoryType::Uncached,
            _ => MemoryType::Device,
        };
        Attrs {
            flags: mt.with_permissions(raw & WRITE != 0, raw & EXEC != 0),
            user: raw & USER != 0,
            global: raw & GLOBAL != 0,
        }
    }
}
