//! The conformance suite's harness on bare metal: fresh tables from the frame pool, reached
//! through the identity map, never activated (so no TLB is involved).

use awk_paging::arch::Arch;
use core::fmt::Write;

use awk_paging::conformance::{self, Failure, Harness, TableOf};
use awk_paging::{AddrError, CountingFrames, NoTlb, OffsetPhysMem, PageTable, PhyAddr, VirtAddr};

use crate::frames::PoolFrames;
use crate::harness::Summary;

/// Runs the suite for regime `A` over real memory.
pub struct BareHarness<A: 'static> {
    /// The regime under test.
    pub arch: A,
    /// A VA window fresh tables may map.
    pub va_window: VirtAddr,
    /// Addresses the regime must reject.
    pub bad_vas: &'static [(VirtAddr, AddrError)],
}

impl<A: Arch> Harness for BareHarness<A> {
    type Arch = A;
    type Mem = OffsetPhysMem;
    type Frames = PoolFrames;
    type Tlb = NoTlb;

    fn fresh(&mut self) -> Result<TableOf<Self>, Failure> {
        PageTable::new(
            self.arch,
            unsafe { OffsetPhysMem::new(0) },
            CountingFrames::new(PoolFrames),
            NoTlb,
        )
        .map_err(|e| Failure::new(format_args!("creating a table: {e}")))
    }

    fn give_back(&mut self, _frames: PoolFrames) {}

    fn va_window(&self) -> VirtAddr {
        self.va_window
    }

    fn pa_window(&self) -> PhyAddr {
        // Above RAM: mapped by the suite, never accessed.
        PhyAddr::new(0x1_0000_0000)
    }

    fn bad_vas(&self) -> &[(VirtAddr, AddrError)] {
        self.bad_vas
    }
}

/// Runs the conformance suite for regime `arch` over real memory, printing one harness line per
/// check (`test conformance::NAME ... ok|FAILED: why`) and counting into `summary`.
pub fn run<A: Arch + 'static>(
    arch: A,
    bad_vas: &'static [(VirtAddr, AddrError)],
    out: &mut dyn Write,
    summary: &mut Summary,
) {
    let mut h = BareHarness {
        arch,
        va_window: VirtAddr::new(0x0000_1000_0000_0000),
        bad_vas,
    };
    conformance::run_all(&mut h, |name, r| {
        let _ = write!(out, "test conformance::{name} ... ");
        match r {
            Ok(()) => {
                summary.passed += 1;
                let _ = writeln!(out, "ok");
            }
            Err(e) => {
                summary.failed += 1;
                let _ = writeln!(out, "FAILED: {e}");
            }
        }
    });
}
