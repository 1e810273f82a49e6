//! The seed static API on x86_64: [`X86`], backed by one lock-guarded global [`KernelTable`]
//! whose lock masks interrupts with [`X86Irq`].

use awk_paging::irq::IrqControl;
use awk_paging::{ActiveTable, FrameAllocator, InitError, KernelGlobal, OffsetPhysMem, Tlb};
use x86_64::structures::paging::OffsetPageTable;

use crate::{X86PageTable, X86_64};

/// The kernel's active table as the static API holds it: reached through the kernel's direct
/// map, with the kernel's frame allocator and TLB hook.
pub type KernelTable = X86PageTable<
    OffsetPhysMem,
    &'static mut (dyn FrameAllocator + Send),
    &'static (dyn Tlb + Sync),
>;

static GLOBAL: KernelGlobal<X86> = KernelGlobal::new();

/// Interrupt masking and CPU identity for [`X86`]'s lock (see [`awk_paging::irq`]).
///
/// On bare metal (`target_os = "none"`):
///
/// - [`disable`](IrqControl::disable): `PUSHFQ; POP reg; CLI` — reads RFLAGS, then clears
///   RFLAGS.IF (bit 9, the interrupt-enable flag; Intel SDM Vol. 1 §3.4.3.3, Vol. 2 CLI). The
///   state is whether IF was set. NMIs and exceptions are not masked; the lock's re-entry check
///   covers them.
/// - [`restore`](IrqControl::restore): `STI` only if IF was set before (Vol. 2 STI; interrupts
///   are taken from the instruction after it on); a CPU that had interrupts masked keeps them
///   masked, and no other RFLAGS bit is touched.
/// - [`cpu_id`](IrqControl::cpu_id): the local APIC ID from `CPUID`: the x2APIC ID of leaf 0BH
///   (EDX) where the CPU enumerates that leaf (max leaf ≥ 0BH and leaf 0BH EBX ≠ 0), else the
///   8-bit initial APIC ID of leaf 01H (`EBX[31:24]`) (Vol. 2 CPUID). Which leaf is decided once.
///   `CPUID` is serialising and, under a hypervisor, a VM exit: a kernel with a cheaper per-CPU
///   id (GS-relative data, `RDPID`) can write its own [`IrqControl`] for its own
///   [`ActiveTable`] backend.
///
/// On the host it is [`awk_paging::irq::HostIrq`]: nothing to mask, one id per thread.
///
/// ```
/// use awk_paging::irq::IrqControl;
/// use awk_paging_x86_64::X86Irq;
/// let saved = X86Irq::disable();
/// let cpu = X86Irq::cpu_id(); // stable while interrupts are masked
/// assert_eq!(X86Irq::cpu_id(), cpu);
/// X86Irq::restore(saved);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86Irq;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod hw {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU8, Ordering};

    /// RFLAGS.IF.
    const IF: u64 = 1 << 9;

    /// Which CPUID leaf holds the APIC ID: not decided yet, leaf 0BH, leaf 01H.
    const UNKNOWN: u8 = 0;
    const LEAF_0B: u8 = 1;
    const LEAF_01: u8 = 2;
    static APIC_ID_LEAF: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// `PUSHFQ; POP; CLI`: whether IF was set, and IF cleared.
    #[inline]
    pub(super) fn disable() -> bool {
        let rflags: u64;
        // SAFETY: reads RFLAGS through the stack and clears IF; no memory of ours is touched
        // (the asm is still a compiler barrier: accesses do not move out of the masked section).
        // The status flags are untouched (CLI only changes IF).
        unsafe { asm!("pushfq", "pop {}", "cli", out(reg) rflags, options(preserves_flags)) };
        rflags & IF != 0
    }

    /// `STI` if IF was set.
    #[inline]
    pub(super) fn restore(if_was_set: bool) {
        if if_was_set {
            // SAFETY: sets IF as it was before the matching `disable`.
            unsafe { asm!("sti", options(nostack, preserves_flags)) };
        }
    }

    /// The local APIC ID (x2APIC ID where leaf 0BH is enumerated).
    #[inline]
    pub(super) fn cpu_id() -> usize {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        let leaf = match APIC_ID_LEAF.load(Ordering::Relaxed) {
            UNKNOWN => {
                let leaf = if __cpuid(0).eax >= 0xb && __cpuid_count(0xb, 0).ebx != 0 {
                    LEAF_0B
                } else {
                    LEAF_01
                };
                APIC_ID_LEAF.store(leaf, Ordering::Relaxed);
                leaf
            }
            known => known,
        };
        if leaf == LEAF_0B {
            __cpuid_count(0xb, 0).edx as usize
        } else {
            (__cpuid(1).ebx >> 24) as usize
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
impl IrqControl for X86Irq {
    /// Whether RFLAGS.IF was set.
    type State = bool;

    #[inline]
    fn disable() -> bool {
        hw::disable()
    }

    #[inline]
    fn restore(if_was_set: bool) {
        hw::restore(if_was_set)
    }

    #[inline]
    fn cpu_id() -> usize {
        hw::cpu_id()
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
impl IrqControl for X86Irq {
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

/// The seed [`Mapper`](awk_paging::Mapper) on the active x86_64 table.
///
/// `map` and `unmap` take the table's lock, which masks interrupts with [`X86Irq`] while held
/// and reports re-entry on the same CPU (from the TLB hook or an exception handler) as an error
/// instead of deadlocking. The frame allocator is never called under that lock, so it may call
/// the seed API itself; `vm_to_phy` takes no lock at all. The rules for hooks are in
/// [`ActiveTable`]'s documentation.
///
/// ```no_run
/// use awk_paging::{ActiveTable, Flags, Mapper, PhyAddr, VirtAddr};
/// use awk_paging_x86_64::{X86, X86_64};
/// # fn kernel(opt: x86_64::structures::paging::OffsetPageTable<'static>,
/// #           frames: &'static mut (dyn awk_paging::FrameAllocator + Send),
/// #           tlb: &'static (dyn awk_paging::Tlb + Sync)) -> Result<(), awk_paging::MapError> {
/// // Once, at boot, with the bootloader's OffsetPageTable:
/// unsafe { X86::init(opt, X86_64::detect(), frames, tlb) }.expect("first init");
/// let (va, pa) = (VirtAddr::new(0xffff_9000_0000_0000), PhyAddr::new(0x20_0000));
/// unsafe { X86::map(va, pa, Flags::RW) }?;
/// assert_eq!(X86::vm_to_phy(va), Some(pa));
/// // From inside an operation on the same table: edits are an error, not a deadlock.
/// assert_eq!(
///     X86::with_table(|_| unsafe { X86::map(va, pa, Flags::RW) }),
///     Ok(Err(awk_paging::MapError::Reentered))
/// );
/// unsafe { X86::unmap(va) };
/// # Ok(()) }
/// ```
///
/// # Porting: a heap-backed frame allocator that maps (awkernel's)
///
/// A kernel whose page-table frames come from its own heap hands out a heap page, and finds its
/// physical address with `vm_to_phy`; its heap grows by mapping more pages with `map`. Both
/// calls come from inside `allocate_frame`, in the middle of an outer `map`: they work, because
/// the outer `map` takes its frames before it takes the lock. Such an allocator usually cannot
/// take frames back into the heap's page supply: it says so with
/// [`can_free`](awk_paging::FrameAllocator::can_free), and the table keeps reclaimed tables for
/// reuse. On the host, with the bootloader's tables and memory simulated:
///
/// ```
/// use awk_paging::{ActiveTable, Flags, FrameAllocator, Mapper, NoTlb, PhyAddr, VirtAddr};
/// use awk_paging_x86_64::{X86, X86_64};
/// use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
/// # use x86_64::structures::paging::{self as x, Mapper as _, OffsetPageTable, PageTable};
/// # const FRAMES: u64 = 64;
/// # let buf = Box::leak(vec![0u8; (FRAMES as usize + 1) * 4096].into_boxed_slice());
/// # let host = (buf.as_mut_ptr() as u64 + 4095) & !4095;
/// # let offset = host - 0x10_0000; // physical 1 MiB.. is host memory at `offset`
/// # let l4 = unsafe { &mut *((0x10_0000 + offset) as *mut PageTable) };
/// # let mut boot = unsafe { OffsetPageTable::new(l4, x86_64::VirtAddr::new(offset)) };
/// # struct Early;
/// # unsafe impl x::FrameAllocator<x::Size4KiB> for Early {
/// #     fn allocate_frame(&mut self) -> Option<x::PhysFrame> {
/// #         Some(x::PhysFrame::containing_address(x86_64::PhysAddr::new(NEXT_FRAME.fetch_add(0x1000, SeqCst))))
/// #     }
/// # }
/// /// The kernel's early physical frame supply (boot memory map).
/// static NEXT_FRAME: AtomicU64 = AtomicU64::new(0x10_1000);
/// /// The heap: pages from `HEAP` on; `MAPPED` of them mapped, `USED` handed out.
/// const HEAP: u64 = 0xffff_c000_0000_0000;
/// static MAPPED: AtomicU64 = AtomicU64::new(4);
/// static USED: AtomicU64 = AtomicU64::new(0);
/// // The bootloader mapped the first 4 heap pages (hidden: `x86_64` crate `map_to`).
/// # for i in 0..4 {
/// #     let page = x::Page::<x::Size4KiB>::containing_address(x86_64::VirtAddr::new(HEAP + i * 0x1000));
/// #     let frame = x::PhysFrame::containing_address(x86_64::PhysAddr::new(NEXT_FRAME.fetch_add(0x1000, SeqCst)));
/// #     let f = x::PageTableFlags::PRESENT | x::PageTableFlags::WRITABLE;
/// #     unsafe { boot.map_to(page, frame, f, &mut Early) }.unwrap().ignore();
/// # }
///
/// /// awkernel-style: a page of the heap, translated with `vm_to_phy`; when the heap is used up
/// /// it grows by mapping a page with `map` — both from inside `allocate_frame`.
/// struct HeapFrames;
/// unsafe impl FrameAllocator for HeapFrames {
///     fn allocate_frame(&mut self) -> Option<PhyAddr> {
///         let n = USED.fetch_add(1, SeqCst);
///         if n >= MAPPED.load(SeqCst) {
///             let frame = PhyAddr::new(NEXT_FRAME.fetch_add(0x1000, SeqCst));
///             let page = VirtAddr::new(HEAP + n * 0x1000);
///             unsafe { X86::map(page, frame, Flags::RW) }.ok()?; // the heap grows
///             MAPPED.fetch_add(1, SeqCst);
///         }
///         X86::vm_to_phy(VirtAddr::new(HEAP + n * 0x1000)) // the page's frame
///     }
///     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
///     fn can_free(&self) -> bool { false } // heap pages do not go back to the frame supply
/// }
///
/// let frames: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(HeapFrames));
/// let tlb: &'static (dyn awk_paging::Tlb + Sync) = &NoTlb; // on bare metal: Invlpg, or a shootdown
/// unsafe { X86::init(boot, X86_64::new(), frames, tlb) }.expect("first init");
/// let (va, pa) = (VirtAddr::new(0xffff_9000_0000_0000), PhyAddr::new(0x4000_0000));
/// assert_eq!(unsafe { X86::map(va, pa, Flags::RW) }, Ok(()));
/// assert_eq!(X86::vm_to_phy(va), Some(pa));
/// assert!(MAPPED.load(SeqCst) > 4, "the heap grew from inside the allocator");
/// ```
///
/// # Porting: freeing tables inside `with_table`
///
/// `vm_to_phy` walks without the lock, on any CPU; the seed `unmap` frees emptied tables only
/// after the TLB flush *and* after every walk that could still be inside them has left. Code
/// that unlinks tables itself, inside [`with_table`](ActiveTable::with_table), calls
/// [`wait_for_readers`](awk_paging::KernelGlobal::wait_for_readers) between the unlink and the
/// `finish` that frees them:
///
/// ```
/// # use awk_paging::{ActiveTable, Flags, FrameAllocator, Mapper, NoTlb, OffsetPhysMem};
/// # use awk_paging::{PageTable, PhyAddr, VirtAddr};
/// # use awk_paging_x86_64::{X86, X86_64};
/// # struct Frames(std::sync::Mutex<Vec<u64>>);
/// # unsafe impl FrameAllocator for &'static Frames {
/// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { self.0.lock().unwrap().pop().map(PhyAddr::new) }
/// #     unsafe fn deallocate_frame(&mut self, f: PhyAddr) { self.0.lock().unwrap().push(f.as_u64()) }
/// # }
/// # let buf = Box::leak(vec![0u8; 65 * 4096].into_boxed_slice());
/// # let host = (buf.as_mut_ptr() as u64 + 4095) & !4095;
/// # let pool: &'static Frames =
/// #     Box::leak(Box::new(Frames(std::sync::Mutex::new((0..64).map(|i| 0x10_0000 + i * 4096).collect()))));
/// # let frames: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
/// # let mem = unsafe { OffsetPhysMem::new(host - 0x10_0000) };
/// # let tlb: &'static (dyn awk_paging::Tlb + Sync) = &NoTlb;
/// # X86::install(PageTable::new(X86_64::new(), mem, frames, tlb).unwrap()).unwrap();
/// let base = VirtAddr::new(0xffff_9000_0000_0000);
/// for i in 0..4 {
///     let va = VirtAddr::new(base.as_u64() + i * 0x1000);
///     unsafe { X86::map(va, PhyAddr::new(0x4000_0000 + i * 0x1000), Flags::RW) }.unwrap();
/// }
/// X86::with_table(|t| {
///     let mut g = t.gather();
///     // Unlinks the emptied tables (their frames still hold what readers may be reading).
///     unsafe { t.unmap_range(base, 0x4000, &mut g, |_| {}) }.unwrap();
///     X86::global().wait_for_readers(); // no lock-free walk is inside them any more
///     t.finish(g).unwrap(); // flush, then free
/// })
/// .unwrap();
/// assert_eq!(X86::vm_to_phy(base), None);
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
    type Irq = X86Irq;

    fn global() -> &'static KernelGlobal<Self> {
        &GLOBAL
    }
}
