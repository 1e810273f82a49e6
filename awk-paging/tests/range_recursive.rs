//! Range operations over a recursive root slot: a table the range covers whole but which is
//! already on the walk's path (the root itself) is never detached as a subtree — the range
//! calls refuse with `RecursiveTable`, change nothing and free nothing.

use awk_paging::arch::Arch;
use awk_paging::emu::{EmuArch, EmuMemory};
use awk_paging::{Attrs, Flags, NoTlb, PageSize, PageTable, PhyAddr, UnmapError, VirtAddr};

const ARCH: EmuArch = EmuArch { without: None };
/// Root slot 510 covers `0xffff_ff00_0000_0000 ..` (512 GiB).
const SLOT: u64 = 0xffff_ff00_0000_0000;
const SLOT_LEN: u64 = 512 << 30;

fn setup(mem: &EmuMemory) -> PageTable<EmuArch, &EmuMemory, &EmuMemory, NoTlb> {
    let mut pt = PageTable::new(ARCH, mem, mem, NoTlb).unwrap();
    let good = VirtAddr::new(0x4000_0000);
    unsafe { pt.map(good, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let slot = PhyAddr::new(pt.root().as_u64() + 8 * 510);
    assert!(mem.write_u64(slot, ARCH.table_entry(pt.root(), Attrs::from(Flags::RW))));
    pt
}

#[test]
fn whole_recursive_slot_is_refused_by_unmap_and_drop_range() {
    for drop in [false, true] {
        let mem = EmuMemory::new(16);
        let mut pt = setup(&mem);
        let (frames, frees) = (mem.frames_in_use(), mem.frees());
        let root_slot = mem.read_u64(PhyAddr::new(pt.root().as_u64() + 8 * 510));
        let mut g = pt.gather();
        let va = VirtAddr::new(SLOT);
        let mut seen = 0;
        let r = if drop {
            unsafe { pt.drop_range(va, SLOT_LEN, &mut g) }
        } else {
            unsafe { pt.unmap_range(va, SLOT_LEN, &mut g, |_| seen += 1) }
        };
        pt.finish(g).unwrap();
        assert_eq!(
            r.map_err(|e| e.error),
            Err(UnmapError::RecursiveTable),
            "drop {drop}"
        );
        assert_eq!(seen, 0);
        assert_eq!(mem.frames_in_use(), frames, "drop {drop}: nothing freed");
        assert_eq!(mem.frees(), frees, "drop {drop}: nothing freed");
        assert_eq!(
            mem.read_u64(PhyAddr::new(pt.root().as_u64() + 8 * 510)),
            root_slot,
            "drop {drop}: slot kept"
        );
        assert!(pt.translate(VirtAddr::new(0x4000_0000)).is_ok());
        unsafe { pt.destroy() };
        assert_eq!(mem.frames_in_use(), 0);
    }
}
