//! Ordering and TLB-maintenance checks (feature `std`): every operation of the walker, run
//! under the [`Tracer`] and the walking [`EmuTlb`] model, for any descriptor format.
//!
//! QEMU's TCG executes table writes in order and keeps few stale walk-cache entries, so the
//! QEMU kernels cannot show a missing barrier or invalidation. These checks can: each one
//! drives a scenario (map with new tables, map under existing ones, unmap, protect, a
//! memory-type change with break-before-make, widening under a restricted parent, destroy and
//! reuse, a table frame above the output size) and requires
//!
//! - no [`Violation`](crate::emu::Violation) from the tracer, and nothing
//!   [`Pending`](crate::emu::Pending) once the tokens are flushed;
//! - the TLB model to see the new state after the flushes (and the old one before, where a
//!   token is still owed), with the expected number of flushes, publishes and barriers;
//! - effective permissions (translate and the model's walk) as the hierarchy grants them.
//!
//! Backends run them with [`ordering_tests!`](crate::ordering_tests):
//!
//! ```
//! use awk_paging::conformance::ordering_checks::{list, OrderingSpec};
//! use awk_paging::emu::EmuArch;
//! let spec = OrderingSpec::new(awk_paging::VirtAddr::new(0x40_0000_0000), awk_paging::PhyAddr::new(0x8000_0000));
//! for check in list::<EmuArch>() {
//!     (check.run)(EmuArch::default(), &spec).unwrap_or_else(|e| panic!("{}: {e}", check.name));
//! }
//! ```

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

pub use super::ordering_range::{
    range_drop_frees_subtrees_after_a_full_flush, range_reclaim_frees_only_after_the_flush,
    range_split_invalidates_the_old_block,
};
use crate::arch::{table_index, Arch, Entry, Limits};
use crate::emu::{CpuAccess, EmuMemory, EmuTlb, Event, TracedTable, Tracer};
use crate::{Attrs, Flags, MapError, PageSize, PhyAddr, VirtAddr};

/// Where the checks map.
#[derive(Clone, Copy, Debug)]
pub struct OrderingSpec {
    /// A 1 GiB-aligned virtual window of at least 2 GiB the regime translates.
    pub va_window: VirtAddr,
    /// A 1 GiB-aligned physical window of at least 2 GiB below the output size (mapped, never
    /// accessed).
    pub pa_window: PhyAddr,
    /// Frames of emulated memory per check.
    pub frames: usize,
}

impl OrderingSpec {
    /// A spec with 256 frames per check.
    ///
    /// ```
    /// use awk_paging::conformance::ordering_checks::OrderingSpec;
    /// let s = OrderingSpec::new(awk_paging::VirtAddr::new(0x4000_0000), awk_paging::PhyAddr::new(0));
    /// assert_eq!(s.frames, 256);
    /// ```
    #[must_use]
    pub const fn new(va_window: VirtAddr, pa_window: PhyAddr) -> Self {
        OrderingSpec {
            va_window,
            pa_window,
            frames: 256,
        }
    }
}

/// One named ordering check.
pub struct OrderingCheck<A> {
    /// Stable name (the test name).
    pub name: &'static str,
    /// The check.
    pub run: fn(A, &OrderingSpec) -> Result<(), String>,
}

/// The single list of ordering-check names. Calls back `$cb! { [$extra] name, ... }`, so the
/// list here and the `#[test]` generator for other crates come from one list.
#[doc(hidden)]
#[macro_export]
macro_rules! __awk_ordering_names {
    ([$($cb:tt)*] $($extra:tt)*) => {
        $($cb)*! { [$($extra)*]
            map_with_new_tables_is_ordered_and_published,
            map_under_existing_tables_is_ordered,
            unmap_is_invalidated,
            remap_without_flush_is_caught,
            update_flags_permissions_in_place,
            update_flags_memory_type_breaks_before_make,
            widening_pushes_down_then_widens,
            widening_through_the_cached_leaf_table,
            update_flags_widens_restricted_parent,
            destroy_invalidates_before_frames_are_reused,
            table_frame_above_output_size_is_refused,
            range_reclaim_frees_only_after_the_flush,
            range_drop_frees_subtrees_after_a_full_flush,
            range_split_invalidates_the_old_block,
        }
    };
}

macro_rules! define_list {
    ([] $($name:ident),* $(,)?) => {
        /// Every ordering check, in order.
        #[must_use]
        pub fn list<A: Arch>() -> Vec<OrderingCheck<A>> {
            std::vec![$(OrderingCheck { name: stringify!($name), run: $name::<A> }),*]
        }

        /// The check names, in order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

crate::__awk_ordering_names!([define_list]);

/// Declares one `#[test]` per ordering check for `$arch` (an expression evaluated afresh in
/// every test) and `$spec` (an [`OrderingSpec`] expression).
///
/// ```ignore
/// awk_paging::ordering_tests!(MyArch::new(), OrderingSpec::new(va, pa));
/// ```
#[macro_export]
macro_rules! ordering_tests {
    ($arch:expr, $spec:expr) => {
        $crate::__awk_ordering_names!([$crate::__awk_ordering_tests] $arch, $spec);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __awk_ordering_tests {
    ([$arch:expr, $spec:expr] $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let all = $crate::conformance::ordering_checks::list();
                let check = all
                    .iter()
                    .find(|c| c.name == stringify!($name))
                    .expect("check exists");
                if let Err(e) = (check.run)($arch, &$spec) {
                    panic!("{}: {}", stringify!($name), e);
                }
            }
        )*
    };
}

/// Returns `Err(format!(...))` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

/// Returns an error unless `left == right`, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($arg:tt)*) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!("{}: got {:?}, expected {:?}", format_args!($($arg)*), l, r));
        }
    }};
}

const MIB2: u64 = 0x20_0000;

fn va(spec: &OrderingSpec, off: u64) -> VirtAddr {
    VirtAddr::new(spec.va_window.as_u64() + off)
}

fn pa(spec: &OrderingSpec, off: u64) -> PhyAddr {
    PhyAddr::new(spec.pa_window.as_u64() + off)
}

/// The tracer's verdict so far: violations (always) and, with `flushed`, pending items.
fn verdict<A: Arch>(t: &Tracer<'_, A>, flushed: bool, what: &str) -> Result<(), String> {
    let v = t.violations();
    ensure!(
        v.is_empty(),
        "{what}: {}",
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    if flushed {
        let p = t.pending();
        ensure!(
            p.is_empty(),
            "{what}: TLB still owed: {}",
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

/// What the CPU sees at `v` through the model: the physical address and the cached attributes.
fn cpu<A: Arch>(
    tlb: &EmuTlb,
    mem: &EmuMemory,
    pt: &TracedTable<'_, '_, A>,
    v: VirtAddr,
) -> Option<(PhyAddr, Attrs)> {
    match tlb.access_walk(mem, pt.arch(), pt.root(), v) {
        CpuAccess::Mapped(p) => Some((p, tlb.cached_attrs(v)?)),
        CpuAccess::Fault => None,
    }
}

fn map<A: Arch>(
    pt: &mut TracedTable<'_, '_, A>,
    v: VirtAddr,
    p: PhyAddr,
    size: PageSize,
    attrs: impl Into<Attrs>,
) -> Result<(), String> {
    // SAFETY: emulated tables, never active on the host CPU.
    unsafe { pt.map(v, p, size, attrs) }
        .map(|t| t.flush())
        .map_err(|e| format!("map {v:?}: {e}"))
}

fn flags_at<A: Arch>(pt: &TracedTable<'_, '_, A>, v: VirtAddr) -> Result<Flags, String> {
    pt.translate(v)
        .map(|t| t.attrs.flags)
        .map_err(|e| format!("translate {v:?}: {e}"))
}

/// The physical address of the entry at `level` on the walk to `v`, read from memory.
fn entry_at<A: Arch>(
    mem: &EmuMemory,
    arch: &A,
    root: PhyAddr,
    v: VirtAddr,
    level: u8,
) -> Option<PhyAddr> {
    let mut l = arch.levels().checked_sub(1)?;
    let mut table = root;
    loop {
        let at = PhyAddr::new(table.as_u64() + 8 * table_index(v, l) as u64);
        if l == level {
            return Some(at);
        }
        match arch.decode(mem.read_u64(at)?, l) {
            Entry::Table(next) if l > 0 => {
                table = next;
                l -= 1;
            }
            _ => return None,
        }
    }
}

/// A fresh memory, TLB model and tracer for one check.
fn rig(spec: &OrderingSpec) -> (EmuMemory, EmuTlb) {
    (EmuMemory::new(spec.frames), EmuTlb::new())
}

/// A new table, or the error as text.
fn table<'t, 'a, A: Arch>(t: &'t Tracer<'a, A>) -> Result<TracedTable<'t, 'a, A>, String> {
    t.new_table().map_err(|e| format!("new table: {e}"))
}

/// Maps a read-write page `s1` at the window's start and a read-execute page `s2` one 2 MiB
/// region further, then restricts (by hand, as a taken-over table would be) the table entry at
/// level 2 on their walk: no write, no execute (as far as the format can express it). Returns
/// the limits that took effect, `None` for formats without hierarchical limits.
fn restrict_parent<A: Arch>(
    t: &Tracer<'_, A>,
    pt: &mut TracedTable<'_, '_, A>,
    spec: &OrderingSpec,
) -> Result<Option<Limits>, String> {
    if pt.arch().levels() < 3 {
        return Ok(None);
    }
    let (s1, s2) = (va(spec, 0), va(spec, MIB2));
    map(pt, s1, pa(spec, 0), PageSize::Size4K, Flags::RW)?;
    map(pt, s2, pa(spec, 0x1000), PageSize::Size4K, Flags::RX)?;
    let mem = t.memory();
    let arch = *pt.arch();
    let Some(at) = entry_at(mem, &arch, pt.root(), s1, 2) else {
        return Err("no table entry at level 2".into());
    };
    let raw = mem.read_u64(at).ok_or("entry unreadable")?;
    let limits = Limits {
        no_write: true,
        no_exec: true,
        no_user_exec: true,
        ..Limits::NONE
    };
    let restricted = arch.limit_entry(raw, 2, limits);
    let took = arch.table_limits(restricted, 2);
    if took == arch.table_limits(raw, 2) {
        return Ok(None);
    }
    ensure!(mem.write_u64(at, restricted), "write the restriction");
    // Edited by other means: drop the walker's and the model's cached walks.
    pt.forget_cached_walks();
    t.adopt(pt.root());
    if let Some(tlb) = t.tlb() {
        tlb.invalidate_all();
    }
    let (want1, want2) = sibling_flags(took);
    ensure_eq!(flags_at(pt, s1)?, want1, "s1 under the restriction");
    ensure_eq!(flags_at(pt, s2)?, want2, "s2 under the restriction");
    t.clear();
    Ok(Some(took))
}

/// What the restricted siblings (RW and RX kernel pages) are granted under `limits`.
fn sibling_flags(limits: Limits) -> (Flags, Flags) {
    (
        limits.apply(Attrs::from(Flags::RW)).flags,
        limits.apply(Attrs::from(Flags::RX)).flags,
    )
}

/// The siblings keep exactly the permissions the restriction gave them, through `translate`
/// and through the TLB model's own walk.
fn siblings_unchanged<A: Arch>(
    tlb: &EmuTlb,
    mem: &EmuMemory,
    pt: &TracedTable<'_, '_, A>,
    spec: &OrderingSpec,
    limits: Limits,
) -> Result<(), String> {
    let (s1, s2) = (va(spec, 0), va(spec, MIB2));
    let (want1, want2) = sibling_flags(limits);
    ensure_eq!(flags_at(pt, s1)?, want1, "s1 (RW) after widening");
    ensure_eq!(flags_at(pt, s2)?, want2, "s2 (RX) after widening");
    tlb.invalidate_all();
    ensure_eq!(
        cpu(tlb, mem, pt, s1).map(|(_, a)| a.flags),
        Some(want1),
        "CPU at s1"
    );
    ensure_eq!(
        cpu(tlb, mem, pt, s2).map(|(_, a)| a.flags),
        Some(want2),
        "CPU at s2"
    );
    Ok(())
}

/// A 4 KiB map from an empty root builds every table below the root, orders them once before
/// the link, publishes once, and the CPU sees the page.
pub fn map_with_new_tables_is_ordered_and_published<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let (v, p) = (va(spec, 0x5000), pa(spec, 0x7000));
    // SAFETY: emulated tables.
    let token =
        unsafe { pt.map(v, p, PageSize::Size4K, Flags::RW) }.map_err(|e| format!("map: {e}"))?;
    verdict(&t, false, "map")?;
    ensure!(
        !t.pending().is_empty(),
        "a new mapping must be owed a publish before its token is flushed"
    );
    token.flush();
    verdict(&t, true, "map, flushed")?;
    let levels = usize::from(arch.levels());
    let zeroed = t
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Zero(_)))
        .count();
    ensure_eq!(
        zeroed,
        levels,
        "tables zeroed (root and one per level below)"
    );
    ensure_eq!(
        (tlb.order_barriers(), tlb.publishes()),
        (1, 1),
        "(order barriers, publishes)"
    );
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(p, a)| (p, a.flags)),
        Some((p, Flags::RW)),
        "CPU"
    );
    // A huge page with its own new tables.
    let big = va(spec, 1 << 30);
    map(&mut pt, big, pa(spec, 1 << 30), PageSize::Size2M, Flags::RO)?;
    verdict(&t, true, "2 MiB map")?;
    ensure_eq!(
        tlb.order_barriers(),
        2,
        "order barriers after the 2 MiB map"
    );
    ensure_eq!(
        cpu(&tlb, &mem, &pt, VirtAddr::new(big.as_u64() + 0x1234)).map(|(p, _)| p),
        Some(PhyAddr::new(pa(spec, 1 << 30).as_u64() + 0x1234)),
        "CPU in the 2 MiB page"
    );
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")?;
    ensure_eq!(mem.frames_in_use(), 0, "frames after destroy");
    Ok(())
}

/// Maps under existing tables: the cached leaf table (no new table, no barrier), an existing
/// level-1 table (one new table, one barrier).
pub fn map_under_existing_tables_is_ordered<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    map(
        &mut pt,
        va(spec, 0),
        pa(spec, 0),
        PageSize::Size4K,
        Flags::RW,
    )?;
    let (b0, p0) = (tlb.order_barriers(), tlb.publishes());
    map(
        &mut pt,
        va(spec, 0x1000),
        pa(spec, 0x1000),
        PageSize::Size4K,
        Flags::RO,
    )?;
    verdict(&t, true, "map in the same leaf table")?;
    ensure_eq!(tlb.order_barriers(), b0, "barriers without new tables");
    ensure_eq!(tlb.publishes(), p0 + 1, "publishes");
    map(
        &mut pt,
        va(spec, MIB2),
        pa(spec, 0x2000),
        PageSize::Size4K,
        Flags::RW,
    )?;
    verdict(&t, true, "map with one new leaf table")?;
    ensure_eq!(tlb.order_barriers(), b0 + 1, "barriers with one new table");
    for (off, p) in [(0, 0), (0x1000, 0x1000), (MIB2, 0x2000)] {
        ensure_eq!(
            cpu(&tlb, &mem, &pt, va(spec, off)).map(|(p, _)| p),
            Some(pa(spec, p)),
            "CPU at +{off:#x}"
        );
    }
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// Unmap owes a leaf invalidation; once flushed the CPU faults, and a remap is seen.
pub fn unmap_is_invalidated<A: Arch>(arch: A, spec: &OrderingSpec) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let v = va(spec, 0x3000);
    map(&mut pt, v, pa(spec, 0x3000), PageSize::Size4K, Flags::RW)?;
    ensure!(cpu(&tlb, &mem, &pt, v).is_some(), "CPU before unmap");
    // SAFETY: emulated tables.
    let (gone, token) =
        unsafe { pt.unmap(v, PageSize::Size4K) }.map_err(|e| format!("unmap: {e}"))?;
    ensure_eq!(gone.frame, pa(spec, 0x3000), "unmapped frame");
    verdict(&t, false, "unmap")?;
    ensure!(!t.pending().is_empty(), "unmap must owe an invalidation");
    ensure!(
        cpu(&tlb, &mem, &pt, v).is_some(),
        "the model must keep the stale translation until the flush"
    );
    let leaf = tlb.leaf_flushes() + tlb.page_flushes();
    token.flush();
    verdict(&t, true, "unmap, flushed")?;
    ensure_eq!(
        tlb.leaf_flushes() + tlb.page_flushes(),
        leaf + 1,
        "invalidations"
    );
    ensure_eq!(cpu(&tlb, &mem, &pt, v), None, "CPU after unmap");
    map(&mut pt, v, pa(spec, 0x9000), PageSize::Size4K, Flags::RO)?;
    verdict(&t, true, "remap")?;
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(p, _)| p),
        Some(pa(spec, 0x9000)),
        "CPU after remap"
    );
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// Negative control for the checker and the model: an unmap whose token is ignored, then a
/// remap to another frame, is reported (owed invalidation; on formats that need
/// break-before-make for it, a make without invalidation) and the CPU keeps the old frame.
pub fn remap_without_flush_is_caught<A: Arch>(arch: A, spec: &OrderingSpec) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let v = va(spec, 0x3000);
    let (p1, p2) = (pa(spec, 0x3000), pa(spec, 0x4000));
    map(&mut pt, v, p1, PageSize::Size4K, Flags::RW)?;
    ensure!(cpu(&tlb, &mem, &pt, v).is_some(), "CPU before unmap");
    // SAFETY: emulated tables.
    let (_, token) = unsafe { pt.unmap(v, PageSize::Size4K) }.map_err(|e| format!("unmap: {e}"))?;
    token.ignore();
    map(&mut pt, v, p2, PageSize::Size4K, Flags::RW)?;
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(p, _)| p),
        Some(p1),
        "the model must show the stale frame"
    );
    ensure!(
        t.pending()
            .iter()
            .any(|p| matches!(p, crate::emu::Pending::Invalidate { .. })),
        "the tracer must report the owed invalidation"
    );
    let old = arch.leaf_entry(p1, 0, Flags::RW.into());
    let new = arch.leaf_entry(p2, 0, Flags::RW.into());
    let bbm = arch.needs_break_before_make(old, new, 0);
    let caught = t
        .violations()
        .iter()
        .any(|v| matches!(v, crate::emu::Violation::MakeWithoutInvalidate { .. }));
    ensure_eq!(
        caught,
        bbm,
        "make without invalidation reported iff BBM is needed"
    );
    Ok(())
}

/// A permission change is written in place (no break) and owes a leaf invalidation: the CPU
/// keeps the old permissions until the token is flushed.
pub fn update_flags_permissions_in_place<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let v = va(spec, 0x6000);
    map(&mut pt, v, pa(spec, 0x6000), PageSize::Size4K, Flags::RW)?;
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(_, a)| a.flags.write),
        Some(true),
        "CPU writable"
    );
    let before = t.events().len();
    let flushes = tlb.leaf_flushes();
    // SAFETY: emulated tables.
    let token = unsafe { pt.update_flags(v, PageSize::Size4K, Flags::RO) }
        .map_err(|e| format!("update: {e}"))?;
    verdict(&t, false, "update")?;
    let stores = t.events()[before..]
        .iter()
        .filter(|e| matches!(e, Event::Store { .. }))
        .count();
    ensure_eq!(stores, 1, "stores of a permission change");
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(_, a)| a.flags.write),
        Some(true),
        "CPU before the flush (stale)"
    );
    token.flush();
    verdict(&t, true, "update, flushed")?;
    ensure_eq!(tlb.leaf_flushes(), flushes + 1, "leaf flushes");
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(_, a)| a.flags),
        Some(Flags::RO),
        "CPU after the flush"
    );
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// A memory-type change (write-back → device) goes through break-before-make where the format
/// requires it: invalid, leaf invalidation, new entry, in that order; elsewhere one store.
pub fn update_flags_memory_type_breaks_before_make<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let (v, p) = (va(spec, 0x8000), pa(spec, 0x8000));
    let device = Flags {
        write: true,
        ..Flags::DEVICE
    };
    map(&mut pt, v, p, PageSize::Size4K, Flags::RW)?;
    ensure!(cpu(&tlb, &mem, &pt, v).is_some(), "CPU before");
    let bbm = arch.needs_break_before_make(
        arch.leaf_entry(p, 0, Flags::RW.into()),
        arch.leaf_entry(p, 0, device.into()),
        0,
    );
    let before = t.events().len();
    let flushes = tlb.leaf_flushes();
    // SAFETY: emulated tables.
    let token = unsafe { pt.update_flags(v, PageSize::Size4K, device) }
        .map_err(|e| format!("update: {e}"))?;
    verdict(&t, false, "memory-type change")?;
    let log: Vec<Event> = t.events()[before..].to_vec();
    let shape: Vec<&str> = log
        .iter()
        .map(|e| match e {
            Event::Store { new: 0, .. } => "break",
            Event::Store { old: 0, .. } => "make",
            Event::Store { .. } => "store",
            Event::FlushLeaf(_) | Event::FlushPage(_) | Event::FlushAll => "flush",
            _ => "other",
        })
        .collect();
    if bbm {
        ensure_eq!(
            shape,
            ["break", "flush", "make"],
            "break-before-make sequence"
        );
        ensure_eq!(tlb.leaf_flushes(), flushes + 1, "internal leaf flush");
    } else {
        ensure_eq!(shape, ["store"], "in-place change");
    }
    token.flush();
    verdict(&t, true, "memory-type change, flushed")?;
    ensure_eq!(
        cpu(&tlb, &mem, &pt, v).map(|(p, a)| (p, a.flags)),
        Some((p, device.canonical())),
        "CPU after"
    );
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// Under a restricted parent (no write, no execute), mapping a writable page in a new leaf
/// table pushes the restriction down, orders it, then widens the parent; the new page gets what
/// it asks for, the siblings keep exactly what they had; an executable page likewise.
pub fn widening_pushes_down_then_widens<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let Some(limits) = restrict_parent(&t, &mut pt, spec)? else {
        return Ok(()); // no hierarchical limits in this format
    };
    let n = va(spec, 2 * MIB2);
    let barriers = tlb.order_barriers();
    // SAFETY: emulated tables.
    let token = unsafe { pt.map(n, pa(spec, 0x2000), PageSize::Size4K, Flags::RW) }
        .map_err(|e| format!("map under the restriction: {e}"))?;
    ensure!(
        token.invalidates_walks(),
        "a widening map must owe a walk-cache invalidation"
    );
    verdict(&t, false, "widening map")?;
    token.flush();
    verdict(&t, true, "widening map, flushed")?;
    ensure!(
        tlb.order_barriers() >= barriers + 2,
        "push-down and new table each ordered ({} barriers)",
        tlb.order_barriers() - barriers
    );
    ensure_eq!(flags_at(&pt, n)?, Flags::RW, "new page");
    ensure_eq!(
        cpu(&tlb, &mem, &pt, n).map(|(_, a)| a.flags),
        Some(Flags::RW),
        "CPU at the new page"
    );
    siblings_unchanged(&tlb, &mem, &pt, spec, limits)?;
    // An executable page in the same restricted region.
    let x = va(spec, 2 * MIB2 + 0x1000);
    map(&mut pt, x, pa(spec, 0x3000), PageSize::Size4K, Flags::RX)?;
    verdict(&t, true, "executable map")?;
    ensure_eq!(flags_at(&pt, x)?, Flags::RX, "new executable page");
    siblings_unchanged(&tlb, &mem, &pt, spec, limits)?;
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// The same through the walker's cached leaf table: a map next to a sibling whose walk was
/// cached with the restriction must still widen.
pub fn widening_through_the_cached_leaf_table<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let Some(limits) = restrict_parent(&t, &mut pt, spec)? else {
        return Ok(());
    };
    // Cache the leaf table of s1 (and its limits) in the walker.
    flags_at(&pt, va(spec, 0))?;
    let n = va(spec, 0x1000);
    map(&mut pt, n, pa(spec, 0x2000), PageSize::Size4K, Flags::RW)?;
    verdict(&t, true, "map next to a cached sibling")?;
    ensure_eq!(flags_at(&pt, n)?, Flags::RW, "new page next to the sibling");
    ensure_eq!(
        cpu(&tlb, &mem, &pt, n).map(|(_, a)| a.flags),
        Some(Flags::RW),
        "CPU at the new page"
    );
    siblings_unchanged(&tlb, &mem, &pt, spec, limits)?;
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// `update_flags` to writable under a no-write parent widens the parent (after pushing the
/// restriction down); the siblings keep theirs.
pub fn update_flags_widens_restricted_parent<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    let Some(limits) = restrict_parent(&t, &mut pt, spec)? else {
        return Ok(());
    };
    let u = va(spec, 0x1000);
    map(&mut pt, u, pa(spec, 0x2000), PageSize::Size4K, Flags::RO)?;
    ensure_eq!(flags_at(&pt, u)?, Flags::RO, "read-only page");
    // SAFETY: emulated tables.
    let token = unsafe { pt.update_flags(u, PageSize::Size4K, Flags::RW) }
        .map_err(|e| format!("update: {e}"))?;
    let walks = token.invalidates_walks();
    token.flush();
    verdict(&t, true, "widening update")?;
    ensure_eq!(flags_at(&pt, u)?, Flags::RW, "updated page");
    ensure!(
        walks,
        "a widening update must owe a walk-cache invalidation"
    );
    ensure_eq!(
        cpu(&tlb, &mem, &pt, u).map(|(_, a)| a.flags),
        Some(Flags::RW),
        "CPU at the updated page"
    );
    siblings_unchanged(&tlb, &mem, &pt, spec, limits)?;
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    verdict(&t, true, "destroy")
}

/// `destroy` invalidates the whole address space before it frees the tables: a new table on the
/// same CPU (same TLB model) that reuses the frames sees its own translations, not cached
/// leaves or walks of the destroyed one.
pub fn destroy_invalidates_before_frames_are_reused<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let (mem, tlb) = rig(spec);
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut old = table(&t)?;
    let (v, w) = (va(spec, 0x4000), va(spec, 0x5000));
    map(&mut old, v, pa(spec, 0x4000), PageSize::Size4K, Flags::RW)?;
    ensure!(cpu(&tlb, &mem, &old, v).is_some(), "CPU in the old table");
    let frames: Vec<PhyAddr> = t
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Alloc(f) => Some(*f),
            _ => None,
        })
        .collect();
    // SAFETY: emulated tables, not active.
    unsafe { old.destroy() };
    verdict(&t, true, "destroy")?;
    ensure_eq!(tlb.full_flushes(), 1, "full flushes by destroy");
    let mut new = table(&t)?;
    map(&mut new, v, pa(spec, 0x8000), PageSize::Size4K, Flags::RO)?;
    map(&mut new, w, pa(spec, 0x9000), PageSize::Size4K, Flags::RO)?;
    let reused = t
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Alloc(f) if frames.contains(f)))
        .count();
    ensure!(reused > 0, "the new table should reuse the old frames");
    ensure_eq!(
        cpu(&tlb, &mem, &new, v).map(|(p, a)| (p, a.flags)),
        Some((pa(spec, 0x8000), Flags::RO)),
        "CPU at a page both tables map"
    );
    ensure_eq!(
        cpu(&tlb, &mem, &new, w).map(|(p, _)| p),
        Some(pa(spec, 0x9000)),
        "CPU at a page only the new table maps"
    );
    verdict(&t, true, "new table")?;
    // SAFETY: emulated tables.
    unsafe { new.destroy() };
    verdict(&t, true, "destroy")
}

/// An allocator whose frames lie above the output size: the root (the one frame below) is
/// usable, every further table frame is refused with `TableFrameTooWide`, nothing is linked,
/// the frame goes back, and repeating leaks nothing.
pub fn table_frame_above_output_size_is_refused<A: Arch>(
    arch: A,
    spec: &OrderingSpec,
) -> Result<(), String> {
    let bits = arch.pa_bits();
    if bits >= 63 {
        return Ok(());
    }
    let limit = 1u64 << bits;
    let mem = EmuMemory::with_base(8, limit - 0x1000).ok_or("arena at the output limit")?;
    let tlb = EmuTlb::new();
    let t = Tracer::new(arch, &mem, Some(&tlb));
    let mut pt = table(&t)?;
    ensure_eq!(pt.root(), mem.base(), "root below the limit");
    for round in 0..3 {
        // SAFETY: emulated tables.
        let got = unsafe { pt.map(va(spec, 0), pa(spec, 0), PageSize::Size4K, Flags::RW) }
            .map(|f| f.flush());
        ensure_eq!(got, Err(MapError::TableFrameTooWide), "map, round {round}");
        ensure_eq!(mem.frames_in_use(), 1, "frames in use after round {round}");
        ensure_eq!(
            mem.allocations(),
            mem.frees() + 1,
            "allocations vs frees after round {round}"
        );
        for i in 0..crate::ENTRIES as u64 {
            ensure_eq!(
                mem.read_u64(PhyAddr::new(pt.root().as_u64() + 8 * i)),
                Some(0),
                "root entry {i} after round {round}"
            );
        }
        ensure!(
            !t.events().iter().any(|e| matches!(e, Event::Store { .. })),
            "nothing may be stored"
        );
    }
    verdict(&t, true, "refused maps")?;
    // SAFETY: emulated tables.
    unsafe { pt.destroy() };
    ensure_eq!(
        (mem.frames_in_use(), mem.bad_frees()),
        (0, 0),
        "(frames in use, bad frees) after destroy"
    );
    Ok(())
}
