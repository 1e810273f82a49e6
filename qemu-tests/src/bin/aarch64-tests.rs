//! The AArch64 test kernel: brings the MMU up with the crate's own tables, runs the conformance
//! suite on real memory, then the seed `AArch64` API on the live tables — accesses, aborts,
//! remapping, the PL011 through a device mapping, and every flag combination as the MMU itself
//! translates it (`AT S1E1R/W` → PAR_EL1); last the kernel's own self-tests
//! ([`qemu_tests::aarch64::selftest`]: boot state, decoded abort syndromes, frame pool).
#![no_std]
#![no_main]
// Test failures carry a fixed-size message (no allocator on bare metal).
#![allow(clippy::result_large_err)]

use core::fmt::Write;

use aarch64_cpu::registers::{Readable, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1};
use awk_paging::{ActiveTable, AddrError, Flags, Mapper, PageSize, PhyAddr, Tlb, VirtAddr};
use awk_paging_aarch64::maint::SysReg;
use awk_paging_aarch64::{cache, mmu, AArch64, VaSize, A64};
use qemu_tests::aarch64::{exit, init, mmu_on, selftest, with_upper_table, Pl011, Virt};
use qemu_tests::bare_harness;
use qemu_tests::expect::aarch64 as expect;
use qemu_tests::harness::{self, Failure, Summary, Test, EXIT_CRASH, EXIT_FAILURE, EXIT_SUCCESS};
use qemu_tests::live::{self, frame, va, Machine};
use qemu_tests::probe;
use qemu_tests::{ensure, ensure_eq};

const BAD_VAS: &[(VirtAddr, AddrError)] = &[
    (
        VirtAddr::new(0x0001_0000_0000_0000),
        AddrError::NonCanonical,
    ),
    (VirtAddr::new(0xffff_8000_0000_0000), AddrError::OutOfRange),
];

#[cfg(not(feature = "no-tlb-flush"))]
static TLB: awk_paging_aarch64::TlbEl1 = awk_paging_aarch64::TlbEl1 { asid: None };
#[cfg(feature = "no-tlb-flush")]
static TLB: awk_paging::NoTlb = awk_paging::NoTlb;

fn map(v: VirtAddr, p: PhyAddr, f: Flags) -> Result<(), Failure> {
    live::map::<Virt>(v, p, f)
}

fn unmap(v: VirtAddr) {
    live::unmap::<Virt>(v);
}

fn pl011_through_device_mapping() -> Result<(), Failure> {
    // The PL011's identification registers, read through a new 4 KiB device mapping.
    let v = va(6);
    map(v, PhyAddr::new(0x0900_0000), Flags::DEVICE)?;
    // 8-byte reads: each covers two 32-bit ID registers (low byte of each is the ID).
    let ids = |off: u64| probe::read(v.as_u64() + off).map(|x| (x & 0xff, (x >> 32) & 0xff));
    ensure_eq!(ids(0xfe0), Ok((0x11, 0x10)), "UARTPeriphID0/1");
    ensure_eq!(ids(0xff0), Ok((0x0d, 0xf0)), "UARTPCellID0/1");
    ensure_eq!(ids(0xff8), Ok((0x05, 0xb1)), "UARTPCellID2/3");
    unmap(v);
    Ok(())
}

/// Translates `v` with the MMU itself (`AT S1E1R`/`S1E1W`) and returns PAR_EL1.
fn at(v: VirtAddr, write: bool) -> u64 {
    let par: u64;
    // SAFETY: address translation instructions have no side effects besides PAR_EL1.
    unsafe {
        if write {
            core::arch::asm!("at s1e1w, {v}", "isb", "mrs {p}, par_el1", v = in(reg) v.as_u64(), p = out(reg) par, options(nostack));
        } else {
            core::arch::asm!("at s1e1r, {v}", "isb", "mrs {p}, par_el1", v = in(reg) v.as_u64(), p = out(reg) par, options(nostack));
        }
    }
    par
}

/// The descriptor the MMU walks for `v`, read from the live tables.
fn raw_descriptor(v: VirtAddr) -> Option<u64> {
    let mut table = TTBR0_EL1.get() & 0x0000_ffff_ffff_f000;
    for level in (0..4).rev() {
        let index = (v.as_u64() >> (12 + 9 * level)) & 0x1ff;
        // SAFETY: tables are identity-mapped.
        let d = unsafe { ((table + index * 8) as *const u64).read_volatile() };
        match (d & 0b11, level) {
            (0b11, 0) | (0b01, 1 | 2) => return Some(d),
            (0b11, _) => table = d & 0x0000_ffff_ffff_f000,
            _ => return None,
        }
    }
    None
}

fn mmu_attributes_for_all_flags() -> Result<(), Failure> {
    ensure_eq!(
        MAIR_EL1.get(),
        expect::MAIR_EL1,
        "MAIR_EL1 holds the Arm ARM attribute bytes"
    );
    let f = frame()?;
    for (i, want) in expect::TABLE.iter().enumerate() {
        let flags = Flags::all_combinations()[i];
        let v = va(0x100 + i as u64);
        // SAFETY: test window.
        let got = unsafe { AArch64::map(v, f, flags) };
        let bits = match want {
            Err(e) => {
                ensure_eq!(got, Err(awk_paging::MapError::InvalidFlags(*e)), "row {i}");
                continue;
            }
            Ok(bits) => *bits,
        };
        ensure_eq!(got, Ok(()), "row {i}");
        ensure_eq!(
            raw_descriptor(v),
            Some(bits | f.as_u64()),
            "row {i}: descriptor"
        );
        let par = at(v, false);
        ensure!(par & 1 == 0, "row {i}: AT S1E1R faulted (PAR {par:#x})");
        ensure_eq!(par & 0x0000_ffff_ffff_f000, f.as_u64(), "row {i}: PAR.PA");
        let index = (bits >> 2) & 0b111;
        let attr = (par >> 56) as u8;
        ensure_eq!(
            Some(attr),
            expect::ATTR.get(index as usize).copied(),
            "row {i}: PAR.ATTR (the MAIR byte the MMU used) vs the Arm ARM's byte for AttrIndx {index}"
        );
        if index <= 1 {
            ensure_eq!(
                (par >> 7) & 0b11,
                0b11,
                "row {i}: PAR.SH inner shareable for cacheable memory"
            );
        }
        let writable = at(v, true) & 1 == 0;
        ensure_eq!(writable, bits & expect::RO == 0, "row {i}: AT S1E1W");
        unmap(v);
    }
    Ok(())
}

/// The registers `mmu::enable` programmed, read back: MAIR, SCTLR as the literal Arm ARM values
/// (`expect`), TCR/TTBR0/TTBR1 as the plan for this CPU says, with the fields the host tests
/// check spelled out again for this machine (Cortex-A72: 16-bit ASIDs).
fn mmu_registers_as_planned() -> Result<(), Failure> {
    ensure_eq!(MAIR_EL1.get(), expect::MAIR_EL1, "MAIR_EL1");
    // SPAN (bit 23) is cleared where the kernel runs with PAN (`pan::enable`).
    let span = if awk_paging_aarch64::pan::has_pan() {
        awk_paging_aarch64::pan::SCTLR_SPAN
    } else {
        0
    };
    ensure_eq!(
        SCTLR_EL1.get() | span,
        expect::SCTLR_EL1,
        "SCTLR_EL1: the complete known value (SPAN cleared where PAN is on)"
    );
    ensure_eq!(
        awk_paging_aarch64::pan::is_on(),
        awk_paging_aarch64::pan::has_pan(),
        "PSTATE.PAN on exactly where the CPU has it"
    );
    let root = TTBR0_EL1.get() & 0x0000_ffff_ffff_f000;
    let upper = with_upper_table(|t| t.root())
        .ok_or_else(|| Failure::new(format_args!("no TTBR1 table")))?;
    let cpu = mmu::CpuId::read();
    let config =
        mmu::Config::new(PhyAddr::new(root), VaSize::Bits48).with_upper(upper, VaSize::Bits48);
    let plan = mmu::plan(cpu, &config).map_err(|e| Failure::new(format_args!("plan: {e}")))?;
    let tcr = TCR_EL1.get();
    ensure_eq!(Some(tcr), plan.value(SysReg::TcrEl1), "TCR_EL1");
    ensure_eq!(tcr & 0x3f, 16, "T0SZ");
    ensure_eq!((tcr >> 16) & 0x3f, 16, "T1SZ");
    ensure_eq!((tcr >> 23) & 1, 0, "EPD1 clear: TTBR1 walks on");
    ensure_eq!((tcr >> 36) & 1, u64::from(cpu.has_16bit_asids()), "AS");
    ensure!(cpu.has_16bit_asids(), "Cortex-A72 has 16-bit ASIDs");
    ensure_eq!(
        Some(TTBR0_EL1.get()),
        plan.value(SysReg::Ttbr0El1),
        "TTBR0_EL1"
    );
    ensure_eq!(TTBR0_EL1.get() >> 48, 0, "TTBR0_EL1.ASID");
    ensure_eq!(TTBR1_EL1.get(), upper.as_u64(), "TTBR1_EL1");
    Ok(())
}

/// The TTBR1 table `mmu_on` enabled translates the upper half: a page mapped at an upper-half
/// address is written through it and read back through the identity map.
fn ttbr1_upper_half() -> Result<(), Failure> {
    let (v, f) = (
        VirtAddr::new(qemu_tests::aarch64::UPPER_WINDOW + 0x1000),
        frame()?,
    );
    let mapped = with_upper_table(|t| {
        // SAFETY: a fresh upper-half address and data frame.
        unsafe { t.map(v, f, PageSize::Size4K, Flags::RW) }.map(|token| token.flush())
    });
    ensure_eq!(mapped, Some(Ok(())), "map in the TTBR1 table");
    ensure_eq!(
        probe::write(v.as_u64(), 0x7711_0001),
        Ok(()),
        "write through TTBR1"
    );
    ensure_eq!(
        probe::read(f.as_u64()),
        Ok(0x7711_0001),
        "read through the identity map"
    );
    ensure_eq!(
        probe::read(v.as_u64()),
        Ok(0x7711_0001),
        "read through TTBR1"
    );
    // The same address translated by the MMU: PAR_EL1.PA is the frame.
    let par = at(v, false);
    ensure_eq!(
        (par & 1, par & 0x0000_ffff_ffff_f000),
        (0, f.as_u64()),
        "AT S1E1R"
    );
    let gone = with_upper_table(|t| {
        // SAFETY: nothing uses the page any more.
        unsafe { t.unmap(v, PageSize::Size4K) }.map(|(gone, token)| {
            token.flush();
            gone.frame
        })
    });
    ensure_eq!(gone, Some(Ok(f)), "unmap");
    Ok(())
}

/// A write-back page turned non-cacheable the way the crate docs say: update_flags (break-
/// before-make), then clean and invalidate the page to the PoC, then use it. QEMU has no
/// caches, so this shows the sequence runs (no fault, data intact, PAR_EL1 reports the
/// non-cacheable attribute), not that the cache maintenance is needed.
fn memory_type_change_with_cache_maintenance() -> Result<(), Failure> {
    let (v, f) = (va(10), frame()?);
    map(v, f, Flags::RW)?;
    ensure_eq!(
        probe::write(v.as_u64() + 0x80, 0x5eed),
        Ok(()),
        "write, write-back"
    );
    let uncached = Flags {
        cache: false,
        ..Flags::RW
    };
    let changed = AArch64::with_table(|t| {
        // SAFETY: test window; nothing else maps the frame cacheably but the identity map,
        // which the test does not touch until the maintenance is done.
        unsafe { t.update_flags(v, PageSize::Size4K, uncached) }.map(|token| token.flush())
    });
    ensure_eq!(changed, Ok(Ok(())), "update_flags to non-cacheable");
    // SAFETY: the page is mapped.
    let cleaned = unsafe { cache::clean_invalidate_to_poc(v, 4096) };
    ensure_eq!(cleaned, Ok(()), "clean and invalidate to PoC");
    ensure_eq!(
        probe::read(v.as_u64() + 0x80),
        Ok(0x5eed),
        "read, non-cacheable"
    );
    ensure_eq!(
        (at(v, false) >> 56) as u8,
        expect::ATTR[2],
        "PAR.ATTR: Normal non-cacheable"
    );
    unmap(v);
    Ok(())
}

/// The contiguous hint on the live table: `map_range` of 33 pages (64 KiB-aligned VA and PA)
/// sets bit 52 on the two complete runs of 16 and not on the 33rd page; the MMU translates
/// every page (`AT S1E1R` → PAR_EL1.PA) and reads go through. `protect_range` of one page of
/// the first run to read-only unhints that whole run (break-before-make on all 16 entries) and
/// leaves the second run hinted; the page is read-only (a write probe faults with a permission
/// fault although the TLB held it writable; `AT S1E1W` reports a level-3 permission fault,
/// `AT S1E1R` still translates), its content unchanged, its neighbours read, write and
/// translate for writing.
fn contiguous_hint_map_and_protect() -> Result<(), Failure> {
    use awk_paging_aarch64::descriptor::bits::CONTIGUOUS;
    const PAGES: u64 = 33;
    const RO_PAGE: u64 = 5;
    // 64 KiB-aligned, at QUIET_PAGE (see there).
    let off = live::QUIET_PAGE * 0x1000;
    let (v, pa) = (
        VirtAddr::new(live::gib(5).as_u64() + off),
        Virt::SPARE_2M + off,
    );
    let page = |i: u64| VirtAddr::new(v.as_u64() + i * 0x1000);
    let marker = |i: u64| 0xc0_7000_0000 + i;
    for i in 0..PAGES {
        ensure!(
            probe::write(pa + i * 0x1000, marker(i)).is_ok(),
            "fill page {i} through the identity map"
        );
    }
    let before = qemu_tests::frames::free_frames();
    live::map_range::<Virt>(
        v,
        PhyAddr::new(pa),
        PAGES * 0x1000,
        Flags::RW,
        PageSize::Size1G,
    )?;
    // (level, hinted) of each page's leaf.
    let hint = |i: u64| {
        AArch64::with_table(|t| {
            t.raw_entry(page(i))
                .map(|(level, raw)| (level, raw & CONTIGUOUS != 0))
        })
    };
    for i in 0..PAGES {
        ensure_eq!(
            hint(i),
            Ok(Ok((0, i < 32))),
            "page {i}: 4 KiB, hinted iff in a complete run"
        );
        let par = at(page(i), false);
        ensure_eq!(
            (par & 1, par & 0x0000_ffff_ffff_f000),
            (0, pa + i * 0x1000),
            "page {i}: AT S1E1R"
        );
        ensure_eq!(
            probe::read(page(i).as_u64()),
            Ok(marker(i)),
            "page {i}: read through the run"
        );
    }
    let ro = page(RO_PAGE);
    // The TLB holds the page writable.
    ensure_eq!(
        probe::write(ro.as_u64() + 8, 0x77),
        Ok(()),
        "write before protect"
    );
    live::protect_range::<Virt>(ro, 0x1000, Flags::RO)?;
    for i in 0..PAGES {
        ensure_eq!(
            hint(i),
            Ok(Ok((0, (16..32).contains(&i)))),
            "page {i}: the first run unhinted, the second kept"
        );
    }
    match probe::write(ro.as_u64() + 0x10, 0xbad) {
        Err(f) => ensure_eq!(
            (f.addr, f.kind),
            (ro.as_u64() + 0x10, live::FaultKind::WriteDenied),
            "write to the protected page"
        ),
        Ok(()) => qemu_tests::fail!("wrote to the page protected read-only"),
    }
    ensure_eq!(
        (probe::read(ro.as_u64()), probe::read(ro.as_u64() + 8)),
        (Ok(marker(RO_PAGE)), Ok(0x77)),
        "protected page's content"
    );
    let w = at(ro, true);
    ensure_eq!(
        (w & 1, (w >> 1) & 0x3f),
        (1, 0b00_1111),
        "AT S1E1W on the protected page: permission fault, level 3 (PAR_EL1.F, FST)"
    );
    let r = at(ro, false);
    ensure_eq!(
        (r & 1, r & 0x0000_ffff_ffff_f000),
        (0, pa + RO_PAGE * 0x1000),
        "AT S1E1R on the protected page"
    );
    for i in (0..16).filter(|&i| i != RO_PAGE) {
        let w = at(page(i), true);
        ensure_eq!(
            (w & 1, w & 0x0000_ffff_ffff_f000),
            (0, pa + i * 0x1000),
            "neighbour {i}: AT S1E1W"
        );
        ensure_eq!(
            probe::write(page(i).as_u64() + 8, 0x100 + i),
            Ok(()),
            "neighbour {i}: write"
        );
        ensure_eq!(
            probe::read(pa + i * 0x1000 + 8),
            Ok(0x100 + i),
            "neighbour {i}: the write reached its frame"
        );
        ensure_eq!(
            probe::read(page(i).as_u64()),
            Ok(marker(i)),
            "neighbour {i}: read"
        );
    }
    ensure_eq!(
        live::unmap_range::<Virt>(v, PAGES * 0x1000)?,
        PAGES as usize,
        "pages unmapped"
    );
    ensure_eq!(
        qemu_tests::frames::free_frames(),
        before,
        "tables reclaimed"
    );
    Ok(())
}

const LIVE: &[Test] = &[
    Test {
        name: "live::instance_api_huge_page_lifecycle",
        run: live::instance_api_huge_page_lifecycle::<Virt>,
    },
    Test {
        name: "live::protect_range_splits_live_huge_page",
        run: live::protect_range_splits_live_huge_page::<Virt>,
    },
    Test {
        name: "live::range_past_the_threshold_is_seen_by_the_cpu",
        run: live::range_past_the_threshold_is_seen_by_the_cpu::<Virt>,
    },
    Test {
        name: "live::unmap_range_reclaimed_table_is_not_walked",
        run: live::unmap_range_reclaimed_table_is_not_walked::<Virt>,
    },
    Test {
        name: "live::map_range_alloc_then_unmap_range_free",
        run: live::map_range_alloc_then_unmap_range_free::<Virt>,
    },
    Test {
        name: "live::contiguous_hint_map_and_protect",
        run: contiguous_hint_map_and_protect,
    },
    Test {
        name: "live::write_then_read_both_ways",
        run: live::write_then_read_both_ways::<Virt>,
    },
    Test {
        name: "live::seed_api_reentry_is_an_error",
        run: live::seed_api_reentry_is_an_error::<Virt>,
    },
    Test {
        name: "live::remap_visible_after_flush",
        run: live::remap_visible_after_flush::<Virt>,
    },
    Test {
        name: "live::remap_visible_after_flush_all",
        run: live::remap_visible_after_flush_all::<Virt>,
    },
    Test {
        name: "live::remap_visible_after_flush_page",
        run: live::remap_visible_after_flush_page::<Virt>,
    },
    Test {
        name: "live::unmapped_page_faults",
        run: live::unmapped_page_faults::<Virt>,
    },
    Test {
        name: "live::write_to_read_only_faults",
        run: live::write_to_read_only_faults::<Virt>,
    },
    Test {
        name: "live::execute_from_no_execute_faults",
        run: live::execute_from_no_execute_faults::<Virt>,
    },
    Test {
        name: "live::pl011_through_device_mapping",
        run: pl011_through_device_mapping,
    },
    Test {
        name: "live::mmu_attributes_for_all_flags",
        run: mmu_attributes_for_all_flags,
    },
    Test {
        name: "aarch64::mmu_registers_as_planned",
        run: mmu_registers_as_planned,
    },
    Test {
        name: "aarch64::ttbr1_upper_half",
        run: ttbr1_upper_half,
    },
    Test {
        name: "aarch64::memory_type_change_with_cache_maintenance",
        run: memory_type_change_with_cache_maintenance,
    },
];

#[no_mangle]
extern "C" fn aarch64_kernel_entry(boot_el: u64) -> ! {
    init();
    qemu_tests::aarch64::smp::set_boot_el(boot_el);
    let mut out = Pl011;
    let _ = writeln!(
        out,
        "awk-paging aarch64 test kernel (entered at EL{boot_el})"
    );
    let tlb: &'static (dyn Tlb + Sync) = &TLB;
    let table = match mmu_on(tlb) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "MMU bring-up failed: {e}");
            exit(EXIT_CRASH);
        }
    };
    if AArch64::install(table).is_err() {
        let _ = writeln!(out, "AArch64::init failed");
        exit(EXIT_CRASH);
    }
    // PAN on for the whole run where the CPU has it (`-cpu max`): the kernel touches
    // EL0-accessible memory only inside `pan::with_user_access`.
    // SAFETY: EL1; nothing below reads user memory outside the window.
    let _ = unsafe { awk_paging_aarch64::pan::enable() };
    let mut summary = Summary::default();
    bare_harness::run(A64::default(), BAD_VAS, &mut out, &mut summary);
    harness::run(&mut out, "", LIVE, &mut summary);
    harness::run(
        &mut out,
        "",
        qemu_tests::aarch64::spaces::TESTS,
        &mut summary,
    );
    harness::run(&mut out, "", selftest::TESTS, &mut summary);
    // Last: the secondary CPUs stay parked afterwards.
    harness::run(&mut out, "", qemu_tests::aarch64::smp::TESTS, &mut summary);
    harness::print_summary(&mut out, summary);
    exit(if summary.failed == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    })
}
