//! Exception entry stubs for all 32 CPU exception vectors, the IDT, and the Rust handler: an
//! expected exception inside a probe (see [`super::probe`]: #PF from a read/write/exec probe, #BP
//! from the breakpoint probe, #DF from the double-fault probe) is recorded and execution resumes;
//! anything else prints the vector, error code, RIP, RSP and CR2 and exits with `EXIT_CRASH`.
//! #DF runs on its own IST stack (see [`super::gdt`]).

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
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR 29
ISR_ERR 30
ISR_NOERR 31
ISR_NOERR 240
ISR_NOERR 255

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
    .quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
    .quad isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31
.global isr_interrupts
isr_interrupts:
    .quad isr_240, isr_255
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

const VECTORS: usize = 32;

extern "C" {
    static isr_table: [u64; VECTORS];
    /// The stubs of the interrupt vectors in [`INTERRUPTS`], in that order.
    static isr_interrupts: [u64; 2];
}

/// The interrupt vectors with a gate besides the exceptions: the shootdown IPI and the local
/// APIC's spurious vector (see [`super::smp`]).
const INTERRUPTS: [u64; 2] = [super::smp::SHOOTDOWN_VECTOR, super::smp::SPURIOUS_VECTOR];

/// 256 interrupt-gate descriptors (16 bytes each).
#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);

/// Vector numbers the handler treats specially.
pub const DIVIDE_ERROR: u64 = 0;
/// #BP.
pub const BREAKPOINT: u64 = 3;
/// #UD.
pub const INVALID_OPCODE: u64 = 6;
/// #DF (on IST stack [`super::gdt::DOUBLE_FAULT_IST`]).
pub const DOUBLE_FAULT: u64 = 8;
/// #GP.
pub const GENERAL_PROTECTION: u64 = 13;
/// #PF.
pub const PAGE_FAULT: u64 = 14;

/// The mnemonic of an exception vector.
pub fn name(vector: u64) -> &'static str {
    const NAMES: [&str; VECTORS] = [
        "#DE divide error",
        "#DB debug",
        "NMI",
        "#BP breakpoint",
        "#OF overflow",
        "#BR bound range",
        "#UD invalid opcode",
        "#NM device not available",
        "#DF double fault",
        "coprocessor segment overrun",
        "#TS invalid TSS",
        "#NP segment not present",
        "#SS stack-segment fault",
        "#GP general protection",
        "#PF page fault",
        "reserved",
        "#MF x87 floating point",
        "#AC alignment check",
        "#MC machine check",
        "#XM SIMD floating point",
        "#VE virtualization",
        "#CP control protection",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "#HV hypervisor injection",
        "#VC VMM communication",
        "#SX security",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("?")
}

/// A present 64-bit interrupt gate (0x8e) to `addr` with code selector 0x08 and IST `ist`.
fn gate(addr: u64, ist: u64) -> [u64; 2] {
    let low = (addr & 0xffff)
        | (0x08 << 16)
        | (ist << 32)
        | (0x8e00u64 << 32)
        | ((addr >> 16) & 0xffff) << 48;
    [low, addr >> 32]
}

/// Loads the GDT/TSS and installs the IDT (vectors 0..=31: CPU exceptions, #DF on its IST
/// stack; the shootdown IPI and the spurious vector). Idempotent.
pub fn init() {
    super::gdt::init();
    // SAFETY: single CPU, before interrupts or exceptions are expected; the table is static.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (v, g) in idt.0.iter_mut().enumerate().take(VECTORS) {
            let ist = if v as u64 == DOUBLE_FAULT {
                super::gdt::DOUBLE_FAULT_IST
            } else {
                0
            };
            *g = gate(isr_table[v], ist);
        }
        for (v, addr) in INTERRUPTS.iter().zip(isr_interrupts) {
            idt.0[*v as usize] = gate(addr, 0);
        }
    }
    load_idt();
}

/// Loads the IDT [`init`] built into this CPU's IDTR (the other CPUs share it).
pub fn load_idt() {
    // SAFETY: the static IDT, complete once `init` ran on the boot CPU.
    unsafe {
        let idt = &*core::ptr::addr_of!(IDT);
        let ptr = DescriptorTablePointer {
            limit: (core::mem::size_of::<Idt>() - 1) as u16,
            base: x86_64::VirtAddr::new(idt as *const Idt as u64),
        };
        lidt(&ptr);
    }
}

#[no_mangle]
extern "C" fn x86_exception(frame: &mut Frame) {
    if frame.cs & 3 == 3 && super::user::from_ring3(frame) {
        return;
    }
    let recovered = match frame.vector {
        super::smp::SHOOTDOWN_VECTOR => {
            super::smp::on_ipi();
            true
        }
        super::smp::SPURIOUS_VECTOR => true,
        PAGE_FAULT => super::probe::recover(frame),
        BREAKPOINT => super::probe::recover_breakpoint(frame),
        DOUBLE_FAULT => super::probe::recover_double_fault(frame),
        _ => false,
    };
    if recovered {
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let _ = writeln!(
        Com1,
        "\nunexpected exception {} ({}) error {:#x} rip {:#x} rsp {:#x} cr2 {:#x}",
        frame.vector,
        name(frame.vector),
        frame.error,
        frame.rip,
        frame.rsp,
        cr2
    );
    exit(EXIT_CRASH);
}
