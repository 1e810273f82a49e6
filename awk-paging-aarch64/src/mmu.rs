//! Turning the MMU on, as a plan: [`plan`] is a pure function from the CPU's ID-register fields
//! ([`CpuId`]) and what the kernel wants ([`Config`]: TTBR0 root, VA size, ASID, optionally a
//! TTBR1 root) to the register values and the ordered steps ([`Plan`], a
//! [`maint`](crate::maint) sequence). The host tests the plan against the Arm ARM; on bare metal
//! [`enable`] reads the ID register, builds the plan and runs it.
//!
//! The steps (Arm ARM D8 "The AArch64 Virtual Memory System Architecture", and the register
//! descriptions of MAIR_EL1, TCR_EL1, TTBR0/1_EL1, SCTLR_EL1):
//!
//! 1. refuse (nothing written) if ID_AA64MMFR0_EL1.TGran4 says no 4 KiB granule, if PARange is
//!    unknown, if a root is misaligned or wider than the output size, or if the ASID needs 16
//!    bits the CPU lacks;
//! 2. `msr mair_el1` ([`mair::MAIR_EL1`]), `msr tcr_el1` ([`tcr_el1`], plus TCR_EL1.AS when the
//!    CPU has 16-bit ASIDs, EPD1 clear only with a TTBR1 root), `msr ttbr0_el1` (root |
//!    ASID << 48), `msr ttbr1_el1` (only with a TTBR1 root);
//! 3. `dsb ish; tlbi vmalle1; dsb ish; isb`: the table writes complete, whatever the TLB held
//!    from reset (its contents are UNKNOWN) gone, the register writes in effect — the `isb` is
//!    what guarantees the MMU, once on, uses the new MAIR/TCR/TTBRs;
//! 4. `msr sctlr_el1` with the complete value [`SCTLR_EL1_MMU_ON`] (not a read-modify-write:
//!    when EL1 is not the highest implemented EL, SCTLR_EL1's fields are UNKNOWN at reset), then
//!    `isb`.
//!
//! ```
//! use awk_paging::PhyAddr;
//! use awk_paging_aarch64::maint::SysReg;
//! use awk_paging_aarch64::mmu::{plan, Config, CpuId, SCTLR_EL1_MMU_ON};
//! use awk_paging_aarch64::VaSize;
//!
//! let cortex_a72 = CpuId { tgran4: 0, parange: 0b0100, asid_bits: 0b0010 };
//! let p = plan(cortex_a72, &Config::new(PhyAddr::new(0x4100_0000), VaSize::Bits48)).unwrap();
//! assert_eq!(p.pa_bits(), 44);
//! assert_eq!(p.value(SysReg::Ttbr0El1), Some(0x4100_0000));
//! assert_eq!(p.value(SysReg::SctlrEl1), Some(SCTLR_EL1_MMU_ON));
//! assert_eq!(
//!     p.steps().to_string(),
//!     "msr mair_el1, 0x444aaff; msr tcr_el1, 0x14b5903510; msr ttbr0_el1, 0x41000000; \
//!      dsb ish; tlbi vmalle1; dsb ish; isb; msr sctlr_el1, 0x30d0199d; isb"
//! );
//! ```

use awk_paging::PhyAddr;

use crate::features::HardwareFlags;
use crate::maint::{Barrier, Op, Sequence, SysReg, TlbiOp};
use crate::{mair, VaSize};

// Table walks are write-back read/write-allocate (IRGN/ORGN = 0b01, below); that must stay the
// attribute the tables themselves are mapped with (index 0), or walks and CPU writes to the
// tables would use mismatched cacheability.
const _: () = assert!(mair::ATTRIBUTES[mair::NORMAL_WB as usize].byte == 0xff);

/// Why the MMU was not enabled.
///
/// ```
/// use awk_paging_aarch64::mmu::MmuError;
/// assert_eq!(
///     MmuError::Granule4KUnsupported.to_string(),
///     "the CPU does not implement the 4 KiB translation granule"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuError {
    /// ID_AA64MMFR0_EL1.TGran4 says the 4 KiB granule is not implemented.
    Granule4KUnsupported,
    /// ID_AA64MMFR0_EL1.PARange holds a value this crate does not know.
    UnknownPaRange(u8),
    /// The TTBR0 root table is not 4 KiB aligned or wider than the output size.
    BadRoot,
    /// The TTBR1 root table is not 4 KiB aligned or wider than the output size.
    BadUpperRoot,
    /// The ASID does not fit in 8 bits and the CPU only implements 8-bit ASIDs
    /// (ID_AA64MMFR0_EL1.ASIDBits = 0b0000): it would alias another address space's.
    AsidTooWide(u16),
}

impl core::fmt::Display for MmuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmuError::Granule4KUnsupported => {
                f.write_str("the CPU does not implement the 4 KiB translation granule")
            }
            MmuError::UnknownPaRange(v) => write!(f, "unknown ID_AA64MMFR0_EL1.PARange {v:#x}"),
            MmuError::BadRoot => f.write_str("root table misaligned or above the output size"),
            MmuError::BadUpperRoot => {
                f.write_str("TTBR1 root table misaligned or above the output size")
            }
            MmuError::AsidTooWide(a) => write!(f, "ASID {a:#x} needs 16-bit ASIDs"),
        }
    }
}

/// Output-address bits for an ID_AA64MMFR0_EL1.PARange value (Arm ARM D19.2).
///
/// ```
/// assert_eq!(awk_paging_aarch64::mmu::pa_bits_of_parange(0b0101), Some(48));
/// assert_eq!(awk_paging_aarch64::mmu::pa_bits_of_parange(0b1111), None);
/// ```
#[must_use]
pub const fn pa_bits_of_parange(parange: u8) -> Option<u8> {
    match parange {
        0b0000 => Some(32),
        0b0001 => Some(36),
        0b0010 => Some(40),
        0b0011 => Some(42),
        0b0100 => Some(44),
        0b0101 => Some(48),
        0b0110 => Some(52),
        _ => None,
    }
}

/// The ID_AA64MMFR0_EL1 fields the plan depends on, as the raw 4-bit values.
///
/// ```
/// use awk_paging_aarch64::mmu::CpuId;
/// // Cortex-A72: TGran4 = 0 (4 KiB granule), ASIDBits = 0b0010 (16), PARange = 0b0100 (44 bits).
/// let id = CpuId::from_id_aa64mmfr0(0x0000_0000_0000_1124);
/// assert_eq!(id, CpuId { tgran4: 0, parange: 0b0100, asid_bits: 0b0010 });
/// assert!(id.has_4k_granule() && id.has_16bit_asids());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuId {
    /// TGran4, bits 31:28: 0b0000 4 KiB granule, 0b0001 with 52-bit addresses, 0b1111 none.
    pub tgran4: u8,
    /// PARange, bits 3:0: the physical address size ([`pa_bits_of_parange`]).
    pub parange: u8,
    /// ASIDBits, bits 7:4: 0b0000 8-bit ASIDs, 0b0010 16-bit ASIDs.
    pub asid_bits: u8,
}

impl CpuId {
    /// The fields of an ID_AA64MMFR0_EL1 value.
    ///
    /// ```
    /// let id = awk_paging_aarch64::mmu::CpuId::from_id_aa64mmfr0(0xf000_0000);
    /// assert!(!id.has_4k_granule());
    /// ```
    #[must_use]
    pub const fn from_id_aa64mmfr0(value: u64) -> Self {
        CpuId {
            tgran4: ((value >> 28) & 0xf) as u8,
            parange: (value & 0xf) as u8,
            asid_bits: ((value >> 4) & 0xf) as u8,
        }
    }

    /// This CPU's fields (reads ID_AA64MMFR0_EL1). Bare-metal AArch64 only.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    /// # fn f() {
    /// assert!(awk_paging_aarch64::mmu::CpuId::read().has_4k_granule());
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
    #[must_use]
    pub fn read() -> Self {
        use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1};
        Self::from_id_aa64mmfr0(ID_AA64MMFR0_EL1.get())
    }

    /// Whether the 4 KiB granule is implemented. TGran4 is a signed ID field: 0b0000 and
    /// higher positive values (0b0001: also with 52-bit addresses) mean implemented, the
    /// negative ones (0b1xxx, architecturally 0b1111) not.
    ///
    /// ```
    /// use awk_paging_aarch64::mmu::CpuId;
    /// assert!(CpuId { tgran4: 1, parange: 5, asid_bits: 0 }.has_4k_granule());
    /// ```
    #[must_use]
    pub const fn has_4k_granule(self) -> bool {
        self.tgran4 < 0b1000
    }

    /// Whether the CPU implements 16-bit ASIDs (ASIDBits = 0b0010; every other value is
    /// treated as 8 bits).
    ///
    /// ```
    /// use awk_paging_aarch64::mmu::CpuId;
    /// assert!(!CpuId { tgran4: 0, parange: 5, asid_bits: 0 }.has_16bit_asids());
    /// ```
    #[must_use]
    pub const fn has_16bit_asids(self) -> bool {
        self.asid_bits == 0b0010
    }

    /// The output-address width, capped at 48 bits (the widest this descriptor layout
    /// encodes), for [`A64::with_pa_bits`](crate::A64::with_pa_bits).
    ///
    /// ```
    /// use awk_paging_aarch64::mmu::{CpuId, MmuError};
    /// assert_eq!(CpuId { tgran4: 0, parange: 0b0110, asid_bits: 0 }.pa_bits(), Ok(48));
    /// assert_eq!(CpuId { tgran4: 0, parange: 9, asid_bits: 0 }.pa_bits(), Err(MmuError::UnknownPaRange(9)));
    /// ```
    pub const fn pa_bits(self) -> Result<u8, MmuError> {
        match pa_bits_of_parange(self.parange) {
            Some(b) if b > 48 => Ok(48),
            Some(b) => Ok(b),
            None => Err(MmuError::UnknownPaRange(self.parange)),
        }
    }
}

/// The TTBR1 (upper-half) tables: a [`Half::Upper`](crate::Half::Upper) table's root and VA
/// size.
///
/// ```
/// use awk_paging::PhyAddr;
/// use awk_paging_aarch64::{mmu::UpperHalf, VaSize};
/// let upper = UpperHalf { root: PhyAddr::new(0x4200_0000), va: VaSize::Bits39 };
/// assert_eq!(upper.va.bits(), 39);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperHalf {
    /// Physical address of the root table.
    pub root: PhyAddr,
    /// Its VA size (T1SZ = 64 − bits).
    pub va: VaSize,
}

/// What the kernel wants the MMU to use.
///
/// ```
/// use awk_paging::PhyAddr;
/// use awk_paging_aarch64::{mmu::Config, VaSize};
/// let c = Config::new(PhyAddr::new(0x4100_0000), VaSize::Bits48)
///     .with_asid(1)
///     .with_upper(PhyAddr::new(0x4200_0000), VaSize::Bits48);
/// assert_eq!(c.asid, 1);
/// assert!(c.upper.is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Physical address of the TTBR0 (lower-half) root table.
    pub root: PhyAddr,
    /// The lower half's VA size (T0SZ = 64 − bits).
    pub va: VaSize,
    /// The ASID of the TTBR0 tables (TTBR0_EL1 bits 63:48; TCR_EL1.A1 = 0).
    pub asid: u16,
    /// The TTBR1 tables, if the upper half is used; otherwise TTBR1 walks are disabled (EPD1).
    pub upper: Option<UpperHalf>,
    /// The descriptor updates the hardware makes (TCR_EL1.HA / HD,
    /// [`HardwareFlags::tcr_bits`]): none by default. Set it to what the CPU has
    /// ([`Mmfr1::hardware_flags`](crate::features::Mmfr1::hardware_flags)) to use the
    /// hardware Access flag and dirty state; tables edited under it then use the matching
    /// [`Tracking`](crate::features::Tracking) (`A64::with_tracking`).
    pub hardware: HardwareFlags,
}

impl Config {
    /// TTBR0 tables at `root` of `va` size, ASID 0, no TTBR1.
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// let c = awk_paging_aarch64::mmu::Config::new(PhyAddr::new(0x1000), awk_paging_aarch64::VaSize::Bits39);
    /// assert_eq!((c.asid, c.upper), (0, None));
    /// ```
    #[must_use]
    pub const fn new(root: PhyAddr, va: VaSize) -> Self {
        Config {
            root,
            va,
            asid: 0,
            upper: None,
            hardware: HardwareFlags::NONE,
        }
    }

    /// The same, with the TTBR0 tables tagged with `asid`.
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// let c = awk_paging_aarch64::mmu::Config::new(PhyAddr::new(0x1000), awk_paging_aarch64::VaSize::Bits39);
    /// assert_eq!(c.with_asid(3).asid, 3);
    /// ```
    #[must_use]
    pub const fn with_asid(mut self, asid: u16) -> Self {
        self.asid = asid;
        self
    }

    /// The same, with TTBR1 walks enabled on the upper-half tables at `root` of `va` size.
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// use awk_paging_aarch64::{mmu::Config, VaSize};
    /// let c = Config::new(PhyAddr::new(0x1000), VaSize::Bits48).with_upper(PhyAddr::new(0x2000), VaSize::Bits39);
    /// assert_eq!(c.upper.unwrap().va, VaSize::Bits39);
    /// ```
    #[must_use]
    pub const fn with_upper(mut self, root: PhyAddr, va: VaSize) -> Self {
        self.upper = Some(UpperHalf { root, va });
        self
    }

    /// The same, with the hardware making the descriptor updates `hardware` names (TCR_EL1.HA,
    /// HD). Only what the CPU implements: the bits are RES0 on a CPU without FEAT_HAFDBS.
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// use awk_paging_aarch64::features::{HardwareFlags, Mmfr1, TCR_HA, TCR_HD};
    /// use awk_paging_aarch64::maint::SysReg;
    /// use awk_paging_aarch64::mmu::{plan, Config, CpuId};
    /// use awk_paging_aarch64::VaSize;
    /// // QEMU `-cpu max`: HAFDBS = 0b0010.
    /// let hw = Mmfr1::from_id_aa64mmfr1(0x2).hardware_flags();
    /// let c = Config::new(PhyAddr::new(0x4100_0000), VaSize::Bits48).with_hardware_updates(hw);
    /// let p = plan(CpuId::from_id_aa64mmfr0(0x1124), &c).unwrap();
    /// let tcr = p.value(SysReg::TcrEl1).unwrap();
    /// assert_eq!(tcr & (TCR_HA | TCR_HD), TCR_HA | TCR_HD);
    /// ```
    #[must_use]
    pub const fn with_hardware_updates(mut self, hardware: HardwareFlags) -> Self {
        self.hardware = hardware;
        self
    }
}

/// SCTLR_EL1.M: MMU on for EL1&0 stage 1.
pub const SCTLR_M: u64 = 1 << 0;
/// SCTLR_EL1.C: data accesses may be cached.
pub const SCTLR_C: u64 = 1 << 2;
/// SCTLR_EL1.SA: SP alignment check at EL1.
pub const SCTLR_SA: u64 = 1 << 3;
/// SCTLR_EL1.SA0: SP alignment check at EL0.
pub const SCTLR_SA0: u64 = 1 << 4;
/// SCTLR_EL1.I: instruction fetches may be cached.
pub const SCTLR_I: u64 = 1 << 12;
/// The SCTLR_EL1 bits that are RES1 on an ARMv8.0 CPU: bit 29 (LSMAOE, FEAT_LSMAOC), 28
/// (nTLSMD, FEAT_LSMAOC), 23 (SPAN, FEAT_PAN), 22 (EIS, FEAT_ExS), 20 (TSCXT, FEAT_CSV2_2),
/// 11 (EOS, FEAT_ExS) — each RES1 without its feature, and 1 is also the ARMv8.0 behaviour
/// when the feature exists — plus bit 8 (SED) and bit 7 (ITD), which are RES1 when EL0 cannot
/// use AArch32 and otherwise only disable SETEND and some IT forms for AArch32 EL0 code.
pub const SCTLR_RES1: u64 =
    1 << 29 | 1 << 28 | 1 << 23 | 1 << 22 | 1 << 20 | 1 << 11 | 1 << 8 | 1 << 7;

/// The complete SCTLR_EL1 value [`enable`] writes: [`SCTLR_M`], [`SCTLR_C`], [`SCTLR_I`],
/// [`SCTLR_SA`], [`SCTLR_SA0`] and [`SCTLR_RES1`]; every other bit 0 — among them A (no
/// alignment checks), WXN (no implicit execute-never for writable pages: the tables' own XN
/// bits decide), EE and E0E (little-endian at EL1 and EL0), the EL0 cache-maintenance, CTR_EL0,
/// `dc zva`, WFI/WFE and DAIF permissions (UCI, UCT, DZE, nTWI, nTWE, UMA: trapped), and every
/// later extension's enable (pointer authentication, BTI, MTE, ...). A kernel that wants any of
/// those sets them after [`enable`], from this known value.
///
/// ```
/// assert_eq!(awk_paging_aarch64::mmu::SCTLR_EL1_MMU_ON, 0x30d0_199d);
/// ```
pub const SCTLR_EL1_MMU_ON: u64 = SCTLR_M | SCTLR_C | SCTLR_SA | SCTLR_SA0 | SCTLR_I | SCTLR_RES1;

/// TCR_EL1.AS: 16-bit ASIDs.
pub const TCR_AS: u64 = 1 << 36;
/// TCR_EL1.EPD1: no TTBR1 walks (an access to the upper half faults).
pub const TCR_EPD1: u64 = 1 << 23;

/// TCR_EL1 for TTBR0 tables of `lower` size and TTBR1 tables of `upper` size, TTBR1 walks
/// disabled unless `ttbr1`.
fn tcr(lower: VaSize, upper: VaSize, ttbr1: bool, parange: u8) -> u64 {
    use aarch64_cpu::registers::TCR_EL1 as T;
    let ips = u64::from(parange.min(0b0101));
    let ttbr0 = T::T0SZ.val(u64::from(64 - lower.bits()))
        + T::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + T::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + T::SH0::Inner
        + T::TG0::KiB_4;
    let ttbr1_fields = T::T1SZ.val(u64::from(64 - upper.bits()))
        + T::IRGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + T::ORGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + T::SH1::Inner
        + T::TG1::KiB_4;
    let epd1 = if ttbr1 {
        T::EPD1::EnableTTBR1Walks
    } else {
        T::EPD1::DisableTTBR1Walks
    };
    (ttbr0 + ttbr1_fields + epd1 + T::IPS.val(ips)).value
}

/// The TCR_EL1 value for TTBR0 tables of `va` size, with TTBR1 walks disabled (EPD1) unless
/// `ttbr1` is set (then TTBR1 uses the same size), and IPS = `parange` (capped at 48 bits, the
/// widest this descriptor layout encodes). Walks are inner shareable and write-back
/// (IRGN/ORGN = 0b01) — the [`mair::NORMAL_WB`] attribute the tables themselves live in.
///
/// ASIDs are 8 bits (TCR_EL1.AS = 0) and taken from TTBR0 (A1 = 0); [`plan`] adds AS when the
/// CPU has 16-bit ASIDs, and sizes TTBR1 on its own. Top-byte-ignore and hardware access-flag
/// updates stay off.
///
/// ```
/// use awk_paging_aarch64::{mmu::tcr_el1, VaSize};
/// assert_eq!(tcr_el1(VaSize::Bits48, 0b0101, false) & 0x3f, 16); // T0SZ
/// assert_eq!(tcr_el1(VaSize::Bits39, 0b0101, false) & 0x3f, 25);
/// assert_ne!(tcr_el1(VaSize::Bits39, 0b0101, false) & 1 << 23, 0); // EPD1: no TTBR1 walks
/// ```
#[must_use]
pub fn tcr_el1(va: VaSize, parange: u8, ttbr1: bool) -> u64 {
    tcr(va, va, ttbr1, parange)
}

/// The most steps a [`Plan`] has.
pub const PLAN_STEPS: usize = 10;

/// What [`enable`] does, computed by [`plan`]: the register values and the ordered steps.
///
/// ```
/// use awk_paging::PhyAddr;
/// use awk_paging_aarch64::maint::{Op, SysReg};
/// use awk_paging_aarch64::mmu::{plan, Config, CpuId};
/// use awk_paging_aarch64::VaSize;
/// let id = CpuId { tgran4: 0, parange: 0b0101, asid_bits: 0b0010 };
/// let p = plan(id, &Config::new(PhyAddr::new(0x8000), VaSize::Bits39).with_asid(0x1234)).unwrap();
/// assert_eq!(p.value(SysReg::Ttbr0El1), Some(0x1234 << 48 | 0x8000));
/// assert_eq!(p.value(SysReg::Ttbr1El1), None);
/// assert_eq!(p.steps().ops().last(), Some(&Op::Isb));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    steps: Sequence<PLAN_STEPS>,
    pa_bits: u8,
}

impl Plan {
    /// The steps, in order.
    ///
    /// ```
    /// # use awk_paging::PhyAddr;
    /// # use awk_paging_aarch64::mmu::{plan, Config, CpuId};
    /// # let id = CpuId { tgran4: 0, parange: 5, asid_bits: 2 };
    /// let p = plan(id, &Config::new(PhyAddr::new(0x8000), awk_paging_aarch64::VaSize::Bits48)).unwrap();
    /// assert_eq!(p.steps().len(), 9);
    /// ```
    #[must_use]
    pub const fn steps(&self) -> &Sequence<PLAN_STEPS> {
        &self.steps
    }

    /// The value the plan writes to `reg` (the last write), if it writes it.
    ///
    /// ```
    /// # use awk_paging::PhyAddr;
    /// # use awk_paging_aarch64::{maint::SysReg, mair, mmu::{plan, Config, CpuId}};
    /// # let id = CpuId { tgran4: 0, parange: 5, asid_bits: 2 };
    /// let p = plan(id, &Config::new(PhyAddr::new(0x8000), awk_paging_aarch64::VaSize::Bits48)).unwrap();
    /// assert_eq!(p.value(SysReg::MairEl1), Some(mair::MAIR_EL1));
    /// ```
    #[must_use]
    pub fn value(&self, reg: SysReg) -> Option<u64> {
        self.steps.ops().iter().rev().find_map(|op| match *op {
            Op::Msr(r, v) if r == reg => Some(v),
            _ => None,
        })
    }

    /// The output-address width the CPU reports, capped at 48, for
    /// [`A64::with_pa_bits`](crate::A64::with_pa_bits).
    ///
    /// ```
    /// # use awk_paging::PhyAddr;
    /// # use awk_paging_aarch64::mmu::{plan, Config, CpuId};
    /// let id = CpuId { tgran4: 0, parange: 0b0010, asid_bits: 0 };
    /// let p = plan(id, &Config::new(PhyAddr::new(0x8000), awk_paging_aarch64::VaSize::Bits48)).unwrap();
    /// assert_eq!(p.pa_bits(), 40);
    /// ```
    #[must_use]
    pub const fn pa_bits(&self) -> u8 {
        self.pa_bits
    }

    /// Runs the steps on this CPU. Bare-metal AArch64 only.
    ///
    /// # Safety
    ///
    /// As for [`enable`], which builds the plan from this CPU's ID register and runs it.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    /// # fn f(root: awk_paging::PhyAddr) {
    /// use awk_paging_aarch64::{mmu, VaSize};
    /// let p = mmu::plan(mmu::CpuId::read(), &mmu::Config::new(root, VaSize::Bits48)).unwrap();
    /// unsafe { p.execute() };
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
    pub unsafe fn execute(&self) {
        // SAFETY: the caller's guarantee (see `enable`).
        unsafe { self.steps.run() }
    }
}

/// Whether `root` can be a TTBR base: 4 KiB aligned (a 512-entry root table at either VA size)
/// and inside the output size.
const fn root_ok(root: PhyAddr, pa_bits: u8) -> bool {
    root.as_u64() & 0xfff == 0 && root.as_u64() >> pa_bits == 0
}

/// The plan for turning the MMU on with `config` on a CPU with ID fields `cpu` (see the module
/// docs for the steps). Checks everything first: an `Err` means nothing would be written.
///
/// ```
/// use awk_paging::PhyAddr;
/// use awk_paging_aarch64::maint::SysReg;
/// use awk_paging_aarch64::mmu::{plan, Config, CpuId, MmuError, TCR_AS, TCR_EPD1};
/// use awk_paging_aarch64::VaSize;
///
/// let root = PhyAddr::new(0x4100_0000);
/// let eight_bit = CpuId { tgran4: 0, parange: 0b0101, asid_bits: 0 };
/// let c = Config::new(root, VaSize::Bits48).with_asid(0x100);
/// assert_eq!(plan(eight_bit, &c), Err(MmuError::AsidTooWide(0x100)));
///
/// let sixteen_bit = CpuId { asid_bits: 0b0010, ..eight_bit };
/// let p = plan(sixteen_bit, &c.with_upper(PhyAddr::new(0x4200_0000), VaSize::Bits48)).unwrap();
/// let tcr = p.value(SysReg::TcrEl1).unwrap();
/// assert_eq!((tcr & TCR_AS != 0, tcr & TCR_EPD1 != 0), (true, false));
/// assert_eq!(p.value(SysReg::Ttbr1El1), Some(0x4200_0000));
/// ```
pub fn plan(cpu: CpuId, config: &Config) -> Result<Plan, MmuError> {
    if !cpu.has_4k_granule() {
        return Err(MmuError::Granule4KUnsupported);
    }
    let pa_bits = cpu.pa_bits()?;
    if !root_ok(config.root, pa_bits) {
        return Err(MmuError::BadRoot);
    }
    if let Some(upper) = config.upper {
        if !root_ok(upper.root, pa_bits) {
            return Err(MmuError::BadUpperRoot);
        }
    }
    let asid16 = cpu.has_16bit_asids();
    if config.asid > 0xff && !asid16 {
        return Err(MmuError::AsidTooWide(config.asid));
    }
    let upper_va = config.upper.map_or(config.va, |u| u.va);
    let mut tcr_value = tcr(config.va, upper_va, config.upper.is_some(), cpu.parange);
    if asid16 {
        tcr_value |= TCR_AS;
    }
    tcr_value |= config.hardware.tcr_bits();
    let ttbr0 = config.root.as_u64() | u64::from(config.asid) << 48;
    let mair = Op::Msr(SysReg::MairEl1, mair::MAIR_EL1);
    let tcr_op = Op::Msr(SysReg::TcrEl1, tcr_value);
    let ttbr0_op = Op::Msr(SysReg::Ttbr0El1, ttbr0);
    let sync = [
        Op::Dsb(Barrier::Ish),
        Op::Tlbi(TlbiOp::Vmalle1, 0),
        Op::Dsb(Barrier::Ish),
        Op::Isb,
        Op::Msr(SysReg::SctlrEl1, SCTLR_EL1_MMU_ON),
        Op::Isb,
    ];
    let [s0, s1, s2, s3, s4, s5] = sync;
    let steps = match config.upper {
        Some(upper) => Sequence::from_ops([
            mair,
            tcr_op,
            ttbr0_op,
            Op::Msr(SysReg::Ttbr1El1, upper.root.as_u64()),
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
        ]),
        None => Sequence::from_ops([mair, tcr_op, ttbr0_op, s0, s1, s2, s3, s4, s5]),
    };
    Ok(Plan { steps, pa_bits })
}

/// The output-address width this CPU implements (ID_AA64MMFR0_EL1.PARange), capped at 48
/// bits (the widest this descriptor layout encodes), for
/// [`A64::with_pa_bits`](crate::A64::with_pa_bits). Bare-metal AArch64 only.
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn f() {
/// use awk_paging_aarch64::{mmu, A64};
/// let regime = A64::default().with_pa_bits(mmu::cpu_pa_bits().unwrap());
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
pub fn cpu_pa_bits() -> Result<u8, MmuError> {
    CpuId::read().pa_bits()
}

/// Turns the MMU on: builds the [`plan`] for this CPU (ID_AA64MMFR0_EL1) and `config`, and
/// runs it (see the module docs for the exact sequence). Checks everything before writing any
/// register: an `Err` leaves the CPU as it was. Bare-metal AArch64 only.
///
/// Returns the output-address width the CPU reports (capped at 48), for
/// [`A64::with_pa_bits`](crate::A64::with_pa_bits).
///
/// # Safety
///
/// The tables at `config.root` (and `config.upper`'s) must be valid and map the running code,
/// its stack and data at the addresses they run at now, with the [`mair`] attribute indices;
/// the caller runs at EL1 with the MMU off. The table walker reads the tables as write-back
/// cacheable memory (TCR_EL1.IRGN/ORGN): tables written with the data cache off must have no
/// stale lines in the caches — clean and invalidate them to the point of coherency first
/// ([`cache::clean_invalidate_to_poc`](crate::cache::clean_invalidate_to_poc)), or never
/// let them be cached. SCTLR_EL1 is replaced by [`SCTLR_EL1_MMU_ON`]: SP alignment checking is
/// on, so the code must keep SP 16-byte aligned (Rust and the AAPCS64 do).
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn kernel(root: awk_paging::PhyAddr) {
/// use awk_paging_aarch64::{mmu, VaSize};
/// let config = mmu::Config::new(root, VaSize::Bits48);
/// let pa_bits = unsafe { mmu::enable(&config) }.expect("4 KiB granule");
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
pub unsafe fn enable(config: &Config) -> Result<u8, MmuError> {
    let plan = plan(CpuId::read(), config)?;
    // SAFETY: the caller's guarantee.
    unsafe { plan.execute() };
    Ok(plan.pa_bits())
}
