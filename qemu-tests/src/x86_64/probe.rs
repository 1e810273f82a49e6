//! The x86_64 half of the fault probes (see [`crate::probe`]): the probe routines, page-fault
//! error-code classification, and recovery from the #PF handler.

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

.global probe_exec_asm
probe_exec_asm:
    xorl %edx, %edx
    call *%rdi
    movq %rdx, %rax
    ret
"#,
    options(att_syntax)
);

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
