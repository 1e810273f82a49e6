//! A translation cache in front of [`ForeignTable::translate`]: a fixed number of pages,
//! direct-mapped, invalidated explicitly or by a generation number, with hit and miss
//! counters (memflow's cached translation, without a heap).

use super::classify::Classify;
use super::read::PhysRead;
use super::translate::{Fault, Path, Resolved};
use super::walk::ForeignTable;
use crate::arch::Limits;
use crate::{PageSize, PhyAddr, VirtAddr};

/// Hit and miss counts of a [`TranslationCache`].
///
/// ```
/// let s = awk_paging::inspect::CacheStats::default();
/// assert_eq!((s.hits, s.misses, s.flushes), (0, 0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Translations answered from the cache.
    pub hits: u64,
    /// Translations that walked the tables.
    pub misses: u64,
    /// Times the whole cache was dropped (explicitly, by a new generation or another root).
    pub flushes: u64,
}

/// One cached page in 32 bytes (two per CPU cache line): the leaf and the limits above it,
/// from which a hit recomputes the rest of [`Resolved`] (only what the caller uses, once
/// inlined).
#[derive(Clone, Copy)]
struct Line {
    /// `key + 1` of the page it holds; 0: empty.
    tag: u64,
    /// The page's frame.
    frame: PhyAddr,
    /// The leaf entry.
    raw: u64,
    /// The restrictions above it.
    limits: Limits,
    /// The leaf's level.
    level: u8,
    /// Used more recently than the other line of its pair.
    recent: bool,
}

impl Line {
    /// Whether the page it holds contains `va`.
    #[inline(always)]
    fn holds(&self, va: VirtAddr) -> bool {
        let shift = 12 + 9 * u32::from(self.level.min(2));
        self.tag != 0 && ((va.as_u64() >> shift) << 2 | u64::from(self.level)) + 1 == self.tag
    }
}

const SIZES: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

/// `(page number << 2 | level)`: one key per page of any size.
#[inline(always)]
fn key(va: VirtAddr, size: PageSize) -> u64 {
    ((va.as_u64() >> size.shift()) << 2) | u64::from(size.level())
}

/// Up to `N` translated pages of one table: two-way set-associative by page number (each page
/// may sit in either line of its pair; a new one replaces the less recently used).
///
/// Only successful translations are kept. A cache serves one root at a time (another root
/// drops it), and the owner says when the tables changed: either explicitly
/// ([`flush`](Self::flush), [`invalidate`](Self::invalidate)) or by handing a generation
/// number to [`sync`](Self::sync) — a counter the owner of the tables bumps on every change
/// (a VM's exit count, a dump's sequence number, a kernel's page-table edit counter).
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::inspect::{ForeignTable, LiveMem, TranslationCache};
/// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
/// let mem = EmuMemory::new(8);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x8000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
/// let mut cache = TranslationCache::<64>::new();
/// cache.sync(1);
/// assert_eq!(cache.translate(&t, VirtAddr::new(0x1010)).unwrap().pa, PhyAddr::new(0x8010));
/// assert_eq!(cache.translate(&t, VirtAddr::new(0x1020)).unwrap().pa, PhyAddr::new(0x8020));
/// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
///
/// // The tables change: the owner bumps its generation and the cache forgets.
/// unsafe { pt.unmap(VirtAddr::new(0x1000), PageSize::Size4K) }.unwrap().1.flush();
/// assert!(cache.translate(&t, VirtAddr::new(0x1000)).is_ok()); // stale: nobody said so
/// cache.sync(2);
/// assert!(cache.translate(&t, VirtAddr::new(0x1000)).is_err());
/// ```
pub struct TranslationCache<const N: usize> {
    lines: [Line; N],
    generation: u64,
    root: Option<PhyAddr>,
    stats: CacheStats,
    /// The line of the last hit or fill, checked first (consecutive addresses mostly share
    /// a page).
    mru: usize,
    /// Bit `level`: pages of that level were filled since the last flush (lookups skip the
    /// sizes the cache cannot hold).
    sizes: u8,
}

impl<const N: usize> Default for TranslationCache<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Debug for TranslationCache<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TranslationCache")
            .field("lines", &N)
            .field("generation", &self.generation)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<const N: usize> TranslationCache<N> {
    const LINES: () = assert!(N > 0, "a translation cache needs at least one line");

    /// An empty cache at generation 0.
    ///
    /// ```
    /// let c = awk_paging::inspect::TranslationCache::<16>::new();
    /// assert_eq!(c.generation(), 0);
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::LINES;
        TranslationCache {
            lines: [Line {
                tag: 0,
                frame: PhyAddr::ZERO,
                raw: 0,
                limits: Limits::NONE,
                level: 0,
                recent: false,
            }; N],
            generation: 0,
            root: None,
            mru: 0,
            sizes: 0,
            stats: CacheStats {
                hits: 0,
                misses: 0,
                flushes: 0,
            },
        }
    }

    /// The counters.
    ///
    /// ```
    /// assert_eq!(awk_paging::inspect::TranslationCache::<4>::new().stats().hits, 0);
    /// ```
    #[must_use]
    pub const fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The generation the cache holds translations of.
    ///
    /// ```
    /// let mut c = awk_paging::inspect::TranslationCache::<4>::new();
    /// c.sync(7);
    /// assert_eq!(c.generation(), 7);
    /// ```
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// Drops every translation if `generation` is not the one the cache holds; returns whether
    /// it did.
    ///
    /// ```
    /// let mut c = awk_paging::inspect::TranslationCache::<4>::new();
    /// assert!(c.sync(1));
    /// assert!(!c.sync(1));
    /// assert_eq!(c.stats().flushes, 1);
    /// ```
    pub fn sync(&mut self, generation: u64) -> bool {
        if generation == self.generation {
            return false;
        }
        self.flush();
        self.generation = generation;
        true
    }

    /// Drops every translation.
    ///
    /// ```
    /// let mut c = awk_paging::inspect::TranslationCache::<4>::new();
    /// c.flush();
    /// assert_eq!(c.stats().flushes, 1);
    /// ```
    pub fn flush(&mut self) {
        for l in &mut self.lines {
            l.tag = 0;
        }
        self.sizes = 0;
        self.stats.flushes += 1;
    }

    /// Drops every cached page that overlaps `[va, va + len)` (wrapping at the top of the
    /// address space is clamped).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::inspect::{ForeignTable, LiveMem, TranslationCache};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// # unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x8000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// # let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
    /// let mut cache = TranslationCache::<8>::new();
    /// cache.translate(&t, VirtAddr::new(0x1000)).unwrap();
    /// cache.invalidate(VirtAddr::new(0x1ff8), 8);
    /// cache.translate(&t, VirtAddr::new(0x1000)).unwrap();
    /// assert_eq!(cache.stats().misses, 2);
    /// ```
    pub fn invalidate(&mut self, va: VirtAddr, len: u64) {
        let start = va.as_u64();
        let end = start.saturating_add(len);
        for l in &mut self.lines {
            if l.tag != 0 {
                let size = PageSize::from_level(l.level).unwrap_or(PageSize::Size1G);
                // The page number times the size: the page's first address.
                let p = ((l.tag - 1) >> 2) << size.shift();
                if p < end && start < p.saturating_add(size.bytes()) {
                    l.tag = 0;
                }
            }
        }
    }

    #[inline(always)]
    fn slot(k: u64) -> usize {
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % N
    }

    /// The cached page containing `va`, if any, as a translation of `va`.
    #[inline(always)]
    fn lookup<A: Classify>(&mut self, arch: &A, va: VirtAddr) -> Option<Resolved> {
        let i = match self.lines.get(self.mru) {
            Some(l) if l.holds(va) => self.mru,
            _ => self.find(va)?,
        };
        let l = &self.lines[i];
        Resolved::of(arch, va, l.frame, l.level, l.raw, l.limits)
    }

    /// The line holding the page of `va` (marked as recently used).
    #[inline(always)]
    fn find(&mut self, va: VirtAddr) -> Option<usize> {
        for size in SIZES {
            if self.sizes & (1 << size.level()) == 0 {
                continue;
            }
            let k = key(va, size);
            let (a, b) = Self::pair(k);
            for (i, other) in [(a, b), (b, a)] {
                if self.lines[i].tag == k.wrapping_add(1) {
                    self.touch(i, other);
                    return Some(i);
                }
            }
        }
        None
    }

    /// The two lines (ways) a key may occupy (one line twice if `N` is 1).
    #[inline(always)]
    fn pair(k: u64) -> (usize, usize) {
        let a = Self::slot(k) & !1;
        (a, (a + 1).min(N - 1))
    }

    #[inline(always)]
    fn touch(&mut self, i: usize, other: usize) {
        self.lines[other].recent = false;
        self.lines[i].recent = true;
        self.mru = i;
    }

    /// Puts `r` into the less recently used line of its pair.
    #[inline(always)]
    fn fill(&mut self, r: &Resolved) {
        let k = key(r.page, r.size);
        let (a, b) = Self::pair(k);
        let (i, other) = if self.lines[a].recent { (b, a) } else { (a, b) };
        self.sizes |= 1 << r.level.min(7);
        self.lines[i] = Line {
            tag: k.wrapping_add(1),
            frame: r.frame,
            raw: r.raw,
            limits: r.limits,
            level: r.level,
            recent: true,
        };
        self.touch(i, other);
    }

    #[inline(always)]
    fn serve<A: Classify, R: PhysRead>(&mut self, table: &ForeignTable<A, R>) {
        if self.root != Some(table.root) {
            if self.root.is_some() {
                self.flush();
            }
            self.root = Some(table.root);
        }
    }

    /// Translates `va` through `table`, from the cache if it holds the page.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::inspect::{ForeignTable, LiveMem, TranslationCache};
    /// # use awk_paging::{NoTlb, PageTable, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// # let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
    /// let mut cache = TranslationCache::<8>::new();
    /// assert!(cache.translate(&t, VirtAddr::new(0x1000)).unwrap_err().is_not_mapped());
    /// assert_eq!(cache.stats().misses, 1); // faults are not cached
    /// ```
    #[inline(always)]
    pub fn translate<A: Classify, R: PhysRead>(
        &mut self,
        table: &ForeignTable<A, R>,
        va: VirtAddr,
    ) -> Result<Resolved, Fault> {
        self.serve(table);
        if let Some(hit) = self.lookup(&table.arch, va) {
            self.stats.hits += 1;
            return Ok(hit);
        }
        self.stats.misses += 1;
        let r = table.translate(va)?;
        self.fill(&r);
        Ok(r)
    }

    /// Translates a batch through the cache; the misses share their walks as in
    /// [`ForeignTable::translate_many`].
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::inspect::{ForeignTable, LiveMem, TranslationCache};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// # unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x8000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
    /// let mut cache = TranslationCache::<8>::new();
    /// let mut ok = 0;
    /// cache.translate_many(&t, [0x1000, 0x1008, 0x1010].map(VirtAddr::new), |_, r| ok += r.is_ok() as u32);
    /// assert_eq!((ok, cache.stats().hits, cache.stats().misses), (3, 2, 1));
    /// ```
    pub fn translate_many<A: Classify, R: PhysRead>(
        &mut self,
        table: &ForeignTable<A, R>,
        vas: impl IntoIterator<Item = VirtAddr>,
        mut f: impl FnMut(VirtAddr, Result<Resolved, Fault>),
    ) {
        self.serve(table);
        let mut path = Path::new();
        for va in vas {
            if let Some(hit) = self.lookup(&table.arch, va) {
                self.stats.hits += 1;
                f(va, Ok(hit));
                continue;
            }
            self.stats.misses += 1;
            let r = table.translate_on(va, &mut path);
            if let Ok(r) = &r {
                self.fill(r);
            }
            f(va, r);
        }
    }
}
