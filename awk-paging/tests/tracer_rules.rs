//! The tracing checker's rules, each provoked by a hand-made sequence of table writes,
//! allocations and TLB operations (what a buggy walker would do), next to the correct
//! sequence that must pass.

mod common;

use awk_paging::arch::{table_index, Arch, Entry};
use awk_paging::emu::{EmuArch, EmuMemory, EmuTlb, Pending, Tracer, Violation};
use awk_paging::{Flags, FrameAllocator, PageSize, PhyAddr, PhysMem, Tlb, VirtAddr};

const ARCH: EmuArch = EmuArch { without: None };
const V: VirtAddr = VirtAddr::new(0x4000_0000);

/// Writes `new` into entry `index` of `table` and tells the tracer, as the walker does.
fn store<A: Arch>(t: &Tracer<'_, A>, table: PhyAddr, index: usize, new: u64) {
    let at = PhyAddr::new(table.as_u64() + 8 * index as u64);
    let old = t.memory().read_u64(at).unwrap();
    assert!(t.memory().write_u64(at, new));
    t.note_store(table, index, old, new);
}

fn alloc<A: Arch>(t: &Tracer<'_, A>) -> PhyAddr {
    let mut a = t;
    a.allocate_frame().unwrap()
}

fn zero<A: Arch>(t: &Tracer<'_, A>, frame: PhyAddr) {
    for i in 0..512 {
        t.memory()
            .write_u64(PhyAddr::new(frame.as_u64() + 8 * i), 0);
    }
    t.note_zeroed(frame);
}

fn free<A: Arch>(t: &Tracer<'_, A>, frame: PhyAddr) {
    let mut a = t;
    // SAFETY: test frames of the arena.
    unsafe { a.deallocate_frame(frame) };
}

/// The table at `level` on the walk to `va` (from memory).
fn table_at<A: Arch>(t: &Tracer<'_, A>, root: PhyAddr, va: VirtAddr, level: u8) -> PhyAddr {
    let arch = *t.arch();
    let mut l = arch.levels() - 1;
    let mut table = root;
    while l > level {
        let at = PhyAddr::new(table.as_u64() + 8 * table_index(va, l) as u64);
        match arch.decode(t.memory().read_u64(at).unwrap(), l) {
            Entry::Table(next) => (table, l) = (next, l - 1),
            e => panic!("no table below level {l}: {e:?}"),
        }
    }
    table
}

fn kinds(v: &[Violation]) -> Vec<&'static str> {
    v.iter()
        .map(|v| match v {
            Violation::LinkBeforeInit { .. } => "LinkBeforeInit",
            Violation::LinkUnzeroed { .. } => "LinkUnzeroed",
            Violation::BreakBeforeMake { .. } => "BreakBeforeMake",
            Violation::MakeWithoutInvalidate { .. } => "MakeWithoutInvalidate",
            Violation::FreeBeforeFlush { .. } => "FreeBeforeFlush",
            Violation::ReuseBeforeFlush { .. } => "ReuseBeforeFlush",
            Violation::FreeWhileLinked { .. } => "FreeWhileLinked",
            Violation::WidenBeforePushDown { .. } => "WidenBeforePushDown",
        })
        .collect()
}

/// A new table linked right after it was zeroed and filled, with no barrier, is reported; with
/// `order_table_writes` in between it is not. A table below the linked one counts too.
#[test]
fn link_before_init() {
    for barrier in [false, true] {
        let mem = EmuMemory::new(16);
        let t = Tracer::new(ARCH, &mem, None);
        let pt = t.new_table().unwrap();
        let (top, below) = (alloc(&t), alloc(&t));
        zero(&t, top);
        zero(&t, below);
        store(&t, top, 0, ARCH.table_entry(below, Flags::RW.into()));
        if barrier {
            t.order_table_writes();
        }
        store(&t, pt.root(), 1, ARCH.table_entry(top, Flags::RW.into()));
        let v = t.violations();
        if barrier {
            assert!(v.is_empty(), "{v:?}");
            // Filling the lower table after the barrier, then linking it through a live table:
            // reported.
            let (t2, b2) = (alloc(&t), alloc(&t));
            zero(&t, t2);
            zero(&t, b2);
            t.order_table_writes();
            store(&t, t2, 3, ARCH.table_entry(b2, Flags::RW.into()));
            store(&t, pt.root(), 2, ARCH.table_entry(t2, Flags::RW.into()));
            assert_eq!(
                t.violations(),
                [Violation::LinkBeforeInit {
                    event: t.events().len() - 1,
                    table: t2,
                    unordered: t2
                }]
            );
        } else {
            assert_eq!(kinds(&v), ["LinkBeforeInit", "LinkBeforeInit"], "{v:?}");
            assert!(
                matches!(v[1], Violation::LinkBeforeInit { table, unordered, .. }
                if table == top && unordered == below)
            );
        }
    }
}

/// A frame allocated and linked without ever being zeroed is reported.
#[test]
fn link_unzeroed() {
    let mem = EmuMemory::new(8);
    let t = Tracer::new(ARCH, &mem, None);
    let pt = t.new_table().unwrap();
    let f = alloc(&t);
    t.order_table_writes();
    store(&t, pt.root(), 0, ARCH.table_entry(f, Flags::RW.into()));
    assert_eq!(kinds(&t.violations()), ["LinkUnzeroed"]);
}

/// Valid → valid with another frame (needs break-before-make in this format) is reported; a
/// permission change is not.
#[test]
fn break_before_make() {
    let mem = EmuMemory::new(16);
    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    let p = PhyAddr::new(0x8000_0000);
    unsafe { pt.map(V, p, PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let leaf = table_at(&t, pt.root(), V, 0);
    let i = table_index(V, 0);
    store(&t, leaf, i, ARCH.leaf_entry(p, 0, Flags::RO.into()));
    assert!(t.violations().is_empty());
    store(
        &t,
        leaf,
        i,
        ARCH.leaf_entry(PhyAddr::new(0x9000_0000), 0, Flags::RO.into()),
    );
    assert_eq!(kinds(&t.violations()), ["BreakBeforeMake"]);
}

/// Break, (something), make with another frame: only an invalidation covering the address
/// between break and make (leaf or page flush of it, or a full flush) satisfies the rule; a
/// flush before the break or of another address does not. Remaking the same entry needs none.
#[test]
fn make_without_invalidate() {
    let other = VirtAddr::new(0x5000_0000);
    let cases: [(&str, bool); 7] = [
        ("nothing", false),
        ("leaf", true),
        ("page", true),
        ("all", true),
        ("leaf before break", false),
        ("other address", false),
        ("barrier only", false),
    ];
    for (case, ok) in cases {
        let mem = EmuMemory::new(16);
        let t = Tracer::new(ARCH, &mem, None);
        let mut pt = t.new_table().unwrap();
        let p = PhyAddr::new(0x8000_0000);
        unsafe { pt.map(V, p, PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
        let (leaf, i) = (table_at(&t, pt.root(), V, 0), table_index(V, 0));
        if case == "leaf before break" {
            t.flush_leaf(V);
        }
        store(&t, leaf, i, 0);
        match case {
            "leaf" => t.flush_leaf(V),
            "page" => t.flush_page(VirtAddr::new(V.as_u64() + 0x10)),
            "all" => t.flush_all(),
            "other address" => t.flush_leaf(other),
            "barrier only" => {
                t.order_table_writes();
                t.publish();
            }
            _ => {}
        }
        store(
            &t,
            leaf,
            i,
            ARCH.leaf_entry(PhyAddr::new(0x9000_0000), 0, Flags::RW.into()),
        );
        let v = kinds(&t.violations());
        if ok {
            assert!(v.is_empty(), "{case}: {v:?}");
        } else {
            assert_eq!(v, ["MakeWithoutInvalidate"], "{case}");
        }
    }
    // Remaking the very entry that was broken needs no invalidation.
    let mem = EmuMemory::new(16);
    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let (leaf, i) = (table_at(&t, pt.root(), V, 0), table_index(V, 0));
    let raw = mem
        .read_u64(PhyAddr::new(leaf.as_u64() + 8 * i as u64))
        .unwrap();
    store(&t, leaf, i, 0);
    store(&t, leaf, i, raw);
    assert!(t.violations().is_empty());
}

/// A leaf table unlinked and freed: a leaf-only invalidation or one of another range is not
/// enough; a page flush inside its range or a full flush is. Until then the TLB is owed a
/// walk-cache invalidation.
#[test]
fn free_before_flush_of_an_unlinked_table() {
    for (case, ok) in [
        ("leaf", false),
        ("page elsewhere", false),
        ("page inside", true),
        ("all", true),
    ] {
        let mem = EmuMemory::new(16);
        let t = Tracer::new(ARCH, &mem, None);
        let mut pt = t.new_table().unwrap();
        unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
        let (pd, leaf) = (table_at(&t, pt.root(), V, 1), table_at(&t, pt.root(), V, 0));
        store(&t, pd, table_index(V, 1), 0);
        assert!(t
            .pending()
            .iter()
            .any(|p| matches!(p, Pending::Invalidate { walks: true, .. })));
        match case {
            "leaf" => t.flush_leaf(V),
            "page elsewhere" => t.flush_page(VirtAddr::new(V.as_u64() + 0x20_0000)),
            "page inside" => t.flush_page(VirtAddr::new(V.as_u64() + 0x1f_f000)),
            _ => t.flush_all(),
        }
        free(&t, leaf);
        let v = kinds(&t.violations());
        if ok {
            assert!(v.is_empty(), "{case}: {v:?}");
            assert!(t.pending().is_empty(), "{case}: {:?}", t.pending());
        } else {
            assert_eq!(v, ["FreeBeforeFlush"], "{case}");
        }
    }
}

/// An unlinked table linked again elsewhere before walk caches were invalidated is reported.
#[test]
fn reuse_before_flush() {
    let mem = EmuMemory::new(16);
    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let (pd, leaf) = (table_at(&t, pt.root(), V, 1), table_at(&t, pt.root(), V, 0));
    let link = mem
        .read_u64(PhyAddr::new(pd.as_u64() + 8 * table_index(V, 1) as u64))
        .unwrap();
    store(&t, pd, table_index(V, 1), 0);
    store(&t, pd, table_index(V, 1) + 1, link);
    let v = t.violations();
    assert_eq!(kinds(&v), ["ReuseBeforeFlush"], "{v:?}");
    assert!(matches!(v[0], Violation::ReuseBeforeFlush { frame, .. } if frame == leaf));
}

/// A table freed while still linked from a live table is reported (at the end, if its parent
/// is not torn down as well; at once, if the frame is handed out again).
#[test]
fn free_while_linked() {
    let mem = EmuMemory::new(16);
    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let leaf = table_at(&t, pt.root(), V, 0);
    t.flush_all();
    free(&t, leaf);
    assert_eq!(kinds(&t.violations()), ["FreeWhileLinked"]);
    // The arena hands the same frame out next.
    assert_eq!(alloc(&t), leaf);
    assert_eq!(kinds(&t.violations()), ["FreeWhileLinked"]);
}

/// A teardown that frees linked tables without a full flush after the last table write is
/// reported once; `destroy` (which flushes everything first) is clean.
#[test]
fn teardown_without_full_flush() {
    let mem = EmuMemory::new(16);
    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let root = pt.root();
    let tables: Vec<PhyAddr> = (0..4).map(|l| table_at(&t, root, V, l)).collect();
    for &f in &tables {
        free(&t, f); // post-order: leaf table first, root last
    }
    assert_eq!(kinds(&t.violations()), ["FreeBeforeFlush"]);
    assert_eq!(t.root(), None, "the tree is gone");

    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    unsafe { pt.destroy() };
    t.assert_flushed();
}

/// Widening a parent while the restriction pushed into the child is unordered is reported; the
/// ordered sequence is not, and it owes a walk-cache invalidation inside the parent's range that
/// a leaf-only flush does not pay.
#[test]
fn widen_before_push_down() {
    let arch = common::RoTables;
    for barrier in [false, true] {
        let mem = EmuMemory::new(16);
        let t = Tracer::new(arch, &mem, None);
        let mut pt = t.new_table().unwrap();
        unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
            .unwrap()
            .flush();
        let (pdpt, pd) = (table_at(&t, pt.root(), V, 2), table_at(&t, pt.root(), V, 1));
        let (i2, i1) = (table_index(V, 2), table_index(V, 1));
        let at2 = PhyAddr::new(pdpt.as_u64() + 8 * i2 as u64);
        let parent = mem.read_u64(at2).unwrap();
        assert!(mem.write_u64(at2, parent | common::RO_TABLE));
        t.adopt(pt.root());
        let child = mem
            .read_u64(PhyAddr::new(pd.as_u64() + 8 * i1 as u64))
            .unwrap();
        store(&t, pd, i1, child | common::RO_TABLE);
        if barrier {
            t.order_table_writes();
        }
        store(&t, pdpt, i2, parent);
        let v = kinds(&t.violations());
        if barrier {
            assert!(v.is_empty(), "{v:?}");
            t.flush_leaf(V);
            assert!(
                matches!(t.pending()[..], [Pending::Invalidate { walks: true, .. }]),
                "{:?}",
                t.pending()
            );
            t.flush_page(VirtAddr::new(V.as_u64() + 0x3000_0000));
            t.assert_flushed();
        } else {
            assert_eq!(v, ["WidenBeforePushDown"]);
        }
    }
}

/// What the TLB is owed: an unmap until invalidated, a new mapping until published (an
/// ordering barrier alone does not publish).
#[test]
fn pending_until_flushed() {
    let mem = EmuMemory::new(16);
    let tlb = EmuTlb::new();
    let t = Tracer::new(ARCH, &mem, Some(&tlb));
    let mut pt = t.new_table().unwrap();
    let token =
        unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }.unwrap();
    assert!(matches!(t.pending()[..], [Pending::Publish { va, .. }] if va.as_u64() >> 39 == 0));
    t.order_table_writes();
    assert_eq!(t.pending().len(), 1, "a barrier is not a publish");
    token.flush();
    t.assert_flushed();
    let (_, token) = unsafe { pt.unmap(V, PageSize::Size4K) }.unwrap();
    assert!(matches!(
        t.pending()[..],
        [Pending::Invalidate { va, walks: false, .. }] if va == V
    ));
    token.flush();
    t.assert_flushed();
    // Forwarded to the model.
    assert_eq!(
        (tlb.order_barriers(), tlb.publishes(), tlb.leaf_flushes()),
        (2, 1, 1)
    );
    unsafe { pt.destroy() };
    t.assert_flushed();
    assert_eq!(tlb.full_flushes(), 1);
}

/// The failure report names the violation and lists the event log.
#[test]
#[should_panic(expected = "made 0x90000005 with no invalidation in between")]
fn assert_clean_panics_with_the_report() {
    let mem = EmuMemory::new(16);
    let t = Tracer::new(ARCH, &mem, None);
    let mut pt = t.new_table().unwrap();
    unsafe { pt.map(V, PhyAddr::new(0x8000_0000), PageSize::Size4K, Flags::RW) }
        .unwrap()
        .flush();
    let (leaf, i) = (table_at(&t, pt.root(), V, 0), table_index(V, 0));
    store(&t, leaf, i, 0);
    store(
        &t,
        leaf,
        i,
        ARCH.leaf_entry(PhyAddr::new(0x9000_0000), 0, Flags::RW.into()),
    );
    t.assert_clean();
}
