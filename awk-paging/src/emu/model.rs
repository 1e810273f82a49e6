//! A property test of the range engine against a model: random sequences of range and
//! single-page operations, with random sizes, alignments, attributes and an allocator that fails
//! at random points. After every step the model and a full walk agree; an error changed nothing
//! (every reachable table byte and the allocator's counts as before); an empty address space
//! holds the root table alone.
//!
//! The model is the list of mapped intervals, so 1 GiB mappings cost no more than 4 KiB ones.

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

use crate::arch::{Arch, Entry};
use crate::emu::EmuMemory;
use crate::{
    Attrs, CountingFrames, Flags, MapError, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions,
    UnmapError, VirtAddr,
};

/// What a model run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Sequences run.
    pub sequences: usize,
    /// Operations run.
    pub operations: usize,
    /// Operations that failed as the model predicted (conflicts) or by injected out-of-memory,
    /// each checked to have changed nothing.
    pub errors: usize,
    /// Splits of huge pages observed (a range operation straddling a 2 MiB / 1 GiB page).
    pub splits: usize,
}

/// One mapped interval of the model: `len` bytes from a virtual address to `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    len: u64,
    pa: u64,
    attrs: Attrs,
}

/// Mapped intervals by start address (disjoint).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model(BTreeMap<u64, Run>);

impl Model {
    fn overlaps(&self, s: u64, e: u64) -> bool {
        self.0
            .range(..e)
            .next_back()
            .is_some_and(|(&k, r)| k + r.len > s)
    }

    /// Removes `[s, e)`, returning the removed pieces.
    fn remove(&mut self, s: u64, e: u64) -> Vec<(u64, Run)> {
        let keys: Vec<u64> = self
            .0
            .range(..e)
            .filter(|(&k, r)| k + r.len > s)
            .map(|(&k, _)| k)
            .collect();
        let mut out = Vec::new();
        for k in keys {
            let r = self.0.remove(&k).unwrap_or(Run {
                len: 0,
                pa: 0,
                attrs: Attrs::from(Flags::RO),
            });
            let (ks, ke) = (k, k + r.len);
            if ks < s {
                self.0.insert(ks, Run { len: s - ks, ..r });
            }
            if ke > e {
                self.0.insert(
                    e,
                    Run {
                        len: ke - e,
                        pa: r.pa + (e - ks),
                        ..r
                    },
                );
            }
            let (cs, ce) = (ks.max(s), ke.min(e));
            out.push((
                cs,
                Run {
                    len: ce - cs,
                    pa: r.pa + (cs - ks),
                    ..r
                },
            ));
        }
        out
    }

    /// Merged form: adjacent runs with contiguous frames and equal attributes joined.
    fn merged(&self) -> Vec<(u64, Run)> {
        let mut out: Vec<(u64, Run)> = Vec::new();
        for (&k, &r) in &self.0 {
            if let Some((pk, pr)) = out.last_mut() {
                if *pk + pr.len == k && pr.pa + pr.len == r.pa && pr.attrs == r.attrs {
                    pr.len += r.len;
                    continue;
                }
            }
            out.push((k, r));
        }
        out
    }
}

/// xorshift64*: a small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

type Table<'m, A> = PageTable<A, &'m EmuMemory, CountingFrames<&'m EmuMemory>, NoTlb>;

/// The window of the address space a run uses: 4 GiB from `base`.
const WINDOW: u64 = 4 << 30;

const ATTRS: [Attrs; 6] = [
    Attrs {
        flags: Flags::RO,
        user: false,
        global: false,
    },
    Attrs {
        flags: Flags::RW,
        user: false,
        global: false,
    },
    Attrs {
        flags: Flags::RX,
        user: false,
        global: true,
    },
    Attrs {
        flags: Flags::DEVICE,
        user: false,
        global: false,
    },
    Attrs {
        flags: Flags::RW,
        user: true,
        global: false,
    },
    Attrs {
        flags: Flags::RO,
        user: true,
        global: false,
    },
];

/// Runs `sequences` random sequences of `steps` operations each on fresh tables of `arch`,
/// inside the 4 GiB window starting at `base` (which `arch` must translate). `Err` describes
/// the first disagreement, with the seed to replay it.
///
/// ```
/// use awk_paging::emu::{model, EmuArch};
/// use awk_paging::VirtAddr;
/// let stats = model::run(EmuArch::default(), VirtAddr::new(0x40_0000_0000), 1, 20, 8).unwrap();
/// assert_eq!(stats.sequences, 20);
/// ```
pub fn run<A: Arch>(
    arch: A,
    base: VirtAddr,
    seed: u64,
    sequences: usize,
    steps: usize,
) -> Result<ModelStats, String> {
    let mem = EmuMemory::new(4096);
    let mut stats = ModelStats::default();
    for n in 0..sequences {
        let s = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(n as u64)
            | 1;
        let before = mem.frames_in_use();
        {
            let mut pt: Table<'_, A> = PageTable::new(arch, &mem, CountingFrames::new(&mem), NoTlb)
                .map_err(|e| e.to_string())?;
            run_sequence(&mut pt, &mem, base, s, steps, &mut stats)
                .map_err(|e| std::format!("seed {s:#x}: {e}"))?;
            // SAFETY: never activated.
            unsafe { pt.destroy() };
        }
        if mem.frames_in_use() != before || mem.bad_frees() != 0 {
            return Err(std::format!(
                "seed {s:#x}: frames leaked or freed twice by destroy"
            ));
        }
        stats.sequences += 1;
    }
    Ok(stats)
}

fn run_sequence<A: Arch>(
    pt: &mut Table<'_, A>,
    mem: &EmuMemory,
    base: VirtAddr,
    seed: u64,
    steps: usize,
    stats: &mut ModelStats,
) -> Result<(), String> {
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let sizes = pt.arch().page_sizes();
    for step in 0..steps {
        stats.operations += 1;
        let (start, len) = pick_range(&mut rng);
        let va = VirtAddr::new(base.as_u64() + start);
        let attrs = ATTRS[rng.below(ATTRS.len() as u64) as usize];
        let fail_at = rng.chance(25).then(|| rng.below(4) as usize);
        pt.frames_mut().fail_after(fail_at);
        let op = rng.below(10);
        // Only operations that may fail need the before-image.
        let may_fail =
            fail_at.is_some() || op == 9 || (op <= 3 && model.overlaps(start, start + len));
        let snapshot = if may_fail {
            Snapshot::take(pt, mem)
        } else {
            Snapshot::default()
        };
        let mut g = pt.gather();
        let what: String;
        let result: Result<(), String> = match op {
            0..=3 => {
                // PA congruent to the VA modulo 1 GiB half of the time, so blocks happen.
                let pa = if rng.chance(50) {
                    (rng.below(16) << 30) + start % (1 << 30)
                } else {
                    rng.below(1 << 24) << 12
                };
                let cap =
                    [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][rng.below(3) as usize];
                what = std::format!("map_range({va:?}, {pa:#x}, {len:#x}, {attrs:?}, {cap:?})");
                let r = unsafe {
                    pt.map_range(
                        va,
                        PhyAddr::new(pa),
                        len,
                        attrs,
                        RangeOptions { max_page: cap },
                        &mut g,
                    )
                };
                match r {
                    Ok(()) => {
                        if model.overlaps(start, start + len) {
                            Err("succeeded over an existing mapping".to_string())
                        } else {
                            model.0.insert(
                                start,
                                Run {
                                    len,
                                    pa,
                                    attrs: attrs.canonical(),
                                },
                            );
                            Ok(())
                        }
                    }
                    Err(e) if e.error == MapError::AlreadyMapped => {
                        stats.errors += 1;
                        if model.overlaps(start, start + len) {
                            snapshot.unchanged(pt, mem)
                        } else {
                            Err(std::format!("AlreadyMapped at {:?} over nothing", e.at))
                        }
                    }
                    Err(e) if e.error == MapError::OutOfMemory && fail_at.is_some() => {
                        stats.errors += 1;
                        snapshot.unchanged(pt, mem)
                    }
                    Err(e) => Err(std::format!("unexpected {e}")),
                }
            }
            4..=6 => {
                let visit = op != 6;
                what = std::format!(
                    "{}({va:?}, {len:#x})",
                    if visit { "unmap_range" } else { "drop_range" }
                );
                let splits_before = count_split_candidates(&model, start, start + len);
                let mut seen: Vec<(u64, u64, u64)> = Vec::new();
                let r = if visit {
                    unsafe {
                        pt.unmap_range(va, len, &mut g, |u| {
                            seen.push((
                                u.page.as_u64(),
                                u.unmapped.size.bytes(),
                                u.unmapped.frame.as_u64(),
                            ))
                        })
                    }
                } else {
                    unsafe { pt.drop_range(va, len, &mut g) }
                };
                match r {
                    Ok(()) => {
                        stats.splits += splits_before;
                        let removed = model.remove(start, start + len);
                        if visit {
                            check_reported(base.as_u64(), &removed, &seen)
                        } else {
                            Ok(())
                        }
                    }
                    Err(e) if e.error == UnmapError::OutOfMemory && fail_at.is_some() => {
                        stats.errors += 1;
                        snapshot.unchanged(pt, mem)
                    }
                    Err(e) => Err(std::format!("unexpected {e}")),
                }
            }
            7..=8 => {
                what = std::format!("protect_range({va:?}, {len:#x}, {attrs:?})");
                let r = unsafe { pt.protect_range(va, len, attrs, &mut g) };
                match r {
                    Ok(()) => {
                        for (k, run) in model.remove(start, start + len) {
                            model.0.insert(
                                k,
                                Run {
                                    attrs: attrs.canonical(),
                                    ..run
                                },
                            );
                        }
                        Ok(())
                    }
                    Err(e) if e.error == crate::ProtectError::OutOfMemory && fail_at.is_some() => {
                        stats.errors += 1;
                        snapshot.unchanged(pt, mem)
                    }
                    Err(e) => Err(std::format!("unexpected {e}")),
                }
            }
            _ => {
                // A single page through the single-page API.
                let size = if sizes.contains(PageSize::Size2M) && rng.chance(30) {
                    PageSize::Size2M
                } else {
                    PageSize::Size4K
                };
                let s = start & !size.offset_mask();
                let va = VirtAddr::new(base.as_u64() + s);
                let pa = rng.below(1 << 20) << size.shift();
                what = std::format!("map({va:?}, {pa:#x}, {size:?})");
                match unsafe { pt.map(va, PhyAddr::new(pa), size, attrs) } {
                    Ok(f) => {
                        f.flush();
                        if model.overlaps(s, s + size.bytes()) {
                            Err("single map succeeded over a mapping".to_string())
                        } else {
                            model.0.insert(
                                s,
                                Run {
                                    len: size.bytes(),
                                    pa,
                                    attrs: attrs.canonical(),
                                },
                            );
                            Ok(())
                        }
                    }
                    Err(MapError::AlreadyMapped | MapError::HugePageConflict) => {
                        stats.errors += 1;
                        snapshot.unchanged(pt, mem)
                    }
                    Err(MapError::OutOfMemory) if fail_at.is_some() => {
                        stats.errors += 1;
                        snapshot.unchanged(pt, mem)
                    }
                    Err(e) => Err(std::format!("unexpected {e}")),
                }
            }
        };
        pt.frames_mut().fail_after(None);
        pt.finish(g)
            .map_err(|_| "gather refused by its own table".to_string())?;
        result.map_err(|e| std::format!("step {step}: {what}: {e}"))?;
        let walked = walk_runs(pt, base.as_u64());
        if walked != model.merged() {
            return Err(std::format!(
                "step {step}: after {what}: walk {walked:x?}\nmodel {:x?}",
                model.merged()
            ));
        }
        let live = live_tables(pt, mem);
        if pt.frames().outstanding() != live {
            return Err(std::format!(
                "step {step}: after {what}: {} table frames allocated, {live} reachable",
                pt.frames().outstanding()
            ));
        }
        if model.0.is_empty() && live != 1 {
            return Err(std::format!(
                "step {step}: after {what}: empty space holds {live} tables"
            ));
        }
    }
    Ok(())
}

/// A random range inside the window: mostly small, sometimes 2 MiB-ish, rarely 1 GiB.
fn pick_range(rng: &mut Rng) -> (u64, u64) {
    match rng.below(20) {
        0 => {
            let start = rng.below(WINDOW >> 30) << 30;
            (start, (1 << 30).min(WINDOW - start))
        }
        1..=6 => {
            let start = (rng.below(WINDOW >> 21) << 21)
                + if rng.chance(50) {
                    0
                } else {
                    rng.below(512) << 12
                };
            let len = ((1 + rng.below(3)) << 21)
                + if rng.chance(50) {
                    0
                } else {
                    rng.below(512) << 12
                };
            (start.min(WINDOW - len), len)
        }
        _ => {
            // Clustered near a few hot spots so operations overlap.
            let hot = rng.below(4) << 30 | rng.below(4) << 21;
            let start = hot + (rng.below(1024) << 12);
            let len = (1 + rng.below(64)) << 12;
            (start.min(WINDOW - len), len)
        }
    }
}

/// How many model runs straddle an end of `[s, e)` (a rough count of splits to expect).
fn count_split_candidates(model: &Model, s: u64, e: u64) -> usize {
    model
        .0
        .iter()
        .filter(|(&k, r)| (k < s && k + r.len > s) || (k < e && k + r.len > e))
        .count()
}

/// Checks that `unmap_range` reported exactly the removed model pieces (as whole pages).
fn check_reported(
    base: u64,
    removed: &[(u64, Run)],
    seen: &[(u64, u64, u64)],
) -> Result<(), String> {
    let total: u64 = removed.iter().map(|(_, r)| r.len).sum();
    let reported: u64 = seen.iter().map(|&(_, len, _)| len).sum();
    if total != reported {
        return Err(std::format!(
            "reported {reported:#x} bytes unmapped, model {total:#x}"
        ));
    }
    for &(page, len, frame) in seen {
        let off = page.wrapping_sub(base);
        let hit = removed
            .iter()
            .find(|(k, r)| *k <= off && off + len <= k + r.len)
            .ok_or_else(|| std::format!("reported page {page:#x} not in the removed range"))?;
        if hit.1.pa + (off - hit.0) != frame {
            return Err(std::format!(
                "reported page {page:#x} with frame {frame:#x}"
            ));
        }
    }
    Ok(())
}

/// The tables' mappings as merged runs relative to `base` (addresses outside the window are
/// kept with wrapped offsets, so stray mappings show up as a difference).
fn walk_runs<A: Arch>(pt: &Table<'_, A>, base: u64) -> Vec<(u64, Run)> {
    // Mappings come in address order within the window (one half): merge as they come.
    let mut out: Vec<(u64, Run)> = Vec::new();
    pt.for_each_mapping(|mp| {
        let (k, r) = (
            mp.page.as_u64().wrapping_sub(base),
            Run {
                len: mp.size.bytes(),
                pa: mp.frame.as_u64(),
                attrs: mp.attrs,
            },
        );
        if let Some((pk, pr)) = out.last_mut() {
            if *pk + pr.len == k && pr.pa + pr.len == r.pa && pr.attrs == r.attrs {
                pr.len += r.len;
                return;
            }
        }
        out.push((k, r));
    });
    out
}

/// Table frames reachable from the root (the root counts).
fn live_tables<A: Arch>(pt: &Table<'_, A>, mem: &EmuMemory) -> usize {
    let mut n = 0;
    tables_below(
        pt.arch(),
        mem,
        pt.root(),
        pt.arch().levels() - 1,
        &mut |_| n += 1,
    );
    n
}

fn tables_below<A: Arch>(
    arch: &A,
    mem: &EmuMemory,
    table: PhyAddr,
    level: u8,
    f: &mut impl FnMut(PhyAddr),
) {
    f(table);
    if level == 0 {
        return;
    }
    for i in 0..512u64 {
        let raw = mem
            .read_u64(PhyAddr::new(table.as_u64() + 8 * i))
            .unwrap_or(0);
        if let Entry::Table(next) = arch.decode(raw, level) {
            tables_below(arch, mem, next, level - 1, f);
        }
    }
}

/// Every reachable table byte and the allocator's counters, to prove an error changed nothing.
#[derive(Default, PartialEq, Eq)]
struct Snapshot {
    tables: Vec<(PhyAddr, u64)>,
    in_use: usize,
    allocated: usize,
    freed: usize,
}

impl Snapshot {
    fn take<A: Arch>(pt: &Table<'_, A>, mem: &EmuMemory) -> Snapshot {
        let mut tables = Vec::new();
        tables_below(
            pt.arch(),
            mem,
            pt.root(),
            pt.arch().levels() - 1,
            &mut |t| {
                // FNV-1a over the table's words.
                let mut h = 0xcbf2_9ce4_8422_2325u64;
                for i in 0..512u64 {
                    h ^= mem.read_u64(PhyAddr::new(t.as_u64() + 8 * i)).unwrap_or(0);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                tables.push((t, h));
            },
        );
        Snapshot {
            tables,
            in_use: mem.frames_in_use(),
            allocated: pt.frames().allocated(),
            freed: pt.frames().freed(),
        }
    }

    fn unchanged<A: Arch>(&self, pt: &Table<'_, A>, mem: &EmuMemory) -> Result<(), String> {
        let now = Snapshot::take(pt, mem);
        if now.tables != self.tables {
            return Err("an error changed table contents".to_string());
        }
        if now.in_use != self.in_use || now.allocated - now.freed != self.allocated - self.freed {
            return Err("an error leaked or freed frames".to_string());
        }
        Ok(())
    }
}
