//! Clean-and-invalidate to PoC as ops: every line of the range visited exactly once, aligned,
//! nothing outside it, then `dsb sy` (Arm ARM: DC CIVAC, and DSB completing cache maintenance
//! for every observer).

use awk_paging::VirtAddr;
use awk_paging_aarch64::cache::{clean_invalidate_ops, LineSize, RangeWraps};
use awk_paging_aarch64::maint::{Barrier, Op};

#[test]
fn line_size_is_ctr_el0_dminline_in_words() {
    // CTR_EL0.DminLine is bits 19:16, log2 of the line size in 4-byte words.
    for dminline in 0..16u64 {
        let ctr = 0x8444_0000 & !(0xf << 16) | dminline << 16 | 0xf << 20 | 0xf;
        assert_eq!(LineSize::from_ctr_el0(ctr).bytes(), 4 << dminline);
    }
}

fn check(start: u64, len: u64, line: u64) {
    let ctr = (line.trailing_zeros() as u64 - 2) << 16;
    let ops: Vec<Op> = clean_invalidate_ops(VirtAddr::new(start), len, LineSize::from_ctr_el0(ctr))
        .unwrap()
        .collect();
    let what = format!("start {start:#x} len {len:#x} line {line}");
    let (last, lines) = ops.split_last().unwrap();
    assert_eq!(*last, Op::Dsb(Barrier::Sy), "ends with dsb sy: {what}");
    let addrs: Vec<u64> = lines
        .iter()
        .map(|op| match *op {
            Op::DcCivac(a) => a,
            other => panic!("{other} before the final dsb: {what}"),
        })
        .collect();
    if len == 0 {
        assert!(addrs.is_empty(), "{what}");
        return;
    }
    let first = start & !(line - 1);
    let end = start + len;
    let want: Vec<u64> = (0..)
        .map(|i| first + i * line)
        .take_while(|&a| a < end)
        .collect();
    assert_eq!(
        addrs, want,
        "every line overlapping the range, once, ascending: {what}"
    );
    assert!(addrs.iter().all(|a| a % line == 0), "aligned: {what}");
    assert!(
        addrs[0] <= start && addrs[addrs.len() - 1] + line >= end,
        "covers: {what}"
    );
}

#[test]
fn every_line_of_the_range_once_then_dsb_sy() {
    for line in [16, 32, 64, 128] {
        for start in [
            0x4000_0000,
            0x4000_0001,
            0x4000_003f,
            0x4000_0fc0,
            0x4000_1000 - 1,
        ] {
            for len in [0, 1, 2, 63, 64, 65, 4096, 4096 * 3 + 5] {
                check(start, len, line);
            }
        }
    }
}

#[test]
fn wrapping_range_refused() {
    let line = LineSize::from_ctr_el0(4 << 16);
    assert_eq!(
        clean_invalidate_ops(VirtAddr::new(u64::MAX - 10), 11, line),
        Err(RangeWraps)
    );
    // Up to the very last byte is fine, and terminates.
    let ops: Vec<Op> = clean_invalidate_ops(VirtAddr::new(u64::MAX - 100), 100, line)
        .unwrap()
        .collect();
    assert_eq!(ops.len(), 2 + 1);
    assert_eq!(ops[0], Op::DcCivac(u64::MAX - 127));
}
