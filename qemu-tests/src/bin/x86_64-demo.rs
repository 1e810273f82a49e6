//! The x86_64 demo: takes over the boot tables with the seed `X86` API, maps a few pages of each
//! kind, uses them, and prints a dump of the address space.
#![no_std]
#![no_main]

use core::fmt::Write;

use awk_paging::{ActiveTable, Flags, FrameAllocator, Mapper, PageSize, PhyAddr, Tlb, VirtAddr};
use awk_paging_x86_64::{Invlpg, X86, X86_64};
use qemu_tests::frames::{data_frame, PoolFrames};
use qemu_tests::x86_64::{boot_pml4_phys, exit, init, Com1};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

static mut FRAMES: PoolFrames = PoolFrames;
static TLB: Invlpg = Invlpg;

#[no_mangle]
extern "C" fn x86_kernel_entry() -> ! {
    init();
    let mut out = Com1;
    let _ = writeln!(out, "awk-paging x86_64 demo");
    // SAFETY: the boot PML4 is identity-mapped and edited only through `X86` from now on; the one
    // reference to FRAMES.
    let ok = unsafe {
        let opt = OffsetPageTable::new(
            &mut *(boot_pml4_phys() as *mut PageTable),
            x86_64::VirtAddr::new(0),
        );
        let frames: &'static mut (dyn FrameAllocator + Send) =
            &mut *core::ptr::addr_of_mut!(FRAMES);
        let tlb: &'static (dyn Tlb + Sync) = &TLB;
        X86::init(opt, X86_64::new(), frames, tlb).is_ok()
    };
    let (Some(data), Some(code)) = (data_frame(), data_frame()) else {
        exit(1)
    };
    let heap = VirtAddr::new(0xffff_9000_0000_0000);
    let text = VirtAddr::new(0xffff_a000_0000_0000);
    let ioapic = VirtAddr::new(0xffff_b000_0000_0000);
    // SAFETY: fresh addresses and frames.
    let mapped = unsafe {
        (0..4u64).all(|i| {
            X86::map(
                VirtAddr::new(heap.as_u64() + i * 4096),
                PhyAddr::new(data.as_u64()),
                Flags::RW,
            )
            .is_ok()
        }) && X86::map(text, code, Flags::RX).is_ok()
            && X86::map(ioapic, PhyAddr::new(0xfec0_0000), Flags::DEVICE).is_ok()
    };
    let huge = X86::with_table(|t| {
        // SAFETY: a fresh 2 MiB-aligned address, RAM at 64 MiB.
        unsafe {
            t.map(
                VirtAddr::new(0xffff_c000_0000_0000),
                PhyAddr::new(64 << 20),
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
    let dumped = X86::with_table(|t| awk_paging::dump::write(t, &mut out).is_ok());
    exit(if ok && mapped && huge == Ok(true) && dumped == Ok(true) {
        0
    } else {
        1
    })
}
