//! SMP on the x86_64 test kernel (`-smp 4`, x2APIC): the other CPUs are started with
//! INIT-SIPI-SIPI through the local APIC, one at a time, at a real-mode trampoline copied below
//! 1 MiB ([`TRAMPOLINE`]). The trampoline loads the boot GDT, enables PAE, long mode and NX
//! and the boot page tables (the boot CPU's CR3), switches from real mode straight to 64-bit
//! code, takes the stack the boot CPU left for it and calls `x86_ap_entry`: the IDT, the x2APIC,
//! interrupts on, then [`crate::smp::worker`].
//!
//! TLB shootdown: `invlpg` and CR3 loads act on their own CPU only (Intel SDM Vol. 3A §4.10.5,
//! "Propagation of Paging-Structure Changes to Multiple Processors"), so the kernel's TLB hook
//! ([`TLB`]) is an [`awk_paging::ShootdownTlb`]: the initiator invalidates locally, sends
//! [`SHOOTDOWN_VECTOR`] to every other CPU in [`ACTIVE`] and waits for each to run the same
//! invalidation ([`on_ipi`]) and acknowledge it. The seed API's lock waits for a holder with
//! interrupts as the caller had them, so a CPU waiting for the lock still answers the holder's
//! shootdown: the test runs the boot CPU with interrupts enabled
//! ([`crate::smp::Cpus::interruptible`]; the legacy PIC and LINT0 are masked first).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use awk_paging::irq::IrqControl;
use awk_paging::{Ipi, Shootdown, ShootdownTlb};
use awk_paging_x86_64::X86Irq;
use x86_64::registers::model_specific::Msr;

use super::Pc;
use crate::harness::Test;
use crate::smp::{self, Cpus, CPUS};

/// The interrupt vector of the shootdown IPI.
pub const SHOOTDOWN_VECTOR: u64 = 0xf0;
/// The local APIC's spurious-interrupt vector (its handler does nothing, not even an EOI).
pub const SPURIOUS_VECTOR: u64 = 0xff;
/// Where the real-mode trampoline is copied (the SIPI vector is its page number).
pub const TRAMPOLINE: u64 = 0x8000;

/// The CPUs the kernel address space is active on (all online CPUs: there is one kernel table).
pub static ACTIVE: AtomicU64 = AtomicU64::new(1);
/// The shootdown state of the kernel's CPUs.
pub static SHOOTDOWN: Shootdown<CPUS> = Shootdown::new();

/// This CPU's own invalidation: `invlpg` (nothing at all in the negative control's build).
#[cfg(not(feature = "no-tlb-flush"))]
pub type Local = awk_paging_x86_64::Invlpg;
/// This CPU's own invalidation: `invlpg` (nothing at all in the negative control's build).
#[cfg(feature = "no-tlb-flush")]
pub type Local = awk_paging::NoTlb;

#[cfg(not(feature = "no-tlb-flush"))]
const LOCAL: Local = awk_paging_x86_64::Invlpg;
#[cfg(feature = "no-tlb-flush")]
const LOCAL: Local = awk_paging::NoTlb;

/// The kernel's TLB hook: local invalidation plus shootdown of the CPUs in [`ACTIVE`].
pub static TLB: ShootdownTlb<'static, Local, X2Apic, CPUS> = ShootdownTlb {
    shootdown: &SHOOTDOWN,
    active: &ACTIVE,
    this_cpu: <X86Irq as IrqControl>::cpu_id,
    local: LOCAL,
    ipi: X2Apic,
};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_EXTD: u64 = 1 << 10;
const APIC_BASE_EN: u64 = 1 << 11;
const X2APIC_EOI: u32 = 0x80b;
const X2APIC_SVR: u32 = 0x80f;
const X2APIC_ICR: u32 = 0x830;
const X2APIC_LVT_LINT0: u32 = 0x835;
const X2APIC_LVT_LINT1: u32 = 0x836;
const LVT_MASKED: u64 = 1 << 16;
const SVR_ENABLE: u64 = 1 << 8;
/// ICR: level assert (bit 14) with delivery mode fixed (0), INIT (5) or start-up (6).
const ICR_ASSERT: u64 = 1 << 14;
const ICR_INIT: u64 = 5 << 8;
const ICR_STARTUP: u64 = 6 << 8;

fn rdmsr(msr: u32) -> u64 {
    // SAFETY: ring 0; every MSR read here exists once x2APIC is present.
    unsafe { Msr::new(msr).read() }
}

fn wrmsr(msr: u32, v: u64) {
    // SAFETY: ring 0; the local APIC's registers only.
    unsafe { Msr::new(msr).write(v) }
}

/// Whether the CPU has an x2APIC (CPUID.01H:ECX bit 21; QEMU `-cpu …,+x2apic`).
pub fn has_x2apic() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

/// Puts this CPU's local APIC in x2APIC mode and software-enables it, with LINT0/LINT1 masked
/// (QEMU wires the boot CPU's LINT0 to the legacy PIC as ExtINT).
fn enable_x2apic() {
    wrmsr(
        IA32_APIC_BASE,
        rdmsr(IA32_APIC_BASE) | APIC_BASE_EN | APIC_BASE_EXTD,
    );
    wrmsr(X2APIC_LVT_LINT0, LVT_MASKED);
    wrmsr(X2APIC_LVT_LINT1, LVT_MASKED);
    wrmsr(X2APIC_SVR, SVR_ENABLE | SPURIOUS_VECTOR);
}

/// The shootdown IPI through the x2APIC's ICR: fixed delivery, physical destination (the APIC
/// ID, which QEMU numbers like the CPU index).
#[derive(Clone, Copy, Debug)]
pub struct X2Apic;

impl Ipi for X2Apic {
    fn send(&self, cpus: u64) {
        for cpu in 0..64 {
            if cpus & (1 << cpu) != 0 {
                wrmsr(X2APIC_ICR, cpu << 32 | ICR_ASSERT | SHOOTDOWN_VECTOR);
            }
        }
    }
}

/// The shootdown IPI's handler (from the IDT): runs the requests made to this CPU, then EOI.
pub fn on_ipi() {
    SHOOTDOWN.handle(<X86Irq as IrqControl>::cpu_id(), &TLB.local);
    wrmsr(X2APIC_EOI, 0);
}

core::arch::global_asm!(
    r#"
.section .text.ap_trampoline, "ax"
.code16
.global ap_tramp_start
ap_tramp_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl ap_gdt_ptr - ap_tramp_start
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl ap_tramp_cr3 - ap_tramp_start, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl $0x08, $({tramp} + ap_long - ap_tramp_start)
.code64
ap_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq ({tramp} + ap_tramp_stack - ap_tramp_start), %rsp
    movabsq $x86_ap_entry, %rax
    callq *%rax
1:  hlt
    jmp 1b
// The boot GDT (code 0x08, data 0x10), reached from real mode through this copy's pointer.
.balign 8
ap_gdt_ptr:
    .word boot_gdt_limit
    .long boot_gdt
.balign 8
.global ap_tramp_cr3
ap_tramp_cr3:
    .quad 0
.global ap_tramp_stack
ap_tramp_stack:
    .quad 0
.global ap_tramp_end
ap_tramp_end:

.section .bss
.balign 16
ap_stacks:
    .skip (4 * 16384)
.global ap_stacks_end
ap_stacks_end:
"#,
    tramp = const TRAMPOLINE,
    options(att_syntax)
);

extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
    static ap_tramp_cr3: u8;
    static ap_tramp_stack: u8;
    static ap_stacks_end: u8;
}

const AP_STACK: u64 = 16384;

static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// Copies the trampoline to [`TRAMPOLINE`]; returns the copy's CR3 and stack slots.
fn install_trampoline() -> (*mut u64, *mut u64) {
    // SAFETY: linker symbols; the copy goes to identity-mapped low RAM nothing else uses (the
    // PVH start info and memory map are elsewhere: checked by `start`; the frame pool and the
    // image start at 1 MiB).
    unsafe {
        let start = core::ptr::addr_of!(ap_tramp_start);
        let len = (core::ptr::addr_of!(ap_tramp_end) as usize - start as usize).min(4096);
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len);
        let at = |sym: *const u8| (TRAMPOLINE + (sym as u64 - start as u64)) as *mut u64;
        (
            at(core::ptr::addr_of!(ap_tramp_cr3)),
            at(core::ptr::addr_of!(ap_tramp_stack)),
        )
    }
}

/// A short busy wait (QEMU needs none between INIT and SIPI; real CPUs want ~10 ms).
fn pause(spins: u64) {
    for _ in 0..spins {
        core::hint::spin_loop();
    }
}

/// Masks both legacy PICs (their default vectors would alias CPU exceptions).
fn mask_pic() {
    // SAFETY: port writes to the 8259 mask registers (ignored where there is no PIC).
    unsafe {
        core::arch::asm!("out 0x21, al", "out 0xa1, al", in("al") 0xffu8, options(nostack, preserves_flags));
    }
}

/// Starts CPUs `1..CPUS`, one at a time; returns how many came online (none without an x2APIC
/// or when the PVH boot data sits where the trampoline goes).
fn start() -> usize {
    if !has_x2apic() || super::boot_info_pages().contains(&Some(TRAMPOLINE)) {
        return 0;
    }
    mask_pic();
    enable_x2apic();
    let (cr3, stack) = install_trampoline();
    let stacks_end = core::ptr::addr_of!(ap_stacks_end) as u64;
    for cpu in 1..CPUS as u64 {
        // SAFETY: the copy's slots, read by the AP's trampoline after the SIPI.
        unsafe {
            cr3.write_volatile(super::boot_pml4_phys());
            stack.write_volatile(stacks_end - (CPUS as u64 - cpu) * AP_STACK);
        }
        let before = ONLINE.load(Ordering::SeqCst);
        wrmsr(X2APIC_ICR, cpu << 32 | ICR_ASSERT | ICR_INIT);
        pause(10_000);
        for _ in 0..2 {
            wrmsr(
                X2APIC_ICR,
                cpu << 32 | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE >> 12),
            );
            let mut spins = 0u64;
            while ONLINE.load(Ordering::SeqCst) == before && spins < 50_000_000 {
                core::hint::spin_loop();
                spins += 1;
            }
            if ONLINE.load(Ordering::SeqCst) != before {
                break;
            }
        }
    }
    ONLINE.load(Ordering::SeqCst)
}

#[no_mangle]
extern "C" fn x86_ap_entry() -> ! {
    super::interrupts::load_idt();
    super::protect_from_user_pages();
    enable_x2apic();
    let cpu = <X86Irq as IrqControl>::cpu_id();
    // From now on this CPU may hold kernel translations: shootdowns include it.
    ACTIVE.fetch_or(1 << cpu, Ordering::SeqCst);
    ONLINE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the IDT handles the shootdown and spurious vectors; nothing else is unmasked.
    unsafe { core::arch::asm!("sti", options(nostack, preserves_flags)) };
    smp::worker::<Pc>(cpu);
    loop {
        // Parked, still answering shootdowns.
        // SAFETY: halts until the next interrupt.
        unsafe { core::arch::asm!("hlt", options(nostack, preserves_flags)) };
    }
}

impl Cpus for Pc {
    fn start() -> usize {
        start()
    }

    fn interruptible<R>(f: impl FnOnce() -> R) -> R {
        // SAFETY: only the shootdown and spurious vectors can arrive (PIC and LINT0 masked).
        unsafe { core::arch::asm!("sti", options(nostack, preserves_flags)) };
        let r = f();
        // SAFETY: back to the kernel's interrupts-off state.
        unsafe { core::arch::asm!("cli", options(nostack, preserves_flags)) };
        r
    }
}

/// The tests of this module (run last: the other CPUs stay parked afterwards).
pub const TESTS: &[Test] = &[Test {
    name: "smp::concurrent_map_unmap_and_remap",
    run: smp::concurrent_map_unmap_and_remap::<Pc>,
}];
