//! The seed static API (`X86::map`/`vm_to_phy`/`unmap`, `AArch64::...`): a global table behind an
//! interrupt-masking lock (on the host: `HostIrq`, nothing to mask, a per-thread CPU id), a
//! `dyn FrameAllocator` and a `dyn Tlb` (here a no-op), against the instance API of the same
//! regime. The globals can be installed once per process: [`install`] runs before the first
//! round, and every round leaves the global table as it found it (unmap reclaims the tables).
//!
//! `unmap` is timed through `try_unmap`, which is what `unmap` runs (an `unmap_range` of the page
//! plus `finish`, which also frees the tables it emptied) but returns the result to check.
//! `map` takes its table frames from a pool the global fills before taking its lock, and
//! `unmap` frees into it; each round empties the pool at the end (`teardown`). The
//! seed API has no protect: its protect row is `with_table` + `update_flags` (the lock plus the
//! instance call).

use awk_paging::{
    ActiveTable, Flags, FrameAllocator, Mapper, NoTlb, PageSize, PageTable, PhyAddr, Tlb, VirtAddr,
};
use awk_paging_aarch64::{AArch64, A64};
use awk_paging_x86_64::{X86, X86_64};

use crate::arena::{self, ArenaFrames};
use crate::subject::{Size, Subject};

static NO_TLB: NoTlb = NoTlb;

/// Installs both globals over the arena (once per process).
pub fn install() {
    fn frames() -> &'static mut (dyn FrameAllocator + Send) {
        Box::leak(Box::new(ArenaFrames))
    }
    let tlb: &'static (dyn Tlb + Sync) = &NO_TLB;
    let x86 = PageTable::new(X86_64::new(), arena::phys(), frames(), tlb).expect("root");
    X86::install(x86).expect("first install");
    let a64 = PageTable::new(A64::default(), arena::phys(), frames(), tlb).expect("root");
    AArch64::install(a64).expect("first install");
    empty_pool::<X86>();
    empty_pool::<AArch64>();
}

/// Gives every frame the global table holds in advance (its pool, filled before the lock) back
/// to the arena, so that a round ends with the arena as it began.
fn empty_pool<B: ActiveTable>() {
    B::with_table(|t| t.frames_mut().trim(0)).expect("installed");
}

/// The seed API of backend `B` (4 KiB pages only).
pub struct Seed<B>(core::marker::PhantomData<B>);

impl<B: ActiveTable> Subject for Seed<B> {
    fn new() -> Self {
        assert!(B::global().is_initialized(), "seed::install first");
        Seed(core::marker::PhantomData)
    }

    #[inline(always)]
    fn map(&mut self, va: u64, pa: u64, size: Size) -> Option<u64> {
        debug_assert_eq!(size, Size::K4);
        // SAFETY: the table is never active; the frames mapped are never accessed.
        unsafe { B::map(VirtAddr::new(va), PhyAddr::new(pa), Flags::RW) }.ok()?;
        Some(1)
    }

    #[inline(always)]
    fn translate(&mut self, va: u64, _size: Size) -> Option<u64> {
        B::vm_to_phy(VirtAddr::new(va)).map(PhyAddr::as_u64)
    }

    #[inline(always)]
    fn protect(&mut self, va: u64, _size: Size) -> Option<u64> {
        let va = VirtAddr::new(va);
        // SAFETY: as for map.
        let r = B::with_table(|t| unsafe { t.update_flags(va, PageSize::Size4K, Flags::RO) });
        r.ok()?.ok()?.flush();
        Some(1)
    }

    #[inline(always)]
    fn unmap(&mut self, va: u64, _size: Size) -> Option<u64> {
        // SAFETY: as for map.
        let gone = unsafe { B::try_unmap(VirtAddr::new(va)) }.ok()?;
        Some(gone.frame.as_u64())
    }

    fn teardown(self) {
        // The unmaps freed every table but the global root, which stays for the next round,
        // into the table's pool (frames taken before the lock); it goes back to the arena.
        empty_pool::<B>();
    }
}
