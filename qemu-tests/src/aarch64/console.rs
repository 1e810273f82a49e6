//! PL011 console (0x0900_0000 on QEMU virt) and semihosting exit.

use core::fmt;

const PL011: usize = 0x0900_0000;

/// The PL011 UART, polled.
pub struct Pl011;

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the PL011 is identity-mapped device memory (or the MMU is off).
            unsafe {
                while ((PL011 + 0x18) as *const u32).read_volatile() & (1 << 5) != 0 {}
                (PL011 as *mut u32).write_volatile(u32::from(b));
            }
        }
        Ok(())
    }
}

/// Exits QEMU with `code` through semihosting SYS_EXIT (ADP_Stopped_ApplicationExit).
pub fn exit(code: u32) -> ! {
    let block: [u64; 2] = [0x20026, u64::from(code)];
    // SAFETY: QEMU runs with -semihosting; the call does not return.
    unsafe {
        core::arch::asm!("hlt #0xf000", in("w0") 0x18u32, in("x1") block.as_ptr(), options(nostack));
    }
    loop {
        aarch64_cpu::asm::wfe();
    }
}
