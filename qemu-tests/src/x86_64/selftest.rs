//! Self-tests of the x86_64 kernel infrastructure (console, CPU state, probes, exception paths,
//! frame pool), independent of awk-paging: they edit the boot tables directly. They run first, so
//! a broken harness shows up as `infra::` failures rather than as paging bugs.

use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

use super::{
    active_cr3, boot_2m_entry, boot_pml4_phys, flush, frame_pool, gdt, probe, probe_exec,
    probe_read, probe_write, ram_end, FaultKind, INFRA_NX_2M, INFRA_RO_2M, NEVER_MAPPED,
};
use crate::harness::{Failure, Test};
use crate::{ensure, ensure_eq, fail};

const WRITABLE: u64 = 1 << 1;
const NO_EXECUTE: u64 = 1 << 63;
/// Page-fault error code bits.
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_FETCH: u64 = 1 << 4;

/// The infrastructure self-tests, in the order to run them.
pub fn tests() -> &'static [Test] {
    TESTS
}

const TESTS: &[Test] = &[
    Test {
        name: "infra::serial_console",
        run: serial_console,
    },
    Test {
        name: "infra::long_mode_paging_state",
        run: long_mode_paging_state,
    },
    Test {
        name: "infra::pvh_memory_map",
        run: pvh_memory_map,
    },
    Test {
        name: "infra::probe_read_mapped_returns_value",
        run: probe_read_mapped_returns_value,
    },
    Test {
        name: "infra::probe_read_unmapped_is_not_present",
        run: probe_read_unmapped_is_not_present,
    },
    Test {
        name: "infra::probe_write_read_only_is_write_protection",
        run: probe_write_read_only_is_write_protection,
    },
    Test {
        name: "infra::probe_exec_no_execute_is_instruction_fetch",
        run: probe_exec_no_execute_is_instruction_fetch,
    },
    Test {
        name: "infra::probe_exec_ret_returns",
        run: probe_exec_ret_returns,
    },
    Test {
        name: "infra::breakpoint_is_trapped",
        run: breakpoint_is_trapped,
    },
    Test {
        name: "infra::double_fault_runs_on_ist_stack",
        run: double_fault_runs_on_ist_stack,
    },
    Test {
        name: "infra::frame_pool_alloc_and_free",
        run: frame_pool_alloc_and_free,
    },
];

fn serial_console() -> Result<(), Failure> {
    // Reaching this line means COM1 printed the test name. A missing UART reads 0xff.
    // SAFETY: reading COM1's line status register has no side effects.
    let lsr = unsafe { Port::<u8>::new(0x3fd).read() };
    ensure!(lsr != 0xff, "COM1 line status {lsr:#x}: no UART");
    Ok(())
}

fn long_mode_paging_state() -> Result<(), Failure> {
    ensure_eq!(active_cr3(), boot_pml4_phys(), "CR3 is the boot PML4");
    ensure!(
        Cr0::read().contains(Cr0Flags::PAGING | Cr0Flags::WRITE_PROTECT),
        "CR0 {:?}",
        Cr0::read()
    );
    ensure!(
        Cr4::read().contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION),
        "CR4 {:?}",
        Cr4::read()
    );
    ensure!(
        Efer::read().contains(
            EferFlags::LONG_MODE_ENABLE
                | EferFlags::LONG_MODE_ACTIVE
                | EferFlags::NO_EXECUTE_ENABLE
        ),
        "EFER {:?}",
        Efer::read()
    );
    Ok(())
}

fn pvh_memory_map() -> Result<(), Failure> {
    let mut regions = 0;
    let found = super::for_each_ram_region(|_, _| regions += 1);
    ensure!(found, "no PVH start info / memory map");
    ensure!(regions > 0, "no RAM in the PVH memory map");
    let pool = frame_pool();
    ensure!(
        pool.end > pool.start && pool.end <= ram_end(),
        "frame pool {:#x}..{:#x} vs RAM end {:#x}",
        pool.start,
        pool.end,
        ram_end()
    );
    ensure!(
        ram_end() >= INFRA_NX_2M + (2 << 20),
        "RAM end {:#x} below the self-tests' regions",
        ram_end()
    );
    Ok(())
}

fn probe_read_mapped_returns_value() -> Result<(), Failure> {
    let addr = INFRA_RO_2M + 0x100;
    // SAFETY: a region only these tests use, identity-mapped and writable here.
    unsafe { (addr as *mut u64).write_volatile(0x1234_5678_9abc_def0) };
    ensure_eq!(
        probe_read(addr),
        Ok(0x1234_5678_9abc_def0),
        "read back through the probe"
    );
    ensure_eq!(probe_write(addr, 7), Ok(()), "write through the probe");
    // SAFETY: as above.
    let back = unsafe { (addr as *const u64).read_volatile() };
    ensure_eq!(back, 7, "value written by the probe");
    Ok(())
}

fn probe_read_unmapped_is_not_present() -> Result<(), Failure> {
    let addr = NEVER_MAPPED + 0x18;
    match probe_read(addr) {
        Ok(v) => fail!("read {v:#x} from {addr:#x}, which is not mapped"),
        Err(f) => {
            ensure_eq!(f.kind, FaultKind::NotMapped, "fault kind ({f:?})");
            ensure_eq!(f.addr, addr, "CR2");
            ensure_eq!(f.raw & (PF_PRESENT | PF_WRITE), 0, "error code");
        }
    }
    match probe_write(addr, 1) {
        Ok(()) => fail!("wrote to {addr:#x}, which is not mapped"),
        Err(f) => {
            ensure_eq!(f.kind, FaultKind::NotMapped, "write fault kind ({f:?})");
            ensure_eq!(f.raw & (PF_PRESENT | PF_WRITE), PF_WRITE, "error code");
        }
    }
    Ok(())
}

/// Runs `f` with `bits` set and `clear` cleared in the boot 2 MiB entry of `region`, restoring
/// the entry (and flushing) before returning `f`'s result.
fn with_entry<T>(region: u64, set: u64, clear: u64, f: impl FnOnce() -> T) -> Result<T, Failure> {
    let Some(entry) = boot_2m_entry(region) else {
        fail!("{region:#x} is not mapped by a 2 MiB boot entry");
    };
    // SAFETY: a live 2 MiB leaf entry of a region nothing but the self-tests uses.
    let old = unsafe { entry.read_volatile() };
    // SAFETY: as above.
    unsafe { entry.write_volatile((old | set) & !clear) };
    flush(region);
    let r = f();
    // SAFETY: as above.
    unsafe { entry.write_volatile(old) };
    flush(region);
    Ok(r)
}

fn probe_write_read_only_is_write_protection() -> Result<(), Failure> {
    let addr = INFRA_RO_2M + 0x1_2340;
    let (read, write) = with_entry(INFRA_RO_2M, 0, WRITABLE, || {
        (probe_read(addr), probe_write(addr, 0xdead))
    })?;
    ensure!(read.is_ok(), "read of a read-only page: {read:?}");
    match write {
        Ok(()) => fail!("write to a read-only page at {addr:#x} succeeded (CR0.WP?)"),
        Err(f) => {
            ensure_eq!(f.kind, FaultKind::WriteDenied, "fault kind ({f:?})");
            ensure_eq!(f.addr, addr, "CR2");
            ensure_eq!(
                f.raw & (PF_PRESENT | PF_WRITE | PF_FETCH),
                PF_PRESENT | PF_WRITE,
                "error code"
            );
        }
    }
    ensure_eq!(
        probe_write(addr, 0xbeef),
        Ok(()),
        "write after restoring WRITABLE"
    );
    Ok(())
}

fn probe_exec_no_execute_is_instruction_fetch() -> Result<(), Failure> {
    let addr = INFRA_NX_2M + 0x40;
    // SAFETY: a region only these tests use; 0xc3 is `ret`.
    unsafe { (addr as *mut u8).write_volatile(0xc3) };
    let r = with_entry(INFRA_NX_2M, NO_EXECUTE, 0, || probe_exec(addr))?;
    match r {
        Ok(()) => fail!("executed at {addr:#x} through a no-execute entry (EFER.NXE?)"),
        Err(f) => {
            ensure_eq!(f.kind, FaultKind::ExecDenied, "fault kind ({f:?})");
            ensure_eq!(f.addr, addr, "CR2");
            ensure_eq!(
                f.raw & (PF_PRESENT | PF_WRITE | PF_FETCH),
                PF_PRESENT | PF_FETCH,
                "error code"
            );
        }
    }
    Ok(())
}

fn probe_exec_ret_returns() -> Result<(), Failure> {
    let addr = INFRA_NX_2M + 0x80;
    // SAFETY: as above.
    unsafe { (addr as *mut u8).write_volatile(0xc3) };
    ensure_eq!(
        probe_exec(addr),
        Ok(()),
        "call a `ret` in an executable page"
    );
    match probe_exec(NEVER_MAPPED) {
        Ok(()) => fail!("executed unmapped {NEVER_MAPPED:#x}"),
        Err(f) => {
            ensure_eq!(f.kind, FaultKind::NotMapped, "fault kind ({f:?})");
            ensure_eq!(f.addr, NEVER_MAPPED, "CR2");
            ensure_eq!(f.raw & PF_FETCH, PF_FETCH, "error code I/D");
        }
    }
    Ok(())
}

fn breakpoint_is_trapped() -> Result<(), Failure> {
    ensure!(probe::breakpoint(), "int3 did not reach the #BP handler");
    Ok(())
}

fn double_fault_runs_on_ist_stack() -> Result<(), Failure> {
    // SAFETY: `str` only reads the task register.
    let tr: u16 = unsafe {
        let tr: u16;
        core::arch::asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags));
        tr
    };
    ensure_eq!(tr, gdt::tss_selector(), "task register");
    let Some(rsp) = probe::double_fault() else {
        fail!("no double fault seen");
    };
    let stack = gdt::double_fault_stack();
    ensure!(
        stack.contains(&rsp),
        "#DF handler ran at {rsp:#x}, outside the IST stack {:#x}..{:#x}",
        stack.start,
        stack.end
    );
    Ok(())
}

fn frame_pool_alloc_and_free() -> Result<(), Failure> {
    use awk_paging::FrameAllocator;
    const N: usize = 8;
    let pool = frame_pool();
    let before = crate::frames::free_frames();
    ensure!(before > N, "only {before} free frames");
    let mut frames = [0u64; N];
    for slot in &mut frames {
        let Some(f) = crate::frames::data_frame() else {
            fail!("pool empty after {before} frames");
        };
        let f = f.as_u64();
        ensure!(
            f % 4096 == 0 && pool.contains(&f),
            "frame {f:#x} outside the pool"
        );
        *slot = f;
    }
    ensure_eq!(crate::frames::free_frames(), before - N, "free count");
    for (i, f) in frames.iter().enumerate() {
        ensure!(!frames[..i].contains(f), "frame {f:#x} handed out twice");
        // The frame is identity-mapped RAM: writable and readable.
        ensure_eq!(probe_write(*f, i as u64), Ok(()), "write frame {f:#x}");
        ensure_eq!(probe_read(*f), Ok(i as u64), "read frame {f:#x}");
    }
    for f in frames {
        // SAFETY: frames taken from the pool above and no longer used.
        unsafe {
            crate::frames::PoolFrames.deallocate_frame(awk_paging::PhyAddr::new(f));
        }
    }
    ensure_eq!(
        crate::frames::free_frames(),
        before,
        "free count after freeing"
    );
    Ok(())
}
