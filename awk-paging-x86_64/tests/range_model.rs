//! The range engine against its model on the x86_64 regime (both halves, 1 GiB pages on).
//! Sequences per run: `AWK_MODEL_SEQUENCES` (default 10,000).

use awk_paging::emu::model;
use awk_paging::VirtAddr;
use awk_paging_x86_64::X86_64;

fn sequences() -> usize {
    std::env::var("AWK_MODEL_SEQUENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        // Miri interprets every instruction: a few sequences there, the full count natively.
        .unwrap_or(if cfg!(miri) { 4 } else { 10_000 })
}

fn check(base: u64) {
    let regime = X86_64::new().with_1g_pages(true);
    let stats = model::run(regime, VirtAddr::new(base), 7, sequences(), 8)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{stats:?}");
    assert_eq!(stats.sequences, sequences());
    // Enough sequences always hit conflicts, injected failures and splits.
    assert!(
        sequences() < 100 || (stats.errors > 0 && stats.splits > 0),
        "{stats:?}"
    );
}

#[test]
fn lower_half_agrees_with_the_model() {
    check(0x0000_0040_0000_0000);
}

#[test]
fn upper_half_agrees_with_the_model() {
    check(0xffff_8000_0000_0000);
}
