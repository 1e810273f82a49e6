//! Walking several address spaces together ([`walk_roots`]), as hyperlight's `walk_va_spaces`
//! does: every leaf is reported once per root that reaches it through tables of its own, and a
//! table an earlier root already reaches at the same place (a shared kernel half) is reported
//! once as [`Walked::Shared`] instead of being walked again.

use crate::arch::{table_index, Arch, Entry, Limits};
use crate::table::entry::Slot;
use crate::table::visit::{self, Chunk, Source, Step, Visitor};
use crate::table::{Piece, MAX_LEVELS};
use crate::{Mapping, PageSize, PhyAddr, PhysMem, VirtAddr};

/// What [`walk_roots`] found.
///
/// ```
/// use awk_paging::space::Walked;
/// let w = Walked::Shared { root: 1, va: awk_paging::VirtAddr::new(0), level: 3, table: awk_paging::PhyAddr::new(0x1000), first: 0 };
/// assert!(matches!(w, Walked::Shared { first: 0, .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walked {
    /// A mapping of root `root` (index into the roots given) under tables not reached by an
    /// earlier root.
    Leaf {
        /// Which root.
        root: usize,
        /// The mapping, with its effective attributes under this root.
        mapping: Mapping,
    },
    /// Root `root`'s entry at `level` for the range starting at `va` links `table`, which root
    /// `first` (an earlier one) reaches at the same place: everything below it was reported
    /// under `first`.
    Shared {
        /// Which root.
        root: usize,
        /// The first address the shared table translates.
        va: VirtAddr,
        /// The level of the entry that links it (the table's entries are one level below).
        level: u8,
        /// The shared table.
        table: PhyAddr,
        /// The earlier root that reaches it.
        first: usize,
    },
}

/// Walks the tables of every root in `roots` (format `arch`, reached through `mem`), calling
/// `f` for each leaf once and, for a table an earlier root already reaches through the same
/// entry position, once with [`Walked::Shared`] (not walking it again). Unreachable tables and
/// entries leading back to a table on their own path are skipped, as in
/// [`PageTable::for_each_mapping`](crate::PageTable::for_each_mapping). Needs no allocation:
/// sharing is found by walking each earlier root to the same position.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::space::{walk_roots, KernelSpace, UserSpace, Walked};
/// use awk_paging::{Flags, NoTlb, PhyAddr, RangeOptions, VirtAddr};
///
/// let mem = EmuMemory::new(600);
/// let arch = EmuArch::default();
/// let mut k = KernelSpace::new_shared(arch, &mem, &mem, NoTlb, 256).unwrap();
/// let mut g = k.gather();
/// let kva = VirtAddr::new(0xffff_8000_0000_0000);
/// unsafe { k.map_range(kva, PhyAddr::new(0x20_0000), 0x1000, Flags::RW, RangeOptions::default(), &mut g) }
///     .unwrap();
/// k.finish(g).unwrap();
/// let (a, b) = (
///     UserSpace::new(arch, &mem, &mem, NoTlb, k.half()).unwrap(),
///     UserSpace::new(arch, &mem, &mem, NoTlb, k.half()).unwrap(),
/// );
/// let (mut leaves, mut shared) = (0, 0);
/// walk_roots(&arch, &mem, &[a.root(), b.root()], |w| match w {
///     Walked::Leaf { .. } => leaves += 1,
///     Walked::Shared { root, first, .. } => {
///         assert_eq!((root, first), (1, 0));
///         shared += 1;
///     }
/// });
/// assert_eq!((leaves, shared), (1, 256)); // the kernel page once; b's 256 kernel entries shared
/// ```
pub fn walk_roots<A: Arch, M: PhysMem>(
    arch: &A,
    mem: &M,
    roots: &[PhyAddr],
    mut f: impl FnMut(Walked),
) {
    let top = arch.levels().saturating_sub(1);
    if usize::from(top) >= MAX_LEVELS {
        return;
    }
    let end = 1u64 << (12 + 9 * (u32::from(top) + 1));
    for (k, &root) in roots.iter().enumerate() {
        let mut w = Walk {
            arch,
            mem,
            roots,
            root: k,
            limits: [Limits::NONE; MAX_LEVELS + 1],
            depth: 0,
            f: &mut f,
        };
        let mut src = LiveTables { arch, mem };
        // The visitor never fails: unreadable tables and loops are skipped.
        let _ = visit::walk(&mut src, root, top, 0, end, &mut w);
    }
}

/// Live tables read through a [`PhysMem`], read-only: the walker's [`Source`] here.
struct LiveTables<'a, A, M> {
    arch: &'a A,
    mem: &'a M,
}

impl<A: Arch, M: PhysMem> Source for LiveTables<'_, A, M> {
    type Arch = A;
    type Handle = ();

    #[inline(always)]
    fn arch(&self) -> &A {
        self.arch
    }

    #[inline(always)]
    fn read(&self, table: PhyAddr, index: usize) -> Result<((), u64), PhyAddr> {
        let slot = Slot::of(self.mem, table, index).ok_or(table)?;
        Ok(((), slot.load()))
    }
}

/// One root's walk, as a visitor of the crate's walker.
struct Walk<'a, 'f, A, M, F> {
    arch: &'a A,
    mem: &'a M,
    roots: &'a [PhyAddr],
    root: usize,
    /// `limits[d]`: the restrictions over the table at depth `d` (the root's are at 0).
    limits: [Limits; MAX_LEVELS + 1],
    depth: usize,
    f: &'f mut F,
}

impl<'a, A: Arch, M: PhysMem, F: FnMut(Walked)> Visitor<LiveTables<'a, A, M>>
    for Walk<'a, '_, A, M, F>
{
    type Error = ();

    fn visit(&mut self, _src: &mut LiveTables<'a, A, M>, c: &Chunk<()>) -> Result<Step, ()> {
        let (level, raw) = (c.level, c.raw);
        let va = self.arch.va_from_bits(c.piece.base);
        let limits = self.limits[self.depth];
        match c.entry {
            Entry::Invalid => {}
            // Skipped: past the last level, back into the path, deeper than any format.
            Entry::Table(_) if level == 0 || c.looped || self.depth + 1 >= MAX_LEVELS => {}
            Entry::Table(next) => {
                if let Some(first) = self.earlier_root_reaching(next, va, level) {
                    (self.f)(Walked::Shared {
                        root: self.root,
                        va,
                        level,
                        table: next,
                        first,
                    });
                } else {
                    self.depth += 1;
                    self.limits[self.depth] = limits.union(self.arch.table_limits(raw, level));
                    return Ok(Step::Into(next));
                }
            }
            Entry::Leaf(frame) => {
                if let Some(size) = PageSize::from_level(level) {
                    (self.f)(Walked::Leaf {
                        root: self.root,
                        mapping: Mapping {
                            page: va,
                            frame,
                            size,
                            attrs: self.arch.effective_attrs(raw, level, limits),
                        },
                    });
                }
            }
        }
        Ok(Step::Next)
    }

    fn leave(
        &mut self,
        _src: &mut LiveTables<'a, A, M>,
        _c: &Chunk<()>,
        _child: PhyAddr,
    ) -> Result<(), ()> {
        self.depth -= 1;
        Ok(())
    }

    /// An unreachable table is skipped.
    fn unreadable(
        &mut self,
        _src: &mut LiveTables<'a, A, M>,
        _table: PhyAddr,
        _level: u8,
        _piece: &Piece,
        _end: u64,
        _addr: PhyAddr,
    ) -> Result<(), ()> {
        Ok(())
    }

    fn broken(&self, _at: u64, _recursive: bool) {}
}

impl<A: Arch, M: PhysMem, F> Walk<'_, '_, A, M, F> {
    /// The first root before this one whose walk to `va` links `table` from its entry at
    /// `level`.
    fn earlier_root_reaching(&self, table: PhyAddr, va: VirtAddr, level: u8) -> Option<usize> {
        let top = self.arch.levels().saturating_sub(1);
        (0..self.root).find(|&j| {
            let mut t = self.roots[j];
            let mut l = top;
            loop {
                let Some(slot) = Slot::of(self.mem, t, table_index(va, l)) else {
                    return false;
                };
                match self.arch.decode(slot.load(), l) {
                    Entry::Table(next) if l == level => return next == table,
                    Entry::Table(next) if l > level && l > 0 => (t, l) = (next, l - 1),
                    _ => return false,
                }
            }
        })
    }
}
