#![no_std]
#![no_main]

use core::fmt::Write;

#[no_mangle]
extern "C" fn x86_kernel_entry() -> ! {
    qemu_tests::x86_64::init();
    let _ = writeln!(qemu_tests::x86_64::Com1, "awk-paging x86_64 demo");
    qemu_tests::x86_64::exit(0)
}
