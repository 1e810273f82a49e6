//! PVH entry: QEMU enters `_start32` in 32-bit protected mode with paging off and `ebx` pointing
//! at the PVH `hvm_start_info` (saved in `pvh_start_info`). We identity-map the first 1 GiB with
//! 2 MiB pages (static tables below, in the image, so Rust edits the live tables through
//! [`super::boot_pml4_phys`]), enable PAE, long mode, NX and write-protect, load a flat GDT and
//! jump to 64-bit code, which calls `x86_kernel_entry` (defined by each kernel binary).

core::arch::global_asm!(
    r#"
.section .note.pvh, "a"
.balign 4
.long 4
.long 4
.long 18
.asciz "Xen"
.balign 4
.long _start32
.balign 4

.section .text.boot, "ax"
.code32
.global _start32
_start32:
    cli
    movl $boot_stack_top, %esp
    movl %ebx, pvh_start_info
    movl %ebx, %edi
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $long_start

.code64
long_start:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    movl %edi, %edi
    call x86_kernel_entry
1:  hlt
    jmp 1b

.section .data.boot, "aw"
.balign 4096
.global boot_pml4
boot_pml4:
    .quad boot_pdpt + 0x3
    .fill 511, 8, 0
.balign 4096
boot_pdpt:
    .quad boot_pd + 0x3
    .fill 511, 8, 0
.balign 4096
boot_pd:
    .set i, 0
    .rept 512
    .quad (i << 21) + 0x83
    .set i, i + 1
    .endr
.balign 8
.global pvh_start_info
pvh_start_info:
    .quad 0
.balign 16
.global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
// The GDTR limit, also for the SMP trampoline's copy of the pointer.
.global boot_gdt_limit
.set boot_gdt_limit, boot_gdt_end - boot_gdt - 1
boot_gdt_ptr:
    .word boot_gdt_limit
    .long boot_gdt

.section .bss.boot, "aw", @nobits
.balign 4096
boot_stack:
    .skip 65536
.global boot_stack_top
boot_stack_top:
"#,
    options(att_syntax)
);
