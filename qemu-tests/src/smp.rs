//! The SMP test both kernels run (AArch64 `-smp 4` with PSCI `CPU_ON`, x86_64 `-smp 4` with
//! INIT-SIPI-SIPI): every CPU maps and unmaps disjoint pages of the one kernel address space
//! through the locked seed API and through the instance API under the same lock while reading
//! a page they share; the boot CPU remaps another
//! shared page once every CPU holds its translation, and every CPU must then read the new frame
//! (AArch64: the seed API's broadcast `tlbi vae1is`; x86: the kernel's shootdown `Tlb`, an IPI
//! to every other CPU and a wait for their acknowledgements); at the end every frame is back in
//! the pool.
//!
//! Each architecture starts its CPUs ([`Cpus::start`]); a started CPU calls [`worker`] with its
//! index, then parks.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use awk_paging::{ActiveTable, Flags, Flush, FrameAllocator, Mapper, PageSize, PhyAddr, VirtAddr};

use crate::frames::{data_frame, free_frames, PoolFrames};
use crate::harness::Failure;
use crate::live::{self, Machine};
use crate::{ensure, ensure_eq};

/// The CPUs the test runs on (QEMU `-smp 4`).
pub const CPUS: usize = 4;

/// One architecture's way of starting its other CPUs.
pub trait Cpus: Machine {
    /// Starts CPUs `1..CPUS`, each of which runs [`worker`] with its index and then parks;
    /// returns how many came online.
    fn start() -> usize;
    /// Runs `f` with this CPU able to take the other CPUs' interrupts (x86: the shootdown IPI
    /// the others send while it waits for them).
    fn interruptible<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

const ITERATIONS: u64 = 200;

/// The page every CPU reads, remapped once by the boot CPU.
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

/// Maps `f` at `va` through the instance API, under the seed global's lock.
fn instance_map<M: ActiveTable>(va: VirtAddr, f: PhyAddr) -> bool {
    // SAFETY: this CPU's own window page and a pool frame.
    M::with_table(|t| unsafe { t.map(va, f, PageSize::Size4K, Flags::RW) }.map(Flush::flush))
        .is_ok_and(|r| r.is_ok())
}

/// Unmaps `va` through the instance API's range engine, under the seed global's lock: the
/// tables it empties are freed after the flush and after the lock-free readers' grace period.
fn instance_unmap<M: ActiveTable>(va: VirtAddr) -> bool {
    M::with_table(|t| {
        let mut g = t.gather();
        // SAFETY: nothing relies on the page any more.
        let r = unsafe { t.unmap_range(va, 0x1000, &mut g, |_| {}) };
        if g.holds_tables() {
            M::global().wait_for_readers();
        }
        t.finish(g).is_ok() && r.is_ok()
    })
    .unwrap_or(false)
}

/// The data frames one CPU cycles through: its own for the whole test, so a write through a
/// stale translation (the negative control's build) lands in one of them, never in a frame
/// the pool handed out again as a page table.
type Own = [PhyAddr; 8];

/// Takes this CPU's data frames from the pool (`None`: the pool ran dry).
fn take_own() -> Option<Own> {
    let mut own = [PhyAddr::ZERO; 8];
    for f in &mut own {
        *f = data_frame()?;
    }
    Some(own)
}

/// Returns this CPU's data frames to the pool.
fn give_back(own: &Own) {
    for &f in own {
        // SAFETY: unmapped and flushed by the last churn round that used it.
        unsafe { PoolFrames.deallocate_frame(f) };
    }
}

/// Maps, writes, reads back and unmaps this CPU's private pages `ITERATIONS / 2` times,
/// reading the stable page in between: even rounds through the seed API (`map`/`unmap`), odd
/// rounds through the instance API under the same lock (`with_table`: `map`, `unmap_range`).
/// The frame behind a page changes from one visit to the next.
fn churn<M: Mapper + ActiveTable>(cpu: usize, from: u64, own: &Own) {
    for i in from..from + ITERATIONS / 2 {
        let f = own[((i + i / 8) % 8) as usize];
        let va = VirtAddr::new(private(cpu, i));
        let instance = i % 2 == 1;
        let mapped = if instance {
            instance_map::<M>(va, f)
        } else {
            // SAFETY: this CPU's own window page and its own frame.
            unsafe { M::map(va, f, Flags::RW) }.is_ok()
        };
        if !mapped {
            error(2, cpu);
            continue;
        }
        let pattern = (cpu as u64) << 32 | i;
        // SAFETY: just mapped, this CPU's own.
        unsafe { (va.as_u64() as *mut u64).write_volatile(pattern) };
        if read(va.as_u64()) != pattern || M::vm_to_phy(va) != Some(f) {
            error(3, cpu);
        }
        if read(stable()) != 0x57ab1e {
            error(4, cpu);
        }
        if instance {
            if !instance_unmap::<M>(va) {
                error(6, cpu);
            }
        } else {
            // SAFETY: nothing relies on the page any more.
            unsafe { M::unmap(va) };
        }
    }
}

/// What a started CPU runs (with its index): its half of the test.
pub fn worker<M: Machine>(cpu: usize) {
    while PHASE.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    let Some(own) = take_own() else {
        error(1, cpu);
        DONE.fetch_add(1, Ordering::SeqCst);
        READY.fetch_add(1, Ordering::SeqCst);
        return;
    };
    churn::<M::Mapper>(cpu, 0, &own);
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
    churn::<M::Mapper>(cpu, ITERATIONS / 2, &own);
    give_back(&own);
    DONE.fetch_add(1, Ordering::SeqCst);
}

/// Spins until `counter` reaches `n` (false after about a billion spins).
pub fn wait_for(counter: &AtomicUsize, n: usize) -> bool {
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

/// Frames not in use: the pool's free ones, and the ones the seed API's global table holds in
/// advance (its frame pool, filled before it takes its lock).
fn unused_frames<M: Machine>() -> usize {
    free_frames() + M::Mapper::global().pooled()
}

/// The test (run last: the started CPUs stay parked afterwards).
pub fn concurrent_map_unmap_and_remap<M: Cpus>() -> Result<(), Failure> {
    let before = unused_frames::<M>();
    let (old, new, st) = (live::frame()?, live::frame()?, live::frame()?);
    // SAFETY: pool frames, identity-mapped.
    unsafe {
        (old.as_u64() as *mut u64).write_volatile(1);
        (new.as_u64() as *mut u64).write_volatile(2);
        (st.as_u64() as *mut u64).write_volatile(0x57ab1e);
    }
    live::map::<M>(VirtAddr::new(shared()), old, Flags::RO)?;
    live::map::<M>(VirtAddr::new(stable()), st, Flags::RO)?;
    let online = M::start();
    ensure_eq!(online, CPUS - 1, "other CPUs online");
    M::interruptible(|| -> Result<(), Failure> {
        let own = take_own().ok_or_else(|| Failure::new(format_args!("frames")))?;
        PHASE.store(1, Ordering::SeqCst);
        churn::<M::Mapper>(0, 0, &own);
        ensure!(
            wait_for(&READY, CPUS - 1),
            "other CPUs read the shared page"
        );
        // The remap: unmap (invalidated on every CPU), map the new frame.
        live::unmap::<M>(VirtAddr::new(shared()));
        live::map::<M>(VirtAddr::new(shared()), new, Flags::RO)?;
        PHASE.store(2, Ordering::SeqCst);
        churn::<M::Mapper>(0, ITERATIONS / 2, &own);
        give_back(&own);
        ensure!(wait_for(&DONE, CPUS - 1), "other CPUs finished");
        Ok(())
    })?;
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
    live::unmap::<M>(VirtAddr::new(shared()));
    live::unmap::<M>(VirtAddr::new(stable()));
    for f in [old, new, st] {
        // SAFETY: unmapped and flushed.
        unsafe { PoolFrames.deallocate_frame(f) };
    }
    ensure_eq!(
        unused_frames::<M>(),
        before,
        "every frame back in the pool (tables reclaimed)"
    );
    Ok(())
}
