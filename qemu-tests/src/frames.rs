//! The test kernels' physical frame pool: a stack of free frames over one RAM range, behind a
//! spin lock, handed to page tables through the zero-sized [`PoolFrames`] handle.

use awk_paging::{FrameAllocator, PhyAddr};
use spin::Mutex;

const CAPACITY: usize = 16 * 1024;

struct Stack {
    free: [u32; CAPACITY],
    len: usize,
}

static POOL: Mutex<Stack> = Mutex::new(Stack {
    free: [0; CAPACITY],
    len: 0,
});

/// Fills the pool with the frames of `[start, end)` (4 KiB-aligned, at most 64 MiB).
pub fn init(start: u64, end: u64) {
    let mut p = POOL.lock();
    p.len = 0;
    let mut f = end;
    while f >= start + 4096 && p.len < CAPACITY {
        f -= 4096;
        let i = p.len;
        p.free[i] = (f >> 12) as u32;
        p.len += 1;
    }
}

/// Free frames left.
pub fn free_frames() -> usize {
    POOL.lock().len
}

/// The frame the `(n + 1)`-th next allocation will return (the pool is a stack: the last frame
/// freed is the next one handed out), if the pool holds that many. Lets a test know in advance
/// which frames an operation will take, and recognise a freed frame when it comes back.
pub fn upcoming(n: usize) -> Option<PhyAddr> {
    let p = POOL.lock();
    let i = p.len.checked_sub(n + 1)?;
    Some(PhyAddr::new(u64::from(p.free[i]) << 12))
}

/// Takes one frame for data (not for a page table).
pub fn data_frame() -> Option<PhyAddr> {
    PoolFrames.allocate_frame()
}

/// A handle to the global pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolFrames;

// SAFETY: every frame in the pool is identity-mapped RAM not used by anything else.
unsafe impl FrameAllocator for PoolFrames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        let mut p = POOL.lock();
        p.len = p.len.checked_sub(1)?;
        let i = p.len;
        Some(PhyAddr::new(u64::from(p.free[i]) << 12))
    }

    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        let mut p = POOL.lock();
        if p.len < CAPACITY {
            let i = p.len;
            p.free[i] = (frame.as_u64() >> 12) as u32;
            p.len += 1;
        }
    }
}
