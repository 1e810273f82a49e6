//! `unmap_range` on x86 and the Accessed/Dirty bits the CPU sets: a table the range covers whole
//! is detached with one store and its leaves are read afterwards — only once the TLB
//! invalidation is done, because until then a CPU holding a stale translation or walk-cache
//! entry can still set a bit in the detached table.

use std::cell::Cell;

use awk_paging::arch::{table_index, Arch, Entry};
use awk_paging::emu::EmuMemory;
use awk_paging::{
    Attrs, Flags, Invalidation, PageSize, PageTable, PhyAddr, RangeOptions, Tlb, VirtAddr,
};
use awk_paging_x86_64::X86_64;

const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;

/// The physical address of the entry at `level` on the walk to `va`.
fn entry_at(mem: &EmuMemory, root: PhyAddr, va: VirtAddr, level: u8) -> Option<PhyAddr> {
    let arch = X86_64::new();
    let (mut l, mut table) = (3, root);
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

/// A TLB whose first invalidation comes "late": just before it takes effect, a CPU still
/// holding the old translation of one page writes through it, so the hardware sets Accessed
/// and Dirty in that page's entry — wherever the entry is now (the detached table).
#[derive(Clone, Copy)]
struct LateWriter<'a> {
    mem: &'a EmuMemory,
    entry: &'a Cell<PhyAddr>,
    done: &'a Cell<bool>,
    flushes: &'a Cell<usize>,
}

impl LateWriter<'_> {
    fn cpu_writes(&self) {
        self.flushes.set(self.flushes.get() + 1);
        if !self.done.replace(true) {
            let entry = self.entry.get();
            let raw = self.mem.read_u64(entry).unwrap();
            assert!(self.mem.write_u64(entry, raw | ACCESSED | DIRTY));
        }
    }
}

impl Tlb for LateWriter<'_> {
    fn flush_page(&self, _va: VirtAddr) {
        self.cpu_writes();
    }
    fn flush_all(&self) {
        self.cpu_writes();
    }
    fn flush_pages(&self, _pages: &[Invalidation]) {
        self.cpu_writes();
    }
}

/// 2 MiB of 4 KiB pages (one whole leaf table) unmapped with `unmap_range`: the page the CPU
/// dirtied before the invalidation completed is reported accessed and dirty, every other page
/// neither; every page is reported once, and the table goes back to the allocator.
#[test]
fn bits_set_before_the_invalidation_are_reported() {
    let mem = EmuMemory::new(16);
    let (done, flushes, entry) = (Cell::new(true), Cell::new(0), Cell::new(PhyAddr::ZERO));
    let va = VirtAddr::new(0x4000_0000);
    let hot = VirtAddr::new(va.as_u64() + 0x5_000);
    let mut pt = PageTable::new(
        X86_64::new(),
        &mem,
        &mem,
        LateWriter {
            mem: &mem,
            entry: &entry,
            done: &done,
            flushes: &flushes,
        },
    )
    .unwrap();
    let small = RangeOptions {
        max_page: PageSize::Size4K,
    };
    let mut g = pt.gather();
    unsafe {
        pt.map_range(
            va,
            PhyAddr::new(0x20_0000),
            0x20_0000,
            // A user page: kernel leaves are created Accessed and Dirty.
            Attrs {
                user: true,
                ..Attrs::from(Flags::RW)
            },
            small,
            &mut g,
        )
    }
    .unwrap();
    pt.finish(g).unwrap();
    let leaf = entry_at(&mem, pt.root(), hot, 0).unwrap();
    assert_eq!(mem.read_u64(leaf).unwrap() & (ACCESSED | DIRTY), 0);
    let tables = mem.frames_in_use();
    // Arm the CPU's late write at the leaf of `hot`.
    entry.set(leaf);
    done.set(false);
    let mut g = pt.gather();
    let mut seen = Vec::new();
    unsafe { pt.unmap_range(va, 0x20_0000, &mut g, |u| seen.push(u)) }.unwrap();
    pt.finish(g).unwrap();
    assert!(done.get(), "the range was invalidated");
    assert_eq!(seen.len(), 512);
    for (i, u) in seen.iter().enumerate() {
        assert_eq!(
            u.page.as_u64(),
            va.as_u64() + 0x1000 * i as u64,
            "address order"
        );
        let expect = u.page == hot;
        assert_eq!(
            (u.unmapped.accessed, u.unmapped.dirty),
            (expect, expect),
            "{:?}",
            u.page
        );
    }
    assert!(mem.frames_in_use() < tables, "emptied tables freed");
    unsafe { pt.destroy() };
    assert_eq!(mem.frames_in_use(), 0);
}
