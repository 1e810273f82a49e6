//! SMP on the AArch64 test kernel (`-smp 4`): CPUs 1..=3 started with PSCI `CPU_ON` (HVC
//! conduit when the kernel was entered at EL1, SMC when QEMU emulates EL2: `virtualization=on`),
//! each entering `smp_secondary_entry` with the MMU off (at EL2 it first drops to EL1 as the
//! boot CPU did), taking a stack of its own, loading the registers the primary's MMU bring-up
//! wrote (MAIR, TCR, TTBR0/1, then a local TLB invalidation, then SCTLR) and the vectors.
//!
//! The test: all four CPUs map and unmap disjoint pages of the one address space through the
//! locked seed `AArch64` API while reading a page they share; the primary remaps another shared
//! page once every CPU holds its translation, and every CPU must then read the new frame (the
//! seed API's flush is a broadcast `tlbi vae1is`); at the end every frame is back in the pool.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, MAIR_EL1, SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1};
use awk_paging::{ActiveTable, Flags, FrameAllocator, Mapper, VirtAddr};
use awk_paging_aarch64::{cache, AArch64};

use crate::frames::{data_frame, free_frames, PoolFrames};
use crate::harness::{Failure, Test};
use crate::live;
use crate::{ensure, ensure_eq};

/// The CPUs the test runs on (QEMU `-smp 4`).
pub const CPUS: usize = 4;

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

/// Starts CPUs `1..CPUS` (they run [`worker`]); returns how many came online.
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
    ONLINE.fetch_add(1, Ordering::SeqCst);
    worker(cpu as usize);
    loop {
        aarch64_cpu::asm::wfe();
    }
}

const ITERATIONS: u64 = 200;

/// The page every CPU reads, remapped once by the primary.
fn shared() -> u64 {
    live::gib(6).as_u64() + live::QUIET_PAGE * 0x1000
}

/// A page every CPU reads and nobody changes.
fn stable() -> u64 {
    shared() + 0x1000
}

/// CPU `cpu`'s private pages: a 2 MiB region of its own.
fn private(cpu: usize, i: u64) -> u64 {
    live::gib(7).as_u64() + cpu as u64 * 0x20_0000 + (i % 8) * 0x1000
}

/// 0: wait; 1: the shared page maps the old frame; 2: remapped.
static PHASE: AtomicU64 = AtomicU64::new(0);
static READY: AtomicUsize = AtomicUsize::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);
static ERRORS: AtomicUsize = AtomicUsize::new(0);
static STALE: AtomicUsize = AtomicUsize::new(0);
static FIRST_ERROR: AtomicU64 = AtomicU64::new(0);

fn error(kind: u64, cpu: usize) {
    ERRORS.fetch_add(1, Ordering::SeqCst);
    let _ = FIRST_ERROR.compare_exchange(
        0,
        kind << 56 | cpu as u64,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
}

fn read(va: u64) -> u64 {
    // SAFETY: mapped for the whole phase that reads it.
    unsafe { (va as *const u64).read_volatile() }
}

/// Maps, writes, reads back and unmaps this CPU's private pages `ITERATIONS / 2` times,
/// reading the stable page in between.
fn churn(cpu: usize, from: u64) {
    for i in from..from + ITERATIONS / 2 {
        let Some(f) = data_frame() else {
            error(1, cpu);
            return;
        };
        let va = VirtAddr::new(private(cpu, i));
        // SAFETY: this CPU's own window page and a pool frame.
        if unsafe { AArch64::map(va, f, Flags::RW) }.is_err() {
            error(2, cpu);
            // SAFETY: never mapped.
            unsafe { PoolFrames.deallocate_frame(f) };
            continue;
        }
        let pattern = (cpu as u64) << 32 | i;
        // SAFETY: just mapped, this CPU's own.
        unsafe { (va.as_u64() as *mut u64).write_volatile(pattern) };
        if read(va.as_u64()) != pattern || AArch64::vm_to_phy(va) != Some(f) {
            error(3, cpu);
        }
        if read(stable()) != 0x57ab1e {
            error(4, cpu);
        }
        // SAFETY: nothing relies on the page any more.
        unsafe { AArch64::unmap(va) };
        // SAFETY: unmapped and flushed (the seed unmap flushes before it returns).
        unsafe { PoolFrames.deallocate_frame(f) };
    }
}

fn worker(cpu: usize) {
    while PHASE.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    churn(cpu, 0);
    // Cache the shared page's translation, then wait for the remap.
    if read(shared()) != 1 {
        error(5, cpu);
    }
    READY.fetch_add(1, Ordering::SeqCst);
    while PHASE.load(Ordering::SeqCst) != 2 {
        core::hint::spin_loop();
    }
    if read(shared()) != 2 {
        STALE.fetch_add(1, Ordering::SeqCst);
    }
    churn(cpu, ITERATIONS / 2);
    DONE.fetch_add(1, Ordering::SeqCst);
}

fn wait_for(counter: &AtomicUsize, n: usize) -> bool {
    let mut spins = 0u64;
    while counter.load(Ordering::SeqCst) < n {
        core::hint::spin_loop();
        spins += 1;
        if spins > 1_000_000_000 {
            return false;
        }
    }
    true
}

struct Virt;

impl live::Machine for Virt {
    type Mapper = AArch64;
    const SPARE_2M: u64 = 0x4800_0000;
    const RET: u64 = 0xd65f_03c0;
}

/// Frames not in use: the pool's free ones, and the ones the seed API's global table holds in
/// advance (its frame pool, filled before it takes its lock).
fn unused_frames() -> usize {
    free_frames() + AArch64::global().pooled()
}

fn concurrent_map_unmap_and_remap() -> Result<(), Failure> {
    let before = unused_frames();
    let (old, new, st) = (live::frame()?, live::frame()?, live::frame()?);
    // SAFETY: pool frames, identity-mapped.
    unsafe {
        (old.as_u64() as *mut u64).write_volatile(1);
        (new.as_u64() as *mut u64).write_volatile(2);
        (st.as_u64() as *mut u64).write_volatile(0x57ab1e);
    }
    live::map::<Virt>(VirtAddr::new(shared()), old, Flags::RO)?;
    live::map::<Virt>(VirtAddr::new(stable()), st, Flags::RO)?;
    let online = start();
    ensure_eq!(online, CPUS - 1, "secondary CPUs online");
    PHASE.store(1, Ordering::SeqCst);
    churn(0, 0);
    ensure!(
        wait_for(&READY, CPUS - 1),
        "secondaries read the shared page"
    );
    // The remap: unmap (invalidated on every CPU: tlbi vae1is), map the new frame.
    live::unmap::<Virt>(VirtAddr::new(shared()));
    live::map::<Virt>(VirtAddr::new(shared()), new, Flags::RO)?;
    PHASE.store(2, Ordering::SeqCst);
    churn(0, ITERATIONS / 2);
    ensure!(wait_for(&DONE, CPUS - 1), "secondaries finished");
    ensure_eq!(
        STALE.load(Ordering::SeqCst),
        0,
        "CPUs still reading the old frame after the remap's flush"
    );
    ensure_eq!(
        (
            ERRORS.load(Ordering::SeqCst),
            FIRST_ERROR.load(Ordering::SeqCst)
        ),
        (0, 0),
        "errors (first: kind << 56 | cpu)"
    );
    live::unmap::<Virt>(VirtAddr::new(shared()));
    live::unmap::<Virt>(VirtAddr::new(stable()));
    for f in [old, new, st] {
        // SAFETY: unmapped and flushed.
        unsafe { PoolFrames.deallocate_frame(f) };
    }
    ensure_eq!(
        unused_frames(),
        before,
        "every frame back in the pool (tables reclaimed)"
    );
    Ok(())
}

/// The tests of this module (run last: the secondaries stay parked afterwards).
pub const TESTS: &[Test] = &[Test {
    name: "smp::concurrent_map_unmap_and_remap",
    run: concurrent_map_unmap_and_remap,
}];
