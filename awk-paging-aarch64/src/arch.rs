//! The AArch64 stage-1 EL1&0 regime with the 4 KiB granule (Arm ARM D8 "The AArch64 Virtual
//! Memory System Architecture").
//!
//! # Levels
//!
//! The shared walker numbers levels from the leaf; Arm numbers them from the root:
//!
//! | ours | Arm | entry size | bits\[1:0\] = 0b11 | bits\[1:0\] = 0b01 |
//! |---|---|---|---|---|
//! | 3 | L0 (48-bit root) | 512 GiB | table | reserved → invalid (no blocks without FEAT_LPA2) |
//! | 2 | L1 (39-bit root) | 1 GiB | table | 1 GiB block |
//! | 1 | L2 | 2 MiB | table | 2 MiB block |
//! | 0 | L3 | 4 KiB | page | reserved → invalid |
//!
//! # Leaf encoding (Arm ARM D8.3 "Translation table descriptor formats")
//!
//! - AttrIndx from the regime's [`MairLayout`](crate::mair::MairLayout) (by default the crate's own, [`crate::mair::index_of`]) of [`Flags::memory_type`](awk_paging::Flags::memory_type).
//! - SH = 0b11 (inner shareable) for every leaf. Normal cacheable memory needs it for coherence
//!   between CPUs; for Device and Normal non-cacheable memory the architecture ignores the SH
//!   field and treats every access as Outer Shareable (Arm ARM, "Memory types and attributes"),
//!   so the one value is harmless there and keeps break-before-make comparisons simple.
//! - AF = 1 in every new leaf. What a leaf with AF = 0 means depends on the regime's
//!   [`Tracking`] mode (below).
//! - AP\[2\] = 1 when not writable; AP\[1\] = 1 for user (EL0-accessible) pages. In the
//!   [`Tracking::HardwareAccessDirty`] mode, writable leaves also carry DBM (below).
//! - Kernel pages (`user == false`) always have UXN = 1; executable kernel pages have PXN = 0.
//!   User pages always have PXN = 1 (EL1 never runs EL0 code); executable user pages have UXN = 0.
//!   Device memory is never executable (rejected before encoding, and forced XN here too).
//! - nG = 1 unless the mapping is global.
//!
//! # Access flag and dirty state (Arm ARM D8.4, hardware management of the Access flag and dirty state)
//!
//! The architecture records accesses in AF (bit 10): a translation through a leaf with AF = 0
//! raises an Access flag fault, unless TCR_EL1.HA = 1 (FEAT_HAFDBS), when the walk sets AF in
//! the descriptor instead. With TCR_EL1.HD = 1 as well, a leaf with DBM (bit 51) = 1 and
//! AP\[2\] = 1 is *writable-clean*: the first write clears AP\[2\] (now *writable-dirty*)
//! instead of raising a Permission fault. The hardware only ever sets AF and clears AP\[2\]
//! of DBM leaves, each with an atomic update of the descriptor. [`A64::with_tracking`] picks
//! what the regime expects ([`Tracking`]):
//!
//! | mode | AF = 0 leaf | writable leaf | accessed | dirty | hardware writes |
//! |---|---|---|---|---|---|
//! | `Off` (default) | no mapping | AP\[2\] = 0 | AF | always | never |
//! | `SoftwareAccess` | mapping (aged) | AP\[2\] = 0 | AF | always | never |
//! | `HardwareAccess` | mapping (aged) | AP\[2\] = 0 | AF | always | AF |
//! | `HardwareAccessDirty` | mapping (aged) | DBM = 1; user AP\[2\] = 1 (clean), kernel AP\[2\] = 0 | AF | AP\[2\] = 0 or SW_DIRTY | AF, AP\[2\] |
//!
//! - Kernel leaves are created writable-dirty (and AF = 1): settled, the hardware has nothing
//!   left to write in them, so they are updated with plain stores, as x86 kernel leaves are
//!   created Accessed and Dirty. User leaves are created writable-clean, so the kernel learns
//!   which pages were written ([`UserSpace::clear_accessed_dirty`](awk_paging::space::UserSpace::clear_accessed_dirty)
//!   sets AP\[2\] again to clean one).
//! - A leaf is writable when AP\[2\] = 0, or when DBM = 1 in the dirty-tracking mode (without
//!   TCR_EL1.HD the hardware ignores DBM: such a leaf is read-only); APTable limits still win.
//! - A dirty leaf that loses write permission (protect, fork) keeps its dirty state in the
//!   software bit 56 ([`bits::SW_DIRTY`](crate::descriptor::bits::SW_DIRTY)); clearing the
//!   dirty record clears it too.
//! - Clearing AF ages a page; in `SoftwareAccess` mode its next access faults and the kernel
//!   sets AF again with [`UserSpace::set_accessed`](awk_paging::space::UserSpace::set_accessed).
//!
//! # Break-before-make
//!
//! Arm ARM D8.16.1 "Using break-before-make when updating translation table entries": replacing
//! a valid entry by another valid one needs *invalid → TLBI → new* when the output address, the
//! memory type or cacheability, the shareability or the nG bit changes. Permission-only changes
//! (AP, UXN, PXN) may be written in place. [`A64`] therefore compares those fields directly
//! (a superset of the core's default, which compares output address and [`MemoryType`]).

use awk_paging::arch::{Arch, ContiguousHint, Entry, Limits};
use awk_paging::{AddrError, Attrs, MemoryType, PageSize, PageSizes, PhyAddr, VirtAddr};

use crate::descriptor::{bits as b, OA_MASK};
use crate::features::Tracking;
use crate::mair;

/// Virtual address size (TnSZ = 64 − bits).
///
/// ```
/// use awk_paging::arch::Arch;
/// use awk_paging_aarch64::{Half, VaSize, A64};
/// assert_eq!(A64::new(VaSize::Bits39, Half::Lower).levels(), 3);
/// assert_eq!(A64::new(VaSize::Bits48, Half::Lower).levels(), 4);
/// ```
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
///
/// ```
/// use awk_paging::{arch::Arch, AddrError, VirtAddr};
/// use awk_paging_aarch64::{Half, VaSize, A64};
/// let kernel = A64::new(VaSize::Bits48, Half::Upper);
/// assert!(kernel.check_va(VirtAddr::new(0xffff_0000_0000_0000)).is_ok());
/// assert_eq!(kernel.check_va(VirtAddr::new(0x1000)), Err(AddrError::OutOfRange));
/// ```
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
    /// The output-address bits at or above the PA size: an entry with any of them set raises
    /// an Address size fault (derived from `pa_bits`, kept so `decode` tests one mask).
    above_pa: u64,
    /// Which AttrIndx each memory type uses (the kernel's MAIR_EL1 layout).
    mair: mair::MairLayout,
    /// How accesses and writes are recorded (AF, DBM).
    tracking: Tracking,
}

/// The output-address bits at or above `bits` (of 32..=48).
const fn above_pa(bits: u8) -> u64 {
    OA_MASK & !((1u64 << bits) - 1)
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
            above_pa: above_pa(48),
            mair: mair::MairLayout::DEFAULT,
            tracking: Tracking::Off,
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
        self.above_pa = above_pa(self.pa_bits);
        self
    }

    /// Encodes and decodes memory types through `layout` (a kernel's own MAIR_EL1, read with
    /// [`MairLayout::from_mair`](mair::MairLayout::from_mair)) instead of the crate's
    /// [`MairLayout::DEFAULT`](mair::MairLayout::DEFAULT).
    ///
    /// ```
    /// use awk_paging::{arch::Arch, Attrs, Flags, PhyAddr};
    /// use awk_paging_aarch64::{mair::MairLayout, A64};
    /// let kernel = MairLayout::from_mair(0x04_bb_ff_44_00).unwrap(); // WB at index 2
    /// let r = A64::default().with_mair(kernel);
    /// let d = r.leaf_entry(PhyAddr::new(0x4000_0000), 0, Attrs::from(Flags::RW));
    /// assert_eq!((d >> 2) & 7, 2);
    /// assert_eq!(r.leaf_attrs(d, 0).flags, Flags::RW);
    /// ```
    #[must_use]
    pub const fn with_mair(mut self, layout: mair::MairLayout) -> Self {
        self.mair = layout;
        self
    }

    /// The memory-attribute layout this regime encodes through.
    ///
    /// ```
    /// use awk_paging_aarch64::{mair::MairLayout, A64};
    /// assert_eq!(A64::default().mair(), MairLayout::DEFAULT);
    /// ```
    #[must_use]
    pub const fn mair(&self) -> mair::MairLayout {
        self.mair
    }

    /// Records accesses (and writes) as `tracking` says: the mode must match the TCR_EL1.HA /
    /// HD bits the kernel sets ([`Tracking::tcr_bits`]). See the module docs, "Access flag and
    /// dirty state".
    ///
    /// ```
    /// use awk_paging::{arch::Arch, Attrs, Flags, PhyAddr};
    /// use awk_paging_aarch64::descriptor::bits;
    /// use awk_paging_aarch64::{features::Tracking, A64};
    /// let r = A64::default().with_tracking(Tracking::HardwareAccessDirty);
    /// let user_rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// let d = r.leaf_entry(PhyAddr::new(0x4000_0000), 0, user_rw);
    /// assert_eq!(d & (bits::DBM | bits::AP_RO), bits::DBM | bits::AP_RO); // writable-clean
    /// assert!(r.leaf_attrs(d, 0).flags.write);
    /// assert_eq!(r.accessed_dirty(d, 0), (true, false));
    /// ```
    #[must_use]
    pub const fn with_tracking(mut self, tracking: Tracking) -> Self {
        self.tracking = tracking;
        self
    }

    /// How this regime records accesses and writes.
    ///
    /// ```
    /// use awk_paging_aarch64::{features::Tracking, A64};
    /// assert_eq!(A64::default().tracking(), Tracking::Off);
    /// let r = A64::default().with_tracking(Tracking::SoftwareAccess);
    /// assert_eq!(r.tracking(), Tracking::SoftwareAccess);
    /// ```
    #[must_use]
    pub const fn tracking(&self) -> Tracking {
        self.tracking
    }

    /// Whether DBM makes a leaf writable (the dirty-tracking mode: TCR_EL1.HD is set).
    #[inline(always)]
    const fn dbm_writes(&self) -> bool {
        matches!(self.tracking, Tracking::HardwareAccessDirty)
    }

    /// Whether the leaf `raw` grants write permission on its own: AP\[2\] = 0, or DBM = 1 with
    /// dirty tracking (writable-clean).
    #[inline(always)]
    pub(crate) const fn leaf_writable(&self, raw: u64) -> bool {
        raw & b::AP_RO == 0 || (self.dbm_writes() && raw & b::DBM != 0)
    }

    /// Whether the leaf `raw` records a write (dirty-tracking mode): writable-dirty (AP\[2\] =
    /// 0) or marked by software after losing write permission.
    #[inline(always)]
    const fn recorded_dirty(raw: u64) -> bool {
        raw & b::AP_RO == 0 || raw & b::SW_DIRTY != 0
    }

    /// The VA size.
    ///
    /// ```
    /// use awk_paging_aarch64::{VaSize, A64};
    /// assert_eq!(A64::default().va_size(), VaSize::Bits48);
    /// ```
    #[must_use]
    pub const fn va_size(&self) -> VaSize {
        self.va
    }

    /// The half this table translates.
    ///
    /// ```
    /// use awk_paging_aarch64::{Half, A64};
    /// assert_eq!(A64::default().half(), Half::Lower);
    /// ```
    #[must_use]
    pub const fn half(&self) -> Half {
        self.half
    }

    /// Fields that, when they change on a valid leaf, need break-before-make: output address,
    /// memory attributes, shareability, nG (Arm ARM D8.16.1) and the Contiguous bit (D8.6.1:
    /// a run's TLB entry must never coexist with entries for its parts). AF, DBM, AP and the
    /// software bits are not among them: the hardware itself changes AF and AP\[2\] of live
    /// leaves (D8.4), and permission changes may be written in place.
    const BBM_FIELDS: u64 = OA_MASK | b::ATTR_INDX_MASK | b::SH_MASK | b::NG | b::CONTIGUOUS;
}

const _: () = assert!(
    A64::BBM_FIELDS & (b::AF | b::DBM | b::AP_RO | b::AP_EL0 | b::SW_DIRTY | (1 << 55)) == 0
);

/// Why an address whose bits above the VA size read `top` (as a signed number) is not one of
/// this half's: the other half's (all 0 or all 1), or neither.
#[cold]
#[inline(never)]
fn va_error(top: i64) -> AddrError {
    if top == 0 || top == -1 {
        AddrError::OutOfRange
    } else {
        AddrError::NonCanonical
    }
}

// SAFETY: `decode` only returns output addresses below 2^pa_bits (wider ones decode as invalid,
// as the hardware raises an Address size fault for them). A leaf with AF = 0 decodes as invalid
// with `Tracking::Off` (an Access flag fault nobody resolves: no mapping); in the tracking modes
// it is a mapping of its frame (the hardware sets AF on the walk, or the access faults until
// the kernel sets AF): reporting it mapped keeps unmap/protect invalidating it, the
// conservative side. DBM counts as write permission only in `HardwareAccessDirty`, the mode
// whose TCR_EL1.HD makes the hardware honour it (without HD such a leaf is read-only, and
// reporting it read-only is exact). Encodings follow the Arm ARM descriptor formats (D8.3) and
// D8.4 for AF and DBM.
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
        // The bits above the VA size: all 0 (TTBR0) or all 1 (TTBR1) for this half.
        let top = (va.as_u64() as i64) >> self.va.bits();
        let want = match self.half {
            Half::Lower => 0,
            Half::Upper => -1,
        };
        if top == want {
            Ok(())
        } else {
            Err(va_error(top))
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

    /// `leaf_entry` stores the address unchanged in bits 47:12 (`pa & OA_MASK`, which an
    /// aligned address below `1 << pa_bits` passes whole) and derives every other bit from
    /// `level` and `attrs` alone.
    #[inline(always)]
    fn leaf_template(&self, level: u8, attrs: Attrs) -> Option<u64> {
        Some(self.leaf_entry(PhyAddr::ZERO, level, attrs))
    }

    #[inline(always)]
    fn decode(&self, raw: u64, level: u8) -> Entry {
        // Not valid, or an output address wider than the configured PA size (an Address size
        // fault on the hardware: the walk stops there, exactly as for an invalid entry): one
        // test for both.
        if raw & (b::VALID | self.above_pa) != b::VALID {
            return Entry::Invalid;
        }
        let oa = raw & OA_MASK;
        // bits[1:0]: 0b11 table (levels 3..1 here) or page (level 0 here); 0b01 block at
        // Arm levels 1 and 2 (our 2 and 1), reserved (invalid) elsewhere.
        // A leaf with AF = 0: with tracking off it raises an Access flag fault nobody resolves,
        // so the MMU never uses it: it is no mapping. With tracking on it is an aged page (the
        // hardware sets AF, or the fault handler does): a mapping.
        let af = raw & b::AF != 0 || !matches!(self.tracking, Tracking::Off);
        match (raw & 0b11, level) {
            (0b11, 0) if af => Entry::Leaf(PhyAddr::new(oa)),
            (0b11, 0) => Entry::Invalid,
            (0b11, _) => Entry::Table(PhyAddr::new(oa)),
            (0b01, 1 | 2) if af => {
                let size = if level == 1 {
                    PageSize::Size2M
                } else {
                    PageSize::Size1G
                };
                Entry::Leaf(PhyAddr::new(oa & !size.offset_mask()))
            }
            _ => Entry::Invalid,
        }
    }

    #[inline(always)]
    fn table_entry(&self, table: PhyAddr, _attrs: Attrs) -> u64 {
        // No APTable/XNTable limits: the leaf decides.
        b::VALID | b::TABLE_OR_PAGE | (table.as_u64() & OA_MASK)
    }

    #[inline(always)]
    fn table_limits(&self, raw: u64, _level: u8) -> Limits {
        Limits {
            no_write: raw & b::AP_TABLE_RO != 0,
            no_user: raw & b::AP_TABLE_NO_EL0 != 0,
            no_exec: raw & b::PXN_TABLE != 0,
            no_user_exec: raw & b::UXN_TABLE != 0,
        }
    }

    #[inline(always)]
    fn table_limit_bits(&self, raw: u64, _level: u8) -> u8 {
        // PXNTable, UXNTable, APTable[0], APTable[1] (bits 59..=62) are Limits::bits' order.
        const _: () = assert!(b::PXN_TABLE == 1 << 59 && b::UXN_TABLE == 1 << 60);
        const _: () = assert!(b::AP_TABLE_NO_EL0 == 1 << 61 && b::AP_TABLE_RO == 1 << 62);
        ((raw >> 59) & 0xf) as u8
    }

    #[inline]
    fn widen_table_entry(&self, raw: u64, attrs: Attrs) -> u64 {
        let f = attrs.flags;
        let mut lift = 0;
        if f.write {
            lift |= b::AP_TABLE_RO;
        }
        if attrs.user {
            lift |= b::AP_TABLE_NO_EL0;
        }
        if f.execute {
            lift |= if attrs.user {
                b::UXN_TABLE
            } else {
                b::PXN_TABLE
            };
        }
        raw & !lift
    }

    #[inline]
    fn limit_entry(&self, raw: u64, level: u8, limits: Limits) -> u64 {
        let table = level > 0 && raw & 0b11 == 0b11;
        let mut add = 0;
        let mut clear = 0;
        if limits.no_write {
            if table {
                add |= b::AP_TABLE_RO;
            } else {
                add |= b::AP_RO;
                if self.dbm_writes() {
                    // DBM would make the leaf writable again: drop it, keeping a recorded
                    // write in the software dirty bit.
                    clear |= b::DBM;
                    if Self::recorded_dirty(raw) {
                        add |= b::SW_DIRTY;
                    }
                }
            }
        }
        if limits.no_user {
            if table {
                add |= b::AP_TABLE_NO_EL0;
            } else {
                clear |= b::AP_EL0;
            }
        }
        if limits.no_exec {
            add |= if table { b::PXN_TABLE } else { b::PXN };
        }
        if limits.no_user_exec {
            add |= if table { b::UXN_TABLE } else { b::UXN };
        }
        (raw | add) & !clear
    }

    #[inline]
    fn effective_attrs(&self, raw: u64, level: u8, limits: Limits) -> Attrs {
        // From the descriptor bits (not the canonical leaf attributes): a user page seen as a
        // kernel page under APTable[0] executes at EL1 only as its PXN says.
        let mut a = self.leaf_attrs(raw, level);
        a.flags.write &= !limits.no_write;
        a.user &= !limits.no_user;
        let exec = if a.user {
            raw & b::UXN == 0 && !limits.no_user_exec
        } else {
            raw & b::PXN == 0 && !limits.no_exec
        };
        a.flags.execute = exec && a.flags.memory_type() != MemoryType::Device;
        a
    }

    /// 16 entries at the 4 KiB and 2 MiB levels (4 KiB granule: 64 KiB and 32 MiB runs).
    #[inline(always)]
    fn contiguous_hint(&self, level: u8) -> Option<ContiguousHint> {
        (level <= 1).then_some(ContiguousHint {
            bit: b::CONTIGUOUS,
            entries: 16,
        })
    }

    /// Bit 55, the first of the software bits 58:55 of block and page descriptors (Arm ARM
    /// D8.3 "Translation table descriptor formats": ignored by the hardware).
    #[inline(always)]
    fn software_bit(&self) -> u64 {
        1 << 55
    }

    /// The hardware writes AF (TCR_EL1.HA) and, with HD, AP\[2\] of DBM leaves.
    #[inline(always)]
    fn hardware_updates_entries(&self) -> bool {
        self.tracking.hardware_updates()
    }

    /// A valid leaf the hardware may still update: AF = 0 (the walk sets it), or, with dirty
    /// tracking, writable-clean (DBM = 1, AP\[2\] = 1: the first write clears AP\[2\]). A
    /// leaf with AF = 1 and no clean DBM is settled (the hardware never clears AF nor sets
    /// AP\[2\]), as are tables and invalid entries (this crate sets no table AF: no
    /// FEAT_HAFT).
    #[inline(always)]
    fn hardware_may_write(&self, raw: u64, level: u8) -> bool {
        if !self.tracking.hardware_updates() || !matches!(self.decode(raw, level), Entry::Leaf(_)) {
            return false;
        }
        let clean_dbm = raw & (b::DBM | b::AP_RO) == b::DBM | b::AP_RO;
        raw & b::AF == 0 || (self.dbm_writes() && clean_dbm)
    }

    /// An aged `old` (AF = 0) stays aged; with dirty tracking, a dirty `old` stays dirty:
    /// writable-dirty if `new` has DBM, else marked [`SW_DIRTY`](b::SW_DIRTY) (write
    /// permission removed, the recorded write kept).
    #[inline]
    fn keep_hardware_bits(&self, old: u64, new: u64) -> u64 {
        if !self.tracking.tracks_access() {
            return new;
        }
        let mut n = new;
        if old & b::AF == 0 {
            n &= !b::AF;
        }
        if self.dbm_writes() && Self::recorded_dirty(old) {
            if n & b::DBM != 0 {
                n &= !b::AP_RO;
            } else {
                n |= b::SW_DIRTY;
            }
        }
        n
    }

    /// Accessed: AF. Dirty: with dirty tracking, AP\[2\] = 0 or [`SW_DIRTY`](b::SW_DIRTY);
    /// otherwise no record (`true`).
    #[inline]
    fn accessed_dirty(&self, raw: u64, _level: u8) -> (bool, bool) {
        let dirty = !self.dbm_writes() || Self::recorded_dirty(raw);
        (raw & b::AF != 0, dirty)
    }

    /// `None` with tracking off; otherwise AF cleared if `accessed`, and with dirty tracking
    /// (if `dirty`) a DBM leaf made writable-clean again (AP\[2\] = 1) and `SW_DIRTY`
    /// cleared. A writable leaf without DBM (taken over) cannot be cleaned: it stays dirty.
    #[inline]
    fn clear_accessed_dirty(
        &self,
        raw: u64,
        _level: u8,
        accessed: bool,
        dirty: bool,
    ) -> Option<u64> {
        if !self.tracking.tracks_access() {
            return None;
        }
        let mut r = raw;
        if accessed {
            r &= !b::AF;
        }
        if dirty && self.dbm_writes() {
            if r & b::DBM != 0 {
                r |= b::AP_RO;
            }
            r &= !b::SW_DIRTY;
        }
        Some(r)
    }

    /// `raw | AF` unless tracking is off (then an AF = 0 leaf is no mapping, and there is no
    /// fault to resolve). Also right with hardware AF: setting the bit the walk would set
    /// loses nothing.
    #[inline]
    fn set_accessed(&self, raw: u64, _level: u8) -> Option<u64> {
        self.tracking.tracks_access().then_some(raw | b::AF)
    }

    #[inline(always)]
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64 {
        let f = attrs.flags;
        let mt = f.memory_type();
        let exec = f.execute && mt != MemoryType::Device;
        let mut d = b::VALID
            | b::AF
            | b::SH_INNER
            | (u64::from(self.mair.index_of(mt)) << b::ATTR_INDX_SHIFT)
            | (pa.as_u64() & OA_MASK);
        if level == 0 {
            d |= b::TABLE_OR_PAGE; // page; blocks keep TYPE = 0
        }
        if !f.write {
            d |= b::AP_RO;
        } else if self.dbm_writes() {
            // Writable through DBM: user leaves clean (the first write is recorded), kernel
            // leaves dirty (settled: nothing left for the hardware to write).
            d |= b::DBM;
            if attrs.user {
                d |= b::AP_RO;
            }
        }
        if attrs.user {
            d |= b::AP_EL0;
        }
        if !attrs.global {
            d |= b::NG;
        }
        // Kernel pages never run at EL0; user pages never run at EL1.
        if !(exec && attrs.user) {
            d |= b::UXN;
        }
        if !exec || attrs.user {
            d |= b::PXN;
        }
        d
    }

    #[inline(always)]
    fn leaf_attrs(&self, raw: u64, _level: u8) -> Attrs {
        let index = ((raw & b::ATTR_INDX_MASK) >> b::ATTR_INDX_SHIFT) as u8;
        // An index the layout does not map (see `MairLayout::memory_type` for the report):
        // decoded as Device, the most restrictive (never executable).
        let mt = match self.mair.memory_type(index) {
            Ok(mt) => mt,
            Err(_) => MemoryType::Device,
        };
        // With dirty tracking, DBM grants write permission (writable-clean); without it the
        // hardware ignores DBM.
        let write = self.leaf_writable(raw);
        let user = raw & b::AP_EL0 != 0;
        let execute = if user {
            raw & b::UXN == 0
        } else {
            raw & b::PXN == 0
        };
        Attrs {
            flags: mt.with_permissions(write, execute),
            user,
            global: raw & b::NG == 0,
        }
    }

    #[inline]
    fn va_from_bits(&self, bits: u64) -> VirtAddr {
        let low = bits & ((1u64 << self.va.bits()) - 1);
        match self.half {
            Half::Lower => VirtAddr::new(low),
            Half::Upper => VirtAddr::new(low | !((1u64 << self.va.bits()) - 1)),
        }
    }

    #[inline]
    fn needs_break_before_make(&self, old: u64, new: u64, _level: u8) -> bool {
        (old ^ new) & Self::BBM_FIELDS != 0
    }
}
