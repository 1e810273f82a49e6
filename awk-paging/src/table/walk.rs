//! Walking from the root towards one address: the only descent, shared by translate, map,
//! unmap and protect, with the walk cache, the accumulated table limits and the loop check.

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

/// The walk cache: the level-0 table last reached, with the limits above it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CachedLeafTable {
    /// `va >> 21` of the 2 MiB region the table covers.
    tag: u64,
    table: PhyAddr,
    base: NonNull<u64>,
    limits: Limits,
}

/// The tag of the leaf table covering `va` in the walk cache.
#[inline(always)]
const fn leaf_tag(va: VirtAddr) -> u64 {
    va.as_u64() >> 21
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
    /// The level-0 entry for `va` and the limits above it, if the walk cache holds its table.
    #[inline(always)]
    pub(crate) fn cached_leaf_slot(&self, va: VirtAddr) -> Option<(Slot, Limits)> {
        match self.leaf_table.get() {
            Some(c) if c.tag == leaf_tag(va) => {
                // SAFETY: the cached table is live (cache invariant: cleared whenever a table
                // could be unlinked or freed); index < 512.
                Some((
                    unsafe { Slot::new(c.table, c.base, table_index(va, 0)) },
                    c.limits,
                ))
            }
            _ => None,
        }
    }

    /// Records the leaf table covering `va`.
    #[inline(always)]
    pub(crate) fn remember_leaf_table(&self, va: VirtAddr, table: PhyAddr, limits: Limits) {
        if let Some(base) = self.mem.frame_ptr(table) {
            self.leaf_table.set(Some(CachedLeafTable {
                tag: leaf_tag(va),
                table,
                base: base.cast(),
                limits,
            }));
        }
    }

    /// Walks from the root to the first leaf or invalid entry on the way to `va` (or to the
    /// entry at `stop`, whatever it is, if the walk gets that far).
    #[inline(always)]
    pub(crate) fn find_to(&self, va: VirtAddr, stop: u8) -> Result<Hit, WalkError> {
        if stop == 0 {
            if let Some((slot, limits)) = self.cached_leaf_slot(va) {
                let raw = slot.load();
                return Ok(Hit {
                    level: 0,
                    slot,
                    raw,
                    entry: self.arch.decode(raw, 0),
                    limits,
                });
            }
        }
        let mut level = self.arch.levels().saturating_sub(1);
        let mut table = self.root;
        let mut limits = Limits::NONE;
        let mut visited = Visited::new(table);
        loop {
            let slot =
                Slot::of(&self.mem, table, table_index(va, level)).ok_or(WalkError::Unreachable)?;
            let raw = slot.load();
            match self.arch.decode(raw, level) {
                Entry::Table(next) if level > stop => {
                    if !visited.enter(next) {
                        return Err(WalkError::Recursive);
                    }
                    limits = limits.union(self.arch.table_limits(raw, level));
                    if level == 1 {
                        self.remember_leaf_table(va, next, limits);
                    }
                    table = next;
                    level -= 1;
                }
                Entry::Table(_) if level == 0 => return Err(WalkError::Unreachable),
                entry => {
                    return Ok(Hit {
                        level,
                        slot,
                        raw,
                        entry,
                        limits,
                    })
                }
            }
        }
    }

    /// [`find_to`](Self::find_to) down to the first leaf or invalid entry.
    #[inline(always)]
    pub(crate) fn find(&self, va: VirtAddr) -> Result<Hit, WalkError> {
        self.find_to(va, 0)
    }
}
