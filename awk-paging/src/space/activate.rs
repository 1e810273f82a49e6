//! Loading an address space on the running CPU: the [`Activate`] trait the architecture crates
//! implement, and [`EmuMmu`], the host emulator's.

use super::asid::Switch;
use crate::PhyAddr;

/// Loads a user address space on the running CPU: arch code.
///
/// - x86_64: `mov cr3` with the root and the PCID in bits 11:0, bit 63 set (keep the PCID's
///   entries) unless the switch owes a flush; with [`Switch::flush_local`], every PCID's
///   non-global entries go first (`invpcid` all-contexts, or a CR4.PGE toggle without
///   INVPCID). Without CR4.PCIDE: a plain CR3 load (which flushes every non-global entry).
/// - AArch64: with [`Switch::flush_local`], `tlbi vmalle1; dsb nsh` first; then
///   `msr ttbr0_el1, (asid << 48) | root; isb` (the root and the ASID change in one write).
///
/// # Safety
///
/// Implementations must do exactly that: after [`activate`](Self::activate) returns, the CPU
/// translates user addresses through `root`, tags new TLB entries with `switch.asid`, and holds
/// no entry of another generation's use of that ASID when `flush_local` was set.
///
/// ```
/// use awk_paging::space::{Activate, Switch};
/// use awk_paging::PhyAddr;
/// use core::cell::Cell;
/// /// Remembers what it was asked to load (a stand-in for CR3 / TTBR0_EL1).
/// struct Loaded(Cell<(u64, u16)>);
/// // SAFETY: a model: "translates through" what it records.
/// unsafe impl Activate for Loaded {
///     unsafe fn activate(&self, root: PhyAddr, s: Switch) { self.0.set((root.as_u64(), s.asid)) }
/// }
/// let cpu = Loaded(Cell::new((0, 0)));
/// unsafe { cpu.activate(PhyAddr::new(0x9000), Switch { asid: 3, flush_local: false, new_asid: true }) };
/// assert_eq!(cpu.0.get(), (0x9000, 3));
/// ```
pub unsafe trait Activate {
    /// Loads `root` with the ASID of `switch`, doing its local flush first.
    ///
    /// # Safety
    ///
    /// `root` is a valid root table of the CPU's format whose kernel half (shared root) maps the
    /// running kernel exactly as the current root does, and it stays valid while loaded.
    unsafe fn activate(&self, root: PhyAddr, switch: Switch);
}

/// The host emulator's CPU: loading a root sets the [`EmuTlb`](crate::emu::EmuTlb)'s current
/// ASID and remembers the root (walk it with
/// [`EmuTlb::access_walk`](crate::emu::EmuTlb::access_walk)); a local flush drops every entry.
///
/// ```
/// use awk_paging::emu::EmuTlb;
/// use awk_paging::space::{Activate, EmuMmu, Switch};
/// use awk_paging::PhyAddr;
/// let tlb = EmuTlb::new();
/// let mmu = EmuMmu::new(&tlb);
/// let s = Switch { asid: 4, flush_local: true, new_asid: true };
/// unsafe { mmu.activate(PhyAddr::new(0x3000), s) };
/// assert_eq!((mmu.root(), tlb.current_asid(), mmu.local_flushes()), (PhyAddr::new(0x3000), 4, 1));
/// ```
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct EmuMmu<'t> {
    tlb: &'t crate::emu::EmuTlb,
    root: core::cell::Cell<PhyAddr>,
    local_flushes: core::cell::Cell<usize>,
}

#[cfg(feature = "std")]
impl<'t> EmuMmu<'t> {
    /// The CPU owning `tlb`, with no root loaded.
    ///
    /// ```
    /// let tlb = awk_paging::emu::EmuTlb::new();
    /// assert_eq!(awk_paging::space::EmuMmu::new(&tlb).root(), awk_paging::PhyAddr::ZERO);
    /// ```
    #[must_use]
    pub fn new(tlb: &'t crate::emu::EmuTlb) -> Self {
        EmuMmu {
            tlb,
            root: core::cell::Cell::new(PhyAddr::ZERO),
            local_flushes: core::cell::Cell::new(0),
        }
    }

    /// The loaded root.
    ///
    /// ```
    /// # use awk_paging::space::{Activate, EmuMmu, Switch};
    /// let tlb = awk_paging::emu::EmuTlb::new();
    /// let mmu = EmuMmu::new(&tlb);
    /// unsafe { mmu.activate(awk_paging::PhyAddr::new(0x2000), Switch { asid: 1, flush_local: false, new_asid: true }) };
    /// assert_eq!(mmu.root(), awk_paging::PhyAddr::new(0x2000));
    /// ```
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.root.get()
    }

    /// Local flushes done for rollovers.
    ///
    /// ```
    /// let tlb = awk_paging::emu::EmuTlb::new();
    /// assert_eq!(awk_paging::space::EmuMmu::new(&tlb).local_flushes(), 0);
    /// ```
    #[must_use]
    pub fn local_flushes(&self) -> usize {
        self.local_flushes.get()
    }
}

// SAFETY: the emulated CPU translates through `root` with `switch.asid` afterwards, and drops
// every cached entry first when asked.
#[cfg(feature = "std")]
unsafe impl Activate for EmuMmu<'_> {
    unsafe fn activate(&self, root: PhyAddr, switch: Switch) {
        if switch.flush_local {
            self.tlb.invalidate_all();
            self.local_flushes.set(self.local_flushes.get() + 1);
        }
        self.tlb.set_current_asid(switch.asid);
        self.root.set(root);
    }
}
