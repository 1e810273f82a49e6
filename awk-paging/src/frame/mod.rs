//! Physical frames for page tables: the allocator trait, a counting wrapper and a pool.

mod pool;

pub use pool::FramePool;

use crate::PhyAddr;

/// Hands out and takes back 4 KiB physical frames for page tables.
///
/// The page table zeroes every frame it allocates before use, through its
/// [`PhysMem`](crate::PhysMem) accessor, so frames need not be zeroed.
///
/// The seed static API never calls its allocator while holding its table lock: frames are taken
/// before the lock into a [`FramePool`] and surplus frames are given back after it, so an
/// allocator may itself call the seed API (a heap that grows by mapping pages) — see
/// [`ActiveTable`](crate::ActiveTable#hooks). [`ActiveTable::with_table`](crate::ActiveTable::with_table)
/// closures are the exception: they may call the allocator under the lock.
///
/// An allocator that cannot take frames back says so with [`can_free`](Self::can_free); a
/// [`FramePool`] in front of it then keeps the frames tables give back and hands them out again.
///
/// # Safety
///
/// `allocate_frame` must return 4 KiB-aligned frames that nothing else uses until they are given
/// back, and that the page table's [`PhysMem`](crate::PhysMem) can reach.
///
/// ```
/// use awk_paging::{FrameAllocator, PhyAddr};
///
/// /// Hands out frames from a fixed stack of free frames.
/// struct Stack { free: [u64; 2], len: usize }
///
/// unsafe impl FrameAllocator for Stack {
///     fn allocate_frame(&mut self) -> Option<PhyAddr> {
///         self.len = self.len.checked_sub(1)?;
///         Some(PhyAddr::new(self.free[self.len]))
///     }
///     unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
///         self.free[self.len] = frame.as_u64();
///         self.len += 1;
///     }
/// }
///
/// let mut s = Stack { free: [0x1000, 0x2000], len: 2 };
/// assert_eq!(s.allocate_frame(), Some(PhyAddr::new(0x2000)));
/// ```
pub unsafe trait FrameAllocator {
    /// A free 4 KiB frame, or `None` when out of memory.
    fn allocate_frame(&mut self) -> Option<PhyAddr>;

    /// Returns a frame.
    ///
    /// # Safety
    ///
    /// `frame` came from [`allocate_frame`](Self::allocate_frame) of this allocator and is no
    /// longer referenced by any table or TLB.
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr);

    /// Whether [`deallocate_frame`](Self::deallocate_frame) takes frames back. `false` for an
    /// allocator that cannot (a bump allocator, frames carved from a heap that never shrinks):
    /// a [`FramePool`] in front of it keeps such frames for reuse instead of calling
    /// `deallocate_frame`. The default is `true`.
    ///
    /// ```
    /// use awk_paging::{FrameAllocator, PhyAddr};
    /// /// Hands out increasing frames, never takes one back.
    /// struct Bump(u64);
    /// unsafe impl FrameAllocator for Bump {
    ///     fn allocate_frame(&mut self) -> Option<PhyAddr> {
    ///         self.0 += 0x1000;
    ///         Some(PhyAddr::new(self.0))
    ///     }
    ///     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
    ///     fn can_free(&self) -> bool { false }
    /// }
    /// assert!(!Bump(0).can_free());
    /// ```
    #[inline]
    fn can_free(&self) -> bool {
        true
    }
}

unsafe impl<F: FrameAllocator + ?Sized> FrameAllocator for &mut F {
    #[inline]
    fn can_free(&self) -> bool {
        (**self).can_free()
    }

    #[inline]
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        (**self).allocate_frame()
    }

    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        // SAFETY: forwarded contract.
        unsafe { (**self).deallocate_frame(frame) }
    }
}

/// Wraps an allocator, counts allocations and frees, and can be told to fail.
///
/// The conformance suite uses it to prove that an operation interrupted by out-of-memory at any
/// allocation leaves neither a change nor a leaked frame; kernels can use it for accounting.
///
/// ```
/// use awk_paging::{CountingFrames, FrameAllocator, PhyAddr};
/// # struct One(Option<u64>);
/// # unsafe impl FrameAllocator for One {
/// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { self.0.take().map(PhyAddr::new) }
/// #     unsafe fn deallocate_frame(&mut self, f: PhyAddr) { self.0 = Some(f.as_u64()) }
/// # }
/// let mut c = CountingFrames::new(One(Some(0x1000)));
/// c.fail_after(Some(0));
/// assert_eq!(c.allocate_frame(), None); // refused on purpose
/// c.fail_after(None);
/// let f = c.allocate_frame().unwrap();
/// unsafe { c.deallocate_frame(f) };
/// assert_eq!((c.allocated(), c.freed(), c.outstanding()), (1, 1, 0));
/// ```
#[derive(Debug)]
pub struct CountingFrames<F> {
    inner: F,
    allocated: usize,
    freed: usize,
    budget: Option<usize>,
}

impl<F: FrameAllocator> CountingFrames<F> {
    /// Wraps `inner` with zeroed counters and no failure budget.
    ///
    /// ```
    /// # use awk_paging::{CountingFrames, FrameAllocator, PhyAddr};
    /// # struct Never;
    /// # unsafe impl FrameAllocator for Never {
    /// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { None }
    /// #     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
    /// # }
    /// assert_eq!(CountingFrames::new(Never).allocated(), 0);
    /// ```
    #[must_use]
    pub const fn new(inner: F) -> Self {
        CountingFrames {
            inner,
            allocated: 0,
            freed: 0,
            budget: None,
        }
    }

    /// After `n` more successful allocations, refuse every further one (`None`: never refuse).
    ///
    /// ```
    /// # use awk_paging::{CountingFrames, FrameAllocator, PhyAddr};
    /// # struct Many(u64);
    /// # unsafe impl FrameAllocator for Many {
    /// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { self.0 += 0x1000; Some(PhyAddr::new(self.0)) }
    /// #     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
    /// # }
    /// let mut c = CountingFrames::new(Many(0));
    /// c.fail_after(Some(1));
    /// assert!(c.allocate_frame().is_some());
    /// assert!(c.allocate_frame().is_none());
    /// ```
    pub fn fail_after(&mut self, n: Option<usize>) {
        self.budget = n;
    }

    /// Successful allocations so far.
    #[must_use]
    pub const fn allocated(&self) -> usize {
        self.allocated
    }

    /// Frees so far.
    #[must_use]
    pub const fn freed(&self) -> usize {
        self.freed
    }

    /// Frames allocated through this wrapper and not yet freed through it. Saturates at 0:
    /// frees of frames allocated elsewhere (e.g. tables taken over with `from_root`, then
    /// destroyed) can outnumber this wrapper's allocations, and a counter must not panic.
    ///
    /// ```
    /// # use awk_paging::{CountingFrames, FrameAllocator, PhyAddr};
    /// # struct Sink;
    /// # unsafe impl FrameAllocator for Sink {
    /// #     fn allocate_frame(&mut self) -> Option<PhyAddr> { None }
    /// #     unsafe fn deallocate_frame(&mut self, _: PhyAddr) {}
    /// # }
    /// let mut c = CountingFrames::new(Sink);
    /// unsafe { c.deallocate_frame(PhyAddr::new(0x1000)) }; // a frame it never handed out
    /// assert_eq!((c.freed(), c.outstanding()), (1, 0));
    /// ```
    #[must_use]
    pub const fn outstanding(&self) -> usize {
        self.allocated.saturating_sub(self.freed)
    }

    /// The wrapped allocator.
    #[must_use]
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The wrapped allocator, mutably.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    /// Unwraps the inner allocator.
    #[must_use]
    pub fn into_inner(self) -> F {
        self.inner
    }
}

unsafe impl<F: FrameAllocator> FrameAllocator for CountingFrames<F> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        if let Some(b) = self.budget {
            if b == 0 {
                return None;
            }
            self.budget = Some(b - 1);
        }
        let f = self.inner.allocate_frame()?;
        self.allocated += 1;
        Some(f)
    }

    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.freed += 1;
        // SAFETY: forwarded contract.
        unsafe { self.inner.deallocate_frame(frame) }
    }

    #[inline]
    fn can_free(&self) -> bool {
        self.inner.can_free()
    }
}
