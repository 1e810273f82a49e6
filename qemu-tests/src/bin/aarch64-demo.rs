//! The AArch64 demo: brings the MMU up with the crate, maps all RAM (size from the DTB) into a
//! linear map with one `map_range` call — 1 GiB blocks where they fit, 2 MiB blocks (with the
//! contiguous hint on complete runs) for the rest — maps a few pages of each kind through the
//! seed `AArch64` API, uses them, and prints a dump of the address space.
#![no_std]
#![no_main]

use core::fmt::Write;

use awk_paging::arch::Arch;
use awk_paging::{ActiveTable, Flags, Mapper, PageSize, PhyAddr, RangeOptions, Tlb, VirtAddr};
use awk_paging_aarch64::descriptor::bits::CONTIGUOUS;
use awk_paging_aarch64::{AArch64, TlbEl1};
use qemu_tests::aarch64::{exit, fdt, init, mmu_on, Pl011, RAM};
use qemu_tests::demo;
use qemu_tests::frames::data_frame;

static TLB: TlbEl1 = TlbEl1 { asid: None };

/// The linear map: physical address `pa` at `LINEAR + pa`.
const LINEAR: u64 = 0x0000_8000_0000_0000;

#[no_mangle]
extern "C" fn aarch64_kernel_entry(boot_el: u64) -> ! {
    init();
    let mut out = Pl011;
    let _ = writeln!(out, "awk-paging aarch64 demo (entered at EL{boot_el})");
    let tlb: &'static (dyn Tlb + Sync) = &TLB;
    let Ok(table) = mmu_on(tlb) else { exit(1) };
    let _ = writeln!(out, "MMU on with the crate's identity map");
    let ok = AArch64::install(table).is_ok();

    // All RAM, with one call. QEMU puts the DTB at the start of RAM (identity-mapped now).
    // SAFETY: RAM.0 is mapped RAM; the reader checks the header before trusting its size.
    let (ram, from) = match unsafe { fdt::ram(RAM.0) } {
        Some(r) => (r, "the DTB's memory node"),
        None => (RAM, "no DTB found: the kernel's constant"),
    };
    let (start, len) = (ram.0, ram.1 - ram.0);
    let linear = VirtAddr::new(LINEAR + start);
    let has_1g = AArch64::with_table(|t| t.arch().page_sizes().contains(PageSize::Size1G));
    let direct = AArch64::with_table(|t| {
        let mut g = t.gather();
        // SAFETY: a fresh range of the lower half; RAM with the identity map's memory type.
        let r = unsafe {
            t.map_range(
                linear,
                PhyAddr::new(start),
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
        "linear map: all RAM, {start:#x}-{:#x} ({from}), at {linear} with one map_range call",
        ram.1
    );
    let (got, hinted) = AArch64::with_table(|t| {
        let mut hinted = 0;
        t.for_each_mapping(|m| {
            let inside = (linear.as_u64()..linear.as_u64() + len).contains(&m.page.as_u64());
            if inside
                && t.raw_entry(m.page)
                    .is_ok_and(|(_, raw)| raw & CONTIGUOUS != 0)
            {
                hinted += 1;
            }
        });
        (demo::mapped(t, linear, len), hinted)
    })
    .unwrap_or_default();
    let want = demo::largest(start, len, has_1g == Ok(true));
    let _ = writeln!(
        out,
        "  pages: {got} (the largest that fit: {want}); contiguous hint (bit 52) on {hinted} \
         of them (complete aligned runs of 16)"
    );

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
    // SAFETY: identity-mapped frame; the same frame through the linear map (when it was made).
    let (identity, through_linear) = unsafe {
        (
            (data.as_u64() as *const u64).read_volatile(),
            direct
                .is_ok_and(|ok| ok)
                .then(|| ((LINEAR + data.as_u64()) as *const u64).read_volatile()),
        )
    };
    let _ = writeln!(
        out,
        "wrote 42 through {heap}, read {identity} back through the identity map and {} through \
         the linear map",
        through_linear.unwrap_or(0)
    );
    let _ = writeln!(out, "\naddress space (merged runs):");
    let dumped = AArch64::with_table(|t| awk_paging::dump::write(t, &mut out).is_ok());
    let all = ok
        && direct == Ok(true)
        && got == want
        && through_linear == Some(42)
        && mapped
        && huge == Ok(true)
        && dumped == Ok(true);
    exit(if all { 0 } else { 1 })
}
