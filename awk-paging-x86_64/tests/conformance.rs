//! The shared conformance suite, run on the x86_64 encoding over the host emulator.

use awk_paging::emu::{EmuHarness, EmuSpec};
use awk_paging::{AddrError, PhyAddr, VirtAddr};
use awk_paging_x86_64::X86_64;

const BAD_VAS: &[(VirtAddr, AddrError)] = &[
    (
        VirtAddr::new(0x0000_8000_0000_0000),
        AddrError::NonCanonical,
    ),
    (
        VirtAddr::new(0xffff_7fff_ffff_f000),
        AddrError::NonCanonical,
    ),
    (
        VirtAddr::new(0x8000_0000_0000_0000),
        AddrError::NonCanonical,
    ),
    (
        VirtAddr::new(0x0001_0000_0000_0000),
        AddrError::NonCanonical,
    ),
];

fn harness(regime: X86_64) -> EmuHarness<X86_64> {
    EmuHarness::new(
        regime,
        EmuSpec {
            va_window: VirtAddr::new(0xffff_c000_0000_0000),
            pa_window: PhyAddr::new(0x1_0000_0000),
            bad_vas: BAD_VAS,
            frames: 1024,
        },
    )
}

/// A CPU without 1 GiB pages (QEMU's default CPU): 1 GiB mappings are refused.
mod without_1g_pages {
    use super::*;
    awk_paging::conformance_tests!(harness(X86_64::new()));
}

/// A CPU with `pdpe1gb`, and a 46-bit physical address width.
mod with_1g_pages {
    use super::*;
    awk_paging::conformance_tests!(harness(X86_64::new().with_1g_pages(true).with_pa_bits(46)));
}
