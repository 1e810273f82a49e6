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
//! - `Invlpg` (bare metal only): TLB maintenance with `invlpg` / CR4.PGE toggling.
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
//!
//! [`PageTableFlags`]: x86_64::structures::paging::PageTableFlags
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
mod interop;
pub use interop::{from_offset_page_table, with_offset_page_table};
mod mapper;
mod tlb;

pub use arch::X86_64;
pub use mapper::{KernelTable, X86Irq, X86};
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use tlb::Invlpg;

/// One x86_64 address space: the shared [`awk_paging::PageTable`] over the x86 format.
pub type X86PageTable<M, F, T> = awk_paging::PageTable<X86_64, M, F, T>;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
