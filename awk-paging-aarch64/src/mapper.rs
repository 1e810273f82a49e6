//! The seed static API on AArch64: [`AArch64`], backed by one lock-guarded global
//! [`KernelTable`].

use awk_paging::{ActiveTable, FrameAllocator, GlobalTable, InitError, OffsetPhysMem, Tlb};

use crate::{AArch64PageTable, A64};

/// The kernel's active TTBR0 table as the static API holds it: tables reached through a linear
/// map ([`OffsetPhysMem`]), the kernel's frame allocator and TLB hook as `'static` trait objects
/// (so one concrete type fits every kernel).
///
/// ```
/// fn assert_send<T: Send>() {}
/// assert_send::<awk_paging_aarch64::KernelTable>(); // so the global lock is `Sync`
/// ```
pub type KernelTable = AArch64PageTable<
    OffsetPhysMem,
    &'static mut (dyn FrameAllocator + Send),
    &'static (dyn Tlb + Sync),
>;

static GLOBAL: GlobalTable<KernelTable> = GlobalTable::new();

/// The seed [`Mapper`](awk_paging::Mapper) on the active AArch64 table, installed once with
/// [`ActiveTable::install`] and lent out with [`ActiveTable::with_table`].
///
/// ```no_run
/// use awk_paging::{ActiveTable, Flags, Mapper, PageTable, PhyAddr, VirtAddr, OffsetPhysMem};
/// use awk_paging_aarch64::{AArch64, A64};
/// # fn kernel(frames: &'static mut (dyn awk_paging::FrameAllocator + Send),
/// #           tlb: &'static (dyn awk_paging::Tlb + Sync)) -> Result<(), awk_paging::MapError> {
/// let table = PageTable::new(A64::default(), unsafe { OffsetPhysMem::new(0) }, frames, tlb)?;
/// AArch64::install(table).expect("first init");
/// unsafe { AArch64::map(VirtAddr::new(0x1_0000_0000), PhyAddr::new(0x4000_0000), Flags::RW) }?;
/// assert_eq!(AArch64::vm_to_phy(VirtAddr::new(0x1_0000_0000)), Some(PhyAddr::new(0x4000_0000)));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct AArch64;

impl AArch64 {
    /// Installs the kernel's table as the global one — the seed API's name for
    /// [`ActiveTable::install`]. Once only: a second call returns
    /// [`InitError::AlreadyInitialized`] and the first table stays (the refused one is dropped
    /// without freeing its frames).
    ///
    /// ```no_run
    /// # use awk_paging::InitError;
    /// # use awk_paging_aarch64::{AArch64, KernelTable};
    /// # fn kernel(a: KernelTable, b: KernelTable) {
    /// assert_eq!(AArch64::init(a), Ok(()));
    /// assert_eq!(AArch64::init(b), Err(InitError::AlreadyInitialized));
    /// # }
    /// ```
    pub fn init(table: KernelTable) -> Result<(), InitError> {
        <Self as ActiveTable>::install(table)
    }
}

impl ActiveTable for AArch64 {
    type Arch = A64;
    type Mem = OffsetPhysMem;
    type Frames = &'static mut (dyn FrameAllocator + Send);
    type Tlb = &'static (dyn Tlb + Sync);

    fn global() -> &'static GlobalTable<KernelTable> {
        &GLOBAL
    }
}
