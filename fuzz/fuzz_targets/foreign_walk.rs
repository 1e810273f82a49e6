//! The foreign walker on arbitrary bytes: the first byte picks the regime and the root frame,
//! the rest is physical memory from 0x10_0000 on (a short input is a partial root table whose
//! missing entries are unreadable). Whatever the bytes, a whole-space walk must
//! not panic, must stay within its budget of entries, and must agree with single translations
//! (every leaf it reports translates to exactly that leaf; every hole faults; every loop is a
//! loop for `translate` too); batches and the cache must equal single translations.
#![no_main]

use core::ops::ControlFlow;

use awk_paging::emu::EmuArch;
use awk_paging::inspect::{
    Broken, BrokenKind, Classify, Fault, ForeignTable, Hole, Leaf, RawDump, TranslationCache,
    Visitor, WalkError,
};
use awk_paging::{PhyAddr, VirtAddr};
use awk_paging_aarch64::{Half, VaSize, A64};
use awk_paging_x86_64::X86_64;
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x10_0000;
const BUDGET: u64 = 1 << 14;

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
        if h.raw != 0 {
            self.holes.push(*h);
        }
        ControlFlow::Continue(())
    }
    fn broken(&mut self, b: &Broken) -> ControlFlow<()> {
        self.broken.push(*b);
        ControlFlow::Continue(())
    }
}

fn check<A: Classify>(arch: A, mem: &[u8], root: u64) {
    let t = ForeignTable::new(arch, RawDump::new(PhyAddr::new(BASE), mem), PhyAddr::new(root))
        .with_budget(BUDGET);
    let mut seen = Seen::default();
    match t.walk(&mut seen) {
        Ok(w) => assert!(w.entries <= BUDGET),
        Err(WalkError::Budget { .. }) => {}
        Err(e) => panic!("{e:?}"),
    }
    for l in &seen.leaves {
        let r = t.translate(l.va).expect("a reported leaf translates");
        assert_eq!((r.page, r.frame, r.size, r.raw), (l.va, l.frame, l.size, l.raw));
        assert_eq!(r.access, arch.access(l.raw, l.level, l.limits));
    }
    for h in &seen.holes {
        match t.translate(h.va) {
            Err(Fault::NotMapped { level }) => assert_eq!(level, h.level),
            Err(Fault::Invalid { level, raw, .. }) => assert_eq!((level, raw), (h.level, h.raw)),
            other => panic!("hole {h:?}: {other:?}"),
        }
    }
    for b in &seen.broken {
        if let BrokenKind::Loop(table) = b.kind {
            assert_eq!(t.translate(b.va), Err(Fault::Loop { level: b.level, table }));
        }
    }
    let vas: Vec<VirtAddr> = mem
        .chunks_exact(8)
        .take(64)
        .map(|c| VirtAddr::new(u64::from_le_bytes(c.try_into().unwrap())))
        .collect();
    let single: Vec<_> = vas.iter().map(|&v| t.translate(v)).collect();
    let mut batch = Vec::new();
    t.translate_many(vas.iter().copied(), |_, r| batch.push(r));
    assert_eq!(batch, single);
    let mut cache = TranslationCache::<8>::new();
    let mut cached = Vec::new();
    cache.translate_many(&t, vas.iter().copied(), |_, r| cached.push(r));
    assert_eq!(cached, single);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mem)) = data.split_first() else {
        return;
    };
    // The root is one of the frames the input holds (the first one for short inputs).
    let frames = (mem.len() as u64 / 0x1000).max(1);
    let root = BASE + 0x1000 * (u64::from(sel >> 3) % frames);
    match sel & 7 {
        0 => check(X86_64::new(), mem, root),
        1 => check(X86_64::new().with_1g_pages(true).with_pa_bits(40), mem, root),
        2 => check(A64::new(VaSize::Bits48, Half::Lower), mem, root),
        3 => check(A64::new(VaSize::Bits39, Half::Lower), mem, root),
        4 => check(A64::new(VaSize::Bits48, Half::Upper).with_pa_bits(40), mem, root),
        5 => check(A64::new(VaSize::Bits39, Half::Upper), mem, root),
        _ => check(EmuArch::default(), mem, root),
    }
});
