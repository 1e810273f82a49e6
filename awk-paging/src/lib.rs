//! # awk-paging: the portable core
//!
//! Multi-architecture kernel paging. This crate holds everything that is the same on every
//! architecture; `awk-paging-x86_64` and `awk-paging-aarch64` add descriptor encodings, barriers
//! and MMU setup.
//!
//! - [`VirtAddr`], [`PhyAddr`], [`PageSize`]: typed addresses and page sizes.
//! - [`Flags`] (seed API), [`Attrs`] (instance API), [`MemoryType`], [`Policy`]: what a mapping
//!   grants, and which combinations are rejected.
//! - [`MapError`], [`UnmapError`], [`ProtectError`], [`TranslateError`]: one error enum per
//!   operation; an `Err` always means nothing changed.
//! - [`FrameAllocator`], [`PhysMem`], [`Tlb`]: what a kernel plugs in (frames, access to
//!   physical memory, TLB maintenance and SMP shootdown).
//! - [`arch::Arch`]: what an architecture plugs in.
//! - [`PageTable`]: the instance API — one object per address space, shared walker.
//! - [`dump`]: a ptdump-style listing of an address space's mappings.
//! - [`inspect`]: read-only translation, walks, ptdump and W+X audit of foreign tables (a
//!   memory dump, another machine) through a fallible reader, with a translation cache.
//! - [`space`]: address spaces — a kernel half shared by user spaces, ASIDs/PCIDs with
//!   generations, activation, copy-on-write and zero pages.
//! - [`Mapper`]: the seed static API over one lock-guarded global instance ([`GlobalTable`]);
//!   [`irq`]: the interrupt masking and CPU identity its lock uses against re-entry deadlocks.
//! - `emu` (feature `std`): emulated physical memory and a TLB model for host tests.
//! - `conformance` (feature `conformance`): the checks every backend runs against itself, on
//!   the host and on QEMU.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod addr;
pub mod arch;
pub mod dump;
mod error;
mod flags;
mod frame;
pub mod inspect;
pub mod irq;
mod mapper;
mod phys;
mod size;
pub mod space;
mod table;
mod tlb;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "std")]
pub mod emu;

pub use addr::{PhyAddr, VirtAddr};
pub use error::{AddrError, MapError, ProtectError, RangeError, TranslateError, UnmapError};
pub use flags::{Attrs, Flags, FlagsError, MemoryType, Policy};
pub use frame::{CountingFrames, FrameAllocator, FramePool};
pub use mapper::{
    AccessError, ActiveTable, GlobalTable, InitError, InstanceOf, KernelGlobal, Lent, Mapper,
    TableOf, TryAccessError,
};
pub use phys::{OffsetPhysMem, PhysMem};
pub use size::{PageSize, PageSizes, ENTRIES, PAGESIZE};
pub use table::{Mapping, PageTable, RangeOptions, Translation, Unmapped, UnmappedPage};
pub use tlb::{
    Flush, Gather, Invalidation, Ipi, NoTlb, Request, Shootdown, ShootdownTlb, Tlb,
    FULL_FLUSH_THRESHOLD, GATHER_TABLES,
};
