//! What the walker must not lose or reuse on x86: Accessed/Dirty bits the CPU sets in live
//! entries, and tables the `x86_64` crate frees behind the walker's back.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use awk_paging::arch::{table_index, Arch, Entry};
use awk_paging::emu::{CpuAccess, EmuMemory, EmuTlb};
use awk_paging::{
    Attrs, Flags, FrameAllocator, NoTlb, PageSize, PageTable, PhyAddr, PhysMem, RangeOptions, Tlb,
    VirtAddr,
};
use awk_paging_x86_64::{with_offset_page_table, X86_64};
use x86_64::structures::paging::mapper::CleanUp;
use x86_64::structures::paging::{
    FrameDeallocator, Mapper as X86Mapper, Page, PhysFrame, Size4KiB, Translate,
};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;

/// User pages: kernel leaves are created Accessed and Dirty (the processor never writes them),
/// so the hardware's record is exercised on user leaves, which start clean.
const USER_RW: Attrs = Attrs {
    flags: Flags::RW,
    user: true,
    global: false,
};
const USER_RO: Attrs = Attrs {
    flags: Flags::RO,
    user: true,
    global: false,
};

/// The physical address of the entry at `level` on the walk to `va`.
fn entry_at(mem: &EmuMemory, root: PhyAddr, va: VirtAddr, level: u8) -> Option<PhyAddr> {
    let arch = X86_64::new();
    let mut l = 3;
    let mut table = root;
    loop {
        let at = PhyAddr::new(table.as_u64() + 8 * table_index(va, l) as u64);
        if l == level {
            return Some(at);
        }
        match arch.decode(mem.read_u64(at)?, l) {
            Entry::Table(next) if l > 0 => (table, l) = (next, l - 1),
            _ => return None,
        }
    }
}

/// A and D set by the "CPU" on the live leaf between map and unmap are kept by `update_flags`
/// and reported by `unmap`; a page the CPU never touched reports neither.
#[test]
fn accessed_and_dirty_set_by_hardware_are_kept_and_reported() {
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(X86_64::new(), &mem, &mem, NoTlb).unwrap();
    let (v, w) = (VirtAddr::new(0x4000_0000), VirtAddr::new(0x4000_1000));
    for (va, pa) in [(v, 0x20_0000), (w, 0x20_1000)] {
        unsafe { pt.map(va, PhyAddr::new(pa), PageSize::Size4K, USER_RW) }
            .unwrap()
            .flush();
    }
    let leaf = entry_at(&mem, pt.root(), v, 0).unwrap();
    let raw = mem.read_u64(leaf).unwrap();
    assert_eq!(raw & (ACCESSED | DIRTY), 0, "fresh leaf");
    // The CPU writes through the mapping.
    assert!(mem.write_u64(leaf, raw | ACCESSED | DIRTY));
    unsafe { pt.update_flags(v, PageSize::Size4K, USER_RO) }
        .unwrap()
        .flush();
    let raw = mem.read_u64(leaf).unwrap();
    assert_eq!(raw & WRITABLE, 0, "write-protected");
    assert_eq!(
        raw & (ACCESSED | DIRTY),
        ACCESSED | DIRTY,
        "A/D kept by update_flags"
    );
    let (gone, token) = unsafe { pt.unmap(v, PageSize::Size4K) }.unwrap();
    token.flush();
    assert!(
        gone.accessed && gone.dirty,
        "A/D reported by unmap: {gone:?}"
    );
    assert_eq!(mem.read_u64(leaf), Some(0));
    // Accessed only.
    let raw = mem
        .read_u64(entry_at(&mem, pt.root(), w, 0).unwrap())
        .unwrap();
    assert!(mem.write_u64(entry_at(&mem, pt.root(), w, 0).unwrap(), raw | ACCESSED));
    let (gone, token) = unsafe { pt.unmap(w, PageSize::Size4K) }.unwrap();
    token.flush();
    assert!(gone.accessed && !gone.dirty, "{gone:?}");
    // Never touched.
    unsafe { pt.map(v, PhyAddr::new(0x20_0000), PageSize::Size4K, USER_RW) }
        .unwrap()
        .flush();
    let (gone, token) = unsafe { pt.unmap(v, PageSize::Size4K) }.unwrap();
    token.flush();
    assert!(!gone.accessed && !gone.dirty, "{gone:?}");
    unsafe { pt.destroy() };
}

/// A second thread plays the CPU: whenever the leaf is present and clean it sets D (and A)
/// with a compare-exchange. Every successful set happened on a present entry, which only
/// `unmap` removes — so `unmap` must report exactly as many dirty pages as the "CPU" dirtied.
/// A plain load-then-store in `unmap` loses the sets that land between the two.
#[test]
fn dirty_bit_set_concurrently_is_never_lost() {
    let mem = EmuMemory::new(16);
    let mut pt = PageTable::new(X86_64::new(), &mem, &mem, NoTlb).unwrap();
    let (v, keep) = (VirtAddr::new(0x4000_0000), VirtAddr::new(0x4000_1000));
    let pa = PhyAddr::new(0x20_0000);
    // A neighbour keeps the leaf table alive and the walker's cache warm.
    unsafe { pt.map(keep, pa, PageSize::Size4K, USER_RW) }
        .unwrap()
        .flush();
    let leaf = entry_at(&mem, pt.root(), v, 0).unwrap();
    let frame = PhyAddr::new(leaf.as_u64() & !0xfff);
    let word = mem.frame_ptr(frame).unwrap().as_ptr() as usize + (leaf.as_u64() & 0xfff) as usize;
    let (stop, dirtied) = (AtomicBool::new(false), AtomicUsize::new(0));
    let mut reported = 0usize;
    let rounds = 100_000;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the word is an 8-byte-aligned entry of the arena, which outlives the
            // scope; the walker accesses it only atomically.
            let e = unsafe { AtomicU64::from_ptr(word as *mut u64) };
            while !stop.load(Relaxed) {
                let cur = e.load(Relaxed);
                if cur & PRESENT != 0 && cur & DIRTY == 0 {
                    if e.compare_exchange(cur, cur | ACCESSED | DIRTY, Relaxed, Relaxed)
                        .is_ok()
                    {
                        dirtied.fetch_add(1, Relaxed);
                    }
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        for _ in 0..rounds {
            unsafe { pt.map(v, pa, PageSize::Size4K, USER_RW) }
                .unwrap()
                .flush();
            let (gone, token) = unsafe { pt.unmap(v, PageSize::Size4K) }.unwrap();
            token.flush();
            reported += usize::from(gone.dirty);
        }
        stop.store(true, Relaxed);
    });
    let dirtied = dirtied.load(Relaxed);
    assert_eq!(
        reported, dirtied,
        "unmap reported {reported} dirty pages, the CPU dirtied {dirtied} (of {rounds} rounds)"
    );
    unsafe { pt.destroy() };
}

/// `protect_range` rewrites runs of leaves in one loop (4 KiB leaf tables, and runs of 2 MiB
/// blocks): while it makes `PAGES` writable pages read-only, a second thread plays the CPU and
/// sets Dirty (and Accessed) on any present, writable, clean one. Only a writable entry gets
/// Dirty, and `protect_range` makes them all read-only, so after it every Dirty set must still
/// be there: the count over all rounds equals what the CPU set. A plain load-then-store
/// rewrite loses the sets that land between the two.
#[test]
fn protect_range_never_loses_a_dirty_bit_set_concurrently() {
    const PAGES: usize = 32;
    for size in [PageSize::Size4K, PageSize::Size2M] {
        let mem = EmuMemory::new(16);
        let mut pt = PageTable::new(X86_64::new(), &mem, &mem, NoTlb).unwrap();
        let step = size.bytes();
        let base = VirtAddr::new(0x40_0000_0000);
        let len = PAGES as u64 * step;
        let opts = RangeOptions { max_page: size };
        // A neighbour after the range keeps its table alive, so the entries stay where they are.
        let keep = VirtAddr::new(base.as_u64() + len);
        unsafe { pt.map(keep, PhyAddr::new(0), size, USER_RW) }
            .unwrap()
            .flush();
        let map = |pt: &mut PageTable<X86_64, &EmuMemory, &EmuMemory, NoTlb>| {
            let mut g = pt.gather();
            let pa = PhyAddr::new(0x4000_0000);
            unsafe { pt.map_range(base, pa, len, USER_RW, opts, &mut g) }.unwrap();
            pt.finish(g).unwrap();
        };
        map(&mut pt); // (only to find the entries: unmapped again below)
        let level = size.level();
        let words: Vec<usize> = (0..PAGES)
            .map(|i| {
                let va = VirtAddr::new(base.as_u64() + i as u64 * step);
                let at = entry_at(&mem, pt.root(), va, level).unwrap();
                let frame = PhyAddr::new(at.as_u64() & !0xfff);
                mem.frame_ptr(frame).unwrap().as_ptr() as usize + (at.as_u64() & 0xfff) as usize
            })
            .collect();
        let mut g = pt.gather();
        unsafe { pt.unmap_range(base, len, &mut g, |_| {}) }.unwrap();
        pt.finish(g).unwrap();
        let (stop, dirtied) = (AtomicBool::new(false), AtomicUsize::new(0));
        let mut kept = 0usize;
        let rounds = if cfg!(miri) { 20 } else { 20_000 };
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    for &w in &words {
                        // SAFETY: an 8-byte-aligned entry of the arena, which outlives the
                        // scope; the walker accesses it only atomically.
                        let e = unsafe { AtomicU64::from_ptr(w as *mut u64) };
                        let cur = e.load(Relaxed);
                        if cur & (PRESENT | WRITABLE) == PRESENT | WRITABLE
                            && cur & DIRTY == 0
                            && e.compare_exchange(cur, cur | ACCESSED | DIRTY, Relaxed, Relaxed)
                                .is_ok()
                        {
                            dirtied.fetch_add(1, Relaxed);
                        }
                    }
                }
            });
            for _ in 0..rounds {
                map(&mut pt);
                let mut g = pt.gather();
                unsafe { pt.protect_range(base, len, USER_RO, &mut g) }.unwrap();
                pt.finish(g).unwrap();
                for &w in &words {
                    // SAFETY: as above.
                    let e = unsafe { AtomicU64::from_ptr(w as *mut u64) }.load(Relaxed);
                    assert_eq!(e & WRITABLE, 0, "read-only after protect_range");
                    kept += usize::from(e & DIRTY != 0);
                }
                let mut g = pt.gather();
                unsafe { pt.unmap_range(base, len, &mut g, |_| {}) }.unwrap();
                pt.finish(g).unwrap();
            }
            stop.store(true, Relaxed);
        });
        let dirtied = dirtied.load(Relaxed);
        assert!(dirtied > 0, "{size:?}: the CPU thread never ran");
        assert_eq!(
            kept, dirtied,
            "{size:?}: protect_range kept {kept} Dirty bits, the CPU set {dirtied}"
        );
        unsafe { pt.destroy() };
    }
}

/// Gives frames back to the emulator on behalf of the `x86_64` crate.
struct Dealloc<'a>(&'a EmuMemory);

impl FrameDeallocator<Size4KiB> for Dealloc<'_> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        let mut m = self.0;
        // SAFETY: the x86_64 crate frees a table frame it unlinked, which came from this arena.
        unsafe { m.deallocate_frame(PhyAddr::new(frame.start_address().as_u64())) };
    }
}

/// The `x86_64` crate unmaps the only page of a leaf table and frees the empty table
/// (`clean_up`) while the walker has that table cached. A later map in the same 2 MiB region
/// through awk-paging must build a live table: the walker's translation, the `x86_64` crate's
/// and the TLB model's walk agree, and the freed frame is never written.
#[test]
fn table_freed_by_the_x86_64_crate_is_not_reused_from_the_walk_cache() {
    let mem = EmuMemory::new(32);
    let tlb = EmuTlb::new();
    let regime = X86_64::new();
    // SAFETY: every table is built in the arena, by the walker or by the x86_64 crate with
    // arena frames.
    let direct = unsafe { mem.offset_mapping() };
    let mut pt = PageTable::new(regime, direct, &mem, &tlb).unwrap();
    let (a, b, other) = (
        VirtAddr::new(0x4000_0000),
        VirtAddr::new(0x4000_1000),
        VirtAddr::new(0x4020_0000),
    );
    for (va, pa) in [(a, 0x10_0000u64), (other, 0x10_1000)] {
        unsafe { pt.map(va, PhyAddr::new(pa), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
    }
    // The walker caches the leaf table of `a`'s region.
    assert_eq!(pt.translate(a).unwrap().frame, PhyAddr::new(0x10_0000));
    let pde = entry_at(&mem, pt.root(), a, 1).unwrap();
    let old_table = entry_at(&mem, pt.root(), a, 0).unwrap().as_u64() & !0xfff;
    // SAFETY: the closure unmaps through the x86_64 crate and frees only tables it emptied.
    unsafe {
        with_offset_page_table(&mut pt, |opt| {
            let page = Page::<Size4KiB>::containing_address(x86_64::VirtAddr::new(a.as_u64()));
            opt.unmap(page).unwrap().1.ignore();
            opt.clean_up(&mut Dealloc(&mem));
        })
    };
    tlb.flush_page(a); // the x86_64 crate's token, for the model
    assert_eq!(
        mem.read_u64(pde),
        Some(0),
        "the empty leaf table was unlinked"
    );
    // Hold the freed frame as data, so no new table can legitimately reuse it.
    let held = mem.allocate_data_frame().unwrap();
    assert_eq!(
        held.as_u64(),
        old_table,
        "the freed leaf table is handed out next"
    );
    let pb = PhyAddr::new(0x10_2000);
    unsafe { pt.map(b, pb, PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    assert_eq!(pt.translate(b).map(|t| t.frame), Ok(pb), "walker");
    let seen = unsafe {
        with_offset_page_table(&mut pt, |opt| {
            opt.translate_addr(x86_64::VirtAddr::new(b.as_u64()))
        })
    };
    assert_eq!(
        seen,
        Some(x86_64::PhysAddr::new(pb.as_u64())),
        "the x86_64 crate's walk"
    );
    assert_eq!(
        tlb.access_walk(&mem, &regime, pt.root(), b),
        CpuAccess::Mapped(pb),
        "the TLB model's walk"
    );
    for i in 0..512u64 {
        assert_eq!(
            mem.read_u64(PhyAddr::new(held.as_u64() + 8 * i)),
            Some(0),
            "freed table frame written at entry {i}"
        );
    }
    let mut frames = unsafe { pt.destroy() };
    // SAFETY: the held data frame came from this arena.
    unsafe { frames.deallocate_frame(held) };
    assert_eq!((mem.frames_in_use(), mem.bad_frees()), (0, 0));
}

/// Which live entries the processor may still write (so a change needs a locked
/// read-modify-write): a present entry until both Accessed and Dirty are set (SDM Vol. 3A
/// §4.8: each is set only while clear, and never cleared by the processor). A read-only entry
/// with Dirty clear still counts: a stale writable TLB entry may set Dirty until the flush.
#[test]
fn hardware_may_write_until_accessed_and_dirty_are_set() {
    let a = X86_64::new();
    const RW_BIT: u64 = WRITABLE;
    for (raw, may) in [
        (0, false),
        (ACCESSED | DIRTY, false), // not present
        (PRESENT, true),
        (PRESENT | ACCESSED, true),
        (PRESENT | DIRTY, true),
        (PRESENT | RW_BIT | ACCESSED, true),
        (PRESENT | ACCESSED | DIRTY, false),
        (PRESENT | RW_BIT | ACCESSED | DIRTY | (1 << 63), false),
    ] {
        assert_eq!(a.hardware_may_write(raw, 0), may, "{raw:#x}");
    }
    // Kernel leaves are created settled; user leaves clean.
    let k = a.leaf_entry(PhyAddr::new(0x5000), 0, Attrs::from(Flags::RW));
    assert_eq!(k & (ACCESSED | DIRTY), ACCESSED | DIRTY);
    assert!(!a.hardware_may_write(k, 0));
    let u = a.leaf_entry(PhyAddr::new(0x5000), 0, USER_RW);
    assert_eq!(u & (ACCESSED | DIRTY), 0);
    assert!(a.hardware_may_write(u, 0));
}
