//! awk-paging's instance API (`PageTable`) in both regimes: `X86_64` and `A64` (48-bit, TTBR0).

use awk_paging::arch::Arch;
use awk_paging::{Flags, NoTlb, OffsetPhysMem, PageSize, PageTable, PhyAddr, VirtAddr};

use crate::arena::{self, ArenaFrames};
use crate::subject::{Size, Subject};

pub type Table<A> = PageTable<A, OffsetPhysMem, ArenaFrames, NoTlb>;

/// One awk-paging address space of regime `A` (its `Default`: `X86_64::new()`, or
/// `A64::new(Bits48, Lower)`), no TLB to flush on the host.
pub struct Awk<A: Arch + Default>(pub Table<A>);

#[inline(always)]
pub const fn page_size(size: Size) -> PageSize {
    match size {
        Size::K4 => PageSize::Size4K,
        Size::M2 => PageSize::Size2M,
    }
}

impl<A: Arch + Default> Awk<A> {
    pub fn table() -> Table<A> {
        PageTable::new(A::default(), arena::phys(), ArenaFrames, NoTlb).expect("root frame")
    }
}

impl<A: Arch + Default> Subject for Awk<A> {
    fn new() -> Self {
        Awk(Self::table())
    }

    #[inline(always)]
    fn map(&mut self, va: u64, pa: u64, size: Size) -> Option<u64> {
        let (va, pa) = (VirtAddr::new(va), PhyAddr::new(pa));
        // SAFETY: the table is never active; the frames mapped are never accessed.
        let flush = unsafe { self.0.map(va, pa, page_size(size), Flags::RW) }.ok()?;
        flush.flush();
        Some(1)
    }

    #[inline(always)]
    fn translate(&mut self, va: u64, _size: Size) -> Option<u64> {
        let t = self.0.translate(VirtAddr::new(va)).ok()?;
        Some(t.pa.as_u64())
    }

    #[inline(always)]
    fn protect(&mut self, va: u64, size: Size) -> Option<u64> {
        // SAFETY: as for map.
        let flush = unsafe {
            self.0
                .update_flags(VirtAddr::new(va), page_size(size), Flags::RO)
        }
        .ok()?;
        flush.flush();
        Some(1)
    }

    #[inline(always)]
    fn unmap(&mut self, va: u64, size: Size) -> Option<u64> {
        // SAFETY: as for map.
        let (gone, flush) = unsafe { self.0.unmap(VirtAddr::new(va), page_size(size)) }.ok()?;
        flush.flush();
        Some(gone.frame.as_u64())
    }

    fn teardown(self) {
        // SAFETY: never active, not shared.
        unsafe { self.0.destroy() };
    }
}
