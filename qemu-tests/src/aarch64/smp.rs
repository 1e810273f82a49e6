//! SMP on the AArch64 test kernel (`-smp 4`): CPUs 1..=3 started with PSCI `CPU_ON` (HVC
//! conduit when the kernel was entered at EL1, SMC when QEMU emulates EL2: `virtualization=on`),
//! each entering `smp_secondary_entry` with the MMU off (at EL2 it first drops to EL1 as the
//! boot CPU did), taking a stack of its own, loading the registers the primary's MMU bring-up
//! wrote (MAIR, TCR, TTBR0/1, then a local TLB invalidation, then SCTLR) and the vectors.
//!
//! The test itself is shared with the x86_64 kernel ([`crate::smp`]); here the seed API's flush
//! is a broadcast `tlbi vae1is`, so no CPU interrupts another.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1};
use awk_paging::VirtAddr;
use awk_paging_aarch64::cache;

use super::Virt;
use crate::harness::Test;
use crate::smp::{self, wait_for, Cpus, CPUS};

core::arch::global_asm!(
    r#"
.section .text
.global smp_secondary_entry
smp_secondary_entry:
    mov x19, x0
    mrs x1, CurrentEL
    lsr x1, x1, #2
    cmp x1, #2
    b.ne 1f
    mov x1, #(1 << 31)
    msr hcr_el2, x1
    mov x1, #3
    msr cnthctl_el2, x1
    msr cntvoff_el2, xzr
    ldr x1, =0x30d00800
    msr sctlr_el1, x1
    mov x1, #0x3c5
    msr spsr_el2, x1
    adr x1, 1f
    msr elr_el2, x1
    eret
1:  ldr x1, =smp_stacks
    add x2, x19, #1
    lsl x2, x2, #14
    add x1, x1, x2
    mov sp, x1
    mov x1, #(3 << 20)
    msr cpacr_el1, x1
    isb
    ldr x1, =exception_vectors
    msr vbar_el1, x1
    ldr x1, =SMP_MMU_REGS
    ldr x2, [x1, #0]
    msr mair_el1, x2
    ldr x2, [x1, #8]
    msr tcr_el1, x2
    ldr x2, [x1, #16]
    msr ttbr0_el1, x2
    ldr x2, [x1, #24]
    msr ttbr1_el1, x2
    isb
    tlbi vmalle1
    dsb nsh
    isb
    ldr x2, [x1, #32]
    msr sctlr_el1, x2
    isb
    mov x0, x19
    bl smp_secondary_main
2:  wfe
    b 2b

.section .bss
.balign 16
smp_stacks:
    .skip (4 * 16384)
"#
);

extern "C" {
    fn smp_secondary_entry();
}

/// MAIR, TCR, TTBR0, TTBR1, SCTLR for the secondaries (read with the MMU off: cleaned to the
/// point of coherency first).
#[no_mangle]
static SMP_MMU_REGS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

static BOOT_EL: AtomicU64 = AtomicU64::new(1);
static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// Records the exception level the kernel was entered at (it selects the PSCI conduit).
pub fn set_boot_el(el: u64) {
    BOOT_EL.store(el, Ordering::SeqCst);
}

/// PSCI `CPU_ON` (SMC Calling Convention): 0 on success.
fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    let r: i64;
    // SAFETY: a PSCI call; QEMU's firmware emulation starts the CPU at `entry`.
    unsafe {
        if BOOT_EL.load(Ordering::SeqCst) == 2 {
            core::arch::asm!("smc #0", inout("x0") 0xc400_0003u64 => r, in("x1") mpidr, in("x2") entry, in("x3") context, options(nostack));
        } else {
            core::arch::asm!("hvc #0", inout("x0") 0xc400_0003u64 => r, in("x1") mpidr, in("x2") entry, in("x3") context, options(nostack));
        }
    }
    r
}

/// Starts CPUs `1..CPUS` (they run [`smp::worker`]); returns how many came online.
fn start() -> usize {
    let regs = [
        MAIR_EL1.get(),
        TCR_EL1.get(),
        TTBR0_EL1.get(),
        TTBR1_EL1.get(),
        SCTLR_EL1.get(),
    ];
    for (slot, v) in SMP_MMU_REGS.iter().zip(regs) {
        slot.store(v, Ordering::SeqCst);
    }
    // SAFETY: cache maintenance of mapped data.
    let _ = unsafe {
        cache::clean_invalidate_to_poc(
            VirtAddr::new(SMP_MMU_REGS.as_ptr() as u64),
            core::mem::size_of_val(&SMP_MMU_REGS) as u64,
        )
    };
    let mut started = 0;
    for cpu in 1..CPUS {
        if cpu_on(
            cpu as u64,
            smp_secondary_entry as *const () as u64,
            cpu as u64,
        ) == 0
        {
            started += 1;
        }
    }
    wait_for(&ONLINE, started);
    ONLINE.load(Ordering::SeqCst)
}

#[no_mangle]
extern "C" fn smp_secondary_main(cpu: u64) -> ! {
    // SAFETY: EL1; this CPU touches no user memory (PAN on where the CPU has it, as on CPU 0).
    let _ = unsafe { awk_paging_aarch64::pan::enable() };
    ONLINE.fetch_add(1, Ordering::SeqCst);
    smp::worker::<Virt>(cpu as usize);
    loop {
        aarch64_cpu::asm::wfe();
    }
}

impl Cpus for Virt {
    fn start() -> usize {
        start()
    }
}

/// The tests of this module (run last: the secondaries stay parked afterwards).
pub const TESTS: &[Test] = &[Test {
    name: "smp::concurrent_map_unmap_and_remap",
    run: smp::concurrent_map_unmap_and_remap::<Virt>,
}];
