//! # awk-paging-aarch64
//!
//! The AArch64 backend of awk-paging: handwritten VMSAv8-64 stage-1 translation tables with the
//! 4 KiB granule, driven by the shared walker of [`awk_paging::PageTable`].
//!
//! - [`descriptor`]: the descriptor fields as `tock-registers` bitfields.
//! - [`mair`]: the one table of memory attributes (MAIR_EL1 indices) that both the descriptor
//!   encoder and the MMU setup use.
//! - [`A64`]: the translation regime (39- or 48-bit VA, TTBR0 or TTBR1 half, output size).
//! - [`maint`]: barriers, TLB invalidations, cache maintenance and register writes as data
//!   ([`maint::Op`], [`maint::Sequence`]), checked on the host, run by a small interpreter on
//!   bare metal.
//! - [`TlbEl1`]: the [`Tlb`](awk_paging::Tlb) hook — `tlbi …is` with the barriers Arm requires,
//!   each hook's sequence a pure function (the `Tlb` impl itself exists on bare-metal AArch64).
//! - [`mmu`]: turning the MMU on as a [`mmu::Plan`] (MAIR, TCR, TTBR0/TTBR1, TLB invalidation,
//!   a complete SCTLR_EL1 value), computed from the CPU's ID fields.
//! - [`features`]: the ID_AA64MMFR1_EL1 fields for FEAT_HAFDBS and FEAT_PAN, and the TCR_EL1
//!   HA/HD bits that enable hardware Access flag and dirty-state updates.
//! - [`cache`]: clean and invalidate to the point of coherency, for memory-type changes.
//! - [`space`]: process address spaces — `TTBR0_EL1` with the ASID, the rollover's local flush,
//!   as sequences for [`awk_paging::space`].
//! - [`AArch64`]: the seed static [`Mapper`](awk_paging::Mapper) over one global table, whose
//!   lock masks interrupts with [`AArch64Irq`] and refuses re-entry instead of deadlocking.
//!
//! Everything but the interpreter ([`maint::execute`] and what calls it: `Sequence::run`,
//! `impl Tlb for TlbEl1`, [`mmu::enable`], [`cache::clean_invalidate_to_poc`], the ID-register
//! reads) is compiled on every target, so the host's tests see it; those exist on bare-metal
//! AArch64 (`target_os = "none"`) only, and rustdoc shows them on every target.
//!
//! ## Changing a page's memory type
//!
//! Arm ARM, "Mismatched memory attributes" (chapter B2, the AArch64 memory model): when one
//! physical location is accessed with cacheable and non-cacheable (or Device) attributes,
//! through two mappings or one mapping over time, a non-cacheable access may miss a dirty line
//! the cache still holds, and a dirty line written back later may overwrite what was written
//! non-cacheably. The page table keeps
//! the *translation* coherent ([`PageTable::update_flags`](awk_paging::PageTable::update_flags)
//! uses break-before-make for a memory-type change); the *data caches* are the caller's job:
//!
//! - **Write-back/write-through → non-cacheable or Device** (`update_flags` of a live page):
//!   after the break-before-make (flush the returned token) and before the first access through the
//!   new type, clean and invalidate the page to the PoC
//!   ([`cache::clean_invalidate_to_poc`] over the page; maintenance by VA works whatever the
//!   mapping's memory type). Doing it before the change is not enough: until the old entry is
//!   gone from every TLB, speculative accesses through it may refill the cache.
//! - **Non-cacheable or Device → cacheable**: clean and invalidate the page after the change and
//!   before the first cacheable access, so no line allocated speculatively (through another
//!   cacheable alias) before or during the change is read instead of memory.
//! - **Mapping a frame non-cacheable (or as Device) that was used cacheably before** — a frame
//!   zeroed or filled through the kernel's write-back linear map, then mapped non-cacheable for
//!   a device or for a table walked with different attributes: clean and invalidate it (through
//!   the cacheable mapping) before the non-cacheable mapping is used, and keep the cacheable
//!   alias unused while the non-cacheable one exists (speculation through it may allocate lines
//!   again; the Arm ARM allows the alias only with this maintenance around every hand-over).
//! - **Tables written with the MMU off**, before [`mmu::enable`]: the walker reads them as
//!   write-back memory once the MMU is on, so clean and invalidate the tables' frames first.
//!
//! Write-back ↔ write-through changes keep the data coherent (both are cacheable, Normal);
//! permission-only changes need no cache maintenance.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
pub mod cache;
pub mod descriptor;
pub mod features;
mod inspect;
pub mod maint;
pub mod mair;
mod mapper;
pub mod mmu;
pub mod pan;
pub mod space;
mod tlb;

pub use arch::{Half, VaSize, A64};
pub use inspect::{mair_memory_type, ForeignMair};
pub use mapper::{AArch64, AArch64Irq, KernelTable, MairInitError};
pub use tlb::{tlbi_range_in_isar0, TlbBatch, TlbEl1, TlbSequence};

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
