//! x86_64 kernel support: PVH boot, COM1, isa-debug-exit, exceptions with recoverable probes.

mod boot;
pub mod console;
pub mod interrupts;
pub mod probe;

use core::fmt::Write;

pub use console::{exit, Com1};

extern "C" {
    static boot_pml4: u8;
    static __kernel_end: u8;
}

/// Physical address of the boot PML4 (the active CR3 after boot; identity-mapped).
pub fn boot_pml4_phys() -> u64 {
    // SAFETY: taking a linker symbol's address.
    unsafe { core::ptr::from_ref(&boot_pml4) as u64 }
}

/// Sets up exceptions and the frame pool (16 MiB .. 80 MiB, identity-mapped, above the image).
pub fn init() {
    interrupts::init();
    // SAFETY: linker symbol address.
    let end = unsafe { core::ptr::from_ref(&__kernel_end) as u64 };
    let start = end.max(16 << 20).next_multiple_of(4096);
    crate::frames::init(start, start + (64 << 20));
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Com1, "\nkernel panic: {info}");
    exit(crate::harness::EXIT_CRASH)
}
