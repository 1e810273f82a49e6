//! Read-only walks over every mapping.

use super::entry::Slot;
use super::walk::Visited;
use super::{Mapping, PageTable};
use crate::arch::{Arch, Entry, Limits};
use crate::{FrameAllocator, PageSize, PhyAddr, PhysMem, Tlb, ENTRIES};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Calls `f` for every mapping, in ascending order of table index (address order within
    /// each half of the address space), with its effective attributes. Tables that cannot be
    /// reached are skipped, and so are entries that lead back to a table on their own path
    /// (a recursive slot would otherwise show every table as a phantom mapping).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RO) }
    ///     .unwrap()
    ///     .flush();
    /// let mut seen = Vec::new();
    /// pt.for_each_mapping(|m| seen.push((m.page, m.frame, m.size)));
    /// assert_eq!(seen, [(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M)]);
    /// ```
    pub fn for_each_mapping(&self, mut f: impl FnMut(Mapping)) {
        let top = self.arch.levels().saturating_sub(1);
        let mut visited = Visited::new(self.root);
        self.visit(self.root, top, 0, Limits::NONE, &mut visited, &mut f);
    }

    fn visit(
        &self,
        table: PhyAddr,
        level: u8,
        prefix: u64,
        limits: Limits,
        visited: &mut Visited,
        f: &mut impl FnMut(Mapping),
    ) {
        for i in 0..ENTRIES {
            let Some(slot) = Slot::of(&self.mem, table, i) else {
                return;
            };
            let raw = slot.load();
            let bits = prefix | (i as u64) << (12 + 9 * u32::from(level));
            match self.arch.decode(raw, level) {
                Entry::Invalid => {}
                Entry::Table(next) if level > 0 => {
                    if visited.enter(next) {
                        let below = limits.union(self.arch.table_limits(raw, level));
                        self.visit(next, level - 1, bits, below, visited, f);
                        visited.leave();
                    }
                }
                Entry::Table(_) => {}
                Entry::Leaf(frame) => {
                    if let Some(size) = PageSize::from_level(level) {
                        f(Mapping {
                            page: self.arch.va_from_bits(bits),
                            frame,
                            size,
                            attrs: self.arch.effective_attrs(raw, level, limits),
                        });
                    }
                }
            }
        }
    }
}
