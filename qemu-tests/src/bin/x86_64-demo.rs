//! The x86_64 demo: takes over the boot tables with the seed `X86` API, maps all RAM (from the
//! PVH memory map) into a direct map with one `map_range` call — 1 GiB pages where the CPU has
//! them (`pdpe1gb`: `cargo xtask qemu` boots it with `-cpu qemu64,+pdpe1gb`), 2 MiB pages for
//! the rest — maps a few pages of each kind, uses them, and prints a dump of the address space.
#![no_std]
#![no_main]

use core::fmt::Write;

use awk_paging::arch::Arch;
use awk_paging::{
    ActiveTable, Flags, FrameAllocator, Mapper, PageSize, PhyAddr, RangeOptions, Tlb, VirtAddr,
};
use awk_paging_x86_64::{Invlpg, X86, X86_64};
use qemu_tests::demo;
use qemu_tests::frames::{data_frame, PoolFrames};
use qemu_tests::x86_64::{boot_pml4_phys, exit, for_each_ram_region, init, ram_end, Com1};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

static mut FRAMES: PoolFrames = PoolFrames;
static TLB: Invlpg = Invlpg;

/// The direct map: physical address `pa` at `DIRECT + pa` (where Linux puts it, 4-level paging).
const DIRECT: u64 = 0xffff_8880_0000_0000;

#[no_mangle]
extern "C" fn x86_kernel_entry() -> ! {
    init();
    let mut out = Com1;
    let _ = writeln!(out, "awk-paging x86_64 demo");
    // 1 GiB pages if this CPU has them (CPUID), and its physical address width.
    let regime = X86_64::detect();
    let has_1g = regime.page_sizes().contains(PageSize::Size1G);
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
        X86::init(opt, regime, frames, tlb).is_ok()
    };

    // All RAM, with one call: physical 0 up to the end of the highest RAM region (the firmware
    // holes below 1 MiB included, as in Linux's direct map).
    let _ = write!(out, "RAM (PVH memory map):");
    let mut top = 0;
    if !for_each_ram_region(|start, end| {
        let _ = write!(out, " {start:#x}-{end:#x}");
        top = top.max(end);
    }) {
        top = ram_end();
        let _ = write!(out, " none; assumed 0x0-{top:#x}");
    }
    let _ = writeln!(out);
    let len = top & !0xfff;
    let direct = VirtAddr::new(DIRECT);
    let mapped_ram = X86::with_table(|t| {
        let mut g = t.gather();
        // SAFETY: a fresh upper-half range; RAM, write-back like the identity map.
        let r = unsafe {
            t.map_range(
                direct,
                PhyAddr::new(0),
                len,
                Flags::RW,
                RangeOptions::default(),
                &mut g,
            )
        };
        t.finish(g).is_ok() && r.is_ok()
    });
    let _ = writeln!(
        out,
        "direct map of 0x0-{top:#x} at {direct}, with one map_range call"
    );
    let got = X86::with_table(|t| demo::mapped(t, direct, len)).unwrap_or_default();
    let want = demo::largest(0, len, has_1g);
    let _ = writeln!(
        out,
        "  pages: {got} (the largest that fit: {want}); 1 GiB pages: {}",
        if has_1g {
            "yes (CPUID pdpe1gb)"
        } else {
            "no (boot with -cpu qemu64,+pdpe1gb or -cpu max)"
        }
    );

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
    // SAFETY: identity-mapped frame; the same frame through the direct map (when it was made).
    let (identity, through_direct) = unsafe {
        (
            (data.as_u64() as *const u64).read_volatile(),
            mapped_ram
                .is_ok_and(|ok| ok)
                .then(|| ((DIRECT + data.as_u64()) as *const u64).read_volatile()),
        )
    };
    let _ = writeln!(
        out,
        "wrote 42 through {heap}, read {identity} back through the identity map and {} through \
         the direct map",
        through_direct.unwrap_or(0)
    );
    let _ = writeln!(out, "\naddress space (merged runs):");
    let dumped = X86::with_table(|t| awk_paging::dump::write(t, &mut out).is_ok());
    let all = ok
        && mapped_ram == Ok(true)
        && got == want
        && through_direct == Some(42)
        && mapped
        && huge == Ok(true)
        && dumped == Ok(true);
    exit(if all { 0 } else { 1 })
}
