//! `cargo xtask bench`: awk-paging against every peer on identical terms, in one binary.
//!
//! Every implementation gets the same physical memory and frame allocator ([`arena`]), the same
//! build (this bench's profile: thin LTO, one codegen unit), no TLB maintenance (the tables are
//! never active on the host) and the same timed loops ([`subject`]). One warm-up round, then
//! `--rounds` timed rounds, each running every scenario once (round-robin, so drift of the
//! machine spreads over all of them); the report gives medians (and minimums) in ns per page,
//! each also as a multiple of the memory-traffic limit ([`limit`]), and ratios awk ÷ fastest
//! peer.
//!
//! Arguments (after `--`): `--smoke` (small workloads, one round: checks that everything runs
//! and every result is right, in seconds), `--rounds N`, `--only NAME` (only the columns whose
//! name contains NAME) and `--workload K` (only the K-th workload: 0..4 = 4 KiB sequential,
//! 4 KiB scattered, 2 MiB sequential, 2 MiB scattered), e.g. to profile one implementation
//! with `perf record`.
//!
//! Implementations: awk-paging (`X86_64`, `A64` regimes), the `x86_64` crate
//! ([`x86_crate`]), `page_table_multiarch` with its x86_64 entry and with an AArch64 entry
//! written here ([`ptm`]), `aarch64-paging` ([`a64paging`]); range calls ([`range`]) and the
//! seed static API ([`seed`]).

mod a64paging;
mod arena;
mod awk;
mod limit;
mod ptm;
mod range;
mod report;
mod seed;
mod subject;
mod x86_crate;

use awk_paging_aarch64::{AArch64, A64};
use awk_paging_x86_64::{X86, X86_64};

use report::{Key, Samples};
use subject::{round, Op, RoundResult, Size, Subject, Workload};

/// Virtual and physical bases of every workload (lower half in both regimes; the physical
/// addresses mapped are never accessed). The physical base is 2 MiB- but not 1 GiB-aligned, so
/// range calls that pick the largest page that fits use 2 MiB pages at most, for everyone.
const VA_BASE: u64 = 0x0000_1000_0000_0000;
const PA_BASE: u64 = 0x1_0020_0000;

/// The page orders measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Order {
    Sequential,
    Scattered,
}

impl Order {
    pub const fn label(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Scattered => "scattered",
        }
    }
}

/// `0..n` in order, or in a fixed pseudo-random order (Fisher–Yates with xorshift64*, fixed
/// seed: the same permutation in every run).
fn page_order(n: usize, order: Order) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    if order == Order::Scattered {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..n).rev() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            v.swap(i, (r % (i as u64 + 1)) as usize);
        }
    }
    v
}

type PageFn = fn(&Workload) -> RoundResult;
type RangeFn = fn(&Workload) -> range::RangeResult;

/// One per-page implementation: its rounds for each page size and call shape.
struct PageSubject {
    name: &'static str,
    /// `[huge][outlined]`.
    rounds: [[PageFn; 2]; 2],
}

fn page_subject<S: Subject>(name: &'static str) -> PageSubject {
    PageSubject {
        name,
        rounds: [
            [round::<S, false, false>, round::<S, false, true>],
            [round::<S, true, false>, round::<S, true, true>],
        ],
    }
}

pub const AWK_X86: &str = "awk X86_64";
pub const AWK_A64: &str = "awk A64";
pub const X86_PAGE: &str = "x86_64 translate_page";
pub const X86_ADDR: &str = "x86_64 translate_addr";
pub const PTM_X64: &str = "ptm X64PTE";
pub const PTM_A64: &str = "ptm A64 (own PTE)";
pub const A64_PAGING: &str = "aarch64-paging";
pub const AWK_X86_DROP: &str = "awk X86_64 drop_range";
pub const AWK_A64_DROP: &str = "awk A64 drop_range";
pub const SEED_X86: &str = "X86 seed";
pub const SEED_A64: &str = "AArch64 seed";
pub const LIMIT: &str = "limit";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // libtest's listing request (`cargo test --benches -- --list`): nothing to list.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|r| r.parse().expect("--rounds N"))
        .unwrap_or(if smoke { 1 } else { 21 });
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    let workload_only: Option<usize> = args
        .iter()
        .position(|a| a == "--workload")
        .and_then(|i| args.get(i + 1))
        .map(|k| k.parse().expect("--workload K"));

    arena::init();
    seed::install();

    let (pages_4k, pages_2m) = if smoke { (4096, 64) } else { (262_144, 8192) };
    let mut workloads = Vec::new();
    for (size, n) in [(Size::K4, pages_4k), (Size::M2, pages_2m)] {
        for order in [Order::Sequential, Order::Scattered] {
            let w = Workload {
                size,
                order: page_order(n, order),
                va_base: VA_BASE,
                pa_base: PA_BASE,
            };
            workloads.push((order, w));
        }
    }
    for (_, w) in &workloads {
        range::cross_check(w);
    }

    let subjects = [
        page_subject::<awk::Awk<X86_64>>(AWK_X86),
        page_subject::<awk::Awk<A64>>(AWK_A64),
        page_subject::<x86_crate::X86Crate<false>>(X86_PAGE),
        page_subject::<x86_crate::X86Crate<true>>(X86_ADDR),
        page_subject::<ptm::PtmX64>(PTM_X64),
        page_subject::<ptm::PtmA64>(PTM_A64),
        page_subject::<a64paging::A64Paging>(A64_PAGING),
    ];
    let seeds: [(&str, PageFn); 2] = [
        (SEED_X86, round::<seed::Seed<X86>, false, true>),
        (SEED_A64, round::<seed::Seed<AArch64>, false, true>),
    ];
    let ranges: [(&str, RangeFn); 7] = [
        (AWK_X86, range::round::<range::AwkRange<X86_64, false>>),
        (AWK_A64, range::round::<range::AwkRange<A64, false>>),
        (AWK_X86_DROP, range::round::<range::AwkRange<X86_64, true>>),
        (AWK_A64_DROP, range::round::<range::AwkRange<A64, true>>),
        (PTM_X64, range::round::<ptm::PtmX64>),
        (PTM_A64, range::round::<ptm::PtmA64>),
        (A64_PAGING, range::round::<a64paging::A64Paging>),
    ];

    let mut samples = Samples::default();
    let started = std::time::Instant::now();
    for r in 0..=rounds {
        let keep = r > 0; // round 0 warms up
        for (k, (order, w)) in workloads.iter().enumerate() {
            if workload_only.is_some_and(|only| only != k) {
                continue;
            }
            let (size, order) = (w.size, *order);
            let pages = w.pages() as f64;
            let huge = usize::from(size == Size::M2);
            let record =
                |samples: &mut Samples, section, op: &'static str, subject, shape, ns: f64| {
                    if keep {
                        samples.add(
                            Key {
                                section,
                                op,
                                size,
                                order,
                                subject,
                                shape,
                            },
                            ns / pages,
                        );
                    }
                };
            let t = limit::round(w);
            for (op, t) in Op::ALL.iter().zip(t) {
                record(
                    &mut samples,
                    "page",
                    op.label(),
                    LIMIT,
                    "both",
                    t.as_nanos() as f64,
                );
            }
            for s in subjects.iter().filter(|s| wanted(s.name)) {
                for (outlined, shape) in [(0, report::INLINED), (1, report::OUTLINED)] {
                    let res = (s.rounds[huge][outlined])(w);
                    for (op, t) in Op::ALL.iter().zip(res.times) {
                        record(
                            &mut samples,
                            "page",
                            op.label(),
                            s.name,
                            shape,
                            t.as_nanos() as f64,
                        );
                    }
                    if keep && order == Order::Sequential && outlined == 0 {
                        samples.frames("page", size, s.name, res.frames_peak, res.frames_unmapped);
                    }
                }
            }
            if size == Size::K4 {
                for (name, f) in seeds.iter().filter(|s| wanted(s.0)) {
                    let res = f(w);
                    for (op, t) in Op::ALL.iter().zip(res.times) {
                        record(
                            &mut samples,
                            "seed",
                            op.label(),
                            name,
                            report::OUTLINED,
                            t.as_nanos() as f64,
                        );
                    }
                }
            }
            if order == Order::Sequential {
                for (name, f) in ranges.iter().filter(|s| wanted(s.0)) {
                    let res = f(w);
                    let ops = ["map_range", "protect_range", "unmap_range"];
                    for (op, t) in ops.into_iter().zip(res.times) {
                        record(
                            &mut samples,
                            "range",
                            op,
                            name,
                            report::RANGE,
                            t.as_nanos() as f64,
                        );
                    }
                    if keep {
                        samples.frames("range", size, name, res.frames_peak, res.frames_unmapped);
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    print!(
        "{}",
        report::render(&samples, rounds, pages_4k, pages_2m, elapsed, smoke)
    );
}
