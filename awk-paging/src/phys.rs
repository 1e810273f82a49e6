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
/// A returned pointer must be valid for reads and writes of 4096 bytes, aligned to 4096, for as
/// long as the frame is in use, and must not alias memory Rust code holds references to.
///
/// ```
/// use awk_paging::{OffsetPhysMem, PhysMem, PhyAddr};
/// let identity = OffsetPhysMem::new(0);
/// let p = identity.frame_ptr(PhyAddr::new(0x5000)).unwrap();
/// assert_eq!(p.as_ptr() as u64, 0x5000);
/// ```
pub unsafe trait PhysMem {
    /// The frame at `frame` (4 KiB-aligned) as a pointer, or `None` if it cannot be reached.
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>>;
}

unsafe impl<M: PhysMem + ?Sized> PhysMem for &M {
    #[inline]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        (**self).frame_ptr(frame)
    }
}

/// All physical memory mapped at `virtual = physical + offset` (a direct map, as bootloaders set
/// up; offset 0 is an identity map).
///
/// ```
/// use awk_paging::{OffsetPhysMem, PhysMem, PhyAddr};
/// let m = OffsetPhysMem::new(0xffff_8000_0000_0000);
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
    /// Constructing the value is safe; *using* it as a [`PhysMem`] is only sound if the mapping
    /// really exists, which the `unsafe` constructors of page tables require of their callers.
    ///
    /// ```
    /// assert_eq!(awk_paging::OffsetPhysMem::new(0).offset(), 0);
    /// ```
    #[must_use]
    pub const fn new(offset: u64) -> Self {
        OffsetPhysMem { offset }
    }

    /// The offset added to physical addresses.
    ///
    /// ```
    /// assert_eq!(awk_paging::OffsetPhysMem::new(42).offset(), 42);
    /// ```
    #[must_use]
    pub const fn offset(&self) -> u64 {
        self.offset
    }
}

unsafe impl PhysMem for OffsetPhysMem {
    #[inline(always)]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        NonNull::new(frame.as_u64().wrapping_add(self.offset) as *mut u8)
    }
}
