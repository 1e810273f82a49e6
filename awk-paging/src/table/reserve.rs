//! Prepare/commit: every frame a range operation will need is taken before anything changes,
//! so the commit cannot fail. Reserved frames are unpublished, so they are chained through
//! their first word (no heap), and zeroed when taken.

use core::ptr::NonNull;

use super::build::take_frame;
use super::entry::{zero_table, Slot};
use crate::arch::Arch;
use crate::{FrameAllocator, MapError, PhyAddr, PhysMem};

/// Frames taken for one operation and not used yet.
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    /// The last frame taken; each frame's first word holds the one taken before it. `len`
    /// (not a null link) ends the chain, so a frame at physical address 0 is fine.
    head: PhyAddr,
    len: usize,
}

impl Reserve {
    /// Takes `n` frames (each checked as [`take_frame`] does; zeroed only when popped). On failure every frame
    /// taken so far is given back and the allocator is as before.
    pub(crate) fn take<A: Arch, M: PhysMem, F: FrameAllocator>(
        arch: &A,
        mem: &M,
        frames: &mut F,
        n: usize,
    ) -> Result<Reserve, MapError> {
        let mut r = Reserve::default();
        for _ in 0..n {
            match take_frame(arch, mem, frames) {
                Ok((frame, _)) => {
                    if let Some(slot) = Slot::of(mem, frame, 0) {
                        slot.store(mem, 0, r.head.as_u64());
                    }
                    r.head = frame;
                    r.len += 1;
                }
                Err(e) => {
                    r.give_back(mem, frames);
                    return Err(e);
                }
            }
        }
        Ok(r)
    }

    /// One reserved frame, zeroed, with its pointer; `None` if the reserve is empty (a bug in
    /// the count: callers treat it as unreachable and leave the operation half done, which the
    /// counting tests rule out).
    pub(crate) fn pop<M: PhysMem>(&mut self, mem: &M) -> Option<(PhyAddr, NonNull<u8>)> {
        let (frame, ptr) = self.pop_raw(mem)?;
        // SAFETY: a reserved frame `mem` reaches, not published anywhere.
        unsafe { zero_table(mem, frame, ptr) };
        Some((frame, ptr))
    }

    /// One reserved frame, not zeroed except for the word that chained it (for data frames
    /// whose contents the caller does not need cleared).
    pub(crate) fn pop_raw<M: PhysMem>(&mut self, mem: &M) -> Option<(PhyAddr, NonNull<u8>)> {
        if self.len == 0 {
            return None;
        }
        let frame = self.head;
        let ptr = mem.frame_ptr(frame)?;
        let link = Slot::of(mem, frame, 0)?;
        self.head = PhyAddr::new(link.load());
        link.store(mem, self.head.as_u64(), 0);
        self.len -= 1;
        Some((frame, ptr))
    }

    /// Gives every frame left back to the allocator.
    pub(crate) fn give_back<M: PhysMem, F: FrameAllocator>(mut self, mem: &M, frames: &mut F) {
        while self.len > 0 {
            let frame = self.head;
            self.head = PhyAddr::new(Slot::of(mem, frame, 0).map_or(0, Slot::load));
            self.len -= 1;
            // SAFETY: taken from this allocator, never published.
            unsafe { frames.deallocate_frame(frame) };
        }
    }
}
