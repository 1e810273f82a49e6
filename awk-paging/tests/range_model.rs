//! The range engine against its model, with the emulator's reference format. Sequences per run:
//! `AWK_MODEL_SEQUENCES` (default 10,000).

use awk_paging::emu::{model, EmuArch};
use awk_paging::VirtAddr;

fn sequences() -> usize {
    std::env::var("AWK_MODEL_SEQUENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        // Miri interprets every instruction: a few sequences there, the full count natively.
        .unwrap_or(if cfg!(miri) { 4 } else { 10_000 })
}

#[test]
fn emu_format_agrees_with_the_model() {
    let stats = model::run(
        EmuArch::default(),
        VirtAddr::new(0x40_0000_0000),
        1,
        sequences(),
        8,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{stats:?}");
    // Enough sequences always hit conflicts, injected failures and splits.
    assert!(
        sequences() < 100 || (stats.errors > 0 && stats.splits > 0),
        "{stats:?}"
    );
}
