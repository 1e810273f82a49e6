//! Address spaces on the host emulator: the shared kernel half, user-half edits, destroy,
//! ASIDs (tagged switches, rollover with its flush), per-ASID invalidation, copy-on-write and
//! zero pages.

use std::collections::HashMap;

use awk_paging::emu::{CpuAccess, EmuArch, EmuMemory, EmuTlb};
use awk_paging::space::{
    Activate, Asids, ContextId, EditError, EmuMmu, FaultError, ForkError, FrameRefs, KernelSpace,
    Resolved, SpaceTlb, Switch, UserSpace,
};
use awk_paging::{
    Attrs, CountingFrames, Flags, FlagsError, FrameAllocator, MapError, PageSize, PhyAddr,
    RangeOptions, VirtAddr,
};

const ARCH: EmuArch = EmuArch { without: None };
const KVA: u64 = 0xffff_8000_0000_0000;
const UVA: u64 = 0x40_0000;

type Kernel<'m> = KernelSpace<EmuArch, &'m EmuMemory, &'m EmuMemory, &'m EmuTlb>;
type User<'m> = UserSpace<EmuArch, &'m EmuMemory, &'m EmuMemory, SpaceTlb<'m, &'m EmuTlb>>;

fn user_rw() -> Attrs {
    Attrs {
        user: true,
        ..Attrs::from(Flags::RW)
    }
}

fn user_ro() -> Attrs {
    Attrs {
        user: true,
        ..Attrs::from(Flags::RO)
    }
}

fn kernel<'m>(mem: &'m EmuMemory, cpu: &'m EmuTlb) -> Kernel<'m> {
    KernelSpace::new_shared(ARCH, mem, mem, cpu, 256).unwrap()
}

fn user<'m>(mem: &'m EmuMemory, cpu: &'m EmuTlb, k: &Kernel<'m>, id: &'m ContextId) -> User<'m> {
    UserSpace::new(ARCH, mem, mem, SpaceTlb::new(cpu, id), k.half()).unwrap()
}

fn map_user(u: &mut User<'_>, va: u64, frame: PhyAddr, attrs: Attrs) {
    unsafe { u.map(VirtAddr::new(va), frame, PageSize::Size4K, attrs) }
        .unwrap()
        .flush();
}

fn map_kernel(k: &mut Kernel<'_>, va: u64, pa: PhyAddr) {
    let mut g = k.gather();
    unsafe {
        k.map_range(
            VirtAddr::new(va),
            pa,
            0x1000,
            Flags::RW,
            RangeOptions::default(),
            &mut g,
        )
    }
    .unwrap();
    k.finish(g).unwrap();
}

/// What the CPU reads at `va` with `root` loaded.
fn read(mem: &EmuMemory, cpu: &EmuTlb, root: PhyAddr, va: u64) -> Option<u64> {
    match cpu.access_walk(mem, &ARCH, root, VirtAddr::new(va)) {
        CpuAccess::Mapped(pa) => mem.read_u64(pa),
        CpuAccess::Fault => None,
    }
}

/// Reference counts in a map (frames never shared count 1).
#[derive(Default)]
struct Refs(HashMap<u64, usize>);

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

/// A kernel mapping made after the user spaces exist is visible in both (same tables), and
/// the user roots link exactly the kernel root's entries 256..512.
#[test]
fn kernel_mapping_made_later_appears_in_every_user_space() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    let (ia, ib) = (ContextId::new(), ContextId::new());
    let (a, b) = (user(&mem, &cpu, &k, &ia), user(&mem, &cpu, &k, &ib));
    let frame = mem.allocate_data_frame().unwrap();
    mem.write_u64(frame, 0x6b65726e);
    map_kernel(&mut k, KVA + 0x5000, frame);
    for u in [&a, &b] {
        let t = u.translate(VirtAddr::new(KVA + 0x5000)).unwrap();
        assert_eq!(t.frame, frame);
        assert!(
            t.attrs.global && !t.attrs.user,
            "kernel pages: global, kernel-only"
        );
        assert_eq!(read(&mem, &cpu, u.root(), KVA + 0x5000), Some(0x6b65726e));
    }
    for i in 0..512u64 {
        let word = |root: PhyAddr| mem.read_u64(PhyAddr::new(root.as_u64() + 8 * i)).unwrap();
        let expect = if i >= 256 { word(k.root()) } else { 0 };
        assert_eq!(word(a.root()), expect, "entry {i}");
        assert_ne!(
            i >= 256,
            word(k.root()) == 0,
            "kernel entry {i} pre-populated"
        );
    }
}

/// A user space refuses every edit that reaches the kernel half, and kernel-only or global
/// user attributes; nothing changes.
#[test]
fn user_space_never_edits_the_kernel_half() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let id = ContextId::new();
    let mut u = user(&mem, &cpu, &k, &id);
    let snapshot = |root: PhyAddr| -> Vec<u64> {
        (0..512)
            .map(|i| mem.read_u64(PhyAddr::new(root.as_u64() + 8 * i)).unwrap())
            .collect()
    };
    let (before_k, before_u, used) = (snapshot(k.root()), snapshot(u.root()), mem.frames_in_use());
    let kva = VirtAddr::new(KVA + 0x20_0000);
    let f = PhyAddr::new(0x1234_5000);
    let e = unsafe { u.map(kva, f, PageSize::Size4K, user_rw()) }.unwrap_err();
    assert_eq!(e, EditError::KernelHalf(kva));
    let mut g = u.gather();
    let e = unsafe { u.map_range(kva, f, 0x2000, user_rw(), RangeOptions::default(), &mut g) };
    assert_eq!(e.unwrap_err(), EditError::KernelHalf(kva));
    let e = unsafe { u.unmap_range(kva, 0x1000, &mut g, |_| {}) };
    assert_eq!(e.unwrap_err(), EditError::KernelHalf(kva));
    let e = unsafe { u.protect_range(kva, 0x1000, user_ro(), &mut g) };
    assert_eq!(e.unwrap_err(), EditError::KernelHalf(kva));
    let e = unsafe { u.unmap(kva, PageSize::Size4K) }.unwrap_err();
    assert_eq!(e, EditError::KernelHalf(kva));
    // A user range running into the kernel's top-level entries (first one at index 256).
    let last_user = VirtAddr::new(0x0000_7fff_ffff_f000);
    let e = unsafe {
        u.map_range(
            last_user,
            f,
            0x2000,
            user_rw(),
            RangeOptions::default(),
            &mut g,
        )
    };
    assert!(e.is_err(), "crossing the canonical hole is refused: {e:?}");
    // Kernel attributes in a user space, user + global.
    let uva = VirtAddr::new(UVA);
    let e = unsafe { u.map(uva, f, PageSize::Size4K, Flags::RW) }.unwrap_err();
    assert_eq!(e, EditError::WrongPrivilege);
    let global = Attrs {
        global: true,
        ..user_rw()
    };
    let e = unsafe { u.map(uva, f, PageSize::Size4K, global) }.unwrap_err();
    assert_eq!(
        e,
        EditError::Op(MapError::InvalidFlags(FlagsError::GlobalUser))
    );
    u.finish(g).unwrap();
    assert_eq!(snapshot(k.root()), before_k);
    assert_eq!(snapshot(u.root()), before_u);
    assert_eq!(mem.frames_in_use(), used);
}

/// Destroying a user space frees its own half (root and tables) and nothing of the kernel's:
/// the kernel and another user space still translate through the shared tables.
#[test]
fn destroy_frees_the_user_half_only() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    let kframe = mem.allocate_data_frame().unwrap();
    map_kernel(&mut k, KVA, kframe);
    let (ia, ib) = (ContextId::new(), ContextId::new());
    let b = user(&mem, &cpu, &k, &ib);
    let before = mem.frames_in_use();
    let mut a = user(&mem, &cpu, &k, &ia);
    let data = mem.allocate_data_frame().unwrap();
    map_user(&mut a, UVA, data, user_rw());
    map_user(&mut a, 0x7f00_0000_0000, data, user_ro());
    assert_eq!(mem.frames_in_use(), before + 1 + 1 + 3 + 3); // root, data, 2 x 3 tables
    unsafe { a.destroy() };
    assert_eq!(
        mem.frames_in_use(),
        before + 1,
        "only the data frame is left"
    );
    assert_eq!(mem.bad_frees(), 0);
    assert_eq!(
        k.table().translate(VirtAddr::new(KVA)).unwrap().frame,
        kframe
    );
    assert_eq!(b.translate(VirtAddr::new(KVA)).unwrap().frame, kframe);
}

/// Unmapping everything in the kernel half keeps the tables user roots link: a user space
/// created before still walks valid (not freed) tables, and sees a new kernel mapping.
#[test]
fn kernel_unmap_keeps_the_shared_tables() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    let id = ContextId::new();
    let u = user(&mem, &cpu, &k, &id);
    let frame = mem.allocate_data_frame().unwrap();
    map_kernel(&mut k, KVA, frame);
    let with_tables = mem.frames_in_use();
    let mut g = k.gather();
    // Whole 512 GiB entry: drop_range-like whole-table paths must keep the level-2 table too.
    unsafe { k.unmap_range(VirtAddr::new(KVA), 1 << 39, &mut g, |_| {}) }.unwrap();
    k.finish(g).unwrap();
    assert_eq!(
        mem.frames_in_use(),
        with_tables - 2,
        "level-1 and level-0 tables freed"
    );
    assert_eq!(mem.bad_frees(), 0);
    map_kernel(&mut k, KVA + 0x1000, frame);
    assert_eq!(
        u.translate(VirtAddr::new(KVA + 0x1000)).unwrap().frame,
        frame,
        "the user root still links the kernel's (same) level-2 table"
    );
    // The same through drop_range, which detaches wholly covered tables without a visit.
    let mut g = k.gather();
    unsafe { k.drop_range(VirtAddr::new(KVA), 1 << 39, &mut g) }.unwrap();
    k.finish(g).unwrap();
    assert_eq!(mem.frames_in_use(), with_tables - 2);
    assert_eq!(mem.bad_frees(), 0);
    map_kernel(&mut k, KVA + 0x2000, frame);
    assert_eq!(
        u.translate(VirtAddr::new(KVA + 0x2000)).unwrap().frame,
        frame
    );
}

/// The kernel space maps global kernel pages only.
#[test]
fn kernel_space_mappings_are_global_and_kernel_only() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    let mut g = k.gather();
    let va = VirtAddr::new(KVA);
    let e = unsafe {
        k.map_range(
            va,
            PhyAddr::new(0x5000),
            0x1000,
            user_rw(),
            RangeOptions::default(),
            &mut g,
        )
    };
    assert_eq!(e.unwrap_err(), EditError::WrongPrivilege);
    let e = unsafe {
        k.map_range(
            VirtAddr::new(UVA),
            PhyAddr::new(0x5000),
            0x1000,
            Flags::RW,
            RangeOptions::default(),
            &mut g,
        )
    };
    assert_eq!(e.unwrap_err(), EditError::KernelHalf(VirtAddr::new(UVA)));
    k.finish(g).unwrap();
    map_kernel(&mut k, KVA, PhyAddr::new(0x5000));
    let t = k.table().translate(va).unwrap();
    assert!(t.attrs.global && !t.attrs.user);
}

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

/// Fork, then the child writes (copy), then the parent writes (last owner: made writable).
/// Each resolution invalidates the page for the faulting space's ASID only.
#[test]
fn fork_then_write_faults_copy_then_make_writable() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let (ip, ic) = (ContextId::new(), ContextId::new());
    let mut parent = user(&mem, &cpu, &k, &ip);
    let (data, ro) = (
        mem.allocate_data_frame().unwrap(),
        mem.allocate_data_frame().unwrap(),
    );
    mem.write_u64(data, 0x1111);
    map_user(&mut parent, UVA, data, user_rw());
    map_user(&mut parent, UVA + 0x1000, ro, user_ro());
    let mut asids = Asids::<1>::new(256).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { parent.activate(&mut asids, 0, &ip, &mmu) }.unwrap();
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0x1111));
    assert!(cpu.cached_attrs(VirtAddr::new(UVA)).unwrap().flags.write);

    let mut refs = Refs::default();
    let mut child = unsafe { parent.fork(&mem, SpaceTlb::new(&cpu, &ic), &mut refs) }.unwrap();
    for s in [&parent, &child] {
        let t = s.translate(VirtAddr::new(UVA)).unwrap();
        assert_eq!(
            (t.frame, t.attrs.flags.write, t.attrs.user),
            (data, false, true)
        );
        assert!(s.is_copy_on_write(VirtAddr::new(UVA)));
        assert!(
            !s.is_copy_on_write(VirtAddr::new(UVA + 0x1000)),
            "read-only: shared as is"
        );
    }
    assert_eq!((refs.owners(data), refs.owners(ro)), (2, 2));
    assert!(
        cpu.cached_attrs(VirtAddr::new(UVA)).is_none(),
        "the parent's writable entry was flushed by the fork"
    );
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0x1111));
    assert!(!cpu.cached_attrs(VirtAddr::new(UVA)).unwrap().flags.write);

    // The child runs and writes: a copy.
    unsafe { child.activate(&mut asids, 0, &ic, &mmu) }.unwrap();
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0x1111));
    let mut frames = &mem;
    let r = unsafe { child.resolve_write_fault(VirtAddr::new(UVA + 8), &mut refs, &mut frames) }
        .unwrap();
    let Resolved::Copied { from, to } = r else {
        panic!("{r:?}")
    };
    assert_eq!(from, data);
    assert_eq!(refs.owners(data), 1);
    let t = child.translate(VirtAddr::new(UVA)).unwrap();
    assert_eq!((t.frame, t.attrs.flags.write), (to, true));
    assert!(!child.is_copy_on_write(VirtAddr::new(UVA)));
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, mmu.root(), VirtAddr::new(UVA)),
        CpuAccess::Mapped(to),
        "the child's stale read-only entry was invalidated"
    );
    mem.write_u64(to, 0x2222);
    // The parent still reads the old value from its own (still cached) entry.
    unsafe { parent.activate(&mut asids, 0, &ip, &mmu) }.unwrap();
    let hits = cpu.tlb_hits();
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0x1111));
    assert_eq!(
        cpu.tlb_hits(),
        hits + 1,
        "the child's flush left the parent's entry alone"
    );
    // The parent writes: last owner, made writable in place.
    let r =
        unsafe { parent.resolve_write_fault(VirtAddr::new(UVA), &mut refs, &mut frames) }.unwrap();
    assert_eq!(r, Resolved::MadeWritable { frame: data });
    assert!(
        cpu.cached_attrs(VirtAddr::new(UVA)).is_none(),
        "read-only entry dropped"
    );
    assert!(
        parent
            .translate(VirtAddr::new(UVA))
            .unwrap()
            .attrs
            .flags
            .write
    );
    // A genuine protection fault is not resolved.
    let e =
        unsafe { parent.resolve_write_fault(VirtAddr::new(UVA + 0x1000), &mut refs, &mut frames) };
    assert_eq!(e, Err(FaultError::NotCopyOnWrite));
    let e =
        unsafe { parent.resolve_write_fault(VirtAddr::new(UVA + 0x9000), &mut refs, &mut frames) };
    assert_eq!(e, Err(FaultError::NotMapped));
    let e = unsafe { parent.resolve_write_fault(VirtAddr::new(KVA), &mut refs, &mut frames) };
    assert_eq!(e, Err(FaultError::KernelHalf));
}

/// Hands out one given frame (dirtied by the test), then nothing.
struct OneFrame(Option<PhyAddr>);

unsafe impl FrameAllocator for OneFrame {
    fn allocate_frame(&mut self) -> Option<PhyAddr> {
        self.0.take()
    }
    unsafe fn deallocate_frame(&mut self, frame: PhyAddr) {
        self.0 = Some(frame);
    }
}

/// Reads of a zero page never allocate; the first write gets a zeroed frame (even from an
/// allocator handing out dirty frames); mapping the zero frame writable is refused.
#[test]
fn zero_page_reads_share_writes_allocate_zeroed() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let id = ContextId::new();
    let mut u = user(&mem, &cpu, &k, &id);
    let zero = mem.allocate_data_frame().unwrap();
    u.set_zero_frame(zero);
    unsafe { u.map_zero(VirtAddr::new(UVA), user_rw()) }
        .unwrap()
        .flush();
    unsafe { u.map_zero(VirtAddr::new(UVA + 0x1000), user_rw()) }
        .unwrap()
        .flush();
    let e = unsafe {
        u.map(
            VirtAddr::new(UVA + 0x2000),
            zero,
            PageSize::Size4K,
            user_rw(),
        )
    };
    assert_eq!(e.unwrap_err(), EditError::WritableZeroFrame);
    let mut g = u.gather();
    let e = unsafe {
        u.map_range(
            VirtAddr::new(UVA + 0x4000),
            PhyAddr::new(zero.as_u64() - 0x1000),
            0x2000,
            user_rw(),
            RangeOptions::default(),
            &mut g,
        )
    };
    assert_eq!(e.unwrap_err(), EditError::WritableZeroFrame);
    u.finish(g).unwrap();
    let mut asids = Asids::<1>::new(256).unwrap();
    let mmu = EmuMmu::new(&cpu);
    unsafe { u.activate(&mut asids, 0, &id, &mmu) }.unwrap();
    let used = mem.frames_in_use();
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA), Some(0));
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA + 0x1000), Some(0));
    assert_eq!(mem.frames_in_use(), used, "reads allocate nothing");

    let dirty = mem.allocate_data_frame().unwrap();
    for i in 0..512 {
        mem.write_u64(PhyAddr::new(dirty.as_u64() + 8 * i), 0xdead);
    }
    let mut one = OneFrame(Some(dirty));
    let mut refs = Refs::default();
    let r = unsafe { u.resolve_write_fault(VirtAddr::new(UVA + 0x1008), &mut refs, &mut one) };
    assert_eq!(r, Ok(Resolved::Zeroed { to: dirty }));
    assert!((0..512).all(|i| mem.read_u64(PhyAddr::new(dirty.as_u64() + 8 * i)) == Some(0)));
    assert_eq!(read(&mem, &cpu, mmu.root(), UVA + 0x1000), Some(0));
    assert_eq!(
        cpu.access_walk(&mem, &ARCH, mmu.root(), VirtAddr::new(UVA + 0x1000)),
        CpuAccess::Mapped(dirty)
    );
    assert_eq!(
        u.translate(VirtAddr::new(UVA)).unwrap().frame,
        zero,
        "the other page still shares"
    );
    // Read-only zero pages (not marked) are not resolved.
    unsafe { u.map_zero(VirtAddr::new(UVA + 0x3000), user_ro()) }
        .unwrap()
        .flush();
    let e = unsafe { u.resolve_write_fault(VirtAddr::new(UVA + 0x3000), &mut refs, &mut one) };
    assert_eq!(e, Err(FaultError::NotCopyOnWrite));
}

/// Out of memory in the fault helper changes nothing: the entry, the counts and the
/// allocator are as before, and the retry succeeds.
#[test]
fn fault_helper_out_of_memory_changes_nothing() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let (ip, ic) = (ContextId::new(), ContextId::new());
    let mut parent = user(&mem, &cpu, &k, &ip);
    let data = mem.allocate_data_frame().unwrap();
    map_user(&mut parent, UVA, data, user_rw());
    let mut refs = Refs::default();
    let mut child = unsafe { parent.fork(&mem, SpaceTlb::new(&cpu, &ic), &mut refs) }.unwrap();
    let raw = child.raw_entry(VirtAddr::new(UVA)).unwrap();
    let mut none = OneFrame(None);
    let e = unsafe { child.resolve_write_fault(VirtAddr::new(UVA), &mut refs, &mut none) };
    assert_eq!(e, Err(FaultError::OutOfMemory));
    assert_eq!(child.raw_entry(VirtAddr::new(UVA)).unwrap(), raw);
    assert_eq!(refs.owners(data), 2);
    let mut frames = &mem;
    let r = unsafe { child.resolve_write_fault(VirtAddr::new(UVA), &mut refs, &mut frames) };
    assert!(matches!(r, Ok(Resolved::Copied { .. })));
}

/// A fork that runs out of frames for the child's tables changes nothing in the parent and
/// leaks nothing, whichever allocation fails; one that meets a writable huge page refuses
/// before anything.
#[test]
fn fork_failures_change_nothing() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let ip = ContextId::new();
    let ids: Vec<ContextId> = (0..9).map(|_| ContextId::new()).collect();
    let mut parent = UserSpace::new(
        ARCH,
        &mem,
        CountingFrames::new(&mem),
        SpaceTlb::new(&cpu, &ip),
        k.half(),
    )
    .unwrap();
    let data = mem.allocate_data_frame().unwrap();
    for va in [UVA, 0x7f00_0000_0000] {
        unsafe { parent.map(VirtAddr::new(va), data, PageSize::Size4K, user_rw()) }
            .unwrap()
            .flush();
    }
    let before = (
        raw(&parent, UVA),
        raw(&parent, 0x7f00_0000_0000),
        mem.frames_in_use(),
    );
    // Root + 3 tables + 3 tables: the 7th allocation is the last one a fork needs.
    for (fail_after, ic) in ids.iter().enumerate().take(7) {
        let mut frames = CountingFrames::new(&mem);
        frames.fail_after(Some(fail_after));
        let mut refs = Refs::default();
        let r = unsafe { parent.fork(frames, SpaceTlb::new(&cpu, ic), &mut refs) };
        assert_eq!(
            r.unwrap_err(),
            ForkError::Map(MapError::OutOfMemory),
            "fail after {fail_after}"
        );
        assert_eq!(
            (
                raw(&parent, UVA),
                raw(&parent, 0x7f00_0000_0000),
                mem.frames_in_use()
            ),
            before
        );
        assert!(refs.0.is_empty(), "no count changed");
    }
    let ic = ContextId::new();
    let mut refs = Refs::default();
    let child = unsafe {
        parent.fork(
            CountingFrames::new(&mem),
            SpaceTlb::new(&cpu, &ic),
            &mut refs,
        )
    };
    assert!(child.unwrap().is_copy_on_write(VirtAddr::new(UVA)));
    assert_eq!(mem.bad_frees(), 0);

    // A writable 2 MiB user page cannot be shared copy-on-write.
    let huge_va = VirtAddr::new(0x4000_0000);
    let mut g = parent.gather();
    unsafe {
        parent.map_range(
            huge_va,
            PhyAddr::new(0x20_0000),
            0x20_0000,
            user_rw(),
            RangeOptions::default(),
            &mut g,
        )
    }
    .unwrap();
    parent.finish(g).unwrap();
    let before = (raw(&parent, UVA), mem.frames_in_use());
    let ic = ContextId::new();
    let r = unsafe {
        parent.fork(
            CountingFrames::new(&mem),
            SpaceTlb::new(&cpu, &ic),
            &mut Refs::default(),
        )
    };
    assert_eq!(r.unwrap_err(), ForkError::HugePage(huge_va));
    assert_eq!((raw(&parent, UVA), mem.frames_in_use()), before);
}

fn raw<F: FrameAllocator>(
    p: &UserSpace<EmuArch, &EmuMemory, F, SpaceTlb<'_, &EmuTlb>>,
    va: u64,
) -> (u8, u64) {
    p.raw_entry(VirtAddr::new(va)).unwrap()
}

/// The fault helper's copy replaces a live leaf by one with another frame: break, invalidate,
/// make (the emulator's format requires break-before-make for a new output address, as
/// AArch64 does), checked by the tracer; and nothing is owed to the TLB afterwards.
#[test]
fn copy_on_write_fault_breaks_before_it_makes() {
    use awk_paging::emu::Tracer;
    use awk_paging::space::KernelHalf;
    let mem = EmuMemory::new(64);
    let cpu = EmuTlb::new();
    let tracer = Tracer::new(ARCH, &mem, Some(&cpu));
    let mut parent = UserSpace::new(ARCH, &tracer, &tracer, &tracer, KernelHalf::NONE).unwrap();
    tracer.adopt(parent.root());
    let data = mem.allocate_data_frame().unwrap();
    unsafe { parent.map(VirtAddr::new(UVA), data, PageSize::Size4K, user_rw()) }
        .unwrap()
        .flush();
    let mut refs = Refs::default();
    let child = unsafe { parent.fork(&tracer, &tracer, &mut refs) }.unwrap();
    let mut frames = &mem;
    let r = unsafe { parent.resolve_write_fault(VirtAddr::new(UVA), &mut refs, &mut frames) };
    assert!(matches!(r, Ok(Resolved::Copied { .. })), "{r:?}");
    assert_eq!(tracer.violations(), vec![]);
    tracer.assert_flushed();
    let _ = child;
}

/// Walking several roots: each process's own pages under its root, the kernel's once (under
/// the first root), and every later root's kernel entries reported as shared.
#[test]
fn multi_root_walk_reports_shared_kernel_tables_once() {
    use awk_paging::space::{walk_roots, Walked};
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    map_kernel(&mut k, KVA, PhyAddr::new(0x7000_0000));
    map_kernel(&mut k, KVA + (1 << 39), PhyAddr::new(0x7000_1000));
    let (ia, ib) = (ContextId::new(), ContextId::new());
    let (mut a, mut b) = (user(&mem, &cpu, &k, &ia), user(&mem, &cpu, &k, &ib));
    map_user(&mut a, UVA, PhyAddr::new(0x6000_0000), user_rw());
    map_user(&mut b, UVA, PhyAddr::new(0x6000_1000), user_rw());
    map_user(&mut b, UVA + 0x1000, PhyAddr::new(0x6000_2000), user_ro());
    let mut leaves = Vec::new();
    let mut shared = Vec::new();
    walk_roots(&ARCH, &&mem, &[a.root(), b.root()], |w| match w {
        Walked::Leaf { root, mapping } => {
            leaves.push((root, mapping.page.as_u64(), mapping.frame.as_u64()))
        }
        Walked::Shared {
            root,
            first,
            level,
            va,
            ..
        } => shared.push((root, first, level, va.as_u64())),
    });
    assert_eq!(
        leaves,
        [
            (0, UVA, 0x6000_0000),
            (0, KVA, 0x7000_0000),
            (0, KVA + (1 << 39), 0x7000_1000),
            (1, UVA, 0x6000_1000),
            (1, UVA + 0x1000, 0x6000_2000),
        ]
    );
    assert_eq!(shared.len(), 256);
    assert!(shared
        .iter()
        .all(|&(root, first, level, va)| root == 1 && first == 0 && level == 3 && va >= KVA));
    assert_eq!(shared[0].3, KVA);
}

/// Protecting a copy-on-write page keeps its mark (read-only stays copy-on-write), and making
/// it writable through `protect_range` is refused: only the fault helper may.
#[test]
fn protect_keeps_copy_on_write_and_refuses_to_make_it_writable() {
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let (ip, ic) = (ContextId::new(), ContextId::new());
    let mut parent = user(&mem, &cpu, &k, &ip);
    let data = mem.allocate_data_frame().unwrap();
    map_user(&mut parent, UVA, data, user_rw());
    map_user(
        &mut parent,
        UVA + 0x1000,
        mem.allocate_data_frame().unwrap(),
        user_rw(),
    );
    let mut refs = Refs::default();
    let _child = unsafe { parent.fork(&mem, SpaceTlb::new(&cpu, &ic), &mut refs) }.unwrap();
    let va = VirtAddr::new(UVA);
    let mut g = parent.gather();
    let ro_exec = Attrs {
        user: true,
        ..Attrs::from(Flags::RX)
    };
    unsafe { parent.protect_range(va, 0x1000, ro_exec, &mut g) }.unwrap();
    parent.finish(g).unwrap();
    assert!(
        parent.is_copy_on_write(va),
        "the mark survives a permission change"
    );
    assert!(parent.translate(va).unwrap().attrs.flags.execute);
    let before = raw(&parent, UVA);
    let mut g = parent.gather();
    let e = unsafe { parent.protect_range(va, 0x2000, user_rw(), &mut g) };
    assert_eq!(e.unwrap_err(), EditError::CopyOnWrite(va));
    parent.finish(g).unwrap();
    assert_eq!(raw(&parent, UVA), before, "nothing changed");
    let mut frames = &mem;
    // Executable and copy-on-write: a writable copy would break W^X.
    let e = unsafe { parent.resolve_write_fault(va, &mut refs, &mut frames) };
    assert_eq!(
        e,
        Err(FaultError::InvalidFlags(FlagsError::WritableAndExecutable))
    );
    assert_eq!(raw(&parent, UVA), before, "nothing changed");
    let mut g = parent.gather();
    unsafe { parent.protect_range(va, 0x1000, user_ro(), &mut g) }.unwrap();
    parent.finish(g).unwrap();
    assert!(parent.is_copy_on_write(va));
    let r = unsafe { parent.resolve_write_fault(va, &mut refs, &mut frames) };
    assert!(matches!(r, Ok(Resolved::Copied { .. })), "{r:?}");
    let mut g = parent.gather();
    unsafe { parent.protect_range(va, 0x1000, user_ro(), &mut g) }.unwrap();
    parent.finish(g).unwrap();
    assert!(
        !parent.is_copy_on_write(va),
        "a resolved page is an ordinary page"
    );
}
