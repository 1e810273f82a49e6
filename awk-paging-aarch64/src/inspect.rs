//! What the AArch64 MMU makes of entries the walker does not use (Arm ARM D8.3 "Translation
//! table descriptor formats", D8.4 "Memory access control", D8.15 "MMU faults"), for
//! [`awk_paging::inspect`].
//!
//! Access follows the stage-1 EL1&0 rules with hierarchical permissions enabled: AP\[2\]
//! (read-only) and AP\[1\] (EL0 access), restricted by APTable; EL0 execution by UXN and
//! UXNTable alone (execute-only user memory exists); EL1 execution by PXN and PXNTable, and
//! never from memory writable at EL0 (the implicit PXN of D8.4). SCTLR_EL1.WXN = 0 and PAN = 0
//! are assumed. Memory types follow this crate's MAIR layout ([`crate::mair`]; an index the
//! layout does not use reads as device memory), or another kernel's through [`ForeignMair`].

use awk_paging::arch::{Arch, ContiguousHint, Entry, Limits};
use awk_paging::inspect::{Access, Classify, Invalid};
use awk_paging::{AddrError, Attrs, MemoryType, PageSizes, PhyAddr, VirtAddr};

use crate::descriptor::{bits as b, OA_MASK};
use crate::A64;

/// ```
/// use awk_paging::arch::{Arch, Limits};
/// use awk_paging::inspect::{Classify, Invalid};
/// use awk_paging_aarch64::descriptor::bits;
/// use awk_paging_aarch64::A64;
/// let a = A64::default(); // 48-bit VA: our level 3 is Arm level 0
/// assert_eq!(a.invalid(0x1000 | 0b01 | bits::AF, 3), Invalid::LeafNotAllowed); // level-0 block
/// assert_eq!(a.invalid(0x1000 | 0b11, 0), Invalid::AccessFlag); // page with AF = 0
/// assert_eq!(a.invalid(0x1000 | 0b10, 2), Invalid::NotPresent); // bit 0 clear
/// assert_eq!(A64::default().with_pa_bits(40).invalid((1 << 44) | 0b11, 2), Invalid::AddressSize);
/// // An EL0-writable page is never executable at EL1, whatever PXN says.
/// let raw = 0x5000 | 0b11 | bits::AF | bits::AP_EL0 | bits::UXN;
/// let acc = a.access(raw, 0, Limits::NONE);
/// assert!(acc.user_write && !acc.kernel_exec && !acc.user_exec);
/// ```
impl Classify for A64 {
    fn invalid(&self, raw: u64, level: u8) -> Invalid {
        if raw & b::VALID == 0 {
            return Invalid::NotPresent;
        }
        let oa = raw & OA_MASK;
        if oa >> self.pa_bits() != 0 {
            return Invalid::AddressSize;
        }
        let top = self.levels().saturating_sub(1);
        let af = raw & b::AF != 0;
        match (raw & 0b11, level) {
            // Arm level 0 of a 4-level regime has no blocks without FEAT_LPA2, and level 3 no
            // 0b01 encoding: both are translation faults.
            (0b01, l) if l == top && top == 3 => Invalid::LeafNotAllowed,
            (0b01, 0) => Invalid::LeafNotAllowed,
            (0b01, _) | (0b11, 0) if !af => Invalid::AccessFlag,
            _ => Invalid::ReservedBits,
        }
    }

    fn access(&self, raw: u64, _level: u8, limits: Limits) -> Access {
        // AP[2] = 0, or DBM = 1 in the dirty-tracking mode (the hardware clears AP[2] on the
        // first write instead of faulting).
        let write = self.leaf_writable(raw) && !limits.no_write;
        let user = raw & b::AP_EL0 != 0 && !limits.no_user;
        let user_write = user && write;
        Access {
            kernel_read: true,
            kernel_write: write,
            kernel_exec: raw & b::PXN == 0 && !limits.no_exec && !user_write,
            user_read: user,
            user_write,
            user_exec: raw & b::UXN == 0 && !limits.no_user_exec,
        }
    }
}

/// The memory type a MAIR `Attr<n>` byte selects (Arm ARM, MAIR_EL1): high nibble 0 is Device
/// memory; otherwise the inner policy (low nibble) decides — `0b0100` non-cacheable,
/// `0b10RW` / `0b00RW` (RW ≠ 0) write-through, `0b11RW` / `0b01RW` (RW ≠ 0) write-back.
/// Encodings the architecture reserves read as device memory (the strictest). The nibble is
/// parsed by the same function as [`MairLayout::from_mair`](crate::mair::MairLayout::from_mair)
/// uses; unlike a layout, which must encode, reading accepts any outer policy.
///
/// ```
/// use awk_paging::MemoryType;
/// use awk_paging_aarch64::mair_memory_type;
/// assert_eq!(mair_memory_type(0xff), MemoryType::WriteBack);
/// assert_eq!(mair_memory_type(0xaa), MemoryType::WriteThrough);
/// assert_eq!(mair_memory_type(0x44), MemoryType::Uncached);
/// assert_eq!(mair_memory_type(0x04), MemoryType::Device);
/// assert_eq!(mair_memory_type(0x40), MemoryType::Device); // inner 0b0000: reserved
/// ```
#[must_use]
pub const fn mair_memory_type(attr: u8) -> MemoryType {
    if attr >> 4 == 0 {
        return MemoryType::Device;
    }
    match crate::mair::nibble(attr & 0xf) {
        Some(mt) => mt,
        None => MemoryType::Device,
    }
}

/// An [`A64`] regime whose memory types come from another MAIR_EL1 value: for reading tables
/// a foreign kernel built with its own attribute layout (Linux's, for one). Everything else is
/// [`A64`]'s.
///
/// ```
/// use awk_paging::inspect::Classify;
/// use awk_paging::MemoryType;
/// use awk_paging_aarch64::{ForeignMair, A64};
/// // Attr0 Device-nGnRnE, Attr1 Device-nGnRE, Attr2 Normal NC, Attr4 Normal WB.
/// let linux_like = ForeignMair::new(A64::default(), 0x0000_00ff_0044_0400);
/// let page = |idx: u64| 0x4000_0000 | 0b11 | (1 << 10) | (idx << 2);
/// assert_eq!(linux_like.memory_type(page(4), 0), MemoryType::WriteBack);
/// assert_eq!(linux_like.memory_type(page(0), 0), MemoryType::Device);
/// assert_eq!(linux_like.memory_type(page(2), 0), MemoryType::Uncached);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignMair {
    regime: A64,
    mair: u64,
}

impl ForeignMair {
    /// `regime` with memory types read through `mair` (a MAIR_EL1 value).
    ///
    /// ```
    /// use awk_paging_aarch64::{ForeignMair, A64};
    /// assert_eq!(ForeignMair::new(A64::default(), 0xff).mair(), 0xff);
    /// ```
    #[must_use]
    pub const fn new(regime: A64, mair: u64) -> Self {
        ForeignMair { regime, mair }
    }

    /// The MAIR_EL1 value.
    ///
    /// ```
    /// use awk_paging_aarch64::{ForeignMair, A64};
    /// assert_eq!(ForeignMair::new(A64::default(), 0x44).mair(), 0x44);
    /// ```
    #[must_use]
    pub const fn mair(&self) -> u64 {
        self.mair
    }

    fn mt(&self, raw: u64) -> MemoryType {
        let index = (raw & b::ATTR_INDX_MASK) >> b::ATTR_INDX_SHIFT;
        mair_memory_type(crate::mair::attr_byte(self.mair, index))
    }
}

// SAFETY: every method is A64's (decode, every encoder, the break-before-make rule), so the
// contract holds as it does for A64; only the memory type of reported attributes differs
// (read through another MAIR), and it never reaches an encoded entry.
unsafe impl Arch for ForeignMair {
    fn levels(&self) -> u8 {
        self.regime.levels()
    }
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError> {
        self.regime.check_va(va)
    }
    fn pa_bits(&self) -> u32 {
        self.regime.pa_bits()
    }
    fn page_sizes(&self) -> PageSizes {
        self.regime.page_sizes()
    }
    fn decode(&self, raw: u64, level: u8) -> Entry {
        self.regime.decode(raw, level)
    }
    fn table_entry(&self, table: PhyAddr, attrs: Attrs) -> u64 {
        self.regime.table_entry(table, attrs)
    }
    fn table_limits(&self, raw: u64, level: u8) -> Limits {
        self.regime.table_limits(raw, level)
    }
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64 {
        self.regime.leaf_entry(pa, level, attrs)
    }
    fn leaf_attrs(&self, raw: u64, level: u8) -> Attrs {
        let mut a = self.regime.leaf_attrs(raw, level);
        let (w, x) = (a.flags.write, a.flags.execute);
        let mt = self.mt(raw);
        a.flags = mt.with_permissions(w, x && mt != MemoryType::Device);
        a
    }
    fn effective_attrs(&self, raw: u64, level: u8, limits: Limits) -> Attrs {
        let mut a = self.regime.effective_attrs(raw, level, limits);
        let (w, x) = (a.flags.write, a.flags.execute);
        let mt = self.mt(raw);
        a.flags = mt.with_permissions(w, x && mt != MemoryType::Device);
        a
    }
    fn va_from_bits(&self, bits: u64) -> VirtAddr {
        self.regime.va_from_bits(bits)
    }
    fn widen_table_entry(&self, raw: u64, attrs: Attrs) -> u64 {
        self.regime.widen_table_entry(raw, attrs)
    }
    fn limit_entry(&self, raw: u64, level: u8, limits: Limits) -> u64 {
        self.regime.limit_entry(raw, level, limits)
    }
    fn contiguous_hint(&self, level: u8) -> Option<ContiguousHint> {
        self.regime.contiguous_hint(level)
    }
    fn hardware_updates_entries(&self) -> bool {
        self.regime.hardware_updates_entries()
    }
    fn keep_hardware_bits(&self, old: u64, new: u64) -> u64 {
        self.regime.keep_hardware_bits(old, new)
    }
    fn set_accessed(&self, raw: u64, level: u8) -> Option<u64> {
        self.regime.set_accessed(raw, level)
    }
    fn hardware_may_write(&self, raw: u64, level: u8) -> bool {
        self.regime.hardware_may_write(raw, level)
    }
    fn clear_accessed_dirty(
        &self,
        raw: u64,
        level: u8,
        accessed: bool,
        dirty: bool,
    ) -> Option<u64> {
        self.regime
            .clear_accessed_dirty(raw, level, accessed, dirty)
    }
    fn accessed_dirty(&self, raw: u64, level: u8) -> (bool, bool) {
        self.regime.accessed_dirty(raw, level)
    }
    fn needs_break_before_make(&self, old: u64, new: u64, level: u8) -> bool {
        self.regime.needs_break_before_make(old, new, level)
    }
}

impl Classify for ForeignMair {
    fn invalid(&self, raw: u64, level: u8) -> Invalid {
        self.regime.invalid(raw, level)
    }
    fn access(&self, raw: u64, level: u8, limits: Limits) -> Access {
        self.regime.access(raw, level, limits)
    }
    fn memory_type(&self, raw: u64, _level: u8) -> MemoryType {
        self.mt(raw)
    }
}
