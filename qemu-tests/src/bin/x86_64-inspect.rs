//! The x86_64 introspection kernel (`cargo xtask test` boots it for the QEMU cross-check of
//! `awk_paging::inspect`, xtask's `inspect` module): takes over the boot tables, builds a
//! non-trivial address space (kernel heap, text, read-only data, a device page, a 2 MiB page,
//! user pages of every kind, under table entries that restrict them), prints the live ptdump,
//! probes sampled addresses with real accesses (the CPU's own translation: a fault or not),
//! prints its root and waits, halted, for xtask to read its memory through QEMU's monitor.
#![no_std]
#![no_main]

use core::fmt::Write;

use awk_paging::{
    ActiveTable, Attrs, Flags, FrameAllocator, MemoryType, PageSize, PhyAddr, Tlb, VirtAddr,
};
use awk_paging_x86_64::{Invlpg, X86, X86_64};
use qemu_tests::frames::{data_frame, PoolFrames};
use qemu_tests::x86_64::{active_cr3, boot_pml4_phys, exit, init, probe_read, probe_write, Com1};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

static mut FRAMES: PoolFrames = PoolFrames;
static TLB: Invlpg = Invlpg;

/// The sampled addresses: every kind of mapping and a hole.
const HEAP: u64 = 0xffff_9000_0000_0000;
const TEXT: u64 = 0xffff_a000_0000_0000;
const RODATA: u64 = 0xffff_a000_0010_0000;
const DEVICE: u64 = 0xffff_b000_0000_0000;
const HUGE: u64 = 0xffff_c000_0000_0000;
const USER: u64 = 0x0000_4000_0000_0000;
const HOLE: u64 = 0xffff_9000_0010_0000;

fn attrs(write: bool, execute: bool, user: bool, mt: MemoryType) -> Attrs {
    Attrs {
        flags: mt.with_permissions(write, execute),
        user,
        global: !user,
    }
}

/// Maps `pages` 4 KiB pages at `va` onto consecutive fresh frames.
fn map_pages(va: u64, pages: u64, a: Attrs) -> bool {
    (0..pages).all(|i| {
        let Some(frame) = data_frame() else {
            return false;
        };
        X86::with_table(|t| {
            // SAFETY: fresh addresses, fresh frames.
            unsafe { t.map(VirtAddr::new(va + i * 4096), frame, PageSize::Size4K, a) }
                .map(|f| f.flush())
                .is_ok()
        })
        .unwrap_or(false)
    })
}

#[no_mangle]
extern "C" fn x86_kernel_entry() -> ! {
    init();
    let mut out = Com1;
    let _ = writeln!(out, "awk-paging x86_64 inspect kernel");
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
        X86::init(opt, X86_64::detect(), frames, tlb).is_ok()
    };
    let wb = MemoryType::WriteBack;
    let built = ok
        && map_pages(HEAP, 16, attrs(true, false, false, wb))
        && map_pages(TEXT, 3, attrs(false, true, false, wb))
        && map_pages(RODATA, 2, attrs(false, false, false, wb))
        && map_pages(USER, 4, attrs(true, false, true, wb))
        && map_pages(USER + 0x10_0000, 2, attrs(false, true, true, wb))
        && map_pages(USER + 0x20_0000, 1, attrs(false, false, true, wb))
        && X86::with_table(|t| {
            // SAFETY: fresh addresses; the I/O APIC and RAM at 64 MiB (never written here).
            unsafe {
                t.map(
                    VirtAddr::new(DEVICE),
                    PhyAddr::new(0xfec0_0000),
                    PageSize::Size4K,
                    Flags::DEVICE,
                )
                .map(|f| f.flush())
                .is_ok()
                    && t.map(
                        VirtAddr::new(HUGE),
                        PhyAddr::new(64 << 20),
                        PageSize::Size2M,
                        attrs(false, false, false, MemoryType::WriteThrough),
                    )
                    .map(|f| f.flush())
                    .is_ok()
            }
        })
        .unwrap_or(false);
    let _ = writeln!(out, "inspect: address space built: {built}");

    let _ = writeln!(out, "inspect: live ptdump begin");
    let dumped = X86::with_table(|t| t.inspect().ptdump(&mut out).is_ok()).unwrap_or(false);
    let _ = writeln!(out, "inspect: live ptdump end");

    // What the CPU does with each sample (the probes recover from page faults).
    let samples = [
        HEAP,
        HEAP + 0xf008,
        TEXT + 0x1000,
        RODATA,
        DEVICE,
        HUGE + 0x1f_f000,
        USER,
        USER + 0x10_0000,
        USER + 0x20_0000,
        HOLE,
        0x20_0000, // the boot identity map
    ];
    for va in samples {
        let read = probe_read(va);
        // Write back what was read (a device register or RAM keeps its value); a hole or a
        // read-only page faults on the write, which is what is asked.
        let write = probe_write(va, *read.as_ref().unwrap_or(&0));
        let _ = writeln!(
            out,
            "inspect: probe {va:#018x} read={} write={}",
            if read.is_ok() { "ok" } else { "fault" },
            if write.is_ok() { "ok" } else { "fault" },
        );
    }
    let _ = writeln!(out, "inspect: root {:#x}", active_cr3());
    if !(built && dumped) {
        let _ = writeln!(out, "inspect: setup failed");
        exit(1);
    }
    let _ = writeln!(out, "inspect: ready");
    // Wait for xtask: halted with interrupts off, QEMU's monitor still answers.
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
