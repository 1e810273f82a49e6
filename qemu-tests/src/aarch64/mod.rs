//! AArch64 kernel support: boot (EL2 → EL1), PL011, semihosting exit, vectors with recoverable
//! probes, and the MMU brought up with the crate's own tables. See `qemu-tests/aarch64/README.md`
//! for the boot flow, the memory layout and how to add a test.

mod boot;
pub mod console;
pub mod exceptions;
pub mod fdt;
pub mod probe;
pub mod selftest;
pub mod smp;
pub mod spaces;
pub mod user;

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use awk_paging::{
    Flags, FrameAllocator, OffsetPhysMem, PageSize, PageTable, PhyAddr, Policy, Tlb, VirtAddr,
};
use awk_paging_aarch64::{cache, mmu, Half, KernelTable, VaSize, A64};
use spin::Mutex;

/// What a probe reports (shared with the x86_64 kernel).
pub use crate::live::{Fault, FaultKind};
/// The fault probes under the names the AArch64 docs use (the same functions as
/// `crate::probe::{read, write, exec}`); decode [`crate::live::Fault::raw`] with
/// [`Abort::decode`] for the level, the access-flag status and WnR.
pub use crate::probe::{exec as probe_exec, read as probe_read, write as probe_write};
pub use console::{exit, Pl011};
pub use exceptions::{Abort, FaultStatus};

use crate::frames::PoolFrames;

extern "C" {
    static __kernel_end: u8;
}

/// RAM of QEMU virt with `-m 256M` (the test kernels'; more RAM stays unused, except by the
/// demo, which reads the size from the DTB: [`fdt::ram`]).
pub const RAM: (u64, u64) = (0x4000_0000, 0x5000_0000);
/// The PL011's 2 MiB block.
pub const UART_BLOCK: u64 = 0x0900_0000;

/// The frame pool's size (the most [`crate::frames`] holds).
pub const POOL_BYTES: u64 = 64 << 20;

static POOL_START: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The end of the kernel image (code, data, .bss with the boot stack), 4 KiB-aligned.
pub fn kernel_end() -> u64 {
    // SAFETY: linker symbol address.
    unsafe { core::ptr::from_ref(&__kernel_end) as u64 }
}

/// Sets up the frame pool (64 MiB from 16 MiB into RAM, above the image).
pub fn init() {
    let start = kernel_end().max(RAM.0 + (16 << 20)).next_multiple_of(4096);
    POOL_START.store(start, core::sync::atomic::Ordering::SeqCst);
    crate::frames::init(start, start + POOL_BYTES);
}

/// The physical range `[start, end)` the frame pool was filled from by [`init`].
pub fn frame_pool() -> (u64, u64) {
    let start = POOL_START.load(core::sync::atomic::Ordering::SeqCst);
    (start, start + POOL_BYTES)
}

/// Frames of the tables built before the MMU comes on: the lowest and the highest frame the
/// boot allocators handed out, so [`mmu_on`] can clean and invalidate them to the point of
/// coherency before the (cacheable) walker reads them.
static BOOT_LO: AtomicU64 = AtomicU64::new(u64::MAX);
static BOOT_HI: AtomicU64 = AtomicU64::new(0);

/// The frame pool, recording the range of the frames it hands out (for [`mmu_on`]'s cache
/// clean; the range only matters until the MMU is on).
#[derive(Clone, Copy, Debug, Default)]
pub struct BootFrames;

// SAFETY: delegates to the pool.
unsafe impl FrameAllocator for BootFrames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        let f = PoolFrames.allocate_frame()?;
        BOOT_LO.fetch_min(f.as_u64(), Ordering::Relaxed);
        BOOT_HI.fetch_max(f.as_u64(), Ordering::Relaxed);
        Some(f)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        // SAFETY: the caller's guarantee.
        unsafe { PoolFrames.deallocate_frame(frame) }
    }
}

static mut FRAMES: BootFrames = BootFrames;

/// The TTBR1 (upper-half) table `mmu_on` enables, for tests of the upper half.
pub type UpperTable = PageTable<A64, OffsetPhysMem, BootFrames, &'static (dyn Tlb + Sync)>;

static UPPER: Mutex<Option<UpperTable>> = Mutex::new(None);

/// Upper-half addresses: TTBR1, 48-bit VA (`0xffff_0000_0000_0000 ..`).
pub const UPPER_WINDOW: u64 = 0xffff_8000_0000_0000;

/// Lends out the TTBR1 table (`None` before [`mmu_on`]).
pub fn with_upper_table<R>(f: impl FnOnce(&mut UpperTable) -> R) -> Option<R> {
    UPPER.lock().as_mut().map(f)
}

/// Builds the kernel's identity map with the crate (RAM as write-back 2 MiB blocks, the UART
/// block as device memory) and an empty TTBR1 table for the upper half, cleans and invalidates
/// the tables' frames to the point of coherency (they were written with the MMU and caches off;
/// the walker will read them as write-back memory), turns the MMU on with [`mmu::enable`]
/// (TTBR0 = identity map, TTBR1 = upper table, 48-bit VA both), and returns the TTBR0 table for
/// the static API; the TTBR1 table is kept for [`with_upper_table`].
///
/// RAM is mapped writable *and* executable (the image's sections are not split up here), which
/// the table's policy is told to allow for those mappings only; afterwards W^X applies again.
pub fn mmu_on(tlb: &'static (dyn Tlb + Sync)) -> Result<KernelTable, &'static str> {
    // SAFETY: the only reference to FRAMES, taken once.
    let frames: &'static mut (dyn FrameAllocator + Send) =
        unsafe { &mut *core::ptr::addr_of_mut!(FRAMES) };
    let mut pt = PageTable::new(
        A64::default(),
        unsafe { OffsetPhysMem::new(0) },
        frames,
        tlb,
    )
    .map_err(|_| "root table")?;
    pt.set_policy(Policy {
        allow_write_execute: true,
        ..Policy::default()
    });
    let rwx = Flags {
        execute: true,
        write: true,
        cache: true,
        write_through: false,
        device: false,
    };
    let mut a = RAM.0;
    while a < RAM.1 {
        // SAFETY: not active yet; identity map of RAM.
        unsafe { pt.map(VirtAddr::new(a), PhyAddr::new(a), PageSize::Size2M, rwx) }
            .map_err(|_| "map RAM")?
            .flush();
        a += 0x20_0000;
    }
    // SAFETY: as above; the UART's block.
    unsafe {
        pt.map(
            VirtAddr::new(UART_BLOCK),
            PhyAddr::new(UART_BLOCK),
            PageSize::Size2M,
            Flags::DEVICE,
        )
    }
    .map_err(|_| "map UART")?
    .flush();
    // Everything mapped from now on follows W^X again.
    pt.set_policy(Policy::default());
    let upper = PageTable::new(
        A64::new(VaSize::Bits48, Half::Upper),
        // SAFETY: RAM is identity-mapped (and the MMU still off).
        unsafe { OffsetPhysMem::new(0) },
        BootFrames,
        tlb,
    )
    .map_err(|_| "TTBR1 root table")?;
    let (lo, hi) = (
        BOOT_LO.load(Ordering::Relaxed),
        BOOT_HI.load(Ordering::Relaxed),
    );
    if lo <= hi {
        // SAFETY: the MMU is off: every address is accessible, VA = PA.
        unsafe { cache::clean_invalidate_to_poc(VirtAddr::new(lo), hi + 4096 - lo) }
            .map_err(|_| "clean the tables")?;
    }
    let config =
        mmu::Config::new(pt.root(), VaSize::Bits48).with_upper(upper.root(), VaSize::Bits48);
    // SAFETY: the TTBR0 tables identity-map this code, its stack and data, and the UART; their
    // frames are clean to the PoC.
    unsafe { mmu::enable(&config) }.map_err(|_| "mmu::enable")?;
    *UPPER.lock() = Some(upper);
    Ok(pt)
}

/// The AArch64 side of the shared live tests (`crate::live`) and of the SMP test
/// (`crate::smp`): the seed `AArch64` API on the live tables.
pub struct Virt;

impl crate::live::Machine for Virt {
    type Mapper = awk_paging_aarch64::AArch64;
    const SPARE_2M: u64 = 0x4800_0000;
    const RET: u64 = 0xd65f_03c0;
    fn sync_icache(addr: u64) {
        // SAFETY: cache maintenance by VA of mapped memory; barriers.
        unsafe {
            core::arch::asm!("dc cvau, {a}", "dsb ish", "ic iallu", "dsb ish", "isb", a = in(reg) addr, options(nostack));
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Pl011, "\nkernel panic: {info}");
    exit(crate::harness::EXIT_CRASH)
}
