//! MMU setup for a kernel: the TCR_EL1 value (pure, host-tested) and, on the target, programming
//! MAIR_EL1/TCR_EL1/TTBR0_EL1 and turning the MMU on.

use crate::{mair, VaSize};

/// Why the MMU was not enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuError {
    /// ID_AA64MMFR0_EL1.TGran4 says the 4 KiB granule is not implemented.
    Granule4KUnsupported,
    /// ID_AA64MMFR0_EL1.PARange holds a value this crate does not know.
    UnknownPaRange(u8),
    /// The root table is not 4 KiB aligned or wider than the output size.
    BadRoot,
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
/// ```
/// use awk_paging_aarch64::{mmu::tcr_el1, VaSize};
/// assert_eq!(tcr_el1(VaSize::Bits48, 0b0101, false) & 0x3f, 16); // T0SZ
/// ```
#[must_use]
pub fn tcr_el1(va: VaSize, parange: u8, ttbr1: bool) -> u64 {
    use aarch64_cpu::registers::TCR_EL1 as T;
    let tsz = u64::from(64 - va.bits());
    let ips = u64::from(parange.min(0b0101));
    let _ = mair::NORMAL_WB; // walks are write-back, like the tables' own attribute
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
    use super::{tcr_el1, MmuError};
    use crate::{mair, VaSize};
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{
        ReadWriteable, Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL1, SCTLR_EL1, TCR_EL1,
        TTBR0_EL1,
    };
    use awk_paging::PhyAddr;

    /// Programs MAIR_EL1 from [`mair::MAIR_EL1`], TCR_EL1 from [`tcr_el1`] and TTBR0_EL1 (with
    /// `asid` in bits 63:48), invalidates the TLB, then sets SCTLR_EL1.M, C and I.
    ///
    /// Returns the output-address width the CPU reports, for
    /// [`A64::with_pa_bits`](crate::A64::with_pa_bits).
    ///
    /// # Safety
    ///
    /// `root` must hold valid tables that map the running code, its stack and data, at the
    /// addresses they run at now; the caller runs at EL1.
    pub unsafe fn enable(root: PhyAddr, va: VaSize, asid: u16) -> Result<u8, MmuError> {
        if ID_AA64MMFR0_EL1.matches_all(ID_AA64MMFR0_EL1::TGran4::NotSupported) {
            return Err(MmuError::Granule4KUnsupported);
        }
        let parange = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) as u8;
        let bits = super::pa_bits_of_parange(parange).ok_or(MmuError::UnknownPaRange(parange))?;
        if root.as_u64() & 0xfff != 0 || root.as_u64() >> bits.min(48) != 0 {
            return Err(MmuError::BadRoot);
        }
        MAIR_EL1.set(mair::MAIR_EL1);
        TCR_EL1.set(tcr_el1(va, parange, false));
        TTBR0_EL1.set(root.as_u64() | (u64::from(asid) << 48));
        // SAFETY: invalidating the TLB before the first enable discards stale reset contents.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1", "dsb ish", options(nostack)) };
        barrier::isb(barrier::SY);
        SCTLR_EL1.modify(SCTLR_EL1::M::Enable + SCTLR_EL1::C::Cacheable + SCTLR_EL1::I::Cacheable);
        barrier::isb(barrier::SY);
        Ok(bits.min(48))
    }
}

#[cfg(target_arch = "aarch64")]
pub use hw::enable;
