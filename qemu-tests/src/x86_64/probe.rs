//! The x86_64 half of the fault probes (see [`crate::probe`]): the probe routines, page-fault
//! error-code classification, and recovery from the #PF handler; plus two x86-only probes for
//! the exception paths themselves.
//!
//! - `read` / `write` (in [`crate::probe`]): the access is the instruction at `probe_read_insn`
//!   / `probe_write_insn`; a #PF with that RIP resumes at the matching `_resume` label with
//!   `rdx = 1`.
//! - `exec`: `call`s the target; a #PF whose RIP is the armed target pops the return address
//!   `call` pushed (RIP := it, RSP += 8), so the probe returns with `rdx = 1`.
//! - [`breakpoint`]: `int3` with the probe armed; the #BP handler records the hit and returns.
//! - [`double_fault`]: points RSP at unmapped memory and executes `ud2`; delivering #UD and then
//!   #PF both fault, so the CPU raises #DF, which runs on its IST stack; the handler resumes at
//!   `probe_df_resume` with the saved RSP.
//!
//! Any exception outside an armed probe is a crash.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::interrupts::Frame;
use crate::live::FaultKind;
use crate::probe::{armed_exec_target, record, sites};

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

.global probe_bp_asm
probe_bp_asm:
    int3
    ret

.global probe_df_asm
probe_df_asm:
    movq %rsp, probe_df_saved_rsp(%rip)
    movabsq $0x700000000000, %rsp
    ud2
.global probe_df_resume
probe_df_resume:
    movl $1, %eax
    ret

.section .data
.balign 8
.global probe_df_saved_rsp
probe_df_saved_rsp:
    .quad 0

.section .text
.global probe_exec_asm
probe_exec_asm:
    xorl %edx, %edx
    call *%rdi
    movq %rdx, %rax
    ret
"#,
    options(att_syntax)
);

extern "C" {
    fn probe_bp_asm();
    fn probe_df_asm() -> u64;
    static probe_df_resume: u8;
    static probe_df_saved_rsp: u64;
}

static BP_ARMED: AtomicBool = AtomicBool::new(false);
static BP_HITS: AtomicU64 = AtomicU64::new(0);
static DF_ARMED: AtomicBool = AtomicBool::new(false);
static DF_HANDLER_RSP: AtomicU64 = AtomicU64::new(0);

/// Classifies a page-fault error code: P (bit 0) present, W/R (bit 1) write, I/D (bit 4)
/// instruction fetch.
pub fn classify(error: u64) -> FaultKind {
    match (error & 1 != 0, error & 2 != 0, error & 0x10 != 0) {
        (false, _, _) => FaultKind::NotMapped,
        (true, _, true) => FaultKind::ExecDenied,
        (true, true, false) => FaultKind::WriteDenied,
        _ => FaultKind::Other,
    }
}

/// Called by the page-fault handler; `true` if the fault belonged to a probe and was recovered.
pub fn recover(frame: &mut Frame) -> bool {
    let s = sites();
    let resume = if frame.rip == s.read_insn {
        s.read_resume
    } else if frame.rip == s.write_insn {
        s.write_resume
    } else if armed_exec_target() == Some(frame.rip) {
        // Return to the probe: pop the return address `call` pushed.
        // SAFETY: the faulting `call` pushed a return address at the interrupted RSP.
        let ret = unsafe { (frame.rsp as *const u64).read() };
        frame.rsp += 8;
        ret
    } else {
        return false;
    };
    record(x86_64::registers::control::Cr2::read_raw(), frame.error);
    frame.rip = resume;
    frame.rdx = 1;
    true
}

/// Executes `int3` with the breakpoint probe armed; `true` if the #BP handler saw it and
/// execution continued after it.
pub fn breakpoint() -> bool {
    let before = BP_HITS.load(Ordering::SeqCst);
    BP_ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the armed #BP handler returns to the instruction after `int3`.
    unsafe { probe_bp_asm() };
    BP_ARMED.store(false, Ordering::SeqCst);
    BP_HITS.load(Ordering::SeqCst) == before + 1
}

/// Forces a double fault (RSP at unmapped memory, then `ud2`) and recovers from it. Returns the
/// stack pointer the #DF handler's frame was on (to check that it is the IST stack), or `None`
/// if no double fault was seen.
pub fn double_fault() -> Option<u64> {
    DF_HANDLER_RSP.store(0, Ordering::SeqCst);
    DF_ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the armed #DF handler restores RSP and resumes at `probe_df_resume`.
    let seen = unsafe { probe_df_asm() };
    DF_ARMED.store(false, Ordering::SeqCst);
    (seen == 1).then(|| DF_HANDLER_RSP.load(Ordering::SeqCst))
}

/// Called by the #BP handler; `true` if the breakpoint probe was armed (RIP already points after
/// `int3`, so returning resumes the probe).
pub fn recover_breakpoint(_frame: &mut Frame) -> bool {
    if !BP_ARMED.load(Ordering::SeqCst) {
        return false;
    }
    BP_HITS.fetch_add(1, Ordering::SeqCst);
    true
}

/// Called by the #DF handler; `true` if the double-fault probe was armed and the frame was
/// redirected to its resume label with its saved stack pointer.
pub fn recover_double_fault(frame: &mut Frame) -> bool {
    if !DF_ARMED.swap(false, Ordering::SeqCst) {
        return false;
    }
    DF_HANDLER_RSP.store(core::ptr::from_mut(frame) as u64, Ordering::SeqCst);
    // SAFETY: linker symbols; the saved RSP was written by `probe_df_asm` before it faulted.
    unsafe {
        frame.rip = core::ptr::from_ref(&probe_df_resume) as u64;
        frame.rsp = core::ptr::addr_of!(probe_df_saved_rsp).read_volatile();
    }
    true
}
