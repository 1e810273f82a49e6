//! Range operations: map, unmap and protect `va .. va + len` in one walk, as visitors of the
//! range walker, each in two passes — a read-only count of the frames the commit will need
//! (new tables, splits), taking them all into a [`Reserve`](super::reserve::Reserve), then a
//! commit that cannot fail.
//!
//! - `map`: `map_range` (count, reserve, commit; new leaf tables filled in one loop).
//! - `unmap`: `unmap_range` / `drop_range`, detaching emptied tables.
//! - `protect`: `protect_range`.
//! - `split`: splitting a straddling huge page (break-before-make) and counting splits.

mod map;
mod protect;
mod split;
mod unmap;

pub(in crate::table) use map::MapPlan;

use super::chunk::entry_span;
use super::PageTable;
use super::Unmapped;
use crate::arch::Arch;
use crate::{
    AddrError, Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, ProtectError,
    RangeError, Tlb, UnmapError, VirtAddr,
};

/// Options of [`PageTable::map_range`].
///
/// ```
/// use awk_paging::{PageSize, RangeOptions};
/// let small = RangeOptions { max_page: PageSize::Size4K };
/// assert_eq!(RangeOptions::default().max_page, PageSize::Size1G);
/// # let _ = small;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeOptions {
    /// The largest page size to use (e.g. 4 KiB only, for memory that will be split often).
    /// Sizes the regime lacks are never used anyway (1 GiB needs CPU support on x86).
    pub max_page: PageSize,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            max_page: PageSize::Size1G,
        }
    }
}

/// One mapping removed by [`PageTable::unmap_range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmappedPage {
    /// First virtual address of the page (or block).
    pub page: VirtAddr,
    /// What it mapped, with its Accessed/Dirty state.
    pub unmapped: Unmapped,
}

/// A validated range in table bits.
#[derive(Clone, Copy)]
pub(in crate::table) struct Span {
    pub(in crate::table) start: u64,
    pub(in crate::table) end: u64,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// An empty [`Gather`] for this table.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(1);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let g = pt.gather();
    /// pt.finish(g).unwrap();
    /// ```
    pub fn gather(&self) -> Gather {
        Gather::new(self.root)
    }

    /// Does what `gather` owes: invalidates (per page or block below the threshold, else the
    /// whole address space; walk caches wherever a table changed), **then** frees the tables
    /// the operations detached. Gives the gather back, untouched, if it belongs to another
    /// table.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(2);
    /// let mut a = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let b = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert!(a.finish(b.gather()).is_err()); // not a's
    /// ```
    // The gather is handed back by value on purpose: it owns detached tables, and the caller
    // must keep it to finish it on the right table (boxing would need an allocator).
    #[allow(clippy::result_large_err)]
    pub fn finish(&mut self, mut gather: Gather) -> Result<(), Gather> {
        if gather.root != self.root {
            return Err(gather);
        }
        self.finish_in_place(&mut gather);
        Ok(())
    }

    /// [`finish`](Self::finish) without the ownership check, leaving `g` empty for reuse.
    pub(crate) fn finish_in_place(&mut self, g: &mut Gather) {
        self.flush_owed(g);
        self.free_gathered(g);
    }

    /// The invalidation part of [`finish`](Self::finish): does and forgets what `g` owes the
    /// TLB, keeping its detached tables (now unreachable by every walker and walk cache).
    pub(crate) fn flush_owed(&mut self, g: &mut Gather) {
        let (pending, publish) = g.pending();
        match pending {
            // Narrowed to the range of changes where the hook can (range TLBIs).
            None => match g.changed_range() {
                Some((first, pages, walks)) if self.tlb.flush_range(first, pages, walks) => {}
                _ => self.tlb.flush_all(),
            },
            Some(list) => {
                if !list.is_empty() {
                    self.tlb.flush_pages(list);
                } else if publish {
                    self.tlb.publish();
                }
            }
        }
        g.clear_owed();
    }

    /// Frees the tables `g` detached. Only after [`flush_owed`](Self::flush_owed) (or
    /// another flush that covered their detaching).
    pub(crate) fn free_gathered(&mut self, g: &mut Gather) {
        for &(table, level) in g.tables() {
            let mut visited = super::walk::Visited::new(table);
            // SAFETY: detached from the tree and invalidated everywhere (caller).
            unsafe { self.free_table(table, level, &mut visited) };
        }
        g.clear_tables();
    }

    /// Checks a range (4 KiB-aligned start and length, translated by this regime, inside one
    /// half) and turns it into table bits.
    pub(in crate::table) fn span<E: From<AddrError>>(
        &self,
        va: VirtAddr,
        len: u64,
    ) -> Result<Span, RangeError<E>> {
        let fail = |e: AddrError| RangeError {
            at: va,
            error: e.into(),
        };
        if !va.is_aligned(PageSize::Size4K) || len & 0xfff != 0 {
            return Err(fail(AddrError::NotAligned));
        }
        self.arch.check_va(va).map_err(fail)?;
        let last = va
            .checked_add(len.saturating_sub(1))
            .ok_or(fail(AddrError::Overflow))?;
        self.arch.check_va(last).map_err(|e| RangeError {
            at: last,
            error: e.into(),
        })?;
        let mask = entry_span(self.arch.levels()).wrapping_sub(1);
        let start = va.as_u64() & mask;
        let end = start + len;
        // Contiguous in table bits: the range does not cross from one half into the other.
        if len > 0 && (last.as_u64() & mask) != end - 1 {
            return Err(fail(AddrError::OutOfRange));
        }
        Ok(Span { start, end })
    }

    /// The virtual address of table bits `bits`.
    #[inline(always)]
    pub(in crate::table) fn va_at(&self, bits: u64) -> VirtAddr {
        self.arch.va_from_bits(bits)
    }
}

/// Leaf encoding for one operation's level and attributes, decided once per table: the
/// format's template ([`Arch::leaf_template`], one OR per leaf) or else its `leaf_entry`.
#[derive(Clone, Copy)]
pub(super) struct LeafEncoder<A: Arch> {
    arch: A,
    level: u8,
    attrs: Attrs,
    template: Option<u64>,
}

impl<A: Arch> LeafEncoder<A> {
    #[inline(always)]
    pub(super) fn new(arch: A, level: u8, attrs: Attrs) -> Self {
        LeafEncoder {
            arch,
            level,
            attrs,
            template: arch.leaf_template(level, attrs),
        }
    }

    /// `arch.leaf_entry(pa, level, attrs)`; `pa` is aligned to the level's page size and below
    /// `1 << pa_bits()` (as every frame decoded or validated is).
    #[inline(always)]
    pub(super) fn leaf(&self, pa: PhyAddr) -> u64 {
        match self.template {
            Some(t) => {
                let leaf = t | pa.as_u64();
                debug_assert_eq!(leaf, self.arch.leaf_entry(pa, self.level, self.attrs));
                leaf
            }
            None => self.arch.leaf_entry(pa, self.level, self.attrs),
        }
    }
}

/// The page size of a leaf at `level` (4 KiB for out-of-range levels, which never hold leaves).
pub(super) fn size_of(level: u8) -> PageSize {
    PageSize::from_level(level).unwrap_or(PageSize::Size4K)
}

pub(super) fn map_to_unmap(e: MapError) -> UnmapError {
    match e {
        MapError::OutOfMemory => UnmapError::OutOfMemory,
        MapError::TableFrameTooWide => UnmapError::TableFrameTooWide,
        MapError::RecursiveTable => UnmapError::RecursiveTable,
        _ => UnmapError::InvalidPageTable,
    }
}

pub(super) fn map_to_protect(e: MapError) -> ProtectError {
    match e {
        MapError::OutOfMemory => ProtectError::OutOfMemory,
        MapError::TableFrameTooWide => ProtectError::TableFrameTooWide,
        MapError::RecursiveTable => ProtectError::RecursiveTable,
        _ => ProtectError::InvalidPageTable,
    }
}

/// The error for a broken walk at table bits `at` (converted to an address by the caller).
pub(super) fn broken(at: u64, recursive: bool) -> RangeError<MapError> {
    RangeError {
        at: VirtAddr::new(at),
        error: if recursive {
            MapError::RecursiveTable
        } else {
            MapError::InvalidPageTable
        },
    }
}
