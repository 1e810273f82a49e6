//! A TLB model: translations stay cached until invalidated, like on a real CPU, only more so —
//! nothing is ever evicted, so every missing invalidation is observable.
//!
//! The model has the three kinds of state real MMUs keep:
//!
//! - **leaf translations** per page (any size), with the effective attributes of the walk that
//!   made them;
//! - **walk caches** (x86 paging-structure caches, Arm intermediate table entries): for every
//!   table a walk passed through, the table's physical address and the limits above it, per
//!   (level, VA prefix). A later walk starts from the deepest cached table, so a table that was
//!   unlinked and freed without a walk-cache-inclusive invalidation keeps being used;
//! - **ASID tags**: non-global leaves and all walk entries belong to the ASID that was current
//!   when they were cached; global leaves match every ASID.
//!
//! Invalidations follow the hardware: [`Tlb::flush_page`] (`tlbi vae1is`, `invlpg`) drops the
//! leaf *and* the walk entries for one address, [`Tlb::flush_leaf`] (`tlbi vale1is`) only the
//! leaf, [`Tlb::flush_all`] everything of the hook's ASID except global leaves (`tlbi aside1is`,
//! a CR3 write with PCIDs) or, without an ASID, everything (`tlbi vmalle1is`, CR4.PGE toggle).

use core::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::arch::{table_index, Arch, Entry, Limits};
use crate::emu::EmuMemory;
use crate::{Attrs, PageSize, PhyAddr, Tlb, Translation, VirtAddr};

/// One cached leaf translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cached {
    frame: PhyAddr,
    attrs: Attrs,
}

/// One cached walk step: the table at some level for some VA prefix, and the limits above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Walked {
    table: PhyAddr,
    limits: Limits,
}

/// Leaf key: (ASID, or `None` for a global entry; page size; `va >> size.shift()`).
type LeafKey = (Option<u16>, PageSize, u64);

/// Walk key: (ASID; level of the cached table; `va >> span`, the span being what one entry of
/// the table above covers).
type WalkKey = (u16, u8, u64);

/// The VA prefix naming the table at `level` that translates `va`.
#[inline]
fn walk_tag(va: VirtAddr, level: u8) -> u64 {
    let shift = 12 + 9 * (u32::from(level) + 1);
    if shift >= 64 {
        0
    } else {
        va.as_u64() >> shift
    }
}

/// The emulated CPU's TLB: leaf translations, walk caches and ASID tags (see the module docs).
///
/// [`access_walk`](Self::access_walk) is what the CPU does on a memory access: look up the TLB,
/// and on a miss walk the tables in emulated memory — starting from the deepest cached table —
/// caching every step and the leaf. `&EmuTlb` implements [`Tlb`], so page tables and their flush
/// tokens invalidate it.
///
/// ```
/// use awk_paging::emu::{CpuAccess, EmuArch, EmuMemory, EmuTlb};
/// use awk_paging::{Flags, PageSize, PageTable, VirtAddr};
///
/// let mem = EmuMemory::new(16);
/// let tlb = EmuTlb::new();
/// let arch = EmuArch::default();
/// let mut pt = PageTable::new(arch, &mem, &mem, &tlb).unwrap();
/// let (f1, f2) = (mem.allocate_data_frame().unwrap(), mem.allocate_data_frame().unwrap());
/// let va = VirtAddr::new(0x1000);
/// unsafe { pt.map(va, f1, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// assert_eq!(tlb.access_walk(&mem, &arch, pt.root(), va), CpuAccess::Mapped(f1));
///
/// // Remap without flushing the unmap: the CPU still sees the old frame.
/// let (_, stale) = unsafe { pt.unmap(va, PageSize::Size4K) }.unwrap();
/// unsafe { pt.map(va, f2, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// assert_eq!(tlb.access_walk(&mem, &arch, pt.root(), va), CpuAccess::Mapped(f1));
/// stale.flush();
/// assert_eq!(tlb.access_walk(&mem, &arch, pt.root(), va), CpuAccess::Mapped(f2));
/// assert_eq!((tlb.walks(), tlb.tlb_hits(), tlb.leaf_flushes()), (2, 1, 1));
/// ```
#[derive(Debug, Default)]
pub struct EmuTlb {
    leaves: RefCell<HashMap<LeafKey, Cached>>,
    walks: RefCell<HashMap<WalkKey, Walked>>,
    /// The ASID the CPU runs with: tags new entries, selects entries on lookup.
    current: Cell<u16>,
    /// The ASID this value's own [`Tlb`] implementation invalidates (`None`: all ASIDs).
    hook: Option<u16>,
    page_flushes: Cell<usize>,
    leaf_flushes: Cell<usize>,
    full_flushes: Cell<usize>,
    publishes: Cell<usize>,
    order_barriers: Cell<usize>,
    walk_count: Cell<usize>,
    walk_cache_hits: Cell<usize>,
    tlb_hits: Cell<usize>,
}

/// The outcome of one emulated access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuAccess {
    /// Translated to this physical address (from the TLB or a fresh walk).
    Mapped(PhyAddr),
    /// Translation fault: no valid entry, no leaf cached.
    Fault,
}

/// A [`Tlb`] hook for one address space (one ASID) on a shared [`EmuTlb`]: what a kernel's
/// per-address-space TLB object is on a CPU with ASIDs (or PCIDs).
///
/// ```
/// use awk_paging::emu::EmuTlb;
/// use awk_paging::{Tlb, VirtAddr};
/// let cpu = EmuTlb::new();
/// let space = cpu.for_asid(Some(7));
/// space.flush_page(VirtAddr::new(0x1000));
/// assert_eq!((space.asid(), cpu.page_flushes()), (Some(7), 1));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AsidTlb<'a> {
    tlb: &'a EmuTlb,
    asid: Option<u16>,
}

impl AsidTlb<'_> {
    /// The ASID this hook invalidates (`None`: every ASID).
    #[must_use]
    pub fn asid(&self) -> Option<u16> {
        self.asid
    }
}

impl EmuTlb {
    /// An empty TLB without ASIDs: current ASID 0, and its [`Tlb`] hook invalidates every ASID.
    ///
    /// ```
    /// assert_eq!(awk_paging::emu::EmuTlb::new().cached(), 0);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty TLB whose own [`Tlb`] hook uses `asid` (`Some(n)`: invalidates entries of ASID
    /// `n` and global ones; a full flush keeps global entries. `None`: as [`new`](Self::new)),
    /// running with current ASID `asid` (0 if `None`).
    ///
    /// ```
    /// use awk_paging::emu::EmuTlb;
    /// let tlb = EmuTlb::with_asid(Some(3));
    /// assert_eq!((tlb.current_asid(), tlb.hook_asid()), (3, Some(3)));
    /// ```
    #[must_use]
    pub fn with_asid(asid: Option<u16>) -> Self {
        EmuTlb {
            current: Cell::new(asid.unwrap_or(0)),
            hook: asid,
            ..Self::default()
        }
    }

    /// Switches the CPU to ASID `asid` (a context switch: nothing is invalidated). New entries
    /// are tagged with it; lookups see its entries and global ones.
    ///
    /// ```
    /// let tlb = awk_paging::emu::EmuTlb::new();
    /// tlb.set_current_asid(5);
    /// assert_eq!(tlb.current_asid(), 5);
    /// ```
    pub fn set_current_asid(&self, asid: u16) {
        self.current.set(asid);
    }

    /// The ASID the CPU runs with.
    #[must_use]
    pub fn current_asid(&self) -> u16 {
        self.current.get()
    }

    /// The ASID this value's own [`Tlb`] implementation invalidates.
    #[must_use]
    pub fn hook_asid(&self) -> Option<u16> {
        self.hook
    }

    /// A [`Tlb`] hook on this TLB that invalidates with `asid` (see [`AsidTlb`]); the counters
    /// are shared.
    #[must_use]
    pub fn for_asid(&self, asid: Option<u16>) -> AsidTlb<'_> {
        AsidTlb { tlb: self, asid }
    }

    /// Translates `va` as the CPU would, with the translation supplied by `walk`: a cached leaf
    /// wins; otherwise `walk` is called and a valid result is cached (faults are not cached, as
    /// on real hardware). No walk caches are involved; see [`access_walk`](Self::access_walk)
    /// for the full model.
    ///
    /// ```
    /// use awk_paging::emu::{CpuAccess, EmuTlb};
    /// use awk_paging::{Attrs, Flags, PageSize, PhyAddr, Translation, VirtAddr};
    /// let tlb = EmuTlb::new();
    /// let t = Translation {
    ///     pa: PhyAddr::new(0x5123),
    ///     page: VirtAddr::new(0x1000),
    ///     frame: PhyAddr::new(0x5000),
    ///     size: PageSize::Size4K,
    ///     attrs: Attrs::from(Flags::RO),
    /// };
    /// assert_eq!(tlb.access(VirtAddr::new(0x1123), |_| Some(t)), CpuAccess::Mapped(t.pa));
    /// // Cached: the walk is not consulted again.
    /// assert_eq!(tlb.access(VirtAddr::new(0x1008), |_| None), CpuAccess::Mapped(PhyAddr::new(0x5008)));
    /// ```
    pub fn access(
        &self,
        va: VirtAddr,
        walk: impl FnOnce(VirtAddr) -> Option<Translation>,
    ) -> CpuAccess {
        if let Some(pa) = self.lookup(va) {
            bump(&self.tlb_hits);
            return CpuAccess::Mapped(pa);
        }
        match walk(va) {
            Some(t) => {
                self.insert_leaf(va, t.size, t.frame, t.attrs);
                CpuAccess::Mapped(t.pa)
            }
            None => CpuAccess::Fault,
        }
    }

    /// Translates `va` as the MMU would with the tables rooted at `root` in `mem`, in format
    /// `arch`: a cached leaf wins; otherwise the walk starts at the deepest table the walk
    /// caches hold for `va` (the root if none), reads entries from `mem`, caches every table it
    /// passes through and the leaf (with the effective attributes over all levels). A walk that
    /// meets an invalid entry, an unreachable table or a table entry where the format has none
    /// faults; the steps before the fault stay cached, as hardware may keep them.
    ///
    /// ```
    /// use awk_paging::emu::{CpuAccess, EmuArch, EmuMemory, EmuTlb};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let arch = EmuArch::default();
    /// let mut pt = PageTable::new(arch, &mem, &mem, NoTlb).unwrap();
    /// let f = mem.allocate_data_frame().unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x2000), f, PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// let tlb = EmuTlb::new();
    /// assert_eq!(tlb.access_walk(&mem, &arch, pt.root(), VirtAddr::new(0x3000)), CpuAccess::Fault);
    /// // The second walk starts from the cached level-0 table.
    /// assert_eq!(tlb.access_walk(&mem, &arch, pt.root(), VirtAddr::new(0x2000)), CpuAccess::Mapped(f));
    /// assert_eq!((tlb.walks(), tlb.walk_cache_hits(), tlb.cached_walks()), (2, 1, 3));
    /// ```
    pub fn access_walk<A: Arch>(
        &self,
        mem: &EmuMemory,
        arch: &A,
        root: PhyAddr,
        va: VirtAddr,
    ) -> CpuAccess {
        if let Some(pa) = self.lookup(va) {
            bump(&self.tlb_hits);
            return CpuAccess::Mapped(pa);
        }
        bump(&self.walk_count);
        let asid = self.current.get();
        let top = arch.levels().saturating_sub(1);
        let (mut level, mut table, mut limits) = (top, root, Limits::NONE);
        {
            let walks = self.walks.borrow();
            if let Some((l, w)) =
                (0..top).find_map(|l| walks.get(&(asid, l, walk_tag(va, l))).map(|w| (l, *w)))
            {
                bump(&self.walk_cache_hits);
                (level, table, limits) = (l, w.table, w.limits);
            }
        }
        loop {
            let at = table
                .as_u64()
                .checked_add(8 * table_index(va, level) as u64);
            let Some(raw) = at.and_then(|a| mem.read_u64(PhyAddr::new(a))) else {
                return CpuAccess::Fault;
            };
            match arch.decode(raw, level) {
                Entry::Invalid => return CpuAccess::Fault,
                Entry::Table(next) if level > 0 => {
                    limits = limits.union(arch.table_limits(raw, level));
                    level -= 1;
                    self.walks.borrow_mut().insert(
                        (asid, level, walk_tag(va, level)),
                        Walked {
                            table: next,
                            limits,
                        },
                    );
                    table = next;
                }
                Entry::Table(_) => return CpuAccess::Fault,
                Entry::Leaf(frame) => {
                    let Some(size) = PageSize::from_level(level) else {
                        return CpuAccess::Fault;
                    };
                    let attrs = arch.effective_attrs(raw, level, limits);
                    let global = arch.leaf_attrs(raw, level).global;
                    let tag = if global { None } else { Some(asid) };
                    self.leaves.borrow_mut().insert(
                        (tag, size, va.as_u64() >> size.shift()),
                        Cached { frame, attrs },
                    );
                    return CpuAccess::Mapped(PhyAddr::new(frame.as_u64() | va.page_offset(size)));
                }
            }
        }
    }

    fn insert_leaf(&self, va: VirtAddr, size: PageSize, frame: PhyAddr, attrs: Attrs) {
        let tag = if attrs.global {
            None
        } else {
            Some(self.current.get())
        };
        self.leaves.borrow_mut().insert(
            (tag, size, va.as_u64() >> size.shift()),
            Cached { frame, attrs },
        );
    }

    /// The cached leaf for `va` under the current ASID (or a global one).
    fn cached_leaf(&self, va: VirtAddr) -> Option<(Cached, PageSize)> {
        let leaves = self.leaves.borrow();
        let asid = self.current.get();
        PageSize::ALL.iter().find_map(|&s| {
            let tag = va.as_u64() >> s.shift();
            leaves
                .get(&(Some(asid), s, tag))
                .or_else(|| leaves.get(&(None, s, tag)))
                .map(|c| (*c, s))
        })
    }

    fn lookup(&self, va: VirtAddr) -> Option<PhyAddr> {
        self.cached_leaf(va)
            .map(|(c, s)| PhyAddr::new(c.frame.as_u64() | va.page_offset(s)))
    }

    /// The attributes the TLB holds for `va` under the current ASID, if any (what a permission
    /// check would use).
    ///
    /// ```
    /// assert!(awk_paging::emu::EmuTlb::new().cached_attrs(awk_paging::VirtAddr::new(0)).is_none());
    /// ```
    #[must_use]
    pub fn cached_attrs(&self, va: VirtAddr) -> Option<Attrs> {
        self.cached_leaf(va).map(|(c, _)| c.attrs)
    }

    /// The table the walk caches hold at `level` for `va` under the current ASID, if any.
    ///
    /// ```
    /// assert!(awk_paging::emu::EmuTlb::new().cached_table(awk_paging::VirtAddr::new(0), 0).is_none());
    /// ```
    #[must_use]
    pub fn cached_table(&self, va: VirtAddr, level: u8) -> Option<PhyAddr> {
        self.walks
            .borrow()
            .get(&(self.current.get(), level, walk_tag(va, level)))
            .map(|w| w.table)
    }

    /// Invalidates the page containing `va`: leaf entries of every size, and with `walks` the
    /// walk-cache entries for `va` at every level. `asid`: `Some(n)` hits ASID `n`'s entries and
    /// global leaves (`tlbi vae1is`/`vale1is`, `invlpg` with PCIDs); `None` hits every ASID
    /// (`tlbi vaae1is`/`vaale1is`). Counts nothing (the [`Tlb`] methods count).
    ///
    /// ```
    /// use awk_paging::emu::EmuTlb;
    /// use awk_paging::{Attrs, Flags, PageSize, PhyAddr, Translation, VirtAddr};
    /// let tlb = EmuTlb::new();
    /// let va = VirtAddr::new(0x1000);
    /// let t = Translation { pa: PhyAddr::new(0x5000), page: va, frame: PhyAddr::new(0x5000),
    ///     size: PageSize::Size4K, attrs: Attrs::from(Flags::RO) };
    /// tlb.access(va, |_| Some(t));
    /// tlb.invalidate_page(va, Some(9), false); // another ASID: kept
    /// assert_eq!(tlb.cached(), 1);
    /// tlb.invalidate_page(va, None, false);
    /// assert_eq!(tlb.cached(), 0);
    /// ```
    pub fn invalidate_page(&self, va: VirtAddr, asid: Option<u16>, walks: bool) {
        let hits_tag = |tag: Option<u16>| match (asid, tag) {
            (None, _) | (_, None) => true,
            (Some(a), Some(t)) => a == t,
        };
        self.leaves
            .borrow_mut()
            .retain(|&(tag, s, page), _| !(hits_tag(tag) && page == va.as_u64() >> s.shift()));
        if walks {
            self.walks.borrow_mut().retain(|&(a, l, prefix), _| {
                !(asid.is_none_or(|n| n == a) && prefix == walk_tag(va, l))
            });
        }
    }

    /// Invalidates every leaf overlapping `[first, first + pages × 4 KiB)` for `asid` (`None`:
    /// every ASID) and, if `walks`, every walk entry naming a table whose span overlaps it
    /// (`tlbi rvae1is`; `rvale1is` without `walks`). Counts nothing.
    ///
    /// ```
    /// use awk_paging::emu::EmuTlb;
    /// use awk_paging::{Attrs, Flags, PageSize, PhyAddr, Translation, VirtAddr};
    /// let tlb = EmuTlb::new();
    /// let va = VirtAddr::new(0x5000);
    /// let t = Translation { pa: PhyAddr::new(0x9000), page: va, frame: PhyAddr::new(0x9000),
    ///     size: PageSize::Size4K, attrs: Attrs::from(Flags::RO) };
    /// tlb.access(va, |_| Some(t));
    /// tlb.invalidate_range(VirtAddr::new(0x6000), 4, None, false); // after it: kept
    /// assert_eq!(tlb.cached(), 1);
    /// tlb.invalidate_range(VirtAddr::new(0x4000), 2, None, false);
    /// assert_eq!(tlb.cached(), 0);
    /// ```
    pub fn invalidate_range(&self, first: VirtAddr, pages: u64, asid: Option<u16>, walks: bool) {
        let lo = first.as_u64();
        let hi = lo.saturating_add(pages.saturating_mul(4096));
        let overlaps = |start: u64, shift: u32| {
            let end = start.saturating_add(1u64.checked_shl(shift).unwrap_or(u64::MAX));
            start < hi && lo < end
        };
        let hits_tag = |tag: Option<u16>| match (asid, tag) {
            (None, _) | (_, None) => true,
            (Some(a), Some(t)) => a == t,
        };
        self.leaves.borrow_mut().retain(|&(tag, s, page), _| {
            !(hits_tag(tag) && overlaps(page << s.shift(), s.shift()))
        });
        if walks {
            self.walks.borrow_mut().retain(|&(a, l, prefix), _| {
                let shift = 12 + 9 * (u32::from(l) + 1);
                let start = prefix.checked_shl(shift).unwrap_or(0);
                !(asid.is_none_or(|n| n == a) && (shift >= 64 || overlaps(start, shift)))
            });
        }
    }

    /// Invalidates every non-global leaf and every walk entry of ASID `asid` (`tlbi aside1is`;
    /// a CR3 load with PCIDs). Global leaves stay. Counts nothing.
    ///
    /// ```
    /// awk_paging::emu::EmuTlb::new().invalidate_asid(1);
    /// ```
    pub fn invalidate_asid(&self, asid: u16) {
        self.leaves
            .borrow_mut()
            .retain(|&(tag, _, _), _| tag != Some(asid));
        self.walks.borrow_mut().retain(|&(a, _, _), _| a != asid);
    }

    /// Invalidates everything, global entries included (`tlbi vmalle1is`; toggling CR4.PGE).
    /// Counts nothing.
    ///
    /// ```
    /// awk_paging::emu::EmuTlb::new().invalidate_all();
    /// ```
    pub fn invalidate_all(&self) {
        self.leaves.borrow_mut().clear();
        self.walks.borrow_mut().clear();
    }

    fn hook_flush_page(&self, va: VirtAddr, asid: Option<u16>) {
        bump(&self.page_flushes);
        self.invalidate_page(va, asid, true);
    }

    fn hook_flush_leaf(&self, va: VirtAddr, asid: Option<u16>) {
        bump(&self.leaf_flushes);
        self.invalidate_page(va, asid, false);
    }

    fn hook_flush_all(&self, asid: Option<u16>) {
        bump(&self.full_flushes);
        match asid {
            Some(a) => self.invalidate_asid(a),
            None => self.invalidate_all(),
        }
    }

    fn hook_order(&self) {
        bump(&self.order_barriers);
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    }

    /// Number of cached leaf translations (all ASIDs).
    #[must_use]
    pub fn cached(&self) -> usize {
        self.leaves.borrow().len()
    }

    /// Number of cached walk steps (all ASIDs).
    #[must_use]
    pub fn cached_walks(&self) -> usize {
        self.walks.borrow().len()
    }

    /// [`Tlb::flush_page`] calls so far (walk-cache-inclusive page invalidations).
    #[must_use]
    pub fn page_flushes(&self) -> usize {
        self.page_flushes.get()
    }

    /// [`Tlb::flush_leaf`] calls so far (leaf-only page invalidations).
    #[must_use]
    pub fn leaf_flushes(&self) -> usize {
        self.leaf_flushes.get()
    }

    /// [`Tlb::flush_all`] calls so far.
    #[must_use]
    pub fn full_flushes(&self) -> usize {
        self.full_flushes.get()
    }

    /// [`Tlb::publish`] calls so far.
    #[must_use]
    pub fn publishes(&self) -> usize {
        self.publishes.get()
    }

    /// [`Tlb::order_table_writes`] calls so far.
    #[must_use]
    pub fn order_barriers(&self) -> usize {
        self.order_barriers.get()
    }

    /// Table walks performed by [`access_walk`](Self::access_walk) (TLB misses).
    #[must_use]
    pub fn walks(&self) -> usize {
        self.walk_count.get()
    }

    /// Walks that started below the root thanks to a walk-cache entry.
    #[must_use]
    pub fn walk_cache_hits(&self) -> usize {
        self.walk_cache_hits.get()
    }

    /// Accesses answered from a cached leaf.
    #[must_use]
    pub fn tlb_hits(&self) -> usize {
        self.tlb_hits.get()
    }
}

#[inline]
fn bump(c: &Cell<usize>) {
    c.set(c.get().saturating_add(1));
}

impl Tlb for EmuTlb {
    fn flush_page(&self, va: VirtAddr) {
        self.hook_flush_page(va, self.hook);
    }

    /// The model has range invalidation (as a CPU with FEAT_TLBIRANGE): counted as one page
    /// flush.
    fn flush_range(&self, first: VirtAddr, pages: u64, walks: bool) -> bool {
        bump(&self.page_flushes);
        self.invalidate_range(first, pages, self.hook, walks);
        true
    }

    fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
        self.hook_flush_page(va, Some(asid));
    }

    fn flush_leaf_asid(&self, va: VirtAddr, asid: u16) {
        self.hook_flush_leaf(va, Some(asid));
    }

    fn flush_asid(&self, asid: u16) {
        self.hook_flush_all(Some(asid));
    }

    fn flush_leaf(&self, va: VirtAddr) {
        self.hook_flush_leaf(va, self.hook);
    }

    fn flush_all(&self) {
        self.hook_flush_all(self.hook);
    }

    fn publish(&self) {
        bump(&self.publishes);
    }

    fn order_table_writes(&self) {
        self.hook_order();
    }
}

impl Tlb for AsidTlb<'_> {
    fn flush_page(&self, va: VirtAddr) {
        self.tlb.hook_flush_page(va, self.asid);
    }

    fn flush_leaf(&self, va: VirtAddr) {
        self.tlb.hook_flush_leaf(va, self.asid);
    }

    fn flush_all(&self) {
        self.tlb.hook_flush_all(self.asid);
    }

    fn publish(&self) {
        bump(&self.tlb.publishes);
    }

    fn order_table_writes(&self) {
        self.tlb.hook_order();
    }
}

impl Tlb for std::rc::Rc<EmuTlb> {
    fn flush_page(&self, va: VirtAddr) {
        (**self).flush_page(va)
    }

    fn flush_range(&self, first: VirtAddr, pages: u64, walks: bool) -> bool {
        (**self).flush_range(first, pages, walks)
    }

    fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
        (**self).flush_page_asid(va, asid)
    }

    fn flush_leaf_asid(&self, va: VirtAddr, asid: u16) {
        (**self).flush_leaf_asid(va, asid)
    }

    fn flush_asid(&self, asid: u16) {
        (**self).flush_asid(asid)
    }

    fn flush_leaf(&self, va: VirtAddr) {
        (**self).flush_leaf(va)
    }

    fn flush_all(&self) {
        (**self).flush_all()
    }

    fn publish(&self) {
        (**self).publish()
    }

    fn order_table_writes(&self) {
        (**self).order_table_writes()
    }
}
