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

/// ESR_EL1.EC: instruction abort taken without a change in exception level.
pub const EC_INSTRUCTION_ABORT: u64 = 0x21;
/// ESR_EL1.EC: data abort taken without a change in exception level.
pub const EC_DATA_ABORT: u64 = 0x25;

/// A name for an exception class (ESR_EL1.EC).
pub fn class_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE",
        0x07 => "SIMD/FP access",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "MSR/MRS/system instruction",
        0x20 => "instruction abort (lower EL)",
        0x21 => "instruction abort",
        0x22 => "PC alignment",
        0x24 => "data abort (lower EL)",
        0x25 => "data abort",
        0x26 => "SP alignment",
        0x2c => "FP exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK",
        _ => "other",
    }
}

/// The vector a [`Frame::kind`] names (0..=15 in table order).
pub fn vector_name(kind: u64) -> &'static str {
    const NAMES: [&str; 16] = [
        "current EL, SP0: synchronous",
        "current EL, SP0: IRQ",
        "current EL, SP0: FIQ",
        "current EL, SP0: SError",
        "current EL, SPx: synchronous",
        "current EL, SPx: IRQ",
        "current EL, SPx: FIQ",
        "current EL, SPx: SError",
        "lower EL, AArch64: synchronous",
        "lower EL, AArch64: IRQ",
        "lower EL, AArch64: FIQ",
        "lower EL, AArch64: SError",
        "lower EL, AArch32: synchronous",
        "lower EL, AArch32: IRQ",
        "lower EL, AArch32: FIQ",
        "lower EL, AArch32: SError",
    ];
    NAMES.get(kind as usize).copied().unwrap_or("?")
}

/// The fault status of an abort (DFSC/IFSC, ESR_EL1 bits 5:0), grouped as the VMSA groups it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// 0b0001LL: no valid descriptor at level LL.
    Translation,
    /// 0b0010LL: the descriptor's AF bit is clear.
    AccessFlag,
    /// 0b0011LL: the descriptor forbids the access.
    Permission,
    /// 0b0000LL: address size fault (output or input address too wide).
    AddressSize,
    /// 0b100001: alignment fault.
    Alignment,
    /// Anything else (external aborts, TLB conflicts, ...): the raw DFSC/IFSC.
    Other(u8),
}

/// An instruction or data abort, decoded from ESR_EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// Instruction abort (EC 0x20/0x21) rather than data abort (EC 0x24/0x25).
    pub instruction: bool,
    /// What kind of fault.
    pub status: FaultStatus,
    /// The lookup level of translation, access-flag, permission and address-size faults.
    pub level: Option<u8>,
    /// Data aborts: the access was a write (ESR.WnR, bit 6). Always `false` for instruction
    /// aborts.
    pub write: bool,
}

impl Abort {
    /// Decodes an abort syndrome; `None` if `esr` is not an instruction or data abort.
    pub fn decode(esr: u64) -> Option<Self> {
        let instruction = match exception_class(esr) {
            0x20 | 0x21 => true,
            0x24 | 0x25 => false,
            _ => return None,
        };
        let fsc = (esr & 0x3f) as u8;
        let level = Some(fsc & 0b11);
        let (status, level) = match fsc >> 2 {
            0b0000 => (FaultStatus::AddressSize, level),
            0b0001 => (FaultStatus::Translation, level),
            0b0010 => (FaultStatus::AccessFlag, level),
            0b0011 => (FaultStatus::Permission, level),
            _ if fsc == 0b10_0001 => (FaultStatus::Alignment, None),
            _ => (FaultStatus::Other(fsc), None),
        };
        Some(Self {
            instruction,
            status,
            level,
            write: !instruction && esr & (1 << 6) != 0,
        })
    }
}

impl core::fmt::Display for Abort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = if self.instruction {
            "instruction fetch"
        } else if self.write {
            "write"
        } else {
            "read"
        };
        write!(f, "{what}: {:?} fault", self.status)?;
        if let Some(l) = self.level {
            write!(f, " at level {l}")?;
        }
        Ok(())
    }
}

#[no_mangle]
extern "C" fn aarch64_exception(frame: &mut Frame) {
    let esr = ESR_EL1.get();
    if frame.kind == 4 && super::probe::recover(frame, esr) {
        return;
    }
    if frame.kind == 8 && super::user::lower_el_sync(frame, esr, FAR_EL1.get()) {
        return;
    }
    let ec = exception_class(esr);
    let mut out = Pl011;
    let _ = writeln!(
        out,
        "\nunexpected exception ({}): ESR_EL1 {esr:#x} (EC {ec:#x}: {}) ELR_EL1 {:#x} FAR_EL1 {:#x}",
        vector_name(frame.kind),
        class_name(ec),
        frame.elr,
        FAR_EL1.get()
    );
    if let Some(abort) = Abort::decode(esr) {
        let _ = writeln!(out, "  {abort}");
    }
    exit(EXIT_CRASH);
}
