//! # awk-paging-x86_64
//!
//! The x86_64 backend of awk-paging: 4-level paging in the formats of the
//! [`x86_64`] crate's [`PageTable`](x86_64::structures::paging::PageTable) and
//! [`PageTableFlags`], driven by the shared walker of [`awk_paging::PageTable`].
//!
//! - [`X86_64`]: the translation regime (descriptor encoding, canonical addresses, which page
//!   sizes the CPU has). Memory types go through PWT/PCD and the power-on PAT.
//! - [`X86PageTable`]: the instance API for one address space.
//! - [`X86`]: the seed static [`Mapper`](awk_paging::Mapper) on the kernel's active table,
//!   initialised once from the kernel's [`OffsetPageTable`](x86_64::structures::paging::OffsetPageTable);
//!   its lock masks interrupts with [`X86Irq`] and refuses re-entry instead of deadlocking.
//! - [`Invlpg`]: TLB maintenance with `invlpg` / CR4.PGE toggling / CR3 reloads for the current
//!   address space (current CR3, current PCID), each hook's ops ([`maint::Op`],
//!   [`maint::Sequence`]) a pure function checked on the host; the [`Tlb`](awk_paging::Tlb)
//!   impl and the interpreter ([`maint::execute`]) exist on bare-metal x86_64
//!   (`target_os = "none"`) only (rustdoc shows them on every target).
//! - [`cache`]: `clflush` over a range, for memory-type changes.
//! - [`space`]: process address spaces — CR3 with PCIDs, per-PCID `invpcid` (or its fallbacks),
//!   as ops for [`awk_paging::space`].
//!
//! The shared walker (not the `x86_64` crate's `Mapper`) edits the tables, because it gives
//! transactional rollback on out-of-memory, precise per-operation errors and no double walks;
//! tests cross-check every encoding against the `x86_64` crate's own `OffsetPageTable` walker.
//!
//! ## Preconditions for bare metal
//! - `EFER.NXE` set (otherwise NX is a reserved bit and every non-executable mapping faults).
//! - `CR4.PGE` set if global mappings are used.
//! - The PAT MSR holds its power-on value (PA0..3 = WB, WT, UC-, UC), which the memory-type
//!   encoding relies on.
//! - The MTRRs describe RAM as write-back and device ranges as uncacheable (what firmware sets
//!   up): the effective memory type combines the MTRR type with the page's PAT type, and an
//!   uncacheable MTRR type wins (SDM Vol. 3A, "Memory Cache Control": "Selecting Memory Types
//!   for Pentium Pro and More Recent Processor Families" and the PAT/MTRR combination table).
//!
//! ## Changing a page's memory type
//!
//! The page table keeps the *translation* right; the caches are the caller's job. Intel does
//! not support mapping one physical page with different memory types at once (SDM Vol. 3A,
//! "Memory Cache Control", "Programming the PAT": aliasing a cacheable type with WC or UC "may
//! lead to undefined operations"). So:
//!
//! - **Write-back → uncacheable (UC/UC-/WC) or device**: first remove *every* cacheable mapping
//!   of the frame (unmap, or change it, and flush the token — on SMP on every CPU that may have
//!   used it, even speculatively), then map it with the new type, then write back and
//!   invalidate the frame's lines before the first access through the new type:
//!   [`cache::clflush_range`] over the frame (any mapping of it; `clflush` acts on the physical
//!   line in every cache), or `wbinvd` on every CPU when whole caches must go. That is the SDM's
//!   own procedure for remapping a cacheable page as WC; CPUs with self-snooping
//!   (CPUID.01H:EDX.SS\[bit 27\]) make the last step unnecessary, doing it is harmless.
//! - **Uncacheable → write-back**: nothing of the old type is cached; remove the uncacheable
//!   mapping(s) and flush before mapping the frame write-back, so the two types never coexist.
//! - Keep the kernel's own write-back linear map away from frames mapped UC (unmap those pages
//!   from it, or never access them through it): speculative accesses through a live write-back
//!   mapping may bring lines back.
//!
//! Write-back ↔ write-through changes follow the same rule (WT is cacheable, but an alias still
//! mixes types); permission-only changes need no cache maintenance.
//!
//! [`PageTableFlags`]: x86_64::structures::paging::PageTableFlags
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
pub mod cache;
mod inspect;
mod interop;
pub mod maint;
pub use interop::{from_offset_page_table, with_offset_page_table};
mod mapper;
pub mod space;
mod tlb;

pub use arch::X86_64;
pub use mapper::{KernelTable, X86Irq, X86};
pub use tlb::{Invlpg, TlbSequence};

/// One x86_64 address space: the shared [`awk_paging::PageTable`] over the x86 format.
pub type X86PageTable<M, F, T> = awk_paging::PageTable<X86_64, M, F, T>;

/// The workspace README's examples, compiled and run as doc tests. The README is outside this
/// crate's package, so the workspace's `.cargo/config.toml` sets `awk_workspace_readme` for
/// rustdoc; a build of the published crate leaves it out.
#[cfg(all(doctest, awk_workspace_readme))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
