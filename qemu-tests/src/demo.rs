//! What the demo kernels show about a range mapped with one `map_range` call: how many pages of
//! each size it is made of, against the largest pages the range allows.

use core::fmt;

use awk_paging::arch::Arch;
use awk_paging::{FrameAllocator, PageSize, PageTable, PhysMem, Tlb, VirtAddr};

/// Pages of each size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    /// 1 GiB pages.
    pub g1: u64,
    /// 2 MiB pages.
    pub m2: u64,
    /// 4 KiB pages.
    pub k4: u64,
}

impl Sizes {
    fn add(&mut self, size: PageSize) {
        match size {
            PageSize::Size1G => self.g1 += 1,
            PageSize::Size2M => self.m2 += 1,
            _ => self.k4 += 1,
        }
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} x 1G, {} x 2M, {} x 4K", self.g1, self.m2, self.k4)
    }
}

/// The pages `table` maps in `start .. start + len`, counted by size.
pub fn mapped<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    table: &PageTable<A, M, F, T>,
    start: VirtAddr,
    len: u64,
) -> Sizes {
    let mut sizes = Sizes::default();
    let range = start.as_u64()..start.as_u64() + len;
    table.for_each_mapping(|m| {
        if range.contains(&m.page.as_u64()) {
            sizes.add(m.size);
        }
    });
    sizes
}

/// The largest pages for `len` bytes from `start` (virtual and physical addresses aligned alike):
/// at each step the largest page that is aligned there and fits, 1 GiB only if `has_1g`.
pub fn largest(start: u64, len: u64, has_1g: bool) -> Sizes {
    let mut sizes = Sizes::default();
    let (mut at, end) = (start, start + len);
    while at < end {
        let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
            .into_iter()
            .filter(|&s| has_1g || s != PageSize::Size1G)
            .find(|s| at % s.bytes() == 0 && end - at >= s.bytes())
            .unwrap_or(PageSize::Size4K);
        sizes.add(size);
        at += size.bytes();
    }
    sizes
}
