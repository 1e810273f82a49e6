//! Walking from the root towards one address: the only descent, shared by translate, map,
//! unmap and protect, with the walk cache, the accumulated table limits and the loop check.

use core::cell::Cell;
use core::ptr::NonNull;

use super::entry::Slot;
use super::{PageTable, MAX_LEVELS};
use crate::arch::{table_index, Arch, Entry, Limits};
use crate::{FrameAllocator, PhyAddr, PhysMem, Tlb, VirtAddr};

/// Where a walk stopped: the first leaf or invalid entry on the way to an address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    /// The level of the entry (0 = 4 KiB leaf table).
    pub(crate) level: u8,
    /// The entry.
    pub(crate) slot: Slot,
    /// What it held when read.
    pub(crate) raw: u64,
    /// What that means.
    pub(crate) entry: Entry,
    /// The restrictions of every table entry above it.
    pub(crate) limits: Limits,
}

/// Why a walk could not reach a leaf or invalid entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkError {
    /// A table is unreachable through the physical-memory accessor, or a table entry was found
    /// where the format has none (below the last level).
    Unreachable,
    /// An entry leads back to a table already on the path (a recursive slot).
    Recursive,
}

/// The walk cache: the tables the last walk passed through, root first (`table[k]` is the table
/// at level `levels - 1 - k`, reached at `base[k]`), with the limits above each. A walk starts at
/// the deepest cached table whose span contains its address (the leaf table for neighbouring
/// 4 KiB pages, the table of 2 MiB entries for 2 MiB pages and for 4 KiB pages elsewhere in the
/// same 1 GiB, ...), and the path doubles as the loop check's list of tables already visited.
///
/// It caches tables, never entries: every entry is read afresh, so a split or a new link below
/// a cached table is seen at once. It is cleared whenever a table could be unlinked or freed, or
/// the limits above a table change (`clear`). Each field is a scalar cell of its own, so a walk
/// reads back exactly what the previous one stored (no wide copies that defeat store-to-load
/// forwarding on the hot path).
#[derive(Debug)]
pub(crate) struct WalkCache {
    /// An address whose walk passed through every table of the path.
    va: Cell<u64>,
    /// How many tables of the path are valid (0: none).
    len: Cell<usize>,
    table: [Cell<PhyAddr>; MAX_LEVELS],
    base: [Cell<NonNull<u64>>; MAX_LEVELS],
    /// The restrictions of every table entry above each table.
    limits: [Cell<Limits>; MAX_LEVELS],
}

impl WalkCache {
    pub(crate) const fn new() -> WalkCache {
        WalkCache {
            va: Cell::new(0),
            len: Cell::new(0),
            table: [const { Cell::new(PhyAddr::ZERO) }; MAX_LEVELS],
            base: [const { Cell::new(NonNull::dangling()) }; MAX_LEVELS],
            limits: [const { Cell::new(Limits::NONE) }; MAX_LEVELS],
        }
    }

    /// Forgets every cached table.
    #[inline(always)]
    pub(crate) fn clear(&self) {
        self.len.set(0);
    }

    #[inline(always)]
    fn set(&self, depth: usize, table: PhyAddr, base: NonNull<u64>, limits: Limits) {
        self.table[depth].set(table);
        self.base[depth].set(base);
        self.limits[depth].set(limits);
    }
}

/// The span of one table at `level` (what one entry of the level above covers), as a shift.
#[inline(always)]
const fn table_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 + 1)
}

/// The tables a walk passed through, to refuse loops.
#[derive(Clone, Copy)]
pub(crate) struct Visited {
    tables: [PhyAddr; MAX_LEVELS],
    len: usize,
}

impl Visited {
    #[inline(always)]
    pub(crate) fn new(root: PhyAddr) -> Visited {
        let mut tables = [PhyAddr::ZERO; MAX_LEVELS];
        tables[0] = root;
        Visited { tables, len: 1 }
    }

    /// Records `next`; `false` if it is already on the path.
    #[inline(always)]
    pub(crate) fn enter(&mut self, next: PhyAddr) -> bool {
        if self.tables[..self.len].contains(&next) || self.len == MAX_LEVELS {
            return false;
        }
        self.tables[self.len] = next;
        self.len += 1;
        true
    }

    /// Forgets the deepest table (leaving it in a post-order walk).
    #[inline(always)]
    pub(crate) fn leave(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Walks from the root to the first leaf or invalid entry on the way to `va` (or to the
    /// entry at `stop`, whatever it is, if the walk gets that far), starting at the deepest
    /// table the walk cache holds for `va` (not below `stop`) and recording the tables it
    /// passes.
    ///
    /// Inline ([`cached_walk`](Self::cached_walk)): walks that start at the cached leaf table,
    /// table of 2 MiB entries or table of 1 GiB entries, each level probed with the level
    /// known, so the decoding folds. Everything else is [`walk`](Self::walk).
    #[inline(always)]
    pub(crate) fn find_to(&self, va: VirtAddr, stop: u8) -> Result<Hit, WalkError> {
        if let Some(hit) = self.cached_walk(va, stop) {
            return Ok(hit);
        }
        let top = usize::from(self.arch.levels().saturating_sub(1));
        let depth = self.walk(va, stop)?;
        Ok(self.probe(va, depth, (top - depth) as u8))
    }

    /// [`find_to`](Self::find_to) from the cached leaf table, table of 2 MiB entries or table
    /// of 1 GiB entries covering `va` (the deepest), descending through at most the two levels
    /// below it and recording what it enters; `None` where the cache does not cover `va` at one
    /// of those levels or the walk meets anything [`walk`](Self::walk) must handle (an entry
    /// back into the path, an unreachable table, a table entry in a leaf table).
    #[inline(always)]
    fn cached_walk(&self, va: VirtAddr, stop: u8) -> Option<Hit> {
        let top = usize::from(self.arch.levels().saturating_sub(1));
        let c = &self.walk;
        let (len, same) = (c.len.get(), va.as_u64() ^ c.va.get());
        let table = |h: &Hit| matches!(h.entry, Entry::Table(_));
        if stop == 0 && top >= 1 && len == top + 1 && same >> table_shift(0) == 0 {
            // The cached leaf table covers `va`.
            let hit = self.probe(va, top, 0);
            return (!table(&hit)).then_some(hit);
        }
        if top < 2 || stop > 1 {
            return None;
        }
        if len < top || same >> table_shift(1) != 0 {
            // Not the cached table of 2 MiB entries: the table of 1 GiB entries, one level up.
            if len + 1 < top || same >> table_shift(2) != 0 {
                return None;
            }
            let hit = self.probe(va, top - 2, 2);
            let Entry::Table(next) = hit.entry else {
                return Some(hit);
            };
            if !self.descend(va, top - 2, hit.raw, next) {
                return None;
            }
        }
        // The table of 2 MiB entries covering `va` is cached now.
        let hit = self.probe(va, top - 1, 1);
        match hit.entry {
            Entry::Table(next) if stop == 0 => {
                if !self.descend(va, top - 1, hit.raw, next) {
                    return None;
                }
            }
            _ => return Some(hit),
        }
        let hit = self.probe(va, top, 0);
        (!table(&hit)).then_some(hit)
    }

    /// Enters `next` (the table entry `raw` of the cached table at `depth` points to) for
    /// `va`: records it at `depth + 1` and makes the path lead to `va`. `false` (nothing
    /// recorded) if `next` is already on the path or cannot be reached: the full walk then
    /// reports it.
    #[inline(always)]
    fn descend(&self, va: VirtAddr, depth: usize, raw: u64, next: PhyAddr) -> bool {
        let c = &self.walk;
        if depth + 1 >= MAX_LEVELS {
            return false;
        }
        let mut k = 0;
        while k <= depth {
            if c.table[k].get() == next {
                return false;
            }
            k += 1;
        }
        let Some(base) = self.mem.frame_ptr(next) else {
            return false;
        };
        let level = self.arch.levels().saturating_sub(1) - depth as u8;
        let limits = c.limits[depth]
            .get()
            .union(self.arch.table_limits(raw, level));
        c.set(depth + 1, next, base.cast(), limits);
        c.len.set(depth + 2);
        c.va.set(va.as_u64());
        true
    }

    /// The entry for `va` in the cached table at `depth` (at `level`), as a [`Hit`].
    #[inline(always)]
    fn probe(&self, va: VirtAddr, depth: usize, level: u8) -> Hit {
        let c = &self.walk;
        // SAFETY: the cached table is live (cache invariant: cleared whenever a table could be
        // unlinked or freed); index < 512.
        let slot = unsafe {
            Slot::new(
                c.table[depth].get(),
                c.base[depth].get(),
                table_index(va, level),
            )
        };
        let raw = slot.load();
        Hit {
            level,
            slot,
            raw,
            entry: self.arch.decode(raw, level),
            limits: c.limits[depth].get(),
        }
    }

    /// [`find_to`](Self::find_to)'s descent: from the deepest cached table covering `va` at or
    /// above `stop` (or the root), recording every table it enters in the walk cache, down to
    /// the table whose entry for `va` ends the walk. Returns that table's depth in the cache
    /// (whose path then leads to `va`).
    #[inline(never)]
    fn walk(&self, va: VirtAddr, stop: u8) -> Result<usize, WalkError> {
        let top = self.arch.levels().saturating_sub(1);
        let c = &self.walk;
        let same = va.as_u64() ^ c.va.get();
        // The deepest cached table covering `va` at or above `stop`; depth 0 is the root.
        let mut depth = c.len.get().min(usize::from(top) + 1);
        let start = loop {
            if depth <= 1 {
                break None;
            }
            depth -= 1;
            let level = top - depth as u8;
            if level >= stop && same >> table_shift(level) == 0 {
                break Some((
                    c.table[depth].get(),
                    c.base[depth].get(),
                    c.limits[depth].get(),
                ));
            }
        };
        let (mut table, mut base, mut limits) = match start {
            Some(t) => t,
            None => {
                depth = 0;
                let root = self.root;
                let base = self
                    .mem
                    .frame_ptr(root)
                    .ok_or(WalkError::Unreachable)?
                    .cast();
                c.set(0, root, base, Limits::NONE);
                (root, base, Limits::NONE)
            }
        };
        let mut level = top - depth as u8;
        // From here on the path up to `depth` leads to `va`.
        c.len.set(depth + 1);
        c.va.set(va.as_u64());
        loop {
            // SAFETY: `base` is what `mem` returned for `table` (now or when it was cached; the
            // cache only holds live tables); index < 512.
            let slot = unsafe { Slot::new(table, base, table_index(va, level)) };
            let raw = slot.load();
            match self.arch.decode(raw, level) {
                Entry::Table(next) if level > stop => {
                    // Loop check: the cached path is the tables visited so far.
                    if c.table[..=depth].iter().any(|t| t.get() == next) || depth + 1 >= MAX_LEVELS
                    {
                        return Err(WalkError::Recursive);
                    }
                    let next_base = self
                        .mem
                        .frame_ptr(next)
                        .ok_or(WalkError::Unreachable)?
                        .cast();
                    limits = limits.union(self.arch.table_limits(raw, level));
                    depth += 1;
                    c.set(depth, next, next_base, limits);
                    c.len.set(depth + 1);
                    table = next;
                    base = next_base;
                    level -= 1;
                }
                Entry::Table(_) if level == 0 => return Err(WalkError::Unreachable),
                _ => return Ok(depth),
            }
        }
    }

    /// [`find_to`](Self::find_to) down to the first leaf or invalid entry.
    #[inline(always)]
    pub(crate) fn find(&self, va: VirtAddr) -> Result<Hit, WalkError> {
        self.find_to(va, 0)
    }
}
