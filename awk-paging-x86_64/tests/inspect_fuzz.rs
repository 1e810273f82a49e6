//! Property test of the foreign walker over random table bytes (the stable twin of the
//! `cargo fuzz` target in `fuzz/`): for every regime, on memory full of random entries biased
//! towards valid ones pointing back into the memory (so loops, shared tables and every
//! reserved encoding occur), a whole-space walk never panics, reads at most its budget of
//! entries, and agrees with single translations: every leaf it reports translates to exactly
//! that leaf, every hole faults, every loop is a loop for `translate` too.

use core::ops::ControlFlow;

use awk_paging::emu::EmuArch;
use awk_paging::inspect::{
    Broken, BrokenKind, Classify, Fault, ForeignTable, Hole, Leaf, RawDump, TranslationCache,
    Visitor, WalkError,
};
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_aarch64::{Half, VaSize, A64};
use awk_paging_x86_64::X86_64;

const BASE: u64 = 0x20_0000;
const FRAMES: u64 = 6;
const BUDGET: u64 = 20_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random memory: half the entries zero, the rest random low and high bits around an address
/// that is mostly one of the frames (sometimes just outside).
fn memory(seed: u64) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::with_capacity((FRAMES * 4096) as usize);
    for _ in 0..FRAMES * 512 {
        let x = r.next();
        let raw = if x.is_multiple_of(2) {
            0
        } else {
            let frame = match (x >> 8) % 8 {
                7 => BASE + (FRAMES + (x >> 16) % 3) * 0x1000, // outside the dump
                6 => x & 0x000f_ffff_ffff_f000,                // anywhere
                n => BASE + (n % FRAMES) * 0x1000,
            };
            let low = r.next() & 0xfff;
            let high = r.next() & 0xfff0_0000_0000_0000 & if x & (1 << 40) != 0 { !0 } else { 0 };
            frame | low | high | 1
        };
        out.extend_from_slice(&raw.to_le_bytes());
    }
    out
}

#[derive(Default)]
struct Seen {
    leaves: Vec<Leaf>,
    holes: Vec<Hole>,
    broken: Vec<Broken>,
}

impl Visitor for Seen {
    type Break = ();
    fn leaf(&mut self, l: &Leaf) -> ControlFlow<()> {
        self.leaves.push(*l);
        ControlFlow::Continue(())
    }
    fn hole(&mut self, h: &Hole) -> ControlFlow<()> {
        if self.holes.len() < 4096 {
            self.holes.push(*h);
        }
        ControlFlow::Continue(())
    }
    fn broken(&mut self, b: &Broken) -> ControlFlow<()> {
        self.broken.push(*b);
        ControlFlow::Continue(())
    }
}

fn check<A: Classify + core::fmt::Debug>(arch: A, seed: u64) -> (u64, u64) {
    let bytes = memory(seed);
    let t = ForeignTable::new(
        arch,
        RawDump::new(PhyAddr::new(BASE), &bytes),
        PhyAddr::new(BASE),
    )
    .with_budget(BUDGET);
    let mut seen = Seen::default();
    let walked = match t.walk(&mut seen) {
        Ok(w) => Some(w),
        Err(WalkError::Budget { .. }) => None,
        Err(e) => panic!("seed {seed} {arch:?}: {e:?}"),
    };
    if let Some(w) = walked {
        assert!(w.entries <= BUDGET);
        assert_eq!(w.leaves, seen.leaves.len() as u64);
    }
    for l in &seen.leaves {
        let r = t
            .translate(l.va)
            .unwrap_or_else(|e| panic!("seed {seed} {arch:?} {l:?}: {e}"));
        assert_eq!(
            (r.page, r.frame, r.size, r.raw, r.attrs),
            (l.va, l.frame, l.size, l.raw, l.attrs)
        );
        assert_eq!(r.access, arch.access(l.raw, l.level, l.limits));
    }
    for h in &seen.holes {
        match t.translate(h.va) {
            Err(Fault::NotMapped { level }) => {
                assert_eq!(level, h.level);
                assert!(arch.invalid(h.raw, h.level).is_not_present());
            }
            Err(Fault::Invalid { level, raw, why }) => {
                assert_eq!(
                    (level, raw, why),
                    (h.level, h.raw, arch.invalid(h.raw, h.level))
                );
                assert!(!why.is_not_present());
            }
            other => panic!("seed {seed} {arch:?} hole {h:?}: {other:?}"),
        }
    }
    for b in &seen.broken {
        let r = t.translate(b.va);
        match b.kind {
            BrokenKind::Loop(table) => {
                assert_eq!(
                    r,
                    Err(Fault::Loop {
                        level: b.level,
                        table
                    }),
                    "seed {seed} {b:?}"
                )
            }
            BrokenKind::Unreadable(_) => {
                assert!(
                    matches!(r, Err(Fault::Unreadable { .. })),
                    "seed {seed} {b:?}: {r:?}"
                )
            }
            _ => assert!(
                matches!(r, Err(Fault::Malformed { .. })),
                "seed {seed} {b:?}: {r:?}"
            ),
        }
    }
    // Random addresses: translate, batch and cache agree and never panic.
    let mut rng = Rng(seed | 1);
    let vas: Vec<VirtAddr> = (0..256)
        .map(|_| {
            let x = rng.next();
            VirtAddr::new(if x.is_multiple_of(4) {
                x
            } else {
                arch.va_from_bits(x).as_u64()
            })
        })
        .collect();
    let single: Vec<_> = vas.iter().map(|&v| t.translate(v)).collect();
    let mut batch = Vec::new();
    t.translate_many(vas.iter().copied(), |_, r| batch.push(r));
    assert_eq!(batch, single);
    let mut cache = TranslationCache::<16>::new();
    let mut cached = Vec::new();
    cache.translate_many(&t, vas.iter().copied(), |_, r| cached.push(r));
    assert_eq!(cached, single);
    (seen.leaves.len() as u64, seen.broken.len() as u64)
}

#[test]
fn random_tables_never_panic_and_walks_agree_with_translations() {
    let seeds = if cfg!(miri) { 2 } else { 150 };
    let (mut leaves, mut broken) = (0, 0);
    for seed in 0..seeds {
        for (l, b) in [
            check(X86_64::new(), seed),
            check(X86_64::new().with_1g_pages(true).with_pa_bits(40), seed),
            check(A64::new(VaSize::Bits48, Half::Lower), seed),
            check(A64::new(VaSize::Bits39, Half::Upper).with_pa_bits(40), seed),
            check(EmuArch::default(), seed),
        ] {
            leaves += l;
            broken += b;
        }
    }
    // The generator must reach the interesting cases, or the test proves little.
    assert!(
        leaves > 1000 && broken > 100,
        "{leaves} leaves, {broken} broken"
    );
}
