//! The range engine against its model on the four AArch64 regimes (48- and 39-bit VA, TTBR0
//! and TTBR1). Sequences per regime: `AWK_MODEL_SEQUENCES` (default 10,000).

use awk_paging::emu::model;
use awk_paging::VirtAddr;
use awk_paging_aarch64::{Half, VaSize, A64};

fn sequences() -> usize {
    std::env::var("AWK_MODEL_SEQUENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        // Miri interprets every instruction: a few sequences there, the full count natively.
        .unwrap_or(if cfg!(miri) { 4 } else { 10_000 })
}

fn check(va: VaSize, half: Half, base: u64) {
    let stats = model::run(A64::new(va, half), VirtAddr::new(base), 11, sequences(), 8)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{va:?} {half:?}: {stats:?}");
    assert_eq!(stats.sequences, sequences());
    // Enough sequences always hit conflicts, injected failures and splits.
    assert!(
        sequences() < 100 || (stats.errors > 0 && stats.splits > 0),
        "{stats:?}"
    );
}

#[test]
fn ttbr0_48_bit_agrees_with_the_model() {
    check(VaSize::Bits48, Half::Lower, 0x0000_0040_0000_0000);
}

#[test]
fn ttbr1_48_bit_agrees_with_the_model() {
    check(VaSize::Bits48, Half::Upper, 0xffff_8000_0000_0000);
}

#[test]
fn ttbr0_39_bit_agrees_with_the_model() {
    check(VaSize::Bits39, Half::Lower, 0x0000_0010_0000_0000);
}

#[test]
fn ttbr1_39_bit_agrees_with_the_model() {
    check(VaSize::Bits39, Half::Upper, 0xffff_ff80_0000_0000);
}
