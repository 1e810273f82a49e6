//! The physical memory and frame allocator every implementation gets: one block of host memory
//! whose frames are reached at offset 0 (physical address = host address, a direct map with
//! offset 0), handed out from a free list.
//!
//! - Every frame is touched before anything is timed (no first-touch page faults in a timed
//!   loop).
//! - A frame that comes back is zeroed when it is handed out again (every frame handed out is
//!   zeroed, as `aarch64-paging` requires; the others zero their new tables themselves as
//!   well). Zeroing on reuse, not on free, keeps the zeroing in the allocating operation for
//!   every implementation alike, so a freeing operation (`drop_range`, `unmap`) is timed for
//!   its own work.
//! - Before every round the free list is put back into one fixed order, so every implementation
//!   gets the same frames in the same order.
//! - Double frees and foreign frames panic; [`outstanding`] and [`peak`] count table frames.
//!
//! The benchmark is single-threaded: only the main thread touches the arena.

use std::cell::UnsafeCell;

use awk_paging::{FrameAllocator, OffsetPhysMem, PhyAddr};

/// Frames in the arena (8 MiB): enough for the largest scenario (1 GiB of 4 KiB pages needs 515
/// tables) plus the seed API's tables.
pub const FRAMES: usize = 2048;
const FRAME: usize = 4096;

struct Inner {
    base: u64,
    free: Vec<u64>,
    used: Vec<bool>,
    /// Frames freed since they were last zeroed.
    dirty: Vec<bool>,
    outstanding: usize,
    peak: usize,
}

struct Arena(UnsafeCell<Inner>);

// SAFETY: only the benchmark's main thread uses the arena (see the module documentation).
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new(Inner {
    base: 0,
    free: Vec::new(),
    used: Vec::new(),
    dirty: Vec::new(),
    outstanding: 0,
    peak: 0,
}));

#[inline(always)]
fn inner() -> &'static mut Inner {
    // SAFETY: single-threaded use, and no caller keeps the reference across another call.
    unsafe { &mut *ARENA.0.get() }
}

/// Allocates and touches the arena (once).
pub fn init() {
    let a = inner();
    assert_eq!(a.base, 0, "arena initialised twice");
    let layout = std::alloc::Layout::from_size_align(FRAMES * FRAME, FRAME).unwrap();
    // SAFETY: a non-zero size; the block is leaked on purpose (it lives as long as the process).
    let base = unsafe { std::alloc::alloc(layout) };
    assert!(!base.is_null());
    // Touch every page twice (a non-zero fill cannot be elided), ending zeroed.
    // SAFETY: the block just allocated.
    unsafe {
        std::ptr::write_bytes(base, 0xa5, FRAMES * FRAME);
        std::hint::black_box(base);
        std::ptr::write_bytes(base, 0, FRAMES * FRAME);
    }
    a.base = base as u64;
    a.used = vec![false; FRAMES];
    a.dirty = vec![false; FRAMES];
    a.free = (0..FRAMES as u64)
        .map(|i| a.base + i * FRAME as u64)
        .collect();
    reset_order();
}

/// Puts the free list back into its fixed order (lowest address handed out first) and restarts
/// the peak count at what is outstanding now. Not timed.
pub fn reset_order() {
    let a = inner();
    a.free.sort_unstable_by(|x, y| y.cmp(x));
    a.peak = a.outstanding;
}

/// A zeroed frame, or `None` when the arena is exhausted.
#[inline(always)]
pub fn alloc() -> Option<u64> {
    let a = inner();
    let f = a.free.pop()?;
    let i = ((f - a.base) / FRAME as u64) as usize;
    a.used[i] = true;
    if a.dirty[i] {
        a.dirty[i] = false;
        // SAFETY: a frame of the arena, handed out by nobody else (it was on the free list).
        unsafe { std::ptr::write_bytes(f as *mut u8, 0, FRAME) };
    }
    a.outstanding += 1;
    if a.outstanding > a.peak {
        a.peak = a.outstanding;
    }
    Some(f)
}

/// Takes a frame back (it is zeroed when handed out again).
///
/// # Safety
///
/// Nothing references the frame any more.
#[inline(always)]
pub unsafe fn free(frame: u64) {
    let a = inner();
    let i = frame.wrapping_sub(a.base) / FRAME as u64;
    let used = a.used.get_mut(i as usize).filter(|u| **u);
    let Some(used) = used.filter(|_| frame.is_multiple_of(FRAME as u64)) else {
        bad_free(frame)
    };
    *used = false;
    a.dirty[i as usize] = true;
    a.outstanding -= 1;
    a.free.push(frame);
}

#[cold]
#[inline(never)]
fn bad_free(frame: u64) -> ! {
    panic!("frame {frame:#x} freed twice or not from the arena")
}

/// Frames handed out and not given back.
pub fn outstanding() -> usize {
    inner().outstanding
}

/// The most frames outstanding at once since the last [`reset_order`].
pub fn peak() -> usize {
    inner().peak
}

/// awk-paging's view of the arena.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArenaFrames;

// SAFETY: the arena hands out distinct 4 KiB-aligned frames of host memory, each once until it
// comes back, all reachable through `phys()`.
unsafe impl FrameAllocator for ArenaFrames {
    #[inline(always)]
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        alloc().map(PhyAddr::new)
    }

    #[inline(always)]
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        // SAFETY: forwarded.
        unsafe { free(frame.as_u64()) }
    }
}

/// The direct map at offset 0 that reaches the arena's frames.
pub fn phys() -> OffsetPhysMem {
    // SAFETY (the `OffsetPhysMem::new` contract): every table these page tables reach is an
    // arena frame, allocated above (host memory, readable and writable, 4096 bytes each, never
    // referenced by Rust code as anything but raw memory), and with offset 0 the frame's
    // physical address is its host address. The tables only ever point at arena frames: they
    // are built here from empty, by the implementations under test.
    unsafe { OffsetPhysMem::new(0) }
}
