//! Interoperation with the `x86_64` crate's [`OffsetPageTable`].

use awk_paging::{FrameAllocator, OffsetPhysMem, PhyAddr, Tlb};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

use crate::{X86PageTable, X86_64};

/// Takes over the tables behind an [`OffsetPageTable`] (e.g. the one a bootloader handed over).
///
/// # Safety
///
/// The level-4 table and every table below it are valid x86_64 tables reachable through the
/// `OffsetPageTable`'s physical offset; nothing else edits them while the returned value lives;
/// frames of tables it frees may go to `frames`.
///
/// ```
/// use awk_paging::{emu::EmuMemory, FrameAllocator, NoTlb, PageSize, VirtAddr};
/// use x86_64::structures::paging::{OffsetPageTable, PageTable};
///
/// let mem = EmuMemory::new(8);
/// let direct = unsafe { mem.offset_mapping() };
/// let root = (&mem).allocate_frame().unwrap();
/// let l4 = (root.as_u64() + direct.offset()) as *mut PageTable;
/// let opt = unsafe {
///     l4.write(PageTable::new());
///     OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(direct.offset()))
/// };
/// let pt = unsafe {
///     awk_paging_x86_64::from_offset_page_table(opt, awk_paging_x86_64::X86_64::new(), &mem, NoTlb)
/// };
/// assert_eq!(pt.root(), root);
/// ```
pub unsafe fn from_offset_page_table<F: FrameAllocator, T: Tlb + Clone>(
    table: OffsetPageTable<'_>,
    regime: X86_64,
    frames: F,
    tlb: T,
) -> X86PageTable<OffsetPhysMem, F, T> {
    let offset = table.phys_offset().as_u64();
    let l4 = core::ptr::from_ref(table.level_4_table()) as u64;
    let root = PhyAddr::new(l4.wrapping_sub(offset));
    // SAFETY: forwarded contract.
    unsafe {
        awk_paging::PageTable::from_root(regime, OffsetPhysMem::new(offset), frames, tlb, root)
    }
}

/// Lends the tables to the `x86_64` crate as an [`OffsetPageTable`] for the duration of `f`
/// (for code written against its `Mapper`/`Translate` traits). The exclusive borrow of `table`
/// keeps the two from editing at the same time.
///
/// # Safety
///
/// `OffsetPageTable` offers safe ways to write arbitrary entries (`level_4_table_mut`), and
/// the table's walker dereferences whatever the entries point at through its unchecked
/// [`OffsetPhysMem`]. So `f` must leave valid x86_64 tables behind: every table entry points at
/// a table frame reachable through the direct map, and frames of any table it creates come from
/// an allocator whose frames the direct map covers.
///
/// ```
/// use awk_paging::{emu::EmuMemory, Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
/// use x86_64::structures::paging::{mapper::Translate, OffsetPageTable};
///
/// let mem = EmuMemory::new(8);
/// let regime = awk_paging_x86_64::X86_64::new();
/// let mut pt = PageTable::new(regime, unsafe { mem.offset_mapping() }, &mem, NoTlb).unwrap();
/// let (va, pa) = (VirtAddr::new(0x4000_0000), PhyAddr::new(0x20_0000));
/// unsafe { pt.map(va, pa, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// // SAFETY: the closure only reads.
/// let seen = unsafe {
///     awk_paging_x86_64::with_offset_page_table(&mut pt, |opt| {
///         opt.translate_addr(x86_64::VirtAddr::new(0x4000_0123))
///     })
/// };
/// assert_eq!(seen, Some(x86_64::PhysAddr::new(0x20_0123)));
/// ```
pub unsafe fn with_offset_page_table<F: FrameAllocator, T: Tlb + Clone, R>(
    table: &mut X86PageTable<OffsetPhysMem, F, T>,
    f: impl FnOnce(&mut OffsetPageTable<'_>) -> R,
) -> R {
    let offset = table.mem().offset();
    let l4 = table.root().as_u64().wrapping_add(offset) as *mut PageTable;
    // SAFETY: the root is a live table reachable through the direct map (the `PhysMem` contract
    // of `OffsetPhysMem` as accepted when `table` was built); `&mut table` gives exclusive
    // access for the lifetime of the borrow.
    let mut opt = unsafe { OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(offset)) };
    let result = f(&mut opt);
    // The x86_64 crate may have unlinked tables (e.g. `CleanUp`): drop our cached walk.
    table.forget_cached_walks();
    result
}
