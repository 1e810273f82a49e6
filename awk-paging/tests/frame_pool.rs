//! Allocators that cannot take frames back ([`FrameAllocator::can_free`] = `false`): a table
//! whose allocator is a [`FramePool`] over one never calls `deallocate_frame`, keeps what it
//! reclaims, and reuses the kept frames before asking the allocator again.

use std::cell::Cell;

use awk_paging::emu::{EmuArch, EmuMemory};
use awk_paging::{Flags, FrameAllocator, FramePool, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};

/// Hands out frames of an emulated memory, counts, and cannot free (counts attempts).
struct Bump<'a> {
    mem: &'a EmuMemory,
    allocated: &'a Cell<usize>,
    frees: &'a Cell<usize>,
}

unsafe impl FrameAllocator for Bump<'_> {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        self.allocated.set(self.allocated.get() + 1);
        self.mem.allocate_data_frame()
    }
    unsafe fn deallocate_frame(&mut self, _frame: PhyAddr) {
        self.frees.set(self.frees.get() + 1);
    }
    fn can_free(&self) -> bool {
        false
    }
}

#[test]
fn reclaimed_tables_are_kept_and_reused() {
    let mem = EmuMemory::new(64);
    let (allocated, frees) = (Cell::new(0), Cell::new(0));
    let bump = Bump {
        mem: &mem,
        allocated: &allocated,
        frees: &frees,
    };
    let mut pt =
        PageTable::new(EmuArch::default(), &mem, FramePool::new(&mem, bump), NoTlb).expect("root");
    assert_eq!(allocated.get(), 1, "the root");

    // Two pages in different 1 GiB regions: 3 + 2 tables (the PDPT is shared).
    let a = VirtAddr::new(0x4000_0000);
    let b = VirtAddr::new(0x8000_0000);
    for va in [a, b] {
        unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
    }
    assert_eq!(allocated.get(), 6);

    // Unmapping both with reclaim empties every table below the root.
    let mut g = pt.gather();
    unsafe { pt.unmap_range(a, 0x8000_1000 - 0x4000_0000, &mut g, |_| {}) }.unwrap();
    pt.finish(g).unwrap();
    assert_eq!(frees.get(), 0, "deallocate_frame never called");
    assert_eq!(pt.frames().len(), 5, "the five tables are kept");

    // Mapping again: the kept frames first, the allocator not at all.
    for va in [a, b] {
        unsafe { pt.map(va, PhyAddr::new(0xa000), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
    }
    assert_eq!(allocated.get(), 6, "no new allocation");
    assert_eq!(pt.frames().len(), 0, "all five reused");
    assert_eq!(pt.translate(b).map(|t| t.pa), Ok(PhyAddr::new(0xa000)));

    // A third region needs 2 more tables than are kept: only those come from the allocator.
    let c = VirtAddr::new(0x80_0000_0000);
    unsafe { pt.map(c, PhyAddr::new(0xb000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    assert_eq!(allocated.get(), 9);

    // Tearing down keeps every table (root included); trimming cannot give them back.
    let mut pool = unsafe { pt.destroy() };
    assert_eq!(pool.len(), 9);
    assert_eq!(pool.trim(0), 0);
    assert_eq!(frees.get(), 0);
}

#[test]
fn a_pool_over_an_allocator_that_frees_forwards_frees() {
    let mem = EmuMemory::new(16);
    let mut pt =
        PageTable::new(EmuArch::default(), &mem, FramePool::new(&mem, &mem), NoTlb).expect("root");
    let va = VirtAddr::new(0x4000_0000);
    unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    assert_eq!(mem.frames_in_use(), 4);
    let mut g = pt.gather();
    unsafe { pt.unmap_range(va, 0x1000, &mut g, |_| {}) }.unwrap();
    pt.finish(g).unwrap();
    assert_eq!(pt.frames().len(), 0, "nothing kept");
    assert_eq!(mem.frames_in_use(), 1, "freed to the allocator");
}
