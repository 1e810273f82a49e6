//! Hooks that call back into the seed API. The frame allocator is never called under the table's
//! lock, so an allocator that maps (and translates, and unmaps) its own memory from
//! `allocate_frame` and `deallocate_frame` — a heap that grows by mapping pages — works: its
//! calls succeed, nested inside the outer seed call. The TLB hook runs under the lock: its
//! `map`/`unmap` are refused with `Reentered` (not a deadlock), its `vm_to_phy` (lock-free)
//! answers.
//!
//! One test function (the global is process-wide); every step runs under a timeout.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use awk_paging::{
    ActiveTable, Flags, FrameAllocator, MapError, Mapper, PhyAddr, Tlb, TranslateError, VirtAddr,
};
use awk_paging_x86_64::{X86, X86_64};
use common::{within, HostFrames};

/// Mapped before the hooks start calling back.
const PROBE: VirtAddr = VirtAddr::new(0xffff_9000_0000_0000);
const PROBE_PA: PhyAddr = PhyAddr::new(0x20_0000);
/// The allocator's "heap": it maps one page here per frame it hands out (a 512 GiB slot of its
/// own, so the first heap page needs three new tables, from the pool).
const HEAP: u64 = 0xffff_c000_0000_0000;
const HEAP_PA: u64 = 0x4000_0000;

/// Whether the hooks call back.
static CALL_BACK: AtomicBool = AtomicBool::new(false);
/// How many more frames the allocator hands out before it refuses.
static FRAMES_LEFT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Heap pages mapped so far.
static HEAP_PAGES: AtomicU64 = AtomicU64::new(0);

/// What one allocator callback got: its heap page's map, the translation of that page and of
/// [`PROBE`] right after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grown {
    map: Result<(), MapError>,
    heap: Option<PhyAddr>,
    probe: Option<PhyAddr>,
}

static FROM_ALLOC: Mutex<Vec<Grown>> = Mutex::new(Vec::new());
/// What each `deallocate_frame` callback got: unmapping the last heap page, and translating it.
type Shrunk = (Result<(), ()>, Option<PhyAddr>);
static FROM_FREE: Mutex<Vec<Shrunk>> = Mutex::new(Vec::new());
/// What the TLB hook got: a map (refused: under the lock), a translation (lock-free).
type FromTlb = (Result<(), MapError>, Option<PhyAddr>);
static FROM_TLB: Mutex<Vec<FromTlb>> = Mutex::new(Vec::new());

/// The next heap page and its frame.
fn next_heap_page() -> (VirtAddr, PhyAddr) {
    let n = HEAP_PAGES.fetch_add(1, Ordering::SeqCst);
    (
        VirtAddr::new(HEAP + n * 0x1000),
        PhyAddr::new(HEAP_PA + n * 0x1000),
    )
}

/// An allocator that grows its heap through the seed API from inside `allocate_frame`, and
/// shrinks it from inside `deallocate_frame`.
struct HeapFrames(&'static HostFrames);

unsafe impl FrameAllocator for HeapFrames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        if CALL_BACK.load(Ordering::SeqCst) {
            let (va, pa) = next_heap_page();
            // SAFETY: a test address over a frame nothing accesses.
            let map = unsafe { X86::map(va, pa, Flags::RW) };
            FROM_ALLOC.lock().unwrap().push(Grown {
                map,
                heap: X86::vm_to_phy(va),
                probe: X86::vm_to_phy(PROBE),
            });
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
            let n = HEAP_PAGES.fetch_sub(1, Ordering::SeqCst) - 1;
            let va = VirtAddr::new(HEAP + n * 0x1000);
            // SAFETY: the heap page mapped last; nothing uses it.
            let gone = unsafe { X86::try_unmap(va) }.map(|_| ()).map_err(|_| ());
            FROM_FREE.lock().unwrap().push((gone, X86::vm_to_phy(va)));
        }
        // SAFETY: forwarded.
        unsafe { self.0.deallocate_frame(frame) }
    }
}

/// A TLB hook that maps and translates (under the table's lock).
struct ReentrantTlb;

impl Tlb for ReentrantTlb {
    fn flush_page(&self, _va: VirtAddr) {
        if CALL_BACK.load(Ordering::SeqCst) {
            // SAFETY: refused anyway (the lock is held here).
            let map = unsafe { X86::map(VirtAddr::new(HEAP - 0x1000), PROBE_PA, Flags::RW) };
            FROM_TLB.lock().unwrap().push((map, X86::vm_to_phy(PROBE)));
        }
    }
    fn flush_all(&self) {}
    fn publish(&self) {
        self.flush_page(VirtAddr::new(0));
    }
}

#[test]
fn allocator_that_maps_works_and_tlb_hook_is_refused() {
    let pool = HostFrames::leak(128);
    let frames: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(HeapFrames(pool)));
    assert_eq!(
        unsafe { X86::init(pool.boot_table(), X86_64::new(), frames, &ReentrantTlb) },
        Ok(())
    );
    assert_eq!(pool.live(), 6, "install pooled two calls' worth (2 × 3)");
    assert_eq!(unsafe { X86::map(PROBE, PROBE_PA, Flags::RW) }, Ok(()));
    assert_eq!((pool.live(), X86::global().pooled()), (6, 3));

    // A map that needs three new tables. Its refill (3 frames, before the lock) calls the
    // allocator three times; each call maps a heap page through the seed API. The first heap
    // page needs three tables of its own: they come from the pool (3 left), the nested call
    // skips the refill.
    CALL_BACK.store(true, Ordering::SeqCst);
    let far = VirtAddr::new(0xffff_a000_0000_0000);
    let mapped = within("map with an allocator that maps", move || unsafe {
        X86::map(far, PhyAddr::new(0x21_0000), Flags::RW)
    });
    assert_eq!(mapped, Ok(()));
    let grown: Vec<Grown> = (0..3)
        .map(|i| Grown {
            map: Ok(()),
            heap: Some(PhyAddr::new(HEAP_PA + i * 0x1000)),
            probe: Some(PROBE_PA),
        })
        .collect();
    assert_eq!(*FROM_ALLOC.lock().unwrap(), grown);
    // The TLB hook's publish, once per map (three heap pages, then `far`): its map refused,
    // its translation answered.
    assert_eq!(
        *FROM_TLB.lock().unwrap(),
        vec![(Err(MapError::Reentered), Some(PROBE_PA)); 4]
    );
    assert_eq!(X86::vm_to_phy(far), Some(PhyAddr::new(0x21_0000)));
    assert_eq!(
        X86::vm_to_phy(VirtAddr::new(HEAP + 0x2000)),
        Some(PhyAddr::new(HEAP_PA + 0x2000))
    );
    // 6 + 3 refilled; the heap's 3 tables and far's 3 came from the pool: it is empty now.
    assert_eq!((pool.live(), X86::global().pooled()), (9, 0));

    // The allocator runs dry (after one more heap page each call): the next map's refill gets
    // nothing, the map needs tables, the pool is empty: a clean OutOfMemory, nothing leaked.
    FRAMES_LEFT.store(0, Ordering::SeqCst);
    let farther = VirtAddr::new(0xffff_b000_0000_0000);
    let refused = within("map with an exhausted allocator", move || unsafe {
        X86::map(farther, PhyAddr::new(0x22_0000), Flags::RW)
    });
    assert_eq!(refused, Err(MapError::OutOfMemory));
    assert_eq!(X86::try_vm_to_phy(farther), Err(TranslateError::NotMapped));
    assert_eq!(pool.live(), 9, "nothing leaked");
    FRAMES_LEFT.store(usize::MAX, Ordering::SeqCst);

    // Unmaps free emptied tables into the pool (after the flush); above four calls' worth
    // (12) the surplus goes back to the allocator outside the lock — whose `deallocate_frame`
    // unmaps a heap page through the seed API.
    let regions: Vec<VirtAddr> = (0..4u64)
        .map(|i| VirtAddr::new(0xffff_8100_0000_0000 + (i << 39)))
        .collect();
    for &r in &regions {
        assert_eq!(
            within("map a region", move || unsafe {
                X86::map(r, PhyAddr::new(0x23_0000), Flags::RW)
            }),
            Ok(())
        );
    }
    FROM_FREE.lock().unwrap().clear();
    for &r in &regions {
        let gone = within("unmap a region", move || unsafe { X86::try_unmap(r) });
        assert_eq!(gone.map(|u| u.frame), Ok(PhyAddr::new(0x23_0000)));
    }
    let freed = FROM_FREE.lock().unwrap().clone();
    assert!(!freed.is_empty(), "surplus went back to the allocator");
    assert!(
        freed
            .iter()
            .all(|&(gone, after)| gone.is_ok() && after.is_none()),
        "each free unmapped a heap page: {freed:?}"
    );
    assert!(X86::global().pooled() <= 12);
    CALL_BACK.store(false, Ordering::SeqCst);

    assert_eq!(X86::try_vm_to_phy(PROBE), Ok(PROBE_PA));
}
