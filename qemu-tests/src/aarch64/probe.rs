//! Fault probes: accesses that may abort on purpose. The synchronous-exception handler
//! recognises the probe's access instruction (an exception table of three entries), records the
//! abort and resumes at the probe's exit with a fault flag.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{Readable, FAR_EL1};

use super::exceptions::{exception_class, Frame};
use crate::live::{Fault, FaultKind};

core::arch::global_asm!(
    r#"
.section .text
.global probe_read_asm
probe_read_asm:
    mov x1, #0
.global probe_read_insn
probe_read_insn:
    ldr x0, [x0]
.global probe_read_resume
probe_read_resume:
    ret

.global probe_write_asm
probe_write_asm:
    mov x2, #0
.global probe_write_insn
probe_write_insn:
    str x1, [x0]
.global probe_write_resume
probe_write_resume:
    mov x0, x2
    ret

.global probe_exec_asm
probe_exec_asm:
    stp x29, x30, [sp, #-16]!
    mov x2, #0
    blr x0
    mov x0, x2
    ldp x29, x30, [sp], #16
    ret
"#
);

#[repr(C)]
struct ReadResult {
    value: u64,
    faulted: u64,
}

extern "C" {
    fn probe_read_asm(addr: u64) -> ReadResult;
    fn probe_write_asm(addr: u64, value: u64) -> u64;
    fn probe_exec_asm(addr: u64) -> u64;
    static probe_read_insn: u8;
    static probe_read_resume: u8;
    static probe_write_insn: u8;
    static probe_write_resume: u8;
}

static EXEC_TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static EXEC_ARMED: AtomicBool = AtomicBool::new(false);
static LAST_ADDR: AtomicU64 = AtomicU64::new(0);
static LAST_ESR: AtomicU64 = AtomicU64::new(0);

fn last_fault() -> Fault {
    let esr = LAST_ESR.load(Ordering::SeqCst);
    let fsc = esr & 0x3f;
    // DFSC/IFSC 0b0001LL translation, 0b0011LL permission; a data-abort permission fault on a
    // write (ESR.WnR, bit 6) is a denied write.
    let write = esr & (1 << 6) != 0;
    let kind = match (exception_class(esr), fsc >> 2) {
        (_, 0b0001) => FaultKind::NotMapped,
        (0x21, 0b0011) => FaultKind::ExecDenied,
        (0x25, 0b0011) if write => FaultKind::WriteDenied,
        _ => FaultKind::Other,
    };
    Fault {
        addr: LAST_ADDR.load(Ordering::SeqCst),
        kind,
        raw: esr,
    }
}

/// Reads the 8 bytes at `addr`, or reports the abort.
pub fn read(addr: u64) -> Result<u64, Fault> {
    // SAFETY: aborts are recovered by the handler; the caller picks addresses it may read.
    let r = unsafe { probe_read_asm(addr) };
    if r.faulted == 0 {
        Ok(r.value)
    } else {
        Err(last_fault())
    }
}

/// Writes `value` to `addr`, or reports the abort.
pub fn write(addr: u64, value: u64) -> Result<(), Fault> {
    // SAFETY: as above.
    if unsafe { probe_write_asm(addr, value) } == 0 {
        Ok(())
    } else {
        Err(last_fault())
    }
}

/// Branches to `addr` (which must hold a `ret` if executable), or reports the abort.
pub fn exec(addr: u64) -> Result<(), Fault> {
    EXEC_TARGET.store(addr, Ordering::SeqCst);
    EXEC_ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the target is a `ret` or aborts on fetch, which the handler recovers.
    let faulted = unsafe { probe_exec_asm(addr) };
    EXEC_ARMED.store(false, Ordering::SeqCst);
    if faulted == 0 {
        Ok(())
    } else {
        Err(last_fault())
    }
}

/// Called for synchronous exceptions at EL1; `true` if it belonged to a probe and was recovered.
pub fn recover(frame: &mut Frame, esr: u64) -> bool {
    let here = |sym: &u8| core::ptr::from_ref(sym) as u64;
    // SAFETY: taking the addresses of linker symbols.
    let (read_insn, read_resume, write_insn, write_resume) = unsafe {
        (
            here(&probe_read_insn),
            here(&probe_read_resume),
            here(&probe_write_insn),
            here(&probe_write_resume),
        )
    };
    let ec = exception_class(esr);
    if ec == 0x25 && frame.elr == read_insn {
        frame.elr = read_resume;
        frame.x[1] = 1;
    } else if ec == 0x25 && frame.elr == write_insn {
        frame.elr = write_resume;
        frame.x[2] = 1;
    } else if ec == 0x21
        && EXEC_ARMED.load(Ordering::SeqCst)
        && frame.elr == EXEC_TARGET.load(Ordering::SeqCst)
    {
        // Back to the instruction after the probe's `blr`.
        frame.elr = frame.x[30];
        frame.x[2] = 1;
    } else {
        return false;
    }
    LAST_ADDR.store(FAR_EL1.get(), Ordering::SeqCst);
    LAST_ESR.store(esr, Ordering::SeqCst);
    true
}
