//! Address spaces on x86_64: the switch and per-PCID ops checked against the Intel SDM (Vol.
//! 3A §4.10.1 "Process-Context Identifiers", §4.10.4.1 "Operations that Invalidate TLBs and
//! Paging-Structure Caches", Vol. 2A "INVPCID"), and the shared-root layout, user pages and
//! copy-on-write with the real x86 encoding on the host emulator.
//!
//! Rules checked for every combination of CR4.PCIDE, INVPCID and the rollover flag:
//! - the last op loads CR3 with the root, and with PCIDE the PCID and bit 63 (a live PCID keeps
//!   its entries: no flush on a switch);
//! - a rollover flush comes before the CR3 load and reaches every PCID (`invpcid` type 3 or a
//!   CR4.PGE toggle), keeping global entries where the CPU allows it;
//! - a per-PCID invalidation never drops global entries when INVPCID exists, and reaches the
//!   named PCID: `invpcid` with that PCID, `invlpg`/CR3 reload only when it is the current one,
//!   else the everything-flush.

use awk_paging::emu::{CpuAccess, EmuMemory, EmuTlb};
use awk_paging::space::{
    Asids, ContextId, EmuMmu, FrameRefs, KernelSpace, Resolved, SpaceTlb, Switch, UserSpace,
};
use awk_paging::{Attrs, Flags, PageSize, PhyAddr, RangeOptions, VirtAddr};
use awk_paging_x86_64::maint::{InvpcidKind, Op};
use awk_paging_x86_64::space::{PcidMmu, CR3_NOFLUSH, PCIDS};
use awk_paging_x86_64::X86_64;
use x86_64::structures::paging::PageTableFlags as F;

const MMUS: [PcidMmu; 4] = [
    PcidMmu {
        pcide: false,
        invpcid: false,
    },
    PcidMmu {
        pcide: false,
        invpcid: true,
    },
    PcidMmu {
        pcide: true,
        invpcid: false,
    },
    PcidMmu {
        pcide: true,
        invpcid: true,
    },
];

/// Whether `op` invalidates every PCID's non-global entries on this CPU.
fn flushes_every_pcid(op: &Op) -> bool {
    matches!(
        op,
        Op::Invpcid(
            InvpcidKind::AllNonGlobal | InvpcidKind::AllIncludingGlobal,
            _,
            _
        ) | Op::ToggleCr4Pge
    )
}

#[test]
fn switch_loads_cr3_last_after_the_rollover_flush() {
    let root = PhyAddr::new(0x1234_5000);
    for mmu in MMUS {
        for flush_local in [false, true] {
            for asid in [1u16, 77, 4095] {
                let s = Switch {
                    asid,
                    flush_local,
                    new_asid: flush_local,
                };
                let seq = mmu.activate_ops(root, s).unwrap();
                let ops = seq.ops();
                let what = format!("{mmu:?} {s:?}: {seq}");
                let Some(&Op::WriteCr3(cr3)) = ops.last() else {
                    panic!("CR3 load last: {what}")
                };
                assert_eq!(cr3 & 0x000f_ffff_ffff_f000, root.as_u64(), "{what}");
                if mmu.pcide {
                    assert_eq!(cr3 & 0xfff, u64::from(asid), "PCID: {what}");
                    assert_ne!(cr3 & CR3_NOFLUSH, 0, "no flush on switch: {what}");
                    assert_eq!(
                        ops[..ops.len() - 1].iter().any(flushes_every_pcid),
                        flush_local,
                        "{what}"
                    );
                    if mmu.invpcid && flush_local {
                        assert_eq!(
                            ops[0],
                            Op::Invpcid(InvpcidKind::AllNonGlobal, 0, 0),
                            "keeps globals: {what}"
                        );
                    }
                } else {
                    // Without PCIDs the load itself drops every non-global entry.
                    assert_eq!(
                        (cr3 & 0xfff, cr3 & CR3_NOFLUSH, ops.len()),
                        (0, 0, 1),
                        "{what}"
                    );
                }
            }
        }
    }
    let on = PcidMmu {
        pcide: true,
        invpcid: true,
    };
    let bad = Switch {
        asid: PCIDS as u16,
        flush_local: false,
        new_asid: true,
    };
    assert!(
        on.activate_ops(root, bad).is_none(),
        "PCID 4096 does not exist"
    );
    let ok = Switch { asid: 1, ..bad };
    assert!(
        on.activate_ops(PhyAddr::new(0x1234_5008), ok).is_none(),
        "unaligned root"
    );
}

#[test]
fn per_pcid_invalidation_reaches_that_pcid_and_keeps_globals() {
    let va = VirtAddr::new(0x7f00_0000_1000);
    for mmu in MMUS {
        for (pcid, cr3) in [(5u16, 0x9005u64), (6, 0x9005)] {
            let current = cr3 & 0xfff == u64::from(pcid) || !mmu.pcide;
            let page = mmu.flush_page_asid_ops(va, pcid, cr3);
            let all = mmu.flush_asid_ops(pcid, cr3);
            let what = format!("{mmu:?} pcid {pcid}: page [{page}] all [{all}]");
            if mmu.pcide && mmu.invpcid {
                assert_eq!(
                    page.ops(),
                    &[Op::Invpcid(
                        InvpcidKind::IndividualAddress,
                        pcid,
                        va.as_u64()
                    )],
                    "{what}"
                );
                assert_eq!(
                    all.ops(),
                    &[Op::Invpcid(InvpcidKind::SingleContext, pcid, 0)],
                    "{what}"
                );
            } else if current {
                assert_eq!(page.ops(), &[Op::Invlpg(va.as_u64())], "{what}");
                let Op::WriteCr3(v) = all.ops()[0] else {
                    panic!("{what}")
                };
                assert_eq!(
                    (v & CR3_NOFLUSH, v & !CR3_NOFLUSH),
                    (0, cr3),
                    "reload flushes: {what}"
                );
            } else {
                // invlpg would hit the current PCID, not this one: the documented fallback.
                assert_eq!(page.ops(), &[Op::ToggleCr4Pge], "{what}");
                assert_eq!(all.ops(), &[Op::ToggleCr4Pge], "{what}");
            }
            for op in page.ops().iter().chain(all.ops()) {
                if let Op::Invpcid(k, _, _) = op {
                    assert!(
                        !k.drops_global(),
                        "a process flush keeps the kernel's globals: {what}"
                    );
                }
            }
        }
    }
    let noncanonical = VirtAddr::new(0x0000_8000_0000_0000);
    assert!(MMUS[3].flush_page_asid_ops(noncanonical, 1, 0).is_empty());
}

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

/// The shared-root layout with the x86 encoding: kernel PML4 entries 256..512 without U/S, a
/// user page with U/S on every level above it, kernel leaves global, and copy-on-write marked
/// with bit 9 (read-only, the hardware ignores the bit), resolved by a copy.
#[test]
fn x86_processes_on_the_emulator() {
    let arch = X86_64::new();
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = KernelSpace::new_shared(arch, &mem, &mem, &cpu, 256).unwrap();
    let kframe = mem.allocate_data_frame().unwrap();
    let kva = VirtAddr::new(0xffff_8880_0000_0000);
    let mut g = k.gather();
    unsafe {
        k.map_range(
            kva,
            kframe,
            0x1000,
            Flags::RW,
            RangeOptions::default(),
            &mut g,
        )
    }
    .unwrap();
    k.finish(g).unwrap();
    let word = |root: PhyAddr, i: u64| mem.read_u64(PhyAddr::new(root.as_u64() + 8 * i)).unwrap();
    for i in 256..512 {
        let e = F::from_bits_retain(word(k.root(), i));
        assert!(
            e.contains(F::PRESENT | F::WRITABLE) && !e.contains(F::USER_ACCESSIBLE),
            "PML4[{i}]"
        );
    }
    let (ip, ic) = (ContextId::new(), ContextId::new());
    let mut parent = UserSpace::new(arch, &mem, &mem, SpaceTlb::new(&cpu, &ip), k.half()).unwrap();
    let data = mem.allocate_data_frame().unwrap();
    mem.write_u64(data, 0x5157);
    let uva = VirtAddr::new(0x40_0000);
    let rw = Attrs {
        user: true,
        ..Attrs::from(Flags::RW)
    };
    unsafe { parent.map(uva, data, PageSize::Size4K, rw) }
        .unwrap()
        .flush();
    assert_eq!(
        word(parent.root(), 0) & F::USER_ACCESSIBLE.bits(),
        F::USER_ACCESSIBLE.bits()
    );
    let kt = parent.translate(kva).unwrap();
    assert!(
        !kt.attrs.user && kt.attrs.global,
        "kernel page through the user root"
    );
    let (_, raw) = parent.raw_entry(kva).unwrap();
    assert_ne!(raw & F::GLOBAL.bits(), 0);

    let mut refs = Refs(Default::default());
    let mut child = unsafe { parent.fork(&mem, SpaceTlb::new(&cpu, &ic), &mut refs) }.unwrap();
    for s in [&parent, &child] {
        let (_, raw) = s.raw_entry(uva).unwrap();
        let f = F::from_bits_retain(raw);
        assert!(
            f.contains(F::BIT_9 | F::USER_ACCESSIBLE | F::NO_EXECUTE) && !f.contains(F::WRITABLE),
            "{f:?}"
        );
    }
    let mut asids = Asids::<1>::new(PCIDS).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { child.activate(&mut asids, 0, &ic, &mmu) }.unwrap();
    let mut frames = &mem;
    let r = unsafe { child.resolve_write_fault(uva, &mut refs, &mut frames) }.unwrap();
    let Resolved::Copied { to, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(mem.read_u64(to), Some(0x5157));
    let (_, raw) = child.raw_entry(uva).unwrap();
    let f = F::from_bits_retain(raw);
    assert!(
        f.contains(F::WRITABLE | F::USER_ACCESSIBLE) && !f.contains(F::BIT_9),
        "{f:?}"
    );
    assert_eq!(
        cpu.access_walk(&mem, &arch, mmu.root(), uva),
        CpuAccess::Mapped(to)
    );
    unsafe { child.destroy() };
    unsafe { parent.destroy() };
    assert_eq!(mem.bad_frees(), 0);
    assert_eq!(k.table().translate(kva).unwrap().frame, kframe);
}

/// The physical address of the 4 KiB leaf entry for `va` under `root`.
fn leaf_entry_at(mem: &EmuMemory, root: PhyAddr, va: VirtAddr) -> PhyAddr {
    use awk_paging::arch::{table_index, Arch, Entry};
    let arch = X86_64::new();
    let mut table = root;
    for level in (0..4u8).rev() {
        let at = PhyAddr::new(table.as_u64() + 8 * table_index(va, level) as u64);
        if level == 0 {
            return at;
        }
        match arch.decode(mem.read_u64(at).unwrap(), level) {
            Entry::Table(next) => table = next,
            e => panic!("level {level}: {e:?}"),
        }
    }
    unreachable!()
}

/// Harvesting Accessed/Dirty: the record the hardware wrote is returned and cleared
/// atomically, and the token drops the cached translation (a cached dirty entry would let
/// writes through without setting Dirty again).
#[test]
fn accessed_dirty_harvest_clears_and_invalidates() {
    let arch = X86_64::new();
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = KernelSpace::new_shared(arch, &mem, &mem, &cpu, 256).unwrap();
    let id = ContextId::new();
    let mut u = UserSpace::new(arch, &mem, &mem, SpaceTlb::new(&cpu, &id), k.half()).unwrap();
    let uva = VirtAddr::new(0x40_0000);
    let rw = Attrs {
        user: true,
        ..Attrs::from(Flags::RW)
    };
    let frame = mem.allocate_data_frame().unwrap();
    unsafe { u.map(uva, frame, PageSize::Size4K, rw) }
        .unwrap()
        .flush();
    let mut asids = Asids::<1>::new(PCIDS).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { u.activate(&mut asids, 0, &id, &mmu) }.unwrap();
    assert_eq!(
        cpu.access_walk(&mem, &arch, mmu.root(), uva),
        CpuAccess::Mapped(frame)
    );
    // The CPU's walk and write set A and D (the emulator does not: done by hand).
    let at = leaf_entry_at(&mem, u.root(), uva);
    let ad = (F::ACCESSED | F::DIRTY).bits();
    mem.write_u64(at, mem.read_u64(at).unwrap() | ad);

    let (got, flush) = u
        .clear_accessed_dirty(uva, PageSize::Size4K, false, true)
        .unwrap();
    assert!(got.accessed && got.dirty);
    assert_eq!(
        mem.read_u64(at).unwrap() & ad,
        F::ACCESSED.bits(),
        "Dirty cleared, Accessed kept"
    );
    assert!(cpu.cached_attrs(uva).is_some());
    flush.flush();
    assert!(
        cpu.cached_attrs(uva).is_none(),
        "the cached (dirty) entry is gone"
    );
    let (got, flush) = u
        .clear_accessed_dirty(uva, PageSize::Size4K, true, true)
        .unwrap();
    flush.flush();
    assert!(got.accessed && !got.dirty);
    assert_eq!(mem.read_u64(at).unwrap() & ad, 0);
    let (got, flush) = u
        .clear_accessed_dirty(uva, PageSize::Size4K, true, true)
        .unwrap();
    flush.ignore();
    assert!(!got.accessed && !got.dirty);
    assert_eq!(
        u.translate(uva).unwrap().frame,
        frame,
        "the mapping itself is unchanged"
    );
}
