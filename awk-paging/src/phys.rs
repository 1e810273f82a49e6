//! Access to physical memory from the running code: how the walker reaches a table given its
//! physical address.

use core::ptr::NonNull;

use crate::PhyAddr;

/// Turns the physical address of a 4 KiB frame into a pointer the running code can use.
///
/// Bare metal: [`OffsetPhysMem`] (all RAM mapped at a fixed offset, or identity with offset 0).
/// Host: the emulator's arena (`emu::EmuMemory`), which also checks bounds so a corrupted entry
/// shows up as [`MapError::InvalidPageTable`](crate::MapError::InvalidPageTable).
///
/// # Safety
///
/// For **every** 4 KiB-aligned `frame` — whatever a table entry, even a corrupt one, points at —
/// `frame_ptr` returns either `None` or a pointer valid for reads and writes (including 8-byte
/// atomic accesses) of 4096 bytes, aligned to 4096, for as long as the accessor lives, that
/// does not alias memory Rust code holds references to. This is what lets safe code walk
/// tables: an implementation that cannot vouch for an address must answer `None` (the walker
/// then reports `InvalidPageTable`), which is why the unchecked [`OffsetPhysMem`] is `unsafe` to
/// construct.
///
/// ```
/// use awk_paging::{OffsetPhysMem, PhysMem, PhyAddr};
/// // SAFETY (of the example): the pointer is only computed, never dereferenced.
/// let identity = unsafe { OffsetPhysMem::new(0) };
/// let p = identity.frame_ptr(PhyAddr::new(0x5000)).unwrap();
/// assert_eq!(p.as_ptr() as u64, 0x5000);
/// ```
pub unsafe trait PhysMem {
    /// The frame at `frame` (4 KiB-aligned) as a pointer, or `None` if it cannot be reached.
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>>;

    /// Called by the walker right after it stored `value` into entry `index` of the table at
    /// `table` (`old` is what the entry held). A hook for tracing emulators that check the
    /// ordering of table writes against barriers and TLB maintenance; bare-metal accessors keep
    /// the default, which does nothing and compiles to nothing.
    #[inline(always)]
    fn note_store(&self, _table: PhyAddr, _index: usize, _old: u64, _value: u64) {}

    /// Called by the walker right after it zeroed the frame at `frame` to become a new table.
    /// Default: nothing (see [`note_store`](Self::note_store)).
    #[inline(always)]
    fn note_zeroed(&self, _frame: PhyAddr) {}
}

// SAFETY: forwards to `M`, which upholds the contract.
unsafe impl<M: PhysMem + ?Sized> PhysMem for &M {
    #[inline(always)]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        (**self).frame_ptr(frame)
    }
    #[inline(always)]
    fn note_store(&self, table: PhyAddr, index: usize, old: u64, value: u64) {
        (**self).note_store(table, index, old, value)
    }
    #[inline(always)]
    fn note_zeroed(&self, frame: PhyAddr) {
        (**self).note_zeroed(frame)
    }
}

/// All physical memory mapped at `virtual = physical + offset` (a direct map, as bootloaders set
/// up; offset 0 is an identity map).
///
/// ```
/// use awk_paging::{OffsetPhysMem, PhysMem, PhyAddr};
/// // SAFETY (of the example): pointers are only computed, never dereferenced.
/// let m = unsafe { OffsetPhysMem::new(0xffff_8000_0000_0000) };
/// assert_eq!(m.offset(), 0xffff_8000_0000_0000);
/// assert_eq!(m.frame_ptr(PhyAddr::new(0x1000)).unwrap().as_ptr() as u64, 0xffff_8000_0000_1000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetPhysMem {
    offset: u64,
}

impl OffsetPhysMem {
    /// A direct map at `offset`.
    ///
    /// # Safety
    ///
    /// For every physical frame any table reached through this accessor can point at (on bare
    /// metal: all physical memory), `frame + offset` must be mapped readable and writable in the
    /// running address space, 4096 bytes long, and not aliased by Rust references — the
    /// [`PhysMem`] contract. A wrong offset lets safe table operations read and write arbitrary
    /// memory.
    ///
    /// ```
    /// // SAFETY (of the example): the accessor is never used to reach memory.
    /// assert_eq!(unsafe { awk_paging::OffsetPhysMem::new(0) }.offset(), 0);
    /// ```
    #[must_use]
    pub const unsafe fn new(offset: u64) -> Self {
        OffsetPhysMem { offset }
    }

    /// The offset added to physical addresses.
    ///
    /// ```
    /// assert_eq!(unsafe { awk_paging::OffsetPhysMem::new(42) }.offset(), 42);
    /// ```
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }
}

// SAFETY: the constructor's contract.
unsafe impl PhysMem for OffsetPhysMem {
    #[inline(always)]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        NonNull::new(frame.as_u64().wrapping_add(self.offset) as *mut u8)
    }
}
