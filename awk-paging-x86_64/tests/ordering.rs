//! The ordering and TLB-maintenance checks (tracer + walking TLB model) on the x86_64 encoding.

use awk_paging::conformance::ordering_checks::OrderingSpec;
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_x86_64::X86_64;

fn spec() -> OrderingSpec {
    OrderingSpec::new(
        VirtAddr::new(0xffff_c000_0000_0000),
        PhyAddr::new(0x1_0000_0000),
    )
}

/// The architectural maximum output size.
mod pa52 {
    use super::*;
    awk_paging::ordering_tests!(X86_64::new(), spec());
}

/// MAXPHYADDR 36 (table frames above 64 GiB are refused).
mod pa36 {
    use super::*;
    awk_paging::ordering_tests!(X86_64::new().with_1g_pages(true).with_pa_bits(36), spec());
}
