//! What every implementation provides (one page at a time) and the timed loops that drive it.
//!
//! Each loop is one `#[inline(never)]` function per implementation, operation, page size and
//! call shape, so every operation has exactly one call site per shape:
//!
//! - **inlined**: the loop calls the implementation's operation directly (whatever of it the
//!   compiler inlines into the loop, with the page size a constant);
//! - **non-inlined**: the loop calls an `#[inline(never)]` wrapper that takes the addresses and
//!   the page size as arguments (the shape of the seed API, or of any call across a kernel's
//!   module boundary).
//!
//! Every operation returns `Some(value)` (1 for map and protect, the physical address for
//! translate, the frame for unmap where the API returns it) or `None` on failure; the loop adds
//! the values up, and the sum is compared with the expected one after the clock stopped.

use std::time::{Duration, Instant};

/// The two page sizes measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    K4,
    M2,
}

impl Size {
    pub const fn bytes(self) -> u64 {
        match self {
            Size::K4 => 0x1000,
            Size::M2 => 0x20_0000,
        }
    }

    pub const fn from_huge(huge: bool) -> Size {
        if huge {
            Size::M2
        } else {
            Size::K4
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Size::K4 => "4 KiB",
            Size::M2 => "2 MiB",
        }
    }
}

/// The per-page operations, in the order a round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Map,
    Translate,
    Protect,
    Unmap,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Map, Op::Translate, Op::Protect, Op::Unmap];

    pub const fn label(self) -> &'static str {
        match self {
            Op::Map => "map",
            Op::Translate => "translate",
            Op::Protect => "protect",
            Op::Unmap => "unmap",
        }
    }
}

/// The pages of one scenario: `order[k]` is the index of the k-th page an operation touches;
/// page `i` is `va_base + i * size` mapped to `pa_base + i * size`.
pub struct Workload {
    pub size: Size,
    pub order: Vec<u32>,
    pub va_base: u64,
    pub pa_base: u64,
}

impl Workload {
    pub fn pages(&self) -> usize {
        self.order.len()
    }

    /// The sum an operation's loop must arrive at.
    pub fn expected(&self, op: Op, unmap_returns_frame: bool) -> u64 {
        let n = self.order.len() as u64;
        let pas = || {
            (0..n).fold(0u64, |s, i| {
                s.wrapping_add(self.pa_base + i * self.size.bytes())
            })
        };
        match op {
            Op::Map | Op::Protect => n,
            Op::Translate => pas(),
            Op::Unmap if unmap_returns_frame => pas(),
            Op::Unmap => n,
        }
    }
}

/// One implementation's per-page API on one fresh address space.
pub trait Subject: Sized {
    /// Whether `unmap` returns the frame it unmapped (else it returns 1).
    const UNMAP_RETURNS_FRAME: bool = true;

    /// A new, empty address space (tables from the arena).
    fn new() -> Self;
    /// Maps `va` to `pa` read-write (non-executable, write-back).
    fn map(&mut self, va: u64, pa: u64, size: Size) -> Option<u64>;
    /// The physical address `va` (the start of a page of `size`) translates to.
    fn translate(&mut self, va: u64, size: Size) -> Option<u64>;
    /// Makes the page at `va` read-only.
    fn protect(&mut self, va: u64, size: Size) -> Option<u64>;
    /// Unmaps the page at `va`.
    fn unmap(&mut self, va: u64, size: Size) -> Option<u64>;
    /// Gives every table frame back to the arena (not timed).
    fn teardown(self);
}

// ---- the non-inlined shape: one real call per operation --------------------------------------

#[inline(never)]
pub fn map_call<S: Subject>(s: &mut S, va: u64, pa: u64, size: Size) -> Option<u64> {
    s.map(va, pa, size)
}

#[inline(never)]
pub fn translate_call<S: Subject>(s: &mut S, va: u64, size: Size) -> Option<u64> {
    s.translate(va, size)
}

#[inline(never)]
pub fn protect_call<S: Subject>(s: &mut S, va: u64, size: Size) -> Option<u64> {
    s.protect(va, size)
}

#[inline(never)]
pub fn unmap_call<S: Subject>(s: &mut S, va: u64, size: Size) -> Option<u64> {
    s.unmap(va, size)
}

#[cold]
#[inline(never)]
fn failed(what: &str, k: usize) -> ! {
    panic!("{what} failed at the {k}-th page")
}

/// One op's loop: the body is `$call(va, pa, size)`; times the loop, returns the sum.
macro_rules! timed_loop {
    ($name:ident, $what:literal, |$s:ident, $va:ident, $pa:ident, $size:ident| $inline:expr, $outlined:expr) => {
        #[inline(never)]
        fn $name<S: Subject, const HUGE: bool, const OUTLINED: bool>(
            $s: &mut S,
            w: &Workload,
        ) -> (Duration, u64) {
            let $size = Size::from_huge(HUGE);
            let step = $size.bytes();
            let (vb, pb) = (w.va_base, w.pa_base);
            let mut acc = 0u64;
            let start = Instant::now();
            for (k, &i) in w.order.iter().enumerate() {
                let $va = vb + u64::from(i) * step;
                let $pa = pb + u64::from(i) * step;
                let _ = $pa;
                let r = if OUTLINED { $outlined } else { $inline };
                match r {
                    Some(v) => acc = acc.wrapping_add(v),
                    None => failed($what, k),
                }
            }
            (start.elapsed(), acc)
        }
    };
}

timed_loop!(
    map_loop,
    "map",
    |s, va, pa, size| s.map(va, pa, size),
    map_call(s, va, pa, std::hint::black_box(size))
);
timed_loop!(
    translate_loop,
    "translate",
    |s, va, pa, size| s.translate(va, size),
    translate_call(s, va, std::hint::black_box(size))
);
timed_loop!(
    protect_loop,
    "protect",
    |s, va, pa, size| s.protect(va, size),
    protect_call(s, va, std::hint::black_box(size))
);
timed_loop!(
    unmap_loop,
    "unmap",
    |s, va, pa, size| s.unmap(va, size),
    unmap_call(s, va, std::hint::black_box(size))
);

/// What one round of a per-page scenario measured.
pub struct RoundResult {
    /// Time of each operation's loop, in [`Op::ALL`] order.
    pub times: [Duration; 4],
    /// Table frames outstanding after unmapping everything.
    pub frames_unmapped: usize,
    /// The most table frames outstanding at once during the round.
    pub frames_peak: usize,
}

/// One round on a fresh address space: map, translate, protect, unmap every page of `w` in its
/// order, each loop timed and its sum checked; then the tables go back to the arena.
#[inline(never)]
pub fn round<S: Subject, const HUGE: bool, const OUTLINED: bool>(w: &Workload) -> RoundResult {
    assert_eq!(w.size, Size::from_huge(HUGE));
    let base = crate::arena::outstanding();
    crate::arena::reset_order();
    let mut s = S::new();
    let mut times = [Duration::ZERO; 4];
    let check = |op: Op, got: u64| {
        let want = w.expected(op, S::UNMAP_RETURNS_FRAME);
        assert_eq!(got, want, "{} sum", op.label());
    };
    let (t, sum) = map_loop::<S, HUGE, OUTLINED>(&mut s, w);
    check(Op::Map, sum);
    times[0] = t;
    let (t, sum) = translate_loop::<S, HUGE, OUTLINED>(&mut s, w);
    check(Op::Translate, sum);
    times[1] = t;
    let (t, sum) = protect_loop::<S, HUGE, OUTLINED>(&mut s, w);
    check(Op::Protect, sum);
    times[2] = t;
    let (t, sum) = unmap_loop::<S, HUGE, OUTLINED>(&mut s, w);
    check(Op::Unmap, sum);
    times[3] = t;
    let frames_unmapped = crate::arena::outstanding() - base;
    let frames_peak = crate::arena::peak() - base;
    s.teardown();
    assert_eq!(crate::arena::outstanding(), base, "tables leaked");
    RoundResult {
        times,
        frames_unmapped,
        frames_peak,
    }
}
