//! Ordering and TLB-maintenance checks of the range engine (part of the
//! [`ordering_checks`](super::ordering_checks) list): new subtrees, reclaim of emptied tables,
//! subtree drops and huge-page splits, each under the [`Tracer`] and the walking TLB model.

use std::format;
use std::string::String;

use super::ordering_checks::OrderingSpec;
use crate::arch::Arch;
use crate::emu::{CpuAccess, EmuMemory, EmuTlb, TracedTable, Tracer};
use crate::{Flags, PageSize, PhyAddr, RangeOptions, VirtAddr};

const MIB2: u64 = 0x20_0000;

fn va(spec: &OrderingSpec, off: u64) -> VirtAddr {
    VirtAddr::new(spec.va_window.as_u64() + off)
}

fn pa(spec: &OrderingSpec, off: u64) -> PhyAddr {
    PhyAddr::new(spec.pa_window.as_u64() + off)
}

fn clean<A: Arch>(t: &Tracer<'_, A>, what: &str) -> Result<(), String> {
    let v = t.violations();
    let p = t.pending();
    if v.is_empty() && p.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: violations {v:?}; still owed {p:?}"))
    }
}

/// What the CPU reaches at `v` through the model (with the attributes it cached).
fn cpu<A: Arch>(
    tlb: &EmuTlb,
    mem: &EmuMemory,
    pt: &TracedTable<'_, '_, A>,
    v: VirtAddr,
) -> Option<(PhyAddr, bool)> {
    match tlb.access_walk(mem, pt.arch(), pt.root(), v) {
        CpuAccess::Mapped(p) => Some((p, tlb.cached_attrs(v)?.flags.write)),
        CpuAccess::Fault => None,
    }
}

fn map_range<A: Arch>(
    pt: &mut TracedTable<'_, '_, A>,
    v: VirtAddr,
    p: PhyAddr,
    len: u64,
    max_page: PageSize,
) -> Result<(), String> {
    let mut g = pt.gather();
    // SAFETY: emulated tables.
    let r = unsafe { pt.map_range(v, p, len, Flags::RW, RangeOptions { max_page }, &mut g) };
    pt.finish(g).map_err(|_| String::from("gather refused"))?;
    r.map_err(|e| format!("map_range: {e}"))
}

/// A range map builds its subtree off to the side and publishes it; unmapping it all detaches
/// every emptied table and frees them only after the invalidation; mapping again reuses those
/// frames and the CPU (walk caches included) sees only the new tables.
pub fn range_reclaim_frees_only_after_the_flush<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = (EmuMemory::new(spec.frames), EmuTlb::new());
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = t.new_table().map_err(|e| format!("new table: {e}"))?;
    let before = mem.frames_in_use();
    map_range(
        &mut pt,
        va(spec, MIB2 - 0x2000),
        pa(spec, 0),
        2 * MIB2,
        PageSize::Size4K,
    )?;
    clean(&t, "map_range")?;
    let probes = [0x1000u64, 0x2000, MIB2 + 0x5000, 2 * MIB2 - 0x3000];
    for off in probes {
        let v = va(spec, MIB2 - 0x2000 + off);
        if cpu(&tlb, &mem, &pt, v).map(|c| c.0) != Some(pa(spec, off)) {
            return Err(format!("CPU at {v:?} after map_range"));
        }
    }
    let mut g = pt.gather();
    // SAFETY: emulated tables.
    let r = unsafe { pt.unmap_range(va(spec, 0), 4 * MIB2, &mut g, |_| {}) };
    pt.finish(g).map_err(|_| String::from("gather refused"))?;
    r.map_err(|e| format!("unmap_range: {e}"))?;
    clean(&t, "unmap_range with reclaim")?;
    if mem.frames_in_use() != before {
        return Err(format!(
            "{} frames left after reclaim",
            mem.frames_in_use() - before
        ));
    }
    for off in probes {
        let v = va(spec, MIB2 - 0x2000 + off);
        if let Some(seen) = cpu(&tlb, &mem, &pt, v) {
            return Err(format!(
                "CPU still reaches {seen:?} at {v:?} after unmap_range"
            ));
        }
    }
    // The freed frames become tables again, for other addresses: no stale walk may use them.
    map_range(
        &mut pt,
        va(spec, 1 << 30),
        pa(spec, 0x40_0000),
        MIB2,
        PageSize::Size4K,
    )?;
    clean(&t, "map_range after reclaim")?;
    for off in probes {
        let v = va(spec, MIB2 - 0x2000 + off);
        if let Some(seen) = cpu(&tlb, &mem, &pt, v) {
            return Err(format!("stale walk reaches {seen:?} at {v:?}"));
        }
    }
    // A small unmap (below the full-flush threshold) that empties tables: the invalidation
    // must reach walk caches (a leaf-only one would leave the freed tables reachable).
    let lone = va(spec, (1 << 30) + 0x1000_0000); // inside the window; its own leaf table
    map_range(&mut pt, lone, pa(spec, 0), 0x1000, PageSize::Size4K)?;
    if cpu(&tlb, &mem, &pt, lone).is_none() {
        return Err(String::from("CPU at the lone page"));
    }
    let fulls = tlb.full_flushes();
    let mut g = pt.gather();
    // SAFETY: emulated tables.
    let r = unsafe { pt.unmap_range(lone, 0x1000, &mut g, |_| {}) };
    if g.flushes_all() {
        return Err(String::from("one page must not need a full flush"));
    }
    pt.finish(g).map_err(|_| String::from("gather refused"))?;
    r.map_err(|e| format!("unmap_range: {e}"))?;
    clean(&t, "unmap_range of a lone page")?;
    if tlb.full_flushes() != fulls {
        return Err(String::from("a lone page was flushed with a full flush"));
    }
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    clean(&t, "destroy")
}

/// `drop_range` detaches whole subtrees in one store each and frees them after a full flush.
pub fn range_drop_frees_subtrees_after_a_full_flush<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = (EmuMemory::new(spec.frames), EmuTlb::new());
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = t.new_table().map_err(|e| format!("new table: {e}"))?;
    let before = mem.frames_in_use();
    map_range(
        &mut pt,
        va(spec, 0),
        pa(spec, 0),
        3 * MIB2,
        PageSize::Size4K,
    )?;
    let v = va(spec, MIB2 + 0x7000);
    if cpu(&tlb, &mem, &pt, v).is_none() {
        return Err(String::from("CPU before drop"));
    }
    let fulls = tlb.full_flushes();
    let mut g = pt.gather();
    // SAFETY: emulated tables.
    let r = unsafe { pt.drop_range(va(spec, 0), 1 << 30, &mut g) };
    pt.finish(g).map_err(|_| String::from("gather refused"))?;
    r.map_err(|e| format!("drop_range: {e}"))?;
    clean(&t, "drop_range")?;
    if tlb.full_flushes() <= fulls {
        return Err(String::from("a subtree drop must end in a full flush"));
    }
    if mem.frames_in_use() != before || cpu(&tlb, &mem, &pt, v).is_some() {
        return Err(String::from(
            "tables left or translation survives after drop_range",
        ));
    }
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    clean(&t, "destroy")
}

/// Protecting and unmapping single 4 KiB pages inside 2 MiB pages splits them: with
/// break-before-make where the format needs it, else one store and an invalidation of the old
/// block; after the flush the CPU sees the new state everywhere (the model had the 2 MiB
/// translations cached).
pub fn range_split_invalidates_the_old_block<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = (EmuMemory::new(spec.frames), EmuTlb::new());
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = t.new_table().map_err(|e| format!("new table: {e}"))?;
    map_range(
        &mut pt,
        va(spec, 0),
        pa(spec, 0),
        2 * MIB2,
        PageSize::Size2M,
    )?;
    clean(&t, "map 2 MiB pages")?;
    let (ro, gone, kept) = (0x3000u64, MIB2 + 0x5000, MIB2 + 0x6000);
    for off in [ro, gone, kept] {
        if cpu(&tlb, &mem, &pt, va(spec, off)) != Some((pa(spec, off), true)) {
            return Err(format!("CPU at +{off:#x} before the splits"));
        }
    }
    let mut g = pt.gather();
    // SAFETY: emulated tables.
    let p = unsafe { pt.protect_range(va(spec, ro), 0x1000, Flags::RO, &mut g) };
    // SAFETY: emulated tables.
    let u = unsafe { pt.unmap_range(va(spec, gone), 0x1000, &mut g, |_| {}) };
    pt.finish(g).map_err(|_| String::from("gather refused"))?;
    p.map_err(|e| format!("protect_range: {e}"))?;
    u.map_err(|e| format!("unmap_range: {e}"))?;
    clean(&t, "splits")?;
    let expect = [
        (ro, Some((pa(spec, ro), false))),
        (ro + 0x1000, Some((pa(spec, ro + 0x1000), true))),
        (gone, None),
        (kept, Some((pa(spec, kept), true))),
    ];
    for (off, want) in expect {
        let seen = cpu(&tlb, &mem, &pt, va(spec, off));
        if seen != want {
            return Err(format!(
                "CPU at +{off:#x} after the splits: {seen:?}, expected {want:?}"
            ));
        }
    }
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    clean(&t, "destroy")
}
