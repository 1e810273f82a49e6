//! Entry: only CPU 0 continues. At EL2 (QEMU `virtualization=on`) it makes EL1 AArch64, gives
//! EL1 the timers, and drops to EL1h with interrupts masked. At EL1 it sets the stack, enables
//! FP/SIMD (CPACR_EL1.FPEN, before any Rust code), zeroes .bss, installs the vectors and calls
//! `aarch64_kernel_entry(boot_el)`.

core::arch::global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mrs x1, mpidr_el1
    and x1, x1, #0xff
    cbz x1, 1f
0:  wfe
    b 0b
1:  mrs x19, CurrentEL
    lsr x19, x19, #2
    cmp x19, #2
    b.ne 2f
    mov x1, #(1 << 31)
    msr hcr_el2, x1
    mov x1, #3
    msr cnthctl_el2, x1
    msr cntvoff_el2, xzr
    ldr x1, =0x30d00800
    msr sctlr_el1, x1
    mov x1, #0x3c5
    msr spsr_el2, x1
    adr x1, 2f
    msr elr_el2, x1
    eret
2:  ldr x1, =boot_stack_top
    mov sp, x1
    mov x1, #(3 << 20)
    msr cpacr_el1, x1
    isb
    ldr x1, =__bss_start
    ldr x2, =__bss_end
3:  cmp x1, x2
    b.hs 4f
    str xzr, [x1], #8
    b 3b
4:  ldr x1, =exception_vectors
    msr vbar_el1, x1
    isb
    mov x0, x19
    bl aarch64_kernel_entry
5:  wfe
    b 5b

.section .bss
.balign 16
boot_stack:
    .skip 65536
.global boot_stack_top
boot_stack_top:
"#
);
