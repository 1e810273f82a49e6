//! Self-tests of the AArch64 kernel infrastructure itself: the boot state, the probes and the
//! decoded abort syndromes (level, WnR, access flag), and the frame pool. They run on the live
//! tables after [`super::mmu_on`] and `AArch64::install`, in their own VA window
//! ([`SELF_WINDOW`]), and do their own TLB maintenance where they edit a descriptor, so they pass
//! in the `no-tlb-flush` negative-control build too.
//!
//! A kernel lists them with `harness::run(&mut out, "", selftest::TESTS, &mut summary)`.

use aarch64_cpu::registers::{
    CurrentEL, Readable, CPACR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, VBAR_EL1,
};
use awk_paging::{Flags, FrameAllocator, Mapper, PhyAddr, VirtAddr};
use awk_paging_aarch64::AArch64;

use super::exceptions::{Abort, FaultStatus};
use super::{frame_pool, probe_exec, probe_read, probe_write, UART_BLOCK};
use crate::frames::{free_frames, PoolFrames};
use crate::harness::{Failure, Test};
use crate::live::Fault;
use crate::{ensure, ensure_eq, fail};

/// The self-tests' VA window (apart from `live`'s window at 0x2000_0000_0000).
pub const SELF_WINDOW: u64 = 0x0000_3000_0000_0000;

/// `ret`, as written to memory.
const RET: u64 = 0xd65f_03c0;

extern "C" {
    static exception_vectors: u8;
}

/// The infrastructure self-tests, named `aarch64::...`.
pub const TESTS: &[Test] = &[
    Test {
        name: "aarch64::boot_state",
        run: boot_state,
    },
    Test {
        name: "aarch64::probes_on_ram_and_device",
        run: probes_on_ram_and_device,
    },
    Test {
        name: "aarch64::abort_syndromes_decoded",
        run: abort_syndromes_decoded,
    },
    Test {
        name: "aarch64::access_flag_fault_decoded",
        run: access_flag_fault_decoded,
    },
    Test {
        name: "aarch64::frame_pool_alloc_free",
        run: frame_pool_alloc_free,
    },
];

/// The `n`-th page of [`SELF_WINDOW`].
fn page(n: u64) -> u64 {
    SELF_WINDOW + n * 0x1000
}

fn frame() -> Result<PhyAddr, Failure> {
    PoolFrames
        .allocate_frame()
        .ok_or_else(|| Failure::new(format_args!("frame pool empty")))
}

fn map(v: u64, p: PhyAddr, f: Flags) -> Result<(), Failure> {
    // SAFETY: the self-test window and pool frames only.
    unsafe { AArch64::map(VirtAddr::new(v), p, f) }
        .map_err(|e| Failure::new(format_args!("map {v:#x}: {e}")))
}

fn unmap(v: u64) {
    // SAFETY: the self-test window.
    unsafe { AArch64::unmap(VirtAddr::new(v)) };
}

/// Makes instructions written to `addr` visible to instruction fetch.
fn sync_icache(addr: u64) {
    // SAFETY: cache maintenance by VA of mapped memory; barriers.
    unsafe {
        core::arch::asm!("dc cvau, {a}", "dsb ish", "ic iallu", "dsb ish", "isb", a = in(reg) addr, options(nostack));
    }
}

/// Invalidates the TLB entries for `va` (all ASIDs) after a descriptor write.
fn flush_va(va: u64) {
    // SAFETY: TLB maintenance and barriers only.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi vaae1is, {p}", "dsb ish", "isb", p = in(reg) va >> 12, options(nostack));
    }
}

/// The leaf descriptor the MMU walks for `va` in the live TTBR0 tables (identity-mapped), found
/// from TCR_EL1.T0SZ's start level; `None` if the walk hits an invalid entry.
fn leaf_descriptor(va: u64) -> Option<*mut u64> {
    const ADDR: u64 = 0x0000_ffff_ffff_f000;
    let bits = 64 - TCR_EL1.read(TCR_EL1::T0SZ);
    let mut level = 4 - (bits - 12).div_ceil(9);
    let mut table = TTBR0_EL1.get() & ADDR;
    loop {
        let index = (va >> (12 + 9 * (3 - level))) & 0x1ff;
        let slot = (table + index * 8) as *mut u64;
        // SAFETY: page tables are identity-mapped RAM.
        let d = unsafe { slot.read_volatile() };
        match (d & 0b11, level) {
            (0b11, 3) | (0b01, 1 | 2) => return Some(slot),
            (0b11, 0..=2) => table = d & ADDR,
            _ => return None,
        }
        level += 1;
    }
}

/// The decoded abort of a probe's fault, checked against the address it must report.
fn abort_at(fault: Fault, addr: u64, what: &str) -> Result<Abort, Failure> {
    ensure_eq!(fault.addr, addr, "{what}: FAR_EL1");
    match Abort::decode(fault.raw) {
        Some(a) => Ok(a),
        None => fail!("{what}: ESR {:#x} is not an abort", fault.raw),
    }
}

/// EL1, the vectors installed, FP/SIMD enabled, the MMU and caches on.
fn boot_state() -> Result<(), Failure> {
    ensure_eq!(CurrentEL.read(CurrentEL::EL), 1, "CurrentEL");
    // SAFETY: linker symbol address.
    let vectors = unsafe { core::ptr::from_ref(&exception_vectors) as u64 };
    ensure_eq!(VBAR_EL1.get(), vectors, "VBAR_EL1");
    ensure_eq!(vectors & 0x7ff, 0, "vector table 2 KiB-aligned");
    ensure_eq!(CPACR_EL1.read(CPACR_EL1::FPEN), 0b11, "CPACR_EL1.FPEN");
    ensure!(SCTLR_EL1.is_set(SCTLR_EL1::M), "SCTLR_EL1.M (MMU on)");
    ensure!(
        SCTLR_EL1.is_set(SCTLR_EL1::C),
        "SCTLR_EL1.C (data cache on)"
    );
    ensure!(
        SCTLR_EL1.is_set(SCTLR_EL1::I),
        "SCTLR_EL1.I (instruction cache on)"
    );
    Ok(())
}

/// Probes read back what they wrote in RAM (through the identity map and a new mapping) and
/// read the PL011's control register through its identity device mapping.
fn probes_on_ram_and_device() -> Result<(), Failure> {
    let f = frame()?;
    ensure_eq!(
        probe_write(f.as_u64(), 0x0123_4567_89ab_cdef),
        Ok(()),
        "write RAM"
    );
    ensure_eq!(
        probe_read(f.as_u64()),
        Ok(0x0123_4567_89ab_cdef),
        "read RAM"
    );
    let v = page(0x10);
    map(v, f, Flags::RW)?;
    ensure_eq!(
        probe_read(v),
        Ok(0x0123_4567_89ab_cdef),
        "read through a new mapping"
    );
    unmap(v);
    // SAFETY: the frame came from the pool and is no longer mapped.
    unsafe { PoolFrames.deallocate_frame(f) };
    // UARTCR (0x30): QEMU's reset value has TXE and RXE (bits 8, 9) set; nothing here changes it.
    let cr = probe_read(UART_BLOCK + 0x30).map(|x| x & 0x301);
    ensure_eq!(cr, Ok(0x300), "UARTCR through the identity device mapping");
    Ok(())
}

/// Translation fault at level 3 (and level 0), permission faults on write (WnR set) and on
/// instruction fetch, no WnR on reads, the exact FAR; `ret` on an executable page runs.
fn abort_syndromes_decoded() -> Result<(), Failure> {
    let f = frame()?;
    ensure_eq!(probe_write(f.as_u64(), RET), Ok(()), "write `ret`");
    sync_icache(f.as_u64());
    let (ro, hole, rx) = (page(0), page(1), page(2));
    map(ro, f, Flags::RO)?;
    map(rx, f, Flags::RX)?;

    // Unmapped page next to a mapped one: its level 3 table exists.
    let a = abort_at(probe_read(hole + 8).fault(hole)?, hole + 8, "read hole")?;
    ensure_eq!(
        (a.instruction, a.status, a.level, a.write),
        (false, FaultStatus::Translation, Some(3), false),
        "read of an unmapped page"
    );
    let a = abort_at(probe_write(hole, 1).fault(hole)?, hole, "write hole")?;
    ensure_eq!(
        (a.status, a.level, a.write),
        (FaultStatus::Translation, Some(3), true),
        "write to an unmapped page (WnR)"
    );
    // Nothing mapped anywhere near: the walk stops at the first level.
    let far = 0x0000_7f00_0000_0000u64;
    let first = 4 - (64 - TCR_EL1.read(TCR_EL1::T0SZ) - 12).div_ceil(9);
    let a = abort_at(probe_read(far).fault(far)?, far, "read far")?;
    ensure_eq!(
        (a.status, a.level),
        (FaultStatus::Translation, Some(first as u8)),
        "read with no table below the root"
    );

    ensure_eq!(probe_read(ro), Ok(RET), "read of the read-only page");
    let a = abort_at(probe_write(ro + 0x10, 7).fault(ro)?, ro + 0x10, "write ro")?;
    ensure_eq!(
        (a.instruction, a.status, a.level, a.write),
        (false, FaultStatus::Permission, Some(3), true),
        "write to a read-only page"
    );
    ensure_eq!(probe_exec(rx), Ok(()), "`ret` on an executable page");
    let a = abort_at(probe_exec(ro).fault(ro)?, ro, "exec ro")?;
    ensure_eq!(
        (a.instruction, a.status, a.level, a.write),
        (true, FaultStatus::Permission, Some(3), false),
        "fetch from an execute-never page"
    );
    unmap(ro);
    unmap(rx);
    // SAFETY: the frame is no longer mapped.
    unsafe { PoolFrames.deallocate_frame(f) };
    Ok(())
}

/// A valid descriptor with AF clear faults with an access-flag fault (no hardware AF update on
/// this CPU); with AF set again the same access works.
fn access_flag_fault_decoded() -> Result<(), Failure> {
    let (v, f) = (page(3), frame()?);
    ensure_eq!(probe_write(f.as_u64(), 0xaf), Ok(()), "fill the frame");
    map(v, f, Flags::RW)?;
    let Some(slot) = leaf_descriptor(v) else {
        fail!("no descriptor for {v:#x} in the live tables")
    };
    const AF: u64 = 1 << 10;
    // SAFETY: the descriptor of a page only this test uses.
    let d = unsafe { slot.read_volatile() };
    ensure!(d & AF != 0, "the crate sets AF ({d:#x})");
    // SAFETY: as above; then the stale translation is invalidated.
    unsafe { slot.write_volatile(d & !AF) };
    flush_va(v);
    let a = abort_at(probe_read(v).fault(v)?, v, "read")?;
    ensure_eq!(
        (a.status, a.level, a.write),
        (FaultStatus::AccessFlag, Some(3), false),
        "read with AF clear"
    );
    // SAFETY: as above.
    unsafe { slot.write_volatile(d) };
    flush_va(v);
    ensure_eq!(probe_read(v), Ok(0xaf), "read with AF set again");
    unmap(v);
    // SAFETY: the frame is no longer mapped.
    unsafe { PoolFrames.deallocate_frame(f) };
    Ok(())
}

/// Frames come from the pool's range, page-aligned and distinct, and the count goes down on
/// allocation and back up on free.
fn frame_pool_alloc_free() -> Result<(), Failure> {
    let (start, end) = frame_pool();
    let before = free_frames();
    let mut got = [PhyAddr::new(0); 3];
    for g in &mut got {
        *g = frame()?;
    }
    ensure_eq!(free_frames(), before - 3, "free count after 3 allocations");
    for (i, g) in got.iter().enumerate() {
        let a = g.as_u64();
        ensure!(
            a % 4096 == 0 && (start..end).contains(&a),
            "frame {a:#x} outside the pool"
        );
        ensure!(!got[..i].contains(g), "frame {a:#x} handed out twice");
        ensure_eq!(probe_write(a, a), Ok(()), "frame {a:#x} writable");
    }
    for g in got {
        // SAFETY: allocated above and not used any more.
        unsafe { PoolFrames.deallocate_frame(g) };
    }
    ensure_eq!(free_frames(), before, "free count after freeing them");
    Ok(())
}

/// The fault of a probe that must fault, or a failure naming the address.
trait MustFault {
    fn fault(self, addr: u64) -> Result<Fault, Failure>;
}

impl<T: core::fmt::Debug> MustFault for Result<T, Fault> {
    fn fault(self, addr: u64) -> Result<Fault, Failure> {
        match self {
            Err(f) => Ok(f),
            Ok(x) => fail!("no fault at {addr:#x} (got {x:?})"),
        }
    }
}
