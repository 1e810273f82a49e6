//! Introspection: reading translation tables the crate does not own — another machine's, a
//! memory dump's, or the running kernel's own — without trusting them.
//!
//! - [`PhysRead`]: read-only physical memory that may lack frames ([`RawDump`] for a raw dump
//!   or one ELF core segment, a slice of them for a whole core, [`LiveMem`] for memory behind a
//!   [`PhysMem`](crate::PhysMem)).
//! - [`ForeignTable`]: tables of any [`Arch`](crate::arch::Arch) rooted at a physical address:
//!   [`translate`](ForeignTable::translate) (what the MMU would do: page, effective access over
//!   all levels, or the fault), [`translate_many`](ForeignTable::translate_many) (batches that
//!   share their walks), [`walk`](ForeignTable::walk) / [`walk_range`](ForeignTable::walk_range)
//!   (the one read-only walker, with a [`Visitor`] per leaf, hole, table and broken spot),
//!   [`regions`](ForeignTable::regions), [`audit`](ForeignTable::audit) and
//!   [`ptdump`](ForeignTable::ptdump).
//! - [`TranslationCache`]: a bounded cache of translated pages in front of it, invalidated
//!   explicitly or by a generation number, with hit/miss counters.
//! - [`Classify`]: what an architecture adds — why an entry faults ([`Invalid`]) and who may
//!   access a leaf ([`Access`]).
//!
//! Hostile tables cannot make a walk panic or run forever: an entry leading back into its own
//! path is a loop, unreadable memory is reported where it is met, every level's index stays
//! in its table, and each walk reads at most [`ForeignTable::budget`] entries.
//!
//! ```
//! use awk_paging::emu::{EmuArch, EmuMemory};
//! use awk_paging::inspect::{ForeignTable, LiveMem};
//! use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
//!
//! let mem = EmuMemory::new(16);
//! let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
//! unsafe { pt.map(VirtAddr::new(0x4000), PhyAddr::new(0x8000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
//! let foreign = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root());
//! assert_eq!(foreign.translate(VirtAddr::new(0x4008)).unwrap().pa, PhyAddr::new(0x8008));
//! let audit = foreign.audit(|_| {}).unwrap();
//! assert_eq!((audit.mapped.count, audit.mapped.bytes), (1, 0x1000));
//! assert!(audit.is_clean());
//! ```

mod cache;
mod classify;
mod ptdump;
mod read;
mod translate;
mod walk;

pub use crate::table::LiveMem;
pub use cache::{CacheStats, TranslationCache};
pub use classify::{Access, Classify, Invalid};
pub use ptdump::{Audit, Finding, Region, Tally};
pub use read::{PhysRead, RawDump, ReadError};
pub use translate::{Fault, Resolved};
pub use walk::{
    Broken, BrokenKind, ForeignTable, Hole, Leaf, TableVisit, Visitor, WalkError, Walked,
};
