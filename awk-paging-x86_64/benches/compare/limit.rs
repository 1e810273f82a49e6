//! The memory-traffic limit: what any implementation must at least do, with nothing else —
//! zero the table frames a mapping needs and link them (one store each), then one 8-byte store
//! per page (map, protect, unmap) or one load per page (translate), in the scenario's order.
//! Every other number is also shown as a multiple of this one.

use std::ptr::{read_volatile, write_volatile};
use std::time::{Duration, Instant};

use crate::arena;
use crate::subject::{Size, Workload};

/// The tables `w` needs below an existing root: its leaf tables (one per 2 MiB for 4 KiB pages,
/// one per 1 GiB for 2 MiB pages) and the tables above them.
fn tables(w: &Workload) -> (usize, usize) {
    let span = w.pages() as u64 * w.size.bytes();
    let gib = span.div_ceil(1 << 30) as usize;
    match w.size {
        Size::K4 => (span.div_ceil(1 << 21) as usize, gib + 1),
        Size::M2 => (gib, 1),
    }
}

/// One round: map, translate, protect and unmap as bare loads and stores.
#[inline(never)]
pub fn round(w: &Workload) -> [Duration; 4] {
    arena::reset_order();
    let (nleaf, nupper) = tables(w);
    let frames: Vec<u64> = (0..nleaf + nupper)
        .map(|_| arena::alloc().expect("arena frame"))
        .collect();
    let (leaves, upper) = frames.split_at(nleaf);
    let slot = |i: u32| (leaves[(i >> 9) as usize] + u64::from(i & 511) * 8) as *mut u64;
    let entry = |i: u32| w.pa_base + u64::from(i) * w.size.bytes();
    let mut times = [Duration::ZERO; 4];

    let t = Instant::now();
    for &f in &frames {
        // SAFETY: arena frames this function holds.
        unsafe { std::ptr::write_bytes(f as *mut u8, 0, 4096) };
    }
    for (k, &f) in leaves.iter().enumerate() {
        // SAFETY: as above; one link per leaf table, into the first upper table.
        unsafe { write_volatile((upper[0] as *mut u64).add(k % 512), f | 3) };
    }
    for &i in &w.order {
        // SAFETY: as above.
        unsafe { write_volatile(slot(i), entry(i) | 3) };
    }
    times[0] = t.elapsed();

    let t = Instant::now();
    let mut sum = 0u64;
    for &i in &w.order {
        // SAFETY: as above.
        sum = sum.wrapping_add(unsafe { read_volatile(slot(i)) } & !0xfff);
    }
    times[1] = t.elapsed();
    assert_eq!(sum, w.expected(crate::subject::Op::Translate, true));

    let t = Instant::now();
    for &i in &w.order {
        // SAFETY: as above.
        unsafe { write_volatile(slot(i), entry(i) | 1) };
    }
    times[2] = t.elapsed();

    let t = Instant::now();
    for &i in &w.order {
        // SAFETY: as above.
        unsafe { write_volatile(slot(i), 0) };
    }
    times[3] = t.elapsed();

    for f in frames {
        // SAFETY: nothing references these frames any more.
        unsafe { arena::free(f) };
    }
    times
}
