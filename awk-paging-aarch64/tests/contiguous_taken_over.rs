//! Contiguous runs in tables built by someone else (a bootloader, the kernel before the
//! hand-over): descriptors written raw into emulated memory, with the contiguous hint on aligned
//! 16-entry runs, then taken over with `PageTable::from_root`. Unmapping, protecting or mapping
//! one entry of such a run must first clear the hint on the whole run with break-before-make —
//! all 16 entries invalid, each invalidated, then rewritten without the hint (Arm ARM D8.6.1,
//! D8.16.1) — and the tracer must see no ordering or break-before-make violation.

use awk_paging::arch::Arch;
use awk_paging::emu::{EmuMemory, Event, TracedTable, Tracer};
use awk_paging::{Attrs, Flags, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_aarch64::descriptor::bits::CONTIGUOUS;
use awk_paging_aarch64::descriptor::OA_MASK;
use awk_paging_aarch64::A64;

/// Where the runs are mapped: 4 KiB pages at `BASE` (frames from `PA`), 16 per run.
const BASE: u64 = 0x4000_0000;
const PA: u64 = 0x8000_0000;
const RUN: u64 = 16;

/// Physical address of entry `index` of `table`.
fn at(table: PhyAddr, index: u64) -> PhyAddr {
    PhyAddr::new(table.as_u64() + 8 * index)
}

/// Builds root → L1 → L2 → leaf table by hand, with two runs of 16 hinted 4 KiB pages at
/// `BASE` (32 pages), each run aligned in VA and PA; entry `hole` of the first run (if any) is
/// left invalid (a run someone else left with a hole: the rest still hinted). Returns the root
/// and the leaf table.
fn build(mem: &EmuMemory, regime: &A64, hole: Option<u64>) -> (PhyAddr, PhyAddr) {
    let tables: Vec<PhyAddr> = (0..4).map(|_| mem.allocate_data_frame().unwrap()).collect();
    let va = VirtAddr::new(BASE);
    for level in (1..4u8).rev() {
        let parent = tables[usize::from(3 - level)];
        let child = tables[usize::from(4 - level)];
        let index = (BASE >> (12 + 9 * u32::from(level))) & 0x1ff;
        assert!(mem.write_u64(
            at(parent, index),
            regime.table_entry(child, Attrs::from(Flags::RW))
        ));
    }
    let leaf = tables[3];
    let first = (va.as_u64() >> 12) & 0x1ff;
    for i in 0..2 * RUN {
        if Some(i) == hole {
            continue;
        }
        let d = regime.leaf_entry(PhyAddr::new(PA + i * 0x1000), 0, Attrs::from(Flags::RW));
        assert!(mem.write_u64(at(leaf, first + i), d | CONTIGUOUS));
    }
    (tables[0], leaf)
}

fn take_over<'t, 'a>(t: &'t Tracer<'a, A64>, root: PhyAddr) -> TracedTable<'t, 'a, A64> {
    t.adopt(root);
    // SAFETY: a valid A64 tree in the tracer's memory, owned by the table from now on.
    unsafe { PageTable::from_root(*t.arch(), t, t, t, root) }
}

/// Checks, from the tracer's events, that the run of entries `run` (of table `leaf`, mapping
/// `vas`) was broken whole before anything was made: every entry of the run cleared, then each
/// valid one's address invalidated, then rewritten without the hint; and that no entry of the
/// run carries the hint afterwards.
fn assert_run_broken(
    mem: &EmuMemory,
    t: &Tracer<'_, A64>,
    leaf: PhyAddr,
    first: usize,
    vas: &[u64],
) {
    let events = t.events();
    let run = first..first + vas.len();
    let stores: Vec<(usize, usize, u64, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(k, e)| match *e {
            Event::Store {
                table,
                index,
                old,
                new,
            } if table == leaf && run.contains(&index) => Some((k, index, old, new)),
            _ => None,
        })
        .collect();
    // The first store to each entry of the run is its break (to 0).
    let mut broken_at = vec![None; vas.len()];
    for &(k, index, old, new) in &stores {
        let slot = &mut broken_at[index - first];
        if slot.is_none() && old != 0 {
            assert_eq!(new, 0, "first change of entry {index} is a break");
            *slot = Some(k);
        }
    }
    let last_break = broken_at.iter().flatten().max().copied().expect("breaks");
    let first_make = stores
        .iter()
        .filter(|&&(_, _, old, new)| old == 0 && new != 0)
        .map(|&(k, ..)| k)
        .min();
    if let Some(make) = first_make {
        assert!(
            last_break < make,
            "every entry broken before any is made again"
        );
        // Each broken valid entry's address invalidated between the breaks and the makes.
        for (i, b) in broken_at.iter().enumerate() {
            if b.is_some() {
                let va = VirtAddr::new(vas[i]);
                assert!(
                    events[last_break..make].iter().any(|e| matches!(
                        *e,
                        Event::FlushLeaf(v) | Event::FlushPage(v) if v == va
                    ) || matches!(*e, Event::FlushAll)),
                    "{va:?} invalidated while the run was invalid"
                );
            }
        }
    }
    for i in run {
        let raw = mem.read_u64(at(leaf, i as u64)).unwrap();
        assert_eq!(raw & CONTIGUOUS, 0, "entry {i}: hint cleared");
    }
    assert_eq!(t.violations(), vec![], "tracer");
}

fn vas_of_run(run: u64) -> Vec<u64> {
    (0..RUN).map(|i| BASE + (run * RUN + i) * 0x1000).collect()
}

fn first_index(run: u64) -> usize {
    (((BASE >> 12) & 0x1ff) + run * RUN) as usize
}

#[test]
fn unmapping_one_entry_of_a_taken_over_run_breaks_the_whole_run() {
    let mem = EmuMemory::new(16);
    let regime = A64::default();
    let (root, leaf) = build(&mem, &regime, None);
    let t = Tracer::new(regime, &mem, None);
    let mut pt = take_over(&t, root);
    let va = VirtAddr::new(BASE + 5 * 0x1000);
    let (gone, f) = unsafe { pt.unmap(va, PageSize::Size4K) }.unwrap();
    f.flush();
    assert_eq!(gone.frame, PhyAddr::new(PA + 5 * 0x1000));
    assert_run_broken(&mem, &t, leaf, first_index(0), &vas_of_run(0));
    assert!(pt.translate(va).is_err());
    for i in (0..RUN).filter(|&i| i != 5) {
        let v = VirtAddr::new(BASE + i * 0x1000);
        assert_eq!(
            pt.translate(v).unwrap().frame,
            PhyAddr::new(PA + i * 0x1000)
        );
    }
    // The other run is untouched, still hinted.
    let second = mem.read_u64(at(leaf, first_index(1) as u64)).unwrap();
    assert_ne!(second & CONTIGUOUS, 0);
    t.assert_flushed();
}

#[test]
fn protecting_one_entry_of_a_taken_over_run_breaks_the_whole_run() {
    for range in [false, true] {
        let mem = EmuMemory::new(16);
        let regime = A64::default();
        let (root, leaf) = build(&mem, &regime, None);
        let t = Tracer::new(regime, &mem, None);
        let mut pt = take_over(&t, root);
        let va = VirtAddr::new(BASE + 17 * 0x1000); // the second run
        if range {
            let mut g = pt.gather();
            unsafe { pt.protect_range(va, 0x1000, Flags::RO, &mut g) }.unwrap();
            pt.finish(g).unwrap();
        } else {
            unsafe { pt.update_flags(va, PageSize::Size4K, Flags::RO) }
                .unwrap()
                .flush();
        }
        assert_run_broken(&mem, &t, leaf, first_index(1), &vas_of_run(1));
        assert_eq!(pt.translate(va).unwrap().attrs.flags, Flags::RO);
        let next = pt.translate(VirtAddr::new(va.as_u64() + 0x1000)).unwrap();
        assert_eq!(
            (next.attrs.flags, next.frame),
            (Flags::RW, PhyAddr::new(PA + 18 * 0x1000))
        );
        t.assert_flushed();
    }
}

/// A map into the one invalid entry of a hinted run (which only a table built elsewhere can
/// hold) must not leave the other 15 entries hinted (a misprogrammed run, Arm ARM D8.6.1): both
/// `map` and `map_range` break the whole run first.
#[test]
fn mapping_into_a_hole_of_a_taken_over_run_breaks_the_whole_run() {
    for range in [false, true] {
        let mem = EmuMemory::new(16);
        let regime = A64::default();
        let (root, leaf) = build(&mem, &regime, Some(7));
        let t = Tracer::new(regime, &mem, None);
        let mut pt = take_over(&t, root);
        let va = VirtAddr::new(BASE + 7 * 0x1000);
        let pa = PhyAddr::new(PA + 7 * 0x1000);
        if range {
            let mut g = pt.gather();
            unsafe { pt.map_range(va, pa, 0x1000, Flags::RW, Default::default(), &mut g) }.unwrap();
            pt.finish(g).unwrap();
        } else {
            unsafe { pt.map(va, pa, PageSize::Size4K, Flags::RW) }
                .unwrap()
                .flush();
        }
        assert_run_broken(&mem, &t, leaf, first_index(0), &vas_of_run(0));
        assert_eq!(pt.translate(va).unwrap().frame, pa);
        t.assert_flushed();
    }
}

/// The raw leaf descriptor at `va` in a hand-built tree (for the sanity check below).
fn raw_leaf(mem: &EmuMemory, root: PhyAddr, va: u64) -> u64 {
    let mut table = root.as_u64();
    for level in (1..4).rev() {
        let raw = mem
            .read_u64(PhyAddr::new(table + 8 * ((va >> (12 + 9 * level)) & 0x1ff)))
            .unwrap();
        table = raw & OA_MASK;
    }
    mem.read_u64(PhyAddr::new(table + 8 * ((va >> 12) & 0x1ff)))
        .unwrap()
}

#[test]
fn the_hand_built_runs_are_what_the_tests_assume() {
    let mem = EmuMemory::new(16);
    let regime = A64::default();
    let (root, _) = build(&mem, &regime, Some(7));
    for i in 0..2 * RUN {
        let raw = raw_leaf(&mem, root, BASE + i * 0x1000);
        if i == 7 {
            assert_eq!(raw, 0);
        } else {
            assert_ne!(raw & CONTIGUOUS, 0, "page {i} hinted");
            assert_eq!(raw & OA_MASK, PA + i * 0x1000);
        }
    }
}
