//! The seed static API on x86_64: [`X86`], backed by one lock-guarded global [`KernelTable`].

use awk_paging::{ActiveTable, FrameAllocator, GlobalTable, InitError, OffsetPhysMem, Tlb};
use x86_64::structures::paging::OffsetPageTable;

use crate::{X86PageTable, X86_64};

/// The kernel's active table as the static API holds it: reached through the kernel's direct
/// map, with the kernel's frame allocator and TLB hook.
pub type KernelTable = X86PageTable<
    OffsetPhysMem,
    &'static mut (dyn FrameAllocator + Send),
    &'static (dyn Tlb + Sync),
>;

static GLOBAL: GlobalTable<KernelTable> = GlobalTable::new();

/// The seed [`Mapper`](awk_paging::Mapper) on the active x86_64 table.
///
/// ```no_run
/// use awk_paging::{Flags, Mapper, PhyAddr, VirtAddr};
/// use awk_paging_x86_64::{X86, X86_64};
/// # fn kernel(opt: x86_64::structures::paging::OffsetPageTable<'static>,
/// #           frames: &'static mut (dyn awk_paging::FrameAllocator + Send),
/// #           tlb: &'static (dyn awk_paging::Tlb + Sync)) -> Result<(), awk_paging::MapError> {
/// // Once, at boot, with the bootloader's OffsetPageTable:
/// unsafe { X86::init(opt, X86_64::detect(), frames, tlb) }.expect("first init");
/// let (va, pa) = (VirtAddr::new(0xffff_9000_0000_0000), PhyAddr::new(0x20_0000));
/// unsafe { X86::map(va, pa, Flags::RW) }?;
/// assert_eq!(X86::vm_to_phy(va), Some(pa));
/// unsafe { X86::unmap(va) };
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct X86;

impl X86 {
    /// Takes over the active tables described by the kernel's [`OffsetPageTable`] (its level-4
    /// table and physical-memory offset) as the one global instance. (An instance built otherwise
    /// is installed with [`ActiveTable::install`]; [`ActiveTable::with_table`] lends it out.)
    ///
    /// # Safety
    ///
    /// As [`crate::from_offset_page_table`]: the tables are valid, the direct map covers all
    /// physical memory holding tables, and from now on only this crate edits them.
    pub unsafe fn init(
        table: OffsetPageTable<'static>,
        regime: X86_64,
        frames: &'static mut (dyn FrameAllocator + Send),
        tlb: &'static (dyn Tlb + Sync),
    ) -> Result<(), InitError> {
        // SAFETY: forwarded.
        let t = unsafe { crate::from_offset_page_table(table, regime, frames, tlb) };
        Self::install(t)
    }
}

impl ActiveTable for X86 {
    type Arch = X86_64;
    type Mem = OffsetPhysMem;
    type Frames = &'static mut (dyn FrameAllocator + Send);
    type Tlb = &'static (dyn Tlb + Sync);

    fn global() -> &'static GlobalTable<KernelTable> {
        &GLOBAL
    }
}
