//! TLB checks: what the CPU observes, for harnesses with a TLB model.

use super::failure::{ensure, ensure_eq};
use super::{Failure, Harness, Observed, TableOf};
use crate::{Flags, PageSize, PhyAddr, VirtAddr};

fn observe<H: Harness>(h: &mut H, pt: &TableOf<H>, va: VirtAddr) -> Result<Observed, Failure> {
    h.observe(pt, va)
        .ok_or_else(|| Failure::new(format_args!("harness cannot observe")))
}

fn setup<H: Harness>(h: &mut H) -> Result<(TableOf<H>, VirtAddr, PhyAddr, PhyAddr), Failure> {
    let mut pt = h.fresh()?;
    let va = h.va_window();
    let (f1, f2) = (h.pa_window(), PhyAddr::new(h.pa_window().as_u64() + 0x1000));
    // SAFETY: never activated.
    let r = unsafe { pt.map(va, f1, PageSize::Size4K, Flags::RW) }.map(|f| f.flush());
    ensure!(r.is_ok(), "map: {r:?}");
    ensure_eq!(
        observe(h, &pt, va)?,
        Observed::Mapped(f1, true),
        "first access"
    );
    Ok((pt, va, f1, f2))
}

fn finish<H: Harness>(h: &mut H, pt: TableOf<H>) -> Result<(), Failure> {
    // SAFETY: never activated.
    let frames = unsafe { pt.destroy() };
    h.give_back(frames.into_inner());
    Ok(())
}

/// Remapping without flushing the unmap leaves the CPU on the old frame (the model really
/// caches; a missing flush is visible).
pub fn stale_translation_without_flush<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let (mut pt, va, f1, f2) = setup(h)?;
    // SAFETY (both): never activated.
    let r = unsafe { pt.unmap(va, PageSize::Size4K) };
    ensure!(r.is_ok(), "unmap: {:?}", r.as_ref().err());
    if let Ok((_, token)) = r {
        token.ignore();
    }
    let r = unsafe { pt.map(va, f2, PageSize::Size4K, Flags::RW) }.map(|f| f.flush());
    ensure!(r.is_ok(), "remap: {r:?}");
    ensure_eq!(pt.translate(va).map(|t| t.frame), Ok(f2), "tables");
    ensure_eq!(
        observe(h, &pt, va)?,
        Observed::Mapped(f1, true),
        "CPU without flush"
    );
    finish(h, pt)
}

/// Flushing the unmap's token makes the CPU see the new frame, and an unmapped page fault.
pub fn fresh_translation_after_flush<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let (mut pt, va, _f1, f2) = setup(h)?;
    // SAFETY (all): never activated.
    let r = unsafe { pt.unmap(va, PageSize::Size4K) };
    ensure!(r.is_ok(), "unmap: {:?}", r.as_ref().err());
    if let Ok((_, token)) = r {
        ensure_eq!(token.va(), Some(va), "token address");
        token.flush();
    }
    ensure_eq!(
        observe(h, &pt, va)?,
        Observed::Fault,
        "CPU after unmap+flush"
    );
    let r = unsafe { pt.map(va, f2, PageSize::Size4K, Flags::RW) }.map(|f| f.flush());
    ensure!(r.is_ok(), "remap: {r:?}");
    ensure_eq!(
        observe(h, &pt, va)?,
        Observed::Mapped(f2, true),
        "CPU after remap"
    );
    finish(h, pt)
}

/// Write-protecting a page is only seen by the CPU once the update's token is flushed.
pub fn stale_permissions_until_update_is_flushed<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let (mut pt, va, f1, _f2) = setup(h)?;
    // SAFETY: never activated.
    let token = match unsafe { pt.update_flags(va, PageSize::Size4K, Flags::RO) } {
        Ok(t) => t,
        Err(e) => return Err(Failure::new(format_args!("update: {e}"))),
    };
    ensure_eq!(
        observe(h, &pt, va)?,
        Observed::Mapped(f1, true),
        "CPU before flush (stale writable)"
    );
    token.flush();
    ensure_eq!(
        observe(h, &pt, va)?,
        Observed::Mapped(f1, false),
        "CPU after flush"
    );
    finish(h, pt)
}

/// Range operations past the per-page threshold: after `finish`, the CPU sees every page's
/// change — a protect whose loops stop recording pages once the gather flushes everything
/// (also when the gather already flushes everything before it starts), and an unmap that
/// detaches a whole table — whether the hook flushes everything or narrows the flush to the
/// range of changes (`Tlb::flush_range`).
pub fn range_changes_seen_after_finish<H: Harness>(h: &mut H) -> Result<(), Failure> {
    const PAGES: u64 = 512 + 64;
    let mut pt = h.fresh()?;
    // The last 64 pages of one leaf table, then a whole one (detached whole at the end of
    // the range: the range of changes must reach past its first page).
    let va = VirtAddr::new(h.va_window().as_u64() + (1 << 21) - 64 * 0x1000);
    let pa = h.pa_window();
    let small = crate::RangeOptions {
        max_page: PageSize::Size4K,
    };
    let page = |i: u64| VirtAddr::new(va.as_u64() + i * 0x1000);
    let frame = |i: u64| PhyAddr::new(pa.as_u64() + i * 0x1000);
    let done = |pt: &mut TableOf<H>, g| {
        pt.finish(g)
            .map_err(|_| Failure::new(format_args!("gather refused")))
    };
    let mut g = pt.gather();
    // SAFETY (all): never activated.
    let r = unsafe { pt.map_range(va, pa, PAGES * 0x1000, Flags::RW, small, &mut g) };
    done(&mut pt, g)?;
    ensure!(r.is_ok(), "map_range: {r:?}");
    for i in 0..PAGES {
        ensure_eq!(
            observe(h, &pt, page(i))?,
            Observed::Mapped(frame(i), true),
            "page {i}"
        );
    }
    // A protect past the threshold, then one of a gather already flushing everything.
    let mut g = pt.gather();
    let half = PAGES / 2 * 0x1000;
    let r = unsafe { pt.protect_range(va, half, Flags::RO, &mut g) };
    ensure!(r.is_ok(), "protect_range: {r:?}");
    let r = unsafe { pt.protect_range(page(PAGES / 2), half, Flags::RO, &mut g) };
    ensure!(r.is_ok(), "protect_range: {r:?}");
    done(&mut pt, g)?;
    for i in 0..PAGES {
        ensure_eq!(
            observe(h, &pt, page(i))?,
            Observed::Mapped(frame(i), false),
            "page {i} after protect_range"
        );
    }
    // An unmap that detaches the whole leaf table.
    let mut g = pt.gather();
    let r = unsafe { pt.drop_range(va, PAGES * 0x1000, &mut g) };
    ensure!(r.is_ok(), "drop_range: {r:?}");
    done(&mut pt, g)?;
    for i in 0..PAGES {
        ensure_eq!(
            observe(h, &pt, page(i))?,
            Observed::Fault,
            "page {i} after drop_range"
        );
    }
    finish(h, pt)
}
