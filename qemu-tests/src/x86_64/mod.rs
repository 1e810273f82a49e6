//! x86_64 kernel support: PVH boot, COM1, isa-debug-exit, GDT/TSS with an IST stack for #DF,
//! exceptions with recoverable probes, the physical memory layout and the frame pool.
//!
//! Physical memory (QEMU `-M microvm -m 256M`), all identity-mapped (`PHYS_OFFSET == 0`) by the
//! boot tables with 2 MiB pages over `0 .. 1 GiB`:
//!
//! | range                   | use                                                        |
//! |-------------------------|------------------------------------------------------------|
//! | `0 .. 1 MiB`            | firmware area, PVH `hvm_start_info` and memory map          |
//! | `1 MiB .. kernel_end()` | kernel image; boot PML4/PDPT/PD, stacks, GDT/TSS inside it  |
//! | [`frame_pool()`]        | frame pool (`16 MiB .. 80 MiB`), `crate::frames`            |
//! | `128 MiB .. +2 MiB`     | the live tests' spare 2 MiB region (`Machine::SPARE_2M`)    |
//! | [`INFRA_RO_2M`], [`INFRA_NX_2M`] | the infrastructure self-tests' 2 MiB regions (160, 162 MiB) |
//! | rest up to [`ram_end()`] | unused RAM                                                |
//!
//! Virtual addresses outside `0 .. 1 GiB` are unmapped at boot; every PML4 slot except 0 is free
//! for tests (the shared live tests use `0x0000_2000_0000_0000`, the conformance suite's
//! never-activated tables `0x0000_1000_0000_0000`, the infrastructure tests read
//! `0x0000_7000_0000_0000` as "never mapped", the demo maps in the upper half).

mod boot;
pub mod console;
pub mod gdt;
pub mod interrupts;
pub mod probe;
pub mod selftest;
pub mod smp;
pub mod spaces;
pub mod user;

use core::fmt::Write;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

/// A fault recorded by a probe, and its classification (shared with the AArch64 kernel).
pub use crate::live::{Fault, FaultKind};
pub use crate::probe::{exec as probe_exec, read as probe_read, write as probe_write};
pub use console::{exit, Com1};

/// Physical memory is identity-mapped: virtual = physical + `PHYS_OFFSET`.
pub const PHYS_OFFSET: u64 = 0;
/// The boot identity map covers `0 .. IDENTITY_MAP_END` with 2 MiB pages (RWX, write-back).
pub const IDENTITY_MAP_END: u64 = 1 << 30;
/// Where the kernel image is linked and loaded.
pub const KERNEL_BASE: u64 = 0x10_0000;
/// The frame pool starts here (or at the end of the image, if that is higher).
pub const FRAME_POOL_START: u64 = 16 << 20;
/// The frame pool's size limit (`crate::frames` holds at most this much).
pub const FRAME_POOL_MAX: u64 = 64 << 20;
/// A 2 MiB identity-mapped region only the infrastructure self-tests touch (made read-only).
pub const INFRA_RO_2M: u64 = 0x0a00_0000;
/// A 2 MiB identity-mapped region only the infrastructure self-tests touch (made no-execute).
pub const INFRA_NX_2M: u64 = 0x0a20_0000;
/// A canonical lower-half address no table maps (PML4 slot 224).
pub const NEVER_MAPPED: u64 = 0x0000_7000_0000_0000;
/// Assumed RAM end when the PVH memory map is missing.
const DEFAULT_RAM_END: u64 = 256 << 20;

extern "C" {
    static boot_pml4: u8;
    static __kernel_end: u8;
    static pvh_start_info: u64;
}

/// Physical address of the boot PML4 (the active CR3 after boot; identity-mapped).
pub fn boot_pml4_phys() -> u64 {
    // SAFETY: taking a linker symbol's address.
    unsafe { core::ptr::from_ref(&boot_pml4) as u64 }
}

/// The page-table base in CR3 (flags masked off).
pub fn active_cr3() -> u64 {
    x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64()
}

/// The first byte after the kernel image (including .bss), 4 KiB-aligned upwards.
pub fn kernel_end() -> u64 {
    // SAFETY: linker symbol address.
    unsafe { core::ptr::from_ref(&__kernel_end) as u64 }.next_multiple_of(4096)
}

/// Invalidates the TLB entry for `addr` on this CPU.
pub fn flush(addr: u64) {
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(addr));
}

/// The live 2 MiB leaf entry mapping `addr` in the active tables, if `addr` is mapped by a
/// 2 MiB page (as everything in the boot identity map is, unless a test replaced it). Edit it
/// with volatile accesses and [`flush`] afterwards.
pub fn boot_2m_entry(addr: u64) -> Option<*mut u64> {
    const PRESENT: u64 = 1;
    const HUGE: u64 = 1 << 7;
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    let mut table = active_cr3() + PHYS_OFFSET;
    for level in [3u64, 2, 1] {
        let entry = (table + ((addr >> (12 + 9 * level)) & 0x1ff) * 8) as *mut u64;
        // SAFETY: page tables are identity-mapped RAM.
        let e = unsafe { entry.read_volatile() };
        if e & PRESENT == 0 {
            return None;
        }
        if level == 1 {
            return (e & HUGE != 0).then_some(entry);
        }
        if e & HUGE != 0 {
            return None;
        }
        table = (e & ADDR) + PHYS_OFFSET;
    }
    None
}

/// PVH `hvm_start_info` (version 1), as far as we read it.
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// One entry of the PVH memory map (E820 layout).
#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const PVH_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

/// Calls `f(start, end)` for each RAM range of the PVH memory map; returns `false` (calling
/// nothing) when QEMU passed no usable start info.
pub fn for_each_ram_region(mut f: impl FnMut(u64, u64)) -> bool {
    // SAFETY: written once by the boot code before Rust runs.
    let info = unsafe { core::ptr::addr_of!(pvh_start_info).read_volatile() };
    if info == 0 || info + size_of::<StartInfo>() as u64 > IDENTITY_MAP_END {
        return false;
    }
    // SAFETY: QEMU's PVH loader put the start info in identity-mapped low memory.
    let si = unsafe { &*((info + PHYS_OFFSET) as *const StartInfo) };
    if si.magic != PVH_MAGIC || si.version < 1 || si.memmap_paddr == 0 {
        return false;
    }
    let map = (si.memmap_paddr + PHYS_OFFSET) as *const MemmapEntry;
    for i in 0..si.memmap_entries as usize {
        // SAFETY: `memmap_entries` entries at `memmap_paddr`, identity-mapped.
        let e = unsafe { &*map.add(i) };
        if e.kind == E820_RAM {
            f(e.addr, e.addr + e.size);
        }
    }
    true
}

/// The physical pages QEMU's PVH boot data occupies: the `hvm_start_info` and the memory map
/// (`None` for either when it is absent). The SMP trampoline must not overwrite them.
pub fn boot_info_pages() -> [Option<u64>; 2] {
    // SAFETY: written once by the boot code before Rust runs.
    let info = unsafe { core::ptr::addr_of!(pvh_start_info).read_volatile() };
    if info == 0 || info + size_of::<StartInfo>() as u64 > IDENTITY_MAP_END {
        return [None, None];
    }
    // SAFETY: QEMU's PVH loader put the start info in identity-mapped low memory.
    let si = unsafe { &*((info + PHYS_OFFSET) as *const StartInfo) };
    let map = (si.magic == PVH_MAGIC && si.memmap_paddr != 0).then_some(si.memmap_paddr & !0xfff);
    [Some(info & !0xfff), map]
}

/// The end of the RAM range that contains [`FRAME_POOL_START`] (256 MiB if there is no PVH
/// memory map).
pub fn ram_end() -> u64 {
    let mut end = None;
    let found = for_each_ram_region(|s, e| {
        if (s..e).contains(&FRAME_POOL_START) {
            end = Some(e);
        }
    });
    if found {
        end.unwrap_or(0)
    } else {
        DEFAULT_RAM_END
    }
}

static POOL_START: AtomicU64 = AtomicU64::new(0);
static POOL_END: AtomicU64 = AtomicU64::new(0);

/// The physical range `init` handed to the frame pool (`crate::frames`).
pub fn frame_pool() -> Range<u64> {
    POOL_START.load(Ordering::SeqCst)..POOL_END.load(Ordering::SeqCst)
}

/// CR4.SMEP (bit 20): no kernel fetch from user pages.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP (bit 21): no kernel access to user pages outside `stac` … `clac`.
pub const CR4_SMAP: u64 = 1 << 21;

/// Sets CR4.SMEP and CR4.SMAP on this CPU where CPUID reports them (QEMU:
/// `-cpu …,+smep,+smap`): the kernel never executes user pages and touches user memory only
/// between `stac` and `clac`.
pub fn protect_from_user_pages() {
    let l7 = core::arch::x86_64::__cpuid_count(7, 0);
    let smep = if l7.ebx & (1 << 7) != 0 { CR4_SMEP } else { 0 };
    let smap = if l7.ebx & (1 << 20) != 0 { CR4_SMAP } else { 0 };
    use x86_64::registers::control::Cr4;
    // SAFETY: ring 0; SMEP/SMAP only add checks on user pages, which the kernel does not
    // touch outside `stac`/`clac`.
    unsafe { Cr4::write_raw(Cr4::read_raw() | smep | smap) };
}

/// Sets up the GDT/TSS, the IDT, SMEP/SMAP ([`protect_from_user_pages`]) and the frame pool
/// (`max(16 MiB, kernel end)`, at most 64 MiB, clipped to RAM).
pub fn init() {
    interrupts::init();
    protect_from_user_pages();
    let start = kernel_end().max(FRAME_POOL_START);
    let end = (start + FRAME_POOL_MAX).min(ram_end() & !0xfff).max(start);
    POOL_START.store(start, Ordering::SeqCst);
    POOL_END.store(end, Ordering::SeqCst);
    crate::frames::init(start, end);
}

/// The x86_64 side of the shared live tests (`crate::live`) and of the SMP test
/// (`crate::smp`): the seed `X86` API on the live tables.
pub struct Pc;

impl crate::live::Machine for Pc {
    type Mapper = awk_paging_x86_64::X86;
    const SPARE_2M: u64 = 0x0800_0000;
    const RET: u64 = 0xc3;
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Com1, "\nkernel panic: {info}");
    exit(crate::harness::EXIT_CRASH)
}
