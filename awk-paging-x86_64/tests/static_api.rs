//! The seed static API (`X86` as `Mapper`) on the host: one global instance, initialised once from
//! an `OffsetPageTable` over emulated memory, with a TLB hook that records what it is asked.
//!
//! One test function: the global is process-wide, and the order (before init, init, use, second
//! init) is the point.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use awk_paging::{
    ActiveTable, Flags, FlagsError, FrameAllocator, InitError, MapError, Mapper, PageSize, PhyAddr,
    Tlb, UnmapError, VirtAddr, PAGESIZE,
};
use awk_paging_x86_64::{X86, X86_64};
use x86_64::structures::paging::{OffsetPageTable, PageTable};

/// Host "physical memory": a leaked, page-aligned buffer with a free list (Send, unlike the
/// emulator arena, because the static API needs a `Send` allocator).
struct HostFrames {
    base: u64,
    free: Mutex<Vec<u64>>,
    live: AtomicUsize,
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

/// Records the last page flushed and counts publishes.
#[derive(Default)]
struct RecordingTlb {
    last_page: AtomicU64,
    pages: AtomicUsize,
    publishes: AtomicUsize,
}

impl Tlb for RecordingTlb {
    fn flush_page(&self, va: VirtAddr) {
        self.last_page.store(va.as_u64(), Ordering::SeqCst);
        self.pages.fetch_add(1, Ordering::SeqCst);
    }
    fn flush_all(&self) {}
    fn publish(&self) {
        self.publishes.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn seed_api_lifecycle() {
    let va = VirtAddr::new(0xffff_9000_0000_0000);
    let pa = PhyAddr::new(0x20_0000);

    // Before init: nothing translates, map reports the missing table, unmap is a no-op.
    assert_eq!(X86::vm_to_phy(va), None);
    assert_eq!(
        unsafe { X86::map(va, pa, Flags::RW) },
        Err(MapError::InvalidPageTable)
    );
    unsafe { X86::unmap(va) };
    assert_eq!(
        unsafe { X86::try_unmap(va) },
        Err(UnmapError::InvalidPageTable)
    );

    // Physical memory: 64 frames; physical address = host address - offset, base at 1 MiB.
    let frames = 64;
    let buf: &'static mut [u8] = Box::leak(vec![0u8; (frames + 1) * PAGESIZE].into_boxed_slice());
    let host = (buf.as_mut_ptr() as u64 + PAGESIZE as u64 - 1) & !(PAGESIZE as u64 - 1);
    let base = 0x10_0000u64;
    let offset = host - base;
    let pool: &'static HostFrames = Box::leak(Box::new(HostFrames {
        base,
        free: Mutex::new(
            (1..frames as u64)
                .map(|i| base + i * PAGESIZE as u64)
                .collect(),
        ),
        live: AtomicUsize::new(0),
    }));
    let tlb: &'static RecordingTlb = Box::leak(Box::default());
    // The root is frame 0, built by the `x86_64` crate as a bootloader would.
    let l4 = (pool.base + offset) as *mut PageTable;
    let opt = unsafe {
        l4.write(PageTable::new());
        OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(offset))
    };
    let frames_ref: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    assert_eq!(
        unsafe { X86::init(opt, X86_64::new(), frames_ref, tlb) },
        Ok(())
    );

    // Map, translate (with offset), flags through the instance, unmap.
    assert_eq!(unsafe { X86::map(va, pa, Flags::RW) }, Ok(()));
    assert_eq!(tlb.publishes.load(Ordering::SeqCst), 1, "map publishes");
    assert_eq!(
        pool.live.load(Ordering::SeqCst),
        3,
        "PDPT, PD and PT created"
    );
    assert_eq!(
        X86::vm_to_phy(VirtAddr::new(va.as_u64() + 0x7ff)),
        Some(PhyAddr::new(0x20_07ff))
    );
    assert_eq!(
        unsafe { X86::map(va, pa, Flags::RW) },
        Err(MapError::AlreadyMapped)
    );
    let wx = Flags {
        execute: true,
        ..Flags::RW
    };
    let other = VirtAddr::new(va.as_u64() + 0x1000);
    assert_eq!(
        unsafe { X86::map(other, pa, wx) },
        Err(MapError::InvalidFlags(FlagsError::WritableAndExecutable))
    );
    assert_eq!(
        unsafe { X86::map(VirtAddr::new(va.as_u64() + 1), pa, Flags::RW) },
        Err(MapError::AddressNotAligned)
    );
    let size = X86::with_table(|t| t.translate(va).map(|t| t.size));
    assert_eq!(size, Some(Ok(PageSize::Size4K)));

    unsafe { X86::unmap(va) };
    assert_eq!(X86::vm_to_phy(va), None);
    assert_eq!(
        tlb.last_page.load(Ordering::SeqCst),
        va.as_u64(),
        "unmap flushed the page"
    );
    assert_eq!(tlb.pages.load(Ordering::SeqCst), 1);
    // Unmapping again: the seed call is a documented no-op, the checked call says why.
    unsafe { X86::unmap(va) };
    assert_eq!(tlb.pages.load(Ordering::SeqCst), 1, "no flush for a no-op");
    assert_eq!(unsafe { X86::try_unmap(va) }, Err(UnmapError::NotMapped));

    // Initialised once only.
    let opt2 = unsafe { OffsetPageTable::new(&mut *l4, x86_64::VirtAddr::new(offset)) };
    let frames2: &'static mut (dyn FrameAllocator + Send) = Box::leak(Box::new(pool));
    assert_eq!(
        unsafe { X86::init(opt2, X86_64::new(), frames2, tlb) },
        Err(InitError::AlreadyInitialized)
    );
    assert_eq!(X86::vm_to_phy(va), None, "the first table stays");
}
