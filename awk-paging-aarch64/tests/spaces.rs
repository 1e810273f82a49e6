//! Address spaces on AArch64: the TTBR0 switch checked against the Arm ARM (D8.13 "TLB
//! maintenance", ordering and completion; D23 context synchronization after a translation
//! register write), and the split-roots layout, user pages and copy-on-write with the real
//! VMSAv8-64 encoding on the host emulator.
//!
//! Rules checked for both ASID widths and both rollover states:
//! - the last two ops are `msr ttbr0_el1, asid << 48 | root` then `isb`;
//! - a rollover flush (`tlbi vmalle1`, local: each CPU flushes itself) comes before the TTBR0
//!   write, after a store barrier, and is completed by a `dsb` covering it before the write;
//! - no other TLBI and no broadcast one.

use awk_paging::emu::{CpuAccess, EmuMemory, EmuTlb, Tracer};
use awk_paging::space::{
    Asids, ContextId, EmuMmu, FrameRefs, KernelHalf, KernelSpace, Resolved, SpaceTlb, Switch,
    UserSpace,
};
use awk_paging::{Attrs, Flags, PageSize, PhyAddr, RangeOptions, VirtAddr};
use awk_paging_aarch64::maint::{Barrier, Op, SysReg, TlbiOp};
use awk_paging_aarch64::space::Ttbr0Mmu;
use awk_paging_aarch64::{Half, TlbEl1, VaSize, A64};

#[test]
fn ttbr0_switch_writes_root_and_asid_then_synchronizes() {
    let root = PhyAddr::new(0x4123_4000);
    for asid16 in [false, true] {
        let mmu = Ttbr0Mmu { asid16 };
        for flush_local in [false, true] {
            for asid in [1u16, 200, 255, 256, 65535] {
                let s = Switch {
                    asid,
                    flush_local,
                    new_asid: flush_local,
                };
                let Some(seq) = mmu.activate_ops(root, s) else {
                    assert!(!asid16 && asid > 255, "refused only beyond 8 bits");
                    continue;
                };
                let ops = seq.ops();
                let what = format!("{mmu:?} {s:?}: {seq}");
                let n = ops.len();
                assert_eq!(
                    &ops[n - 2..],
                    &[
                        Op::Msr(SysReg::Ttbr0El1, u64::from(asid) << 48 | root.as_u64()),
                        Op::Isb
                    ],
                    "{what}"
                );
                let tlbis: Vec<usize> =
                    (0..n).filter(|&i| matches!(ops[i], Op::Tlbi(..))).collect();
                if flush_local {
                    assert_eq!(tlbis.len(), 1, "{what}");
                    let t = tlbis[0];
                    assert_eq!(ops[t], Op::Tlbi(TlbiOp::Vmalle1, 0), "local, all: {what}");
                    assert!(
                        ops[..t]
                            .iter()
                            .any(|o| matches!(o, Op::Dsb(b) if b.covers(Barrier::NshSt))),
                        "store barrier before the TLBI: {what}"
                    );
                    assert!(
                        ops[t + 1..n - 2].iter().any(|o| matches!(o, Op::Dsb(b) if b.covers(Barrier::Nsh) && !b.stores_only())),
                        "TLBI completed before the TTBR0 write: {what}"
                    );
                } else {
                    assert!(
                        tlbis.is_empty(),
                        "a switch to a live ASID flushes nothing: {what}"
                    );
                }
            }
        }
    }
    let s = Switch {
        asid: 1,
        flush_local: false,
        new_asid: false,
    };
    assert!(Ttbr0Mmu::default()
        .activate_ops(PhyAddr::new(0x4123_4008), s)
        .is_none());
    assert!(Ttbr0Mmu::default()
        .activate_ops(PhyAddr::new(1 << 48), s)
        .is_none());
}

/// The per-ASID hook methods map to the ASID forms (`aside1is` keeps global entries).
#[test]
fn per_asid_forms() {
    let t = TlbEl1 { asid: Some(7) };
    assert_eq!(
        t.flush_all_ops().ops()[1],
        Op::Tlbi(TlbiOp::Aside1is, 7 << 48)
    );
    assert_eq!(
        t.flush_page_ops(VirtAddr::new(0x5000)).ops()[1],
        Op::Tlbi(TlbiOp::Vae1is, 7 << 48 | 5)
    );
    assert_eq!(
        t.flush_leaf_ops(VirtAddr::new(0x5000)).ops()[1],
        Op::Tlbi(TlbiOp::Vale1is, 7 << 48 | 5)
    );
}

#[derive(Default)]
struct Refs(std::collections::HashMap<u64, usize>);

impl FrameRefs for Refs {
    fn share(&mut self, f: PhyAddr) {
        *self.0.entry(f.as_u64()).or_insert(1) += 1;
    }
    fn owners(&self, f: PhyAddr) -> usize {
        self.0.get(&f.as_u64()).copied().unwrap_or(1)
    }
    fn release(&mut self, f: PhyAddr) {
        if let Some(n) = self.0.get_mut(&f.as_u64()) {
            *n -= 1;
        }
    }
}

const AP_EL0: u64 = 1 << 6;
const AP_RO: u64 = 1 << 7;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const NG: u64 = 1 << 11;
const SW: u64 = 1 << 55;

/// Split roots with the VMSAv8-64 encoding: the kernel in a TTBR1 table of its own (global,
/// UXN), processes in TTBR0 tables (AP\[1\], PXN, nG); copy-on-write marked with bit 55 and
/// resolved by break-before-make (a new output address), checked by the tracer.
#[test]
fn aarch64_processes_on_the_emulator() {
    let lower = A64::new(VaSize::Bits39, Half::Lower);
    let upper = A64::new(VaSize::Bits39, Half::Upper);
    let mem = EmuMemory::new(256);
    let cpu = EmuTlb::new();
    let mut k = KernelSpace::new_split(upper, &mem, &mem, &cpu).unwrap();
    assert_eq!(k.half(), KernelHalf::NONE);
    let kva = VirtAddr::new(0xffff_ffc0_0000_0000);
    let mut g = k.gather();
    unsafe {
        k.map_range(
            kva,
            PhyAddr::new(0x4000_0000),
            0x1000,
            Flags::RW,
            RangeOptions::default(),
            &mut g,
        )
    }
    .unwrap();
    k.finish(g).unwrap();
    let (_, kraw) = k.table().raw_entry(kva).unwrap();
    assert_eq!(
        (kraw & NG, kraw & UXN, kraw & AP_EL0),
        (0, UXN, 0),
        "{kraw:#x}"
    );

    let tracer = Tracer::new(lower, &mem, Some(&cpu));
    let (ip, ic) = (ContextId::new(), ContextId::new());
    let mut parent = UserSpace::new(
        lower,
        &tracer,
        &tracer,
        SpaceTlb::new(&tracer, &ip),
        KernelHalf::NONE,
    )
    .unwrap();
    tracer.adopt(parent.root());
    let data = mem.allocate_data_frame().unwrap();
    mem.write_u64(data, 0xa64);
    let uva = VirtAddr::new(0x40_0000);
    let rw = Attrs {
        user: true,
        ..Attrs::from(Flags::RW)
    };
    unsafe { parent.map(uva, data, PageSize::Size4K, rw) }
        .unwrap()
        .flush();
    let (_, raw) = parent.raw_entry(uva).unwrap();
    assert_eq!(
        (raw & AP_EL0, raw & PXN, raw & NG, raw & AP_RO),
        (AP_EL0, PXN, NG, 0),
        "{raw:#x}"
    );

    let mut asids = Asids::<1>::new(256).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { parent.activate(&mut asids, 0, &ip, &mmu) }.unwrap();
    assert_eq!(
        cpu.access_walk(&mem, &lower, mmu.root(), uva),
        CpuAccess::Mapped(data)
    );

    let mut refs = Refs::default();
    let child = unsafe { parent.fork(&tracer, SpaceTlb::new(&tracer, &ic), &mut refs) }.unwrap();
    for s in [&parent, &child] {
        let (_, raw) = s.raw_entry(uva).unwrap();
        assert_eq!(
            (raw & SW, raw & AP_RO, raw & AP_EL0),
            (SW, AP_RO, AP_EL0),
            "{raw:#x}"
        );
    }
    let mut frames = &mem;
    let r = unsafe { parent.resolve_write_fault(uva, &mut refs, &mut frames) }.unwrap();
    let Resolved::Copied { to, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(mem.read_u64(to), Some(0xa64));
    let (_, raw) = parent.raw_entry(uva).unwrap();
    assert_eq!((raw & SW, raw & AP_RO), (0, 0), "{raw:#x}");
    assert_eq!(
        cpu.access_walk(&mem, &lower, mmu.root(), uva),
        CpuAccess::Mapped(to)
    );
    assert_eq!(tracer.violations(), vec![]);
    tracer.assert_flushed();
    let _ = child;
}
