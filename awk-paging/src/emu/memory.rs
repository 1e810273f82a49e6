//! Emulated physical memory: an arena of frames that is both accessor and allocator.

use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::vec::Vec;

use crate::{FrameAllocator, OffsetPhysMem, PhyAddr, PhysMem, PAGESIZE};

/// Default physical base of the arena (frames below it do not exist, so a zeroed or corrupted
/// entry that points at 0 is caught).
const DEFAULT_BASE: u64 = 0x10_0000;

/// An arena of emulated physical memory.
///
/// `&EmuMemory` is a [`PhysMem`] and a [`FrameAllocator`]: page tables borrow it for both.
///
/// ```
/// use awk_paging::emu::EmuMemory;
/// use awk_paging::FrameAllocator;
/// let mem = EmuMemory::new(2);
/// let mut a = &mem;
/// let f = a.allocate_frame().unwrap();
/// mem.write_u64(f, 0xdead);
/// assert_eq!(mem.read_u64(f), Some(0xdead));
/// unsafe { a.deallocate_frame(f) };
/// assert_eq!(mem.frames_in_use(), 0);
/// assert_eq!(mem.bad_frees(), 0);
/// ```
pub struct EmuMemory {
    base: u64,
    ptr: NonNull<u8>,
    frames: usize,
    free: RefCell<Vec<u32>>,
    in_use: RefCell<Vec<bool>>,
    allocations: Cell<usize>,
    frees: Cell<usize>,
    bad_frees: Cell<usize>,
}

impl EmuMemory {
    /// An arena of `frames` zeroed frames at the default physical base (1 MiB).
    ///
    /// ```
    /// let mem = awk_paging::emu::EmuMemory::new(16);
    /// assert_eq!(mem.frame_count(), 16);
    /// ```
    ///
    /// # Panics
    ///
    /// If `frames` is 0 or the host cannot allocate the arena (a test-setup error).
    #[must_use]
    pub fn new(frames: usize) -> Self {
        Self::with_base(frames, DEFAULT_BASE).expect("arena of at least one frame")
    }

    /// An arena of `frames` frames starting at physical address `base`; `None` unless `base` is
    /// 4 KiB-aligned, `frames` is in `1..u32::MAX` and the arena fits below `u64::MAX`.
    ///
    /// ```
    /// let mem = awk_paging::emu::EmuMemory::with_base(4, 0x4000_0000).unwrap();
    /// assert_eq!(mem.base().as_u64(), 0x4000_0000);
    /// assert!(awk_paging::emu::EmuMemory::with_base(4, 0x123).is_none());
    /// ```
    #[must_use]
    pub fn with_base(frames: usize, base: u64) -> Option<Self> {
        let bytes = u64::try_from(frames).ok()?.checked_mul(PAGESIZE as u64)?;
        if !base.is_multiple_of(PAGESIZE as u64) || frames == 0 || frames >= u32::MAX as usize {
            return None;
        }
        base.checked_add(bytes)?;
        let layout = Self::layout(frames);
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // Hand out low addresses first: pop from the end of a descending list.
        let free = (0..frames as u32).rev().collect();
        Some(EmuMemory {
            base,
            ptr,
            frames,
            free: RefCell::new(free),
            in_use: RefCell::new(std::vec![false; frames]),
            allocations: Cell::new(0),
            frees: Cell::new(0),
            bad_frees: Cell::new(0),
        })
    }

    fn layout(frames: usize) -> Layout {
        Layout::from_size_align(frames * PAGESIZE, PAGESIZE).expect("arena layout")
    }

    /// The physical address of the first frame.
    #[must_use]
    pub fn base(&self) -> PhyAddr {
        PhyAddr::new(self.base)
    }

    /// Number of frames in the arena.
    #[must_use]
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// Frames currently allocated (tables and data frames alike).
    #[must_use]
    pub fn frames_in_use(&self) -> usize {
        self.frames - self.free.borrow().len()
    }

    /// Frames currently free.
    #[must_use]
    pub fn frames_free(&self) -> usize {
        self.free.borrow().len()
    }

    /// Total successful allocations since creation.
    #[must_use]
    pub fn allocations(&self) -> usize {
        self.allocations.get()
    }

    /// Total frees since creation.
    #[must_use]
    pub fn frees(&self) -> usize {
        self.frees.get()
    }

    /// Frees of frames that were not allocated (double frees, foreign addresses). Always 0 in a
    /// correct program; tests assert it.
    #[must_use]
    pub fn bad_frees(&self) -> usize {
        self.bad_frees.get()
    }

    /// Allocates a frame for data (to be mapped), zeroed.
    ///
    /// ```
    /// let mem = awk_paging::emu::EmuMemory::new(1);
    /// assert!(mem.allocate_data_frame().is_some());
    /// assert!(mem.allocate_data_frame().is_none());
    /// ```
    #[must_use]
    pub fn allocate_data_frame(&self) -> Option<PhyAddr> {
        let f = (&*self).allocate_frame()?;
        let p = self.index(f)?;
        // SAFETY: in-bounds frame of the arena.
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(p * PAGESIZE), 0, PAGESIZE) };
        Some(f)
    }

    /// The arena viewed as a direct map (`host address = physical + offset`), e.g. for code
    /// written against an [`OffsetPhysMem`] such as the `x86_64` crate's `OffsetPageTable`.
    ///
    /// # Safety
    ///
    /// Unlike the arena itself, this view does not check bounds: it may only be used while the
    /// arena lives, for tables whose every entry points inside the arena (tables built by
    /// `PageTable` over this arena are; tables edited by hand or by another crate may not be).
    /// For safe code use `&EmuMemory`, which answers `None` outside the arena.
    ///
    /// ```
    /// use awk_paging::{PhysMem, emu::EmuMemory};
    /// let mem = EmuMemory::new(1);
    /// // SAFETY: only used to compare a pointer for the arena's first frame.
    /// let direct = unsafe { mem.offset_mapping() };
    /// assert_eq!(direct.frame_ptr(mem.base()), mem.frame_ptr(mem.base()));
    /// ```
    #[must_use]
    pub unsafe fn offset_mapping(&self) -> OffsetPhysMem {
        // SAFETY: forwarded to the caller.
        unsafe { OffsetPhysMem::new((self.ptr.as_ptr() as u64).wrapping_sub(self.base)) }
    }

    /// Reads the 64-bit word at physical address `pa` (8-byte aligned, inside the arena).
    #[must_use]
    pub fn read_u64(&self, pa: PhyAddr) -> Option<u64> {
        let p = self.word_ptr(pa)?;
        // SAFETY: in bounds and aligned.
        Some(unsafe { p.read_volatile() })
    }

    /// Writes the 64-bit word at physical address `pa`; `false` if outside the arena.
    pub fn write_u64(&self, pa: PhyAddr, value: u64) -> bool {
        match self.word_ptr(pa) {
            // SAFETY: in bounds and aligned.
            Some(p) => unsafe {
                p.write_volatile(value);
                true
            },
            None => false,
        }
    }

    fn word_ptr(&self, pa: PhyAddr) -> Option<*mut u64> {
        let off = pa.as_u64().checked_sub(self.base)?;
        if off % 8 != 0 || off >= (self.frames * PAGESIZE) as u64 {
            return None;
        }
        // SAFETY: in bounds.
        Some(unsafe { self.ptr.as_ptr().add(off as usize).cast() })
    }

    fn index(&self, frame: PhyAddr) -> Option<usize> {
        let off = frame.as_u64().checked_sub(self.base)?;
        if off % PAGESIZE as u64 != 0 {
            return None;
        }
        let i = usize::try_from(off / PAGESIZE as u64).ok()?;
        (i < self.frames).then_some(i)
    }
}

impl Drop for EmuMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_base` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.frames)) };
    }
}

impl core::fmt::Debug for EmuMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EmuMemory")
            .field("base", &self.base())
            .field("frames", &self.frames)
            .field("in_use", &self.frames_in_use())
            .finish()
    }
}

// SAFETY: pointers are in bounds, 4 KiB-aligned frames of an arena that lives as long as `self`.
unsafe impl PhysMem for EmuMemory {
    #[inline]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        let i = self.index(frame)?;
        // SAFETY: i < frames.
        Some(unsafe { self.ptr.add(i * PAGESIZE) })
    }
}

// SAFETY: hands out each in-bounds frame at most once until it is returned.
unsafe impl FrameAllocator for &EmuMemory {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        let i = self.free.borrow_mut().pop()? as usize;
        self.in_use.borrow_mut()[i] = true;
        self.allocations.set(self.allocations.get() + 1);
        Some(PhyAddr::new(self.base + (i * PAGESIZE) as u64))
    }

    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        let mut in_use = self.in_use.borrow_mut();
        match self.index(frame) {
            Some(i) if in_use[i] => {
                in_use[i] = false;
                self.free.borrow_mut().push(i as u32);
                self.frees.set(self.frees.get() + 1);
            }
            _ => self.bad_frees.set(self.bad_frees.get() + 1),
        }
    }
}

// SAFETY: forwards to the arena, which the `Rc` keeps alive.
unsafe impl PhysMem for std::rc::Rc<EmuMemory> {
    #[inline]
    fn frame_ptr(&self, frame: PhyAddr) -> Option<NonNull<u8>> {
        (**self).frame_ptr(frame)
    }
}

// SAFETY: forwards to the arena's allocator.
unsafe impl FrameAllocator for std::rc::Rc<EmuMemory> {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        (&**self).allocate_frame()
    }

    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        // SAFETY: forwarded contract.
        unsafe { (&**self).deallocate_frame(frame) }
    }
}
