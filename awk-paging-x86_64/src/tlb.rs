//! TLB maintenance on x86_64 hardware.

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod hw {
    use awk_paging::{Tlb, VirtAddr};
    use x86_64::registers::control::{Cr4, Cr4Flags};

    /// The CPU's own TLB: `invlpg` for one page; for everything, a CR4.PGE toggle (which also
    /// drops global entries; a CR3 reload would keep them) or a CR3 reload when PGE is off.
    ///
    /// Single-CPU: for SMP, wrap it in a `Tlb` that also sends shootdown IPIs.
    ///
    /// ```no_run
    /// use awk_paging::{Tlb, VirtAddr};
    /// awk_paging_x86_64::Invlpg.flush_page(VirtAddr::new(0xffff_8000_0000_0000));
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Invlpg;

    impl Tlb for Invlpg {
        #[inline]
        fn flush_page(&self, va: VirtAddr) {
            // `invlpg` takes any address; it also drops paging-structure caches for it
            // (SDM Vol. 3A §4.10.4.1). Non-canonical addresses are never mapped.
            if let Ok(va) = x86_64::VirtAddr::try_new(va.as_u64()) {
                x86_64::instructions::tlb::flush(va);
            }
        }

        #[inline]
        fn flush_all(&self) {
            let cr4 = Cr4::read();
            if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
                // SAFETY: toggling PGE only invalidates TLB entries.
                unsafe {
                    Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
                    Cr4::write(cr4);
                }
            } else {
                x86_64::instructions::tlb::flush_all();
            }
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use hw::Invlpg;
