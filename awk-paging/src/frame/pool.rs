//! [`FramePool`]: frames set aside in front of an allocator, chained through their first word.

use core::sync::atomic::{AtomicU64, Ordering};

use super::FrameAllocator;
use crate::{PhyAddr, PhysMem};

/// Free frames held in front of a frame allocator (the *source*): handed out before the source
/// is asked when the source [cannot free](FrameAllocator::can_free) (and given back to
/// instead of it), after the source when it can (or cannot be reached).
///
/// Two uses:
///
/// - **Allocators that cannot take frames back.** A table whose allocator is a `FramePool` over
///   such an allocator keeps the frames it reclaims (emptied tables, `destroy`) and reuses them
///   for its next tables, instead of leaking them or calling a `deallocate_frame` that does
///   nothing.
/// - **Frames taken before a lock.** The seed static API fills the pool of its global table
///   *before* it takes the table's lock and empties it after, so the source is never called
///   under that lock (see [`ActiveTable`](crate::ActiveTable#hooks)).
///
/// The pooled frames are free memory: the pool chains them through their first 8 bytes (through
/// the [`PhysMem`] it holds), so it needs no storage of its own and holds any number of them.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::{Flags, FrameAllocator, FramePool, NoTlb, PageSize, PageTable, PhyAddr};
/// use awk_paging::{Gather, VirtAddr};
///
/// /// An allocator over emulated memory that cannot take frames back.
/// struct NoFree<'a>(&'a EmuMemory);
/// unsafe impl FrameAllocator for NoFree<'_> {
///     fn allocate_frame(&mut self) -> Option<PhyAddr> { self.0.allocate_data_frame() }
///     unsafe fn deallocate_frame(&mut self, _: PhyAddr) { unreachable!("never called") }
///     fn can_free(&self) -> bool { false }
/// }
///
/// let mem = EmuMemory::new(16);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, FramePool::new(&mem, NoFree(&mem)), NoTlb)
///     .unwrap();
/// let va = VirtAddr::new(0x4000_0000);
/// unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// let mut g: Gather = pt.gather();
/// unsafe { pt.unmap_range(va, 0x1000, &mut g, |_| {}) }.unwrap();
/// pt.finish(g).unwrap();
/// assert_eq!(pt.frames().len(), 3); // the emptied tables, kept
/// unsafe { pt.map(va, PhyAddr::new(0x9000), PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// assert_eq!(pt.frames().len(), 0); // reused
/// ```
#[derive(Debug)]
pub struct FramePool<M, S> {
    mem: M,
    source: S,
    /// The last frame pooled; each pooled frame's first word holds the one pooled before it.
    /// `len` (not a null link) ends the chain, so a frame at physical address 0 is fine.
    head: PhyAddr,
    len: usize,
}

impl<M: PhysMem, S: FrameAllocator> FramePool<M, S> {
    /// An empty pool in front of `source`, chaining frames through `mem`.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(1);
    /// assert!(FramePool::new(&mem, &mem).is_empty());
    /// ```
    #[must_use]
    pub const fn new(mem: M, source: S) -> Self {
        FramePool {
            mem,
            source,
            head: PhyAddr::ZERO,
            len: 0,
        }
    }

    /// How many frames the pool holds.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(2);
    /// let mut pool = FramePool::new(&mem, &mem);
    /// assert_eq!(pool.fill(2), 2);
    /// assert_eq!(pool.len(), 2);
    /// ```
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the pool holds no frame.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(1);
    /// assert!(FramePool::new(&mem, &mem).is_empty());
    /// ```
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The source allocator.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FrameAllocator, FramePool};
    /// let mem = EmuMemory::new(1);
    /// let pool = FramePool::new(&mem, &mem);
    /// assert!(pool.source().can_free());
    /// ```
    #[must_use]
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source allocator, mutably.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FrameAllocator, FramePool};
    /// let mem = EmuMemory::new(1);
    /// let mut pool = FramePool::new(&mem, &mem);
    /// assert!(pool.source_mut().allocate_frame().is_some());
    /// ```
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The physical-memory accessor the frames are chained through.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(1);
    /// let pool = FramePool::new(&mem, &mem);
    /// assert!(core::ptr::eq(*pool.mem(), &mem));
    /// ```
    #[must_use]
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Takes up to `n` frames from the source into the pool; returns how many it got (fewer when
    /// the source runs out).
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(3);
    /// let mut pool = FramePool::new(&mem, &mem);
    /// assert_eq!(pool.fill(5), 3);
    /// ```
    pub fn fill(&mut self, n: usize) -> usize {
        let mut got = 0;
        while got < n {
            let Some(frame) = self.source.allocate_frame() else {
                break;
            };
            // SAFETY: a frame the source just handed out, unused.
            if unsafe { self.push(frame) } {
                got += 1;
            }
        }
        got
    }

    /// Adds a free frame to the pool. Returns `false` if the pool's [`PhysMem`] cannot reach
    /// it (or it is not 4 KiB aligned): the frame is then given back to the source if the source
    /// can free, else dropped (leaked), and the pool is unchanged.
    ///
    /// # Safety
    ///
    /// `frame` came from the source (directly or through this pool) and nothing uses it: no
    /// table, no TLB entry, no software walker.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FrameAllocator, FramePool};
    /// let mem = EmuMemory::new(1);
    /// let mut pool = FramePool::new(&mem, &mem);
    /// let f = pool.source_mut().allocate_frame().unwrap();
    /// assert!(unsafe { pool.push(f) });
    /// assert_eq!(pool.pop(), Some(f));
    /// ```
    pub unsafe fn push(&mut self, frame: PhyAddr) -> bool {
        let link = self
            .mem
            .frame_ptr(frame)
            .filter(|_| frame.as_u64() & 0xfff == 0);
        let Some(ptr) = link else {
            if self.source.can_free() {
                // SAFETY: caller's contract: the source's frame, unused.
                unsafe { self.source.deallocate_frame(frame) };
            }
            return false;
        };
        // SAFETY: the PhysMem contract: a valid, 8-byte aligned pointer to the frame, which is
        // free memory of ours (caller). Written atomically: a stale software walker that still
        // reads it as a table (a broken grace period) sees a whole value, never a torn one.
        unsafe { AtomicU64::from_ptr(ptr.as_ptr().cast::<u64>()) }
            .store(self.head.as_u64(), Ordering::Relaxed);
        self.head = frame;
        self.len += 1;
        true
    }

    /// Takes a frame out of the pool (not zeroed: its first word holds a link), or `None` if
    /// it is empty. Does not ask the source.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(1);
    /// let mut pool = FramePool::new(&mem, &mem);
    /// assert_eq!(pool.pop(), None);
    /// pool.fill(1);
    /// assert!(pool.pop().is_some());
    /// ```
    pub fn pop(&mut self) -> Option<PhyAddr> {
        if self.len == 0 {
            return None;
        }
        let frame = self.head;
        // Reachable: `push` only pools frames `mem` reaches.
        let ptr = self.mem.frame_ptr(frame)?;
        // SAFETY: as in `push`; the frame is still pooled.
        let link = unsafe { AtomicU64::from_ptr(ptr.as_ptr().cast::<u64>()) };
        self.head = PhyAddr::new(link.load(Ordering::Relaxed));
        self.len -= 1;
        Some(frame)
    }

    /// Gives pooled frames back to the source until at most `keep` are left, if the source
    /// [can free](FrameAllocator::can_free) (else keeps them all). Returns how many went back.
    ///
    /// ```
    /// # use awk_paging::{emu::EmuMemory, FramePool};
    /// let mem = EmuMemory::new(4);
    /// let mut pool = FramePool::new(&mem, &mem);
    /// pool.fill(4);
    /// assert_eq!(pool.trim(1), 3);
    /// assert_eq!(mem.frames_in_use(), 1);
    /// ```
    pub fn trim(&mut self, keep: usize) -> usize {
        let mut gone = 0;
        while self.len > keep && self.source.can_free() {
            let Some(frame) = self.pop() else { break };
            // SAFETY: pooled frames are the source's and unused (`push` contract).
            unsafe { self.source.deallocate_frame(frame) };
            gone += 1;
        }
        gone
    }
}

// SAFETY: frames handed out come from the pool (each pushed under `push`'s contract: the
// source's, unused, reachable, aligned) or from the source (its own contract).
unsafe impl<M: PhysMem, S: FrameAllocator> FrameAllocator for FramePool<M, S> {
    /// From the pool first when the source cannot free (reuse what was kept); from the source
    /// first when it can (the pool is the reserve for when the source cannot be asked), so an
    /// allocator that takes frames back sees exactly the allocations of the table's operations.
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        if self.source.can_free() {
            self.source.allocate_frame().or_else(|| self.pop())
        } else {
            self.pop().or_else(|| self.source.allocate_frame())
        }
    }

    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        if self.source.can_free() {
            // SAFETY: forwarded contract (every frame of ours is the source's).
            unsafe { self.source.deallocate_frame(frame) }
        } else {
            // SAFETY: forwarded contract: a frame of ours, no longer used.
            unsafe { self.push(frame) };
        }
    }
}
