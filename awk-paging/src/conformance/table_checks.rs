//! Table-logic checks: everything observable through the instance API.

use super::failure::{ensure, ensure_eq};
use super::{Failure, Harness, TableOf};
use crate::arch::Arch;
use crate::{
    Attrs, Flags, FlagsError, MapError, PageSize, PhyAddr, Policy, ProtectError, TranslateError,
    UnmapError, VirtAddr,
};

const GIB: u64 = 1 << 30;

fn va<H: Harness>(h: &H, offset: u64) -> VirtAddr {
    VirtAddr::new(h.va_window().as_u64() + offset)
}

fn pa<H: Harness>(h: &H, offset: u64) -> PhyAddr {
    PhyAddr::new(h.pa_window().as_u64() + offset)
}

/// Destroys `pt`, checks that every table frame went back, returns the allocator.
fn finish<H: Harness>(h: &mut H, pt: TableOf<H>) -> Result<(), Failure> {
    // SAFETY: harness tables are never activated.
    let frames = unsafe { pt.destroy() };
    let leaked = frames.outstanding();
    h.give_back(frames.into_inner());
    ensure!(leaked == 0, "destroy leaked {leaked} table frame(s)");
    Ok(())
}

fn map4k<H: Harness>(
    pt: &mut TableOf<H>,
    v: VirtAddr,
    p: PhyAddr,
    attrs: impl Into<Attrs>,
) -> Result<(), MapError> {
    // SAFETY: harness tables are never activated.
    unsafe { pt.map(v, p, PageSize::Size4K, attrs) }.map(|f| f.flush())
}

/// The outcome the shared validation rules prescribe for `flags` under the default policy,
/// spelled out case by case.
fn expected_for(flags: Flags, allow_wx: bool) -> Result<Flags, FlagsError> {
    if flags.device && flags.execute {
        return Err(FlagsError::ExecutableDevice);
    }
    if flags.write && flags.execute && !allow_wx {
        return Err(FlagsError::WritableAndExecutable);
    }
    let (cache, write_through) = match (flags.device, flags.cache, flags.write_through) {
        (true, _, _) => (false, false),
        (false, false, _) => (false, false),
        (false, true, wt) => (true, wt),
    };
    Ok(Flags {
        execute: flags.execute,
        write: flags.write,
        cache,
        write_through,
        device: flags.device,
    })
}

/// Map several pages across table boundaries, translate with offsets, unmap, translate again.
pub fn map_translate_unmap_round_trip<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let offsets = [0, 0x1000, 0x20_0000, 0x1ff_f000, GIB, GIB + 0x3f_f000];
    for (i, &off) in offsets.iter().enumerate() {
        let (v, p) = (va(h, off), pa(h, 0x10_0000 + i as u64 * 0x3000));
        ensure_eq!(
            map4k::<H>(&mut pt, v, p, Flags::RW),
            Ok(()),
            "map {v:?} -> {p:?}"
        );
    }
    for (i, &off) in offsets.iter().enumerate() {
        let (v, p) = (va(h, off), pa(h, 0x10_0000 + i as u64 * 0x3000));
        let t = pt.translate(VirtAddr::new(v.as_u64() + 0x123));
        let t = match t {
            Ok(t) => t,
            Err(e) => return Err(Failure::new(format_args!("translate {v:?}: {e}"))),
        };
        ensure_eq!(t.pa, PhyAddr::new(p.as_u64() + 0x123), "pa of {v:?}+0x123");
        ensure_eq!(
            (t.page, t.frame, t.size),
            (v, p, PageSize::Size4K),
            "page of {v:?}"
        );
        ensure_eq!(t.attrs, Attrs::from(Flags::RW), "attrs of {v:?}");
    }
    ensure_eq!(
        pt.translate(va(h, 0x2000)).map(|t| t.pa),
        Err(TranslateError::NotMapped),
        "neighbour"
    );
    for (i, &off) in offsets.iter().enumerate() {
        let (v, p) = (va(h, off), pa(h, 0x10_0000 + i as u64 * 0x3000));
        // SAFETY: never activated.
        match unsafe { pt.unmap(v, PageSize::Size4K) } {
            Ok((gone, flush)) => {
                flush.flush();
                ensure_eq!(
                    (gone.frame, gone.size, gone.attrs),
                    (p, PageSize::Size4K, Attrs::from(Flags::RW)),
                    "unmap {v:?}"
                );
            }
            Err(e) => return Err(Failure::new(format_args!("unmap {v:?}: {e}"))),
        }
        ensure_eq!(
            pt.translate(v).map(|t| t.pa),
            Err(TranslateError::NotMapped),
            "after unmap {v:?}"
        );
    }
    finish(h, pt)
}

/// All 32 seed flag combinations: accepted ones read back canonically (through `map` and through
/// `update_flags`), rejected ones fail with the precise reason and change nothing.
pub fn flags_readback_all_combinations<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    for (i, flags) in Flags::all_combinations().into_iter().enumerate() {
        let v = va(h, i as u64 * 0x1000);
        let p = pa(h, i as u64 * 0x1000);
        let before = pt.frames().outstanding();
        let got = map4k::<H>(&mut pt, v, p, flags);
        match expected_for(flags, false) {
            Ok(canon) => {
                ensure_eq!(got, Ok(()), "map {flags:?}");
                let t = pt.translate(v).map(|t| (t.frame, t.attrs.flags));
                ensure_eq!(t, Ok((p, canon)), "readback of {flags:?}");
            }
            Err(e) => {
                ensure_eq!(got, Err(MapError::InvalidFlags(e)), "map {flags:?}");
                ensure_eq!(
                    pt.translate(v).map(|t| t.pa),
                    Err(TranslateError::NotMapped),
                    "rejected {flags:?} left a mapping"
                );
                ensure_eq!(
                    pt.frames().outstanding(),
                    before,
                    "rejected {flags:?} allocated"
                );
            }
        }
    }
    // The same table through update_flags, from a read-only mapping.
    let base = 64 * 0x1000;
    for (i, flags) in Flags::all_combinations().into_iter().enumerate() {
        let v = va(h, base + i as u64 * 0x1000);
        let p = pa(h, i as u64 * 0x1000);
        ensure_eq!(
            map4k::<H>(&mut pt, v, p, Flags::RO),
            Ok(()),
            "map RO for update"
        );
        // SAFETY: never activated.
        let got = unsafe { pt.update_flags(v, PageSize::Size4K, flags) }.map(|f| f.flush());
        let now = pt.translate(v).map(|t| (t.frame, t.attrs.flags));
        match expected_for(flags, false) {
            Ok(canon) => {
                ensure_eq!(got, Ok(()), "update to {flags:?}");
                ensure_eq!(now, Ok((p, canon)), "readback after update to {flags:?}");
            }
            Err(e) => {
                ensure_eq!(
                    got,
                    Err(ProtectError::InvalidFlags(e)),
                    "update to {flags:?}"
                );
                ensure_eq!(
                    now,
                    Ok((p, Flags::RO)),
                    "rejected update to {flags:?} changed the page"
                );
            }
        }
    }
    finish(h, pt)
}

/// With W^X relaxed, writable+executable mappings are accepted; device+execute never is.
pub fn write_execute_allowed_by_policy<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    pt.set_policy(Policy {
        allow_write_execute: true,
        ..Policy::default()
    });
    for (i, flags) in Flags::all_combinations().into_iter().enumerate() {
        let (v, p) = (va(h, i as u64 * 0x1000), pa(h, i as u64 * 0x1000));
        let got = map4k::<H>(&mut pt, v, p, flags);
        match expected_for(flags, true) {
            Ok(canon) => {
                ensure_eq!(got, Ok(()), "map {flags:?} with W+X allowed");
                ensure_eq!(
                    pt.translate(v).map(|t| t.attrs.flags),
                    Ok(canon),
                    "readback {flags:?}"
                );
            }
            Err(e) => ensure_eq!(got, Err(MapError::InvalidFlags(e)), "map {flags:?}"),
        }
    }
    finish(h, pt)
}

/// `user` and `global` read back for every combination, on code and data pages.
pub fn user_and_global_readback<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    // Global user pages are refused by default (they outlive address-space switches) ...
    let gu = Attrs {
        flags: Flags::RO,
        user: true,
        global: true,
    };
    ensure_eq!(
        map4k::<H>(&mut pt, va(h, 0), pa(h, 0), gu),
        Err(MapError::InvalidFlags(crate::FlagsError::GlobalUser)),
        "user + global under the default policy"
    );
    // ... and encoded faithfully when the policy allows them.
    pt.set_policy(Policy {
        allow_global_user: true,
        ..Policy::default()
    });
    let mut i = 0u64;
    for flags in [Flags::RO, Flags::RW, Flags::RX, Flags::DEVICE] {
        for (user, global) in [(false, false), (false, true), (true, false), (true, true)] {
            let attrs = Attrs {
                flags,
                user,
                global,
            };
            // Spread over 2 MiB regions so user pages and kernel pages share upper tables.
            let (v, p) = (va(h, i * 0x20_1000), pa(h, i * 0x1000));
            ensure_eq!(map4k::<H>(&mut pt, v, p, attrs), Ok(()), "map {attrs:?}");
            ensure_eq!(
                pt.translate(v).map(|t| t.attrs),
                Ok(attrs.canonical()),
                "readback"
            );
            i += 1;
        }
    }
    finish(h, pt)
}

/// Mapping over a mapped page fails and keeps the first mapping.
pub fn already_mapped_is_rejected<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let v = va(h, 0x5000);
    ensure_eq!(
        map4k::<H>(&mut pt, v, pa(h, 0x1000), Flags::RW),
        Ok(()),
        "first map"
    );
    let before = pt.frames().outstanding();
    ensure_eq!(
        map4k::<H>(&mut pt, v, pa(h, 0x2000), Flags::RO),
        Err(MapError::AlreadyMapped),
        "second map"
    );
    ensure_eq!(
        map4k::<H>(&mut pt, v, pa(h, 0x1000), Flags::RW),
        Err(MapError::AlreadyMapped),
        "identical map"
    );
    let t = pt.translate(v).map(|t| (t.frame, t.attrs.flags));
    ensure_eq!(t, Ok((pa(h, 0x1000), Flags::RW)), "first mapping kept");
    ensure_eq!(pt.frames().outstanding(), before, "failed map allocated");
    finish(h, pt)
}

/// Unmapping where nothing is mapped fails precisely, with and without tables on the way.
pub fn unmap_of_unmapped_is_rejected<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    // SAFETY (all blocks): never activated.
    ensure_eq!(
        unsafe { pt.unmap(va(h, 0), PageSize::Size4K) }.map(|r| r.0),
        Err(UnmapError::NotMapped),
        "empty table"
    );
    ensure_eq!(
        map4k::<H>(&mut pt, va(h, 0), pa(h, 0), Flags::RW),
        Ok(()),
        "map"
    );
    ensure_eq!(
        unsafe { pt.unmap(va(h, 0x1000), PageSize::Size4K) }.map(|r| r.0),
        Err(UnmapError::NotMapped),
        "sibling"
    );
    ensure_eq!(
        unsafe { pt.update_flags(va(h, 0x1000), PageSize::Size4K, Flags::RO) }.map(|f| f.ignore()),
        Err(ProtectError::NotMapped),
        "update sibling"
    );
    ensure_eq!(
        pt.translate(va(h, 0)).map(|t| t.frame),
        Ok(pa(h, 0)),
        "mapped page kept"
    );
    finish(h, pt)
}

/// Misaligned virtual or physical addresses fail with `AddressNotAligned` and change nothing.
pub fn unaligned_addresses_are_rejected<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let before = pt.frames().outstanding();
    let bad = [
        (va(h, 0x10), pa(h, 0), PageSize::Size4K),
        (va(h, 0x1000 - 1), pa(h, 0), PageSize::Size4K),
        (va(h, 0), pa(h, 0x8), PageSize::Size4K),
        (va(h, 0x1000), pa(h, 0), PageSize::Size2M),
        (va(h, 0), pa(h, 0x1000), PageSize::Size2M),
        (va(h, 0x20_0000), pa(h, 0), PageSize::Size1G),
        (va(h, 0), pa(h, 0x20_0000), PageSize::Size1G),
    ];
    for (v, p, size) in bad {
        if !pt.arch().page_sizes().contains(size) {
            continue;
        }
        // SAFETY: never activated.
        let got = unsafe { pt.map(v, p, size, Flags::RW) }.map(|f| f.ignore());
        ensure_eq!(
            got,
            Err(MapError::AddressNotAligned),
            "map {v:?} -> {p:?} ({size})"
        );
    }
    ensure_eq!(pt.frames().outstanding(), before, "rejected maps allocated");
    ensure_eq!(
        map4k::<H>(&mut pt, va(h, 0), pa(h, 0), Flags::RW),
        Ok(()),
        "aligned map"
    );
    // SAFETY (both): never activated.
    ensure_eq!(
        unsafe { pt.unmap(va(h, 0x8), PageSize::Size4K) }.map(|r| r.0),
        Err(UnmapError::AddressNotAligned),
        "unmap"
    );
    ensure_eq!(
        unsafe { pt.update_flags(va(h, 0x8), PageSize::Size4K, Flags::RO) }.map(|f| f.ignore()),
        Err(ProtectError::AddressNotAligned),
        "update"
    );
    ensure_eq!(
        pt.translate(va(h, 0)).map(|t| t.attrs.flags),
        Ok(Flags::RW),
        "mapping kept"
    );
    finish(h, pt)
}

/// Non-canonical and out-of-range virtual addresses fail precisely in every operation.
pub fn bad_virtual_addresses_are_rejected<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let bad = h.bad_vas();
    ensure!(
        !bad.is_empty(),
        "harness lists no invalid virtual addresses"
    );
    let before = pt.frames().outstanding();
    for &(v, why) in bad {
        // SAFETY (all): never activated.
        let m = unsafe { pt.map(v, pa(h, 0), PageSize::Size4K, Flags::RW) }.map(|f| f.ignore());
        ensure_eq!(m, Err(MapError::from(why)), "map {v:?}");
        ensure_eq!(
            pt.translate(v).map(|t| t.pa),
            Err(TranslateError::from(why)),
            "translate {v:?}"
        );
        ensure_eq!(
            unsafe { pt.unmap(v, PageSize::Size4K) }.map(|r| r.0),
            Err(UnmapError::from(why)),
            "unmap {v:?}"
        );
        let u = unsafe { pt.update_flags(v, PageSize::Size4K, Flags::RO) }.map(|f| f.ignore());
        ensure_eq!(u, Err(ProtectError::from(why)), "update {v:?}");
    }
    ensure_eq!(
        pt.frames().outstanding(),
        before,
        "rejected addresses allocated"
    );
    finish(h, pt)
}

/// Physical addresses at the output-address limit are rejected; the highest valid frame works.
pub fn physical_address_width_is_enforced<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let bits = pt.arch().pa_bits();
    ensure!(
        (32..=52).contains(&bits),
        "implausible output-address width {bits}"
    );
    let limit = 1u64 << bits;
    let too_wide = [limit, limit | 0x1000, 1 << 63];
    for p in too_wide {
        let got = map4k::<H>(&mut pt, va(h, 0), PhyAddr::new(p), Flags::RW);
        ensure_eq!(got, Err(MapError::PhysAddrTooWide), "map to {p:#x}");
    }
    let top = PhyAddr::new(limit - 0x1000);
    ensure_eq!(
        map4k::<H>(&mut pt, va(h, 0), top, Flags::RW),
        Ok(()),
        "map highest frame"
    );
    ensure_eq!(
        pt.translate(va(h, 0xff8)).map(|t| t.pa),
        Ok(PhyAddr::new(top.as_u64() + 0xff8)),
        "translate highest frame"
    );
    finish(h, pt)
}

/// For every k, an allocator that refuses the k-th table allocation makes `map` fail with
/// `OutOfMemory`, leaving every mapping and the frame count exactly as before.
pub fn out_of_memory_at_every_allocation_rolls_back<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let levels = u64::from(pt.arch().levels());
    // Scenarios: a fresh path from the root, one sharing upper tables, a huge page.
    let existing = va(h, GIB + 0x7000);
    let scenarios = [
        (va(h, 0), PageSize::Size4K),
        (va(h, GIB + 0x40_0000), PageSize::Size4K),
        (va(h, GIB + 0x7000 + 0x1000), PageSize::Size4K),
        (va(h, 0x20_0000 * 5), PageSize::Size2M),
    ];
    let mut max_needed = 0;
    for (n, &(target, size)) in scenarios.iter().enumerate() {
        if n == 1 {
            // From the second scenario on, other mappings exist and must survive.
            ensure_eq!(
                map4k::<H>(&mut pt, existing, pa(h, 0x9000), Flags::RO),
                Ok(()),
                "setup"
            );
        }
        let p = pa(h, 0x40_0000);
        let mut k = 0;
        loop {
            ensure!(
                k <= levels as usize,
                "map still failing after {k} allocations"
            );
            let before = pt.frames().outstanding();
            let kept = pt.translate(existing).ok();
            pt.frames_mut().fail_after(Some(k));
            // SAFETY: never activated.
            let got = unsafe { pt.map(target, p, size, Flags::RW) }.map(|f| f.flush());
            pt.frames_mut().fail_after(None);
            match got {
                Err(MapError::OutOfMemory) => {
                    ensure_eq!(
                        pt.frames().outstanding(),
                        before,
                        "frames after OOM at k={k} ({size} at {target:?})"
                    );
                    ensure_eq!(
                        pt.translate(target).map(|t| t.pa),
                        Err(TranslateError::NotMapped),
                        "mapping after OOM at k={k}"
                    );
                    ensure_eq!(
                        pt.translate(existing).ok(),
                        kept,
                        "other mapping after OOM at k={k}"
                    );
                    k += 1;
                }
                Ok(()) => {
                    let used = pt.frames().outstanding() - before;
                    ensure_eq!(
                        used,
                        k,
                        "allocations of a successful map after {k} refusals"
                    );
                    ensure_eq!(
                        pt.translate(target).map(|t| (t.frame, t.size)),
                        Ok((p, size)),
                        "mapping after success"
                    );
                    max_needed = max_needed.max(used as u64);
                    break;
                }
                Err(e) => return Err(Failure::new(format_args!("unexpected {e} at k={k}"))),
            }
        }
    }
    ensure_eq!(
        max_needed,
        levels - 1,
        "a fresh 4 KiB path needs one table per level below the root"
    );
    finish(h, pt)
}

/// `update_flags` changes attributes, keeps the frame, and validates like `map`.
pub fn update_flags_changes_attributes_only<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let (v, p) = (va(h, 0x3000), pa(h, 0x7000));
    ensure_eq!(map4k::<H>(&mut pt, v, p, Flags::RW), Ok(()), "map");
    for flags in [
        Flags::RO,
        Flags::RX,
        Flags::DEVICE,
        Flags {
            write_through: true,
            ..Flags::RW
        },
        Flags::RW,
    ] {
        // SAFETY: never activated.
        let got = unsafe { pt.update_flags(v, PageSize::Size4K, flags) }.map(|f| f.flush());
        ensure_eq!(got, Ok(()), "update to {flags:?}");
        ensure_eq!(
            pt.translate(v).map(|t| (t.frame, t.attrs.flags)),
            Ok((p, flags.canonical())),
            "after update to {flags:?}"
        );
    }
    let bad = Flags {
        execute: true,
        ..Flags::DEVICE
    };
    // SAFETY: never activated.
    let got = unsafe { pt.update_flags(v, PageSize::Size4K, bad) }.map(|f| f.flush());
    ensure_eq!(
        got,
        Err(ProtectError::InvalidFlags(FlagsError::ExecutableDevice)),
        "invalid update"
    );
    ensure_eq!(
        pt.translate(v).map(|t| t.attrs.flags),
        Ok(Flags::RW),
        "invalid update changed the page"
    );
    finish(h, pt)
}

/// Every supported huge size maps and translates with the right size and offset; unsupported
/// sizes are refused.
pub fn huge_pages_map_and_translate<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let sizes = pt.arch().page_sizes();
    for size in [PageSize::Size2M, PageSize::Size1G] {
        let (v, p) = (va(h, size.bytes()), pa(h, size.bytes()));
        // SAFETY: never activated.
        let got = unsafe { pt.map(v, p, size, Flags::RO) }.map(|f| f.flush());
        if !sizes.contains(size) {
            ensure_eq!(got, Err(MapError::PageSizeNotSupported(size)), "map {size}");
            continue;
        }
        ensure_eq!(got, Ok(()), "map {size}");
        let probe = VirtAddr::new(v.as_u64() + size.bytes() / 2 + 0x123);
        let t = pt.translate(probe).map(|t| (t.pa, t.page, t.frame, t.size));
        ensure_eq!(
            t,
            Ok((
                PhyAddr::new(p.as_u64() + size.bytes() / 2 + 0x123),
                v,
                p,
                size
            )),
            "translate inside {size}"
        );
        // SAFETY: never activated.
        // Asked as 4 KiB, the huge page is refused, not removed whole.
        ensure_eq!(
            unsafe { pt.unmap(v, PageSize::Size4K) }.map(|r| r.0),
            Err(UnmapError::InsideHugePage(size)),
            "unmap {size} asked as 4 KiB"
        );
        // SAFETY: never activated.
        let gone = unsafe { pt.unmap(v, size) }.map(|(g, f)| {
            f.flush();
            (g.frame, g.size)
        });
        ensure_eq!(gone, Ok((p, size)), "unmap {size}");
        ensure_eq!(
            pt.translate(probe).map(|t| t.pa),
            Err(TranslateError::NotMapped),
            "after unmap {size}"
        );
    }
    finish(h, pt)
}

/// Small pages inside huge pages and huge pages over tables are refused precisely.
pub fn huge_page_conflicts_are_rejected<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    let big = PageSize::Size2M;
    let (v, p) = (va(h, 0x40_0000), pa(h, 0x40_0000));
    // SAFETY (all): never activated.
    ensure_eq!(
        unsafe { pt.map(v, p, big, Flags::RW) }.map(|f| f.flush()),
        Ok(()),
        "map 2M"
    );
    let inside = va(h, 0x40_1000);
    ensure_eq!(
        map4k::<H>(&mut pt, inside, pa(h, 0), Flags::RW),
        Err(MapError::AlreadyMapped),
        "4K inside 2M"
    );
    ensure_eq!(
        unsafe { pt.unmap(inside, PageSize::Size4K) }.map(|r| r.0),
        Err(UnmapError::InsideHugePage(big)),
        "unmap inside 2M"
    );
    ensure_eq!(
        unsafe { pt.update_flags(inside, PageSize::Size4K, Flags::RO) }.map(|f| f.ignore()),
        Err(ProtectError::InsideHugePage(big)),
        "update inside 2M"
    );
    ensure_eq!(
        pt.translate(inside).map(|t| (t.size, t.attrs.flags)),
        Ok((big, Flags::RW)),
        "2M kept"
    );
    // A 2 MiB page asked for where 4 KiB pages are mapped: the smaller size, precisely.
    let small = va(h, 0x80_0000);
    ensure_eq!(
        map4k::<H>(&mut pt, small, pa(h, 0), Flags::RW),
        Ok(()),
        "4K setup"
    );
    ensure_eq!(
        unsafe { pt.unmap(small, big) }.map(|r| r.0),
        Err(UnmapError::PageSizeMismatch(PageSize::Size4K)),
        "unmap 2M over 4K"
    );
    ensure_eq!(
        unsafe { pt.update_flags(small, big, Flags::RO) }.map(|f| f.ignore()),
        Err(ProtectError::PageSizeMismatch(PageSize::Size4K)),
        "update 2M over 4K"
    );
    // A 4 KiB page, then a 2 MiB page over its table.
    let small = va(h, 0x80_3000);
    ensure_eq!(
        map4k::<H>(&mut pt, small, pa(h, 0), Flags::RW),
        Ok(()),
        "4K"
    );
    let before = pt.frames().outstanding();
    let over =
        unsafe { pt.map(va(h, 0x80_0000), pa(h, 0x80_0000), big, Flags::RW) }.map(|f| f.flush());
    ensure_eq!(over, Err(MapError::HugePageConflict), "2M over a table");
    ensure_eq!(pt.frames().outstanding(), before, "conflict allocated");
    ensure_eq!(
        pt.translate(small).map(|t| t.frame),
        Ok(pa(h, 0)),
        "4K kept"
    );
    finish(h, pt)
}

/// Destroying a table with mappings all over returns every table frame.
pub fn destroy_frees_every_table<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let mut pt = h.fresh()?;
    for i in 0..64u64 {
        let v = va(h, (i * 0x1234_5000) % (2 * GIB));
        let r = map4k::<H>(
            &mut pt,
            v.align_down(PageSize::Size4K),
            pa(h, i * 0x1000),
            Flags::RO,
        );
        ensure!(
            matches!(r, Ok(()) | Err(MapError::AlreadyMapped)),
            "map {v:?}: {r:?}"
        );
    }
    ensure!(
        pt.frames().outstanding() > 8,
        "mappings should need many tables"
    );
    finish(h, pt)
}

/// The entry format passes a leaf's output-address bits through untouched: flipping them in an
/// entry flips them in the decoded frame and changes nothing else the crate reads from the
/// entry (its class, attributes, Accessed/Dirty record, the break-before-make decision, the
/// hardware bits kept), and `leaf_entry` of another frame differs in exactly those bits. The
/// range engine's rewrite loops decide once per run of entries equal outside these bits.
pub fn leaf_address_bits_pass_through<H: Harness>(h: &mut H) -> Result<(), Failure> {
    let pt = h.fresh()?;
    let arch = *pt.arch();
    finish(h, pt)?;
    let pa_bits = arch.pa_bits().min(63);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut attrs = [Attrs::from(Flags::RW); 8];
    for (i, f) in [Flags::RO, Flags::RW, Flags::RX, Flags::DEVICE]
        .into_iter()
        .enumerate()
    {
        attrs[2 * i] = Attrs::from(f);
        attrs[2 * i + 1] = Attrs {
            user: true,
            global: false,
            ..Attrs::from(f)
        };
    }
    let class = |e: crate::arch::Entry| match e {
        crate::arch::Entry::Invalid => 0,
        crate::arch::Entry::Leaf(_) => 1,
        crate::arch::Entry::Table(_) => 2,
    };
    for size in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
        let level = size.level();
        let addr = ((1u64 << pa_bits) - 1) & !size.offset_mask();
        for a in attrs {
            for b in attrs {
                for _ in 0..16 {
                    let frame = PhyAddr::new(next() & addr);
                    let x = next() & addr;
                    let moved = PhyAddr::new(frame.as_u64() ^ x);
                    let old = arch.leaf_entry(frame, level, a);
                    // Bits the hardware or software may have set besides (A/D, software bits).
                    let old = old | (next() & !addr & !0xfff & (0xff << 51));
                    let old = old | (next() & 0x060);
                    let new = arch.leaf_entry(frame, level, b);
                    ensure_eq!(
                        arch.leaf_entry(moved, level, b),
                        new ^ x,
                        "leaf_entry at level {level} of {moved:?}"
                    );
                    let (d0, d1) = (arch.decode(old, level), arch.decode(old ^ x, level));
                    ensure_eq!(class(d0), class(d1), "decode class of {old:#x} ^ {x:#x}");
                    if let crate::arch::Entry::Leaf(f) = d0 {
                        ensure_eq!(
                            d1,
                            crate::arch::Entry::Leaf(PhyAddr::new(f.as_u64() ^ x)),
                            "decoded frame of {old:#x} ^ {x:#x}"
                        );
                        ensure_eq!(
                            arch.leaf_attrs(old ^ x, level),
                            arch.leaf_attrs(old, level),
                            "attributes of {old:#x} ^ {x:#x}"
                        );
                        ensure_eq!(
                            arch.accessed_dirty(old ^ x, level),
                            arch.accessed_dirty(old, level),
                            "accessed/dirty of {old:#x} ^ {x:#x}"
                        );
                    }
                    ensure_eq!(
                        arch.keep_hardware_bits(old ^ x, new ^ x),
                        arch.keep_hardware_bits(old, new) ^ x,
                        "hardware bits kept from {old:#x} ^ {x:#x}"
                    );
                    ensure_eq!(
                        arch.needs_break_before_make(old ^ x, new ^ x, level),
                        arch.needs_break_before_make(old, new, level),
                        "break-before-make of {old:#x} -> {new:#x}, both ^ {x:#x}"
                    );
                    // Any bit pattern: the class never depends on the address bits.
                    let raw = next();
                    ensure_eq!(
                        class(arch.decode(raw, level)),
                        class(arch.decode(raw ^ x, level)),
                        "decode class of {raw:#x} ^ {x:#x}"
                    );
                }
            }
        }
    }
    Ok(())
}
