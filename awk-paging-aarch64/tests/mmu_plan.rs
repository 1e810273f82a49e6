//! `mmu::plan` checked against the Arm ARM: the order of the steps (register writes, TLB
//! invalidation, the `isb` before SCTLR_EL1 is written), the register values bit by bit at the
//! positions the register descriptions give (MAIR_EL1, TCR_EL1, TTBR0/1_EL1, SCTLR_EL1), and
//! the refusals.

use awk_paging::PhyAddr;
use awk_paging_aarch64::features::HardwareFlags;
use awk_paging_aarch64::maint::{Barrier, Op, Scope, SysReg};
use awk_paging_aarch64::mmu::{plan, Config, CpuId, MmuError};
use awk_paging_aarch64::VaSize;

const ROOT: u64 = 0x4100_0000;
const UPPER: u64 = 0x4200_0000;

fn cpu(asid_bits: u8, parange: u8) -> CpuId {
    CpuId {
        tgran4: 0,
        parange,
        asid_bits,
    }
}

fn configs() -> Vec<Config> {
    let mut all = Vec::new();
    for va in [VaSize::Bits39, VaSize::Bits48] {
        for asid in [0, 1, 0xff, 0x100, 0xffff] {
            let c = Config::new(PhyAddr::new(ROOT), va).with_asid(asid);
            all.push(c);
            for upper in [VaSize::Bits39, VaSize::Bits48] {
                all.push(c.with_upper(PhyAddr::new(UPPER), upper));
            }
        }
    }
    all
}

/// The ordering rules of the enable sequence, on any op list:
///
/// - SCTLR_EL1 is written exactly once, and is followed by an `isb` (the MMU on for what
///   follows);
/// - before that write: a `tlbi` of everything at EL1 (`vmalle1` or `vmalle1is`) preceded by a
///   `dsb` covering the stores to the tables and followed by a completing `dsb`;
/// - every MAIR/TCR/TTBR write comes before an `isb` that itself precedes the SCTLR write and
///   follows the completing `dsb` (the writes and the invalidation in effect when the MMU turns
///   on).
fn check_enable_order(ops: &[Op]) -> Result<(), String> {
    let sctlr: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i], Op::Msr(SysReg::SctlrEl1, _)))
        .collect();
    let [s] = sctlr[..] else {
        return Err(format!("SCTLR_EL1 written {} times", sctlr.len()));
    };
    if !ops[s + 1..].contains(&Op::Isb) {
        return Err("no isb after the SCTLR_EL1 write".into());
    }
    let before = &ops[..s];
    let Some(t) = before
        .iter()
        .position(|o| matches!(o, Op::Tlbi(op, _) if op.scope() == Scope::All))
    else {
        return Err("no tlbi vmalle1 before the SCTLR_EL1 write".into());
    };
    if !before[..t]
        .iter()
        .any(|o| matches!(o, Op::Dsb(b) if b.covers(Barrier::IshSt)))
    {
        return Err("no dsb before the tlbi".into());
    }
    let Some(done) = before[t + 1..]
        .iter()
        .position(|o| matches!(o, Op::Dsb(b) if b.covers(Barrier::Nsh)))
        .map(|d| d + t + 1)
    else {
        return Err("no dsb completing the tlbi".into());
    };
    let last_write = before
        .iter()
        .rposition(|o| matches!(o, Op::Msr(..)))
        .unwrap_or(0);
    let sync_from = done.max(last_write);
    if !before[sync_from + 1..].contains(&Op::Isb) {
        return Err("no isb between the register writes/tlbi and the SCTLR_EL1 write".into());
    }
    Ok(())
}

#[test]
fn steps_in_the_order_the_arm_arm_requires() {
    for asid_bits in [0, 2] {
        for c in configs() {
            let Ok(p) = plan(cpu(asid_bits, 0b0101), &c) else {
                continue;
            };
            check_enable_order(p.steps().ops())
                .unwrap_or_else(|e| panic!("{c:?}: {}: {e}", p.steps()));
            // The exact sequence.
            let mut want = vec![
                Op::Msr(SysReg::MairEl1, p.value(SysReg::MairEl1).unwrap()),
                Op::Msr(SysReg::TcrEl1, p.value(SysReg::TcrEl1).unwrap()),
                Op::Msr(SysReg::Ttbr0El1, p.value(SysReg::Ttbr0El1).unwrap()),
            ];
            if c.upper.is_some() {
                want.push(Op::Msr(SysReg::Ttbr1El1, UPPER));
            }
            want.extend([
                Op::Dsb(Barrier::Ish),
                Op::Tlbi(awk_paging_aarch64::maint::TlbiOp::Vmalle1, 0),
                Op::Dsb(Barrier::Ish),
                Op::Isb,
                Op::Msr(SysReg::SctlrEl1, p.value(SysReg::SctlrEl1).unwrap()),
                Op::Isb,
            ]);
            assert_eq!(p.steps().ops(), &want[..], "{c:?}");
        }
    }
}

#[test]
fn plan_with_ttbr1_as_assembly() {
    let c = Config::new(PhyAddr::new(ROOT), VaSize::Bits48)
        .with_asid(0x1234)
        .with_upper(PhyAddr::new(UPPER), VaSize::Bits39);
    let p = plan(cpu(2, 0b0101), &c).unwrap();
    // TCR: T0SZ 16, IRGN0/ORGN0 WB, SH0 inner, T1SZ 25, EPD1 clear, IRGN1/ORGN1 WB, SH1 inner,
    // TG1 4 KiB, IPS 48 bits, AS 16-bit ASIDs.
    assert_eq!(
        p.steps().to_string(),
        "msr mair_el1, 0x444aaff; msr tcr_el1, 0x15b5193510; msr ttbr0_el1, 0x1234000041000000; \
         msr ttbr1_el1, 0x42000000; dsb ish; tlbi vmalle1; dsb ish; isb; \
         msr sctlr_el1, 0x30d0199d; isb"
    );
}

#[test]
fn order_checker_rejects_broken_plans() {
    use awk_paging_aarch64::maint::TlbiOp::Vmalle1;
    let w = |r| Op::Msr(r, 1);
    let tlbi = Op::Tlbi(Vmalle1, 0);
    let (dsb, isb) = (Op::Dsb(Barrier::Ish), Op::Isb);
    let sctlr = w(SysReg::SctlrEl1);
    let good = [w(SysReg::TcrEl1), dsb, tlbi, dsb, isb, sctlr, isb];
    assert_eq!(check_enable_order(&good), Ok(()));
    let broken: [(&str, &[Op]); 6] = [
        (
            "no isb before SCTLR",
            &[w(SysReg::TcrEl1), dsb, tlbi, dsb, sctlr, isb],
        ),
        ("no tlbi", &[w(SysReg::TcrEl1), dsb, dsb, isb, sctlr, isb]),
        (
            "no dsb before tlbi",
            &[w(SysReg::TcrEl1), tlbi, dsb, isb, sctlr, isb],
        ),
        (
            "no dsb after tlbi",
            &[w(SysReg::TcrEl1), dsb, tlbi, isb, sctlr, isb],
        ),
        (
            "no isb after SCTLR",
            &[w(SysReg::TcrEl1), dsb, tlbi, dsb, isb, sctlr],
        ),
        (
            "register written after the isb",
            &[dsb, tlbi, dsb, isb, w(SysReg::TcrEl1), sctlr, isb],
        ),
    ];
    for (what, ops) in broken {
        assert!(check_enable_order(ops).is_err(), "{what} accepted");
    }
}

#[test]
fn mair_holds_the_arm_arm_attribute_bytes() {
    let p = plan(cpu(2, 5), &Config::new(PhyAddr::new(ROOT), VaSize::Bits48)).unwrap();
    // Attr0 0xff Normal WB RW-allocate, Attr1 0xaa Normal WT R-allocate, Attr2 0x44 Normal NC,
    // Attr3 0x04 Device-nGnRE, Attr4 0x00 Device-nGnRnE, Attr5..7 unused.
    assert_eq!(
        p.value(SysReg::MairEl1),
        Some(u64::from_le_bytes([
            0xff, 0xaa, 0x44, 0x04, 0x00, 0x00, 0x00, 0x00
        ]))
    );
}

#[test]
fn tcr_fields_at_their_arm_arm_positions() {
    for asid_bits in [0, 2] {
        for parange in 0..=6 {
            for c in configs() {
                let Ok(p) = plan(cpu(asid_bits, parange), &c) else {
                    continue;
                };
                let tcr = p.value(SysReg::TcrEl1).unwrap();
                let field = |lo: u32, bits: u32| (tcr >> lo) & ((1 << bits) - 1);
                let what = format!("{c:?} ASIDBits {asid_bits} PARange {parange}: {tcr:#x}");
                assert_eq!(field(0, 6), u64::from(64 - c.va.bits()), "T0SZ {what}");
                assert_eq!(field(7, 1), 0, "EPD0: TTBR0 walks on {what}");
                assert_eq!(field(8, 2), 0b01, "IRGN0 WB {what}");
                assert_eq!(field(10, 2), 0b01, "ORGN0 WB {what}");
                assert_eq!(field(12, 2), 0b11, "SH0 inner {what}");
                assert_eq!(field(14, 2), 0b00, "TG0 4 KiB {what}");
                match c.upper {
                    Some(u) => {
                        assert_eq!(field(16, 6), u64::from(64 - u.va.bits()), "T1SZ {what}");
                        assert_eq!(field(23, 1), 0, "EPD1 clear: TTBR1 walks {what}");
                    }
                    None => assert_eq!(field(23, 1), 1, "EPD1 set: no TTBR1 walks {what}"),
                }
                assert_eq!(field(22, 1), 0, "A1: ASID from TTBR0 {what}");
                assert_eq!(field(24, 2), 0b01, "IRGN1 WB {what}");
                assert_eq!(field(26, 2), 0b01, "ORGN1 WB {what}");
                assert_eq!(field(28, 2), 0b11, "SH1 inner {what}");
                assert_eq!(field(30, 2), 0b10, "TG1 4 KiB {what}");
                assert_eq!(field(32, 3), u64::from(parange.min(5)), "IPS {what}");
                assert_eq!(field(36, 1), u64::from(asid_bits == 2), "AS {what}");
                assert_eq!(field(37, 2), 0, "TBI0/1 off {what}");
                assert_eq!(field(39, 2), 0, "HA/HD off {what}");
                assert_eq!(tcr >> 41, 0, "nothing above HD {what}");
            }
        }
    }
}

/// TCR_EL1.HA is bit 39, HD bit 40 (Arm ARM, TCR_EL1): set exactly as the configuration's
/// hardware updates say, HD never without HA, and nothing else in TCR changes with them.
#[test]
fn hardware_updates_set_ha_and_hd() {
    let c = Config::new(PhyAddr::new(ROOT), VaSize::Bits48);
    let base = plan(cpu(2, 5), &c).unwrap().value(SysReg::TcrEl1).unwrap();
    let cases = [
        (false, false, 0),
        (true, false, 1 << 39),
        (true, true, 1 << 39 | 1 << 40),
        (false, true, 0),
    ];
    for (access, dirty, bits) in cases {
        let hw = HardwareFlags { access, dirty };
        let tcr = plan(cpu(2, 5), &c.with_hardware_updates(hw))
            .unwrap()
            .value(SysReg::TcrEl1)
            .unwrap();
        assert_eq!(tcr, base | bits, "{hw:?}: {tcr:#x}");
    }
}

#[test]
fn ttbrs_hold_root_and_asid() {
    for c in configs() {
        let p = plan(cpu(2, 5), &c).unwrap();
        let ttbr0 = p.value(SysReg::Ttbr0El1).unwrap();
        assert_eq!(
            ttbr0 >> 48,
            u64::from(c.asid),
            "TTBR0.ASID bits 63:48 {c:?}"
        );
        assert_eq!(ttbr0 & 0x0000_ffff_ffff_fffe, ROOT, "TTBR0.BADDR {c:?}");
        assert_eq!(ttbr0 & 1, 0, "TTBR0.CnP {c:?}");
        match c.upper {
            Some(_) => assert_eq!(p.value(SysReg::Ttbr1El1), Some(UPPER), "{c:?}"),
            None => assert_eq!(p.value(SysReg::Ttbr1El1), None, "{c:?}"),
        }
    }
}

/// Every SCTLR_EL1 bit, from the register description (ARMv8.0 field positions; the later
/// extensions' fields all 0).
#[test]
fn sctlr_is_a_complete_known_value() {
    let p = plan(cpu(2, 5), &Config::new(PhyAddr::new(ROOT), VaSize::Bits48)).unwrap();
    let v = p.value(SysReg::SctlrEl1).unwrap();
    let ones: [(u32, &str); 13] = [
        (0, "M: stage 1 translation on"),
        (2, "C: data caching on"),
        (3, "SA: SP alignment check at EL1"),
        (4, "SA0: SP alignment check at EL0"),
        (7, "ITD: RES1 without AArch32 EL0"),
        (8, "SED: RES1 without AArch32 EL0"),
        (11, "EOS: RES1 in ARMv8.0"),
        (12, "I: instruction caching on"),
        (20, "TSCXT: RES1 in ARMv8.0"),
        (22, "EIS: RES1 in ARMv8.0"),
        (23, "SPAN: RES1 in ARMv8.0"),
        (28, "nTLSMD: RES1 in ARMv8.0"),
        (29, "LSMAOE: RES1 in ARMv8.0"),
    ];
    let named_zeros: [(u32, &str); 12] = [
        (1, "A: no alignment fault checking"),
        (5, "CP15BEN"),
        (6, "nAA"),
        (9, "UMA: EL0 DAIF access trapped"),
        (14, "DZE: EL0 dc zva trapped"),
        (15, "UCT: EL0 CTR_EL0 trapped"),
        (16, "nTWI: EL0 wfi trapped"),
        (18, "nTWE: EL0 wfe trapped"),
        (19, "WXN: writable does not imply XN"),
        (24, "E0E: EL0 little-endian"),
        (25, "EE: EL1 little-endian, little-endian table walks"),
        (26, "UCI: EL0 cache maintenance trapped"),
    ];
    for bit in 0..64 {
        let want = ones.iter().find(|(b, _)| *b == bit);
        let got = (v >> bit) & 1;
        match want {
            Some((_, name)) => assert_eq!(got, 1, "SCTLR_EL1 bit {bit} ({name}) in {v:#x}"),
            None => {
                let name = named_zeros
                    .iter()
                    .find(|(b, _)| *b == bit)
                    .map_or("RES0 or a later extension's enable", |(_, n)| n);
                assert_eq!(got, 0, "SCTLR_EL1 bit {bit} ({name}) in {v:#x}");
            }
        }
    }
    assert_eq!(v, 0x30d0_199d);
    // The same value whatever the configuration and CPU.
    for c in configs() {
        let p = plan(cpu(2, 5), &c).unwrap();
        assert_eq!(p.value(SysReg::SctlrEl1), Some(v), "{c:?}");
    }
}

#[test]
fn sixteen_bit_asids_set_tcr_as_and_eight_bit_cpus_refuse_wide_asids() {
    for c in configs() {
        let wide = c.asid > 0xff;
        let eight = plan(cpu(0, 5), &c);
        if wide {
            assert_eq!(eight, Err(MmuError::AsidTooWide(c.asid)), "{c:?}");
        } else {
            let tcr = eight.unwrap().value(SysReg::TcrEl1).unwrap();
            assert_eq!(tcr & 1 << 36, 0, "8-bit CPU: TCR_EL1.AS clear {c:?}");
        }
        let sixteen = plan(cpu(2, 5), &c).unwrap();
        let tcr = sixteen.value(SysReg::TcrEl1).unwrap();
        assert_ne!(tcr & 1 << 36, 0, "16-bit CPU: TCR_EL1.AS set {c:?}");
        assert_eq!(
            sixteen.value(SysReg::Ttbr0El1).unwrap() >> 48,
            u64::from(c.asid)
        );
    }
    // Reserved ASIDBits values count as 8 bits.
    let c = Config::new(PhyAddr::new(ROOT), VaSize::Bits48).with_asid(0x100);
    assert_eq!(plan(cpu(1, 5), &c), Err(MmuError::AsidTooWide(0x100)));
}

#[test]
fn refusals() {
    let c = Config::new(PhyAddr::new(ROOT), VaSize::Bits48);
    let no4k = CpuId {
        tgran4: 0b1111,
        ..cpu(2, 5)
    };
    assert_eq!(plan(no4k, &c), Err(MmuError::Granule4KUnsupported));
    let lpa2 = CpuId {
        tgran4: 0b0001,
        ..cpu(2, 5)
    };
    assert!(
        plan(lpa2, &c).is_ok(),
        "TGran4 = 0b0001: 4 KiB with 52-bit addresses"
    );
    assert_eq!(plan(cpu(2, 7), &c), Err(MmuError::UnknownPaRange(7)));
    let misaligned = Config::new(PhyAddr::new(ROOT + 8), VaSize::Bits48);
    assert_eq!(plan(cpu(2, 5), &misaligned), Err(MmuError::BadRoot));
    // PARange 0b0000: 32-bit output; a root at 4 GiB is out of reach.
    let high = Config::new(PhyAddr::new(1 << 32), VaSize::Bits48);
    assert_eq!(plan(cpu(2, 0), &high), Err(MmuError::BadRoot));
    assert!(plan(cpu(2, 1), &high).is_ok());
    let bad_upper = c.with_upper(PhyAddr::new(UPPER + 0x800), VaSize::Bits48);
    assert_eq!(plan(cpu(2, 5), &bad_upper), Err(MmuError::BadUpperRoot));
    let far_upper = c.with_upper(PhyAddr::new(1 << 48), VaSize::Bits48);
    assert_eq!(plan(cpu(2, 6), &far_upper), Err(MmuError::BadUpperRoot));
}

#[test]
fn pa_bits_from_parange() {
    let c = Config::new(PhyAddr::new(ROOT), VaSize::Bits48);
    let want = [32, 36, 40, 42, 44, 48, 48];
    for (parange, bits) in want.into_iter().enumerate() {
        let p = plan(cpu(0, parange as u8), &c).unwrap();
        assert_eq!(p.pa_bits(), bits, "PARange {parange}");
    }
    assert_eq!(
        CpuId::from_id_aa64mmfr0(0xf000_0025),
        CpuId {
            tgran4: 0xf,
            parange: 5,
            asid_bits: 2
        }
    );
}
