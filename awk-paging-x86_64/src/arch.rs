//! The x86_64 4-level translation regime: entry encoding and address rules.
//!
//! Entry bits are the `x86_64` crate's [`PageTableFlags`]; the physical address occupies bits
//! 12..=51 (Intel SDM Vol. 3A §4.5, tables 4-15 to 4-20). Leaves: PT entries (4 KiB), PD entries
//! with PS (2 MiB), PDPT entries with PS (1 GiB, only on CPUs with `pdpe1gb`).
//!
//! # Memory types (power-on PAT, PAT bit clear)
//!
//! | [`MemoryType`] | PCD | PWT | PAT entry | type |
//! |---|---|---|---|---|
//! | WriteBack | 0 | 0 | PA0 | WB |
//! | WriteThrough | 0 | 1 | PA1 | WT |
//! | Uncached | 1 | 0 | PA2 | UC- |
//! | Device | 1 | 1 | PA3 | UC |
//!
//! Device memory additionally always has NX. The PAT bit (bit 7 in PT entries, bit 12 in huge
//! entries) is never set; the power-on PAT repeats PA0..3 in PA4..7, so tables written by others
//! with it set decode to the same type.

use awk_paging::arch::{check_sign_extended, Arch, Entry, Limits};
use awk_paging::{AddrError, Attrs, MemoryType, PageSize, PageSizes, PhyAddr, VirtAddr};
use x86_64::structures::paging::PageTableFlags as F;

/// Bits 12..=51: the physical address field of every entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The x86_64 4-level paging regime (48-bit canonical virtual addresses).
///
/// ```
/// use awk_paging::{arch::Arch, PageSize, VirtAddr};
/// use awk_paging_x86_64::X86_64;
/// let regime = X86_64::new();
/// assert_eq!(regime.levels(), 4);
/// assert!(!regime.page_sizes().contains(PageSize::Size1G)); // opt in with `with_1g_pages`
/// assert!(regime.check_va(VirtAddr::new(0x0000_8000_0000_0000)).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86_64 {
    gigapages: bool,
    pa_bits: u8,
    /// The address bits at or above MAXPHYADDR: reserved, so an entry with any of them set is
    /// invalid (derived from `pa_bits`, kept so `decode` tests them with one mask).
    above_pa: u64,
}

/// The address bits at or above `bits` (of 32..=52).
const fn above_pa(bits: u8) -> u64 {
    ADDR_MASK & !((1u64 << bits) - 1)
}

impl Default for X86_64 {
    fn default() -> Self {
        Self::new()
    }
}

impl X86_64 {
    /// 4 KiB and 2 MiB pages, 52-bit physical addresses (the architectural maximum).
    ///
    /// ```
    /// use awk_paging::arch::Arch;
    /// assert_eq!(awk_paging_x86_64::X86_64::new().pa_bits(), 52);
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        X86_64 {
            gigapages: false,
            pa_bits: 52,
            above_pa: above_pa(52),
        }
    }

    /// Also allow 1 GiB pages (only for CPUs with CPUID.80000001H:EDX.Page1GB).
    ///
    /// ```
    /// use awk_paging::{arch::Arch, PageSize};
    /// let r = awk_paging_x86_64::X86_64::new().with_1g_pages(true);
    /// assert!(r.page_sizes().contains(PageSize::Size1G));
    /// ```
    #[must_use]
    pub const fn with_1g_pages(mut self, enabled: bool) -> Self {
        self.gigapages = enabled;
        self
    }

    /// Limits physical addresses to `bits` (the CPU's MAXPHYADDR, `CPUID.80000008H:EAX[7:0]`);
    /// values outside 32..=52 are clamped into that range.
    ///
    /// ```
    /// use awk_paging::arch::Arch;
    /// assert_eq!(awk_paging_x86_64::X86_64::new().with_pa_bits(39).pa_bits(), 39);
    /// assert_eq!(awk_paging_x86_64::X86_64::new().with_pa_bits(99).pa_bits(), 52);
    /// ```
    #[must_use]
    pub const fn with_pa_bits(mut self, bits: u8) -> Self {
        self.pa_bits = if bits < 32 {
            32
        } else if bits > 52 {
            52
        } else {
            bits
        };
        self.above_pa = above_pa(self.pa_bits);
        self
    }

    /// The regime matching the running CPU: 1 GiB pages and MAXPHYADDR from CPUID.
    ///
    /// ```no_run
    /// let regime = awk_paging_x86_64::X86_64::detect();
    /// ```
    #[cfg(target_arch = "x86_64")]
    #[must_use]
    pub fn detect() -> Self {
        use core::arch::x86_64::__cpuid;
        // CPUID is available on every x86_64 CPU.
        let max_ext = __cpuid(0x8000_0000).eax;
        let ext1 = if max_ext >= 0x8000_0001 {
            __cpuid(0x8000_0001).edx
        } else {
            0
        };
        let ext8 = if max_ext >= 0x8000_0008 {
            __cpuid(0x8000_0008).eax
        } else {
            36
        };
        X86_64::new()
            .with_1g_pages(ext1 & (1 << 26) != 0)
            .with_pa_bits((ext8 & 0xff) as u8)
    }

    /// The entry bits selecting `mt` (see the module table).
    #[inline]
    const fn cache_bits(mt: MemoryType) -> F {
        match mt {
            MemoryType::WriteBack => F::empty(),
            MemoryType::WriteThrough => F::WRITE_THROUGH,
            MemoryType::Uncached => F::NO_CACHE,
            MemoryType::Device => F::NO_CACHE.union(F::WRITE_THROUGH),
        }
    }
}

// SAFETY: `decode` returns output addresses below 2^pa_bits only: an entry with address bits at
// or above MAXPHYADDR, like every other reserved-bit encoding (PS in a PML4E, a 1 GiB leaf
// without Page1GB, bits 20:13 / 29:13 of a 2 MiB / 1 GiB leaf), decodes as invalid, as the CPU
// raises a reserved-bit page fault for it (Intel SDM Vol. 3A §4.5, tables 4-14 to 4-20);
// encodings follow the SDM.
unsafe impl Arch for X86_64 {
    #[inline(always)]
    fn levels(&self) -> u8 {
        4
    }

    #[inline(always)]
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError> {
        // Canonical: bits 63..=47 all equal (sign extension of bit 47).
        check_sign_extended(va, 48)
    }

    #[inline(always)]
    fn pa_bits(&self) -> u32 {
        u32::from(self.pa_bits)
    }

    #[inline(always)]
    fn page_sizes(&self) -> PageSizes {
        let base = PageSizes::EMPTY
            .with(PageSize::Size4K)
            .with(PageSize::Size2M);
        if self.gigapages {
            base.with(PageSize::Size1G)
        } else {
            base
        }
    }

    #[inline(always)]
    fn decode(&self, raw: u64, level: u8) -> Entry {
        // Not present, or address bits at or above MAXPHYADDR set (bits 51:M are reserved and
        // must be 0): one test for both.
        if raw & (F::PRESENT.bits() | self.above_pa) != F::PRESENT.bits() {
            return Entry::Invalid;
        }
        let huge = raw & F::HUGE_PAGE.bits() != 0;
        match level {
            0 => Entry::Leaf(PhyAddr::new(raw & ADDR_MASK)),
            1 | 2 if huge => {
                if level == 2 && !self.gigapages {
                    return Entry::Invalid; // PS = 1 in a PDPTE without Page1GB: reserved
                }
                // Bit 12 of a huge entry is its PAT bit; bits 20:13 (2 MiB) or 29:13 (1 GiB)
                // are reserved and must be 0.
                let size = if level == 1 {
                    PageSize::Size2M
                } else {
                    PageSize::Size1G
                };
                let reserved = size.offset_mask() & !0x1fff;
                if raw & reserved != 0 {
                    return Entry::Invalid;
                }
                Entry::Leaf(PhyAddr::new(raw & ADDR_MASK & !size.offset_mask()))
            }
            3 if huge => Entry::Invalid, // PS is reserved in a PML4E
            _ => Entry::Table(PhyAddr::new(raw & ADDR_MASK)),
        }
    }

    #[inline(always)]
    fn table_entry(&self, table: PhyAddr, attrs: Attrs) -> u64 {
        // Permissions are the intersection over all levels; table entries grant everything the
        // leaf may need and leave the restriction to the leaf.
        let mut f = F::PRESENT | F::WRITABLE;
        if attrs.user {
            f |= F::USER_ACCESSIBLE;
        }
        f.bits() | (table.as_u64() & ADDR_MASK)
    }

    #[inline(always)]
    fn table_limits(&self, raw: u64, _level: u8) -> Limits {
        let f = F::from_bits_retain(raw);
        let nx = f.contains(F::NO_EXECUTE);
        Limits {
            no_write: !f.contains(F::WRITABLE),
            no_user: !f.contains(F::USER_ACCESSIBLE),
            no_exec: nx,
            no_user_exec: nx,
        }
    }

    #[inline(always)]
    fn table_limit_bits(&self, raw: u64, _level: u8) -> u8 {
        // no_write (bit 3) = !R/W (entry bit 1), no_user (bit 2) = !U/S (entry bit 2), XD
        // (entry bit 63) forbids both kinds of execution (bits 0 and 1).
        let off = !raw;
        let wu = ((off & F::WRITABLE.bits()) << 2) | (off & F::USER_ACCESSIBLE.bits());
        wu as u8 | ((raw >> 63) as u8 * 0b11)
    }

    #[inline]
    fn widen_table_entry(&self, raw: u64, attrs: Attrs) -> u64 {
        let mut f = F::from_bits_retain(raw);
        if attrs.flags.write {
            f |= F::WRITABLE;
        }
        if attrs.user {
            f |= F::USER_ACCESSIBLE;
        }
        if attrs.flags.execute {
            f -= F::NO_EXECUTE;
        }
        f.bits()
    }

    #[inline]
    fn limit_entry(&self, raw: u64, _level: u8, limits: Limits) -> u64 {
        // The same bits restrict table entries and leaves on x86.
        let mut f = F::from_bits_retain(raw);
        if limits.no_write {
            f -= F::WRITABLE;
        }
        if limits.no_user {
            f -= F::USER_ACCESSIBLE;
        }
        if limits.no_exec || limits.no_user_exec {
            f |= F::NO_EXECUTE;
        }
        f.bits()
    }

    /// The CPU sets Accessed and Dirty in live entries (Intel SDM Vol. 3A §4.8).
    #[inline(always)]
    fn hardware_updates_entries(&self) -> bool {
        true
    }

    /// Unless Accessed and Dirty are both set (or the entry is not present): the processor
    /// sets each flag only while it is clear and never clears one (Intel SDM Vol. 3A §4.8).
    /// A read-only leaf with Dirty clear still counts as writable by the hardware: a stale
    /// TLB entry from before it became read-only may set Dirty until the flush.
    #[inline(always)]
    fn hardware_may_write(&self, raw: u64, _level: u8) -> bool {
        let settled = (F::ACCESSED | F::DIRTY).bits();
        raw & F::PRESENT.bits() != 0 && raw & settled != settled
    }

    #[inline(always)]
    fn keep_hardware_bits(&self, old: u64, new: u64) -> u64 {
        new | (old & (F::ACCESSED | F::DIRTY).bits())
    }

    /// Accessed (bit 5) and Dirty (bit 6), which the processor sets in leaves (SDM Vol. 3A
    /// §4.8).
    #[inline]
    fn clear_accessed_dirty(
        &self,
        raw: u64,
        _level: u8,
        accessed: bool,
        dirty: bool,
    ) -> Option<u64> {
        let mut f = F::from_bits_retain(raw);
        if accessed {
            f -= F::ACCESSED;
        }
        if dirty {
            f -= F::DIRTY;
        }
        Some(f.bits())
    }

    /// Bit 9: ignored by the processor in every leaf (SDM Vol. 3A tables 4-18 to 4-20).
    #[inline(always)]
    fn software_bit(&self) -> u64 {
        F::BIT_9.bits()
    }

    #[inline]
    fn accessed_dirty(&self, raw: u64, _level: u8) -> (bool, bool) {
        let f = F::from_bits_retain(raw);
        (f.contains(F::ACCESSED), f.contains(F::DIRTY))
    }

    #[inline(always)]
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64 {
        let fl = attrs.flags;
        let mt = fl.memory_type();
        let mut f = F::PRESENT | Self::cache_bits(mt);
        if fl.write {
            f |= F::WRITABLE;
        }
        if !fl.execute || mt == MemoryType::Device {
            f |= F::NO_EXECUTE;
        }
        if attrs.user {
            f |= F::USER_ACCESSIBLE;
        }
        if attrs.global {
            f |= F::GLOBAL;
        }
        if level > 0 {
            f |= F::HUGE_PAGE;
        }
        // Kernel leaves are created Accessed and Dirty, as Linux creates its kernel PTEs: the
        // processor then never writes them (no locked update by the page walker), and this
        // crate updates them with plain stores (`hardware_may_write`). User leaves start clean
        // so the kernel can track their use (`space::UserSpace::clear_accessed_dirty`).
        if !attrs.user {
            f |= F::ACCESSED | F::DIRTY;
        }
        f.bits() | (pa.as_u64() & ADDR_MASK)
    }

    #[inline]
    fn leaf_attrs(&self, raw: u64, _level: u8) -> Attrs {
        let f = F::from_bits_retain(raw);
        let mt = match (f.contains(F::NO_CACHE), f.contains(F::WRITE_THROUGH)) {
            (false, false) => MemoryType::WriteBack,
            (false, true) => MemoryType::WriteThrough,
            (true, false) => MemoryType::Uncached,
            (true, true) => MemoryType::Device,
        };
        Attrs {
            flags: mt.with_permissions(f.contains(F::WRITABLE), !f.contains(F::NO_EXECUTE)),
            user: f.contains(F::USER_ACCESSIBLE),
            global: f.contains(F::GLOBAL),
        }
    }

    /// x86 needs no break-before-make: a present leaf may be replaced by one store, and the
    /// stale TLB entry is removed by the operation's token (Intel SDM Vol. 3A §4.10.4).
    #[inline(always)]
    fn needs_break_before_make(&self, _old: u64, _new: u64, _level: u8) -> bool {
        false
    }

    /// `leaf_entry` stores the address unchanged in bits 51:12 (`pa & ADDR_MASK`, which an
    /// aligned address below `1 << pa_bits` passes whole) and derives every other bit from
    /// `level` and `attrs` alone.
    #[inline(always)]
    fn leaf_template(&self, level: u8, attrs: Attrs) -> Option<u64> {
        Some(self.leaf_entry(PhyAddr::ZERO, level, attrs))
    }
}
