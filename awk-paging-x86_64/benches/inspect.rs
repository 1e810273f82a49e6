//! `cargo bench -p awk-paging-x86_64 --bench inspect`: foreign translation through a raw memory
//! dump, uncached against the translation cache (memflow documents at least 4x for its cache).
//!
//! The address space is a small kernel's: a 1 GiB direct map in 2 MiB pages, 64 MiB of kernel
//! heap in 4 KiB pages, and a user process of 4096 scattered 4 KiB pages. The tables are built
//! by the crate in the emulator, then copied into a byte buffer read through `RawDump` (what the
//! host tool does with a dump). The address set is what an introspection tool reading a
//! process and the kernel heap does: 1 Mi addresses, 8 consecutive words per visit (then, a
//! harder set for the batch, 1 word per visit), 90 % of the visits to a hot set of 512 pages
//! (stack, heap, code), 10 % anywhere in the mapped memory.
//!
//! Each translation's physical address is consumed (as memflow's `virt_to_phys` returns it);
//! every way is checked to give the same answers first.
//!
//! Arguments (after `--`): `--rounds N` (default 7), `--smoke` (one small round).

use std::hint::black_box;
use std::time::Instant;

use awk_paging::emu::EmuMemory;
use awk_paging::inspect::{ForeignTable, RawDump, TranslationCache};
use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
use awk_paging_x86_64::X86_64;

const DIRECT: u64 = 0xffff_8880_0000_0000;
const HEAP: u64 = 0xffff_c900_0000_0000;
const USER: u64 = 0x0000_5555_0000_0000;
/// Cache lines (pages) in the measured cache.
const LINES: usize = 4096;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let rounds = args
        .windows(2)
        .find(|w| w[0] == "--rounds")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(if smoke { 1 } else { 7 });
    let count = if smoke { 1 << 14 } else { 1 << 20 };

    // The address space.
    let mem = EmuMemory::new(2048);
    let mut pt = PageTable::new(X86_64::new(), &mem, &mem, NoTlb).unwrap();
    let mut g = pt.gather();
    let opts = awk_paging::RangeOptions::default();
    unsafe {
        pt.map_range(
            VirtAddr::new(DIRECT),
            PhyAddr::new(0),
            1 << 30,
            Flags::RW,
            opts,
            &mut g,
        )
    }
    .unwrap();
    let small = awk_paging::RangeOptions {
        max_page: PageSize::Size4K,
    };
    unsafe {
        pt.map_range(
            VirtAddr::new(HEAP),
            PhyAddr::new(0x4000_0000),
            64 << 20,
            Flags::RW,
            small,
            &mut g,
        )
    }
    .unwrap();
    let mut r = Rng(0x1234_5678_9abc_def1);
    let mut user = Vec::new();
    for i in 0..4096u64 {
        let va = (USER + r.next() % (1 << 30)) & !0xfff;
        if pt.translate(VirtAddr::new(va)).is_err() {
            unsafe {
                pt.map(
                    VirtAddr::new(va),
                    PhyAddr::new(0x8000_0000 + i * 0x1000),
                    PageSize::Size4K,
                    Flags::RW,
                )
            }
            .unwrap()
            .flush();
            user.push(va);
        }
    }
    pt.finish(g).unwrap();
    let base = mem.base().as_u64();
    let bytes: Vec<u8> = (0..mem.frame_count() as u64 * 512)
        .flat_map(|w| {
            mem.read_u64(PhyAddr::new(base + 8 * w))
                .unwrap()
                .to_le_bytes()
        })
        .collect();
    let table = ForeignTable::new(X86_64::new(), RawDump::new(mem.base(), &bytes), pt.root());

    // The hot pages.
    let pages: Vec<u64> = (0..512)
        .map(|i| match i % 3 {
            0 => user[(r.next() % user.len() as u64) as usize],
            1 => (HEAP + r.next() % (64 << 20)) & !0xfff,
            _ => (DIRECT + r.next() % (1 << 30)) & !0xfff,
        })
        .collect();
    println!(
        "foreign translation, {count} addresses, {} user pages, tables {} KiB, {rounds} rounds (median ns/address):",
        user.len(),
        bytes.len() / 1024
    );
    for words in [8, 1] {
        let vas = addresses(&mut r, &pages, &user, count, words);
        measure(&table, &vas, rounds, words);
    }
}

/// `count` addresses: `words` consecutive words per visit, 90 % of the visits to `pages`, the
/// rest anywhere in the mapped memory.
fn addresses(r: &mut Rng, pages: &[u64], user: &[u64], count: usize, words: u64) -> Vec<VirtAddr> {
    let mut vas = Vec::with_capacity(count);
    while vas.len() < count {
        let x = r.next();
        let page = if !x.is_multiple_of(10) {
            pages[(x >> 8) as usize % pages.len()]
        } else {
            match (x >> 8) % 3 {
                0 => user[(x >> 16) as usize % user.len()],
                1 => (HEAP + (x >> 16) % (64 << 20)) & !0xfff,
                _ => (DIRECT + (x >> 16) % (1 << 30)) & !0xfff,
            }
        };
        let off = (x >> 40) & 0xfc0;
        for w in 0..words {
            vas.push(VirtAddr::new(page + off + 8 * w));
        }
    }
    vas.truncate(count);
    vas
}

fn measure(table: &ForeignTable<X86_64, RawDump<'_>>, vas: &[VirtAddr], rounds: usize, words: u64) {
    let count = vas.len();
    // Every way must give the same answers.
    let expect: Vec<u64> = vas
        .iter()
        .map(|&v| table.translate(v).unwrap().pa.as_u64())
        .collect();
    let mut cache = TranslationCache::<LINES>::new();
    for (i, &v) in vas.iter().enumerate() {
        assert_eq!(cache.translate(table, v).unwrap().pa.as_u64(), expect[i]);
    }
    let mut batch = Vec::with_capacity(count);
    table.translate_many(vas.iter().copied(), |_, r| {
        batch.push(r.unwrap().pa.as_u64())
    });
    assert_eq!(batch, expect);

    let mut samples: [Vec<f64>; 4] = Default::default();
    let mut stats = None;
    for _ in 0..rounds {
        let t = Instant::now();
        for &v in vas {
            black_box(table.translate(black_box(v)).map(|r| r.pa).ok());
        }
        samples[0].push(t.elapsed().as_nanos() as f64 / count as f64);

        let t = Instant::now();
        table.translate_many(vas.iter().copied(), |_, r| {
            black_box(r.map(|r| r.pa).ok());
        });
        samples[1].push(t.elapsed().as_nanos() as f64 / count as f64);

        let mut cache = TranslationCache::<LINES>::new();
        let t = Instant::now();
        for &v in vas {
            black_box(cache.translate(table, black_box(v)).map(|r| r.pa).ok());
        }
        samples[2].push(t.elapsed().as_nanos() as f64 / count as f64);
        stats = Some(cache.stats());

        let mut cache = TranslationCache::<LINES>::new();
        let t = Instant::now();
        cache.translate_many(table, vas.iter().copied(), |_, r| {
            black_box(r.map(|r| r.pa).ok());
        });
        samples[3].push(t.elapsed().as_nanos() as f64 / count as f64);
    }
    let median = |s: &mut Vec<f64>| {
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let m: Vec<f64> = samples.iter_mut().map(median).collect();
    let s = stats.unwrap();
    println!("{words} word(s) per visit:");
    println!("  uncached translate        {:7.2}", m[0]);
    println!(
        "  uncached translate_many   {:7.2}  ({:.1}x)",
        m[1],
        m[0] / m[1]
    );
    println!(
        "  cached translate ({LINES})   {:7.2}  ({:.1}x)",
        m[2],
        m[0] / m[2]
    );
    println!(
        "  cached translate_many     {:7.2}  ({:.1}x)",
        m[3],
        m[0] / m[3]
    );
    println!(
        "  cache: {} hits, {} misses ({:.1} % hits)",
        s.hits,
        s.misses,
        100.0 * s.hits as f64 / (s.hits + s.misses) as f64
    );
}
