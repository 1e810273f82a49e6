#![no_std]
#![no_main]

use core::fmt::Write;

#[no_mangle]
extern "C" fn aarch64_kernel_entry(boot_el: u64) -> ! {
    qemu_tests::aarch64::init();
    let _ = writeln!(
        qemu_tests::aarch64::Pl011,
        "awk-paging aarch64 demo (EL{boot_el})"
    );
    qemu_tests::aarch64::exit(0)
}
