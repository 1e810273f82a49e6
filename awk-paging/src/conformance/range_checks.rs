//! Range-engine checks: page-size choice, splits at both ends, the 1 GiB → 4 KiB double split,
//! out-of-memory at every allocation of a range operation, table reclaim, and reuse of a
//! reclaimed span by a larger page.

use super::failure::{ensure, ensure_eq};
use super::{Failure, Harness, TableOf};
use crate::arch::Arch;
use crate::{
    Flags, Gather, MapError, PageSize, PhyAddr, ProtectError, RangeOptions, TranslateError,
    UnmapError, VirtAddr,
};

const MIB2: u64 = 0x20_0000;
const GIB: u64 = 1 << 30;

fn va<H: Harness>(h: &H, offset: u64) -> VirtAddr {
    VirtAddr::new(h.va_window().as_u64() + offset)
}

fn pa<H: Harness>(h: &H, offset: u64) -> PhyAddr {
    PhyAddr::new(h.pa_window().as_u64() + offset)
}

fn done<H: Harness>(pt: &mut TableOf<H>, g: Gather) -> Result<(), Failure> {
    pt.finish(g)
        .map_err(|_| Failure::new(format_args!("gather refused by its own table")))
}

/// Destroys `pt` and checks that every table frame went back.
fn teardown<H: Harness>(h: &mut H, pt: TableOf<H>) -> Result<(), Failure> {
    // SAFETY: harness tables are never activated.
    let frames = unsafe { pt.destroy() };
    let leaked = frames.outstanding();
    h.give_back(frames.into_inner());
    ensure!(leaked == 0, "destroy leaked {leaked} table frame(s)");
    Ok(())
}

fn map_range<H: Harness>(
    pt: &mut TableOf<H>,
    v: VirtAddr,
    p: PhyAddr,
    len: u64,
    flags: Flags,
    max_page: PageSize,
) -> Result<(), Failure> {
    let mut g = pt.gather();
    // SAFETY: harness tables are never activated.
    let r = unsafe { pt.map_range(v, p, len, flags, RangeOptions { max_page }, &mut g) };
    done::<H>(pt, g)?;
    r.map_err(|e| Failure::new(format_args!("map_range {v:?}+{len:#x}: {e}")))
}

/// The size and frame of the page translating `v`.
fn page_of<H: Harness>(
    pt: &TableOf<H>,
    v: VirtAddr,
) -> Result<(PageSize, PhyAddr), TranslateError> {
    pt.translate(v).map(|t| (t.size, t.pa))
}

/// A fingerprint of every mapping (no allocator on bare metal).
fn fingerprint<H: Harness>(pt: &TableOf<H>) -> (u64, usize) {
    let (mut h, mut n) = (0xcbf2_9ce4_8422_2325u64, 0);
    pt.for_each_mapping(|m| {
        for w in [
            m.page.as_u64(),
            m.frame.as_u64(),
            m.size.bytes(),
            m.attrs.flags.write as u64,
        ] {
            h = (h ^ w).wrapping_mul(0x0100_0000_01b3);
        }
        n += 1;
    });
    (h, n)
}

/// A range is mapped with the largest pages VA, PA and length allow: 4 KiB up to the first
/// 2 MiB boundary, 2 MiB pages up to the 1 GiB boundary, then a 1 GiB page where supported
/// (2 MiB pages elsewhere); a cap of 4 KiB maps everything with 4 KiB pages, to the last page.
pub fn range_map_uses_the_largest_pages<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let has_1g = pt.arch().page_sizes().contains(PageSize::Size1G);
    let start = GIB - 2 * MIB2 - 0x3000;
    let len = 2 * GIB - start;
    map_range::<H>(
        &mut pt,
        va(h, start),
        pa(h, start),
        len,
        Flags::RW,
        PageSize::Size1G,
    )?;
    let big = if has_1g {
        PageSize::Size1G
    } else {
        PageSize::Size2M
    };
    let probes = [
        (start, PageSize::Size4K),
        (GIB - 2 * MIB2 - 0x1000, PageSize::Size4K),
        (GIB - 2 * MIB2, PageSize::Size2M),
        (GIB - 1, PageSize::Size2M),
        (GIB, big),
        (2 * GIB - 1, big),
    ];
    for (off, size) in probes {
        ensure_eq!(
            page_of::<H>(&pt, va(h, off)),
            Ok((size, pa(h, off))),
            "page at +{off:#x}"
        );
    }
    ensure_eq!(
        page_of::<H>(&pt, va(h, start - 0x1000)),
        Err(TranslateError::NotMapped),
        "before the start"
    );
    // Anything inside is taken now.
    let mut g = pt.gather();
    // SAFETY: never activated.
    let again = unsafe {
        pt.map_range(
            va(h, GIB + MIB2),
            pa(h, 0),
            0x1000,
            Flags::RO,
            RangeOptions::default(),
            &mut g,
        )
    };
    done::<H>(&mut pt, g)?;
    ensure_eq!(
        again.map_err(|e| e.error),
        Err(MapError::AlreadyMapped),
        "overlap"
    );
    // Capped at 4 KiB.
    let mut small = h.fresh()?;
    map_range::<H>(
        &mut small,
        va(h, 0),
        pa(h, 0),
        2 * MIB2 + 0x1000,
        Flags::RO,
        PageSize::Size4K,
    )?;
    for off in [MIB2, 2 * MIB2] {
        ensure_eq!(
            page_of::<H>(&small, va(h, off)),
            Ok((PageSize::Size4K, pa(h, off))),
            "capped at +{off:#x}"
        );
    }
    ensure_eq!(
        page_of::<H>(&small, va(h, 2 * MIB2 + 0x1000)),
        Err(TranslateError::NotMapped),
        "past the end"
    );
    teardown(h, small)?;
    teardown(h, pt)
}

/// Unmapping a range that starts inside one 2 MiB page and ends inside another splits both:
/// everything in the range is gone, every neighbour keeps its frame and attributes.
pub fn range_unmap_splits_huge_pages_at_both_ends<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    map_range::<H>(
        &mut pt,
        va(h, 0),
        pa(h, 0),
        2 * MIB2,
        Flags::RW,
        PageSize::Size2M,
    )?;
    ensure_eq!(
        page_of::<H>(&pt, va(h, 0)).map(|t| t.0),
        Ok(PageSize::Size2M),
        "setup"
    );
    let (s, e) = (MIB2 - 0x3000, MIB2 + 0x5000);
    let mut g = pt.gather();
    let mut removed = 0u64;
    // SAFETY: never activated.
    let r = unsafe {
        pt.unmap_range(va(h, s), e - s, &mut g, |u| {
            removed += u.unmapped.size.bytes();
        })
    };
    done::<H>(&mut pt, g)?;
    ensure!(r.is_ok(), "unmap_range failed: {:?}", r.err());
    ensure_eq!(removed, e - s, "bytes reported unmapped");
    for off in [s, MIB2 - 0x1000, MIB2, e - 0x1000] {
        ensure_eq!(
            page_of::<H>(&pt, va(h, off)),
            Err(TranslateError::NotMapped),
            "inside at +{off:#x}"
        );
    }
    for off in [0, s - 0x1000, e, 2 * MIB2 - 0x1000] {
        let t = pt.translate(va(h, off));
        ensure_eq!(
            t.map(|t| (t.size, t.pa, t.attrs.flags)),
            Ok((PageSize::Size4K, pa(h, off), Flags::RW)),
            "neighbour at +{off:#x}"
        );
    }
    teardown(h, pt)
}

/// Protecting one 4 KiB page of a 1 GiB page splits it twice (1 GiB → 2 MiB → 4 KiB): the
/// page changes, its 4 KiB neighbours and the other 2 MiB parts keep their attributes.
pub fn range_protect_double_splits_a_gigabyte_page<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    if !pt.arch().page_sizes().contains(PageSize::Size1G) {
        return teardown(h, pt); // nothing to split on this CPU
    }
    map_range::<H>(
        &mut pt,
        va(h, GIB),
        pa(h, 0),
        GIB,
        Flags::RW,
        PageSize::Size1G,
    )?;
    let target = GIB + 3 * MIB2 + 0x7000;
    let before = pt.frames().outstanding();
    let mut g = pt.gather();
    // SAFETY: never activated.
    let r = unsafe { pt.protect_range(va(h, target), 0x1000, Flags::RO, &mut g) };
    done::<H>(&mut pt, g)?;
    ensure!(r.is_ok(), "protect_range failed: {:?}", r.err());
    ensure_eq!(
        pt.frames().outstanding(),
        before + 2,
        "tables for the double split"
    );
    let t = |off: u64| {
        pt.translate(va(h, off))
            .map(|t| (t.size, t.pa, t.attrs.flags))
    };
    ensure_eq!(
        t(target),
        Ok((PageSize::Size4K, pa(h, target - GIB), Flags::RO)),
        "target"
    );
    ensure_eq!(
        t(target + 0x1000),
        Ok((PageSize::Size4K, pa(h, target - GIB + 0x1000), Flags::RW)),
        "4 KiB neighbour"
    );
    ensure_eq!(
        t(GIB),
        Ok((PageSize::Size2M, pa(h, 0), Flags::RW)),
        "2 MiB part"
    );
    ensure_eq!(
        t(2 * GIB - 0x1000),
        Ok((PageSize::Size2M, pa(h, GIB - 0x1000), Flags::RW)),
        "last 2 MiB part"
    );
    teardown(h, pt)
}

/// A range operation interrupted by out-of-memory at any allocation (new tables for a map,
/// split tables for an unmap or protect) changes nothing and leaks nothing.
pub fn range_out_of_memory_at_every_allocation_rolls_back<H: Harness>(
    h: &mut H,
) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    map_range::<H>(
        &mut pt,
        va(h, GIB),
        pa(h, 0),
        4 * MIB2,
        Flags::RW,
        PageSize::Size2M,
    )?;
    for op in 0..3 {
        let mut k = 0;
        loop {
            ensure!(k <= 8, "op {op} still failing after {k} allocations");
            let (print, before) = (fingerprint::<H>(&pt), pt.frames().outstanding());
            pt.frames_mut().fail_after(Some(k));
            let mut g = pt.gather();
            // SAFETY: never activated.
            let oom = unsafe {
                match op {
                    // 3 × 2 MiB of 4 KiB pages from the window start: several new tables.
                    0 => pt
                        .map_range(
                            va(h, 0),
                            pa(h, 0),
                            3 * MIB2,
                            Flags::RO,
                            RangeOptions {
                                max_page: PageSize::Size4K,
                            },
                            &mut g,
                        )
                        .map_err(|e| e.error == MapError::OutOfMemory),
                    // Straddles the first two 2 MiB pages: two splits.
                    1 => pt
                        .unmap_range(va(h, GIB + MIB2 - 0x1000), 0x2000, &mut g, |_| {})
                        .map_err(|e| e.error == UnmapError::OutOfMemory),
                    // Straddles the last two: two splits.
                    _ => pt
                        .protect_range(va(h, GIB + 3 * MIB2 - 0x1000), 0x2000, Flags::RO, &mut g)
                        .map_err(|e| e.error == ProtectError::OutOfMemory),
                }
            };
            pt.frames_mut().fail_after(None);
            done::<H>(&mut pt, g)?;
            match oom {
                Err(true) => {
                    ensure_eq!(
                        fingerprint::<H>(&pt),
                        print,
                        "op {op}: mappings after OOM at {k}"
                    );
                    ensure_eq!(
                        pt.frames().outstanding(),
                        before,
                        "op {op}: frames after OOM at {k}"
                    );
                    k += 1;
                }
                Err(false) => return Err(Failure::new(format_args!("op {op}: other error"))),
                Ok(()) => {
                    ensure!(op == 0 || k == 2, "op {op} needed {k} frames, expected 2");
                    break;
                }
            }
        }
    }
    teardown(h, pt)
}

/// Unmapping everything returns every table but the root; `drop_range` does the same without
/// visiting leaves.
pub fn range_unmap_reclaims_emptied_tables<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let root_only = pt.frames().outstanding();
    for drop in [false, true] {
        map_range::<H>(
            &mut pt,
            va(h, MIB2 - 0x1000),
            pa(h, 0),
            4 * MIB2,
            Flags::RW,
            PageSize::Size4K,
        )?;
        ensure!(
            pt.frames().outstanding() >= root_only + 5,
            "tables were built"
        );
        let mut g = pt.gather();
        // SAFETY: never activated.
        let r = unsafe {
            if drop {
                pt.drop_range(va(h, 0), GIB, &mut g)
            } else {
                pt.unmap_range(va(h, 0), GIB, &mut g, |_| {})
            }
        };
        done::<H>(&mut pt, g)?;
        ensure!(r.is_ok(), "unmap failed: {:?}", r.err());
        ensure_eq!(fingerprint::<H>(&pt).1, 0, "mappings left (drop: {drop})");
        ensure_eq!(
            pt.frames().outstanding(),
            root_only,
            "tables left (drop: {drop})"
        );
    }
    teardown(h, pt)
}

/// `map(4 KiB); unmap; map(2 MiB)` at the same place: the 4 KiB page's tables are reclaimed,
/// so the 2 MiB page fits, and the table count is back to where it was.
pub fn range_reclaimed_span_takes_a_huge_page<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let before = pt.frames().outstanding();
    let v = va(h, 4 * MIB2);
    map_range::<H>(&mut pt, v, pa(h, 0), 0x1000, Flags::RW, PageSize::Size4K)?;
    let mut g = pt.gather();
    // SAFETY: never activated.
    let r = unsafe { pt.unmap_range(v, 0x1000, &mut g, |_| {}) };
    done::<H>(&mut pt, g)?;
    ensure!(r.is_ok(), "unmap failed: {:?}", r.err());
    ensure_eq!(pt.frames().outstanding(), before, "tables after unmap");
    // SAFETY: never activated.
    let huge = unsafe { pt.map(v, pa(h, 0), PageSize::Size2M, Flags::RW) }.map(|f| f.flush());
    ensure_eq!(huge, Ok(()), "2 MiB map after reclaim");
    ensure_eq!(
        page_of::<H>(&pt, v).map(|t| t.0),
        Ok(PageSize::Size2M),
        "2 MiB page"
    );
    teardown(h, pt)
}

/// An allocating map takes its data frames (zeroed) and tables from the allocator, all or
/// nothing under out-of-memory at any allocation; unmapping it gives every frame back.
pub fn range_alloc_takes_and_returns_every_frame<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let base = pt.frames().outstanding();
    let (v, len) = (va(h, MIB2 - 0x2000), 0x4000); // straddles a 2 MiB boundary: 2 leaf tables
    let mut k = 0;
    loop {
        ensure!(
            k <= 12,
            "map_range_alloc still failing after {k} allocations"
        );
        pt.frames_mut().fail_after(Some(k));
        let mut g = pt.gather();
        // SAFETY: never activated.
        let r = unsafe { pt.map_range_alloc(v, len, Flags::RW, true, &mut g) };
        pt.frames_mut().fail_after(None);
        done::<H>(&mut pt, g)?;
        match r {
            Err(e) if e.error == MapError::OutOfMemory => {
                ensure_eq!(pt.frames().outstanding(), base, "frames after OOM at {k}");
                ensure_eq!(fingerprint::<H>(&pt).1, 0, "mappings after OOM at {k}");
                k += 1;
            }
            Err(e) => return Err(Failure::new(format_args!("map_range_alloc: {e}"))),
            Ok(()) => break,
        }
    }
    let levels = usize::from(pt.arch().levels());
    // Data frames: 4; tables: one per level below the root, plus a second leaf table.
    ensure_eq!(pt.frames().outstanding(), base + 4 + levels, "frames taken");
    let mut frames = [PhyAddr::ZERO; 4];
    for (i, f) in frames.iter_mut().enumerate() {
        let t = pt.translate(VirtAddr::new(v.as_u64() + i as u64 * 0x1000));
        *f = t
            .map(|t| t.frame)
            .map_err(|e| Failure::new(format_args!("page {i}: {e}")))?;
    }
    ensure!(
        frames
            .iter()
            .enumerate()
            .all(|(i, f)| !frames[..i].contains(f)),
        "distinct data frames"
    );
    let mut g = pt.gather();
    // SAFETY: never activated; the frames came from this allocator.
    let r = unsafe { pt.unmap_range_free(v, len, &mut g) };
    done::<H>(&mut pt, g)?;
    ensure!(r.is_ok(), "unmap_range_free: {:?}", r.err());
    ensure_eq!(
        pt.frames().outstanding(),
        base,
        "frames after unmap_range_free"
    );
    teardown(h, pt)
}

/// `unmap_range` reports every page it removes with the frame and attributes it was mapped
/// with, in address order — also where the attributes change from page to page inside one
/// table it detaches whole (the report is decoded once per run of equal attributes).
pub fn range_unmap_reports_each_page_as_mapped<H: Harness>(h: &mut H) -> Result<(), Failure> {
    const PAGES: u64 = 512 + 8;
    // Runs of 1, 2 and 3 pages of changing attributes; every page has its own frame.
    let flags_of = |i: u64| match (i / 3 + i / 7) % 4 {
        0 => Flags::RW,
        1 => Flags::RO,
        2 => Flags::RX,
        _ => Flags::DEVICE,
    };
    let mut pt = h.fresh()?;
    // A whole 2 MiB of 4 KiB pages (its table is detached whole), then 8 pages of the next.
    let base = va(h, MIB2);
    for i in 0..PAGES {
        let v = VirtAddr::new(base.as_u64() + i * 0x1000);
        let p = pa(h, (PAGES - i) * 0x1000);
        // SAFETY: harness tables are never activated.
        let r = unsafe { pt.map(v, p, PageSize::Size4K, flags_of(i)) };
        r.map_err(|e| Failure::new(format_args!("map {v:?}: {e}")))?
            .flush();
    }
    let (mut seen, mut wrong) = (0u64, None);
    let mut g = pt.gather();
    // SAFETY: as above.
    let r = unsafe {
        pt.unmap_range(base, PAGES * 0x1000, &mut g, |u| {
            let i = seen;
            seen += 1;
            let want = (
                VirtAddr::new(base.as_u64() + i * 0x1000),
                pa(h, (PAGES - i) * 0x1000),
                PageSize::Size4K,
                flags_of(i),
            );
            let got = (
                u.page,
                u.unmapped.frame,
                u.unmapped.size,
                u.unmapped.attrs.flags,
            );
            if got != want && wrong.is_none() {
                wrong = Some((i, got, want));
            }
        })
    };
    done::<H>(&mut pt, g)?;
    r.map_err(|e| Failure::new(format_args!("unmap_range: {e}")))?;
    if let Some((i, got, want)) = wrong {
        return Err(Failure::new(format_args!(
            "report {i}: got {got:?}, mapped {want:?}"
        )));
    }
    ensure_eq!(seen, PAGES, "pages reported");
    teardown(h, pt)
}
