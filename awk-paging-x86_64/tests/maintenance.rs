//! `Invlpg`'s ops checked against the Intel SDM (Vol. 3A §4.10.4 "Invalidation of TLBs and
//! Paging-Structure Caches"), and the `clflush` range ops.
//!
//! - `flush_page`/`flush_leaf`: `invlpg` of that very address (it drops the page's TLB entries,
//!   global ones included, and the paging-structure caches used for it);
//! - `flush_all`: must drop global entries too — a CR4.PGE toggle when PGE is on (a CR3 write
//!   keeps global entries), a CR3 reload when it is off;
//! - `publish`: nothing; `order_table_writes`: a compiler fence;
//! - no cache maintenance in TLB hooks.

use awk_paging::VirtAddr;
use awk_paging_x86_64::cache::{clflush_ops, ClflushLine, RangeWraps};
use awk_paging_x86_64::maint::Op;
use awk_paging_x86_64::Invlpg;

const CANONICAL: [u64; 7] = [
    0,
    0x1000,
    0x1234,
    0x0000_7fff_ffff_f000,
    0x0000_7fff_ffff_ffff,
    0xffff_8000_0000_0000,
    0xffff_ffff_ffff_f000,
];
const NON_CANONICAL: [u64; 3] = [
    0x0000_8000_0000_0000,
    0xffff_7fff_ffff_f000,
    0x0100_0000_0000_0000,
];

fn only_tlb_ops(ops: &[Op]) -> bool {
    ops.iter()
        .all(|o| !matches!(o, Op::Clflush(_) | Op::Mfence))
}

#[test]
fn flush_page_and_leaf_invlpg_the_address() {
    for va in CANONICAL {
        let v = VirtAddr::new(va);
        assert_eq!(Invlpg.flush_page_ops(v).ops(), &[Op::Invlpg(va)], "{va:#x}");
        assert_eq!(Invlpg.flush_leaf_ops(v).ops(), &[Op::Invlpg(va)], "{va:#x}");
    }
    for va in NON_CANONICAL {
        // Never mapped, so never cached: nothing to invalidate.
        assert!(
            Invlpg.flush_page_ops(VirtAddr::new(va)).is_empty(),
            "{va:#x}"
        );
    }
}

#[test]
fn flush_all_drops_global_entries() {
    let with_pge = Invlpg.flush_all_ops(true);
    assert!(
        with_pge.ops().contains(&Op::ToggleCr4Pge),
        "CR4.PGE on: a CR3 write would keep global entries: {with_pge}"
    );
    let without = Invlpg.flush_all_ops(false);
    assert!(
        without.ops().contains(&Op::ReloadCr3) || without.ops().contains(&Op::ToggleCr4Pge),
        "CR4.PGE off: {without}"
    );
    assert!(only_tlb_ops(with_pge.ops()) && only_tlb_ops(without.ops()));
    assert_eq!(with_pge.to_string(), "mov cr4, cr4 ^ PGE; mov cr4, cr4");
    assert_eq!(without.to_string(), "mov cr3, cr3");
}

#[test]
fn publish_nothing_and_order_with_a_compiler_fence() {
    assert!(Invlpg.publish_ops().is_empty());
    assert_eq!(Invlpg.order_table_writes_ops().ops(), &[Op::CompilerFence]);
}

#[test]
fn clflush_every_line_once_between_fences() {
    for line_bytes in [32u64, 64, 128] {
        let line = ClflushLine::from_cpuid_ebx((line_bytes as u32 / 8) << 8).unwrap();
        for start in [0x10_0000u64, 0x10_0001, 0x10_003f, 0x10_0fff] {
            for len in [0u64, 1, 63, 64, 65, 4096, 3 * 4096 + 7] {
                let ops: Vec<Op> = clflush_ops(VirtAddr::new(start), len, line)
                    .unwrap()
                    .collect();
                let what = format!("start {start:#x} len {len} line {line_bytes}");
                assert_eq!(ops.first(), Some(&Op::Mfence), "{what}");
                assert_eq!(ops.last(), Some(&Op::Mfence), "{what}");
                let lines: Vec<u64> = ops[1..ops.len() - 1]
                    .iter()
                    .map(|o| match *o {
                        Op::Clflush(a) => a,
                        other => panic!("{other} between the fences: {what}"),
                    })
                    .collect();
                let first = start & !(line_bytes - 1);
                let want: Vec<u64> = if len == 0 {
                    Vec::new()
                } else {
                    (0..)
                        .map(|i| first + i * line_bytes)
                        .take_while(|&a| a < start + len)
                        .collect()
                };
                assert_eq!(lines, want, "{what}");
            }
        }
    }
    let line = ClflushLine::from_cpuid_ebx(8 << 8).unwrap();
    assert_eq!(
        clflush_ops(VirtAddr::new(u64::MAX - 1), 2, line),
        Err(RangeWraps)
    );
    // CPUID.01H:EBX[15:8] × 8; zero (no clflush information) or odd sizes refused.
    assert_eq!(
        ClflushLine::from_cpuid_ebx(0x0001_0800).unwrap().bytes(),
        64
    );
    assert_eq!(ClflushLine::from_cpuid_ebx(0xffff_00ff), None);
}
