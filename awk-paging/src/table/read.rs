//! Read-only walks over every mapping of a live table: the same walker as foreign tables
//! ([`crate::inspect`]), reading through [`LiveMem`].

use core::ops::ControlFlow;

use super::entry::Slot;
use super::{Mapping, PageTable};
use crate::arch::Arch;
use crate::inspect::{ForeignTable, Leaf, PhysRead, ReadError, Visitor};
use crate::{FrameAllocator, PhyAddr, PhysMem, Tlb, ENTRIES};

/// Physical memory behind a [`PhysMem`] as a [`PhysRead`]: how the read-only walker reads a
/// live table. A read fails only where the accessor has no frame (or at an address that is not
/// 8-byte aligned); every read is one atomic 64-bit load, as the walker's own.
///
/// ```
/// use awk_paging::emu::EmuMemory;
/// use awk_paging::inspect::{LiveMem, PhysRead};
/// use awk_paging::PhyAddr;
/// let mem = EmuMemory::new(2);
/// let frame = mem.allocate_data_frame().unwrap();
/// mem.write_u64(PhyAddr::new(frame.as_u64() + 8), 42);
/// let live = LiveMem::new(&mem);
/// assert_eq!(live.read_u64(PhyAddr::new(frame.as_u64() + 8)), Ok(42));
/// assert!(live.read_u64(PhyAddr::new(frame.as_u64() + 4)).is_err()); // misaligned
/// assert!(live.read_u64(PhyAddr::new(0x7fff_0000_0000)).is_err()); // outside the arena
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LiveMem<M>(M);

impl<M: PhysMem> LiveMem<M> {
    /// Reads through `mem`.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, inspect::LiveMem};
    /// let mem = EmuMemory::new(1);
    /// let _live = LiveMem::new(&mem);
    /// ```
    pub const fn new(mem: M) -> Self {
        LiveMem(mem)
    }
}

impl<M: PhysMem> PhysRead for LiveMem<M> {
    #[inline(always)]
    fn read_u64(&self, pa: PhyAddr) -> Result<u64, ReadError> {
        let a = pa.as_u64();
        if !a.is_multiple_of(8) {
            return Err(ReadError { addr: pa });
        }
        let index = ((a & 0xfff) / 8) as usize;
        Slot::of(&self.0, PhyAddr::new(a & !0xfff), index)
            .map(Slot::load)
            .ok_or(ReadError { addr: pa })
    }
}

/// Hands every leaf to a closure as a [`Mapping`].
struct Mappings<F>(F);

impl<F: FnMut(Mapping)> Visitor for Mappings<F> {
    type Break = core::convert::Infallible;

    #[inline]
    fn leaf(&mut self, l: &Leaf) -> ControlFlow<Self::Break> {
        (self.0)(Mapping {
            page: l.va,
            frame: l.frame,
            size: l.size,
            attrs: l.attrs,
        });
        ControlFlow::Continue(())
    }
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// This table as a [`ForeignTable`] read through its own accessor: the read-only
    /// walker, translation, ptdump and audit of [`crate::inspect`], on live tables. The walk
    /// budget is unlimited (a table this type owns is a tree).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x5000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
    /// assert!(pt.inspect().audit(|_| {}).unwrap().is_clean());
    /// ```
    pub fn inspect(&self) -> ForeignTable<A, LiveMem<&M>> {
        ForeignTable::new(self.arch, LiveMem::new(&self.mem), self.root).with_budget(u64::MAX)
    }

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
    pub fn for_each_mapping(&self, f: impl FnMut(Mapping)) {
        // Unlimited budget and an infallible visitor: the walk cannot end early.
        let _ = self.inspect().walk(&mut Mappings(f));
    }
}

const _: () = assert!(ENTRIES * 8 == 4096);
