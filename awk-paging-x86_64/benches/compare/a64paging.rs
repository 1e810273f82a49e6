//! `aarch64-paging`'s `Mapping` (EL1&0, TTBR0, 4 levels), never activated (no TLB maintenance on
//! the host). It has no single-page calls: a page is a one-page range — `map_range` to map,
//! `walk_range` to translate, `modify_range` to protect, `map_range` with invalid attributes to
//! unmap (which returns nothing, so its unmap loop counts successes instead of summing frames).

use std::ptr::NonNull;

use aarch64_paging::descriptor::{El1Attributes as A, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, PageTable, Translation, VaRange};
use aarch64_paging::Mapping;

use crate::arena;
use crate::subject::{Size, Subject};

/// The arena as `aarch64-paging`'s table memory (zeroed frames, offset 0).
pub struct ArenaTranslation;

impl Translation<A> for ArenaTranslation {
    #[inline(always)]
    fn allocate_table(&mut self) -> (NonNull<PageTable<A>>, PhysicalAddress) {
        let pa = arena::alloc().expect("arena frame");
        let ptr = NonNull::new(pa as *mut PageTable<A>).expect("non-null");
        (ptr, PhysicalAddress(pa as usize))
    }

    #[inline(always)]
    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<A>>) {
        // SAFETY: the crate frees a table it no longer uses.
        unsafe { arena::free(table.as_ptr() as u64) }
    }

    #[inline(always)]
    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<A>> {
        NonNull::new(pa.0 as *mut PageTable<A>).expect("non-null")
    }
}

/// Read-write, non-executable, normal memory (MAIR index 0), inner shareable, accessed.
pub const RW: A = A::VALID
    .union(A::ATTRIBUTE_INDEX_0)
    .union(A::INNER_SHAREABLE)
    .union(A::ACCESSED)
    .union(A::NON_GLOBAL)
    .union(A::UXN)
    .union(A::PXN);

pub fn mapping() -> Mapping<ArenaTranslation, El1And0> {
    Mapping::with_asid_and_va_range(ArenaTranslation, 1, 0, El1And0, VaRange::Lower)
}

pub struct A64Paging(pub Mapping<ArenaTranslation, El1And0>);

#[inline(always)]
fn region(va: u64, size: Size) -> MemoryRegion {
    MemoryRegion::new(va as usize, (va + size.bytes()) as usize)
}

impl Subject for A64Paging {
    const UNMAP_RETURNS_FRAME: bool = false;

    fn new() -> Self {
        A64Paging(mapping())
    }

    #[inline(always)]
    fn map(&mut self, va: u64, pa: u64, size: Size) -> Option<u64> {
        let pa = PhysicalAddress(pa as usize);
        self.0
            .map_range(&region(va, size), pa, RW, Constraints::empty())
            .ok()?;
        Some(1)
    }

    #[inline(always)]
    fn translate(&mut self, va: u64, size: Size) -> Option<u64> {
        let mut pa = None;
        self.0
            .walk_range(&region(va, size), &mut |_, d, _| {
                if d.is_valid() {
                    pa = Some(d.output_address().0 as u64);
                }
                Ok(())
            })
            .ok()?;
        pa
    }

    #[inline(always)]
    fn protect(&mut self, va: u64, size: Size) -> Option<u64> {
        self.0
            .modify_range(&region(va, size), &|_, d| {
                if !d.is_table() {
                    d.modify_flags(A::READ_ONLY, A::empty())?;
                }
                Ok(())
            })
            .ok()?;
        Some(1)
    }

    #[inline(always)]
    fn unmap(&mut self, va: u64, size: Size) -> Option<u64> {
        self.0
            .map_range(
                &region(va, size),
                PhysicalAddress(0),
                A::empty(),
                Constraints::empty(),
            )
            .ok()?;
        Some(1)
    }

    fn teardown(self) {
        drop(self.0); // frees every table
    }
}
