//! The AArch64 demo: brings the MMU up with the crate, maps a few pages of each kind through the
//! seed `AArch64` API, uses them, and prints a dump of the address space.
#![no_std]
#![no_main]

use core::fmt::Write;

use awk_paging::{ActiveTable, Flags, Mapper, PageSize, PhyAddr, Tlb, VirtAddr};
use awk_paging_aarch64::{AArch64, TlbEl1};
use qemu_tests::aarch64::{exit, init, mmu_on, Pl011};
use qemu_tests::frames::data_frame;

static TLB: TlbEl1 = TlbEl1 { asid: None };

#[no_mangle]
extern "C" fn aarch64_kernel_entry(boot_el: u64) -> ! {
    init();
    let mut out = Pl011;
    let _ = writeln!(out, "awk-paging aarch64 demo (entered at EL{boot_el})");
    let tlb: &'static (dyn Tlb + Sync) = &TLB;
    let Ok(table) = mmu_on(tlb) else { exit(1) };
    let _ = writeln!(out, "MMU on with the crate's identity map");
    let ok = AArch64::install(table).is_ok();
    let (Some(data), Some(code)) = (data_frame(), data_frame()) else {
        exit(1)
    };
    let heap = VirtAddr::new(0x0000_9000_0000_0000);
    let text = VirtAddr::new(0x0000_a000_0000_0000);
    let uart = VirtAddr::new(0x0000_b000_0000_0000);
    // SAFETY: fresh addresses and frames.
    let mapped = unsafe {
        (0..4u64)
            .all(|i| AArch64::map(VirtAddr::new(heap.as_u64() + i * 4096), data, Flags::RW).is_ok())
            && AArch64::map(text, code, Flags::RX).is_ok()
            && AArch64::map(uart, PhyAddr::new(0x0900_0000), Flags::DEVICE).is_ok()
    };
    let huge = AArch64::with_table(|t| {
        // SAFETY: a fresh 2 MiB-aligned address, RAM.
        unsafe {
            t.map(
                VirtAddr::new(0x0000_c000_0000_0000),
                PhyAddr::new(0x4400_0000),
                PageSize::Size2M,
                Flags::RO,
            )
        }
        .map(|f| f.flush())
        .is_ok()
    });
    // SAFETY: the page was just mapped writable.
    unsafe { (heap.as_u64() as *mut u64).write_volatile(42) };
    let _ = writeln!(
        out,
        "wrote 42 through {heap}, read {} back through the frame",
        unsafe {
            // SAFETY: identity-mapped frame.
            (data.as_u64() as *const u64).read_volatile()
        }
    );
    let _ = writeln!(out, "\naddress space (merged runs):");
    let dumped = AArch64::with_table(|t| awk_paging::dump::write(t, &mut out).is_ok());
    exit(if ok && mapped && huge == Ok(true) && dumped == Ok(true) {
        0
    } else {
        1
    })
}
