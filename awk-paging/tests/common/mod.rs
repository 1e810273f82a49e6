//! Shared by the integration tests: a descriptor format with a hierarchical "read-only table"
//! limit, so the core's widening can be tested without a backend.

use awk_paging::arch::{Arch, Entry, Limits};
use awk_paging::emu::EmuArch;
use awk_paging::{AddrError, Attrs, PageSizes, PhyAddr, VirtAddr};

/// A software bit of table entries in the emulator's format: nothing below is writable.
pub const RO_TABLE: u64 = 1 << 9;
/// The emulator format's leaf write bit.
pub const WRITE: u64 = 1 << 2;
/// The emulator format's table bit.
pub const TABLE: u64 = 1 << 1;

/// [`EmuArch`] plus [`RO_TABLE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoTables;

const E: EmuArch = EmuArch { without: None };

// SAFETY: forwards the encoding to `EmuArch`; bit 9 is outside its address field.
unsafe impl Arch for RoTables {
    fn levels(&self) -> u8 {
        E.levels()
    }
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError> {
        E.check_va(va)
    }
    fn pa_bits(&self) -> u32 {
        E.pa_bits()
    }
    fn page_sizes(&self) -> PageSizes {
        E.page_sizes()
    }
    fn decode(&self, raw: u64, level: u8) -> Entry {
        E.decode(raw, level)
    }
    fn table_entry(&self, table: PhyAddr, attrs: Attrs) -> u64 {
        E.table_entry(table, attrs)
    }
    fn table_limits(&self, raw: u64, _level: u8) -> Limits {
        Limits {
            no_write: raw & RO_TABLE != 0,
            ..Limits::NONE
        }
    }
    fn widen_table_entry(&self, raw: u64, attrs: Attrs) -> u64 {
        if attrs.flags.write {
            raw & !RO_TABLE
        } else {
            raw
        }
    }
    fn limit_entry(&self, raw: u64, level: u8, limits: Limits) -> u64 {
        if !limits.no_write {
            raw
        } else if level > 0 && raw & TABLE != 0 {
            raw | RO_TABLE
        } else {
            raw & !WRITE
        }
    }
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64 {
        E.leaf_entry(pa, level, attrs)
    }
    fn leaf_attrs(&self, raw: u64, level: u8) -> Attrs {
        E.leaf_attrs(raw, level)
    }
}
