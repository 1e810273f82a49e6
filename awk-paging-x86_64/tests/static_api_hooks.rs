//! Hooks that call back into the seed API while it holds its lock: a frame allocator that maps
//! (or translates) its own memory from `allocate_frame`, and a TLB hook that translates from its
//! flush. Before the fix these spun forever on the global's lock; now every callback gets the
//! re-entry error at once, the outer operation completes, and the callbacks changed nothing.
//!
//! One test function (the global is process-wide); every step runs under a timeout.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use awk_paging::{
    AccessError, ActiveTable, Flags, FrameAllocator, MapError, Mapper, PhyAddr, Tlb,
    TranslateError, UnmapError, VirtAddr,
};
use awk_paging_x86_64::{X86, X86_64};
use common::{within, HostFrames};

/// Mapped before the hooks start calling back: a translation the callbacks would see if they got
/// through.
const PROBE: VirtAddr = VirtAddr::new(0xffff_9000_0000_0000);
/// What the allocator's callback tries to map.
const INNER: VirtAddr = VirtAddr::new(0xffff_9000_0000_1000);
const INNER_PA: PhyAddr = PhyAddr::new(0x30_0000);

/// Whether the hooks call back.
static CALL_BACK: AtomicBool = AtomicBool::new(false);
/// How many more frames the allocator hands out (after calling back) before it refuses.
static FRAMES_LEFT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// What one callback got from each seed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    vm_to_phy: Option<PhyAddr>,
    try_vm_to_phy: Result<PhyAddr, TranslateError>,
    map: Result<(), MapError>,
    try_unmap: Result<(), UnmapError>,
    with_table: Result<(), AccessError>,
}

/// What every callback must see while the lock is held by its own thread.
const REFUSED: Seen = Seen {
    vm_to_phy: None,
    try_vm_to_phy: Err(TranslateError::Reentered),
    map: Err(MapError::Reentered),
    try_unmap: Err(UnmapError::Reentered),
    with_table: Err(AccessError::Reentered),
};

static FROM_ALLOC: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
static FROM_FREE: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
static FROM_TLB: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// Every seed call once, from inside a hook.
fn call_back() -> Seen {
    Seen {
        vm_to_phy: X86::vm_to_phy(PROBE),
        try_vm_to_phy: X86::try_vm_to_phy(PROBE),
        // SAFETY: a test address over a test frame; refused anyway.
        map: unsafe { X86::map(INNER, INNER_PA, Flags::RW) },
        // SAFETY: as above.
        try_unmap: unsafe { X86::try_unmap(PROBE) }.map(|_| ()),
        with_table: X86::with_table(|_| ()),
    }
}

/// An allocator that, like one that maps its own memory, calls the seed API from inside.
struct ReentrantFrames(&'static HostFrames);

unsafe impl FrameAllocator for ReentrantFrames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        if CALL_BACK.load(Ordering::SeqCst) {
            FROM_ALLOC.lock().unwrap().push(call_back());
            let left = FRAMES_LEFT.load(Ordering::SeqCst);
            if left == 0 {
                return None;
            }
            FRAMES_LEFT.store(left - 1, Ordering::SeqCst);
        }
        self.0.allocate_frame()
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        if CALL_BACK.load(Ordering::SeqCst) {
            FROM_FREE.lock().unwrap().push(call_back());
        }
        // SAFETY: forwarded.
        unsafe { self.0.deallocate_frame(frame) }
    }
}

/// A TLB hook that translates (as a shootdown path that looks up a page might).
struct ReentrantTlb;

impl Tlb for ReentrantTlb {
    fn flush_page(&self, _va: VirtAddr) {
        if CALL_BACK.load(Ordering::SeqCst) {
            FROM_TLB.lock().unwrap().push(call_back());
        }
    }
    fn flush_all(&self) {}
    fn publish(&self) {
        self.flush_page(VirtAddr::new(0));
    }
}

#[test]
fn hooks_calling_back_get_errors_not_deadlocks() {
    let pool = HostFrames::leak(64);
    let frames: &'static mut (dyn FrameAllocator + Send) =
        Box::leak(Box::new(ReentrantFrames(pool)));
    assert_eq!(
        unsafe { X86::init(pool.boot_table(), X86_64::new(), frames, &ReentrantTlb) },
        Ok(())
    );
    assert_eq!(
        unsafe { X86::map(PROBE, PhyAddr::new(0x20_0000), Flags::RW) },
        Ok(())
    );
    assert_eq!(pool.live(), 3);

    // A map that needs three new tables: the allocator calls back three times, the publish once.
    CALL_BACK.store(true, Ordering::SeqCst);
    let far = VirtAddr::new(0xffff_a000_0000_0000);
    let mapped = within("map with a re-entrant allocator", move || unsafe {
        X86::map(far, PhyAddr::new(0x21_0000), Flags::RW)
    });
    assert_eq!(mapped, Ok(()));
    assert_eq!(*FROM_ALLOC.lock().unwrap(), vec![REFUSED; 3]);
    assert_eq!(*FROM_TLB.lock().unwrap(), vec![REFUSED; 1]);
    assert_eq!(
        pool.live(),
        6,
        "three new tables, none for the refused inner map"
    );

    // The allocator calls back, hands out one frame, then runs out: the outer map fails cleanly
    // and gives the frame back (the free calls back too).
    FRAMES_LEFT.store(1, Ordering::SeqCst);
    let farther = VirtAddr::new(0xffff_b000_0000_0000);
    let refused = within(
        "map with a re-entrant, exhausted allocator",
        move || unsafe { X86::map(farther, PhyAddr::new(0x22_0000), Flags::RW) },
    );
    assert_eq!(refused, Err(MapError::OutOfMemory));
    assert_eq!(*FROM_ALLOC.lock().unwrap(), vec![REFUSED; 5]);
    assert_eq!(
        *FROM_FREE.lock().unwrap(),
        vec![REFUSED; 1],
        "rollback frees"
    );
    assert_eq!(pool.live(), 6, "nothing leaked");
    FRAMES_LEFT.store(usize::MAX, Ordering::SeqCst);

    // An unmap whose TLB flush calls back.
    let unmapped = within("unmap with a re-entrant TLB hook", move || unsafe {
        X86::try_unmap(far).map(|u| u.frame)
    });
    assert_eq!(unmapped, Ok(PhyAddr::new(0x21_0000)));
    assert_eq!(*FROM_TLB.lock().unwrap(), vec![REFUSED; 2]);
    CALL_BACK.store(false, Ordering::SeqCst);

    // Nothing the callbacks tried happened: PROBE is still mapped, INNER never was.
    let state = within("translate after the callbacks", move || {
        (
            X86::try_vm_to_phy(PROBE),
            X86::try_vm_to_phy(INNER),
            X86::try_vm_to_phy(far),
            X86::try_vm_to_phy(farther),
        )
    });
    assert_eq!(
        state,
        (
            Ok(PhyAddr::new(0x20_0000)),
            Err(TranslateError::NotMapped),
            Err(TranslateError::NotMapped),
            Err(TranslateError::NotMapped),
        )
    );
}
