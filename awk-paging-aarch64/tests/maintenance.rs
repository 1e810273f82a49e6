//! `TlbEl1`'s maintenance sequences checked against the Arm ARM's rules for TLB maintenance
//! (D8.13 "Translation Lookaside Buffers", "Ordering and completion of TLB maintenance
//! instructions"; the TLBI instruction descriptions for the operand layout). QEMU's TCG does not
//! model weak memory ordering, so these host checks are what proves the barriers.
//!
//! The rules, as `check_tlbi_rules` enforces them on any op list:
//!
//! - (a) every `tlbi` is preceded by a `dsb` reaching at least the inner shareable domain for
//!   stores (`dsb ishst` or stronger; a `dmb` is not enough — TLBI is not a memory access, only a
//!   DSB orders the table write before it), and followed by a `dsb` reaching the inner shareable
//!   domain for all accesses (`dsb ish` or `dsb sy`; `ishst` does not wait for the
//!   invalidation) and then an `isb`;
//! - (b) only broadcast (`…is`) forms;
//! - only barriers and TLB invalidations (no register writes, no cache maintenance).
//!
//! Per hook: (c) `flush_page` invalidates all levels (`vae1is`/`vaae1is`), `flush_leaf` the last
//! level (`vale1is`/`vaale1is`); (d) the operand holds VA\[55:12\] in bits 43:0, zero in 47:44,
//! and the ASID in 63:48 with the ASID forms, which are used exactly when the table has an
//! ASID (otherwise `vaae1is`/`vaale1is`/`vmalle1is`, operand bits 63:44 zero); (e) `publish` is
//! `dsb ishst; isb`, `order_table_writes` a `dmb ishst` (or stronger, or a `dsb`).

use awk_paging::VirtAddr;
use awk_paging_aarch64::maint::{Barrier, Op, Scope, TlbiOp};
use awk_paging_aarch64::TlbEl1;

const VAS: [u64; 8] = [
    0,
    0x1000,
    0x4000_1234,
    0x0000_7fff_ffff_f000,
    0x0000_ffff_ffff_f000,
    0xffff_0000_0000_0000,
    0xffff_8000_0020_0000,
    0xffff_ffff_ffff_f000,
];

const ASIDS: [Option<u16>; 6] = [
    None,
    Some(0),
    Some(1),
    Some(0xff),
    Some(0x100),
    Some(0xffff),
];

/// Checks rules (a), (b) and the allowed-ops rule on `ops`; `Err` names the first violation.
fn check_tlbi_rules(ops: &[Op]) -> Result<(), String> {
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Dsb(_) | Op::Dmb(_) | Op::Isb => {}
            Op::Tlbi(t, _) => {
                if !t.broadcast() {
                    return Err(format!("op {i}: {op} is not broadcast (…is)"));
                }
                let before = &ops[..i];
                if !before
                    .iter()
                    .any(|o| matches!(o, Op::Dsb(b) if b.covers(Barrier::IshSt)))
                {
                    return Err(format!(
                        "op {i}: {op} without a dsb ishst (or stronger) before it"
                    ));
                }
                let after = &ops[i + 1..];
                let Some(dsb) = after
                    .iter()
                    .position(|o| matches!(o, Op::Dsb(b) if b.covers(Barrier::Ish)))
                else {
                    return Err(format!("op {i}: {op} without a dsb ish (or sy) after it"));
                };
                if !after[dsb + 1..].contains(&Op::Isb) {
                    return Err(format!("op {i}: {op}: no isb after its completing dsb"));
                }
            }
            Op::Msr(..) | Op::DcCivac(_) => {
                return Err(format!("op {i}: {op} does not belong in TLB maintenance"))
            }
        }
    }
    Ok(())
}

/// The only `tlbi` of `ops`.
fn single_tlbi(ops: &[Op]) -> Result<(TlbiOp, u64), String> {
    let tlbis: Vec<_> = ops
        .iter()
        .filter_map(|o| match *o {
            Op::Tlbi(t, x) => Some((t, x)),
            _ => None,
        })
        .collect();
    match tlbis[..] {
        [one] => Ok(one),
        _ => Err(format!("expected one tlbi, got {tlbis:?}")),
    }
}

/// Rule (d) for a by-VA invalidation of `va` in a table with `asid`.
fn check_va_operand(t: TlbiOp, x: u64, va: u64, asid: Option<u16>) -> Result<(), String> {
    let Scope::Page { asid: by_asid, .. } = t.scope() else {
        return Err(format!("{t:?} is not a by-VA invalidation"));
    };
    if by_asid != asid.is_some() {
        return Err(format!("{t:?} for a table with ASID {asid:?}"));
    }
    // VA[55:12] in bits 43:0, written out without the crate's helper.
    let want_page = (va >> 12) & 0x0000_0fff_ffff_ffff;
    if x & 0x0000_0fff_ffff_ffff != want_page {
        return Err(format!(
            "operand {x:#x}: bits 43:0 are not VA[55:12] of {va:#x}"
        ));
    }
    if (x >> 44) & 0xf != 0 {
        return Err(format!("operand {x:#x}: TTL bits 47:44 not zero"));
    }
    let want_asid = asid.map_or(0, u64::from);
    if x >> 48 != want_asid {
        return Err(format!(
            "operand {x:#x}: bits 63:48 should hold ASID {want_asid:#x}"
        ));
    }
    Ok(())
}

fn check_flush(ops: &[Op], va: u64, asid: Option<u16>, leaf: bool) -> Result<(), String> {
    check_tlbi_rules(ops)?;
    let (t, x) = single_tlbi(ops)?;
    match t.scope() {
        Scope::Page {
            last_level_only, ..
        } if last_level_only == leaf => {}
        s => return Err(format!("{t:?} has scope {s:?}; leaf-only wanted: {leaf}")),
    }
    check_va_operand(t, x, va, asid)
}

#[test]
fn flush_page_invalidates_all_levels_with_barriers() {
    for asid in ASIDS {
        for va in VAS {
            let ops = TlbEl1 { asid }.flush_page_ops(VirtAddr::new(va));
            check_flush(ops.ops(), va, asid, false)
                .unwrap_or_else(|e| panic!("flush_page({va:#x}) asid {asid:?}: {ops}: {e}"));
        }
    }
}

#[test]
fn flush_leaf_invalidates_the_last_level_with_barriers() {
    for asid in ASIDS {
        for va in VAS {
            let ops = TlbEl1 { asid }.flush_leaf_ops(VirtAddr::new(va));
            check_flush(ops.ops(), va, asid, true)
                .unwrap_or_else(|e| panic!("flush_leaf({va:#x}) asid {asid:?}: {ops}: {e}"));
        }
    }
}

#[test]
fn flush_all_invalidates_the_asid_or_everything() {
    for asid in ASIDS {
        let ops = TlbEl1 { asid }.flush_all_ops();
        check_tlbi_rules(ops.ops()).unwrap_or_else(|e| panic!("asid {asid:?}: {ops}: {e}"));
        let (t, x) = single_tlbi(ops.ops()).unwrap();
        match asid {
            Some(a) => {
                assert_eq!(t.scope(), Scope::Asid, "asid {a}: {ops}");
                assert_eq!(
                    x,
                    u64::from(a) << 48,
                    "aside1is operand: ASID in bits 63:48"
                );
            }
            None => {
                assert_eq!(t.scope(), Scope::All, "{ops}");
                assert_eq!(x, 0, "vmalle1is takes no operand");
            }
        }
    }
}

#[test]
fn publish_is_dsb_ishst_then_isb() {
    for asid in ASIDS {
        let ops = TlbEl1 { asid }.publish_ops();
        match ops.ops() {
            [Op::Dsb(b), Op::Isb] if b.covers(Barrier::IshSt) => {}
            other => panic!("publish: {other:?}"),
        }
        assert_eq!(ops.to_string(), "dsb ishst; isb");
    }
}

#[test]
fn order_table_writes_is_a_store_barrier_for_all_walkers() {
    for asid in ASIDS {
        let ops = TlbEl1 { asid }.order_table_writes_ops();
        match ops.ops() {
            [Op::Dmb(b) | Op::Dsb(b)] if b.covers(Barrier::IshSt) => {}
            other => panic!("order_table_writes: {other:?}"),
        }
        assert_eq!(ops.to_string(), "dmb ishst");
    }
}

#[test]
fn sequences_as_assembly() {
    let va = VirtAddr::new(0xffff_8000_1234_5000);
    let asid = TlbEl1 { asid: Some(0x42) };
    let none = TlbEl1 { asid: None };
    assert_eq!(
        asid.flush_page_ops(va).to_string(),
        "dsb ishst; tlbi vae1is, 0x420ff800012345; dsb ish; isb"
    );
    assert_eq!(
        none.flush_page_ops(va).to_string(),
        "dsb ishst; tlbi vaae1is, 0xff800012345; dsb ish; isb"
    );
    assert_eq!(
        asid.flush_leaf_ops(va).to_string(),
        "dsb ishst; tlbi vale1is, 0x420ff800012345; dsb ish; isb"
    );
    assert_eq!(
        none.flush_leaf_ops(va).to_string(),
        "dsb ishst; tlbi vaale1is, 0xff800012345; dsb ish; isb"
    );
    assert_eq!(
        asid.flush_all_ops().to_string(),
        "dsb ishst; tlbi aside1is, 0x42000000000000; dsb ish; isb"
    );
    assert_eq!(
        none.flush_all_ops().to_string(),
        "dsb ishst; tlbi vmalle1is; dsb ish; isb"
    );
}

/// The checker itself rejects each way a sequence can go wrong (so a passing check means
/// something).
#[test]
fn checker_rejects_broken_sequences() {
    let tlbi = Op::Tlbi(TlbiOp::Vaae1is, 1);
    let good = [
        Op::Dsb(Barrier::IshSt),
        tlbi,
        Op::Dsb(Barrier::Ish),
        Op::Isb,
    ];
    assert_eq!(check_tlbi_rules(&good), Ok(()));
    let stronger = [Op::Dsb(Barrier::Sy), tlbi, Op::Dsb(Barrier::Sy), Op::Isb];
    assert_eq!(check_tlbi_rules(&stronger), Ok(()));
    let broken: [(&str, &[Op]); 8] = [
        ("no leading dsb", &[tlbi, Op::Dsb(Barrier::Ish), Op::Isb]),
        (
            "dmb instead of dsb before",
            &[Op::Dmb(Barrier::Ish), tlbi, Op::Dsb(Barrier::Ish), Op::Isb],
        ),
        (
            "non-shareable dsb before",
            &[
                Op::Dsb(Barrier::NshSt),
                tlbi,
                Op::Dsb(Barrier::Ish),
                Op::Isb,
            ],
        ),
        ("no trailing dsb", &[Op::Dsb(Barrier::IshSt), tlbi, Op::Isb]),
        (
            "trailing dsb ishst",
            &[
                Op::Dsb(Barrier::IshSt),
                tlbi,
                Op::Dsb(Barrier::IshSt),
                Op::Isb,
            ],
        ),
        (
            "no isb",
            &[Op::Dsb(Barrier::IshSt), tlbi, Op::Dsb(Barrier::Ish)],
        ),
        (
            "isb before the dsb",
            &[
                Op::Dsb(Barrier::IshSt),
                tlbi,
                Op::Isb,
                Op::Dsb(Barrier::Ish),
            ],
        ),
        (
            "local tlbi",
            &[
                Op::Dsb(Barrier::IshSt),
                Op::Tlbi(TlbiOp::Vaae1, 1),
                Op::Dsb(Barrier::Ish),
                Op::Isb,
            ],
        ),
    ];
    for (what, ops) in broken {
        assert!(check_tlbi_rules(ops).is_err(), "{what} accepted");
    }
    assert!(
        check_flush(&good, 0x1000, None, true).is_err(),
        "all-levels form as leaf"
    );
    assert!(check_flush(&good, 0x2000, None, false).is_err(), "wrong VA");
    assert!(
        check_flush(&good, 0x1000, Some(3), false).is_err(),
        "no-ASID form with an ASID"
    );
    let vae1is = [
        Op::Dsb(Barrier::IshSt),
        Op::Tlbi(TlbiOp::Vae1is, 1),
        Op::Dsb(Barrier::Ish),
        Op::Isb,
    ];
    assert!(
        check_flush(&vae1is, 0x1000, Some(3), false).is_err(),
        "ASID missing"
    );
    assert!(
        check_flush(&vae1is, 0x1000, None, false).is_err(),
        "ASID form without an ASID"
    );
}

#[test]
fn tlbi_forms_classified_as_the_arm_arm_names_them() {
    use TlbiOp::*;
    let all = [
        Vae1is, Vaae1is, Vale1is, Vaale1is, Aside1is, Vmalle1is, Vae1, Vaae1, Vale1, Vaale1,
        Aside1, Vmalle1, Rvae1is, Rvaae1is, Rvale1is, Rvaale1is,
    ];
    for t in all {
        let name = t.mnemonic();
        assert_eq!(t.broadcast(), name.ends_with("is"), "{name}");
        assert_eq!(t.takes_operand(), !name.starts_with("vmalle1"), "{name}");
        let expect = if name.starts_with("aside1") {
            Scope::Asid
        } else if name.starts_with("vmalle1") {
            Scope::All
        } else if let Some(rest) = name.strip_prefix('r') {
            Scope::Range {
                asid: !rest.starts_with("vaa"),
                last_level_only: rest.starts_with("val") || rest.starts_with("vaal"),
            }
        } else {
            Scope::Page {
                asid: !name.starts_with("vaa"),
                last_level_only: name.starts_with("val") || name.starts_with("vaal"),
            }
        };
        assert_eq!(t.scope(), expect, "{name}");
    }
}

/// The interpreter's `asm!` templates come from the same tables as these names, so checking the
/// names against the Arm ARM's spelling checks the executed instructions' text.
#[test]
fn instruction_text_as_the_arm_arm_spells_it() {
    use awk_paging_aarch64::maint::SysReg;
    let barriers = [
        (Barrier::Sy, "sy"),
        (Barrier::St, "st"),
        (Barrier::Ish, "ish"),
        (Barrier::IshSt, "ishst"),
        (Barrier::Nsh, "nsh"),
        (Barrier::NshSt, "nshst"),
    ];
    for (b, name) in barriers {
        assert_eq!(b.mnemonic(), name);
        assert_eq!(Op::Dsb(b).to_string(), format!("dsb {name}"));
        assert_eq!(Op::Dmb(b).to_string(), format!("dmb {name}"));
    }
    let regs = [
        (SysReg::MairEl1, "mair_el1"),
        (SysReg::TcrEl1, "tcr_el1"),
        (SysReg::Ttbr0El1, "ttbr0_el1"),
        (SysReg::Ttbr1El1, "ttbr1_el1"),
        (SysReg::SctlrEl1, "sctlr_el1"),
    ];
    for (r, name) in regs {
        assert_eq!(r.name(), name);
        assert_eq!(Op::Msr(r, 0x10).to_string(), format!("msr {name}, 0x10"));
    }
    let tlbis = [
        (TlbiOp::Vae1is, "vae1is"),
        (TlbiOp::Vaae1is, "vaae1is"),
        (TlbiOp::Vale1is, "vale1is"),
        (TlbiOp::Vaale1is, "vaale1is"),
        (TlbiOp::Aside1is, "aside1is"),
        (TlbiOp::Vmalle1is, "vmalle1is"),
        (TlbiOp::Vae1, "vae1"),
        (TlbiOp::Vaae1, "vaae1"),
        (TlbiOp::Vale1, "vale1"),
        (TlbiOp::Vaale1, "vaale1"),
        (TlbiOp::Aside1, "aside1"),
        (TlbiOp::Vmalle1, "vmalle1"),
    ];
    for (t, name) in tlbis {
        assert_eq!(t.mnemonic(), name);
    }
    assert_eq!(Op::Isb.to_string(), "isb");
    assert_eq!(Op::DcCivac(0x40).to_string(), "dc civac, 0x40");
}

/// A gather's batch shares one `dsb ishst` and one `dsb ish; isb` between its TLBIs, which
/// follow the same rules as single flushes: broadcast, all levels where a table changed (else
/// the last level), the operand of each page with the table's ASID.
#[test]
fn flush_pages_batches_under_one_barrier_pair() {
    use awk_paging::{Invalidation, PageSize, FULL_FLUSH_THRESHOLD};
    for asid in [None, Some(7u16)] {
        let tlb = TlbEl1 { asid };
        let pages: Vec<_> = (0..5u64)
            .map(|i| Invalidation {
                va: VirtAddr::new(0x4000_0000 + i * 0x20_0000),
                size: if i == 2 {
                    PageSize::Size2M
                } else {
                    PageSize::Size4K
                },
                walks: i % 2 == 1,
            })
            .collect();
        let seq = tlb.flush_pages_ops(&pages).expect("within the threshold");
        let ops = seq.ops();
        check_tlbi_rules(ops).unwrap();
        assert_eq!(ops.first(), Some(&Op::Dsb(Barrier::IshSt)));
        assert_eq!(&ops[ops.len() - 2..], &[Op::Dsb(Barrier::Ish), Op::Isb]);
        let barriers = ops.iter().filter(|o| !matches!(o, Op::Tlbi(..))).count();
        assert_eq!(
            barriers, 3,
            "one barrier pair and one isb for the batch: {seq}"
        );
        for (p, op) in pages.iter().zip(&ops[1..ops.len() - 2]) {
            let Op::Tlbi(t, x) = *op else {
                panic!("{op} is not a tlbi")
            };
            let one = if p.walks {
                tlb.flush_page_ops(p.va)
            } else {
                tlb.flush_leaf_ops(p.va)
            };
            assert_eq!(
                (t, x),
                single_tlbi(one.ops()).unwrap(),
                "same TLBI as the single hook"
            );
            check_va_operand(t, x, p.va.as_u64(), asid).unwrap();
        }
        let too_many = vec![pages[0]; FULL_FLUSH_THRESHOLD + 1];
        assert!(tlb.flush_pages_ops(&too_many).is_none());
    }
}

/// The range operand's fields where the Arm ARM puts them (TLBI RVAE1IS etc., 4 KiB granule):
/// ASID 63:48, TG 47:46 = 0b01, SCALE 45:44, NUM 43:39, TTL 38:37 = 0, BaseADDR 36:0 =
/// VA[48:12]; the range is (NUM + 1) << (5 × SCALE + 1) pages and always covers what was asked.
#[test]
fn range_operand_fields_and_coverage() {
    use awk_paging_aarch64::maint::tlbi_range_operand;
    let field = |x: u64, lo: u32, bits: u32| (x >> lo) & ((1 << bits) - 1);
    // Hand-computed: 2 pages at 0x5000 with ASID 7: SCALE 0, NUM 0.
    assert_eq!(
        tlbi_range_operand(VirtAddr::new(0x5000), 2, Some(7)),
        Some(7 << 48 | 1 << 46 | 5)
    );
    // 33 pages: SCALE 0 steps of 2 need 17 (NUM 16).
    assert_eq!(
        tlbi_range_operand(VirtAddr::new(0), 33, None),
        Some(1 << 46 | 16 << 39)
    );
    // 65 pages: 33 steps of 2 do not fit in NUM: SCALE 1 (64-page steps), NUM 1.
    assert_eq!(
        tlbi_range_operand(VirtAddr::new(0), 65, None),
        Some(1 << 46 | 1 << 44 | 1 << 39)
    );
    // An upper-half address: BaseADDR keeps VA[48:12] (bit 36 = VA bit 48 selects TTBR1).
    let x = tlbi_range_operand(VirtAddr::new(0xffff_8000_4000_0000), 4, None).unwrap();
    assert_eq!(
        field(x, 0, 37),
        (0xffff_8000_4000_0000u64 >> 12) & ((1 << 37) - 1)
    );
    assert_eq!(field(x, 36, 1), 1);
    // Coverage for many sizes: at least what was asked, less than twice the step more.
    for pages in [
        1u64,
        2,
        3,
        31,
        64,
        65,
        512,
        513,
        1 << 15,
        262_144,
        (1 << 21) - 1,
        1 << 21,
    ] {
        let x = tlbi_range_operand(VirtAddr::new(0x4000_0000), pages, Some(1)).unwrap();
        assert_eq!(field(x, 46, 2), 0b01, "TG");
        assert_eq!(field(x, 37, 2), 0, "TTL");
        assert_eq!(field(x, 48, 16), 1, "ASID");
        let (scale, num) = (field(x, 44, 2), field(x, 39, 5));
        let step = 1u64 << (5 * scale + 1);
        let covered = (num + 1) * step;
        assert!(
            covered >= pages && covered < pages + step,
            "{pages}: {covered}"
        );
    }
    assert_eq!(
        tlbi_range_operand(VirtAddr::new(0), (1 << 21) + 1, None),
        None
    );
}

/// FEAT_TLBIRANGE is read from ID_AA64ISAR0_EL1.TLB (bits 59:56): 0b0010 only.
#[test]
fn range_support_from_isar0() {
    use awk_paging_aarch64::tlbi_range_in_isar0;
    assert!(tlbi_range_in_isar0(0b0010 << 56));
    assert!(!tlbi_range_in_isar0(0b0001 << 56));
    assert!(!tlbi_range_in_isar0(0xf << 52));
}

/// `flush_range_ops` follows the TLBI rules (`dsb ishst` before, `dsb ish; isb` after, one
/// broadcast invalidation), picks the ASID / all-ASID and all-levels / last-level range form
/// the table and the change need, and covers the range.
#[test]
fn flush_range_sequences_follow_the_rules() {
    for asid in [None, Some(5u16)] {
        for walks in [false, true] {
            let seq = TlbEl1 { asid }
                .flush_range_ops(VirtAddr::new(0x4000_0000), 600, walks)
                .unwrap();
            let ops = seq.ops();
            check_tlbi_rules(ops).unwrap();
            let (t, x) = single_tlbi(ops).unwrap();
            assert!(t.broadcast(), "{t:?}");
            assert_eq!(
                t.scope(),
                Scope::Range {
                    asid: asid.is_some(),
                    last_level_only: !walks
                },
                "{t:?}"
            );
            assert_eq!(x >> 48, asid.map_or(0, u64::from), "ASID field");
            let (scale, num) = ((x >> 44) & 3, (x >> 39) & 31);
            assert!((num + 1) << (5 * scale + 1) >= 600);
            assert_eq!(x & ((1 << 37) - 1), 0x4_0000, "BaseADDR");
        }
    }
    assert!(TlbEl1 { asid: None }
        .flush_range_ops(VirtAddr::new(0), 1 << 22, true)
        .is_none());
}
