//! The ordering and TLB-maintenance checks (tracer + walking TLB model) on the AArch64
//! encoding, for the 48-bit and 39-bit regimes of both halves.

use awk_paging::conformance::ordering_checks::OrderingSpec;
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_aarch64::{Half, VaSize, A64};

fn spec(va: u64) -> OrderingSpec {
    OrderingSpec::new(VirtAddr::new(va), PhyAddr::new(0x1_0000_0000))
}

/// 48-bit TTBR0, 48-bit output.
mod ttbr0_48 {
    use super::*;
    awk_paging::ordering_tests!(
        A64::new(VaSize::Bits48, Half::Lower),
        spec(0x0000_4000_0000_0000)
    );
}

/// 39-bit TTBR0 (3 levels), 40-bit output (table frames above 1 TiB are refused).
mod ttbr0_39_pa40 {
    use super::*;
    awk_paging::ordering_tests!(
        A64::new(VaSize::Bits39, Half::Lower).with_pa_bits(40),
        spec(0x0000_0040_0000_0000)
    );
}

/// 48-bit TTBR1 (kernel half).
mod ttbr1_48 {
    use super::*;
    awk_paging::ordering_tests!(
        A64::new(VaSize::Bits48, Half::Upper),
        spec(0xffff_c000_0000_0000)
    );
}
