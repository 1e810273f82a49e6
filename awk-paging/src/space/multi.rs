//! Walking several address spaces together ([`walk_roots`]), as hyperlight's `walk_va_spaces`
//! does: every leaf is reported once per root that reaches it through tables of its own, and a
//! table an earlier root already reaches at the same place (a shared kernel half) is reported
//! once as [`Walked::Shared`] instead of being walked again.

use crate::arch::{table_index, Arch, Entry, Limits};
use crate::table::entry::Slot;
use crate::{Mapping, PageSize, PhyAddr, PhysMem, VirtAddr, ENTRIES};

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
    for (k, &root) in roots.iter().enumerate() {
        let mut path = [PhyAddr::ZERO; 6];
        path[0] = root;
        let w = Walk {
            arch,
            mem,
            roots,
            root: k,
        };
        w.table(root, top, 0, Limits::NONE, &mut path, 1, &mut f);
    }
}

struct Walk<'a, A, M> {
    arch: &'a A,
    mem: &'a M,
    roots: &'a [PhyAddr],
    root: usize,
}

impl<A: Arch, M: PhysMem> Walk<'_, A, M> {
    #[allow(clippy::too_many_arguments)]
    fn table(
        &self,
        table: PhyAddr,
        level: u8,
        prefix: u64,
        limits: Limits,
        path: &mut [PhyAddr; 6],
        depth: usize,
        f: &mut impl FnMut(Walked),
    ) {
        for i in 0..ENTRIES {
            let Some(slot) = Slot::of(self.mem, table, i) else {
                return;
            };
            let raw = slot.load();
            let bits = prefix | (i as u64) << (12 + 9 * u32::from(level));
            let va = self.arch.va_from_bits(bits);
            match self.arch.decode(raw, level) {
                Entry::Invalid => {}
                Entry::Table(next) if level > 0 && depth < path.len() => {
                    if path[..depth].contains(&next) {
                        continue;
                    }
                    if let Some(first) = self.earlier_root_reaching(next, va, level) {
                        f(Walked::Shared {
                            root: self.root,
                            va,
                            level,
                            table: next,
                            first,
                        });
                        continue;
                    }
                    path[depth] = next;
                    let below = limits.union(self.arch.table_limits(raw, level));
                    self.table(next, level - 1, bits, below, path, depth + 1, f);
                }
                Entry::Table(_) => {}
                Entry::Leaf(frame) => {
                    if let Some(size) = PageSize::from_level(level) {
                        f(Walked::Leaf {
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
        }
    }

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
