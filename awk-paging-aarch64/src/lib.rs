//! # awk-paging-aarch64
//!
//! The AArch64 backend of awk-paging: handwritten VMSAv8-64 stage-1 translation tables with the
//! 4 KiB granule, driven by the shared walker of [`awk_paging::PageTable`].
//!
//! - [`descriptor`]: the descriptor fields as `tock-registers` bitfields.
//! - [`mair`]: the one table of memory attributes (MAIR_EL1 indices) that both the descriptor
//!   encoder and the MMU setup use.
//! - [`A64`]: the translation regime (39- or 48-bit VA, TTBR0 or TTBR1 half, output size).
//! - [`mmu`]: TCR_EL1 computation and, on the target, MMU enablement.
//! - `TlbEl1` (on aarch64 only): `tlbi` maintenance with the barriers Arm requires.
//! - [`AArch64`]: the seed static [`Mapper`](awk_paging::Mapper) over one global table, whose
//!   lock masks interrupts with [`AArch64Irq`] and refuses re-entry instead of deadlocking.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
pub mod descriptor;
pub mod mair;
mod mapper;
pub mod mmu;
mod tlb;

pub use arch::{Half, VaSize, A64};
pub use mapper::{AArch64, AArch64Irq, KernelTable};
#[cfg(target_arch = "aarch64")]
pub use tlb::TlbEl1;

/// One AArch64 address space: the shared [`awk_paging::PageTable`] over VMSAv8-64 descriptors.
///
/// ```
/// use awk_paging::emu::EmuMemory;
/// use awk_paging::{Flags, NoTlb, PageSize, PhyAddr, VirtAddr};
/// use awk_paging_aarch64::{AArch64PageTable, Half, VaSize, A64};
///
/// let mem = EmuMemory::new(16);
/// let regime = A64::new(VaSize::Bits39, Half::Lower);
/// let mut pt: AArch64PageTable<_, _, _> = AArch64PageTable::new(regime, &mem, &mem, NoTlb).unwrap();
/// let va = VirtAddr::new(0x40_0000_0000 - 0x4000_0000); // top 1 GiB of the 39-bit range
/// unsafe { pt.map(va, PhyAddr::new(0x8000_0000), PageSize::Size1G, Flags::RW) }.unwrap().flush();
/// assert_eq!(pt.translate(va).unwrap().size, PageSize::Size1G);
/// ```
pub type AArch64PageTable<M, F, T> = awk_paging::PageTable<A64, M, F, T>;
