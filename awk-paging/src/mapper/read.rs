//! Translation without the writer lock: a read-only walk of the global table from its root,
//! and the grace period that keeps such walks out of freed tables.
//!
//! # The rule for concurrent readers
//!
//! [`ActiveTable::try_vm_to_phy`](super::ActiveTable::try_vm_to_phy) (and `vm_to_phy`) never
//! take the lock `map`/`unmap` hold. A reader walks from the root with one atomic load per
//! entry (sequentially consistent: a plain `mov` on x86, `LDAR` on AArch64), so it never sees a
//! torn entry, and a table it reaches through a link it loaded was initialised before that link
//! was stored (the writer's [`Tlb::order_table_writes`](crate::Tlb::order_table_writes) is a
//! release fence, or stronger, before every link).
//!
//! What a reader racing with a writer sees, for an address whose mapping changes meanwhile: the
//! mapping before the change or the one after it, never a mix. In particular, during an unmap of
//! the address it sees the old frame or "not mapped"; during a map, "not mapped" or the new frame.
//! A reader that got the old frame may return it after the unmap completed: the kernel must not
//! reuse a data frame another CPU may still be translating (the same rule as for the TLB).
//!
//! Tables are different: a reader must never load from a table after its frame was freed (and
//! perhaps reused for other data). So readers announce themselves in one of two sets of counters, and
//! the seed `unmap`, after unlinking tables and before freeing them (after the TLB flush), waits
//! until every reader that might still hold a pointer into them has left
//! ([`KernelGlobal::wait_for_readers`](super::KernelGlobal::wait_for_readers)): a grace period.
//! A reader that starts later cannot reach the unlinked tables (the unlink is ordered before the
//! wait by a sequentially consistent fence, the reader's announcement before its first load).
//! Readers that keep arriving never stall the writer: each writer flips to the other counter
//! first, and waits only for the ones readers used before the flip (a reader that announced
//! itself in an old counter after the flip sees the flip and moves to a new one).
//!
//! Unlike [`PageTable::translate`](crate::PageTable::translate), the lock-free walk does not
//! refuse entries that lead back to a table on its path (recursive slots): it reads on, level by
//! level, as the hardware walker does, so an address under a recursive slot translates to the
//! table frame the hardware would reach.
//!
//! Code that frees tables of the global instance itself, inside
//! [`with_table`](super::ActiveTable::with_table) (`finish` of a gather holding detached tables,
//! `unmap_range` with reclaim), must call `wait_for_readers` between the unlink and the `finish`
//! (or make sure no CPU translates addresses in that range).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::{table_index, Arch, Entry};
use crate::{PageSize, PhyAddr, PhysMem, TranslateError, VirtAddr};

/// The read-only half of the global instance: its format, memory accessor and root (fixed at
/// install), and the reader counters of the grace period.
pub(crate) struct ReadView<A, M> {
    /// Set (release) once `parts` and `root` are written; never cleared.
    ready: AtomicBool,
    parts: UnsafeCell<MaybeUninit<(A, M)>>,
    root: AtomicU64,
    /// Which counter new readers use (its low bit); flipped by each grace period.
    epoch: AtomicUsize,
    /// Readers inside a walk, per epoch parity, spread over [`SPREAD`] cache lines (by the
    /// reader's stack address) so that CPUs translating at once do not all write one line.
    readers: [[Counter; SPREAD]; 2],
    /// The table of 2 MiB entries (level 1) a reader reached last, with the 1 GiB region it
    /// covers and the epoch the reader entered in ([`Hint`]); 0 for none. Readers of another
    /// epoch ignore it; a grace period clears it once the readers of the old epoch have left.
    hint: AtomicU64,
}

// SAFETY: `parts` is written once, before `ready` is published (release) and while no reader
// can look at it (they check `ready` with acquire first); afterwards it is only read.
unsafe impl<A: Sync, M: Sync> Sync for ReadView<A, M> {}

/// How many reader counters each epoch has.
const SPREAD: usize = 8;

/// One reader counter on a cache line of its own (128 bytes: adjacent-line prefetchers pair
/// 64-byte lines).
#[repr(align(128))]
struct Counter(AtomicUsize);

/// Which of the [`SPREAD`] counters the calling reader uses: from its stack address, so threads
/// (and CPUs, on their own stacks) mostly use different ones. Any choice is correct: a writer
/// waits for all of them.
#[inline(always)]
fn spread() -> usize {
    let here = 0u8;
    (core::ptr::addr_of!(here) as usize >> 14) % SPREAD
}

/// Decrements a reader counter when the walk ends (also on unwinding, so a panicking `PhysMem`
/// cannot wedge every later grace period).
struct Announced<'a>(&'a AtomicUsize);

impl Drop for Announced<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl<A: Arch, M: PhysMem> ReadView<A, M> {
    pub(crate) const fn new() -> Self {
        ReadView {
            ready: AtomicBool::new(false),
            parts: UnsafeCell::new(MaybeUninit::uninit()),
            root: AtomicU64::new(0),
            epoch: AtomicUsize::new(0),
            readers: [const { [const { Counter(AtomicUsize::new(0)) }; SPREAD] }; 2],
            hint: AtomicU64::new(0),
        }
    }

    /// Fills the view and publishes it.
    ///
    /// # Safety
    ///
    /// Called at most once per view (the caller won the install race).
    pub(crate) unsafe fn publish(&self, arch: A, mem: M, root: PhyAddr) {
        // SAFETY: once (caller), before `ready`: no reader looks at `parts` yet.
        unsafe { (*self.parts.get()).write((arch, mem)) };
        self.root.store(root.as_u64(), Ordering::Relaxed);
        self.ready.store(true, Ordering::Release);
    }

    /// The format and accessor, once published.
    #[inline]
    pub(crate) fn parts(&self) -> Option<&(A, M)> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: published (acquire pairs with the release in `publish`), never written again.
        Some(unsafe { (*self.parts.get()).assume_init_ref() })
    }

    /// Where `va` leads, without any lock: the same answer as
    /// [`PageTable::translate`](crate::PageTable::translate) on a quiescent table.
    #[inline]
    pub(crate) fn translate(&self, va: VirtAddr) -> Result<PhyAddr, TranslateError> {
        let (arch, mem) = self.parts().ok_or(TranslateError::NotInitialized)?;
        arch.check_va(va)?;
        let (_inside, epoch) = self.enter();
        let root = PhyAddr::new(self.root.load(Ordering::Relaxed));
        walk(arch, mem, root, va, &self.hint, epoch)
    }

    /// Announces a reader in the counter of the current epoch, until the guard drops.
    ///
    /// The epoch is read again after the announcement: if a writer flipped it in between, the
    /// writer may already have looked at that counter (and will not wait for this reader), so
    /// the reader announces again in the new one. Once the epoch reads the same after the
    /// announcement, any writer that flips it later waits for this reader; and no writer can
    /// flip it twice while this reader is inside (the first one waits for it), so the counter
    /// it sits in is always the one the next writer drains.
    #[inline]
    fn enter(&self) -> (Announced<'_>, usize) {
        let mut e = self.epoch.load(Ordering::SeqCst);
        loop {
            let slot = &self.readers[e & 1][spread()].0;
            slot.fetch_add(1, Ordering::SeqCst);
            let now = self.epoch.load(Ordering::SeqCst);
            if now == e {
                return (Announced(slot), e);
            }
            slot.fetch_sub(1, Ordering::Release);
            e = now;
        }
    }

    /// Waits until no reader that could have loaded a link unlinked before this call is still
    /// walking (the grace period of the [module documentation](self)). Call with the writer lock
    /// held, after unlinking and before freeing.
    pub(crate) fn wait_for_readers(&self) {
        // Orders every unlink before (this CPU's stores) ahead of the counter reads below.
        fence(Ordering::SeqCst);
        let old = self.epoch.fetch_add(1, Ordering::SeqCst) & 1;
        for slot in &self.readers[old] {
            while slot.0.load(Ordering::SeqCst) != 0 {
                core::hint::spin_loop();
            }
        }
        // Every reader that could have cached an unlinked table has left: forget its hint
        // (readers of the new epoch ignore it anyway, and cannot reach unlinked tables).
        self.hint.store(0, Ordering::SeqCst);
    }
}

/// The packed walk hint: bit 63 valid, bits 62:58 the epoch (low 5 bits), bits 57:40 the 1 GiB
/// region (VA bits 47:30), bits 39:0 the table's frame number.
struct Hint;

impl Hint {
    const VALID: u64 = 1 << 63;
    const FRAME: u64 = (1 << 40) - 1;

    /// The region of `va` (VA bits 47:30).
    #[inline(always)]
    fn region(va: VirtAddr) -> u64 {
        (va.as_u64() >> 30) & 0x3_ffff
    }

    #[inline(always)]
    fn pack(epoch: usize, va: VirtAddr, table: PhyAddr) -> Option<u64> {
        let frame = table.as_u64() >> 12;
        (frame <= Self::FRAME)
            .then(|| Self::VALID | ((epoch as u64 & 31) << 58) | (Self::region(va) << 40) | frame)
    }

    /// The table if `hint` is one for `va` from `epoch`.
    #[inline(always)]
    fn table(hint: u64, epoch: usize, va: VirtAddr) -> Option<PhyAddr> {
        let want = Self::VALID | ((epoch as u64 & 31) << 58) | (Self::region(va) << 40);
        (hint & !Self::FRAME == want).then(|| PhyAddr::new((hint & Self::FRAME) << 12))
    }
}

/// The read-only descent: one sequentially consistent load per entry, at most one visit per
/// level (bounded by the number of levels, so an entry that leads back up — a recursive slot —
/// cannot loop: the walk reads on as the hardware would), no walk cache.
///
/// With four or three levels the walk starts at the table of 2 MiB entries a reader of the same
/// epoch reached last for the same 1 GiB region (`hint`), if any, and records the one it reached
/// otherwise: a table a reader of this epoch reached stays a table until every reader of the
/// epoch has left (the grace period), so starting there is as safe as walking to it.
#[inline]
fn walk<A: Arch, M: PhysMem>(
    arch: &A,
    mem: &M,
    root: PhyAddr,
    va: VirtAddr,
    hint: &AtomicU64,
    epoch: usize,
) -> Result<PhyAddr, TranslateError> {
    let top = arch.levels().saturating_sub(1);
    let hinted = if top == 2 || top == 3 {
        Hint::table(hint.load(Ordering::SeqCst), epoch, va)
    } else {
        None
    };
    let (mut level, mut table, mut record) = match hinted {
        Some(t) => (1, t, false),
        None => (top, root, top == 2 || top == 3),
    };
    loop {
        let base = mem
            .frame_ptr(table)
            .ok_or(TranslateError::InvalidPageTable)?;
        // SAFETY: the PhysMem contract: a valid, aligned 4 KiB frame; index < 512. Table frames
        // are only ever accessed atomically (or written before their link is published), and
        // the grace period keeps this frame a table while we read it.
        let raw =
            unsafe { AtomicU64::from_ptr(base.as_ptr().cast::<u64>().add(table_index(va, level))) }
                .load(Ordering::SeqCst);
        match arch.decode(raw, level) {
            Entry::Invalid => return Err(TranslateError::NotMapped),
            Entry::Leaf(frame) => {
                let size = PageSize::from_level(level).ok_or(TranslateError::InvalidPageTable)?;
                return Ok(PhyAddr::new(frame.as_u64() | va.page_offset(size)));
            }
            Entry::Table(next) if level > 0 => {
                if level == 2 && record {
                    record = false;
                    if let Some(h) = Hint::pack(epoch, va, next) {
                        if hint.load(Ordering::Relaxed) != h {
                            // Release: a reader that starts at this table (loading the hint)
                            // must see its initialisation, as this reader did through the link.
                            hint.store(h, Ordering::Release);
                        }
                    }
                }
                table = next;
                level -= 1;
            }
            Entry::Table(_) => return Err(TranslateError::InvalidPageTable),
        }
    }
}

/// Whether the 4 KiB-page table that maps `va` holds no valid entry any more (after the seed
/// `unmap` cleared one): the entries nearest to `va`'s first, so a table still in use answers
/// after a load or two. `false` if the walk does not reach a 4 KiB-page table.
pub(crate) fn leaf_table_empty<A: Arch, M: PhysMem>(
    arch: &A,
    mem: &M,
    root: PhyAddr,
    va: VirtAddr,
) -> bool {
    let mut level = arch.levels().saturating_sub(1);
    let mut table = root;
    while level > 0 {
        let Some(base) = mem.frame_ptr(table) else {
            return false;
        };
        // SAFETY: as in `walk`; the caller holds the writer lock, so the table is live.
        let raw =
            unsafe { AtomicU64::from_ptr(base.as_ptr().cast::<u64>().add(table_index(va, level))) }
                .load(Ordering::Relaxed);
        let Entry::Table(next) = arch.decode(raw, level) else {
            return false;
        };
        table = next;
        level -= 1;
    }
    let Some(base) = mem.frame_ptr(table) else {
        return false;
    };
    let base = base.as_ptr().cast::<u64>();
    let at = table_index(va, 0);
    let valid = |i: usize| {
        // SAFETY: as above; i < 512.
        let raw = unsafe { AtomicU64::from_ptr(base.add(i)) }.load(Ordering::Relaxed);
        !matches!(arch.decode(raw, 0), Entry::Invalid)
    };
    for d in 1..crate::ENTRIES {
        if (at + d < crate::ENTRIES && valid(at + d)) || (d <= at && valid(at - d)) {
            return false;
        }
        if at + d >= crate::ENTRIES && d > at {
            break;
        }
    }
    !valid(at)
}
