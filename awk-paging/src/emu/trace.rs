//! The tracing checker: records every table write, frame allocation and TLB operation of a page
//! table and checks them online against the ordering and TLB-maintenance rules of the
//! architecture.
//!
//! QEMU's TCG executes stores in program order and keeps no stale walk caches worth the name, so
//! a missing barrier or a missing invalidation passes there and fails on silicon. The
//! [`Tracer`] makes those mistakes visible on the host: it sits between a
//! [`PageTable`](crate::PageTable) and the emulator (as its [`PhysMem`], [`FrameAllocator`] and
//! [`Tlb`]), sees every event in order ([`Event`]) through the walker's
//! [`PhysMem::note_store`]/[`PhysMem::note_zeroed`] hooks, keeps a shadow of which frames are
//! live tables (level and VA prefix, learnt from the table links it observes, starting from a
//! registered root) and reports each broken rule as a [`Violation`]:
//!
//! | rule | violation |
//! |---|---|
//! | a new table's zeroing and filling are ordered (barrier) before the store that links it | [`Violation::LinkBeforeInit`], [`Violation::LinkUnzeroed`] |
//! | a valid leaf is not replaced by another where the architecture requires break-before-make | [`Violation::BreakBeforeMake`] |
//! | between the break and the make there is an invalidation of that address | [`Violation::MakeWithoutInvalidate`] |
//! | an unlinked table is freed or reused only after a walk-cache-inclusive invalidation | [`Violation::FreeBeforeFlush`], [`Violation::ReuseBeforeFlush`] |
//! | a table is freed only once unlinked (or in a teardown after a full flush) | [`Violation::FreeWhileLinked`], [`Violation::FreeBeforeFlush`] |
//! | restrictions pushed into a child table are ordered before the parent is widened | [`Violation::WidenBeforePushDown`] |
//!
//! and, once the caller has flushed its tokens, what the TLB is still owed ([`Pending`]):
//! every removed or changed translation needs an invalidation covering its address, every new
//! one a publish (or a flush, which includes it).
//!
//! Every barrier-like operation counts as an ordering barrier: `order_table_writes`, `publish`
//! and every flush (all of them start with a store barrier on AArch64). A full flush is
//! taken to invalidate the whole address space (global entries of an ASID-scoped flush are not
//! modelled here; the [`EmuTlb`] models them).

use core::cell::RefCell;
use core::fmt;
use core::ptr::NonNull;
use std::collections::{HashMap, HashSet};
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::arch::{Arch, Entry, Limits};
use crate::emu::{EmuMemory, EmuTlb};
use crate::{FrameAllocator, MapError, PageTable, PhyAddr, PhysMem, Tlb, VirtAddr, ENTRIES};

/// One observed event, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A frame was allocated.
    Alloc(PhyAddr),
    /// A frame was given back.
    Free(PhyAddr),
    /// Entry `index` of the table frame `table` went from `old` to `new`.
    Store {
        /// The table frame written.
        table: PhyAddr,
        /// The entry index.
        index: usize,
        /// What the entry held.
        old: u64,
        /// What it holds now.
        new: u64,
    },
    /// A frame was zeroed to become a table.
    Zero(PhyAddr),
    /// [`Tlb::flush_page`].
    FlushPage(VirtAddr),
    /// [`Tlb::flush_leaf`].
    FlushLeaf(VirtAddr),
    /// [`Tlb::flush_all`].
    FlushAll,
    /// [`Tlb::publish`].
    Publish,
    /// [`Tlb::order_table_writes`].
    OrderWrites,
}

/// A broken ordering or TLB-maintenance rule. `event` is the index (in
/// [`Tracer::events`]) of the event that broke it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A live entry was made to point at the table `table` while a write into `unordered` (that
    /// table or one below it) since its allocation was not yet followed by an ordering barrier:
    /// the hardware walker could see the link before the contents.
    LinkBeforeInit {
        /// The event index.
        event: usize,
        /// The table linked.
        table: PhyAddr,
        /// The frame (in the linked subtree) with unordered writes.
        unordered: PhyAddr,
    },
    /// A live entry was made to point at `table`, a frame allocated since the trace started that
    /// was never zeroed.
    LinkUnzeroed {
        /// The event index.
        event: usize,
        /// The table linked.
        table: PhyAddr,
    },
    /// The valid entry for `va` was replaced by another valid one that the architecture only
    /// allows through break-before-make (invalid, invalidate, new).
    BreakBeforeMake {
        /// The event index.
        event: usize,
        /// The address the entry maps.
        va: VirtAddr,
        /// The entry before.
        old: u64,
        /// The entry after.
        new: u64,
    },
    /// The entry for `va`, broken (valid → invalid), was made valid again with an entry that
    /// needs break-before-make against the old one, without an invalidation of `va` in between
    /// (no TLBI between break and make, or the flush came before the break).
    MakeWithoutInvalidate {
        /// The event index.
        event: usize,
        /// The address the entry maps.
        va: VirtAddr,
        /// The entry before the break.
        old: u64,
        /// The new entry.
        new: u64,
    },
    /// The table `frame` was freed while walk caches may still hold it: after it was unlinked,
    /// no invalidation of walk caches (a page flush inside its range, or a full flush) came; or,
    /// in a teardown of linked tables, no full flush followed the last table write.
    FreeBeforeFlush {
        /// The event index.
        event: usize,
        /// The table frame.
        frame: PhyAddr,
    },
    /// The table `frame`, unlinked but not yet invalidated from walk caches, was linked, zeroed
    /// or allocated again.
    ReuseBeforeFlush {
        /// The event index.
        event: usize,
        /// The table frame.
        frame: PhyAddr,
    },
    /// The table `frame` was freed while a live table still links to it (and that table was not
    /// torn down as well), or was reused while still linked.
    FreeWhileLinked {
        /// The event index (of the free).
        event: usize,
        /// The table frame.
        frame: PhyAddr,
    },
    /// The table entry for `va` stopped restricting what is below it while writes into the
    /// child table `table` (restrictions pushed down) were not yet ordered by a barrier.
    WidenBeforePushDown {
        /// The event index.
        event: usize,
        /// An address the widened entry covers (its first).
        va: VirtAddr,
        /// The child table with unordered writes.
        table: PhyAddr,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::LinkBeforeInit {
                event,
                table,
                unordered,
            } => write!(
                f,
                "#{event}: table {table:?} linked before writes into {unordered:?} were ordered"
            ),
            Violation::LinkUnzeroed { event, table } => {
                write!(f, "#{event}: table {table:?} linked without being zeroed")
            }
            Violation::BreakBeforeMake {
                event,
                va,
                old,
                new,
            } => write!(
                f,
                "#{event}: {va:?}: valid entry {old:#x} replaced by {new:#x} without break-before-make"
            ),
            Violation::MakeWithoutInvalidate {
                event,
                va,
                old,
                new,
            } => write!(
                f,
                "#{event}: {va:?}: broken entry {old:#x} made {new:#x} with no invalidation in between"
            ),
            Violation::FreeBeforeFlush { event, frame } => write!(
                f,
                "#{event}: table {frame:?} freed before walk caches were invalidated"
            ),
            Violation::ReuseBeforeFlush { event, frame } => write!(
                f,
                "#{event}: table {frame:?} reused before walk caches were invalidated"
            ),
            Violation::FreeWhileLinked { event, frame } => {
                write!(f, "#{event}: table {frame:?} freed while still linked")
            }
            Violation::WidenBeforePushDown { event, va, table } => write!(
                f,
                "#{event}: entry for {va:?} widened before the writes into {table:?} were ordered"
            ),
        }
    }
}

/// What the TLB is still owed (see [`Tracer::pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The translation for `va` was removed or changed at event `event` and no invalidation
    /// covering it followed (`walks`: a table entry changed, so only a walk-cache-inclusive
    /// invalidation — page flush or full flush — covers it).
    Invalidate {
        /// The event index.
        event: usize,
        /// The first address of the changed entry's range.
        va: VirtAddr,
        /// Whether walk caches must be invalidated too.
        walks: bool,
    },
    /// A new translation (leaf or table) for `va` was created at event `event` and no publish
    /// or flush followed.
    Publish {
        /// The event index.
        event: usize,
        /// The first address of the new entry's range.
        va: VirtAddr,
    },
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Pending::Invalidate { event, va, walks } => write!(
                f,
                "#{event}: {va:?} changed, not invalidated{}",
                if walks { " (walk caches)" } else { "" }
            ),
            Pending::Publish { event, va } => write!(f, "#{event}: {va:?} new, not published"),
        }
    }
}

/// A range of translated VA bits (`start .. start + len`, masked to the regime's span).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u64,
    len: u64,
}

impl Span {
    fn contains(self, bits: u64) -> bool {
        bits.wrapping_sub(self.start) < self.len
    }
}

/// A live table in the shadow.
#[derive(Clone, Copy, Debug)]
struct Node {
    level: u8,
    /// VA bits of the first address this table translates.
    bits: u64,
    /// The entry linking it (`None`: the root).
    parent: Option<(PhyAddr, usize)>,
    /// Freed while still linked (at this event): allowed only as part of a teardown.
    freed: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct Unlinked {
    span: Span,
    flushed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Broken {
    old: u64,
    table_entry: bool,
    span: Span,
    invalidated: bool,
}

#[derive(Clone, Copy, Debug)]
struct Owed {
    event: usize,
    span: Span,
    walks: bool,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    violations: Vec<Violation>,
    root: Option<PhyAddr>,
    tables: HashMap<PhyAddr, Node>,
    /// Frames allocated through the tracer and not freed: whether zeroed since.
    allocated: HashMap<PhyAddr, bool>,
    /// Frames written (stored into or zeroed) since the last barrier.
    unordered: HashSet<PhyAddr>,
    unlinked: HashMap<PhyAddr, Unlinked>,
    broken: HashMap<(PhyAddr, usize), Broken>,
    owed: Vec<Owed>,
    unpublished: Vec<(usize, Span)>,
    /// A live table was written since the last full flush.
    stored_since_full_flush: bool,
}

/// The tracing checker over an [`EmuMemory`] and, optionally, an [`EmuTlb`] (see the module
/// docs). `&Tracer` is the [`PhysMem`], [`FrameAllocator`] and [`Tlb`] of the page table under
/// test; TLB operations are forwarded to the `EmuTlb`.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory, EmuTlb, Tracer, Violation};
/// use awk_paging::{Flags, PageSize, PhyAddr, VirtAddr};
///
/// let mem = EmuMemory::new(16);
/// let tlb = EmuTlb::new();
/// let tracer = Tracer::new(EmuArch::default(), &mem, Some(&tlb));
/// let mut pt = tracer.new_table().unwrap();
/// let va = VirtAddr::new(0x4000_0000);
/// unsafe { pt.map(va, PhyAddr::new(0x8000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// let (_, token) = unsafe { pt.unmap(va, PageSize::Size4K) }.unwrap();
/// assert_eq!(tracer.pending().len(), 1); // the unmap is not invalidated yet
/// token.flush();
/// tracer.assert_flushed();
/// unsafe { pt.destroy() };
/// tracer.assert_clean();
/// assert_eq!((tlb.order_barriers(), tlb.publishes(), tlb.leaf_flushes()), (1, 1, 1));
/// ```
pub struct Tracer<'a, A: Arch> {
    arch: A,
    mem: &'a EmuMemory,
    tlb: Option<&'a EmuTlb>,
    state: RefCell<State>,
}

impl<A: Arch + fmt::Debug> fmt::Debug for Tracer<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.borrow();
        f.debug_struct("Tracer")
            .field("arch", &self.arch)
            .field("events", &st.events.len())
            .field("violations", &st.violations)
            .field("root", &st.root)
            .finish()
    }
}

/// The page table a [`Tracer`] builds with [`Tracer::new_table`].
pub type TracedTable<'t, 'a, A> =
    PageTable<A, &'t Tracer<'a, A>, &'t Tracer<'a, A>, &'t Tracer<'a, A>>;

impl<'a, A: Arch> Tracer<'a, A> {
    /// A tracer for tables of format `arch` in `mem`, forwarding TLB operations to `tlb`.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory, Tracer};
    /// let mem = EmuMemory::new(4);
    /// let t = Tracer::new(EmuArch::default(), &mem, None);
    /// assert!(t.events().is_empty());
    /// ```
    #[must_use]
    pub fn new(arch: A, mem: &'a EmuMemory, tlb: Option<&'a EmuTlb>) -> Self {
        Tracer {
            arch,
            mem,
            tlb,
            state: RefCell::new(State::default()),
        }
    }

    /// A new, empty page table whose memory, frames and TLB go through this tracer, with its
    /// root registered ([`adopt`](Self::adopt)).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory, Tracer};
    /// let mem = EmuMemory::new(4);
    /// let t = Tracer::new(EmuArch::default(), &mem, None);
    /// let pt = t.new_table().unwrap();
    /// assert_eq!(t.root(), Some(pt.root()));
    /// ```
    pub fn new_table(&self) -> Result<TracedTable<'_, 'a, A>, MapError> {
        let pt = PageTable::new(self.arch, self, self, self)?;
        self.adopt(pt.root());
        Ok(pt)
    }

    /// Registers `root` as the root of the traced address space and learns every table below
    /// it from memory (for tables built or edited by other means, e.g.
    /// [`EmuMemory::write_u64`]). Call again after editing the structure by hand.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory, Tracer};
    /// let mem = EmuMemory::new(4);
    /// let root = mem.allocate_data_frame().unwrap();
    /// let t = Tracer::new(EmuArch::default(), &mem, None);
    /// t.adopt(root);
    /// assert_eq!(t.live_tables(), 1);
    /// ```
    pub fn adopt(&self, root: PhyAddr) {
        let mut st = self.state.borrow_mut();
        st.tables.clear();
        st.root = Some(root);
        let top = self.arch.levels().saturating_sub(1);
        let event = st.events.len();
        self.scan(&mut st, root, top, 0, None, event, None);
    }

    /// The registered root, if any (none after it was freed).
    #[must_use]
    pub fn root(&self) -> Option<PhyAddr> {
        self.state.borrow().root
    }

    /// Number of tables currently known to be linked into the registered root (root included).
    #[must_use]
    pub fn live_tables(&self) -> usize {
        self.state.borrow().tables.len()
    }

    /// The descriptor format.
    #[must_use]
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The emulated memory.
    #[must_use]
    pub fn memory(&self) -> &'a EmuMemory {
        self.mem
    }

    /// The TLB model TLB operations are forwarded to.
    #[must_use]
    pub fn tlb(&self) -> Option<&'a EmuTlb> {
        self.tlb
    }

    /// Every event so far, in order.
    #[must_use]
    pub fn events(&self) -> Vec<Event> {
        self.state.borrow().events.clone()
    }

    /// Every broken rule so far, including tables freed while still linked from a table that
    /// was not torn down as well.
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        let st = self.state.borrow();
        let mut v = st.violations.clone();
        let mut late: Vec<_> = st
            .tables
            .iter()
            .filter_map(|(&frame, n)| {
                n.freed
                    .map(|event| Violation::FreeWhileLinked { event, frame })
            })
            .collect();
        late.sort_by_key(|v| match *v {
            Violation::FreeWhileLinked { event, .. } => event,
            _ => 0,
        });
        v.extend(late);
        v
    }

    /// What the TLB is still owed: invalidations of removed or changed translations, publishes
    /// of new ones. Empty once every token was flushed.
    #[must_use]
    pub fn pending(&self) -> Vec<Pending> {
        let st = self.state.borrow();
        let mut p: Vec<Pending> = st
            .owed
            .iter()
            .map(|o| Pending::Invalidate {
                event: o.event,
                va: self.arch.va_from_bits(o.span.start),
                walks: o.walks,
            })
            .collect();
        p.extend(
            st.unpublished
                .iter()
                .map(|&(event, span)| Pending::Publish {
                    event,
                    va: self.arch.va_from_bits(span.start),
                }),
        );
        p
    }

    /// Panics, listing them with the events, if any rule was broken (for tests).
    ///
    /// # Panics
    ///
    /// On any [`Violation`].
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "{}", self.report("rule violations", &v));
    }

    /// [`assert_clean`](Self::assert_clean), and panics if the TLB is still owed anything (call
    /// after flushing every token).
    ///
    /// # Panics
    ///
    /// On any [`Violation`] or [`Pending`] item.
    pub fn assert_flushed(&self) {
        self.assert_clean();
        let p = self.pending();
        assert!(p.is_empty(), "{}", self.report("TLB still owed", &p));
    }

    /// A readable listing of `items` and the event log.
    fn report<T: fmt::Display>(&self, what: &str, items: &[T]) -> String {
        let mut s = format!("{what}:\n");
        for i in items {
            s.push_str(&format!("  {i}\n"));
        }
        s.push_str("events:\n");
        for (n, e) in self.state.borrow().events.iter().enumerate() {
            s.push_str(&format!("  #{n}: {e:?}\n"));
        }
        s
    }

    /// Forgets events, violations and pending items (keeps the shadow of live tables).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory, Tracer};
    /// let mem = EmuMemory::new(4);
    /// let t = Tracer::new(EmuArch::default(), &mem, None);
    /// let _pt = t.new_table().unwrap();
    /// t.clear();
    /// assert!(t.events().is_empty());
    /// ```
    pub fn clear(&self) {
        let mut st = self.state.borrow_mut();
        st.events.clear();
        st.violations.clear();
        st.owed.clear();
        st.unpublished.clear();
        st.broken.clear();
        st.unordered.clear();
    }

    // ----- the shadow -----------------------------------------------------------------------

    /// VA bits an entry at `level` spans (`1 << shift`).
    fn shift(level: u8) -> u32 {
        12 + 9 * u32::from(level)
    }

    fn span_of(bits: u64, level: u8) -> Span {
        let shift = Self::shift(level);
        Span {
            start: bits,
            len: if shift >= 64 { u64::MAX } else { 1u64 << shift },
        }
    }

    /// The translated VA bits of `va` (masked to the regime's span).
    fn bits_of(&self, va: VirtAddr) -> u64 {
        let span = 12 + 9 * u32::from(self.arch.levels());
        if span >= 64 {
            va.as_u64()
        } else {
            va.as_u64() & ((1u64 << span) - 1)
        }
    }

    fn entry_bits(node: &Node, index: usize) -> u64 {
        let shift = Self::shift(node.level);
        node.bits
            | if shift >= 64 {
                0
            } else {
                (index as u64) << shift
            }
    }

    fn read_entry(&self, table: PhyAddr, index: usize) -> Option<u64> {
        let at = table.as_u64().checked_add(8 * index as u64)?;
        self.mem.read_u64(PhyAddr::new(at))
    }

    /// Learns the table `table` at `level` and everything below it from memory. With
    /// `linked = Some(top)` (the table a store just linked), reports frames of the subtree that
    /// were not ready to be linked.
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        st: &mut State,
        table: PhyAddr,
        level: u8,
        bits: u64,
        parent: Option<(PhyAddr, usize)>,
        event: usize,
        linked: Option<PhyAddr>,
    ) {
        if st.tables.contains_key(&table) {
            return; // already live: an alias or a recursive slot
        }
        if let Some(top) = linked {
            self.check_linkable(st, top, table, event);
        }
        st.tables.insert(
            table,
            Node {
                level,
                bits,
                parent,
                freed: None,
            },
        );
        if level == 0 {
            return;
        }
        let node = st.tables[&table];
        for i in 0..ENTRIES {
            let Some(raw) = self.read_entry(table, i) else {
                return;
            };
            if let Entry::Table(next) = self.arch.decode(raw, level) {
                let b = Self::entry_bits(&node, i);
                self.scan(st, next, level - 1, b, Some((table, i)), event, linked);
            }
        }
    }

    /// Checks that `frame`, part of the subtree under `top` that was just linked, is ready.
    fn check_linkable(&self, st: &mut State, top: PhyAddr, frame: PhyAddr, event: usize) {
        if st.unordered.contains(&frame) {
            st.violations.push(Violation::LinkBeforeInit {
                event,
                table: top,
                unordered: frame,
            });
        }
        if st.allocated.get(&frame) == Some(&false) {
            st.violations.push(Violation::LinkUnzeroed {
                event,
                table: frame,
            });
        }
        if st.unlinked.get(&frame).is_some_and(|u| !u.flushed) {
            st.violations
                .push(Violation::ReuseBeforeFlush { event, frame });
        }
        st.unlinked.remove(&frame);
    }

    /// Removes `table` and every live table below it from the shadow; they become unlinked.
    fn unlink(&self, st: &mut State, table: PhyAddr) {
        let mut stack = std::vec![table];
        while let Some(t) = stack.pop() {
            let Some(node) = st.tables.remove(&t) else {
                continue;
            };
            stack.extend(
                st.tables
                    .iter()
                    .filter(|(_, n)| n.parent.is_some_and(|(p, _)| p == t))
                    .map(|(&f, _)| f),
            );
            // The span of the entry that linked it (one level up).
            let span = Self::span_of(node.bits, node.level + 1);
            st.unlinked.insert(
                t,
                Unlinked {
                    span,
                    flushed: false,
                },
            );
        }
    }

    /// The limits every table entry above `table` imposes.
    fn path_limits(&self, st: &State, table: PhyAddr) -> Limits {
        let mut limits = Limits::NONE;
        let mut cur = table;
        for _ in 0..8 {
            let Some((parent, index)) = st.tables.get(&cur).and_then(|n| n.parent) else {
                break;
            };
            let Some(level) = st.tables.get(&parent).map(|n| n.level) else {
                break;
            };
            if let Some(raw) = self.read_entry(parent, index) {
                limits = limits.union(self.arch.table_limits(raw, level));
            }
            cur = parent;
        }
        limits
    }

    // ----- events ---------------------------------------------------------------------------

    fn record(&self, st: &mut State, e: Event) -> usize {
        st.events.push(e);
        st.events.len() - 1
    }

    fn on_store(&self, table: PhyAddr, index: usize, old: u64, new: u64) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let event = self.record(
            st,
            Event::Store {
                table,
                index,
                old,
                new,
            },
        );
        st.unordered.insert(table);
        let Some(node) = st.tables.get(&table).copied() else {
            return; // not live (yet): a table being built
        };
        if node.freed.is_some() {
            return;
        }
        st.stored_since_full_flush = true;
        let level = node.level;
        let bits = Self::entry_bits(&node, index);
        let span = Self::span_of(bits, level);
        let va = self.arch.va_from_bits(bits);
        let (o, n) = (self.arch.decode(old, level), self.arch.decode(new, level));
        let valid = |e: Entry| e != Entry::Invalid;

        // Same table, other bits: hierarchical limits changed.
        if let (Entry::Table(f), Entry::Table(g)) = (o, n) {
            if f == g {
                let (lo, ln) = (
                    self.arch.table_limits(old, level),
                    self.arch.table_limits(new, level),
                );
                let relaxed = (lo.no_write && !ln.no_write)
                    || (lo.no_user && !ln.no_user)
                    || (lo.no_exec && !ln.no_exec)
                    || (lo.no_user_exec && !ln.no_user_exec);
                if relaxed && st.unordered.contains(&f) {
                    st.violations.push(Violation::WidenBeforePushDown {
                        event,
                        va,
                        table: f,
                    });
                }
                let path = self.path_limits(st, table);
                if path.union(lo) != path.union(ln) {
                    st.owed.push(Owed {
                        event,
                        span,
                        walks: true,
                    });
                }
                return;
            }
        }

        // Valid → different valid: break-before-make where the architecture requires it.
        if valid(o) && valid(n) && old != new && self.arch.needs_break_before_make(old, new, level)
        {
            st.violations.push(Violation::BreakBeforeMake {
                event,
                va,
                old,
                new,
            });
        }

        // What was there goes away (or changes).
        match o {
            Entry::Table(f) => {
                self.unlink(st, f);
                st.owed.push(Owed {
                    event,
                    span,
                    walks: true,
                });
                if !valid(n) {
                    st.broken.insert(
                        (table, index),
                        Broken {
                            old,
                            table_entry: true,
                            span,
                            invalidated: false,
                        },
                    );
                }
            }
            Entry::Leaf(frame) => {
                let changed = match n {
                    Entry::Leaf(nf) => {
                        let path = self.path_limits(st, table);
                        nf != frame
                            || self.arch.effective_attrs(old, level, path)
                                != self.arch.effective_attrs(new, level, path)
                    }
                    _ => true,
                };
                if changed {
                    st.owed.push(Owed {
                        event,
                        span,
                        walks: matches!(n, Entry::Table(_)),
                    });
                }
                if !valid(n) {
                    st.broken.insert(
                        (table, index),
                        Broken {
                            old,
                            table_entry: false,
                            span,
                            invalidated: false,
                        },
                    );
                }
            }
            Entry::Invalid => {
                // A make: was this slot broken, and is the flush between break and make missing?
                if valid(n) {
                    if let Some(b) = st.broken.remove(&(table, index)) {
                        let needs = if b.table_entry {
                            self.arch.decode(b.old, level) != n
                        } else {
                            self.arch.needs_break_before_make(b.old, new, level)
                        };
                        if needs && !b.invalidated {
                            st.violations.push(Violation::MakeWithoutInvalidate {
                                event,
                                va,
                                old: b.old,
                                new,
                            });
                        }
                    }
                    st.unpublished.push((event, span));
                }
            }
        }

        // What is there now: a newly linked table.
        if let Entry::Table(g) = n {
            if o != n && level > 0 {
                self.scan(st, g, level - 1, bits, Some((table, index)), event, Some(g));
            }
        }
    }

    fn on_zero(&self, frame: PhyAddr) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let event = self.record(st, Event::Zero(frame));
        if let Some(z) = st.allocated.get_mut(&frame) {
            *z = true;
        }
        if st.unlinked.get(&frame).is_some_and(|u| !u.flushed) {
            st.violations
                .push(Violation::ReuseBeforeFlush { event, frame });
        }
        st.unordered.insert(frame);
    }

    fn on_alloc(&self, frame: PhyAddr) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let event = self.record(st, Event::Alloc(frame));
        if let Some(n) = st.tables.get(&frame) {
            if n.freed.is_some() {
                st.violations
                    .push(Violation::FreeWhileLinked { event, frame });
                st.tables.remove(&frame);
            }
        }
        st.allocated.insert(frame, false);
    }

    fn on_free(&self, frame: PhyAddr) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let event = self.record(st, Event::Free(frame));
        st.allocated.remove(&frame);
        st.unordered.remove(&frame);
        if let Some(u) = st.unlinked.remove(&frame) {
            if !u.flushed {
                st.violations
                    .push(Violation::FreeBeforeFlush { event, frame });
            }
        } else if st.tables.contains_key(&frame) {
            // A teardown of linked tables: walk caches must have been flushed completely
            // after the last table write.
            if st.stored_since_full_flush {
                st.violations
                    .push(Violation::FreeBeforeFlush { event, frame });
                // One report per teardown is enough.
                st.stored_since_full_flush = false;
            }
            if st.root == Some(frame) {
                // The whole tree is gone: tables freed before it were torn down with it.
                st.tables.clear();
                st.root = None;
            } else if let Some(n) = st.tables.get_mut(&frame) {
                n.freed = Some(event);
            }
        }
    }

    fn on_barrier(&self, e: Event) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        self.record(st, e);
        st.unordered.clear();
        match e {
            Event::OrderWrites => {}
            Event::Publish => st.unpublished.clear(),
            Event::FlushPage(va) | Event::FlushLeaf(va) => {
                let walks = matches!(e, Event::FlushPage(_));
                let bits = self.bits_of(va);
                st.unpublished.clear();
                st.owed
                    .retain(|o| !(o.span.contains(bits) && (walks || !o.walks)));
                for b in st.broken.values_mut() {
                    if b.span.contains(bits) && (walks || !b.table_entry) {
                        b.invalidated = true;
                    }
                }
                if walks {
                    for u in st.unlinked.values_mut() {
                        if u.span.contains(bits) {
                            u.flushed = true;
                        }
                    }
                }
            }
            Event::FlushAll => {
                st.unpublished.clear();
                st.owed.clear();
                for b in st.broken.values_mut() {
                    b.invalidated = true;
                }
                for u in st.unlinked.values_mut() {
                    u.flushed = true;
                }
                st.stored_since_full_flush = false;
            }
            _ => {}
        }
    }
}

// SAFETY: forwards to the arena, whose pointers are valid for as long as `'a`.
unsafe impl<A: Arch> PhysMem for Tracer<'_, A> {
    #[inline]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        self.mem.frame_ptr(frame)
    }

    fn note_store(&self, table: PhyAddr, index: usize, old: u64, value: u64) {
        self.on_store(table, index, old, value);
    }

    fn note_zeroed(&self, frame: PhyAddr) {
        self.on_zero(frame);
    }
}

// SAFETY: forwards to the arena's allocator.
unsafe impl<A: Arch> FrameAllocator for &Tracer<'_, A> {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        let f = (&*self.mem).allocate_frame()?;
        self.on_alloc(f);
        Some(f)
    }

    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.on_free(frame);
        // SAFETY: forwarded contract.
        unsafe { (&*self.mem).deallocate_frame(frame) }
    }
}

impl<A: Arch> Tlb for Tracer<'_, A> {
    fn flush_page(&self, va: VirtAddr) {
        self.on_barrier(Event::FlushPage(va));
        if let Some(t) = self.tlb {
            t.flush_page(va);
        }
    }

    fn flush_leaf(&self, va: VirtAddr) {
        self.on_barrier(Event::FlushLeaf(va));
        if let Some(t) = self.tlb {
            t.flush_leaf(va);
        }
    }

    fn flush_all(&self) {
        self.on_barrier(Event::FlushAll);
        if let Some(t) = self.tlb {
            t.flush_all();
        }
    }

    fn publish(&self) {
        self.on_barrier(Event::Publish);
        if let Some(t) = self.tlb {
            t.publish();
        }
    }

    fn order_table_writes(&self) {
        self.on_barrier(Event::OrderWrites);
        match self.tlb {
            Some(t) => t.order_table_writes(),
            None => core::sync::atomic::fence(core::sync::atomic::Ordering::Release),
        }
    }
}
