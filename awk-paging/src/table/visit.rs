//! The one range walker: recursive, chunked by [`Pieces`], post-order (a visitor learns that a
//! table became empty when the walker leaves it, which is where reclaim belongs).

use super::chunk::{Piece, Pieces};
use super::entry::Slot;
use super::walk::Visited;
use super::PageTable;
use crate::arch::{Arch, Entry};
use crate::{FrameAllocator, PhyAddr, PhysMem, Tlb};

/// One entry's share of the range, as the walker shows it to a visitor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk {
    /// Level of the entry (0 = 4 KiB leaves).
    pub(crate) level: u8,
    /// The entry's part of the range (table bits).
    pub(crate) piece: Piece,
    /// The entry.
    pub(crate) slot: Slot,
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

/// One range operation, as callbacks of the walker.
pub(crate) trait Visitor<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> {
    /// The operation's error.
    type Error;

    /// Called for every entry the range touches, in address order.
    fn visit(&mut self, pt: &mut PageTable<A, M, F, T>, c: &Chunk) -> Result<Step, Self::Error>;

    /// Called after the walker returned from `child` (entered through `c`).
    fn leave(
        &mut self,
        _pt: &mut PageTable<A, M, F, T>,
        _c: &Chunk,
        _child: PhyAddr,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called instead of the walk of `child`, a table of 4 KiB leaves (level 0) entered through
    /// `c` (at level 1) and checked not to be on the walk's path: a visitor may handle the
    /// chunk's entries of it in one loop of its own (no per-entry visit), returning `Some`.
    /// `None` (the default, also for a table `mem` cannot reach): the walker visits them.
    /// [`leave`](Self::leave) follows either way.
    #[inline(always)]
    fn leaf_table(
        &mut self,
        _pt: &mut PageTable<A, M, F, T>,
        _c: &Chunk,
        _child: PhyAddr,
    ) -> Option<Result<(), Self::Error>> {
        None
    }

    /// The error for a table that cannot be reached (or an entry leading back into its path,
    /// when `recursive`), at table bits `at`.
    fn broken(&self, at: u64, recursive: bool) -> Self::Error;
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Walks `[start, end)` (table bits, inside one half) from the root with `v`.
    pub(crate) fn walk_range<V: Visitor<A, M, F, T>>(
        &mut self,
        start: u64,
        end: u64,
        v: &mut V,
    ) -> Result<(), V::Error> {
        let top = self.arch.levels().saturating_sub(1);
        let mut visited = Visited::new(self.root);
        self.walk_table(self.root, top, start, end, &mut visited, v)
    }

    fn walk_table<V: Visitor<A, M, F, T>>(
        &mut self,
        table: PhyAddr,
        level: u8,
        start: u64,
        end: u64,
        visited: &mut Visited,
        v: &mut V,
    ) -> Result<(), V::Error> {
        let mut pieces = Pieces::new(level, start, end);
        while let Some(piece) = pieces.next() {
            let slot =
                Slot::of(&self.mem, table, piece.index).ok_or(v.broken(piece.start, false))?;
            let raw = slot.load();
            let entry = self.arch.decode(raw, level);
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
                raw,
                entry,
                looped,
            };
            let child = match v.visit(self, &c)? {
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
                v.leaf_table(self, &c, child)
            } else {
                None
            };
            let r = match own {
                Some(r) => r,
                None => self.walk_table(child, level - 1, piece.start, piece.end, visited, v),
            };
            visited.leave();
            r?;
            v.leave(self, &c, child)?;
        }
        Ok(())
    }
}
