//! Range calls: one call maps, protects or unmaps a whole workload's span.
//!
//! - awk-paging: `map_range` (largest page up to the row's size; `RangeOptions::max_page`),
//!   `protect_range`, `unmap_range` (with a callback per page removed, which counts them) or
//!   `drop_range` (detaches whole subtrees), each into a `Gather` that `finish` then settles
//!   (invalidation, then freeing the tables the call emptied).
//! - `page_table_multiarch`: `map_region` (`allow_huge` for 2 MiB rows), `protect_region`,
//!   `unmap_region` (which frees no table).
//! - `aarch64-paging`: `map_range` (`NO_BLOCK_MAPPINGS` for 4 KiB rows), `modify_range`,
//!   `map_range` with invalid attributes to unmap (which frees no table).
//! - The `x86_64` crate has no range calls: no column.

use std::time::{Duration, Instant};

use aarch64_paging::descriptor::{El1Attributes as A, PhysicalAddress};
use aarch64_paging::paging::{Constraints, MemoryRegion};
use awk_paging::arch::Arch;
use awk_paging::{Flags, PageSize, PhyAddr, RangeOptions, VirtAddr};
use memory_addr::{PhysAddr, VirtAddr as MVirtAddr};
use page_table_multiarch::{GenericPTE, MappingFlags, PagingMetaData};

use crate::a64paging::{self, A64Paging};
use crate::arena;
use crate::awk::{page_size, Awk, Table};
use crate::ptm::Ptm;
use crate::subject::{Size, Subject, Workload};

/// One implementation's range API on one fresh address space.
pub trait RangeSubject: Sized {
    fn new() -> Self;
    /// Maps `len` bytes at `va` to `pa` read-write, with pages up to `size`.
    fn map_range(&mut self, va: u64, pa: u64, len: u64, size: Size) -> bool;
    /// Makes `len` bytes at `va` read-only.
    fn protect_range(&mut self, va: u64, len: u64) -> bool;
    /// Unmaps `len` bytes at `va`.
    fn unmap_range(&mut self, va: u64, len: u64) -> bool;
    /// Gives every table frame back (not timed).
    fn teardown(self);
}

/// awk-paging; `DROP`: unmap with `drop_range` instead of `unmap_range`.
pub struct AwkRange<T: Arch + Default, const DROP: bool>(Table<T>);

impl<T: Arch + Default, const DROP: bool> RangeSubject for AwkRange<T, DROP> {
    fn new() -> Self {
        AwkRange(Awk::<T>::table())
    }

    fn map_range(&mut self, va: u64, pa: u64, len: u64, size: Size) -> bool {
        let opts = RangeOptions {
            max_page: page_size(size),
        };
        let mut g = self.0.gather();
        let (va, pa) = (VirtAddr::new(va), PhyAddr::new(pa));
        // SAFETY: never active; the frames mapped are never accessed.
        let r = unsafe { self.0.map_range(va, pa, len, Flags::RW, opts, &mut g) };
        self.0.finish(g).is_ok() && r.is_ok()
    }

    fn protect_range(&mut self, va: u64, len: u64) -> bool {
        let mut g = self.0.gather();
        // SAFETY: as above.
        let r = unsafe {
            self.0
                .protect_range(VirtAddr::new(va), len, Flags::RO, &mut g)
        };
        self.0.finish(g).is_ok() && r.is_ok()
    }

    fn unmap_range(&mut self, va: u64, len: u64) -> bool {
        let mut g = self.0.gather();
        let va = VirtAddr::new(va);
        // SAFETY: as above.
        let r = if DROP {
            unsafe { self.0.drop_range(va, len, &mut g) }.is_ok()
        } else {
            let mut pages = 0u64;
            let r = unsafe { self.0.unmap_range(va, len, &mut g, |_| pages += 1) };
            r.is_ok() && pages > 0
        };
        self.0.finish(g).is_ok() && r
    }

    fn teardown(self) {
        // SAFETY: never active, not shared.
        unsafe { self.0.destroy() };
    }
}

impl<M: PagingMetaData<VirtAddr = MVirtAddr>, P: GenericPTE> RangeSubject for Ptm<M, P> {
    fn new() -> Self {
        <Self as Subject>::new()
    }

    fn map_range(&mut self, va: u64, pa: u64, len: u64, size: Size) -> bool {
        let rw = MappingFlags::READ | MappingFlags::WRITE;
        let pa_of = |v: MVirtAddr| PhysAddr::from((pa + (v.as_usize() as u64 - va)) as usize);
        let va = MVirtAddr::from(va as usize);
        let huge = size == Size::M2;
        self.0
            .cursor()
            .map_region(va, pa_of, len as usize, rw, huge)
            .is_ok()
    }

    fn protect_range(&mut self, va: u64, len: u64) -> bool {
        let va = MVirtAddr::from(va as usize);
        self.0
            .cursor()
            .protect_region(va, len as usize, MappingFlags::READ)
            .is_ok()
    }

    fn unmap_range(&mut self, va: u64, len: u64) -> bool {
        let va = MVirtAddr::from(va as usize);
        self.0.cursor().unmap_region(va, len as usize).is_ok()
    }

    fn teardown(self) {
        Subject::teardown(self);
    }
}

fn region(va: u64, len: u64) -> MemoryRegion {
    MemoryRegion::new(va as usize, (va + len) as usize)
}

impl RangeSubject for A64Paging {
    fn new() -> Self {
        <Self as Subject>::new()
    }

    fn map_range(&mut self, va: u64, pa: u64, len: u64, size: Size) -> bool {
        let c = match size {
            Size::K4 => Constraints::NO_BLOCK_MAPPINGS,
            Size::M2 => Constraints::empty(),
        };
        let pa = PhysicalAddress(pa as usize);
        self.0
            .map_range(&region(va, len), pa, a64paging::RW, c)
            .is_ok()
    }

    fn protect_range(&mut self, va: u64, len: u64) -> bool {
        self.0
            .modify_range(&region(va, len), &|_, d| {
                if !d.is_table() {
                    d.modify_flags(A::READ_ONLY, A::empty())?;
                }
                Ok(())
            })
            .is_ok()
    }

    fn unmap_range(&mut self, va: u64, len: u64) -> bool {
        let none = PhysicalAddress(0);
        self.0
            .map_range(&region(va, len), none, A::empty(), Constraints::empty())
            .is_ok()
    }

    fn teardown(self) {
        Subject::teardown(self);
    }
}

/// What one range round measured: map, protect, unmap times; frames after map and after unmap.
pub struct RangeResult {
    pub times: [Duration; 3],
    pub frames_unmapped: usize,
    pub frames_peak: usize,
}

/// One round: the whole span of `w` mapped, protected and unmapped in one call each, each
/// result checked; a sample of pages is translated afterwards (not timed) as a cross-check.
#[inline(never)]
pub fn round<S: RangeSubject>(w: &Workload) -> RangeResult {
    let base = arena::outstanding();
    arena::reset_order();
    let len = w.pages() as u64 * w.size.bytes();
    let (va, pa) = (w.va_base, w.pa_base);
    let mut s = S::new();
    let t = Instant::now();
    let ok = s.map_range(va, pa, len, w.size);
    let map = t.elapsed();
    assert!(ok, "map_range failed");
    let t = Instant::now();
    let ok = s.protect_range(va, len);
    let protect = t.elapsed();
    assert!(ok, "protect_range failed");
    let t = Instant::now();
    let ok = s.unmap_range(va, len);
    let unmap = t.elapsed();
    assert!(ok, "unmap_range failed");
    let frames_unmapped = arena::outstanding() - base;
    let frames_peak = arena::peak() - base;
    s.teardown();
    assert_eq!(arena::outstanding(), base, "tables leaked");
    RangeResult {
        times: [map, protect, unmap],
        frames_unmapped,
        frames_peak,
    }
}

/// Checks, once and untimed, that each range implementation maps what the per-page ones do:
/// every 97th page of `w` translates to its frame after `map_range`, with the page size asked.
pub fn cross_check(w: &Workload) {
    let len = w.pages() as u64 * w.size.bytes();
    let mut awk = AwkRange::<awk_paging_x86_64::X86_64, false>::new();
    assert!(awk.map_range(w.va_base, w.pa_base, len, w.size));
    for i in (0..w.pages() as u64).step_by(97) {
        let t = awk
            .0
            .translate(VirtAddr::new(w.va_base + i * w.size.bytes()))
            .expect("mapped");
        assert_eq!(t.pa.as_u64(), w.pa_base + i * w.size.bytes());
        let want = if w.size == Size::M2 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        assert_eq!(t.size, want);
    }
    assert!(awk.unmap_range(w.va_base, len));
    awk.teardown();
}
