//! [`PageTable`]: one address space's translation tables, generic over the architecture's
//! descriptor format, the physical-memory accessor, the frame allocator and the TLB hook.
//!
//! This is the instance API every backend shares; architecture crates only supply an [`Arch`].
//!
//! - `entry`: the only raw access to table memory (atomic 64-bit loads, stores, swaps).
//! - `walk`: the one descent from the root, with the walk cache, limits and loop check.
//! - `single`: translate, map, unmap and protect of one page.
//! - `build`: new tables built off to the side, checked, ordered, then linked.
//! - `widen`: lifting an upper-level restriction without loosening existing mappings.
//! - `chunk`: pure range arithmetic (entries a range touches, which leaf fits, frame counts).
//! - `contig`: the contiguous hint, set on complete runs and cleared before runs change.
//! - `visit`: the one range walker (recursive, post-order) and its visitor trait.
//! - `range`: map/unmap/protect of ranges as visitors (one file each, plus `split`), prepare
//!   (count, `reserve`) then commit;
//!   splitting straddling huge pages; detaching emptied tables into a [`Gather`](crate::Gather).
//! - `reserve`: frames taken before a range operation commits.
//! - `alloc`: allocating ranges (fresh data frames, freed after the flush) and identity maps.
//! - `read`: walks over every mapping (`for_each_mapping`).
//! - `reclaim`: `destroy` and freeing detached subtrees.

mod alloc;
mod build;
mod chunk;
mod contig;
pub(crate) mod entry;
mod range;
mod read;
mod reclaim;
mod reserve;
mod single;
pub(crate) mod visit;
mod walk;
mod widen;

pub use range::{RangeOptions, UnmappedPage};
pub use read::LiveMem;

/// For the read-only walker (`inspect`): range arithmetic shared with the range engine.
pub(crate) use chunk::Piece;

use crate::arch::Arch;
use crate::{Attrs, FrameAllocator, MapError, PageSize, PhyAddr, PhysMem, Policy, Tlb, VirtAddr};

use walk::WalkCache;

/// Where a virtual address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the translated byte (frame + offset).
    pub pa: PhyAddr,
    /// The first virtual address of the page containing it.
    pub page: VirtAddr,
    /// The first physical address of that page.
    pub frame: PhyAddr,
    /// The size of that page.
    pub size: PageSize,
    /// The attributes the MMU grants: the leaf's, restricted by every table entry above it
    /// (x86 R/W, U/S, XD; AArch64 APTable, UXNTable, PXNTable), in canonical form.
    pub attrs: Attrs,
}

/// One mapping found by [`PageTable::for_each_mapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the page.
    pub page: VirtAddr,
    /// First physical address of the page.
    pub frame: PhyAddr,
    /// Page size.
    pub size: PageSize,
    /// Effective attributes (as in [`Translation::attrs`]).
    pub attrs: Attrs,
}

/// What an unmap removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// The physical frame that was mapped (not freed: data frames belong to the caller).
    pub frame: PhyAddr,
    /// Its size.
    pub size: PageSize,
    /// The attributes its leaf entry had.
    pub attrs: Attrs,
    /// Whether the entry records an access (x86 Accessed; AArch64 AF). Read and cleared in one
    /// atomic swap, so an update by the hardware is never lost.
    pub accessed: bool,
    /// Whether the page may have been written (x86 Dirty; AArch64 with hardware dirty state:
    /// AP\[2\] cleared by the hardware, or the software dirty bit). Formats and regimes that do
    /// not track it (AArch64 without dirty tracking) report `true`, so a kernel writes the page
    /// back rather than lose data.
    pub dirty: bool,
}

/// The deepest walk: AArch64 and x86 both have at most 4 levels here (5-level paging would be 5).
pub(crate) const MAX_LEVELS: usize = 5;

/// One address space's page tables.
///
/// - `A`: the descriptor format and address rules ([`Arch`]).
/// - `M`: how physical table frames are reached ([`PhysMem`]).
/// - `F`: where table frames come from and go back to ([`FrameAllocator`]).
/// - `T`: TLB maintenance for this address space ([`Tlb`]); cloned into every returned
///   [`Flush`](crate::Flush) token.
///
/// Every operation validates its input completely before it writes, builds new tables off to
/// the side, orders their initialisation before the store that links them
/// ([`Tlb::order_table_writes`]), and publishes them with one store, so an `Err` leaves tables
/// and allocator exactly as they were. Live leaves are changed with atomic read-modify-writes
/// where the hardware writes entries too (x86 Accessed/Dirty), so its updates are kept.
///
/// Walks never follow an entry back into a table already on their path (a recursive PML4
/// slot): editing operations refuse such addresses with `RecursiveTable`, and
/// [`for_each_mapping`](Self::for_each_mapping) and [`destroy`](Self::destroy) skip the entry.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
///
/// let mem = EmuMemory::new(64);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// let frame = mem.allocate_data_frame().unwrap();
/// let va = VirtAddr::new(0x4000_0000);
/// unsafe { pt.map(va, frame, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// let t = pt.translate(VirtAddr::new(0x4000_0123)).unwrap();
/// assert_eq!(t.pa, PhyAddr::new(frame.as_u64() + 0x123));
/// assert_eq!(t.attrs.flags, Flags::RW);
/// ```
#[derive(Debug)]
pub struct PageTable<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> {
    arch: A,
    mem: M,
    frames: F,
    tlb: T,
    root: PhyAddr,
    policy: Policy,
    /// The tables the last walk passed through: walks start at the deepest one covering their
    /// address. Cleared whenever a table could be unlinked or freed (see `walk`).
    walk: WalkCache,
    /// The tables the root links are never detached by range operations (a kernel half shared
    /// with other roots: see [`space`](crate::space)).
    pinned_top: bool,
    /// The tables were built elsewhere (`from_root`): they may hold a hinted contiguous run
    /// with an invalid entry, which tables this type builds never do, so a map into an invalid
    /// entry checks its run first (see `contig.rs`).
    adopted: bool,
}

// SAFETY: the only non-`Send` field is the walk cache, whose pointers target tables owned by
// this value (moving the value moves that ownership along).
unsafe impl<A, M, F, T> Send for PageTable<A, M, F, T>
where
    A: Arch + Send,
    M: PhysMem + Send,
    F: FrameAllocator + Send,
    T: Tlb + Clone + Send,
{
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// A new, empty address space: allocates and zeroes a root table.
    ///
    /// Safe: `M`'s [`PhysMem`] contract makes every pointer it hands out valid, and a table
    /// this type built only ever points at frames it allocated.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// let mem = EmuMemory::new(1);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// assert_eq!(mem.frames_in_use(), 1); // the root
    /// ```
    pub fn new(arch: A, mem: M, mut frames: F, tlb: T) -> Result<Self, MapError> {
        let (root, _) = build::take_table_frame(&arch, &mem, &mut frames)?;
        // SAFETY: a zeroed root is a valid empty table, reachable through `mem`, owned by us.
        let mut pt = unsafe { Self::from_root(arch, mem, frames, tlb, root) };
        pt.adopted = false;
        Ok(pt)
    }

    /// Takes over existing tables rooted at `root` (e.g. the active CR3/TTBR0 tables).
    ///
    /// # Safety
    ///
    /// `root` and every table reachable from it must be valid tables of format `A`, reachable
    /// through `mem`, owned by this value from now on (frames of tables it frees go to `frames`),
    /// form a tree apart from entries that lead back to a table on their own path (recursive
    /// slots, which walks skip), and not be edited concurrently by anyone else.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// let mem = EmuMemory::new(4);
    /// let a = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let root = a.root();
    /// core::mem::forget(a);
    /// let b = unsafe { PageTable::from_root(EmuArch::default(), &mem, &mem, NoTlb, root) };
    /// assert_eq!(b.root(), root);
    /// ```
    pub unsafe fn from_root(arch: A, mem: M, frames: F, tlb: T, root: PhyAddr) -> Self {
        PageTable {
            arch,
            mem,
            frames,
            tlb,
            root,
            policy: Policy::default(),
            walk: WalkCache::new(),
            pinned_top: false,
            adopted: true,
        }
    }

    /// Drops the cached walk. Call after the tables were edited by other means (e.g. another
    /// crate's mapper freeing empty tables); every operation of this type keeps it valid itself.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable};
    /// # let mem = EmuMemory::new(1);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// pt.forget_cached_walks();
    /// ```
    #[inline]
    pub fn forget_cached_walks(&mut self) {
        self.walk.clear();
    }

    /// The physical address of the root table (what goes into CR3 / TTBRn).
    #[inline]
    #[must_use]
    pub fn root(&self) -> PhyAddr {
        self.root
    }

    /// The translation regime.
    #[inline]
    #[must_use]
    pub fn arch(&self) -> &A {
        &self.arch
    }

    /// The physical-memory accessor.
    #[inline]
    #[must_use]
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The frame allocator.
    #[inline]
    #[must_use]
    pub fn frames(&self) -> &F {
        &self.frames
    }

    /// The frame allocator, mutably (e.g. to refill it).
    #[inline]
    pub fn frames_mut(&mut self) -> &mut F {
        &mut self.frames
    }

    /// The TLB hook.
    #[inline]
    #[must_use]
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// The attribute policy (W^X by default).
    #[inline]
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Replaces the attribute policy; existing mappings are not re-checked.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{NoTlb, PageTable, Policy};
    /// # let mem = EmuMemory::new(1);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// pt.set_policy(Policy { allow_write_execute: true, ..Policy::default() });
    /// assert!(pt.policy().allow_write_execute);
    /// ```
    #[inline]
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// From now on, range operations never detach a table linked from the root, even when it
    /// becomes empty (other roots link the same tables: a shared kernel half).
    #[inline]
    pub(crate) fn pin_top_tables(&mut self) {
        self.pinned_top = true;
    }

    /// Drops the cached walk through a shared reference: after walking tables someone else
    /// may free (a user space looking into the kernel's half).
    #[inline]
    pub(crate) fn clear_walk_cache(&self) {
        self.walk.clear();
    }

    /// Whether a table entry at `level` must stay linked (see `pin_top_tables`).
    #[inline(always)]
    pub(crate) fn pinned(&self, level: u8) -> bool {
        self.pinned_top && level + 1 == self.arch.levels()
    }
}
