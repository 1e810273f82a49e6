//! Tearing an address space down.

use super::chunk::address_bits;
use super::entry::Slot;
use super::walk::Visited;
use super::PageTable;
use crate::arch::{Arch, Entry};
use crate::{FrameAllocator, PhyAddr, PhysMem, Tlb, ENTRIES};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Frees every table of this address space (not the data frames mapped by it) and returns the
    /// allocator. Calls [`Tlb::flush_all`] first, so no cached translation or walk-cache entry
    /// survives into the freed frames' next use. Entries that lead back to a table on their own
    /// path (a recursive slot) are not followed, so no frame is freed twice, and tables the
    /// [`PhysMem`] cannot reach (corrupt entries) are skipped, not freed.
    ///
    /// # Safety
    ///
    /// The tables must not be active on any CPU (switch away first) nor shared with another
    /// address space.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x7000), PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }
    ///     .unwrap()
    ///     .flush();
    /// assert_eq!(mem.frames_in_use(), 4);
    /// unsafe { pt.destroy() };
    /// assert_eq!(mem.frames_in_use(), 0);
    /// ```
    pub unsafe fn destroy(mut self) -> F {
        self.tlb.flush_all();
        let (root, top) = (self.root, self.arch.levels().saturating_sub(1));
        self.walk.clear();
        let mut visited = Visited::new(root);
        // SAFETY: caller guarantees the tables are unused and not shared; the path check keeps
        // recursive slots from freeing a table twice.
        unsafe { self.free_table(root, top, &mut visited) };
        self.frames
    }

    /// Frees `table` (at `level`) and every table below it. A table the accessor cannot reach
    /// (an entry pointing outside memory, written by someone else) was never built here: it is
    /// skipped, not handed to the allocator.
    pub(crate) unsafe fn free_table(&mut self, table: PhyAddr, level: u8, visited: &mut Visited) {
        let Some(base) = self.mem.frame_ptr(table) else {
            return;
        };
        if level > 0 {
            // Leaves and holes are decoded once per run of entries equal outside the address
            // bits (a table of blocks is one run).
            let addr = address_bits(self.arch.pa_bits(), level);
            let mut key = addr;
            for i in 0..ENTRIES {
                // SAFETY: `mem` reaches `table` at `base`; i < 512.
                let raw = unsafe { Slot::new(table, base.cast(), i) }.load();
                if raw & !addr == key {
                    continue;
                }
                match self.arch.decode(raw, level) {
                    Entry::Table(next) => {
                        if visited.enter(next) {
                            // SAFETY: forwarded.
                            unsafe { self.free_table(next, level - 1, visited) };
                            visited.leave();
                        }
                    }
                    Entry::Leaf(_) | Entry::Invalid => key = raw & !addr,
                }
            }
        }
        // SAFETY: caller's contract: the table is unreachable and ours.
        unsafe { self.frames.deallocate_frame(table) };
    }
}
