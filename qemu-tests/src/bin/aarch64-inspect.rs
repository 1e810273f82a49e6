//! The AArch64 introspection kernel (`cargo xtask test` boots it for the QEMU cross-check of
//! `awk_paging::inspect`, xtask's `inspect` module): brings the MMU up with the crate, builds a
//! non-trivial address space in TTBR0 (kernel heap, text, read-only data, a device page, a
//! 2 MiB block, EL0 pages of every kind), prints the live ptdump and what the MMU itself makes
//! of sampled addresses (`AT S1E1R` / `AT S1E1W` → PAR_EL1), prints its root and waits, masked
//! and idle, for xtask to read its memory through QEMU's monitor.
#![no_std]
#![no_main]

use core::fmt::Write;

use awk_paging::{ActiveTable, Attrs, Flags, MemoryType, PageSize, PhyAddr, Tlb, VirtAddr};
use awk_paging_aarch64::{AArch64, TlbEl1};
use qemu_tests::aarch64::{exit, init, mmu_on, Pl011, UART_BLOCK};
use qemu_tests::frames::data_frame;

static TLB: TlbEl1 = TlbEl1 { asid: None };

const HEAP: u64 = 0x0000_9000_0000_0000;
const TEXT: u64 = 0x0000_a000_0000_0000;
const RODATA: u64 = 0x0000_a000_0010_0000;
const DEVICE: u64 = 0x0000_b000_0000_0000;
const HUGE: u64 = 0x0000_c000_0000_0000;
const USER: u64 = 0x0000_4000_0000_0000;
const HOLE: u64 = 0x0000_9000_0010_0000;

fn attrs(write: bool, execute: bool, user: bool, mt: MemoryType) -> Attrs {
    Attrs {
        flags: mt.with_permissions(write, execute),
        user,
        global: !user,
    }
}

fn map_pages(va: u64, pages: u64, a: Attrs) -> bool {
    (0..pages).all(|i| {
        let Some(frame) = data_frame() else {
            return false;
        };
        AArch64::with_table(|t| {
            // SAFETY: fresh addresses, fresh frames.
            unsafe { t.map(VirtAddr::new(va + i * 4096), frame, PageSize::Size4K, a) }
                .map(|f| f.flush())
                .is_ok()
        })
        .unwrap_or(false)
    })
}

/// PAR_EL1 after `AT S1E1R` (`write == false`) or `AT S1E1W` of `va`.
fn at(va: u64, write: bool) -> u64 {
    let par: u64;
    // SAFETY: address translation instructions only write PAR_EL1.
    unsafe {
        if write {
            core::arch::asm!("at s1e1w, {v}", "isb", "mrs {p}, par_el1", v = in(reg) va, p = out(reg) par, options(nostack));
        } else {
            core::arch::asm!("at s1e1r, {v}", "isb", "mrs {p}, par_el1", v = in(reg) va, p = out(reg) par, options(nostack));
        }
    }
    par
}

#[no_mangle]
extern "C" fn aarch64_kernel_entry(_boot_el: u64) -> ! {
    init();
    let mut out = Pl011;
    let _ = writeln!(out, "awk-paging aarch64 inspect kernel");
    let tlb: &'static (dyn Tlb + Sync) = &TLB;
    let Ok(table) = mmu_on(tlb) else { exit(1) };
    let ok = AArch64::install(table).is_ok();
    let wb = MemoryType::WriteBack;
    let built = ok
        && map_pages(HEAP, 16, attrs(true, false, false, wb))
        && map_pages(TEXT, 3, attrs(false, true, false, wb))
        && map_pages(RODATA, 2, attrs(false, false, false, wb))
        && map_pages(USER, 4, attrs(true, false, true, wb))
        && map_pages(USER + 0x10_0000, 2, attrs(false, true, true, wb))
        && map_pages(USER + 0x20_0000, 1, attrs(false, false, true, wb))
        && AArch64::with_table(|t| {
            // SAFETY: fresh addresses; the UART block and RAM (never written here).
            unsafe {
                t.map(
                    VirtAddr::new(DEVICE),
                    PhyAddr::new(UART_BLOCK),
                    PageSize::Size4K,
                    Flags::DEVICE,
                )
                .map(|f| f.flush())
                .is_ok()
                    && t.map(
                        VirtAddr::new(HUGE),
                        PhyAddr::new(0x4400_0000),
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
    let dumped = AArch64::with_table(|t| t.inspect().ptdump(&mut out).is_ok()).unwrap_or(false);
    let _ = writeln!(out, "inspect: live ptdump end");

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
        0x4020_0000, // the boot identity map
    ];
    for va in samples {
        let (r, w) = (at(va, false), at(va, true));
        // PAR_EL1.F (bit 0) = 1: the translation faulted; else PA in bits 47:12.
        let pa = (r & 0x0000_ffff_ffff_f000) | (va & 0xfff);
        let _ = writeln!(
            out,
            "inspect: probe {va:#018x} read={} write={} pa={pa:#x}",
            if r & 1 == 0 { "ok" } else { "fault" },
            if w & 1 == 0 { "ok" } else { "fault" },
        );
    }
    let ttbr0: u64;
    // SAFETY: reading a system register.
    unsafe { core::arch::asm!("mrs {}, ttbr0_el1", out(reg) ttbr0, options(nostack, nomem)) };
    let _ = writeln!(out, "inspect: root {ttbr0:#x}");
    if !(built && dumped) {
        let _ = writeln!(out, "inspect: setup failed");
        exit(1);
    }
    let _ = writeln!(out, "inspect: ready");
    // Wait for xtask: every exception masked, idle; QEMU's monitor still answers.
    // SAFETY: masking interrupts and waiting have no memory effects.
    unsafe { core::arch::asm!("msr daifset, #0xf", options(nostack, nomem)) };
    loop {
        // SAFETY: as above.
        unsafe { core::arch::asm!("wfi", options(nostack, nomem)) };
    }
}
