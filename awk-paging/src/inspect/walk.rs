//! The one read-only walker: a range of the address space, table by table, with callbacks per
//! leaf, per hole, per table entered and left, and per broken spot — bounded in work, never
//! endless, whatever the tables hold.

use core::fmt;
use core::ops::ControlFlow;

use super::read::{PhysRead, ReadError};
use crate::arch::{Arch, Entry, Limits};
use crate::table::visit::{self, Chunk, Source, Step};
use crate::table::{Piece, MAX_LEVELS};
use crate::{AddrError, Attrs, PageSize, PhyAddr, VirtAddr, ENTRIES};

/// Translation tables rooted at `root`, read through a [`PhysRead`]: another machine's, a
/// memory dump's, or the running kernel's own through [`LiveMem`](super::LiveMem). Read-only;
/// every entry is read afresh on every walk.
///
/// Walks are bounded: a table pointing back into its own path is reported as a loop, and the
/// number of entries read per walk is capped by a budget (tables shared below several entries
/// would otherwise cost up to 512 × levels visits per level).
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::inspect::{ForeignTable, LiveMem};
/// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
///
/// let mem = EmuMemory::new(16);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// unsafe { pt.map(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RW) }
///     .unwrap()
///     .flush();
/// // The same tables, as a foreign reader sees them.
/// let foreign = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
/// let t = foreign.translate(VirtAddr::new(0x20_1234)).unwrap();
/// assert_eq!(t.pa, PhyAddr::new(0x40_1234));
/// assert!(t.access.kernel_write && !t.access.kernel_exec);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ForeignTable<A, R> {
    pub(super) arch: A,
    pub(super) mem: R,
    pub(super) root: PhyAddr,
    budget: u64,
}

impl<A: Arch, R: PhysRead> ForeignTable<A, R> {
    /// The default budget of entries one walk may read: 2^26 (every entry of 128 Ki tables,
    /// 512 MiB of tables), far beyond any real address space's tables.
    pub const DEFAULT_BUDGET: u64 = 1 << 26;

    /// The tables of regime `arch` rooted at `root` (its low 12 bits — CR3's PCID or flags,
    /// TTBR's CnP — are ignored, as the MMU ignores them), read through `mem`.
    ///
    /// ```
    /// use awk_paging::emu::EmuArch;
    /// use awk_paging::inspect::{ForeignTable, RawDump};
    /// use awk_paging::PhyAddr;
    /// let t = ForeignTable::new(EmuArch::default(), RawDump::new(PhyAddr::new(0), &[]), PhyAddr::new(0x5018));
    /// assert_eq!(t.root(), PhyAddr::new(0x5000));
    /// ```
    pub fn new(arch: A, mem: R, root: PhyAddr) -> Self {
        ForeignTable {
            arch,
            mem,
            root: PhyAddr::new(root.as_u64() & !0xfff),
            budget: Self::DEFAULT_BUDGET,
        }
    }

    /// The same tables with a different budget of entries per walk (at least 1).
    ///
    /// ```
    /// use awk_paging::emu::EmuArch;
    /// use awk_paging::inspect::{ForeignTable, RawDump};
    /// use awk_paging::PhyAddr;
    /// let t = ForeignTable::new(EmuArch::default(), RawDump::new(PhyAddr::new(0), &[]), PhyAddr::new(0));
    /// assert_eq!(t.with_budget(0).budget(), 1);
    /// ```
    #[must_use]
    pub fn with_budget(mut self, entries: u64) -> Self {
        self.budget = entries.max(1);
        self
    }

    /// The budget of entries per walk.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuArch, inspect::{ForeignTable, RawDump}, PhyAddr};
    /// # let t = ForeignTable::new(EmuArch::default(), RawDump::new(PhyAddr::new(0), &[]), PhyAddr::new(0));
    /// assert_eq!(t.budget(), ForeignTable::<EmuArch, RawDump>::DEFAULT_BUDGET);
    /// ```
    #[must_use]
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The root table (what CR3 / TTBRn would hold, low bits cleared).
    ///
    /// ```
    /// # use awk_paging::{emu::EmuArch, inspect::{ForeignTable, RawDump}, PhyAddr};
    /// let t = ForeignTable::new(EmuArch::default(), RawDump::new(PhyAddr::new(0), &[]), PhyAddr::new(0x3000));
    /// assert_eq!(t.root(), PhyAddr::new(0x3000));
    /// ```
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.root
    }

    /// The translation regime.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuArch, inspect::{ForeignTable, RawDump}, PhyAddr};
    /// # let t = ForeignTable::new(EmuArch::default(), RawDump::new(PhyAddr::new(0), &[]), PhyAddr::new(0));
    /// assert_eq!(*t.arch(), EmuArch::default());
    /// ```
    #[must_use]
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The reader.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuArch, inspect::{ForeignTable, RawDump}, PhyAddr};
    /// # let t = ForeignTable::new(EmuArch::default(), RawDump::new(PhyAddr::new(0), &[0; 8]), PhyAddr::new(0));
    /// assert_eq!(t.mem().len(), 8);
    /// ```
    #[must_use]
    pub fn mem(&self) -> &R {
        &self.mem
    }

    /// Levels walked (the regime's, at most 5).
    #[inline(always)]
    pub(super) fn levels(&self) -> u8 {
        self.arch.levels().min(MAX_LEVELS as u8)
    }

    /// Entry `index` of the table at `table`.
    #[inline(always)]
    pub(super) fn read(&self, table: PhyAddr, index: usize) -> Result<u64, ReadError> {
        self.mem
            .read_u64(PhyAddr::new(table.as_u64().wrapping_add(8 * index as u64)))
    }

    /// Width of the table bits (indices and page offset) of the regime.
    #[inline(always)]
    fn span_bits(&self) -> u32 {
        12 + 9 * u32::from(self.levels())
    }

    /// Walks the whole address space the regime translates, in table order (for a two-halves
    /// space like x86's: the lower half, then the upper).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{ForeignTable, Leaf, LiveMem, Visitor};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// use core::ops::ControlFlow;
    ///
    /// let mem = EmuMemory::new(16);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// for va in [0x1000, 0xffff_8000_0000_0000] {
    ///     unsafe { pt.map(VirtAddr::new(va), PhyAddr::new(0x9000), PageSize::Size4K, Flags::RO) }
    ///         .unwrap()
    ///         .flush();
    /// }
    /// struct Pages(Vec<VirtAddr>);
    /// impl Visitor for Pages {
    ///     type Break = ();
    ///     fn leaf(&mut self, leaf: &Leaf) -> ControlFlow<()> {
    ///         self.0.push(leaf.va);
    ///         ControlFlow::Continue(())
    ///     }
    /// }
    /// let mut pages = Pages(Vec::new());
    /// ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root()).walk(&mut pages).unwrap();
    /// assert_eq!(pages.0, [VirtAddr::new(0x1000), VirtAddr::new(0xffff_8000_0000_0000)]);
    /// ```
    pub fn walk<V: Visitor>(&self, v: &mut V) -> Result<Walked, WalkError<V::Break>> {
        let end = 1u64 << self.span_bits();
        self.walk_bits(0, end, v)
    }

    /// Walks `first ..= last` (both translated by the regime, `first` not after `last` in table
    /// order). Leaves are reported whole (a page that starts before `first` too); holes and
    /// broken spots are clipped to the range.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{ForeignTable, Hole, LiveMem, Visitor, WalkError};
    /// use awk_paging::{AddrError, NoTlb, PageTable, VirtAddr};
    /// use core::ops::ControlFlow;
    ///
    /// let mem = EmuMemory::new(4);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// struct Holes(u64);
    /// impl Visitor for Holes {
    ///     type Break = ();
    ///     fn hole(&mut self, h: &Hole) -> ControlFlow<()> {
    ///         self.0 += h.len;
    ///         ControlFlow::Continue(())
    ///     }
    /// }
    /// let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
    /// let mut holes = Holes(0);
    /// let walked = t.walk_range(VirtAddr::new(0x1000), VirtAddr::new(0x4fff), &mut holes).unwrap();
    /// assert_eq!((holes.0, walked.entries), (0x4000, 1)); // one empty root entry covers it
    /// assert_eq!(
    ///     t.walk_range(VirtAddr::new(0x2000), VirtAddr::new(0x1000), &mut holes),
    ///     Err(WalkError::Range(AddrError::Overflow))
    /// );
    /// ```
    pub fn walk_range<V: Visitor>(
        &self,
        first: VirtAddr,
        last: VirtAddr,
        v: &mut V,
    ) -> Result<Walked, WalkError<V::Break>> {
        self.arch.check_va(first).map_err(WalkError::Range)?;
        self.arch.check_va(last).map_err(WalkError::Range)?;
        let mask = (1u64 << self.span_bits()) - 1;
        let (start, last) = (first.as_u64() & mask, last.as_u64() & mask);
        if start > last {
            return Err(WalkError::Range(AddrError::Overflow));
        }
        self.walk_bits(start, last + 1, v)
    }

    fn walk_bits<V: Visitor>(
        &self,
        start: u64,
        end: u64,
        v: &mut V,
    ) -> Result<Walked, WalkError<V::Break>> {
        let levels = self.levels();
        let mut cx = Cx {
            v,
            limits: [Limits::NONE; MAX_LEVELS + 1],
            depth: 0,
            left: self.budget,
            walked: Walked::default(),
            stop: None,
        };
        if levels == 0 {
            return Ok(cx.walked);
        }
        let root = self.root;
        let t = TableVisit {
            table: root,
            level: levels - 1,
            va: self.arch.va_from_bits(start),
            limits: Limits::NONE,
        };
        flow(cx.v.enter(&t))?;
        cx.walked.tables += 1;
        cx.depth = 1;
        let mut src = Foreign(self);
        if visit::walk(&mut src, root, levels - 1, start, end, &mut cx).is_err() {
            return Err(cx.stop.take().unwrap_or(WalkError::Budget {
                at: self.arch.va_from_bits(start),
            }));
        }
        flow(cx.v.leave(&t))?;
        Ok(cx.walked)
    }
}

/// A [`ForeignTable`] as the crate walker's [`Source`]: entries read through its
/// [`PhysRead`], named by their table and index.
struct Foreign<'t, A, R>(&'t ForeignTable<A, R>);

impl<A: Arch, R: PhysRead> Source for Foreign<'_, A, R> {
    type Arch = A;
    type Handle = ();

    #[inline(always)]
    fn arch(&self) -> &A {
        &self.0.arch
    }

    #[inline(always)]
    fn read(&self, table: PhyAddr, index: usize) -> Result<((), u64), PhyAddr> {
        self.0
            .read(table, index)
            .map(|raw| ((), raw))
            .map_err(|e| e.addr)
    }
}

/// The read-only walk as a visitor of the crate's walker: holes, leaves with the limits of
/// every table entry above them, tables entered and left, broken spots reported (and walked
/// around), and the entry budget. Where the walk must end (the visitor stopped it, the budget
/// ran out), the reason goes into `stop` and the walker is ended with `Err(())`.
struct Cx<'v, V: Visitor> {
    v: &'v mut V,
    /// `limits[d]`: the limits over the table at depth `d` (the root is at depth 1).
    limits: [Limits; MAX_LEVELS + 1],
    /// Tables on the path (the root counts).
    depth: usize,
    left: u64,
    walked: Walked,
    stop: Option<WalkError<V::Break>>,
}

impl<V: Visitor> Cx<'_, V> {
    /// `c` as the caller's `Continue` / `Break`: a break ends the walk.
    #[inline(always)]
    fn go(&mut self, c: ControlFlow<V::Break>) -> Result<(), ()> {
        match c {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(b) => {
                self.stop = Some(WalkError::Stopped(b));
                Err(())
            }
        }
    }

    /// Reports a broken spot (and counts it).
    fn broken(&mut self, b: Broken) -> Result<(), ()> {
        self.walked.broken += 1;
        let c = self.v.broken(&b);
        self.go(c)
    }

    /// Counts one entry against the budget (`Err` once it is spent).
    #[inline(always)]
    fn spend(&mut self, va: VirtAddr) -> Result<(), ()> {
        if self.left == 0 {
            self.stop = Some(WalkError::Budget { at: va });
            return Err(());
        }
        self.left -= 1;
        self.walked.entries += 1;
        Ok(())
    }
}

impl<A: Arch, R: PhysRead, V: Visitor> visit::Visitor<Foreign<'_, A, R>> for Cx<'_, V> {
    type Error = ();

    fn visit(&mut self, src: &mut Foreign<'_, A, R>, c: &Chunk<()>) -> Result<Step, ()> {
        let arch = src.0.arch;
        let (level, piece, raw, table) = (c.level, c.piece, c.raw, c.table);
        let va = arch.va_from_bits(piece.start);
        self.spend(va)?;
        let len = piece.end - piece.start;
        let broken = |kind| Broken {
            va,
            len,
            level,
            table,
            index: piece.index,
            kind,
        };
        let limits = self.limits[self.depth];
        match c.entry {
            Entry::Invalid => {
                let h = self.v.hole(&Hole {
                    va,
                    len,
                    level,
                    raw,
                    table,
                    index: piece.index,
                });
                self.go(h)?;
            }
            Entry::Leaf(frame) => match PageSize::from_level(level) {
                Some(size) => {
                    self.walked.leaves += 1;
                    let l = self.v.leaf(&Leaf {
                        va: arch.va_from_bits(piece.base),
                        frame,
                        size,
                        level,
                        raw,
                        limits,
                        attrs: arch.effective_attrs(raw, level, limits),
                        table,
                        index: piece.index,
                    });
                    self.go(l)?;
                }
                None => self.broken(broken(BrokenKind::LeafAtLevel(raw)))?,
            },
            Entry::Table(_) if level == 0 => {
                self.broken(broken(BrokenKind::TableAtLastLevel(raw)))?;
            }
            Entry::Table(next) if c.looped => self.broken(broken(BrokenKind::Loop(next)))?,
            Entry::Table(_) if self.depth >= MAX_LEVELS => {
                self.broken(broken(BrokenKind::TableAtLastLevel(raw)))?;
            }
            Entry::Table(next) => {
                let below = limits.union(arch.table_limits(raw, level));
                let t = TableVisit {
                    table: next,
                    level: level - 1,
                    va,
                    limits: below,
                };
                let e = self.v.enter(&t);
                self.go(e)?;
                self.walked.tables += 1;
                self.depth += 1;
                self.limits[self.depth] = below;
                return Ok(Step::Into(next));
            }
        }
        Ok(Step::Next)
    }

    fn leave(
        &mut self,
        src: &mut Foreign<'_, A, R>,
        c: &Chunk<()>,
        child: PhyAddr,
    ) -> Result<(), ()> {
        let arch = src.0.arch;
        let t = TableVisit {
            table: child,
            level: c.level - 1,
            va: arch.va_from_bits(c.piece.start),
            limits: self.limits[self.depth],
        };
        self.depth -= 1;
        let l = self.v.leave(&t);
        self.go(l)
    }

    fn unreadable(
        &mut self,
        src: &mut Foreign<'_, A, R>,
        table: PhyAddr,
        level: u8,
        piece: &Piece,
        end: u64,
        addr: PhyAddr,
    ) -> Result<(), ()> {
        let va = src.0.arch.va_from_bits(piece.start);
        self.spend(va)?;
        // The rest of this table's share of the range is unreadable too (or at least
        // untrustworthy): one report for all of it.
        self.broken(Broken {
            va,
            len: end - piece.start,
            level,
            table,
            index: piece.index,
            kind: BrokenKind::Unreadable(addr),
        })
    }

    fn broken(&self, _at: u64, _recursive: bool) {}
}

#[inline(always)]
fn flow<B>(c: ControlFlow<B>) -> Result<(), WalkError<B>> {
    match c {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(b) => Err(WalkError::Stopped(b)),
    }
}

/// What a walk went through.
///
/// ```
/// let w = awk_paging::inspect::Walked::default();
/// assert_eq!((w.tables, w.entries, w.leaves, w.broken), (0, 0, 0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Tables entered (the root included).
    pub tables: u64,
    /// Entries read (what the budget counts).
    pub entries: u64,
    /// Leaves reported.
    pub leaves: u64,
    /// Broken spots reported.
    pub broken: u64,
}

/// Why a walk ended early.
///
/// ```
/// use awk_paging::inspect::WalkError;
/// use awk_paging::VirtAddr;
/// let e: WalkError<()> = WalkError::Budget { at: VirtAddr::new(0x1000) };
/// assert_eq!(e.to_string(), "walk budget exhausted at 0x1000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError<B> {
    /// The visitor stopped it.
    Stopped(B),
    /// The range is not translated by the regime, or ends before it starts
    /// ([`AddrError::Overflow`]).
    Range(AddrError),
    /// The budget of entries ran out; `at` is the next address the walk would have read.
    Budget {
        /// Where the walk stopped.
        at: VirtAddr,
    },
}

impl<B: fmt::Debug> fmt::Display for WalkError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Stopped(b) => write!(f, "walk stopped by the visitor: {b:?}"),
            WalkError::Range(e) => write!(f, "bad walk range: {e}"),
            WalkError::Budget { at } => write!(f, "walk budget exhausted at {:#x}", at.as_u64()),
        }
    }
}

/// One leaf found by a walk.
///
/// ```
/// use awk_paging::inspect::Leaf;
/// fn pages(l: &Leaf) -> u64 { l.size.bytes() / 4096 }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First virtual address of the page.
    pub va: VirtAddr,
    /// First physical address of the page.
    pub frame: PhyAddr,
    /// The page size.
    pub size: PageSize,
    /// The level of the entry (0 = 4 KiB).
    pub level: u8,
    /// The raw entry.
    pub raw: u64,
    /// The restrictions of every table entry above it.
    pub limits: Limits,
    /// The attributes the MMU grants ([`Arch::effective_attrs`]).
    pub attrs: Attrs,
    /// The table holding the entry.
    pub table: PhyAddr,
    /// The entry's index in it.
    pub index: usize,
}

/// A part of the walked range that an invalid entry covers.
///
/// ```
/// use awk_paging::inspect::Hole;
/// fn end(h: &Hole) -> u64 { h.va.as_u64() + h.len }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    /// First virtual address.
    pub va: VirtAddr,
    /// Bytes (the entry's span, clipped to the range).
    pub len: u64,
    /// The level of the entry.
    pub level: u8,
    /// The raw entry (0 for an empty one; anything else says why with
    /// [`Classify::invalid`](super::Classify::invalid)).
    pub raw: u64,
    /// The table holding the entry.
    pub table: PhyAddr,
    /// The entry's index in it.
    pub index: usize,
}

/// A table entered (or left) by a walk.
///
/// ```
/// use awk_paging::inspect::TableVisit;
/// fn is_root(t: &TableVisit, levels: u8) -> bool { t.level + 1 == levels }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableVisit {
    /// Its physical address.
    pub table: PhyAddr,
    /// Its level (the root: levels − 1).
    pub level: u8,
    /// The first address of the walked range inside it.
    pub va: VirtAddr,
    /// The restrictions of every table entry above and including the one pointing at it.
    pub limits: Limits,
}

/// A part of the range the walk could not follow.
///
/// ```
/// use awk_paging::inspect::{Broken, BrokenKind};
/// fn is_loop(b: &Broken) -> bool { matches!(b.kind, BrokenKind::Loop(_)) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken {
    /// First virtual address it concerns.
    pub va: VirtAddr,
    /// Bytes it concerns (for an unreadable table: the rest of that table's share of the range).
    pub len: u64,
    /// The level of the entry.
    pub level: u8,
    /// The table holding the entry.
    pub table: PhyAddr,
    /// The entry's index in it.
    pub index: usize,
    /// What is wrong.
    pub kind: BrokenKind,
}

/// What is wrong at a [`Broken`] spot.
///
/// ```
/// use awk_paging::inspect::BrokenKind;
/// use awk_paging::PhyAddr;
/// assert_eq!(BrokenKind::Loop(PhyAddr::new(0x1000)).to_string(), "table 0x1000 is already on the walk's path (loop)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokenKind {
    /// The entry (its table) could not be read at this physical address.
    Unreadable(PhyAddr),
    /// The entry points to a table already on the path from the root.
    Loop(PhyAddr),
    /// A table entry where the format allows none (the raw entry).
    TableAtLastLevel(u64),
    /// A leaf at a level without a page size (the raw entry).
    LeafAtLevel(u64),
}

impl fmt::Display for BrokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenKind::Unreadable(pa) => write!(f, "{:#x} not readable", pa.as_u64()),
            BrokenKind::Loop(t) => write!(
                f,
                "table {:#x} is already on the walk's path (loop)",
                t.as_u64()
            ),
            BrokenKind::TableAtLastLevel(raw) => {
                write!(f, "table entry {raw:#x} below the last level")
            }
            BrokenKind::LeafAtLevel(raw) => write!(f, "leaf {raw:#x} at a level without pages"),
        }
    }
}

/// Callbacks of a walk, all defaulting to "go on". Return [`ControlFlow::Break`] to stop the
/// walk (it returns [`WalkError::Stopped`]).
///
/// ```
/// use awk_paging::inspect::{Leaf, Visitor};
/// use core::ops::ControlFlow;
/// /// Stops at the first executable leaf.
/// struct FirstExec;
/// impl Visitor for FirstExec {
///     type Break = Leaf;
///     fn leaf(&mut self, l: &Leaf) -> ControlFlow<Leaf> {
///         if l.attrs.flags.execute { ControlFlow::Break(*l) } else { ControlFlow::Continue(()) }
///     }
/// }
/// ```
pub trait Visitor {
    /// What a visitor stopping the walk hands back.
    type Break;

    /// A leaf, in address order.
    fn leaf(&mut self, _leaf: &Leaf) -> ControlFlow<Self::Break> {
        ControlFlow::Continue(())
    }

    /// An invalid entry's share of the range.
    fn hole(&mut self, _hole: &Hole) -> ControlFlow<Self::Break> {
        ControlFlow::Continue(())
    }

    /// Before the walk goes into a table (the root included).
    fn enter(&mut self, _table: &TableVisit) -> ControlFlow<Self::Break> {
        ControlFlow::Continue(())
    }

    /// After the walk is done with a table.
    fn leave(&mut self, _table: &TableVisit) -> ControlFlow<Self::Break> {
        ControlFlow::Continue(())
    }

    /// A spot the walk cannot follow; it goes on after it.
    fn broken(&mut self, _broken: &Broken) -> ControlFlow<Self::Break> {
        ControlFlow::Continue(())
    }
}

const _: () = assert!(ENTRIES == 512);
