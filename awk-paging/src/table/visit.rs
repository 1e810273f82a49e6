//! The crate's one range walker: recursive, chunked by [`Pieces`], post-order (a visitor learns
//! that a table became empty when the walker leaves it, which is where reclaim belongs), with
//! the loop check of the walk's path.
//!
//! It is generic over where the tables are read from ([`Source`]): the range engine
//! (`table::range`: map, unmap, protect, splits and their counting passes) walks this crate's
//! own tables through a [`PhysMem`] with [`Slot`]s it may write; the read-only walker of
//! [`crate::inspect`] (foreign tables, memory dumps, and `dump` / `for_each_mapping` of live
//! tables) walks through a fallible [`PhysRead`](crate::inspect::PhysRead), adding holes,
//! accumulated permissions and a budget as a visitor of this walker.

use super::chunk::{Piece, Pieces};
use super::entry::Slot;
use super::walk::Visited;
use super::PageTable;
use crate::arch::{Arch, Entry};
use crate::{FrameAllocator, PhyAddr, PhysMem, Tlb};

/// Where the walker reads table entries from.
pub(crate) trait Source {
    /// The entry format.
    type Arch: Arch;
    /// What names an entry for a visitor (own tables: the [`Slot`] it may write).
    type Handle: Copy;

    /// The entry format.
    fn arch(&self) -> &Self::Arch;

    /// Entry `index` (< 512) of the table at `table`: its handle and what it holds, or the
    /// address that could not be read.
    fn read(&self, table: PhyAddr, index: usize) -> Result<(Self::Handle, u64), PhyAddr>;
}

/// This crate's own tables: every reachable entry is a [`Slot`].
impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> Source for PageTable<A, M, F, T> {
    type Arch = A;
    type Handle = Slot;

    #[inline(always)]
    fn arch(&self) -> &A {
        &self.arch
    }

    #[inline(always)]
    fn read(&self, table: PhyAddr, index: usize) -> Result<(Slot, u64), PhyAddr> {
        let slot = Slot::of(&self.mem, table, index).ok_or(table)?;
        Ok((slot, slot.load()))
    }
}

/// One entry's share of the range, as the walker shows it to a visitor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk<H = Slot> {
    /// Level of the entry (0 = 4 KiB leaves).
    pub(crate) level: u8,
    /// The entry's part of the range (table bits).
    pub(crate) piece: Piece,
    /// The entry.
    pub(crate) slot: H,
    /// The table holding it.
    pub(crate) table: PhyAddr,
    /// What it held when the walker read it.
    pub(crate) raw: u64,
    /// What that means.
    pub(crate) entry: Entry,
    /// For a table entry: whether the table it points at is already on the walk's path (a
    /// recursive slot). The walker refuses to enter such a table; operations that act on a
    /// whole subtree without entering it must refuse it too.
    pub(crate) looped: bool,
}

/// What the walker does after a visit.
pub(crate) enum Step {
    /// Go on with the next entry.
    Next,
    /// Go on after the next `n` entries too: the visitor handled them itself (a run of
    /// siblings it processed in one loop).
    Skip(usize),
    /// Walk the table at this address (one level down) over the chunk's range, then call
    /// [`Visitor::leave`].
    Into(PhyAddr),
}

/// One walk, as callbacks of the walker.
pub(crate) trait Visitor<S: Source> {
    /// The walk's error.
    type Error;

    /// Called for every entry the range touches, in address order.
    fn visit(&mut self, src: &mut S, c: &Chunk<S::Handle>) -> Result<Step, Self::Error>;

    /// Called after the walker returned from `child` (entered through `c`).
    fn leave(
        &mut self,
        _src: &mut S,
        _c: &Chunk<S::Handle>,
        _child: PhyAddr,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called instead of the walk of `child`, a table of 4 KiB leaves (level 0) entered through
    /// `c` (at level 1) and checked not to be on the walk's path: a visitor may handle the
    /// chunk's entries of it in one loop of its own (no per-entry visit), returning `Some`.
    /// `None` (the default, also for a table the source cannot reach): the walker visits them.
    /// [`leave`](Self::leave) follows either way.
    #[inline(always)]
    fn leaf_table(
        &mut self,
        _src: &mut S,
        _c: &Chunk<S::Handle>,
        _child: PhyAddr,
    ) -> Option<Result<(), Self::Error>> {
        None
    }

    /// Called where entry `piece.index` of `table` (at `level`) cannot be read (at `addr`);
    /// `Ok` skips the rest of that table's share of the range (up to table bits `end`).
    /// Default: the error of [`broken`](Self::broken).
    fn unreadable(
        &mut self,
        _src: &mut S,
        _table: PhyAddr,
        _level: u8,
        piece: &Piece,
        _end: u64,
        _addr: PhyAddr,
    ) -> Result<(), Self::Error> {
        Err(self.broken(piece.start, false))
    }

    /// The error for a table that cannot be reached (or an entry leading back into its path,
    /// when `recursive`), at table bits `at`.
    fn broken(&self, at: u64, recursive: bool) -> Self::Error;
}

/// Walks `[start, end)` (table bits, inside one table's span at `level`) of the table `table`
/// (the root of the walk, at `level`) with `v`.
pub(crate) fn walk<S: Source, V: Visitor<S>>(
    src: &mut S,
    table: PhyAddr,
    level: u8,
    start: u64,
    end: u64,
    v: &mut V,
) -> Result<(), V::Error> {
    let mut visited = Visited::new(table);
    walk_table(src, table, level, start, end, &mut visited, v)
}

fn walk_table<S: Source, V: Visitor<S>>(
    src: &mut S,
    table: PhyAddr,
    level: u8,
    start: u64,
    end: u64,
    visited: &mut Visited,
    v: &mut V,
) -> Result<(), V::Error> {
    let mut pieces = Pieces::new(level, start, end);
    while let Some(piece) = pieces.next() {
        let (slot, raw) = match src.read(table, piece.index) {
            Ok(read) => read,
            Err(addr) => return v.unreadable(src, table, level, &piece, end, addr),
        };
        let entry = src.arch().decode(raw, level);
        let looped = match entry {
            Entry::Table(next) => {
                let fresh = visited.enter(next);
                if fresh {
                    visited.leave();
                }
                !fresh
            }
            _ => false,
        };
        let c = Chunk {
            level,
            piece,
            slot,
            table,
            raw,
            entry,
            looped,
        };
        let child = match v.visit(src, &c)? {
            Step::Next => continue,
            Step::Skip(n) => {
                pieces.skip_entries(n);
                continue;
            }
            Step::Into(child) => child,
        };
        if level == 0 || !visited.enter(child) {
            return Err(v.broken(piece.start, level > 0));
        }
        let own = if level == 1 {
            v.leaf_table(src, &c, child)
        } else {
            None
        };
        let r = match own {
            Some(r) => r,
            None => walk_table(src, child, level - 1, piece.start, piece.end, visited, v),
        };
        visited.leave();
        r?;
        v.leave(src, &c, child)?;
    }
    Ok(())
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Walks `[start, end)` (table bits, inside one half) from the root with `v`.
    pub(crate) fn walk_range<V: Visitor<Self>>(
        &mut self,
        start: u64,
        end: u64,
        v: &mut V,
    ) -> Result<(), V::Error> {
        let top = self.arch.levels().saturating_sub(1);
        let root = self.root;
        walk(self, root, top, start, end, v)
    }
}
