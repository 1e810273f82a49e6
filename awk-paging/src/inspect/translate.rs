//! Translating single addresses and batches of them through a [`ForeignTable`], reporting what
//! the MMU would do: the page and its effective access, or the fault and where it arises.

use core::fmt;

use super::classify::{Access, Classify, Invalid};
use super::read::PhysRead;
use super::walk::ForeignTable;
use crate::arch::{table_index, Entry, Limits};
use crate::table::MAX_LEVELS;
use crate::{AddrError, Attrs, MemoryType, PageSize, PhyAddr, VirtAddr};

/// A successful translation of a foreign table.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::inspect::{ForeignTable, LiveMem};
/// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
/// let mem = EmuMemory::new(8);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// unsafe { pt.map(VirtAddr::new(0x7000), PhyAddr::new(0x3000), PageSize::Size4K, Flags::RX) }.unwrap().flush();
/// let r = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root())
///     .translate(VirtAddr::new(0x7010))
///     .unwrap();
/// assert_eq!((r.pa, r.page, r.frame, r.size, r.level), (PhyAddr::new(0x3010), VirtAddr::new(0x7000), PhyAddr::new(0x3000), PageSize::Size4K, 0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The physical address of the translated byte.
    pub pa: PhyAddr,
    /// First virtual address of the page.
    pub page: VirtAddr,
    /// First physical address of the page.
    pub frame: PhyAddr,
    /// The page size.
    pub size: PageSize,
    /// The level of the leaf (0 = 4 KiB).
    pub level: u8,
    /// The raw leaf entry.
    pub raw: u64,
    /// The restrictions of every table entry above the leaf.
    pub limits: Limits,
    /// The effective attributes ([`Arch::effective_attrs`](crate::arch::Arch::effective_attrs)).
    pub attrs: Attrs,
    /// Who may read, write and execute ([`Classify::access`]).
    pub access: Access,
    /// The memory type ([`Classify::memory_type`]).
    pub memory_type: MemoryType,
}

impl Resolved {
    /// `va` through the leaf `raw` at `level` (mapping `frame`) under `limits`: everything the
    /// MMU grants, computed from the entry. `None` for a level without a page size.
    #[inline(always)]
    pub(super) fn of<A: Classify>(
        arch: &A,
        va: VirtAddr,
        frame: PhyAddr,
        level: u8,
        raw: u64,
        limits: Limits,
    ) -> Option<Resolved> {
        let size = PageSize::from_level(level)?;
        let off = va.as_u64() & size.offset_mask();
        Some(Resolved {
            pa: PhyAddr::new(frame.as_u64().wrapping_add(off)),
            page: VirtAddr::new(va.as_u64() - off),
            frame,
            size,
            level,
            raw,
            limits,
            attrs: arch.effective_attrs(raw, level, limits),
            access: arch.access(raw, level, limits),
            memory_type: arch.memory_type(raw, level),
        })
    }

    /// The same page, translating `va` (which must lie in it; else `None`).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::inspect::{ForeignTable, LiveMem};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// # unsafe { pt.map(VirtAddr::new(0x7000), PhyAddr::new(0x3000), PageSize::Size4K, Flags::RX) }.unwrap().flush();
    /// # let r = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root()).translate(VirtAddr::new(0x7010)).unwrap();
    /// assert_eq!(r.at(VirtAddr::new(0x7ff8)).unwrap().pa, PhyAddr::new(0x3ff8));
    /// assert!(r.at(VirtAddr::new(0x8000)).is_none());
    /// ```
    #[inline]
    #[must_use]
    pub fn at(&self, va: VirtAddr) -> Option<Resolved> {
        let off = va.as_u64().wrapping_sub(self.page.as_u64());
        if off >= self.size.bytes() {
            return None;
        }
        Some(Resolved {
            pa: PhyAddr::new(self.frame.as_u64().wrapping_add(off)),
            ..*self
        })
    }
}

/// Why a foreign translation failed: the fault the MMU would raise, or why the walk could not
/// be followed.
///
/// ```
/// use awk_paging::inspect::{Fault, Invalid};
/// let f = Fault::Invalid { level: 3, raw: 0x83, why: Invalid::LeafNotAllowed };
/// assert_eq!(f.to_string(), "level 3 entry 0x83: leaf at a level without leaves");
/// assert!(Fault::NotMapped { level: 0 }.is_not_mapped());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The regime does not translate the address (not canonical, other half).
    Address(AddrError),
    /// A translation fault: the entry at `level` is not present.
    NotMapped {
        /// Where the walk stopped.
        level: u8,
    },
    /// The entry at `level` is malformed; the MMU faults as `why` says.
    Invalid {
        /// Where the walk stopped.
        level: u8,
        /// The entry.
        raw: u64,
        /// The fault.
        why: Invalid,
    },
    /// The entry at `level` (in `table`) cannot be read.
    Unreadable {
        /// Where the walk stopped.
        level: u8,
        /// The table whose entry is missing.
        table: PhyAddr,
    },
    /// The table entry at `level` points to `table`, already on the path (a loop). A recursive
    /// slot is reported so, as the crate's own walkers refuse it (the MMU itself would follow
    /// it and translate to the tables themselves).
    Loop {
        /// Where the walk stopped.
        level: u8,
        /// The table pointed to.
        table: PhyAddr,
    },
    /// A table entry at the last level, or a leaf at a level without a page size (formats
    /// that decode so are broken).
    Malformed {
        /// Where the walk stopped.
        level: u8,
        /// The entry.
        raw: u64,
    },
}

impl Fault {
    /// Whether the address is simply not mapped (a not-present entry).
    ///
    /// ```
    /// use awk_paging::inspect::Fault;
    /// assert!(!Fault::Loop { level: 2, table: awk_paging::PhyAddr::new(0) }.is_not_mapped());
    /// ```
    #[must_use]
    pub const fn is_not_mapped(&self) -> bool {
        matches!(self, Fault::NotMapped { .. })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::Address(e) => write!(f, "{e}"),
            Fault::NotMapped { level } => write!(f, "not mapped (level {level} entry not present)"),
            Fault::Invalid { level, raw, why } => write!(f, "level {level} entry {raw:#x}: {why}"),
            Fault::Unreadable { level, table } => {
                write!(f, "level {level} table {:#x} not readable", table.as_u64())
            }
            Fault::Loop { level, table } => write!(
                f,
                "level {level} entry points back to table {:#x} (loop)",
                table.as_u64()
            ),
            Fault::Malformed { level, raw } => write!(f, "level {level} entry {raw:#x} malformed"),
        }
    }
}

/// The tables the previous translation passed through, so the next one starts at the deepest
/// table that also covers its address (a batch of nearby addresses shares the upper levels).
#[derive(Clone, Copy)]
pub(super) struct Path {
    /// Valid tables, root first.
    len: usize,
    /// `va >> table span` of the address that walked through them.
    va: u64,
    table: [PhyAddr; MAX_LEVELS],
    limits: [Limits; MAX_LEVELS],
}

impl Path {
    pub(super) const fn new() -> Path {
        Path {
            len: 0,
            va: 0,
            table: [PhyAddr::ZERO; MAX_LEVELS],
            limits: [Limits::NONE; MAX_LEVELS],
        }
    }
}

impl<A: Classify, R: PhysRead> ForeignTable<A, R> {
    /// Translates `va` as the MMU would: the page, its effective attributes and access over all
    /// levels, or the fault. Reads at most one entry per level.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{Fault, ForeignTable, LiveMem};
    /// use awk_paging::{NoTlb, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(4);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// // Make root entry 0 point at the root itself: a loop.
    /// mem.write_u64(pt.root(), pt.root().as_u64() | 0b11);
    /// let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
    /// assert_eq!(t.translate(VirtAddr::new(0x1000)), Err(Fault::Loop { level: 3, table: pt.root() }));
    /// assert_eq!(t.translate(VirtAddr::new(0x8000_0000_0000)), Err(Fault::Address(awk_paging::AddrError::NonCanonical)));
    /// ```
    pub fn translate(&self, va: VirtAddr) -> Result<Resolved, Fault> {
        self.translate_on(va, &mut Path::new())
    }

    /// Translates every address of `vas` in one pass, calling `f` with each result in order.
    /// Consecutive addresses share the tables of their walks (an address in the same page as
    /// the previous one reads no entry at all; one in the same 2 MiB reads one): sort a batch
    /// to share the most.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{ForeignTable, LiveMem};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x8000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// let t = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
    /// let mut pas = Vec::new();
    /// t.translate_many([0x1000, 0x1008, 0x2000].map(VirtAddr::new), |_, r| pas.push(r.ok().map(|r| r.pa)));
    /// assert_eq!(pas, [Some(PhyAddr::new(0x8000)), Some(PhyAddr::new(0x8008)), None]);
    /// ```
    pub fn translate_many(
        &self,
        vas: impl IntoIterator<Item = VirtAddr>,
        mut f: impl FnMut(VirtAddr, Result<Resolved, Fault>),
    ) {
        let mut path = Path::new();
        let mut last: Option<Resolved> = None;
        for va in vas {
            if let Some(hit) = last.and_then(|l| l.at(va)) {
                f(va, Ok(hit));
                continue;
            }
            let r = self.translate_on(va, &mut path);
            last = r.ok();
            f(va, r);
        }
    }

    /// [`translate`](Self::translate), starting at the deepest table of `path` that covers
    /// `va`, and leaving the new walk's tables in `path`.
    pub(super) fn translate_on(&self, va: VirtAddr, path: &mut Path) -> Result<Resolved, Fault> {
        self.arch.check_va(va).map_err(Fault::Address)?;
        let levels = self.levels();
        if levels == 0 {
            return Err(Fault::Address(AddrError::OutOfRange));
        }
        let top = levels - 1;
        // Tables of the path whose span contains `va`: depth d holds the table at level
        // top - d, whose span is 2^(12 + 9 (top - d + 1)) bytes.
        let mut depth = 1;
        while depth < path.len {
            let shift = 12 + 9 * u32::from(top - depth as u8 + 1);
            if (va.as_u64() ^ path.va) >> shift != 0 {
                break;
            }
            depth += 1;
        }
        path.table[0] = self.root;
        path.limits[0] = Limits::NONE;
        path.va = va.as_u64();
        path.len = depth.min(path.len).max(1);
        let mut depth = path.len - 1;
        let mut table = path.table[depth];
        let mut limits = path.limits[depth];
        loop {
            let level = top - depth as u8;
            let raw = self
                .read(table, table_index(va, level))
                .map_err(|_| Fault::Unreadable { level, table })?;
            match self.arch.decode(raw, level) {
                Entry::Invalid => {
                    let why = self.arch.invalid(raw, level);
                    return Err(if why.is_not_present() {
                        Fault::NotMapped { level }
                    } else {
                        Fault::Invalid { level, raw, why }
                    });
                }
                Entry::Leaf(frame) => {
                    return Resolved::of(&self.arch, va, frame, level, raw, limits)
                        .ok_or(Fault::Malformed { level, raw });
                }
                Entry::Table(_) if level == 0 || depth + 1 >= MAX_LEVELS => {
                    return Err(Fault::Malformed { level, raw });
                }
                Entry::Table(next) => {
                    if path.table[..=depth].contains(&next) {
                        return Err(Fault::Loop { level, table: next });
                    }
                    limits = limits.union(self.arch.table_limits(raw, level));
                    depth += 1;
                    table = next;
                    path.table[depth] = next;
                    path.limits[depth] = limits;
                    path.len = depth + 1;
                }
            }
        }
    }
}
