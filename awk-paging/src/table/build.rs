//! New tables: taken from the allocator, checked against what the hardware can walk, zeroed
//! and filled off to the side, then linked into a live table with one store after
//! [`Tlb::order_table_writes`].

use core::ptr::NonNull;

use super::entry::{zero_table, Slot};
use super::{PageTable, MAX_LEVELS};
use crate::arch::{table_index, Arch};
use crate::{Attrs, FrameAllocator, MapError, PhyAddr, PhysMem, Tlb, VirtAddr};

/// Takes one frame for a new table, checks that the hardware can walk it (below the output
/// size) and that `mem` reaches it, and zeroes it. On failure the frame (if any) is given back.
pub(crate) fn take_table_frame<A: Arch, M: PhysMem, F: FrameAllocator>(
    arch: &A,
    mem: &M,
    frames: &mut F,
) -> Result<(PhyAddr, NonNull<u8>), MapError> {
    let (frame, ptr) = take_frame(arch, mem, frames)?;
    // SAFETY: a frame `mem` reaches, allocated to us and not yet visible to anyone.
    unsafe { zero_table(mem, frame, ptr) };
    Ok((frame, ptr))
}

/// [`take_table_frame`] without the zeroing (for frames zeroed later, when used).
pub(crate) fn take_frame<A: Arch, M: PhysMem, F: FrameAllocator>(
    arch: &A,
    mem: &M,
    frames: &mut F,
) -> Result<(PhyAddr, NonNull<u8>), MapError> {
    let frame = frames.allocate_frame().ok_or(MapError::OutOfMemory)?;
    let width_ok = arch.pa_bits() >= 64 || frame.as_u64() >> arch.pa_bits() == 0;
    let reachable = if width_ok { mem.frame_ptr(frame) } else { None };
    let Some(ptr) = reachable.filter(|_| frame.as_u64() & 0xfff == 0) else {
        // SAFETY: just allocated, never published.
        unsafe { frames.deallocate_frame(frame) };
        return Err(if width_ok {
            MapError::InvalidPageTable
        } else {
            MapError::TableFrameTooWide
        });
    };
    Ok((frame, ptr))
}

/// Tables built off to the side for one new mapping, not yet linked.
pub(crate) struct Chain {
    /// `tables[i]` is the new table at level `top - 1 - i`.
    tables: [(PhyAddr, NonNull<u64>); MAX_LEVELS],
    len: usize,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Builds the tables from `level - 1` down to `target` for `va`, with `leaf` at the bottom,
    /// without linking them. On failure every frame taken is given back and nothing changed.
    pub(crate) fn build_chain(
        &mut self,
        va: VirtAddr,
        level: u8,
        target: u8,
        leaf: u64,
        attrs: Attrs,
    ) -> Result<Chain, MapError> {
        let needed = usize::from(level - target);
        let mut chain = Chain {
            tables: [(PhyAddr::ZERO, NonNull::dangling()); MAX_LEVELS],
            len: 0,
        };
        for i in 0..needed {
            match take_table_frame(&self.arch, &self.mem, &mut self.frames) {
                Ok((frame, ptr)) => {
                    chain.tables[i] = (frame, ptr.cast());
                    chain.len = i + 1;
                }
                Err(e) => {
                    self.give_back(&chain);
                    return Err(e);
                }
            }
        }
        // Fill bottom-up: the leaf, then each table's link to the one below.
        let (bottom, bottom_ptr) = chain.tables[needed - 1];
        // SAFETY: a freshly zeroed, unpublished table reached through `mem`.
        let slot = unsafe { Slot::new(bottom, bottom_ptr, table_index(va, target)) };
        slot.store(&self.mem, 0, leaf);
        for i in (0..needed - 1).rev() {
            let (parent, parent_ptr) = chain.tables[i];
            let parent_level = level - 1 - i as u8;
            let entry = self.arch.table_entry(chain.tables[i + 1].0, attrs);
            // SAFETY: as above.
            let slot = unsafe { Slot::new(parent, parent_ptr, table_index(va, parent_level)) };
            slot.store(&self.mem, 0, entry);
        }
        Ok(chain)
    }

    /// Links a built chain into `slot` (an invalid entry holding `old`): orders the chain's
    /// initialisation before the link, then stores the link.
    pub(crate) fn link_chain(&mut self, slot: Slot, old: u64, chain: Chain, attrs: Attrs) {
        self.tlb.order_table_writes();
        let entry = self.arch.table_entry(chain.tables[0].0, attrs);
        slot.store(&self.mem, old, entry);
    }

    /// Gives the frames of an unlinked chain back.
    fn give_back(&mut self, chain: &Chain) {
        for &(frame, _) in &chain.tables[..chain.len] {
            // SAFETY: allocated by `build_chain`, never published.
            unsafe { self.frames.deallocate_frame(frame) };
        }
    }
}
