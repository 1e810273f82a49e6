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

/// Writes what [`walk_roots`] finds as a listing, one line per range, root by root: runs of
/// mappings (contiguous in virtual and physical addresses, same page size and attributes)
/// reached through the root's own tables, and runs of entries linking tables an earlier root
/// already reaches — the ranges the roots share (a kernel half). Mapping lines read
/// `root K: start-end -> frame size xN r/w/x user|kernel global|ng`; shared lines
/// `root K: start-end shared with root J (L<level> entries xN)`.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::space::{dump_roots, KernelSpace, UserSpace};
/// use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, RangeOptions, VirtAddr};
///
/// let mem = EmuMemory::new(600);
/// let arch = EmuArch::default();
/// let mut k = KernelSpace::new_shared(arch, &mem, &mem, NoTlb, 256).unwrap();
/// let mut g = k.gather();
/// let kva = VirtAddr::new(0xffff_8000_0000_0000);
/// unsafe { k.map_range(kva, PhyAddr::new(0x20_0000), 0x2000, Flags::RW, RangeOptions::default(), &mut g) }
///     .unwrap();
/// k.finish(g).unwrap();
/// let mut u = UserSpace::new(arch, &mem, &mem, NoTlb, k.half()).unwrap();
/// let user = Attrs { user: true, ..Attrs::from(Flags::RO) };
/// unsafe { u.map(VirtAddr::new(0x40_0000), PhyAddr::new(0x90_0000), PageSize::Size4K, user) }
///     .unwrap()
///     .flush();
/// let mut out = String::new();
/// dump_roots(&arch, &mem, &[k.root(), u.root()], &mut out).unwrap();
/// assert_eq!(
///     out.lines().collect::<Vec<_>>(),
///     [
///         "root 0: 0xffff800000000000-0xffff800000002000 -> 0x000000200000 4K x2 rw- kernel global",
///         "root 1: 0x0000000000400000-0x0000000000401000 -> 0x000000900000 4K x1 r-- user ng",
///         "root 1: 0xffff800000000000-0x0000000000000000 shared with root 0 (L3 entries x256)",
///     ]
/// );
/// ```
pub fn dump_roots<A: Arch, M: PhysMem, W: core::fmt::Write>(
    arch: &A,
    mem: &M,
    roots: &[PhyAddr],
    out: &mut W,
) -> core::fmt::Result {
    let mut run: Option<Run> = None;
    let mut result = Ok(());
    walk_roots(arch, mem, roots, |w| {
        let next = Run::of(&w);
        let extended = run.as_mut().is_some_and(|r| r.extend(&next));
        if !extended {
            if let Some(r) = run.replace(next) {
                result = result.and_then(|()| r.write(out));
            }
        }
    });
    if let Some(r) = run {
        result = result.and_then(|()| r.write(out));
    }
    result
}

/// One line of [`dump_roots`].
#[derive(Clone, Copy)]
struct Run {
    root: usize,
    start: u64,
    len: u64,
    count: u64,
    kind: RunKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Mapped {
        frame: u64,
        size: PageSize,
        attrs: crate::Attrs,
    },
    Shared {
        first: usize,
        level: u8,
    },
}

impl Run {
    fn of(w: &Walked) -> Run {
        match *w {
            Walked::Leaf { root, mapping } => Run {
                root,
                start: mapping.page.as_u64(),
                len: mapping.size.bytes(),
                count: 1,
                kind: RunKind::Mapped {
                    frame: mapping.frame.as_u64(),
                    size: mapping.size,
                    attrs: mapping.attrs,
                },
            },
            Walked::Shared {
                root,
                va,
                level,
                first,
                ..
            } => Run {
                root,
                start: va.as_u64(),
                len: 1u64 << (12 + 9 * u32::from(level)),
                count: 1,
                kind: RunKind::Shared { first, level },
            },
        }
    }

    /// Takes `next` in if it continues this run.
    fn extend(&mut self, next: &Run) -> bool {
        let adjacent = self.root == next.root && self.start.wrapping_add(self.len) == next.start;
        let same = match (self.kind, next.kind) {
            (
                RunKind::Mapped { frame, size, attrs },
                RunKind::Mapped {
                    frame: f2,
                    size: s2,
                    attrs: a2,
                },
            ) => size == s2 && attrs == a2 && frame.wrapping_add(self.len) == f2,
            (a, b) => a == b,
        };
        if adjacent && same {
            self.len += next.len;
            self.count += 1;
        }
        adjacent && same
    }

    fn write(&self, out: &mut impl core::fmt::Write) -> core::fmt::Result {
        let (start, end) = (self.start, self.start.wrapping_add(self.len));
        write!(out, "root {}: {start:#018x}-{end:#018x} ", self.root)?;
        match self.kind {
            RunKind::Mapped { frame, size, attrs } => {
                let f = attrs.flags;
                writeln!(
                    out,
                    "-> {frame:#014x} {size} x{} r{}{} {} {}",
                    self.count,
                    if f.write { 'w' } else { '-' },
                    if f.execute { 'x' } else { '-' },
                    if attrs.user { "user" } else { "kernel" },
                    if attrs.global { "global" } else { "ng" },
                )
            }
            RunKind::Shared { first, level } => writeln!(
                out,
                "shared with root {first} (L{level} entries x{})",
                self.count
            ),
        }
    }
}
