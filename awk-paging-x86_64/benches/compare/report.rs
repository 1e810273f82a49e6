//! Medians, minimums and ratios, as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::subject::Size;
use crate::Order;
use crate::{
    A64_PAGING, AWK_A64, AWK_A64_DROP, AWK_X86, AWK_X86_DROP, LIMIT, PTM_A64, PTM_X64, SEED_A64,
    SEED_X86, X86_ADDR, X86_PAGE,
};

pub const INLINED: &str = "inlined";
pub const OUTLINED: &str = "non-inlined";
pub const RANGE: &str = "range";

/// One series of samples: a row (section, op, size, order) and a column (subject, call shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub section: &'static str,
    pub op: &'static str,
    pub size: Size,
    pub order: Order,
    pub subject: &'static str,
    pub shape: &'static str,
}

/// Every sample (ns per page) and the table-frame counts.
#[derive(Default)]
pub struct Samples {
    ns: BTreeMap<Key, Vec<f64>>,
    /// (section, size, subject) → (peak, after unmap), from the last round.
    frames: BTreeMap<(&'static str, Size, &'static str), (usize, usize)>,
}

impl Samples {
    pub fn add(&mut self, key: Key, ns: f64) {
        self.ns.entry(key).or_default().push(ns);
    }

    pub fn frames(
        &mut self,
        section: &'static str,
        size: Size,
        subject: &'static str,
        peak: usize,
        after: usize,
    ) {
        self.frames.insert((section, size, subject), (peak, after));
    }

    /// (median, minimum).
    fn get(&self, key: Key) -> Option<(f64, f64)> {
        let mut v = self.ns.get(&key)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some((v[v.len() / 2], v[0]))
    }
}

const PAGE_PEERS: [&str; 5] = [X86_PAGE, X86_ADDR, PTM_X64, PTM_A64, A64_PAGING];
const RANGE_PEERS: [&str; 3] = [PTM_X64, PTM_A64, A64_PAGING];
const OPS: [&str; 4] = ["map", "translate", "protect", "unmap"];
const SIZES: [Size; 2] = [Size::K4, Size::M2];
const ORDERS: [Order; 2] = [Order::Sequential, Order::Scattered];

/// "median (min) k×limit".
fn cell(v: Option<(f64, f64)>, limit: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some((med, min)) => match limit {
            Some(l) if l > 0.0 => format!("{med:.2} ({min:.2}) {:.1}×", med / l),
            _ => format!("{med:.2} ({min:.2})"),
        },
    }
}

fn ratio(awk: Option<(f64, f64)>, peer: Option<(f64, &str)>) -> String {
    match (awk, peer) {
        (Some((a, _)), Some((p, _))) => {
            let r = a / p;
            if r > 0.8 {
                format!("**{r:.2}**")
            } else {
                format!("{r:.2}")
            }
        }
        _ => "—".into(),
    }
}

/// The fastest peer's median for a row, and its name.
fn fastest<'a>(
    s: &Samples,
    peers: &[&'a str],
    key: impl Fn(&'a str) -> Key,
) -> Option<(f64, &'a str)> {
    peers
        .iter()
        .filter_map(|&p| s.get(key(p)).map(|(m, _)| (m, p)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

pub fn render(
    s: &Samples,
    rounds: usize,
    pages_4k: usize,
    pages_2m: usize,
    elapsed: Duration,
    smoke: bool,
) -> String {
    let mut o = String::new();
    let page_key = |op, size, order, subject, shape| Key {
        section: "page",
        op,
        size,
        order,
        subject,
        shape,
    };
    let _ = writeln!(
        o,
        "{} timed rounds after one warm-up, round-robin over every scenario ({:.0} s); \
         4 KiB rows: {pages_4k} pages, 2 MiB rows: {pages_2m} pages{}. \
         ns per page: median (minimum) and the median as a multiple of the memory-traffic limit; \
         ratios are awk median ÷ fastest peer median (**bold**: above 0.8).\n",
        rounds,
        elapsed.as_secs_f64(),
        if smoke {
            " (SMOKE RUN: not a measurement)"
        } else {
            ""
        },
    );

    // Summary: the table.
    let _ = writeln!(o, "#### Ratios awk ÷ fastest peer (X86_64 / A64 regime)\n");
    let _ = writeln!(
        o,
        "| op | page | order | inlined into the caller's loop | called through a non-inlined function |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|");
    for op in OPS {
        for size in SIZES {
            for order in ORDERS {
                let mut cells = Vec::new();
                for shape in [INLINED, OUTLINED] {
                    let peer = fastest(s, &PAGE_PEERS, |p| page_key(op, size, order, p, shape));
                    let x = s.get(page_key(op, size, order, AWK_X86, shape));
                    let a = s.get(page_key(op, size, order, AWK_A64, shape));
                    cells.push(format!("{} / {}", ratio(x, peer), ratio(a, peer)));
                }
                let _ = writeln!(
                    o,
                    "| {op} | {} | {} | {} | {} |",
                    size.label(),
                    order.label(),
                    cells[0],
                    cells[1]
                );
            }
        }
    }
    for (op, size) in [
        ("map_range", Size::K4),
        ("map_range", Size::M2),
        ("protect_range", Size::K4),
        ("protect_range", Size::M2),
        ("unmap_range", Size::K4),
        ("unmap_range", Size::M2),
    ] {
        let key = |subject| Key {
            section: "range",
            op,
            size,
            order: Order::Sequential,
            subject,
            shape: RANGE,
        };
        let peer = fastest(s, &RANGE_PEERS, key);
        let (x, a) = (s.get(key(AWK_X86)), s.get(key(AWK_A64)));
        let mut line = format!("{} / {}", ratio(x, peer), ratio(a, peer));
        if op == "unmap_range" {
            let (xd, ad) = (s.get(key(AWK_X86_DROP)), s.get(key(AWK_A64_DROP)));
            let _ = write!(
                line,
                "; drop_range {} / {}",
                ratio(xd, peer),
                ratio(ad, peer)
            );
        }
        let _ = writeln!(
            o,
            "| {op} (one call) | {} | sequential | {line} | — |",
            size.label()
        );
    }

    // Per-page detail, one table per call shape.
    for shape in [INLINED, OUTLINED] {
        let _ = writeln!(o, "\n#### Per page, {shape}: ns per page\n");
        let _ = writeln!(
            o,
            "| op | page | order | limit | {AWK_X86} | {AWK_A64} | {X86_PAGE} | {X86_ADDR} | {PTM_X64} | {PTM_A64} | {A64_PAGING} | fastest peer | ÷ X86_64 | ÷ A64 |"
        );
        let _ = writeln!(
            o,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
        );
        for op in OPS {
            for size in SIZES {
                for order in ORDERS {
                    let limit = s.get(page_key(op, size, order, LIMIT, "both"));
                    let l = limit.map(|(m, _)| m);
                    let mut line = format!(
                        "| {op} | {} | {} | {} |",
                        size.label(),
                        order.label(),
                        cell(limit, None)
                    );
                    for subject in [
                        AWK_X86, AWK_A64, X86_PAGE, X86_ADDR, PTM_X64, PTM_A64, A64_PAGING,
                    ] {
                        let v = if subject == X86_ADDR && op != "translate" {
                            None // same calls as the translate_page column
                        } else {
                            s.get(page_key(op, size, order, subject, shape))
                        };
                        let _ = write!(line, " {} |", cell(v, l));
                    }
                    let peer = fastest(s, &PAGE_PEERS, |p| page_key(op, size, order, p, shape));
                    let x = s.get(page_key(op, size, order, AWK_X86, shape));
                    let a = s.get(page_key(op, size, order, AWK_A64, shape));
                    let _ = writeln!(
                        line,
                        " {} | {} | {} |",
                        peer.map_or("—", |p| p.1),
                        ratio(x, peer),
                        ratio(a, peer)
                    );
                    o.push_str(&line);
                }
            }
        }
    }

    // Range calls.
    let _ = writeln!(
        o,
        "\n#### Range calls (one call over the whole span): ns per page\n"
    );
    let _ = writeln!(
        o,
        "| op | page | limit | {AWK_X86} | {AWK_A64} | {PTM_X64} | {PTM_A64} | {A64_PAGING} | fastest peer | ÷ X86_64 | ÷ A64 |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for (op, limit_op) in [
        ("map_range", "map"),
        ("protect_range", "protect"),
        ("unmap_range", "unmap"),
        ("drop_range", "unmap"),
    ] {
        for size in SIZES {
            let limit = s.get(page_key(limit_op, size, Order::Sequential, LIMIT, "both"));
            let l = limit.map(|(m, _)| m);
            let key = |op, subject| Key {
                section: "range",
                op,
                size,
                order: Order::Sequential,
                subject,
                shape: RANGE,
            };
            // drop_range is awk's other unmap: against the peers' unmap.
            let (row_op, x_name, a_name) = if op == "drop_range" {
                ("unmap_range", AWK_X86_DROP, AWK_A64_DROP)
            } else {
                (op, AWK_X86, AWK_A64)
            };
            let x = s.get(key(row_op, x_name));
            let a = s.get(key(row_op, a_name));
            let mut line = format!(
                "| {op} | {} | {} | {} | {} |",
                size.label(),
                cell(limit, None),
                cell(x, l),
                cell(a, l)
            );
            for p in RANGE_PEERS {
                let _ = write!(line, " {} |", cell(s.get(key(row_op, p)), l));
            }
            let peer = fastest(s, &RANGE_PEERS, |p| key(row_op, p));
            let _ = writeln!(
                line,
                " {} | {} | {} |",
                peer.map_or("—", |p| p.1),
                ratio(x, peer),
                ratio(a, peer)
            );
            o.push_str(&line);
        }
    }

    // Seed API.
    let _ = writeln!(
        o,
        "\n#### Seed static API against the instance API (4 KiB pages, non-inlined): ns per page\n"
    );
    let _ = writeln!(
        o,
        "| op | order | {SEED_X86} | {AWK_X86} | seed ÷ instance | {SEED_A64} | {AWK_A64} | seed ÷ instance | fastest peer | {SEED_X86} ÷ peer | {SEED_A64} ÷ peer |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for op in OPS {
        for order in ORDERS {
            let size = Size::K4;
            let seed = |subject| Key {
                section: "seed",
                ..page_key(op, size, order, subject, OUTLINED)
            };
            let sx = s.get(seed(SEED_X86));
            let sa = s.get(seed(SEED_A64));
            let ix = s.get(page_key(op, size, order, AWK_X86, OUTLINED));
            let ia = s.get(page_key(op, size, order, AWK_A64, OUTLINED));
            let rel = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
                (Some(a), Some(b)) => format!("{:.2}", a.0 / b.0),
                _ => "—".into(),
            };
            let peer = fastest(s, &PAGE_PEERS, |p| page_key(op, size, order, p, OUTLINED));
            let _ = writeln!(
                o,
                "| {op} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                order.label(),
                cell(sx, None),
                cell(ix, None),
                rel(sx, ix),
                cell(sa, None),
                cell(ia, None),
                rel(sa, ia),
                peer.map_or("—", |p| p.1),
                ratio(sx, peer),
                ratio(sa, peer)
            );
        }
    }

    // Table frames.
    let _ = writeln!(
        o,
        "\n#### Table frames (below the root): peak → after unmapping everything (sequential)\n"
    );
    let cols = [AWK_X86, AWK_A64, X86_PAGE, PTM_X64, PTM_A64, A64_PAGING];
    let _ = writeln!(o, "| calls | page | {} |", cols.join(" | "));
    let _ = writeln!(o, "|---|---|{}", "---:|".repeat(cols.len()));
    for section in ["page", "range"] {
        for size in SIZES {
            let mut line = format!(
                "| {} | {} |",
                if section == "page" {
                    "per page"
                } else {
                    "range"
                },
                size.label()
            );
            for c in cols {
                let v = s
                    .frames
                    .get(&(section, size, c))
                    .map_or("—".to_string(), |(p, a)| {
                        // The root is the implementation's own and stays: count tables below it.
                        format!("{} → {}", p.saturating_sub(1), a.saturating_sub(1))
                    });
                let _ = write!(line, " {v} |");
            }
            let _ = writeln!(o, "{line}");
        }
    }
    let (_, _) = (AWK_X86_DROP, AWK_A64_DROP);
    o
}
