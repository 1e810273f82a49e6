//! [`Gather`]: the TLB work and the freed tables of one or many range operations, done in one
//! batch — invalidate first, then free (Linux `mm/mmu_gather.c`).

use crate::{PageSize, PhyAddr, VirtAddr};

/// Above this many pending page invalidations a gather invalidates the whole address space
/// instead (Linux x86 uses 33 pages: one `invlpg` costs about as much as refilling that many
/// TLB entries; Asterinas uses 32).
pub const FULL_FLUSH_THRESHOLD: usize = 32;

/// Detached sub-tables a gather holds before the operation flushes and frees early.
pub const GATHER_TABLES: usize = 16;

/// One invalidation of a batch ([`Tlb::flush_pages`](crate::Tlb::flush_pages)).
///
/// ```
/// use awk_paging::{Invalidation, PageSize, VirtAddr};
/// let i = Invalidation { va: VirtAddr::new(0x20_0000), size: PageSize::Size2M, walks: false };
/// assert!(!i.walks);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalidation {
    /// An address inside the page or block.
    pub va: VirtAddr,
    /// Its size (a block is invalidated by one operation, not one per 4 KiB).
    pub size: PageSize,
    /// Walk caches too (a table entry above it changed or was removed), not just the leaf.
    pub walks: bool,
}

type Pending = Invalidation;

/// The TLB maintenance and table frees owed by range operations on one [`PageTable`].
///
/// Range operations add to a gather; [`PageTable::finish`] then invalidates (per page or block
/// up to [`FULL_FLUSH_THRESHOLD`], the whole address space above it, walk caches included
/// wherever a table changed) and only **then** frees the tables the operations detached, so no
/// hardware walker or walk cache can still reach a freed frame. One gather can collect many
/// operations on the same table (a batch): one flush at the end.
///
/// Dropping a gather without finishing it frees nothing: the detached tables leak (safer than a
/// use-after-free by a stale walk cache), and the TLB may keep stale translations.
///
/// [`PageTable`]: crate::PageTable
/// [`PageTable::finish`]: crate::PageTable::finish
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::{Flags, NoTlb, PageTable, PhyAddr, RangeOptions, VirtAddr};
///
/// let mem = EmuMemory::new(16);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// let va = VirtAddr::new(0x4000_0000);
/// let mut g = pt.gather();
/// unsafe { pt.map_range(va, PhyAddr::new(0x20_0000), 0x40_0000, Flags::RW, RangeOptions::default(), &mut g) }
///     .unwrap();
/// unsafe { pt.unmap_range(va, 0x40_0000, &mut g, |_| {}) }.unwrap();
/// pt.finish(g).unwrap(); // one flush for both, then the emptied tables are freed
/// assert_eq!(mem.frames_in_use(), 1); // the root alone
/// ```
#[must_use = "dropping a gather leaks its detached tables and skips its TLB invalidation: pass it to PageTable::finish"]
#[derive(Debug)]
pub struct Gather {
    pub(crate) root: PhyAddr,
    pending: [Pending; FULL_FLUSH_THRESHOLD],
    len: usize,
    flush_all: bool,
    publish: bool,
    tables: [(PhyAddr, u8); GATHER_TABLES],
    ntables: usize,
    /// The smallest VA range holding every change recorded (`[lo, hi)`; `lo > hi`: none),
    /// and whether any needs walk caches invalidated: what a full flush may be narrowed to
    /// ([`Tlb::flush_range`](crate::Tlb::flush_range)).
    lo: u64,
    hi: u64,
    walks: bool,
}

impl Gather {
    /// An empty gather for the table rooted at `root`.
    pub(crate) const fn new(root: PhyAddr) -> Gather {
        Gather {
            root,
            pending: [Pending {
                va: VirtAddr::new(0),
                size: PageSize::Size4K,
                walks: false,
            }; FULL_FLUSH_THRESHOLD],
            len: 0,
            flush_all: false,
            publish: false,
            tables: [(PhyAddr::ZERO, 0); GATHER_TABLES],
            ntables: 0,
            lo: u64::MAX,
            hi: 0,
            walks: false,
        }
    }

    /// Widens the range of changes by `[va, va + len)`.
    #[inline(always)]
    fn cover(&mut self, va: VirtAddr, len: u64, walks: bool) {
        let (start, end) = (va.as_u64(), va.as_u64().saturating_add(len));
        self.lo = self.lo.min(start);
        self.hi = self.hi.max(end);
        self.walks |= walks;
    }

    /// Records that every page of `[va, va + len)` may change without an invalidation of its
    /// own (a range operation whose loops stop recording pages once the gather flushes
    /// everything): a full flush then still covers them, and so does its narrowing.
    #[inline]
    pub(crate) fn invalidate_span(&mut self, va: VirtAddr, len: u64, walks: bool) {
        self.cover(va, len, walks);
    }

    /// Whether nothing is owed.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(1);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let g = pt.gather();
    /// assert!(g.is_empty());
    /// pt.finish(g).unwrap();
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0 && !self.flush_all && !self.publish && self.ntables == 0
    }

    /// Whether finishing will free tables the operations detached: a kernel whose lock-free
    /// readers may still walk them waits for those readers first
    /// ([`KernelGlobal::wait_for_readers`](crate::KernelGlobal::wait_for_readers)).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, VirtAddr, PhyAddr};
    /// # let mem = EmuMemory::new(8);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let va = VirtAddr::new(0x40_0000);
    /// unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// let mut g = pt.gather();
    /// unsafe { pt.unmap_range(va, 0x1000, &mut g, |_| {}) }.unwrap();
    /// assert!(g.holds_tables()); // the emptied leaf table (and its parents) were detached
    /// pt.finish(g).unwrap();
    /// ```
    #[must_use]
    pub fn holds_tables(&self) -> bool {
        self.ntables != 0
    }

    /// Whether finishing will invalidate the whole address space (too many pages pending).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(1);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let g = pt.gather();
    /// assert!(!g.flushes_all());
    /// # pt.finish(g).unwrap();
    /// ```
    #[must_use]
    pub fn flushes_all(&self) -> bool {
        self.flush_all
    }

    /// Records an invalidation of the page or block of `size` containing `va`.
    #[inline]
    pub(crate) fn invalidate(&mut self, va: VirtAddr, size: PageSize, walks: bool) {
        self.cover(
            VirtAddr::new(va.as_u64() & !size.offset_mask()),
            size.bytes(),
            walks,
        );
        if self.flush_all {
            return;
        }
        // The same address again (a leaf, then the tables emptied above it): one invalidation,
        // with walk caches if either needs them.
        if let Some(last) = self.len.checked_sub(1).map(|i| &mut self.pending[i]) {
            if last.va == va {
                last.walks |= walks;
                last.size = last.size.max(size);
                return;
            }
        }
        if self.len == FULL_FLUSH_THRESHOLD {
            self.flush_all = true;
            self.len = 0;
            return;
        }
        self.pending[self.len] = Pending { va, size, walks };
        self.len += 1;
    }

    /// Records that everything in `[va, va + len)` must be invalidated, walk caches included
    /// (a subtree was dropped): a full flush, which [`Tlb::flush_range`](crate::Tlb::flush_range)
    /// may narrow to the range of changes.
    #[inline]
    pub(crate) fn invalidate_all_in(&mut self, va: VirtAddr, len: u64) {
        self.cover(va, len, true);
        self.flush_all = true;
        self.len = 0;
    }

    /// Records that new entries need publishing before use.
    #[inline]
    pub(crate) fn publish(&mut self) {
        self.publish = true;
    }

    /// Records a detached sub-table (and everything below it) at `level`, to free after the
    /// invalidation; `false` (nothing recorded) if the gather is full.
    #[inline]
    pub(crate) fn push_table(&mut self, table: PhyAddr, level: u8) -> bool {
        if self.ntables == GATHER_TABLES {
            return false;
        }
        self.tables[self.ntables] = (table, level);
        self.ntables += 1;
        true
    }

    /// Whether another table fits.
    #[inline]
    pub(crate) fn tables_full(&self) -> bool {
        self.ntables == GATHER_TABLES
    }

    /// For a full flush: the range of changes as (first page, 4 KiB pages, walk caches too),
    /// if one was recorded.
    pub(crate) fn changed_range(&self) -> Option<(VirtAddr, u64, bool)> {
        let lo = self.lo & !0xfff;
        (self.lo < self.hi).then(|| {
            let pages = (self.hi - lo).div_ceil(4096);
            (VirtAddr::new(lo), pages, self.walks)
        })
    }

    /// The pending invalidations, or `None` for a full flush; and whether a publish is owed.
    pub(crate) fn pending(&self) -> (Option<&[Invalidation]>, bool) {
        let list = (!self.flush_all).then(|| &self.pending[..self.len]);
        (list, self.publish)
    }

    /// The detached tables.
    pub(crate) fn tables(&self) -> &[(PhyAddr, u8)] {
        &self.tables[..self.ntables]
    }

    /// Forgets the TLB work owed, once done (the detached tables stay).
    pub(crate) fn clear_owed(&mut self) {
        self.len = 0;
        self.flush_all = false;
        self.publish = false;
        self.lo = u64::MAX;
        self.hi = 0;
        self.walks = false;
    }

    /// Forgets the detached tables, once freed.
    pub(crate) fn clear_tables(&mut self) {
        self.ntables = 0;
    }
}
