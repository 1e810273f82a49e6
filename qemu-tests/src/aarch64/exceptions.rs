//! The EL1 vector table and its Rust handler: an expected abort inside a probe (see
//! [`super::probe`]) is recorded and execution resumes; anything else prints ESR/ELR/FAR and exits
//! with `EXIT_CRASH`.

use core::fmt::Write;

use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};

use super::console::{exit, Pl011};
use crate::harness::EXIT_CRASH;

core::arch::global_asm!(
    r#"
.macro VECTOR kind
.balign 0x80
    sub sp, sp, #(34 * 8)
    stp x0, x1, [sp, #(0 * 8)]
    mov x1, #\kind
    b exception_common
.endm

.section .text
.balign 2048
.global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

exception_common:
    str x1, [sp, #(33 * 8)]
    ldr x1, [sp, #(1 * 8)]
    stp x2, x3, [sp, #(2 * 8)]
    stp x4, x5, [sp, #(4 * 8)]
    stp x6, x7, [sp, #(6 * 8)]
    stp x8, x9, [sp, #(8 * 8)]
    stp x10, x11, [sp, #(10 * 8)]
    stp x12, x13, [sp, #(12 * 8)]
    stp x14, x15, [sp, #(14 * 8)]
    stp x16, x17, [sp, #(16 * 8)]
    stp x18, x19, [sp, #(18 * 8)]
    stp x20, x21, [sp, #(20 * 8)]
    stp x22, x23, [sp, #(22 * 8)]
    stp x24, x25, [sp, #(24 * 8)]
    stp x26, x27, [sp, #(26 * 8)]
    stp x28, x29, [sp, #(28 * 8)]
    mrs x2, elr_el1
    stp x30, x2, [sp, #(30 * 8)]
    mrs x2, spsr_el1
    str x2, [sp, #(32 * 8)]
    mov x0, sp
    bl aarch64_exception
    ldp x30, x2, [sp, #(30 * 8)]
    msr elr_el1, x2
    ldr x2, [sp, #(32 * 8)]
    msr spsr_el1, x2
    ldp x0, x1, [sp, #(0 * 8)]
    ldp x2, x3, [sp, #(2 * 8)]
    ldp x4, x5, [sp, #(4 * 8)]
    ldp x6, x7, [sp, #(6 * 8)]
    ldp x8, x9, [sp, #(8 * 8)]
    ldp x10, x11, [sp, #(10 * 8)]
    ldp x12, x13, [sp, #(12 * 8)]
    ldp x14, x15, [sp, #(14 * 8)]
    ldp x16, x17, [sp, #(16 * 8)]
    ldp x18, x19, [sp, #(18 * 8)]
    ldp x20, x21, [sp, #(20 * 8)]
    ldp x22, x23, [sp, #(22 * 8)]
    ldp x24, x25, [sp, #(24 * 8)]
    ldp x26, x27, [sp, #(26 * 8)]
    ldp x28, x29, [sp, #(28 * 8)]
    add sp, sp, #(34 * 8)
    eret
"#
);

/// Registers saved by the vector stub.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    /// x0..=x30.
    pub x: [u64; 31],
    /// ELR_EL1: where execution resumes.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// Which of the 16 vectors was taken.
    pub kind: u64,
}

/// The exception class of an ESR value.
pub fn exception_class(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

fn class_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown",
        0x15 => "SVC",
        0x20 => "instruction abort (lower EL)",
        0x21 => "instruction abort",
        0x22 => "PC alignment",
        0x24 => "data abort (lower EL)",
        0x25 => "data abort",
        0x26 => "SP alignment",
        0x3c => "BRK",
        _ => "other",
    }
}

#[no_mangle]
extern "C" fn aarch64_exception(frame: &mut Frame) {
    let esr = ESR_EL1.get();
    if frame.kind == 4 && super::probe::recover(frame, esr) {
        return;
    }
    let ec = exception_class(esr);
    let _ = writeln!(
        Pl011,
        "\nunexpected exception (vector {}): ESR {esr:#x} ({}) ELR {:#x} FAR {:#x}",
        frame.kind,
        class_name(ec),
        frame.elr,
        FAR_EL1.get()
    );
    exit(EXIT_CRASH);
}
