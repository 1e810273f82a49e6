//! COM1 console and the isa-debug-exit device.

use core::fmt;

use x86_64::instructions::port::Port;

/// COM1 (0x3f8), polled.
pub struct Com1;

impl fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: COM1 registers exist on the microvm machine; polling LSR.THRE then writing THR.
            unsafe {
                let mut lsr = Port::<u8>::new(0x3fd);
                while lsr.read() & 0x20 == 0 {}
                Port::<u8>::new(0x3f8).write(b);
            }
        }
        Ok(())
    }
}

/// Exits QEMU through isa-debug-exit (port 0xf4): QEMU's status becomes `(code << 1) | 1`.
pub fn exit(code: u32) -> ! {
    // SAFETY: the device is configured by xtask's QEMU command line.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    loop {
        x86_64::instructions::hlt();
    }
}
