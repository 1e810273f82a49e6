//! TLB maintenance on AArch64 hardware (Arm ARM D8.13 "Translation Lookaside Buffers",
//! D8.16 "Break-before-make"): `dsb ishst` makes table writes visible to walkers of the inner
//! shareable domain, `tlbi …is` broadcasts the invalidation, `dsb ish` waits for it, `isb`
//! resynchronises this CPU's context.

#[cfg(target_arch = "aarch64")]
mod hw {
    use awk_paging::{Tlb, VirtAddr};
    use core::arch::asm;

    /// EL1&0 TLB maintenance, broadcast to the inner shareable domain (all CPUs).
    ///
    /// Page invalidations (all levels, so walk caches too):
    ///
    /// - with an ASID: `tlbi vae1is, Xt`, `Xt = ASID << 48 | VA[55:12]` (VA bits 55:12 in
    ///   `Xt` bits 43:0, as the TLBI VA-operand format defines). It also hits global entries
    ///   for that VA;
    /// - without: `tlbi vaae1is, Xt`, `Xt = VA[55:12]` (every ASID).
    ///
    /// Whole-space invalidation: `tlbi aside1is` with an ASID (that ASID's non-global entries
    /// only), `tlbi vmalle1is` without (everything at EL1&0). A table that holds global
    /// mappings should therefore use `asid: None`, or its [`Tlb::flush_all`] will keep them.
    /// ASIDs above 255 need TCR_EL1.AS = 1 (16-bit ASIDs, set by
    /// [`mmu::enable`](crate::mmu::enable) when the CPU has them); otherwise the hardware
    /// ignores the upper byte.
    ///
    /// Every operation starts with `dsb ishst` (prior table writes visible to all walkers) and
    /// ends with `dsb ish; isb` (invalidation complete everywhere, this CPU resynchronised).
    ///
    /// ```no_run
    /// use awk_paging::{Tlb, VirtAddr};
    /// awk_paging_aarch64::TlbEl1 { asid: None }.flush_page(VirtAddr::new(0x4000_0000));
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TlbEl1 {
        /// The address space's ASID, if it uses one.
        pub asid: Option<u16>,
    }

    /// The `tlbi` operand for `va`: VA\[55:12\] in bits 43:0, ASID in 63:48 (bits 47:44 RES0).
    #[inline(always)]
    fn operand(va: VirtAddr, asid: u16) -> u64 {
        (u64::from(asid) << 48) | ((va.as_u64() >> 12) & 0x0000_0fff_ffff_ffff)
    }

    impl Tlb for TlbEl1 {
        #[inline]
        fn flush_page(&self, va: VirtAddr) {
            // SAFETY: barriers and TLB invalidation have no memory-safety effects.
            unsafe {
                match self.asid {
                    Some(asid) => asm!(
                        "dsb ishst", "tlbi vae1is, {x}", "dsb ish", "isb",
                        x = in(reg) operand(va, asid), options(nostack, preserves_flags)
                    ),
                    None => asm!(
                        "dsb ishst", "tlbi vaae1is, {x}", "dsb ish", "isb",
                        x = in(reg) operand(va, 0), options(nostack, preserves_flags)
                    ),
                }
            }
        }

        #[inline]
        fn flush_all(&self) {
            // SAFETY: as above.
            unsafe {
                match self.asid {
                    Some(asid) => asm!(
                        "dsb ishst", "tlbi aside1is, {x}", "dsb ish", "isb",
                        x = in(reg) u64::from(asid) << 48, options(nostack, preserves_flags)
                    ),
                    None => asm!(
                        "dsb ishst",
                        "tlbi vmalle1is",
                        "dsb ish",
                        "isb",
                        options(nostack, preserves_flags)
                    ),
                }
            }
        }

        #[inline]
        fn publish(&self) {
            // SAFETY: barriers only.
            unsafe { asm!("dsb ishst", "isb", options(nostack, preserves_flags)) }
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use hw::TlbEl1;
