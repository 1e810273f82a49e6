//! MMU setup for a kernel: the TCR_EL1 value (pure, host-tested) and, on the target, programming
//! MAIR_EL1/TCR_EL1/TTBR0_EL1 and turning the MMU on (`enable`), and reading the CPU's
//! output-address width (`cpu_pa_bits`).
//!
//! The sequence `enable` follows (Arm ARM D8 "The AArch64 Virtual Memory System Architecture",
//! and the register descriptions of MAIR_EL1, TCR_EL1, TTBR0_EL1, SCTLR_EL1):
//!
//! 1. refuse if ID_AA64MMFR0_EL1.TGran4 = 0b1111 (no 4 KiB granule), if PARange is unknown, if
//!    the root is misaligned or too wide, or if the ASID needs 16 bits the CPU lacks;
//! 2. write MAIR_EL1 ([`mair::MAIR_EL1`]), TCR_EL1 ([`tcr_el1`], plus TCR_EL1.AS when the CPU
//!    has 16-bit ASIDs), TTBR0_EL1 (root | ASID << 48);
//! 3. `dsb ish; tlbi vmalle1; dsb ish; isb`: table writes complete, stale reset-time TLB
//!    contents gone, register writes in effect;
//! 4. set SCTLR_EL1.M, C and I, then `isb`.

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
    /// The root table is not 4 KiB aligned or wider than the output size.
    BadRoot,
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

/// The TCR_EL1 value for TTBR0 tables of `va` size, with TTBR1 walks disabled (EPD1) unless
/// `ttbr1` is set (then TTBR1 uses the same size), and IPS = `parange` (capped at 48 bits, the
/// widest this descriptor layout encodes). Walks are inner shareable and write-back
/// (IRGN/ORGN = 0b01) — the [`mair::NORMAL_WB`] attribute the tables themselves live in.
///
/// ASIDs are 8 bits (TCR_EL1.AS = 0) and taken from TTBR0 (A1 = 0); `enable` adds AS when the
/// CPU has 16-bit ASIDs. Top-byte-ignore and hardware access-flag updates stay off.
///
/// ```
/// use awk_paging_aarch64::{mmu::tcr_el1, VaSize};
/// assert_eq!(tcr_el1(VaSize::Bits48, 0b0101, false) & 0x3f, 16); // T0SZ
/// assert_eq!(tcr_el1(VaSize::Bits39, 0b0101, false) & 0x3f, 25);
/// assert_ne!(tcr_el1(VaSize::Bits39, 0b0101, false) & 1 << 23, 0); // EPD1: no TTBR1 walks
/// ```
#[must_use]
pub fn tcr_el1(va: VaSize, parange: u8, ttbr1: bool) -> u64 {
    use aarch64_cpu::registers::TCR_EL1 as T;
    let tsz = u64::from(64 - va.bits());
    let ips = u64::from(parange.min(0b0101));
    let ttbr0 = T::T0SZ.val(tsz)
        + T::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + T::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + T::SH0::Inner
        + T::TG0::KiB_4;
    let ttbr1_fields = T::T1SZ.val(tsz)
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

#[cfg(target_arch = "aarch64")]
mod hw {
    use super::{pa_bits_of_parange, tcr_el1, MmuError};
    use crate::{mair, VaSize};
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{
        ReadWriteable, Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL1, SCTLR_EL1, TCR_EL1,
        TTBR0_EL1,
    };
    use awk_paging::PhyAddr;

    /// The output-address width this CPU implements (ID_AA64MMFR0_EL1.PARange), capped at 48
    /// bits (the widest this descriptor layout encodes), for
    /// [`A64::with_pa_bits`](crate::A64::with_pa_bits).
    ///
    /// ```no_run
    /// use awk_paging_aarch64::{mmu, A64};
    /// let regime = A64::default().with_pa_bits(mmu::cpu_pa_bits().unwrap());
    /// ```
    pub fn cpu_pa_bits() -> Result<u8, MmuError> {
        let parange = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) as u8;
        pa_bits_of_parange(parange)
            .map(|b| b.min(48))
            .ok_or(MmuError::UnknownPaRange(parange))
    }

    /// Programs MAIR_EL1 from [`mair::MAIR_EL1`], TCR_EL1 from [`tcr_el1`] and TTBR0_EL1 (with
    /// `asid` in bits 63:48), invalidates the TLB, then sets SCTLR_EL1.M, C and I (see the
    /// module docs for the exact sequence). Checks everything before writing any register: an
    /// `Err` leaves the CPU as it was.
    ///
    /// Returns the output-address width the CPU reports (capped at 48), for
    /// [`A64::with_pa_bits`](crate::A64::with_pa_bits).
    ///
    /// # Safety
    ///
    /// `root` must hold valid tables that map the running code, its stack and data, at the
    /// addresses they run at now; the caller runs at EL1 with the MMU off. The table walker
    /// reads the tables as write-back cacheable memory (TCR_EL1.IRGN0/ORGN0): tables written
    /// with the data cache off must not have stale lines in the caches (clean and invalidate
    /// them by VA, or never let them be cached).
    ///
    /// ```no_run
    /// # fn kernel(root: awk_paging::PhyAddr) {
    /// use awk_paging_aarch64::{mmu, VaSize};
    /// let pa_bits = unsafe { mmu::enable(root, VaSize::Bits48, 0) }.expect("4 KiB granule");
    /// # }
    /// ```
    pub unsafe fn enable(root: PhyAddr, va: VaSize, asid: u16) -> Result<u8, MmuError> {
        if ID_AA64MMFR0_EL1.matches_all(ID_AA64MMFR0_EL1::TGran4::NotSupported) {
            return Err(MmuError::Granule4KUnsupported);
        }
        let parange = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) as u8;
        let bits = pa_bits_of_parange(parange)
            .ok_or(MmuError::UnknownPaRange(parange))?
            .min(48);
        if root.as_u64() & 0xfff != 0 || root.as_u64() >> bits != 0 {
            return Err(MmuError::BadRoot);
        }
        let asid16 = ID_AA64MMFR0_EL1.matches_all(ID_AA64MMFR0_EL1::ASIDBits::Bits_16);
        if asid > 0xff && !asid16 {
            return Err(MmuError::AsidTooWide(asid));
        }
        let mut tcr = tcr_el1(va, parange, false);
        if asid16 {
            tcr |= TCR_EL1::AS::ASID16Bits.value;
        }
        MAIR_EL1.set(mair::MAIR_EL1);
        TCR_EL1.set(tcr);
        TTBR0_EL1.set(root.as_u64() | (u64::from(asid) << 48));
        // SAFETY: barriers and a local TLB invalidation: no memory effects beyond discarding
        // stale reset-time translations before the first enable.
        unsafe { core::arch::asm!("dsb ish", "tlbi vmalle1", "dsb ish", options(nostack)) };
        barrier::isb(barrier::SY);
        SCTLR_EL1.modify(SCTLR_EL1::M::Enable + SCTLR_EL1::C::Cacheable + SCTLR_EL1::I::Cacheable);
        barrier::isb(barrier::SY);
        Ok(bits)
    }
}

#[cfg(target_arch = "aarch64")]
pub use hw::{cpu_pa_bits, enable};
