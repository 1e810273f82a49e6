//! Fault probes: memory accesses that may fault on purpose. The page-fault handler recognises
//! the probe's faulting instruction (an exception table of three entries), records the fault and
//! resumes at the probe's exit with a fault flag.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::interrupts::Frame;
use crate::live::{Fault, FaultKind};

core::arch::global_asm!(
    r#"
.section .text
.global probe_read_asm
probe_read_asm:
    xorl %edx, %edx
.global probe_read_insn
probe_read_insn:
    movq (%rdi), %rax
.global probe_read_resume
probe_read_resume:
    ret

.global probe_write_asm
probe_write_asm:
    xorl %edx, %edx
.global probe_write_insn
probe_write_insn:
    movq %rsi, (%rdi)
.global probe_write_resume
probe_write_resume:
    movq %rdx, %rax
    ret

.global probe_exec_asm
probe_exec_asm:
    xorl %edx, %edx
    call *%rdi
    movq %rdx, %rax
    ret
"#,
    options(att_syntax)
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
static LAST_ERROR: AtomicU64 = AtomicU64::new(0);

fn last_fault() -> Fault {
    let error = LAST_ERROR.load(Ordering::SeqCst);
    // Error code: P (bit 0) present, W/R (bit 1) write, I/D (bit 4) instruction fetch.
    let kind = match (error & 1 != 0, error & 2 != 0, error & 0x10 != 0) {
        (false, _, _) => FaultKind::NotMapped,
        (true, _, true) => FaultKind::ExecDenied,
        (true, true, false) => FaultKind::WriteDenied,
        _ => FaultKind::Other,
    };
    Fault {
        addr: LAST_ADDR.load(Ordering::SeqCst),
        kind,
        raw: error,
    }
}

/// Reads the 8 bytes at `addr`, or reports the fault.
pub fn read(addr: u64) -> Result<u64, Fault> {
    // SAFETY: faults are recovered by the handler; the caller picks addresses it may read.
    let r = unsafe { probe_read_asm(addr) };
    if r.faulted == 0 {
        Ok(r.value)
    } else {
        Err(last_fault())
    }
}

/// Writes `value` to `addr`, or reports the fault.
pub fn write(addr: u64, value: u64) -> Result<(), Fault> {
    // SAFETY: as above; the caller picks addresses it may write.
    if unsafe { probe_write_asm(addr, value) } == 0 {
        Ok(())
    } else {
        Err(last_fault())
    }
}

/// Calls the code at `addr` (which must be a `ret` if it is executable), or reports the fault.
pub fn exec(addr: u64) -> Result<(), Fault> {
    EXEC_TARGET.store(addr, Ordering::SeqCst);
    EXEC_ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the target is a `ret` or faults on fetch, which the handler recovers.
    let faulted = unsafe { probe_exec_asm(addr) };
    EXEC_ARMED.store(false, Ordering::SeqCst);
    if faulted == 0 {
        Ok(())
    } else {
        Err(last_fault())
    }
}

/// Called by the page-fault handler; `true` if the fault belonged to a probe and was recovered.
pub fn recover(frame: &mut Frame) -> bool {
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
    let resume = if frame.rip == read_insn {
        read_resume
    } else if frame.rip == write_insn {
        write_resume
    } else if EXEC_ARMED.load(Ordering::SeqCst) && frame.rip == EXEC_TARGET.load(Ordering::SeqCst) {
        // Return to the probe: pop the return address `call` pushed.
        // SAFETY: the faulting `call` pushed a return address at the interrupted RSP.
        let ret = unsafe { (frame.rsp as *const u64).read() };
        frame.rsp += 8;
        ret
    } else {
        return false;
    };
    LAST_ADDR.store(
        x86_64::registers::control::Cr2::read_raw(),
        Ordering::SeqCst,
    );
    LAST_ERROR.store(frame.error, Ordering::SeqCst);
    frame.rip = resume;
    frame.rdx = 1;
    true
}
