//! The conformance suite over the emulator's reference format: proves the shared walker on its
//! own, independent of any real architecture's encoding.

use awk_paging::emu::{EmuArch, EmuHarness, EmuSpec};
use awk_paging::{AddrError, PhyAddr, VirtAddr};

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
        VirtAddr::new(0x1234_0000_0000_0000),
        AddrError::NonCanonical,
    ),
];

fn harness() -> EmuHarness<EmuArch> {
    EmuHarness::new(
        EmuArch::default(),
        EmuSpec {
            va_window: VirtAddr::new(0x0000_4000_0000_0000),
            pa_window: PhyAddr::new(0x1_0000_0000),
            bad_vas: BAD_VAS,
            frames: 1024,
        },
    )
}

awk_paging::conformance_tests!(harness());
