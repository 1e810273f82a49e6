//! The host emulator (feature `std`): emulated physical memory, a TLB model and a reference
//! descriptor format, so every page-table operation can be unit-tested on the host.
//!
//! - [`EmuMemory`]: an arena of 4 KiB frames at a configurable physical base. It is both the
//!   [`PhysMem`](crate::PhysMem) (bounds-checked: an entry pointing outside the arena is an
//!   [`InvalidPageTable`](crate::MapError::InvalidPageTable), not a wild pointer) and a
//!   [`FrameAllocator`](crate::FrameAllocator) that counts what it hands out and takes back, so
//!   tests detect leaks and double frees.
//! - [`EmuTlb`]: caches every translation the emulated CPU performs — leaves and walk-cache
//!   steps, tagged with ASIDs — until it is invalidated, so a missing flush shows up as a stale
//!   translation.
//! - [`Tracer`]: records every table write, frame allocation and TLB operation of a page table
//!   and checks them against the architecture's ordering and TLB-maintenance rules
//!   ([`Violation`], [`Pending`]): what QEMU's in-order TCG cannot show.
//! - [`EmuArch`]: a minimal descriptor format for testing the shared walker on its own.
//! - [`EmuHarness`]: the conformance harness over all of the above, for any descriptor format.
//! - [`model`]: the range engine's property test against a model of mapped intervals.

mod arch;
mod harness;
mod memory;
pub mod model;
mod tlb;
mod trace;

pub use arch::EmuArch;
pub use harness::{EmuHarness, EmuSpec};
pub use memory::EmuMemory;
pub use tlb::{AsidTlb, CpuAccess, EmuTlb};
pub use trace::{Event, Pending, TracedTable, Tracer, Violation};
