//! The only raw access to table memory: [`Slot`], one 64-bit entry of a live table frame.
//!
//! Every access is a single-copy-atomic 64-bit load, store or read-modify-write, so neither the
//! hardware walker nor a CPU setting Accessed/Dirty bits can observe or cause a torn entry, and
//! every store is reported to [`PhysMem::note_store`] for tracing emulators.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{PhyAddr, PhysMem, ENTRIES, PAGESIZE};

/// Entry `index` of the table frame at `table`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    table: PhyAddr,
    index: usize,
    ptr: NonNull<u64>,
}

impl Slot {
    /// Entry `index` of the table whose first entry `base` points at.
    ///
    /// # Safety
    ///
    /// `base` is what a [`PhysMem`] returned for `table` (valid, aligned, 4 KiB) and `index`
    /// is below 512; the slot is used only while the table frame is live.
    #[inline(always)]
    pub(crate) unsafe fn new(table: PhyAddr, base: NonNull<u64>, index: usize) -> Slot {
        debug_assert!(index < ENTRIES);
        Slot {
            table,
            index,
            // SAFETY: index < 512 entries of a 4 KiB frame (caller).
            ptr: unsafe { base.add(index) },
        }
    }

    /// Entry `index` of the table at `table`, reached through `mem`; `None` if `mem` cannot
    /// reach it or `index` is out of range.
    #[inline(always)]
    pub(crate) fn of<M: PhysMem>(mem: &M, table: PhyAddr, index: usize) -> Option<Slot> {
        if index >= ENTRIES {
            return None;
        }
        let base = mem.frame_ptr(table)?.cast::<u64>();
        // SAFETY: the PhysMem contract for a pointer it returned; index checked above.
        Some(unsafe { Slot::new(table, base, index) })
    }

    /// Entry `index` of the same table (`None` if `index` is out of range): no new lookup
    /// through the physical-memory accessor.
    #[inline(always)]
    pub(crate) fn sibling(self, index: usize) -> Option<Slot> {
        if index >= ENTRIES {
            return None;
        }
        // SAFETY: `ptr` is entry `self.index` of a live table frame (constructor contract), so
        // stepping back `self.index` entries gives its first entry; index checked above.
        Some(unsafe { Slot::new(self.table, self.ptr.sub(self.index), index) })
    }

    /// The physical address of the table holding this entry.
    #[inline(always)]
    pub(crate) fn table(self) -> PhyAddr {
        self.table
    }

    /// The entry's index in its table.
    #[inline(always)]
    pub(crate) fn index(self) -> usize {
        self.index
    }

    #[inline(always)]
    fn atomic<'a>(self) -> &'a AtomicU64 {
        // SAFETY: the pointer is valid, 8-byte aligned and only ever accessed atomically (by
        // this module) or by hardware, for as long as the table is live (constructor contract).
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr()) }
    }

    /// Reads the entry (one 64-bit load).
    #[inline(always)]
    pub(crate) fn load(self) -> u64 {
        self.atomic().load(Relaxed)
    }

    /// Writes the entry with one 64-bit store. Only for entries nothing else writes
    /// concurrently (not-present entries, or formats whose hardware never writes entries).
    #[inline(always)]
    pub(crate) fn store<M: PhysMem>(self, mem: &M, old: u64, value: u64) {
        self.atomic().store(value, Relaxed);
        mem.note_store(self.table, self.index, old, value);
    }

    /// Replaces the entry atomically and returns what it held (a hardware A/D update cannot
    /// slip in between the read and the write).
    #[inline(always)]
    pub(crate) fn swap<M: PhysMem>(self, mem: &M, value: u64) -> u64 {
        let old = self.atomic().swap(value, Relaxed);
        mem.note_store(self.table, self.index, old, value);
        old
    }

    /// Replaces the entry with `value` if it still holds `current` (one atomic
    /// compare-exchange); otherwise returns what it holds now and changes nothing.
    #[inline(always)]
    pub(crate) fn replace<M: PhysMem>(self, mem: &M, current: u64, value: u64) -> Result<(), u64> {
        self.atomic()
            .compare_exchange(current, value, Relaxed, Relaxed)
            .map(|_| mem.note_store(self.table, self.index, current, value))
    }

    /// Replaces the entry with `f(current)` atomically (compare-exchange loop) and returns
    /// `(old, new)`.
    #[inline(always)]
    pub(crate) fn update<M: PhysMem>(self, mem: &M, mut f: impl FnMut(u64) -> u64) -> (u64, u64) {
        let a = self.atomic();
        let mut cur = a.load(Relaxed);
        loop {
            let new = f(cur);
            match a.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => {
                    mem.note_store(self.table, self.index, cur, new);
                    return (cur, new);
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Makes the entry invalid (0) and returns what it held: one atomic swap if
    /// `hardware_writes` (a bit the hardware sets meanwhile is returned, not lost), else a store
    /// over `known`, the value last read.
    #[inline(always)]
    pub(crate) fn clear<M: PhysMem>(self, mem: &M, hardware_writes: bool, known: u64) -> u64 {
        if hardware_writes {
            self.swap(mem, 0)
        } else {
            self.store(mem, known, 0);
            known
        }
    }

    /// Replaces the entry: atomically if `hardware_writes` (the hardware may set bits in it
    /// concurrently), else with a plain load and store. Returns `(old, new)`.
    #[inline(always)]
    pub(crate) fn modify<M: PhysMem>(
        self,
        mem: &M,
        hardware_writes: bool,
        mut f: impl FnMut(u64) -> u64,
    ) -> (u64, u64) {
        if hardware_writes {
            self.update(mem, f)
        } else {
            let old = self.load();
            let new = f(old);
            self.store(mem, old, new);
            (old, new)
        }
    }
}

/// Zeroes the frame at `frame` (reached at `ptr`) to become a new, empty table.
///
/// # Safety
///
/// `ptr` is what `mem` returned for `frame`, and the frame is not published anywhere yet.
#[inline]
pub(crate) unsafe fn zero_table<M: PhysMem>(mem: &M, frame: PhyAddr, ptr: NonNull<u8>) {
    // SAFETY: a writable 4 KiB frame nobody else can see (caller).
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, PAGESIZE) };
    mem.note_zeroed(frame);
}
