//! The seed static API on AArch64: [`AArch64`], backed by one lock-guarded global
//! [`KernelTable`] whose lock masks interrupts with [`AArch64Irq`].

use awk_paging::irq::IrqControl;
use awk_paging::{ActiveTable, FrameAllocator, InitError, KernelGlobal, OffsetPhysMem, Tlb};

use core::mem::ManuallyDrop;
use core::ptr;

use awk_paging::PageTable;

use crate::mair::{MairError, MairLayout};
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

static GLOBAL: KernelGlobal<AArch64> = KernelGlobal::new();

/// Interrupt masking and CPU identity for [`AArch64`]'s lock (see [`awk_paging::irq`]).
///
/// On bare metal (`target_os = "none"`):
///
/// - [`disable`](IrqControl::disable): `MRS Xt, DAIF; MSR DAIFSet, #3` — saves the PSTATE.{D,A,I,F}
///   mask bits, then masks IRQ and FIQ (DAIFSet immediate bit 1 = I, bit 0 = F; Arm ARM, "DAIF,
///   Interrupt Mask Bits" and "MSR (immediate)"). FIQ is masked too because some systems deliver
///   ordinary interrupts as FIQs. SError and debug exceptions, and synchronous aborts, are not
///   masked; the lock's re-entry check covers handlers of those.
/// - [`restore`](IrqControl::restore): `MSR DAIF, Xt` with the saved value: a CPU that had
///   interrupts masked keeps them masked.
/// - [`cpu_id`](IrqControl::cpu_id): the affinity fields of `MPIDR_EL1` (`Aff0` bits 7:0,
///   `Aff1` bits 15:8, `Aff2` bits 23:16, `Aff3` bits 39:32) packed into 32 bits as
///   `Aff3:Aff2:Aff1:Aff0`: unique per PE in the system (Arm ARM, "MPIDR_EL1, Multiprocessor
///   Affinity Register").
///
/// On other targets (the host) it is [`awk_paging::irq::HostIrq`]: nothing to mask, one id per
/// thread.
///
/// ```
/// use awk_paging::irq::IrqControl;
/// use awk_paging_aarch64::AArch64Irq;
/// let saved = AArch64Irq::disable();
/// let cpu = AArch64Irq::cpu_id(); // stable while interrupts are masked
/// assert_eq!(AArch64Irq::cpu_id(), cpu);
/// AArch64Irq::restore(saved);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AArch64Irq;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hw {
    use core::arch::asm;

    /// `MRS DAIF; MSR DAIFSet, #3`: the mask bits before, and IRQ and FIQ masked.
    #[inline]
    pub(super) fn disable() -> u64 {
        let daif: u64;
        // SAFETY: reads DAIF and masks IRQ and FIQ on this PE; no memory of ours is touched (the
        // asm is still a compiler barrier: accesses do not move out of the masked section).
        unsafe {
            asm!(
                "mrs {}, daif",
                "msr daifset, #3",
                out(reg) daif,
                options(nostack, preserves_flags)
            )
        };
        daif
    }

    /// `MSR DAIF`: the mask bits as they were.
    #[inline]
    pub(super) fn restore(daif: u64) {
        // SAFETY: writes back the DAIF value the matching `disable` read on this PE.
        unsafe { asm!("msr daif, {}", in(reg) daif, options(nostack, preserves_flags)) };
    }

    /// `MPIDR_EL1` affinity, packed `Aff3:Aff2:Aff1:Aff0`.
    #[inline]
    pub(super) fn cpu_id() -> usize {
        let mpidr: u64;
        // SAFETY: reads an identification register, accessible at EL1 and above.
        unsafe {
            asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack, preserves_flags))
        };
        ((mpidr & 0x00ff_ffff) | ((mpidr >> 8) & 0xff00_0000)) as usize
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
impl IrqControl for AArch64Irq {
    /// The DAIF register as it was.
    type State = u64;

    #[inline]
    fn disable() -> u64 {
        hw::disable()
    }

    #[inline]
    fn restore(daif: u64) {
        hw::restore(daif)
    }

    #[inline]
    fn cpu_id() -> usize {
        hw::cpu_id()
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
impl IrqControl for AArch64Irq {
    /// Nothing to restore on the host.
    type State = ();

    #[inline]
    fn disable() {}

    #[inline]
    fn restore(_state: ()) {}

    #[inline]
    fn cpu_id() -> usize {
        awk_paging::irq::HostIrq::cpu_id()
    }
}

/// The seed [`Mapper`](awk_paging::Mapper) on the active AArch64 table, installed once with
/// [`ActiveTable::install`] and lent out with [`ActiveTable::with_table`].
///
/// Its lock masks interrupts with [`AArch64Irq`] while held and reports re-entry on the same PE
/// (from the frame allocator, the TLB hook or an exception handler) as an error instead of
/// deadlocking; the rules for hooks are in [`ActiveTable`]'s documentation.
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
/// // From inside an operation on the same table: an error, not a deadlock.
/// assert_eq!(
///     AArch64::with_table(|_| unsafe { AArch64::map(VirtAddr::new(0x2000), PhyAddr::new(0), Flags::RO) }),
///     Ok(Err(awk_paging::MapError::Reentered))
/// );
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

    /// [`init`](Self::init) for a kernel that keeps its own MAIR_EL1: the table's regime encodes
    /// and decodes memory types through the indices `mair_el1` holds (see
    /// [`MairLayout::from_mair`]), so live tables taken over keep their meaning and the kernel
    /// does not reprogram MAIR_EL1.
    ///
    /// # Errors
    ///
    /// [`MairInitError::Mair`] when `mair_el1` lacks a memory type the crate uses (nothing is
    /// installed), [`MairInitError::AlreadyInitialized`] as [`init`](Self::init).
    ///
    /// ```no_run
    /// # use awk_paging_aarch64::{AArch64, KernelTable};
    /// # fn read_mair_el1() -> u64 { 0x04_bb_ff_44_00 } // `mrs x0, mair_el1` in a kernel
    /// # fn kernel(live: KernelTable) {
    /// AArch64::init_with_mair(live, read_mair_el1()).expect("MAIR_EL1 has every memory type");
    /// # }
    /// ```
    pub fn init_with_mair(table: KernelTable, mair_el1: u64) -> Result<(), MairInitError> {
        let layout = MairLayout::from_mair(mair_el1).map_err(MairInitError::Mair)?;
        Self::init_with_layout(table, layout).map_err(|_| MairInitError::AlreadyInitialized)
    }

    /// [`init`](Self::init) with the table's regime encoding through `layout` (e.g.
    /// [`MairLayout::from_mair_uncached_write_through`] for a kernel whose MAIR_EL1 has no
    /// write-through attribute).
    ///
    /// # Errors
    ///
    /// [`InitError::AlreadyInitialized`] as [`init`](Self::init).
    ///
    /// # Porting: taking over live tables and their MAIR_EL1 (awkernel's)
    ///
    /// awkernel programs MAIR_EL1 = `0x44_04_ff` (write-back, Device-nGnRE, non-cacheable; no
    /// write-through) and builds its TTBR0 tables itself. Taking them over keeps both: the
    /// table's regime encodes through that layout, write-through served non-cacheable. On the
    /// host, with the live tables and memory simulated:
    ///
    /// ```
    /// use awk_paging::{ActiveTable, Flags, FrameAllocator, Mapper, NoTlb, OffsetPhysMem};
    /// use awk_paging::{PageTable, PhyAddr, VirtAddr};
    /// use awk_paging_aarch64::{mair::MairLayout, AArch64, A64};
    /// # struct Frames(std::sync::Mutex<Vec<u64>>);
    /// # unsafe impl FrameAllocator for &'static Frames {
    /// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { self.0.lock().unwrap().pop().map(PhyAddr::new) }
    /// #     unsafe fn deallocate_frame(&mut self, f: PhyAddr) { self.0.lock().unwrap().push(f.as_u64()) }
    /// # }
    /// # let buf = Box::leak(vec![0u8; 33 * 4096].into_boxed_slice());
    /// # let host = (buf.as_mut_ptr() as u64 + 4095) & !4095;
    /// # let pool: &'static Frames =
    /// #     Box::leak(Box::new(Frames(std::sync::Mutex::new((1..32).map(|i| 0x10_0000 + i * 4096).collect()))));
    /// # let frames: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    /// # let linear = unsafe { OffsetPhysMem::new(host - 0x10_0000) };
    /// # let ttbr0 = PhyAddr::new(0x10_0000); // an empty table here; the kernel's live one there
    /// # let tlb: &'static (dyn awk_paging::Tlb + Sync) = &NoTlb; // on bare metal: TlbEl1
    /// // TTBR0_EL1 and MAIR_EL1 as the kernel programmed them (`mrs` on bare metal).
    /// let mair_el1 = 0x44_04_ff;
    /// let live = unsafe { PageTable::from_root(A64::default(), linear, frames, tlb, ttbr0) };
    /// let layout = MairLayout::from_mair_uncached_write_through(mair_el1).unwrap();
    /// AArch64::init_with_layout(live, layout).expect("first init");
    ///
    /// let uart = VirtAddr::new(0x900_0000);
    /// unsafe { AArch64::map(uart, PhyAddr::new(0x900_0000), Flags::DEVICE) }.unwrap();
    /// let raw = AArch64::with_table(|t| t.raw_entry(uart)).unwrap().unwrap().1;
    /// assert_eq!((raw >> 2) & 7, 1, "AttrIndx 1: the kernel's Device-nGnRE");
    /// ```
    pub fn init_with_layout(table: KernelTable, layout: MairLayout) -> Result<(), InitError> {
        let root = table.root();
        let policy = table.policy();
        let table = ManuallyDrop::new(table);
        // SAFETY: every part moved out exactly once of a value never used or dropped again.
        let (arch, mem, frames, tlb) = unsafe {
            (
                ptr::read(table.arch()),
                ptr::read(table.mem()),
                ptr::read(table.frames()),
                ptr::read(table.tlb()),
            )
        };
        // SAFETY: the same tables, accessor, allocator and TLB hook; only the reading of the
        // AttrIndx field changes, to what the hardware reads through `mair_el1`.
        let mut table: KernelTable =
            unsafe { PageTable::from_root(arch.with_mair(layout), mem, frames, tlb, root) };
        table.set_policy(policy);
        Self::init(table)
    }
}

/// Why [`AArch64::init_with_mair`] installed nothing.
///
/// ```
/// use awk_paging::MemoryType;
/// use awk_paging_aarch64::{mair::MairError, MairInitError};
/// let e = MairInitError::Mair(MairError::Missing(MemoryType::Device));
/// assert_ne!(e, MairInitError::AlreadyInitialized);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MairInitError {
    /// The MAIR_EL1 value lacks a memory type (which one: [`MairError::Missing`]).
    Mair(MairError),
    /// A table is installed already; the first one stays.
    AlreadyInitialized,
}

impl core::fmt::Display for MairInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MairInitError::Mair(e) => e.fmt(f),
            MairInitError::AlreadyInitialized => InitError::AlreadyInitialized.fmt(f),
        }
    }
}

impl ActiveTable for AArch64 {
    type Arch = A64;
    type Mem = OffsetPhysMem;
    type Frames = &'static mut (dyn FrameAllocator + Send);
    type Tlb = &'static (dyn Tlb + Sync);
    type Irq = AArch64Irq;

    fn global() -> &'static KernelGlobal<Self> {
        &GLOBAL
    }
}
