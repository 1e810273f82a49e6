//! The AArch64 half of the fault probes (see [`crate::probe`]): the probe routines, ESR
//! classification, and recovery from the synchronous-exception handler.

use aarch64_cpu::registers::{Readable, FAR_EL1};

use super::exceptions::{exception_class, Frame};
use crate::live::FaultKind;
use crate::probe::{armed_exec_target, record, sites};

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

/// Classifies an ESR_EL1 value: DFSC/IFSC 0b0001LL translation, 0b0011LL permission; a
/// data-abort permission fault on a write (ESR.WnR, bit 6) is a denied write.
pub fn classify(esr: u64) -> FaultKind {
    let write = esr & (1 << 6) != 0;
    match (exception_class(esr), (esr & 0x3f) >> 2) {
        (_, 0b0001) => FaultKind::NotMapped,
        (0x21, 0b0011) => FaultKind::ExecDenied,
        (0x25, 0b0011) if write => FaultKind::WriteDenied,
        _ => FaultKind::Other,
    }
}

/// Called for synchronous exceptions at EL1; `true` if it belonged to a probe and was recovered.
pub fn recover(frame: &mut Frame, esr: u64) -> bool {
    let s = sites();
    let ec = exception_class(esr);
    if ec == 0x25 && frame.elr == s.read_insn {
        frame.elr = s.read_resume;
        frame.x[1] = 1;
    } else if ec == 0x25 && frame.elr == s.write_insn {
        frame.elr = s.write_resume;
        frame.x[2] = 1;
    } else if ec == 0x21 && armed_exec_target() == Some(frame.elr) {
        // Back to the instruction after the probe's `blr`.
        frame.elr = frame.x[30];
        frame.x[2] = 1;
    } else {
        return false;
    }
    record(FAR_EL1.get(), esr);
    true
}
