//! Exception entry stubs, the IDT, and the Rust handler: an expected page fault inside a probe
//! (see [`super::probe`]) is recorded and execution resumes; anything else prints the CPU state
//! and exits with `EXIT_CRASH`.

use core::fmt::Write;

use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

use super::console::{exit, Com1};
use crate::harness::EXIT_CRASH;

core::arch::global_asm!(
    r#"
.macro ISR_NOERR n
isr_\n:
    pushq $0
    pushq $\n
    jmp isr_common
.endm
.macro ISR_ERR n
isr_\n:
    pushq $\n
    jmp isr_common
.endm

.section .text
ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR 8
ISR_NOERR 9
ISR_ERR 10
ISR_ERR 11
ISR_ERR 12
ISR_ERR 13
ISR_ERR 14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR 17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR 21

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call x86_exception
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

.section .rodata
.balign 8
.global isr_table
isr_table:
    .quad isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
    .quad isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
    .quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21
"#,
    options(att_syntax)
);

/// The saved state an exception stub hands to Rust (lowest address first).
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const VECTORS: usize = 22;

extern "C" {
    static isr_table: [u64; VECTORS];
}

/// 256 interrupt-gate descriptors (16 bytes each).
#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);

/// Installs the IDT (vectors 0..=21: CPU exceptions).
pub fn init() {
    // SAFETY: single CPU, before interrupts or exceptions are expected; the table is static.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (v, gate) in idt.0.iter_mut().enumerate().take(VECTORS) {
            let addr = isr_table[v];
            let low =
                (addr & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((addr >> 16) & 0xffff) << 48;
            *gate = [low, addr >> 32];
        }
        let ptr = DescriptorTablePointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: x86_64::VirtAddr::new(idt as *const Idt as u64),
        };
        lidt(&ptr);
    }
}

#[no_mangle]
extern "C" fn x86_exception(frame: &mut Frame) {
    if frame.vector == 14 && super::probe::recover(frame) {
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let _ = writeln!(
        Com1,
        "\nunexpected exception {} error {:#x} rip {:#x} rsp {:#x} cr2 {:#x}",
        frame.vector, frame.error, frame.rip, frame.rsp, cr2
    );
    exit(EXIT_CRASH);
}
