//! Shared by the host tests of the seed static API (`X86`): host "physical memory" with a frame
//! pool, and a timeout guard so that a deadlock fails a test instead of hanging CI.
//!
//! Each test file is its own process, so each installs `X86`'s one global table once.

#![allow(dead_code)] // not every test file uses every helper

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use awk_paging::{FrameAllocator, PhyAddr, PAGESIZE};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

/// How long an operation on the global may take before the test calls it a deadlock.
pub const DEADLOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` on a thread of its own and returns its result; panics if it takes longer than
/// [`DEADLOCK_TIMEOUT`] (a deadlocked lock spins forever: the spinning thread is abandoned and the
/// process exits with the failed test) or if it panics.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within_for(DEADLOCK_TIMEOUT, what, f)
}

/// [`within`] with a given timeout.
pub fn within_for<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    // Miri runs orders of magnitude slower: the guard is for deadlocks, not speed.
    let timeout = if cfg!(miri) { timeout * 1000 } else { timeout };
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer after {timeout:?} — deadlocked on the page-table lock?")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Host "physical memory": a leaked, page-aligned buffer with a free list (Send, unlike the
/// emulator arena, because the static API needs a `Send` allocator). Physical address = host
/// address - `offset`; frame 0 (at `base`) is the root table, the others are in the pool.
pub struct HostFrames {
    pub base: u64,
    pub offset: u64,
    pub free: Mutex<Vec<u64>>,
    pub live: AtomicUsize,
}

impl HostFrames {
    /// `frames` frames of 4 KiB at physical 1 MiB; frame 0 is kept out of the pool.
    pub fn leak(frames: usize) -> &'static HostFrames {
        let buf: &'static mut [u8] =
            Box::leak(vec![0u8; (frames + 1) * PAGESIZE].into_boxed_slice());
        let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
        let base = 0x10_0000u64;
        Box::leak(Box::new(HostFrames {
            base,
            offset: host - base,
            free: Mutex::new(
                (1..frames as u64)
                    .map(|i| base + i * PAGESIZE as u64)
                    .collect(),
            ),
            live: AtomicUsize::new(0),
        }))
    }

    /// Frames handed out and not given back.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// An empty level-4 table in frame 0, as a bootloader's `OffsetPageTable`.
    pub fn boot_table(&'static self) -> OffsetPageTable<'static> {
        let l4 = (self.base + self.offset) as *mut PageTable;
        // SAFETY: frame 0 of the leaked buffer, used for nothing else.
        unsafe {
            l4.write(PageTable::new());
            OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(self.offset))
        }
    }

    /// The same tables again (for a second, refused init).
    pub fn same_table(&'static self) -> OffsetPageTable<'static> {
        let l4 = (self.base + self.offset) as *mut PageTable;
        // SAFETY: as above; the result is only handed to an init that refuses it.
        unsafe { OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(self.offset)) }
    }
}

unsafe impl FrameAllocator for &'static HostFrames {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        let f = self.free.lock().unwrap().pop()?;
        self.live.fetch_add(1, Ordering::SeqCst);
        Some(PhyAddr::new(f))
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.free.lock().unwrap().push(frame.as_u64());
    }
}
