//! The ordering and TLB-maintenance checks (tracer + walking TLB model) over the emulator's
//! reference format.

use awk_paging::conformance::ordering_checks::OrderingSpec;
use awk_paging::emu::EmuArch;
use awk_paging::{PhyAddr, VirtAddr};

awk_paging::ordering_tests!(
    EmuArch::default(),
    OrderingSpec::new(
        VirtAddr::new(0x0000_4000_0000_0000),
        PhyAddr::new(0x1_0000_0000)
    )
);

mod common;

/// The same checks on a format with a hierarchical no-write limit: the core's push-down and
/// widening, without a backend.
mod ro_tables {
    use super::*;
    awk_paging::ordering_tests!(
        common::RoTables,
        OrderingSpec::new(
            VirtAddr::new(0x0000_4000_0000_0000),
            PhyAddr::new(0x1_0000_0000)
        )
    );
}
