//! ASIDs: tagged switches without flush, rollover with its flush (and the negative control
//! without it), reserved running ASIDs, per-process invalidation.

use super::*;

/// Two spaces map the same VA to different frames; each reads its own after a switch, and
/// switching back needs neither a new ASID nor a flush: the tagged entry is still cached.
#[test]
fn same_va_in_two_spaces_switching_without_flush() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let (ia, ib) = (ContextId::new(), ContextId::new());
    let (mut a, mut b) = (user(&mem, &cpu, &k, &ia), user(&mem, &cpu, &k, &ib));
    let (fa, fb) = (
        mem.allocate_data_frame().unwrap(),
        mem.allocate_data_frame().unwrap(),
    );
    mem.write_u64(fa, 0xa);
    mem.write_u64(fb, 0xb);
    map_user(&mut a, UVA, fa, user_rw());
    map_user(&mut b, UVA, fb, user_rw());
    let mut asids = Asids::<1>::new(256).unwrap();
    let mmu = EmuMmu::new(&cpu);
    let sa = unsafe { a.activate(&mut asids, 0, &ia, &mmu) }.unwrap();
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0xa));
    let sb = unsafe { b.activate(&mut asids, 0, &ib, &mmu) }.unwrap();
    assert_ne!(sa.asid, sb.asid);
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0xb));
    assert_eq!(asids.active(0).unwrap().root, b.root());
    let hits = cpu.tlb_hits();
    let again = unsafe { a.activate(&mut asids, 0, &ia, &mmu) }.unwrap();
    assert_eq!(
        again,
        Switch {
            asid: sa.asid,
            flush_local: false,
            new_asid: false
        }
    );
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0xa));
    assert_eq!(
        cpu.tlb_hits(),
        hits + 1,
        "served from the TLB: no flush on switch"
    );
    assert_eq!((cpu.full_flushes(), mmu.local_flushes()), (0, 0));
}

/// A CPU that ignores `flush_local`: the negative control of the rollover test.
struct NoLocalFlush<'t>(EmuMmu<'t>);

// SAFETY: deliberately broken (drops the local flush); only used to show the failure.
unsafe impl Activate for NoLocalFlush<'_> {
    unsafe fn activate(&self, root: PhyAddr, switch: Switch) {
        let s = Switch {
            flush_local: false,
            ..switch
        };
        unsafe { self.0.activate(root, s) }
    }
}

/// Runs four spaces on one CPU with 4 ASIDs (0 is never used): the fourth rolls over and gets
/// the ASID the first had, at the same VA; returns what the CPU reads there afterwards.
fn rollover_reads<X: Activate>(
    mem: &EmuMemory,
    cpu: &EmuTlb,
    mmu: &X,
    root: impl Fn(&X) -> PhyAddr,
) -> (u64, u16, u16) {
    let k = kernel(mem, cpu);
    let ids: Vec<ContextId> = (0..4).map(|_| ContextId::new()).collect();
    let mut spaces: Vec<User<'_>> = ids.iter().map(|id| user(mem, cpu, &k, id)).collect();
    let mut asids = Asids::<1>::new(4).unwrap();
    for (i, s) in spaces.iter_mut().enumerate() {
        let f = mem.allocate_data_frame().unwrap();
        mem.write_u64(f, 0x100 + i as u64);
        map_user(s, UVA, f, user_rw());
    }
    for (i, s) in spaces.iter().enumerate().take(3) {
        unsafe { s.activate(&mut asids, 0, &ids[i], mmu) }.unwrap();
        assert_eq!(read(mem, cpu, root(mmu), UVA), Some(0x100 + i as u64));
    }
    let s = unsafe { spaces[3].activate(&mut asids, 0, &ids[3], mmu) }.unwrap();
    assert!(s.flush_local && s.new_asid);
    assert_eq!(asids.rollovers(), 1);
    let seen = read(mem, cpu, root(mmu), UVA).unwrap();
    (seen, s.asid, ids[0].asid().unwrap())
}

/// After a rollover the reused ASID's old entries are flushed before it runs again: the new
/// owner reads its own frame. Without the flush (negative control) it reads the previous
/// owner's, through the stale TLB entry.
#[test]
fn rollover_flushes_a_reused_asid_before_use() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mmu = EmuMmu::new(&cpu);
    let (seen, asid, first) = rollover_reads(&mem, &cpu, &mmu, |m| m.root());
    assert_eq!(asid, first, "the fourth space reuses the first one's ASID");
    assert_eq!(seen, 0x103);
    assert_eq!(mmu.local_flushes(), 1);

    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let broken = NoLocalFlush(EmuMmu::new(&cpu));
    let (seen, _, _) = rollover_reads(&mem, &cpu, &broken, |m| m.0.root());
    assert_eq!(
        seen, 0x100,
        "negative control: the stale entry of the ASID's old owner"
    );
}

/// Spaces active on other CPUs at a rollover keep their ASIDs (reserved): nobody else gets
/// them in the new generation, and they switch back without a new ASID.
#[test]
fn rollover_reserves_the_running_asids() {
    let mut asids = Asids::<2>::new(8).unwrap();
    let ids: Vec<ContextId> = (0..12).map(|_| ContextId::new()).collect();
    let root = PhyAddr::new(0x1000);
    let running = asids.switch_to(1, &ids[0], root).unwrap().asid;
    for id in &ids[1..] {
        let s = asids.switch_to(0, id, root).unwrap();
        assert_ne!(s.asid, running, "a running ASID is never handed out again");
        assert_ne!(s.asid, 0);
    }
    assert!(asids.rollovers() >= 1);
    assert!(asids.is_active(&ids[0]));
    let back = asids.switch_to(1, &ids[0], root).unwrap();
    assert_eq!(
        (back.asid, back.new_asid, back.flush_local),
        (running, false, true)
    );
}

/// A per-process flush (its hook's `flush_all`, a fork's, a destroy's) drops that ASID's
/// entries only: another process's and the kernel's global ones stay.
#[test]
fn per_process_flush_keeps_global_and_other_asids() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    map_kernel(&mut k, KVA, mem.allocate_data_frame().unwrap());
    let (ia, ib) = (ContextId::new(), ContextId::new());
    let (mut a, mut b) = (user(&mem, &cpu, &k, &ia), user(&mem, &cpu, &k, &ib));
    map_user(&mut a, UVA, mem.allocate_data_frame().unwrap(), user_rw());
    map_user(&mut b, UVA, mem.allocate_data_frame().unwrap(), user_rw());
    let mut asids = Asids::<1>::new(256).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { a.activate(&mut asids, 0, &ia, &mmu) }.unwrap();
    read(&mem, &cpu, mmu.root(), UVA).unwrap();
    read(&mem, &cpu, mmu.root(), KVA).unwrap();
    unsafe { b.activate(&mut asids, 0, &ib, &mmu) }.unwrap();
    read(&mem, &cpu, mmu.root(), UVA).unwrap();
    assert_eq!(cpu.cached(), 3);
    use awk_paging::Tlb;
    a.tlb().flush_all();
    assert_eq!(
        cpu.cached(),
        2,
        "a's entry gone; b's and the global one stay"
    );
    let hits = cpu.tlb_hits();
    read(&mem, &cpu, mmu.root(), UVA).unwrap();
    read(&mem, &cpu, mmu.root(), KVA).unwrap();
    assert_eq!(cpu.tlb_hits(), hits + 2);
}
