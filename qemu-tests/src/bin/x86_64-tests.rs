//! The x86_64 test kernel: the infrastructure self-tests (`qemu_tests::x86_64::selftest`), the
//! conformance suite on real memory, then the seed `X86` API on the live tables the MMU walks —
//! accesses, faults, remapping, device memory, hardware-walked entries.
#![no_std]
#![no_main]
// Test failures carry a fixed-size message (no allocator on bare metal).
#![allow(clippy::result_large_err)]

use core::fmt::Write;

use awk_paging::{ActiveTable, AddrError, Flags, FrameAllocator, Mapper, PhyAddr, Tlb, VirtAddr};
use awk_paging_x86_64::{X86, X86_64};
use qemu_tests::bare_harness;
use qemu_tests::expect::x86_64 as expect;
use qemu_tests::frames::PoolFrames;
use qemu_tests::harness::{self, Failure, Summary, Test, EXIT_FAILURE, EXIT_SUCCESS};
use qemu_tests::live::{self, frame, va};
use qemu_tests::probe;
use qemu_tests::x86_64::{boot_pml4_phys, exit, init, selftest, Com1, Pc};
use qemu_tests::{ensure, ensure_eq, fail};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

const BAD_VAS: &[(VirtAddr, AddrError)] = &[
    (
        VirtAddr::new(0x0000_8000_0000_0000),
        AddrError::NonCanonical,
    ),
    (
        VirtAddr::new(0xffff_7fff_ffff_f000),
        AddrError::NonCanonical,
    ),
];

static mut FRAMES: PoolFrames = PoolFrames;

/// The live table's TLB hook: `invlpg` on this CPU and a shootdown IPI to the others running
/// (nothing at all in the negative control's build; `qemu_tests::x86_64::smp`).
use qemu_tests::x86_64::smp::TLB;

fn map(v: VirtAddr, p: PhyAddr, f: Flags) -> Result<(), Failure> {
    live::map::<Pc>(v, p, f)
}

fn ioapic_through_device_mapping() -> Result<(), Failure> {
    // The I/O APIC's registers (0xfec0_0000) are outside the boot identity map: only the new
    // device mapping reaches them. IOREGSEL (offset 0) selects register 1 (version), IOWIN
    // (offset 0x10) reads it.
    let v = va(6);
    map(v, PhyAddr::new(0xfec0_0000), Flags::DEVICE)?;
    ensure!(
        probe::write(v.as_u64(), 1).is_ok(),
        "select the version register"
    );
    let version = match probe::read(v.as_u64() + 0x10) {
        Ok(x) => x as u32,
        Err(f) => fail!("IOWIN: {f:?}"),
    };
    ensure!(
        matches!(version & 0xff, 0x11 | 0x20),
        "I/O APIC version {version:#x}"
    );
    ensure!(
        (version >> 16) & 0xff >= 15,
        "max redirection entry in {version:#x}"
    );
    let entry = raw_entry(v).ok_or_else(|| Failure::new(format_args!("no entry")))?;
    let uc_nx = expect::PCD | expect::PWT | expect::XD;
    ensure_eq!(entry & uc_nx, uc_nx, "UC, no-execute");
    // SAFETY: test window.
    unsafe { X86::unmap(v) };
    Ok(())
}

/// The leaf entry the hardware walks for `v`, read from the live tables.
fn raw_entry(v: VirtAddr) -> Option<u64> {
    let mut table = boot_pml4_phys();
    for level in (0..4).rev() {
        let index = (v.as_u64() >> (12 + 9 * level)) & 0x1ff;
        // SAFETY: tables are identity-mapped.
        let e = unsafe { ((table + index * 8) as *const u64).read_volatile() };
        if e & 1 == 0 {
            return None;
        }
        if level == 0 || e & expect::PS != 0 {
            return Some(e);
        }
        table = e & 0x000f_ffff_ffff_f000;
    }
    None
}

fn hardware_walked_entries_for_all_flags() -> Result<(), Failure> {
    let f = frame()?;
    for (i, want) in expect::TABLE.iter().enumerate() {
        let flags = Flags::all_combinations()[i];
        let v = va(0x100 + i as u64);
        // SAFETY: test window.
        let got = unsafe { X86::map(v, f, flags) };
        match want {
            Err(e) => ensure_eq!(got, Err(awk_paging::MapError::InvalidFlags(*e)), "row {i}"),
            Ok(bits) => {
                ensure_eq!(got, Ok(()), "row {i}");
                ensure!(
                    probe::read(v.as_u64()).is_ok(),
                    "row {i}: read through the mapping"
                );
                // Kernel leaves are created Accessed and Dirty (the CPU never writes them), so
                // the read above, not the Accessed bit, shows the CPU used this entry.
                let e = raw_entry(v).unwrap_or(0);
                ensure_eq!(e & !0x000f_ffff_ffff_f000, *bits, "row {i}: entry bits");
                // SAFETY: test window.
                unsafe { X86::unmap(v) };
            }
        }
    }
    Ok(())
}

/// `live::remap_visible_after_flush_all` with CR4.PGE on and `Invlpg::flush_all` called
/// directly (not the live table's hook, so the test passes in the `no-tlb-flush` build too), so
/// it takes the PGE-toggle path — the boot code leaves PGE off, the plain run covers the CR3
/// reload — and with CR4 checked afterwards (the toggle restores it). CR4 is restored at the
/// end.
fn flush_all_with_global_pages_enabled() -> Result<(), Failure> {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    let before = Cr4::read();
    // SAFETY: enabling global pages changes no translation (no entry has G set yet).
    unsafe { Cr4::write(before | Cr4Flags::PAGE_GLOBAL) };
    let result = live::remap_visible_after::<Pc>(12, |_, _| awk_paging_x86_64::Invlpg.flush_all());
    let after = Cr4::read();
    // SAFETY: back to the boot value.
    unsafe { Cr4::write(before) };
    result?;
    ensure_eq!(
        after,
        before | Cr4Flags::PAGE_GLOBAL,
        "CR4 after flush_all's PGE toggle"
    );
    Ok(())
}

const LIVE: &[Test] = &[
    Test {
        name: "live::instance_api_huge_page_lifecycle",
        run: live::instance_api_huge_page_lifecycle::<Pc>,
    },
    Test {
        name: "live::protect_range_splits_live_huge_page",
        run: live::protect_range_splits_live_huge_page::<Pc>,
    },
    Test {
        name: "live::range_past_the_threshold_is_seen_by_the_cpu",
        run: live::range_past_the_threshold_is_seen_by_the_cpu::<Pc>,
    },
    Test {
        name: "live::unmap_range_reclaimed_table_is_not_walked",
        run: live::unmap_range_reclaimed_table_is_not_walked::<Pc>,
    },
    Test {
        name: "live::map_range_alloc_then_unmap_range_free",
        run: live::map_range_alloc_then_unmap_range_free::<Pc>,
    },
    Test {
        name: "live::write_then_read_both_ways",
        run: live::write_then_read_both_ways::<Pc>,
    },
    Test {
        name: "live::seed_api_reentry_is_an_error",
        run: live::seed_api_reentry_is_an_error::<Pc>,
    },
    Test {
        name: "live::remap_visible_after_flush",
        run: live::remap_visible_after_flush::<Pc>,
    },
    Test {
        name: "live::remap_visible_after_flush_all",
        run: live::remap_visible_after_flush_all::<Pc>,
    },
    Test {
        name: "live::remap_visible_after_flush_page",
        run: live::remap_visible_after_flush_page::<Pc>,
    },
    Test {
        name: "x86_64::flush_all_with_global_pages_enabled",
        run: flush_all_with_global_pages_enabled,
    },
    Test {
        name: "live::unmapped_page_faults",
        run: live::unmapped_page_faults::<Pc>,
    },
    Test {
        name: "live::write_to_read_only_faults",
        run: live::write_to_read_only_faults::<Pc>,
    },
    Test {
        name: "live::execute_from_no_execute_faults",
        run: live::execute_from_no_execute_faults::<Pc>,
    },
    Test {
        name: "live::ioapic_through_device_mapping",
        run: ioapic_through_device_mapping,
    },
    Test {
        name: "live::hardware_walked_entries_for_all_flags",
        run: hardware_walked_entries_for_all_flags,
    },
];

#[no_mangle]
extern "C" fn x86_kernel_entry() -> ! {
    init();
    let mut out = Com1;
    let _ = writeln!(out, "awk-paging x86_64 test kernel");
    let mut summary = Summary::default();
    harness::run(&mut out, "", selftest::tests(), &mut summary);
    bare_harness::run(X86_64::new(), BAD_VAS, &mut out, &mut summary);

    // Hand the live boot tables to the seed API, as a kernel would with its OffsetPageTable.
    // SAFETY: the boot PML4 is identity-mapped and only edited through `X86` from now on.
    let opt = unsafe {
        OffsetPageTable::new(
            &mut *(boot_pml4_phys() as *mut PageTable),
            x86_64::VirtAddr::new(0),
        )
    };
    // SAFETY: the one reference to FRAMES, taken once.
    let frames: &'static mut (dyn FrameAllocator + Send) =
        unsafe { &mut *core::ptr::addr_of_mut!(FRAMES) };
    let tlb: &'static (dyn Tlb + Sync) = &TLB;
    // SAFETY: as above.
    if unsafe { X86::init(opt, X86_64::new(), frames, tlb) }.is_err()
        || !X86::global().is_initialized()
    {
        let _ = writeln!(out, "X86::init failed");
        exit(qemu_tests::harness::EXIT_CRASH);
    }
    harness::run(&mut out, "", LIVE, &mut summary);
    harness::run(
        &mut out,
        "",
        qemu_tests::x86_64::spaces::TESTS,
        &mut summary,
    );
    harness::run(&mut out, "", qemu_tests::x86_64::smp::TESTS, &mut summary);
    harness::print_summary(&mut out, summary);
    exit(if summary.failed == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    })
}
