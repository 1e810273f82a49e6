//! The `x86_64` crate's `OffsetPageTable` (offset 0 onto the arena). `ADDR = false` translates
//! with `Mapper::translate_page` (the like-for-like call: page in, frame out); `ADDR = true`
//! with `Translate::translate_addr` (any address, any page size: a more general walk).

use x86_64::structures::paging::mapper::CleanUp;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page, PageSize as _, PageTable,
    PageTableFlags as F, PhysFrame, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::arena;
use crate::subject::{Size, Subject};

/// The arena as the `x86_64` crate's allocator.
pub struct XAlloc;

// SAFETY: distinct, unused, 4 KiB-aligned arena frames.
unsafe impl FrameAllocator<Size4KiB> for XAlloc {
    #[inline(always)]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        PhysFrame::from_start_address(PhysAddr::new(arena::alloc()?)).ok()
    }
}

impl FrameDeallocator<Size4KiB> for XAlloc {
    #[inline(always)]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        // SAFETY: forwarded.
        unsafe { arena::free(frame.start_address().as_u64()) }
    }
}

pub struct X86Crate<const ADDR: bool> {
    opt: OffsetPageTable<'static>,
    root: u64,
}

const RW: F = F::PRESENT.union(F::WRITABLE).union(F::NO_EXECUTE);
const RO: F = F::PRESENT.union(F::NO_EXECUTE);

impl<const ADDR: bool> Subject for X86Crate<ADDR> {
    fn new() -> Self {
        let root = arena::alloc().expect("root frame");
        // SAFETY: a zeroed arena frame (an empty level-4 table) reached at offset 0, owned by
        // this value alone.
        let opt = unsafe { OffsetPageTable::new(&mut *(root as *mut PageTable), VirtAddr::new(0)) };
        X86Crate { opt, root }
    }

    #[inline(always)]
    fn map(&mut self, va: u64, pa: u64, size: Size) -> Option<u64> {
        let va = VirtAddr::new(va);
        let pa = PhysAddr::new(pa);
        // SAFETY (both): the table is never active; the frames are never accessed.
        match size {
            Size::K4 => {
                let page = Page::<Size4KiB>::from_start_address(va).ok()?;
                let frame = PhysFrame::from_start_address(pa).ok()?;
                unsafe { self.opt.map_to(page, frame, RW, &mut XAlloc) }
                    .ok()?
                    .ignore();
            }
            Size::M2 => {
                let page = Page::<Size2MiB>::from_start_address(va).ok()?;
                let frame = PhysFrame::from_start_address(pa).ok()?;
                unsafe { self.opt.map_to(page, frame, RW, &mut XAlloc) }
                    .ok()?
                    .ignore();
            }
        }
        Some(1)
    }

    #[inline(always)]
    fn translate(&mut self, va: u64, size: Size) -> Option<u64> {
        let va = VirtAddr::new(va);
        if ADDR {
            return self.opt.translate_addr(va).map(PhysAddr::as_u64);
        }
        match size {
            Size::K4 => {
                let page = Page::<Size4KiB>::from_start_address(va).ok()?;
                let f = self.opt.translate_page(page).ok()?;
                Some(f.start_address().as_u64())
            }
            Size::M2 => {
                let page = Page::<Size2MiB>::from_start_address(va).ok()?;
                let f = self.opt.translate_page(page).ok()?;
                Some(f.start_address().as_u64())
            }
        }
    }

    #[inline(always)]
    fn protect(&mut self, va: u64, size: Size) -> Option<u64> {
        let va = VirtAddr::new(va);
        // SAFETY (both): as for map.
        match size {
            Size::K4 => {
                let page = Page::<Size4KiB>::from_start_address(va).ok()?;
                unsafe { self.opt.update_flags(page, RO) }.ok()?.ignore();
            }
            Size::M2 => {
                let page = Page::<Size2MiB>::from_start_address(va).ok()?;
                unsafe { self.opt.update_flags(page, RO) }.ok()?.ignore();
            }
        }
        Some(1)
    }

    #[inline(always)]
    fn unmap(&mut self, va: u64, size: Size) -> Option<u64> {
        let va = VirtAddr::new(va);
        let frame = match size {
            Size::K4 => {
                let page = Page::<Size4KiB>::from_start_address(va).ok()?;
                let (f, flush) = self.opt.unmap(page).ok()?;
                flush.ignore();
                f.start_address()
            }
            Size::M2 => {
                let page = Page::<Size2MiB>::from_start_address(va).ok()?;
                let (f, flush) = self.opt.unmap(page).ok()?;
                flush.ignore();
                debug_assert_eq!(f.size(), Size2MiB::SIZE);
                f.start_address()
            }
        };
        Some(frame.as_u64())
    }

    fn teardown(mut self) {
        // SAFETY: every page was unmapped (or the tables are dropped whole): free the empty
        // tables below the root, then the root.
        unsafe {
            self.opt.clean_up(&mut XAlloc);
            arena::free(self.root);
        }
    }
}
