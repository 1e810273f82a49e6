//! The contract between the shared walker and an architecture's descriptor format.
//!
//! Both supported formats have 4 KiB tables of 512 eight-byte entries, 9 VA bits per level and
//! leaves possible at levels 0 (4 KiB), 1 (2 MiB) and 2 (1 GiB). What differs — and what an
//! [`Arch`] provides — is the bit layout of entries, the valid VA ranges, the physical-address
//! width and the break-before-make rules. Architecture crates implement it; everything else
//! (walking, creating and freeing tables, rollback, TLB tokens) lives once in
//! [`PageTable`](crate::PageTable).

use crate::{AddrError, Attrs, PageSizes, PhyAddr, VirtAddr};

/// What one raw entry means at a given level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not valid: the walk stops with a translation fault.
    Invalid,
    /// Points to the next-level table at this physical address.
    Table(PhyAddr),
    /// Maps a page (or block) starting at this physical address.
    Leaf(PhyAddr),
}

/// An architecture's translation regime: descriptor encoding and address rules.
///
/// Values are small `Copy` configurations (e.g. the AArch64 VA size); methods are called on the
/// hot path and should be `#[inline]`.
///
/// # Safety
///
/// [`Arch::decode`] must return physical addresses below `1 << pa_bits()`; the encodings must be
/// what the hardware walker reads (a wrong encoding is a memory-safety bug on bare metal).
pub unsafe trait Arch: Copy {
    /// Number of translation levels; the root table is at level `levels() - 1`.
    fn levels(&self) -> u8;

    /// Checks that `va` is translated by this regime (canonical and in range).
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError>;

    /// Output-address width in bits.
    fn pa_bits(&self) -> u32;

    /// Leaf sizes this regime (and CPU) supports.
    fn page_sizes(&self) -> PageSizes;

    /// Decodes a raw entry found at `level`.
    fn decode(&self, raw: u64, level: u8) -> Entry;

    /// A table entry pointing at `table`, for a new table created on the walk to a mapping with
    /// `attrs`.
    fn table_entry(&self, table: PhyAddr, attrs: Attrs) -> u64;

    /// `raw` (an existing table entry) with whatever it must additionally permit so a new leaf with
    /// `attrs` below it takes effect (x86: the U/S bit for user leaves). Default: unchanged.
    #[inline]
    fn widen_table_entry(&self, raw: u64, _attrs: Attrs) -> u64 {
        raw
    }

    /// A leaf entry at `level` mapping `pa` with `attrs` (already validated by
    /// [`Attrs::validate`]).
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64;

    /// The attributes a leaf entry found at `level` grants.
    fn leaf_attrs(&self, raw: u64, level: u8) -> Attrs;

    /// The virtual address whose table indices (and offset) are the low bits of `bits` — how a
    /// walk names what it finds. Default: sign-extended from the highest translated bit (x86
    /// canonical form; both halves of a 48-bit space).
    #[inline]
    fn va_from_bits(&self, bits: u64) -> VirtAddr {
        let span = 12 + 9 * u32::from(self.levels());
        let shift = 64 - span;
        VirtAddr::new((((bits << shift) as i64) >> shift) as u64)
    }

    /// Whether replacing valid leaf `old` by `new` needs break-before-make (write invalid, flush,
    /// then write `new`). Default: whenever the output address or memory type changes, which is
    /// what AArch64 requires (Arm ARM D8.16.1); x86 can answer `false`.
    #[inline]
    fn needs_break_before_make(&self, old: u64, new: u64, level: u8) -> bool {
        let (a, b) = (self.decode(old, level), self.decode(new, level));
        a != b
            || self.leaf_attrs(old, level).flags.memory_type()
                != self.leaf_attrs(new, level).flags.memory_type()
    }
}

/// The index into the table at `level` for `va` (9 bits per level above the 4 KiB offset).
///
/// ```
/// use awk_paging::{arch::table_index, VirtAddr};
/// let va = VirtAddr::new(0x0000_7fff_ffff_f000);
/// assert_eq!(table_index(va, 3), 255);
/// assert_eq!(table_index(va, 0), 511);
/// ```
#[inline(always)]
#[must_use]
pub const fn table_index(va: VirtAddr, level: u8) -> usize {
    ((va.as_u64() >> (12 + 9 * level as u32)) & 0x1ff) as usize
}

/// Checks that `va` is the sign extension of its low `bits` bits (x86 canonical form with
/// `bits = 48`; both halves of a `bits`-wide space).
///
/// ```
/// use awk_paging::{arch::check_sign_extended, AddrError, VirtAddr};
/// assert!(check_sign_extended(VirtAddr::new(0xffff_8000_0000_0000), 48).is_ok());
/// assert_eq!(check_sign_extended(VirtAddr::new(0x0000_8000_0000_0000), 48), Err(AddrError::NonCanonical));
/// ```
#[inline(always)]
pub const fn check_sign_extended(va: VirtAddr, bits: u32) -> Result<(), AddrError> {
    let top = (va.as_u64() as i64) >> (bits - 1);
    if top == 0 || top == -1 {
        Ok(())
    } else {
        Err(AddrError::NonCanonical)
    }
}
