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
//! perhaps reused for other data). So readers announce themselves in one of two counters, and
//! the seed `unmap`, after unlinking tables and before freeing them (after the TLB flush), waits
//! until every reader that might still hold a pointer into them has left
//! ([`KernelGlobal::wait_for_readers`](super::KernelGlobal::wait_for_readers)): a grace period.
//! A reader that starts later cannot reach the unlinked tables (the unlink is ordered before the
//! wait by a sequentially consistent fence, the reader's announcement before its first load).
//! Readers that keep arriving never stall the writer: each writer flips to the other counter
//! first, and waits only for the one readers used before the flip.
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
    readers: [AtomicUsize; 2],
}

// SAFETY: `parts` is written once, before `ready` is published (release) and while no reader
// can look at it (they check `ready` with acquire first); afterwards it is only read.
unsafe impl<A: Sync, M: Sync> Sync for ReadView<A, M> {}

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
            readers: [AtomicUsize::new(0), AtomicUsize::new(0)],
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
        let slot = &self.readers[self.epoch.load(Ordering::Relaxed) & 1];
        slot.fetch_add(1, Ordering::SeqCst);
        let _leave = Announced(slot);
        let root = PhyAddr::new(self.root.load(Ordering::Relaxed));
        walk(arch, mem, root, va)
    }

    /// Waits until no reader that could have loaded a link unlinked before this call is still
    /// walking (the grace period of the [module documentation](self)). Call with the writer lock
    /// held, after unlinking and before freeing.
    pub(crate) fn wait_for_readers(&self) {
        // Orders every unlink before (this CPU's stores) ahead of the counter reads below.
        fence(Ordering::SeqCst);
        let old = self.epoch.fetch_add(1, Ordering::SeqCst) & 1;
        while self.readers[old].load(Ordering::SeqCst) != 0 {
            core::hint::spin_loop();
        }
    }
}

/// The read-only descent: one sequentially consistent load per entry, at most one visit per
/// level (so a recursive slot cannot loop), no walk cache.
#[inline]
fn walk<A: Arch, M: PhysMem>(
    arch: &A,
    mem: &M,
    root: PhyAddr,
    va: VirtAddr,
) -> Result<PhyAddr, TranslateError> {
    let mut level = arch.levels().saturating_sub(1);
    let mut table = root;
    let mut path = [PhyAddr::ZERO; crate::table::MAX_LEVELS];
    let mut depth = 0;
    loop {
        if depth >= path.len() || path[..depth].contains(&table) {
            return Err(TranslateError::InvalidPageTable);
        }
        path[depth] = table;
        depth += 1;
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
