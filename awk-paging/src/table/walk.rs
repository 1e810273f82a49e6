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
    pub(crate) limits: Packed,
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

/// [`Limits`] as [`Limits::bits`]: what the walk cache stores and a walk accumulates (the
/// union of two is one OR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed(u8);

impl Packed {
    const NONE: Packed = Packed(0);

    /// The limits these bits stand for.
    #[inline(always)]
    pub(crate) fn get(self) -> Limits {
        Limits::from_bits(self.0)
    }
}

/// No table cached (`WalkCache::low`).
const EMPTY: u8 = u8::MAX;

/// Never the address of a table (not 4 KiB-aligned): what unused path slots hold, so the loop
/// check may compare against them without knowing the number of levels.
const NO_TABLE: PhyAddr = PhyAddr::new(u64::MAX);

/// The walk cache: the tables the last walk passed through, indexed by level (`table[l]` is
/// the table at level `l`, reached at `base[l]`, with the limits of every table entry above it
/// in `limits[l]`). The tables at levels `low..=top` are cached and form the path from the root
/// to `va`. A walk starts at the deepest cached table whose span contains its address (the
/// leaf table for neighbouring 4 KiB pages, the table of 2 MiB entries for 2 MiB pages and for
/// 4 KiB pages elsewhere in the same 1 GiB, ...), and the path above it doubles as the loop
/// check's list of tables already visited.
///
/// It caches tables, never entries: every entry is read afresh, so a split or a new link below
/// a cached table is seen at once. It is cleared whenever a table could be unlinked or freed, or
/// the limits above a table change (`clear`). Each field is a scalar cell of its own, so a walk
/// reads back exactly what the previous one stored (no wide copies that defeat store-to-load
/// forwarding on the hot path).
#[derive(Debug)]
pub(crate) struct WalkCache {
    /// An address whose walk passed through every cached table.
    va: Cell<u64>,
    /// The lowest cached level ([`EMPTY`]: none).
    low: Cell<u8>,
    table: [Cell<PhyAddr>; MAX_LEVELS],
    base: [Cell<NonNull<u64>>; MAX_LEVELS],
    limits: [Cell<Packed>; MAX_LEVELS],
}

impl WalkCache {
    pub(crate) const fn new() -> WalkCache {
        WalkCache {
            va: Cell::new(0),
            low: Cell::new(EMPTY),
            table: [const { Cell::new(NO_TABLE) }; MAX_LEVELS],
            base: [const { Cell::new(NonNull::dangling()) }; MAX_LEVELS],
            limits: [const { Cell::new(Packed::NONE) }; MAX_LEVELS],
        }
    }

    /// Forgets every cached table.
    #[inline(always)]
    pub(crate) fn clear(&self) {
        self.low.set(EMPTY);
    }

    /// The cached table at `level` (which the caller checked is cached).
    #[inline(always)]
    fn at(&self, level: u8) -> Cur {
        let l = usize::from(level);
        Cur {
            table: self.table[l].get(),
            base: self.base[l].get(),
            limits: self.limits[l].get(),
        }
    }

    /// Records `cur` as the table at `level`, the new deepest one of the path to `va`.
    #[inline(always)]
    fn push(&self, level: u8, cur: Cur, va: VirtAddr) {
        let l = usize::from(level);
        self.table[l].set(cur.table);
        self.base[l].set(cur.base);
        self.limits[l].set(cur.limits);
        self.low.set(level);
        self.va.set(va.as_u64());
    }

    /// Whether `next` is one of the cached tables at `from..=top` (the path above a table
    /// entered from level `from`). Slots above the top level hold [`NO_TABLE`].
    #[inline(always)]
    fn on_path(&self, from: u8, top: u8, next: PhyAddr) -> bool {
        let mut l = usize::from(from);
        let mut found = false;
        while l <= usize::from(top) && l < MAX_LEVELS {
            found |= self.table[l].get() == next;
            l += 1;
        }
        found
    }
}

/// A table being walked: where it is and what the entries above it forbid.
#[derive(Clone, Copy)]
struct Cur {
    table: PhyAddr,
    base: NonNull<u64>,
    limits: Packed,
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
    /// enters.
    ///
    /// Inline: walks that start at the cached leaf table, table of 2 MiB entries or table of
    /// 1 GiB entries, each level probed with the level known, so the decoding folds, and the
    /// table entered kept in registers. Everything else (a walk from the root or the top
    /// levels, a loop, an unreachable table) is [`walk`](Self::walk).
    #[inline(always)]
    pub(crate) fn find_to(&self, va: VirtAddr, stop: u8) -> Result<Hit, WalkError> {
        let top = self.arch.levels().saturating_sub(1);
        let c = &self.walk;
        let same = va.as_u64() ^ c.va.get();
        let low = c.low.get();
        if top >= 2 {
            let hit = if stop == 0 && low == 0 && same >> table_shift(0) == 0 {
                // The cached leaf table covers `va`.
                let hit = self.probe(va, 0, c.at(0));
                (!matches!(hit.entry, Entry::Table(_))).then_some(hit)
            } else if stop <= 1 && low <= 1 && same >> table_shift(1) == 0 {
                self.walk_from(va, 1, stop, top)
            } else if stop <= 2 && low <= 2 && same >> table_shift(2) == 0 {
                self.walk_from(va, 2, stop, top)
            } else {
                None
            };
            if let Some(hit) = hit {
                return Ok(hit);
            }
        }
        let level = self.walk(va, stop)?;
        Ok(self.probe(va, level, self.walk.at(level)))
    }

    /// [`find_to`](Self::find_to) from the cached table at `start` (1 or 2, covering `va`,
    /// at or above `stop`) down through at most the levels below it; `None` where the walk
    /// meets anything [`walk`](Self::walk) must handle (an entry back into the path, an
    /// unreachable table, a table entry in a leaf table).
    #[inline(always)]
    fn walk_from(&self, va: VirtAddr, start: u8, stop: u8, top: u8) -> Option<Hit> {
        let mut cur = self.walk.at(start);
        if start == 2 {
            let hit = self.probe(va, 2, cur);
            match hit.entry {
                Entry::Table(next) if stop < 2 => cur = self.enter(va, &hit, next, top)?,
                _ => return Some(hit),
            }
        }
        let hit = self.probe(va, 1, cur);
        match hit.entry {
            Entry::Table(next) if stop == 0 => cur = self.enter(va, &hit, next, top)?,
            _ => return Some(hit),
        }
        let hit = self.probe(va, 0, cur);
        (!matches!(hit.entry, Entry::Table(_))).then_some(hit)
    }

    /// Enters `next`, the table the table entry `hit` points to, on the walk to `va`: records
    /// it in the walk cache as the deepest table of the path. `None` (nothing recorded) if
    /// `next` is already on the path or cannot be reached: the full walk then reports it.
    #[inline(always)]
    fn enter(&self, va: VirtAddr, hit: &Hit, next: PhyAddr, top: u8) -> Option<Cur> {
        let c = &self.walk;
        if c.on_path(hit.level, top, next) {
            return None;
        }
        let cur = Cur {
            table: next,
            base: self.mem.frame_ptr(next)?.cast(),
            limits: self.limits_below(hit.limits, hit.raw, hit.level),
        };
        c.push(hit.level - 1, cur, va);
        Some(cur)
    }

    /// `above` (the limits over a table) with those of its table entry `raw` at `level`
    /// added: what the table `raw` points to inherits.
    #[inline(always)]
    fn limits_below(&self, above: Packed, raw: u64, level: u8) -> Packed {
        Packed(above.0 | self.arch.table_limit_bits(raw, level))
    }

    /// The entry for `va` in the table `cur` at `level`, as a [`Hit`].
    #[inline(always)]
    fn probe(&self, va: VirtAddr, level: u8, cur: Cur) -> Hit {
        // SAFETY: `cur.base` is what `mem` returned for `cur.table`, now or when the table was
        // cached (the cache only holds live tables: cleared whenever a table could be unlinked
        // or freed); index < 512.
        let slot = unsafe { Slot::new(cur.table, cur.base, table_index(va, level)) };
        let raw = slot.load();
        Hit {
            level,
            slot,
            raw,
            entry: self.arch.decode(raw, level),
            limits: cur.limits,
        }
    }

    /// [`find_to`](Self::find_to)'s general descent: from the deepest cached table covering
    /// `va` at or above `stop` (or the root), recording every table it enters in the walk
    /// cache, down to the table whose entry for `va` ends the walk. Returns that table's level
    /// (the deepest cached one now). Small result on purpose: the caller probes the entry
    /// again, so its [`Hit`] stays in registers.
    #[inline(never)]
    fn walk(&self, va: VirtAddr, stop: u8) -> Result<u8, WalkError> {
        let top = self.arch.levels().saturating_sub(1);
        if usize::from(top) >= MAX_LEVELS {
            return Err(WalkError::Unreachable);
        }
        let c = &self.walk;
        let same = va.as_u64() ^ c.va.get();
        // The deepest cached table covering `va` at or above `stop`; the root covers all.
        let mut level = c.low.get().max(stop);
        while level < top && same >> table_shift(level) != 0 {
            level += 1;
        }
        let mut cur = if level < top {
            c.at(level)
        } else {
            level = top;
            let root = Cur {
                table: self.root,
                base: self
                    .mem
                    .frame_ptr(self.root)
                    .ok_or(WalkError::Unreachable)?
                    .cast(),
                limits: Packed::NONE,
            };
            c.push(top, root, va);
            root
        };
        // From here on the cached path down to `level` leads to `va`.
        c.low.set(level);
        c.va.set(va.as_u64());
        loop {
            let hit = self.probe(va, level, cur);
            match hit.entry {
                Entry::Table(next) if level > stop => {
                    // Loop check: the cached path is the tables visited so far.
                    if c.on_path(level, top, next) {
                        return Err(WalkError::Recursive);
                    }
                    cur = Cur {
                        table: next,
                        base: self
                            .mem
                            .frame_ptr(next)
                            .ok_or(WalkError::Unreachable)?
                            .cast(),
                        limits: self.limits_below(cur.limits, hit.raw, level),
                    };
                    level -= 1;
                    c.push(level, cur, va);
                }
                Entry::Table(_) if level == 0 => return Err(WalkError::Unreachable),
                _ => return Ok(level),
            }
        }
    }

    /// [`find_to`](Self::find_to) down to the first leaf or invalid entry.
    #[inline(always)]
    pub(crate) fn find(&self, va: VirtAddr) -> Result<Hit, WalkError> {
        self.find_to(va, 0)
    }
}
