//! The shared conformance suite on the AArch64 encoding over the host emulator, for each
//! supported regime.

use awk_paging::emu::{EmuHarness, EmuSpec};
use awk_paging::{AddrError, PhyAddr, VirtAddr};
use awk_paging_aarch64::{Half, VaSize, A64};

fn harness(
    regime: A64,
    va_window: u64,
    bad_vas: &'static [(VirtAddr, AddrError)],
) -> EmuHarness<A64> {
    let spec = EmuSpec {
        va_window: VirtAddr::new(va_window),
        pa_window: PhyAddr::new(0x1_0000_0000),
        bad_vas,
        frames: 1024,
    };
    EmuHarness::new(regime, spec)
}

/// 48-bit TTBR0 (4 levels).
mod ttbr0_48 {
    use super::*;
    const BAD: &[(VirtAddr, AddrError)] = &[
        (
            VirtAddr::new(0x0001_0000_0000_0000),
            AddrError::NonCanonical,
        ),
        (
            VirtAddr::new(0x8000_0000_0000_0000),
            AddrError::NonCanonical,
        ),
        (VirtAddr::new(0xffff_8000_0000_0000), AddrError::OutOfRange),
        (VirtAddr::new(0xffff_ffff_ffff_f000), AddrError::OutOfRange),
    ];
    awk_paging::conformance_tests!(harness(
        A64::new(VaSize::Bits48, Half::Lower),
        0x0000_4000_0000_0000,
        BAD
    ));
}

/// 39-bit TTBR0 (3 levels, T0SZ = 25), 40-bit output.
mod ttbr0_39 {
    use super::*;
    const BAD: &[(VirtAddr, AddrError)] = &[
        (
            VirtAddr::new(0x0000_0080_0000_0000),
            AddrError::NonCanonical,
        ),
        (
            VirtAddr::new(0x0000_4000_0000_0000),
            AddrError::NonCanonical,
        ),
        (VirtAddr::new(0xffff_ff80_0000_0000), AddrError::OutOfRange),
    ];
    awk_paging::conformance_tests!(harness(
        A64::new(VaSize::Bits39, Half::Lower).with_pa_bits(40),
        0x0000_0040_0000_0000,
        BAD
    ));
}

/// 48-bit TTBR1 (kernel half).
mod ttbr1_48 {
    use super::*;
    const BAD: &[(VirtAddr, AddrError)] = &[
        (VirtAddr::new(0x0000_4000_0000_0000), AddrError::OutOfRange),
        (VirtAddr::new(0x0000_0000_0000_0000), AddrError::OutOfRange),
        (
            VirtAddr::new(0xfff0_0000_0000_0000),
            AddrError::NonCanonical,
        ),
    ];
    awk_paging::conformance_tests!(harness(
        A64::new(VaSize::Bits48, Half::Upper),
        0xffff_c000_0000_0000,
        BAD
    ));
}

/// 39-bit TTBR1 (3-level kernel half).
mod ttbr1_39 {
    use super::*;
    const BAD: &[(VirtAddr, AddrError)] = &[
        (VirtAddr::new(0x0000_0040_0000_0000), AddrError::OutOfRange),
        (
            VirtAddr::new(0xffff_ff7f_ffff_f000),
            AddrError::NonCanonical,
        ),
        (
            VirtAddr::new(0xffff_8000_0000_0000),
            AddrError::NonCanonical,
        ),
        (
            VirtAddr::new(0x7fff_ff80_0000_0000),
            AddrError::NonCanonical,
        ),
    ];
    awk_paging::conformance_tests!(harness(
        A64::new(VaSize::Bits39, Half::Upper),
        0xffff_ffc0_0000_0000,
        BAD
    ));
}

/// 48-bit TTBR0 with hardware Access flag and dirty state (DBM writable leaves, AF = 0 leaves
/// as mappings).
mod ttbr0_48_hafdbs {
    use super::*;
    use awk_paging_aarch64::features::Tracking;
    const BAD: &[(VirtAddr, AddrError)] = &[
        (
            VirtAddr::new(0x0001_0000_0000_0000),
            AddrError::NonCanonical,
        ),
        (VirtAddr::new(0xffff_8000_0000_0000), AddrError::OutOfRange),
    ];
    awk_paging::conformance_tests!(harness(
        A64::new(VaSize::Bits48, Half::Lower).with_tracking(Tracking::HardwareAccessDirty),
        0x0000_4000_0000_0000,
        BAD
    ));
}

/// 39-bit TTBR0 with the software Access flag.
mod ttbr0_39_soft_af {
    use super::*;
    use awk_paging_aarch64::features::Tracking;
    const BAD: &[(VirtAddr, AddrError)] = &[
        (
            VirtAddr::new(0x0000_0080_0000_0000),
            AddrError::NonCanonical,
        ),
        (VirtAddr::new(0xffff_ff80_0000_0000), AddrError::OutOfRange),
    ];
    awk_paging::conformance_tests!(harness(
        A64::new(VaSize::Bits39, Half::Lower).with_tracking(Tracking::SoftwareAccess),
        0x0000_0040_0000_0000,
        BAD
    ));
}
