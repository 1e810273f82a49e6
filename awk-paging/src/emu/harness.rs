//! The conformance [`Harness`] over the emulator, for any descriptor format.

use std::rc::Rc;

use crate::arch::Arch;
use crate::conformance::{Failure, Harness, Observed, TableOf};
use crate::emu::{CpuAccess, EmuMemory, EmuTlb};
use crate::{AddrError, CountingFrames, PageTable, PhyAddr, VirtAddr};

/// Where a backend's conformance run maps, and which addresses it must reject.
#[derive(Clone, Copy, Debug)]
pub struct EmuSpec {
    /// 1 GiB-aligned VA window of at least 2 GiB.
    pub va_window: VirtAddr,
    /// 1 GiB-aligned PA window of at least 2 GiB (mapped, never accessed).
    pub pa_window: PhyAddr,
    /// Addresses the regime must reject, with the reason.
    pub bad_vas: &'static [(VirtAddr, AddrError)],
    /// Frames of emulated memory for tables.
    pub frames: usize,
}

/// Runs the conformance suite for `A` over emulated memory and the TLB model.
///
/// ```
/// use awk_paging::conformance::run_all;
/// use awk_paging::emu::{EmuArch, EmuHarness, EmuSpec};
/// use awk_paging::{AddrError, PhyAddr, VirtAddr};
///
/// const BAD: &[(VirtAddr, AddrError)] = &[(VirtAddr::new(0x8000_0000_0000), AddrError::NonCanonical)];
/// let spec = EmuSpec {
///     va_window: VirtAddr::new(0x40_0000_0000),
///     pa_window: PhyAddr::new(0x8000_0000),
///     bad_vas: BAD,
///     frames: 512,
/// };
/// let (passed, failed) = run_all(&mut EmuHarness::new(EmuArch::default(), spec), |name, r| {
///     if let Err(e) = r { eprintln!("{name}: {e}") }
/// });
/// assert_eq!(failed, 0);
/// assert!(passed > 10);
/// ```
#[derive(Debug)]
pub struct EmuHarness<A> {
    arch: A,
    spec: EmuSpec,
    mem: Rc<EmuMemory>,
}

impl<A: Arch> EmuHarness<A> {
    /// A harness with a fresh arena of `spec.frames` frames. Every table it makes gets its own
    /// empty TLB model (one address space each).
    #[must_use]
    pub fn new(arch: A, spec: EmuSpec) -> Self {
        EmuHarness {
            arch,
            spec,
            mem: Rc::new(EmuMemory::new(spec.frames)),
        }
    }

    /// The emulated memory (to check frame counts after a run).
    #[must_use]
    pub fn memory(&self) -> &EmuMemory {
        &self.mem
    }
}

impl<A: Arch> Harness for EmuHarness<A> {
    type Arch = A;
    type Mem = Rc<EmuMemory>;
    type Frames = Rc<EmuMemory>;
    type Tlb = Rc<EmuTlb>;

    fn fresh(&mut self) -> Result<TableOf<Self>, Failure> {
        let frames = CountingFrames::new(Rc::clone(&self.mem));
        PageTable::new(
            self.arch,
            Rc::clone(&self.mem),
            frames,
            Rc::new(EmuTlb::new()),
        )
        .map_err(|e| Failure::new(format_args!("creating a table: {e}")))
    }

    fn give_back(&mut self, _frames: Self::Frames) {}

    fn va_window(&self) -> VirtAddr {
        self.spec.va_window
    }

    fn pa_window(&self) -> PhyAddr {
        self.spec.pa_window
    }

    fn bad_vas(&self) -> &[(VirtAddr, AddrError)] {
        self.spec.bad_vas
    }

    fn observe(&mut self, table: &TableOf<Self>, va: VirtAddr) -> Option<Observed> {
        let tlb = table.tlb();
        Some(
            match tlb.access_walk(table.mem(), table.arch(), table.root(), va) {
                CpuAccess::Mapped(pa) => {
                    let writable = tlb.cached_attrs(va).is_some_and(|a| a.flags.write);
                    Observed::Mapped(pa, writable)
                }
                CpuAccess::Fault => Observed::Fault,
            },
        )
    }
}
