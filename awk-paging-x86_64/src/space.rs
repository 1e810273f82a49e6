//! Address spaces on x86_64: loading a process's PML4 with its PCID ([`PcidMmu`], the
//! [`Activate`](awk_paging::space::Activate) of [`awk_paging::space`]) and invalidating one
//! PCID's entries, as [`maint`](crate::maint) ops checked on the host.
//!
//! # CR3 with PCIDs (Intel SDM Vol. 3A §4.10.1, §4.10.4.1)
//!
//! With CR4.PCIDE = 1, CR3 bits 11:0 are the current PCID, and a `mov cr3` with bit 63 set
//! keeps the cached entries of the PCID it loads: switching back to a live PCID needs no
//! flush. Without bit 63 the loaded PCID's non-global entries are invalidated. With
//! CR4.PCIDE = 0 every `mov cr3` invalidates all non-global entries.
//!
//! # Per-PCID invalidation
//!
//! | operation | INVPCID present | no INVPCID, PCID current | no INVPCID, other PCID |
//! |---|---|---|---|
//! | one page | `invpcid` type 0 (individual address) | `invlpg` | CR4.PGE toggle (everything) |
//! | whole PCID | `invpcid` type 1 (single context) | `mov cr3` without bit 63 | CR4.PGE toggle |
//! | rollover (local) | `invpcid` type 3 (all PCIDs, non-global) | CR4.PGE toggle | CR4.PGE toggle |
//!
//! `invlpg` only reaches the current PCID (and global entries), so without INVPCID a page of
//! an inactive PCID can only be dropped with everything else: the documented, slow fallback.
//! Types 0, 1 and 3 keep global translations, so a process's flush never costs the kernel's
//! global entries. Everything here acts on the running CPU; an SMP kernel sends the same ops to
//! the other CPUs that may cache the PCID (its shootdown `Tlb`).

use awk_paging::space::Switch;
use awk_paging::{PhyAddr, VirtAddr};

use crate::maint::{InvpcidKind, Op, Sequence};
use crate::Invlpg;

/// CR3 bit 63: keep the loaded PCID's cached entries (CR4.PCIDE = 1 only).
///
/// ```
/// assert_eq!(awk_paging_x86_64::space::CR3_NOFLUSH, 1 << 63);
/// ```
pub const CR3_NOFLUSH: u64 = 1 << 63;

/// The number of PCIDs (12 bits): the ASID count to give
/// [`Asids`](awk_paging::space::Asids).
///
/// ```
/// assert!(awk_paging::space::Asids::<4>::new(awk_paging_x86_64::space::PCIDS).is_ok());
/// ```
pub const PCIDS: usize = 4096;

/// The ops of one switch or one per-PCID invalidation: at most two.
///
/// ```
/// let s: awk_paging_x86_64::space::SpaceSequence = awk_paging_x86_64::maint::Sequence::from_ops([]);
/// assert!(s.is_empty());
/// ```
pub type SpaceSequence = Sequence<2>;

/// How this CPU runs address spaces: whether CR4.PCIDE is set (CPUID.01H:ECX.PCID\[bit 17\]
/// and the kernel enabled it) and whether it has INVPCID (CPUID.(EAX=07H,ECX=0):EBX\[bit 10\]).
///
/// ```
/// use awk_paging::space::Switch;
/// use awk_paging::PhyAddr;
/// use awk_paging_x86_64::maint::Op;
/// use awk_paging_x86_64::space::{PcidMmu, CR3_NOFLUSH};
/// let mmu = PcidMmu { pcide: true, invpcid: true };
/// let s = Switch { asid: 7, flush_local: false, new_asid: false };
/// let ops = mmu.activate_ops(PhyAddr::new(0x10_0000), s).unwrap();
/// assert_eq!(ops.ops(), &[Op::WriteCr3(CR3_NOFLUSH | 0x10_0000 | 7)]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcidMmu {
    /// CR4.PCIDE is set.
    pub pcide: bool,
    /// The CPU has INVPCID.
    pub invpcid: bool,
}

impl PcidMmu {
    /// The CR3 value loading `root` with `pcid`, keeping its entries if `keep`: `None` if the
    /// root is not 4 KiB aligned or beyond 52 bits, or the PCID is not below [`PCIDS`]. Without
    /// PCIDE the PCID and `keep` are ignored (PCID 0, always a flush).
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// use awk_paging_x86_64::space::PcidMmu;
    /// let on = PcidMmu { pcide: true, invpcid: false };
    /// assert_eq!(on.cr3(PhyAddr::new(0x5000), 3, false), Some(0x5003));
    /// assert_eq!(on.cr3(PhyAddr::new(0x5000), 4096, false), None);
    /// assert_eq!(PcidMmu::default().cr3(PhyAddr::new(0x5000), 3, true), Some(0x5000));
    /// ```
    #[must_use]
    pub const fn cr3(&self, root: PhyAddr, pcid: u16, keep: bool) -> Option<u64> {
        let r = root.as_u64();
        if r & 0xfff != 0 || r >> 52 != 0 || pcid as usize >= PCIDS {
            return None;
        }
        Some(if self.pcide {
            r | pcid as u64 | if keep { CR3_NOFLUSH } else { 0 }
        } else {
            r
        })
    }

    /// The ops that run `root` with `switch`: the rollover flush first if owed (every PCID's
    /// non-global entries: `invpcid` type 3, or a CR4.PGE toggle), then `mov cr3` with the PCID
    /// and bit 63 (its own entries are its own: a live PCID keeps them). `None` if
    /// [`cr3`](Self::cr3) refuses the values.
    ///
    /// ```
    /// use awk_paging::space::Switch;
    /// use awk_paging::PhyAddr;
    /// use awk_paging_x86_64::maint::{InvpcidKind, Op};
    /// use awk_paging_x86_64::space::{PcidMmu, CR3_NOFLUSH};
    /// let s = Switch { asid: 1, flush_local: true, new_asid: true };
    /// let ops = PcidMmu { pcide: true, invpcid: true }.activate_ops(PhyAddr::new(0x8000), s).unwrap();
    /// assert_eq!(ops.ops(), &[Op::Invpcid(InvpcidKind::AllNonGlobal, 0, 0), Op::WriteCr3(CR3_NOFLUSH | 0x8001)]);
    /// ```
    #[must_use]
    pub const fn activate_ops(&self, root: PhyAddr, switch: Switch) -> Option<SpaceSequence> {
        let Some(cr3) = self.cr3(root, switch.asid, true) else {
            return None;
        };
        Some(if !self.pcide {
            // One context: the CR3 load itself drops every non-global entry.
            Sequence::from_ops([Op::WriteCr3(cr3)])
        } else if !switch.flush_local {
            Sequence::from_ops([Op::WriteCr3(cr3)])
        } else if self.invpcid {
            Sequence::from_ops([
                Op::Invpcid(InvpcidKind::AllNonGlobal, 0, 0),
                Op::WriteCr3(cr3),
            ])
        } else {
            Sequence::from_ops([Op::ToggleCr4Pge, Op::WriteCr3(cr3)])
        })
    }

    /// The ops invalidating the page at `va` for `pcid` (walk caches included), the CPU's CR3
    /// being `current_cr3` (see the module table). Nothing for a non-canonical `va`.
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// use awk_paging_x86_64::maint::Op;
    /// use awk_paging_x86_64::space::PcidMmu;
    /// let old = PcidMmu { pcide: true, invpcid: false };
    /// let va = VirtAddr::new(0x40_0000);
    /// assert_eq!(old.flush_page_asid_ops(va, 5, 0x9005).ops(), &[Op::Invlpg(0x40_0000)]);
    /// assert_eq!(old.flush_page_asid_ops(va, 6, 0x9005).ops(), &[Op::ToggleCr4Pge]);
    /// ```
    #[must_use]
    pub const fn flush_page_asid_ops(
        &self,
        va: VirtAddr,
        pcid: u16,
        current_cr3: u64,
    ) -> SpaceSequence {
        let page = Invlpg.flush_page_ops(va);
        if page.is_empty() {
            return Sequence::from_ops([]);
        }
        if self.pcide && self.invpcid {
            Sequence::from_ops([Op::Invpcid(
                InvpcidKind::IndividualAddress,
                pcid,
                va.as_u64(),
            )])
        } else if !self.pcide || current_cr3 & 0xfff == pcid as u64 {
            Sequence::from_ops([Op::Invlpg(va.as_u64())])
        } else {
            Sequence::from_ops([Op::ToggleCr4Pge])
        }
    }

    /// The ops invalidating every non-global entry of `pcid` (see the module table).
    ///
    /// ```
    /// use awk_paging_x86_64::maint::{InvpcidKind, Op};
    /// use awk_paging_x86_64::space::PcidMmu;
    /// let new = PcidMmu { pcide: true, invpcid: true };
    /// assert_eq!(new.flush_asid_ops(5, 0).ops(), &[Op::Invpcid(InvpcidKind::SingleContext, 5, 0)]);
    /// let old = PcidMmu { pcide: true, invpcid: false };
    /// assert_eq!(old.flush_asid_ops(5, 0x9005).ops(), &[Op::WriteCr3(0x9005)]);
    /// ```
    #[must_use]
    pub const fn flush_asid_ops(&self, pcid: u16, current_cr3: u64) -> SpaceSequence {
        if self.pcide && self.invpcid {
            Sequence::from_ops([Op::Invpcid(InvpcidKind::SingleContext, pcid, 0)])
        } else if !self.pcide || current_cr3 & 0xfff == pcid as u64 {
            // Reloading CR3 without bit 63 drops the current PCID's non-global entries.
            Sequence::from_ops([Op::WriteCr3(current_cr3 & !CR3_NOFLUSH)])
        } else {
            Sequence::from_ops([Op::ToggleCr4Pge])
        }
    }
}

#[cfg(any(doc, all(target_arch = "x86_64", target_os = "none")))]
mod hw {
    use super::PcidMmu;
    use awk_paging::space::{Activate, Switch};
    use awk_paging::{PhyAddr, Tlb, VirtAddr};

    fn cr3() -> u64 {
        let v: u64;
        // SAFETY: reading CR3 in ring 0 (the crate's bare-metal precondition).
        unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nostack, preserves_flags)) };
        v
    }

    // SAFETY: the ops load `root` with the PCID and do the owed flush first (see
    // `activate_ops`); a refused value (misaligned root, PCID >= 4096) loads nothing — the
    // allocator never hands out such a PCID when built with `PCIDS`.
    unsafe impl Activate for PcidMmu {
        unsafe fn activate(&self, root: PhyAddr, switch: Switch) {
            if let Some(ops) = self.activate_ops(root, switch) {
                // SAFETY: the caller's contract (a valid root mapping the kernel).
                unsafe { ops.run() }
            }
        }
    }

    /// The current address space as [`Invlpg`](crate::Invlpg) does, plus the per-PCID
    /// methods from the module table.
    impl Tlb for PcidMmu {
        fn flush_page(&self, va: VirtAddr) {
            crate::Invlpg.flush_page(va)
        }
        fn flush_all(&self) {
            crate::Invlpg.flush_all()
        }
        fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
            // SAFETY: TLB invalidation only (CR3 rewritten with its own root).
            unsafe { self.flush_page_asid_ops(va, asid, cr3()).run() }
        }
        fn flush_asid(&self, asid: u16) {
            // SAFETY: as above.
            unsafe { self.flush_asid_ops(asid, cr3()).run() }
        }
    }
}
