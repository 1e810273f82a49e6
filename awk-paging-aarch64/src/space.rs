//! Address spaces on AArch64: the kernel in `TTBR1_EL1` (its own table, the TTBR1 regime of
//! [`A64`](crate::A64) with [`KernelSpace::new_split`](awk_paging::space::KernelSpace::new_split)),
//! each process in `TTBR0_EL1` with its ASID in bits 63:48 ([`Ttbr0Mmu`], the
//! [`Activate`](awk_paging::space::Activate) of [`awk_paging::space`]), as
//! [`maint`](crate::maint) sequences checked on the host.
//!
//! The ASID comes from `TTBR0_EL1` (TCR_EL1.A1 = 0, what [`mmu::plan`](crate::mmu::plan)
//! writes), so one `msr ttbr0_el1` changes root and ASID together: no window where the new
//! root runs under the old ASID (the reason Linux, which keeps the ASID in TTBR1, first loads
//! a reserved TTBR0). The `isb` after it makes later instructions translate through the new
//! root (Arm ARM D8.13 / D23 "Synchronization requirements for system registers": a write to
//! a translation register takes effect after a context synchronization event).
//!
//! After an ASID rollover ([`Switch::flush_local`]) the CPU first drops every entry it holds
//! for EL1&0: `dsb nshst; tlbi vmalle1; dsb nsh` (local: every other CPU does its own before its
//! next switch), as Linux's `local_flush_tlb_all`. Per-process invalidations use the ASID
//! forms of [`TlbEl1`](crate::TlbEl1) (`vae1is`, `vale1is`, `aside1is`): `aside1is` keeps
//! global (kernel) entries.

use awk_paging::space::Switch;
use awk_paging::PhyAddr;

use crate::maint::{Barrier, Op, Sequence, SysReg, TlbiOp};

/// The ops of one switch: at most five.
///
/// ```
/// let s: awk_paging_aarch64::space::SwitchSequence = awk_paging_aarch64::maint::Sequence::from_ops([]);
/// assert!(s.is_empty());
/// ```
pub type SwitchSequence = Sequence<5>;

/// This CPU's `TTBR0_EL1` loading: whether it runs with 16-bit ASIDs (TCR_EL1.AS = 1) or 8.
///
/// ```
/// use awk_paging::space::Switch;
/// use awk_paging::PhyAddr;
/// use awk_paging_aarch64::space::Ttbr0Mmu;
/// let mmu = Ttbr0Mmu { asid16: false };
/// let s = Switch { asid: 9, flush_local: false, new_asid: false };
/// assert_eq!(
///     mmu.activate_ops(PhyAddr::new(0x4008_0000), s).unwrap().to_string(),
///     "msr ttbr0_el1, 0x9000040080000; isb"
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ttbr0Mmu {
    /// TCR_EL1.AS is set: ASIDs up to 65535 (else up to 255).
    pub asid16: bool,
}

impl Ttbr0Mmu {
    /// The `TTBR0_EL1` value for `root` with `asid`: `None` if the root is not 4 KiB aligned or
    /// beyond 48 bits (BADDR), or the ASID does not fit the configured width.
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// use awk_paging_aarch64::space::Ttbr0Mmu;
    /// assert_eq!(Ttbr0Mmu { asid16: false }.ttbr0(PhyAddr::new(0x1000), 255), Some(0xff << 48 | 0x1000));
    /// assert_eq!(Ttbr0Mmu { asid16: false }.ttbr0(PhyAddr::new(0x1000), 256), None);
    /// assert_eq!(Ttbr0Mmu { asid16: true }.ttbr0(PhyAddr::new(0x1000), 256), Some(0x100 << 48 | 0x1000));
    /// ```
    #[must_use]
    pub const fn ttbr0(&self, root: PhyAddr, asid: u16) -> Option<u64> {
        let r = root.as_u64();
        if r & 0xfff != 0 || r >> 48 != 0 || (!self.asid16 && asid > 0xff) {
            return None;
        }
        Some((asid as u64) << 48 | r)
    }

    /// The sequence running `root` with `switch`: the local flush if owed, `msr ttbr0_el1`
    /// (root and ASID in one write), `isb`. `None` if [`ttbr0`](Self::ttbr0) refuses.
    ///
    /// ```
    /// use awk_paging::space::Switch;
    /// use awk_paging::PhyAddr;
    /// use awk_paging_aarch64::space::Ttbr0Mmu;
    /// let s = Switch { asid: 1, flush_local: true, new_asid: true };
    /// assert_eq!(
    ///     Ttbr0Mmu::default().activate_ops(PhyAddr::new(0x8000), s).unwrap().to_string(),
    ///     "dsb nshst; tlbi vmalle1; dsb nsh; msr ttbr0_el1, 0x1000000008000; isb"
    /// );
    /// ```
    #[must_use]
    pub const fn activate_ops(&self, root: PhyAddr, switch: Switch) -> Option<SwitchSequence> {
        let Some(ttbr) = self.ttbr0(root, switch.asid) else {
            return None;
        };
        let load = Op::Msr(SysReg::Ttbr0El1, ttbr);
        Some(if switch.flush_local {
            Sequence::from_ops([
                Op::Dsb(Barrier::NshSt),
                Op::Tlbi(TlbiOp::Vmalle1, 0),
                Op::Dsb(Barrier::Nsh),
                load,
                Op::Isb,
            ])
        } else {
            Sequence::from_ops([load, Op::Isb])
        })
    }
}

// SAFETY: the sequence loads `root` with the ASID after the owed local flush, then
// synchronizes; refused values (never produced by an allocator sized for the CPU) load nothing.
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
unsafe impl awk_paging::space::Activate for Ttbr0Mmu {
    unsafe fn activate(&self, root: PhyAddr, switch: Switch) {
        if let Some(ops) = self.activate_ops(root, switch) {
            // SAFETY: the caller's contract (a valid TTBR0 root).
            unsafe { ops.run() }
        }
    }
}
