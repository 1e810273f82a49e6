//! The seed static API (`X86` as `Mapper`) on the host: one global instance, initialised once from
//! an `OffsetPageTable` over emulated memory, with a TLB hook that records what it is asked.
//!
//! One test function: the global is process-wide, and the order (before init, init, use,
//! re-entry, second init) is the point. Calls that a regression could deadlock run under a
//! timeout ([`common::within`]).

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use awk_paging::{
    AccessError, ActiveTable, Flags, FlagsError, FrameAllocator, InitError, MapError, Mapper,
    PageSize, PhyAddr, Tlb, TranslateError, UnmapError, VirtAddr,
};
use awk_paging_x86_64::{X86, X86_64};
use common::{within, HostFrames};

/// Records the last page flushed and counts publishes.
#[derive(Default)]
struct RecordingTlb {
    last_page: AtomicU64,
    pages: AtomicUsize,
    publishes: AtomicUsize,
}

impl Tlb for RecordingTlb {
    fn flush_page(&self, va: VirtAddr) {
        self.last_page.store(va.as_u64(), Ordering::SeqCst);
        self.pages.fetch_add(1, Ordering::SeqCst);
    }
    fn flush_all(&self) {}
    fn publish(&self) {
        self.publishes.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn seed_api_lifecycle() {
    let va = VirtAddr::new(0xffff_9000_0000_0000);
    let pa = PhyAddr::new(0x20_0000);

    // Before init: every call says so, precisely — not "invalid page table".
    assert_eq!(X86::vm_to_phy(va), None);
    assert_eq!(X86::try_vm_to_phy(va), Err(TranslateError::NotInitialized));
    assert_eq!(
        unsafe { X86::map(va, pa, Flags::RW) },
        Err(MapError::NotInitialized)
    );
    unsafe { X86::unmap(va) };
    assert_eq!(
        unsafe { X86::try_unmap(va) },
        Err(UnmapError::NotInitialized)
    );
    assert_eq!(
        X86::with_table(|t| t.root()),
        Err(AccessError::NotInitialized)
    );
    assert!(!X86::global().is_initialized());

    // Physical memory: 64 frames; the root is frame 0, built by the `x86_64` crate as a
    // bootloader would.
    let pool = HostFrames::leak(64);
    let tlb: &'static RecordingTlb = Box::leak(Box::default());
    let frames_ref: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    assert_eq!(
        unsafe { X86::init(pool.boot_table(), X86_64::new(), frames_ref, tlb) },
        Ok(())
    );
    assert!(X86::global().is_initialized());

    // Map, translate (with offset), flags through the instance, unmap.
    assert_eq!(unsafe { X86::map(va, pa, Flags::RW) }, Ok(()));
    assert_eq!(tlb.publishes.load(Ordering::SeqCst), 1, "map publishes");
    // Install filled the pool with two calls' worth (2 × 3 frames) before any lock; the map
    // took its PDPT, PD and PT from there.
    assert_eq!(pool.live(), 6, "3 tables + 3 pooled");
    assert_eq!(X86::global().pooled(), 3);
    assert_eq!(
        X86::vm_to_phy(VirtAddr::new(va.as_u64() + 0x7ff)),
        Some(PhyAddr::new(0x20_07ff))
    );
    assert_eq!(X86::try_vm_to_phy(va), Ok(pa));
    assert_eq!(
        unsafe { X86::map(va, pa, Flags::RW) },
        Err(MapError::AlreadyMapped)
    );
    let wx = Flags {
        execute: true,
        ..Flags::RW
    };
    let other = VirtAddr::new(va.as_u64() + 0x1000);
    assert_eq!(
        unsafe { X86::map(other, pa, wx) },
        Err(MapError::InvalidFlags(FlagsError::WritableAndExecutable))
    );
    assert_eq!(
        unsafe { X86::map(VirtAddr::new(va.as_u64() + 1), pa, Flags::RW) },
        Err(MapError::AddressNotAligned)
    );
    let size = X86::with_table(|t| t.translate(va).map(|t| t.size));
    assert_eq!(size, Ok(Ok(PageSize::Size4K)));

    // Re-entry: the seed API called while this thread ("CPU") holds the lock — as an interrupt
    // or page-fault handler, or a hook, would — returns an error instead of spinning forever;
    // translation takes no lock and answers.
    let live_before = pool.live();
    let inner = within("X86::vm_to_phy inside X86::with_table", move || {
        X86::with_table(|_| {
            (
                X86::vm_to_phy(va),
                X86::try_vm_to_phy(va),
                unsafe { X86::map(other, pa, Flags::RW) },
                unsafe { X86::try_unmap(va) },
                X86::with_table(|_| ()),
                X86::global().try_with(|_| ()),
                X86::global().is_initialized(),
            )
        })
    });
    assert_eq!(
        inner,
        Ok((
            Some(pa),
            Ok(pa),
            Err(MapError::Reentered),
            Err(UnmapError::Reentered),
            Err(AccessError::Reentered),
            Err(awk_paging::TryAccessError::Reentered),
            true,
        ))
    );
    // ... and changed nothing; the lock is free again.
    assert_eq!(X86::try_vm_to_phy(va), Ok(pa));
    assert_eq!(X86::try_vm_to_phy(other), Err(TranslateError::NotMapped));
    assert_eq!(
        pool.live(),
        live_before,
        "no frame taken by the refused map"
    );
    // A refused install from inside is refused as a second install, not a deadlock.
    let again = within("X86::install inside X86::with_table", move || {
        let frames: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
        X86::with_table(|_| unsafe { X86::init(pool.same_table(), X86_64::new(), frames, tlb) })
    });
    assert_eq!(again, Ok(Err(InitError::AlreadyInitialized)));

    unsafe { X86::unmap(va) };
    assert_eq!(X86::vm_to_phy(va), None);
    assert_eq!(X86::try_vm_to_phy(va), Err(TranslateError::NotMapped));
    assert_eq!(
        tlb.last_page.load(Ordering::SeqCst),
        va.as_u64(),
        "unmap flushed the page"
    );
    // The leaf's invalidation, then (its tables emptied) the reclaim's, before they are freed.
    assert_eq!(tlb.pages.load(Ordering::SeqCst), 2);
    // Unmapping again: the seed call is a documented no-op, the checked call says why.
    unsafe { X86::unmap(va) };
    assert_eq!(tlb.pages.load(Ordering::SeqCst), 2, "no flush for a no-op");
    assert_eq!(unsafe { X86::try_unmap(va) }, Err(UnmapError::NotMapped));

    // Initialised once only.
    let frames2: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    assert_eq!(
        unsafe { X86::init(pool.same_table(), X86_64::new(), frames2, tlb) },
        Err(InitError::AlreadyInitialized)
    );
    assert_eq!(X86::vm_to_phy(va), None, "the first table stays");
}
