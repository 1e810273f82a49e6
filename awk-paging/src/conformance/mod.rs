//! The conformance suite: one set of checks every backend runs against itself — on the host over
//! the emulator, and inside the QEMU kernels over real memory.
//!
//! A backend describes its environment with a [`Harness`] (how to get a fresh table, a free VA
//! window, which bad addresses must fail how). [`checks`] are pure table-logic checks that work
//! everywhere; [`tlb_checks`] need a harness that can [`observe`](Harness::observe) what the CPU
//! sees (the host emulator's TLB model). On the host, [`conformance_tests!`](crate::conformance_tests)
//! turns every check into its own `#[test]`.

// Failures are formatted into a fixed buffer because the suite also runs without an allocator.
#![allow(clippy::result_large_err)]

mod failure;
#[cfg(feature = "std")]
pub mod ordering_checks;
#[cfg(feature = "std")]
mod ordering_range;
mod range_checks;
mod table_checks;
mod tlb_checks;

pub use failure::Failure;

use crate::arch::Arch;
use crate::{
    AddrError, CountingFrames, FrameAllocator, PageTable, PhyAddr, PhysMem, Tlb, VirtAddr,
};

/// The page-table type a harness produces.
pub type TableOf<H> = PageTable<
    <H as Harness>::Arch,
    <H as Harness>::Mem,
    CountingFrames<<H as Harness>::Frames>,
    <H as Harness>::Tlb,
>;

/// What the CPU sees at an address (for the TLB checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The access reaches this physical address; the `bool` says whether it may write.
    Mapped(PhyAddr, bool),
    /// The access faults.
    Fault,
}

/// A backend's test environment.
pub trait Harness {
    /// Descriptor format under test.
    type Arch: Arch;
    /// Physical-memory accessor.
    type Mem: PhysMem;
    /// Frame allocator for page tables (wrapped in [`CountingFrames`] by the suite).
    type Frames: FrameAllocator;
    /// TLB hook.
    type Tlb: Tlb + Clone;

    /// A fresh, empty page table with a counting allocator (counters at zero, no budget).
    fn fresh(&mut self) -> Result<TableOf<Self>, Failure>;

    /// Takes back the allocator of a destroyed table.
    fn give_back(&mut self, frames: Self::Frames);

    /// A 1 GiB-aligned virtual window of at least 2 GiB that fresh tables may map freely.
    fn va_window(&self) -> VirtAddr;

    /// A 1 GiB-aligned physical window of at least 2 GiB the suite maps (never accessed
    /// through the mappings unless [`observe`](Self::observe) does so).
    fn pa_window(&self) -> PhyAddr;

    /// Virtual addresses this regime must reject, with the reason.
    fn bad_vas(&self) -> &[(VirtAddr, AddrError)];

    /// What the CPU sees at `va` with `table` active; `None` if this harness cannot tell
    /// (then the [`tlb_checks`] are not run).
    fn observe(&mut self, _table: &TableOf<Self>, _va: VirtAddr) -> Option<Observed> {
        None
    }
}

/// One named check.
pub struct Check<H: ?Sized> {
    /// Stable name (used as the test name).
    pub name: &'static str,
    /// The check.
    pub run: fn(&mut H) -> Result<(), Failure>,
}

/// The single list of check names. Calls back `$cb! { [$extra] list: [names], ... }`, so the
/// check modules here and the `#[test]` generator for other crates come from one list.
#[doc(hidden)]
#[macro_export]
macro_rules! __awk_check_names {
    ([$($cb:tt)*] $($extra:tt)*) => {
        $($cb)*! { [$($extra)*]
            table_checks: [
                map_translate_unmap_round_trip,
                flags_readback_all_combinations,
                write_execute_allowed_by_policy,
                user_and_global_readback,
                already_mapped_is_rejected,
                unmap_of_unmapped_is_rejected,
                unaligned_addresses_are_rejected,
                bad_virtual_addresses_are_rejected,
                physical_address_width_is_enforced,
                out_of_memory_at_every_allocation_rolls_back,
                update_flags_changes_attributes_only,
                huge_pages_map_and_translate,
                huge_page_conflicts_are_rejected,
                destroy_frees_every_table,
                leaf_address_bits_pass_through,
            ],
            range_checks: [
                range_map_uses_the_largest_pages,
                range_unmap_splits_huge_pages_at_both_ends,
                range_protect_double_splits_a_gigabyte_page,
                range_out_of_memory_at_every_allocation_rolls_back,
                range_unmap_reclaims_emptied_tables,
                range_reclaimed_span_takes_a_huge_page,
                range_alloc_takes_and_returns_every_frame,
                range_unmap_reports_each_page_as_mapped,
            ],
            tlb_checks: [
                stale_translation_without_flush,
                fresh_translation_after_flush,
                stale_permissions_until_update_is_flushed,
                range_changes_seen_after_finish,
            ]
        }
    };
}

macro_rules! define_lists {
    ([] $($list:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        $(
            #[doc = concat!("The checks of `", stringify!($list), "`.")]
            pub mod $list {
                use super::super::{Check, Harness};
                /// Every check of this list, in order.
                #[must_use]
                pub fn list<H: Harness>() -> [Check<H>; COUNT] {
                    [ $( Check { name: stringify!($name), run: super::super::$list::$name::<H> } ),* ]
                }
                /// The names of the checks, in order.
                pub const NAMES: &[&str] = &[$(stringify!($name)),*];
                /// How many checks the list has.
                pub const COUNT: usize = NAMES.len();
            }
        )*
    };
}

/// Check lists: `lists::table_checks` and `lists::range_checks` run everywhere;
/// `lists::tlb_checks` need [`Harness::observe`].
pub mod lists {
    crate::__awk_check_names!([define_lists]);
}

/// The table-logic checks (run on every harness).
#[must_use]
pub fn checks<H: Harness>() -> [Check<H>; lists::table_checks::COUNT] {
    lists::table_checks::list::<H>()
}

/// The range-engine checks (run on every harness).
#[must_use]
pub fn range_checks<H: Harness>() -> [Check<H>; lists::range_checks::COUNT] {
    lists::range_checks::list::<H>()
}

/// The TLB checks (run where [`Harness::observe`] works).
#[must_use]
pub fn tlb_checks<H: Harness>() -> [Check<H>; lists::tlb_checks::COUNT] {
    lists::tlb_checks::list::<H>()
}

/// Runs every applicable check on `harness`, calling `report(name, result)` after each.
/// Returns `(passed, failed)`.
pub fn run_all<H: Harness>(
    harness: &mut H,
    mut report: impl FnMut(&'static str, &Result<(), Failure>),
) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    let tlb_capable = match harness.fresh() {
        Ok(t) => {
            let ok = harness.observe(&t, harness.va_window()).is_some();
            // SAFETY: fresh, never activated.
            let frames = unsafe { t.destroy() };
            harness.give_back(frames.into_inner());
            ok
        }
        Err(_) => false,
    };
    let tlb = tlb_checks::<H>();
    let tlb: &[Check<H>] = if tlb_capable { &tlb } else { &[] };
    for check in checks::<H>().iter().chain(&range_checks::<H>()).chain(tlb) {
        let r = (check.run)(harness);
        if r.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
        report(check.name, &r);
    }
    (passed, failed)
}

/// Declares one `#[test]` per conformance check for a harness built by `$make` (an expression
/// evaluated afresh in every test).
///
/// ```ignore
/// awk_paging::conformance_tests!(my_backend_harness());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__awk_check_names!([$crate::__awk_conformance_tests] $make);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __awk_conformance_tests {
    ([$make:expr] $($list:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        $($(
            #[test]
            fn $name() {
                let mut h = $make;
                let all = $crate::conformance::lists::$list::list();
                let check = all
                    .iter()
                    .find(|c| c.name == stringify!($name))
                    .expect("check exists");
                if let Err(e) = (check.run)(&mut h) {
                    panic!("{}: {}", stringify!($name), e);
                }
            }
        )*)*
    };
}
