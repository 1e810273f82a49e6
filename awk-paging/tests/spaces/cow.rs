//! Copy-on-write and zero pages: fork, the write-fault helper, out of memory, protect.

use super::*;

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
/// leaks nothing, whichever allocation fails.
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

/// A writable 2 MiB user page is shared by a fork, copy-on-write at 2 MiB in both spaces,
/// counted per 4 KiB frame. The child's write to one 4 KiB page in it splits the child's huge
/// page and copies only that page: the child reads its new value there and the old data
/// elsewhere (still the parent's frames), the parent keeps its 2 MiB page and the old value.
/// Out of memory for the copy (or for the split's table) changes nothing.
#[test]
fn fork_shares_huge_pages_and_a_write_copies_one_4k_page() {
    const HUGE: u64 = 0x4000_0000;
    let mem = EmuMemory::new(2048);
    let cpu = EmuTlb::new();
    let k = kernel(&mem, &cpu);
    let (ip, ic) = (ContextId::new(), ContextId::new());
    let mut parent = user(&mem, &cpu, &k, &ip);
    // 512 data frames, 2 MiB-aligned in the arena? Use a window of real frames: map the
    // huge page over frames the arena hands out contiguously from an aligned start.
    let frames: Vec<PhyAddr> = (0..1024)
        .map(|_| mem.allocate_data_frame().unwrap())
        .collect();
    let base = frames
        .iter()
        .copied()
        .find(|f| {
            f.as_u64() % 0x20_0000 == 0 && frames.contains(&PhyAddr::new(f.as_u64() + 0x1f_f000))
        })
        .expect("a 2 MiB-aligned run of frames");
    for i in 0..512u64 {
        mem.write_u64(PhyAddr::new(base.as_u64() + i * 0x1000), 0x1000 + i);
    }
    let mut g = parent.gather();
    unsafe {
        parent.map_range(
            VirtAddr::new(HUGE),
            base,
            0x20_0000,
            user_rw(),
            RangeOptions::default(),
            &mut g,
        )
    }
    .unwrap();
    parent.finish(g).unwrap();
    assert_eq!(
        parent.translate(VirtAddr::new(HUGE)).unwrap().size,
        PageSize::Size2M
    );

    let mut refs = Refs::default();
    let mut child = unsafe { parent.fork(&mem, SpaceTlb::new(&cpu, &ic), &mut refs) }.unwrap();
    for s in [&parent, &child] {
        let t = s.translate(VirtAddr::new(HUGE + 0x5000)).unwrap();
        assert_eq!(
            (t.size, t.frame, t.attrs.flags.write),
            (PageSize::Size2M, base, false)
        );
        assert!(s.is_copy_on_write(VirtAddr::new(HUGE + 0x5000)));
    }
    // Every 4 KiB frame of the huge page has two owners now.
    assert_eq!(refs.owners(base), 2);
    assert_eq!(refs.owners(PhyAddr::new(base.as_u64() + 0x1f_f000)), 2);

    // No frame for the copy: nothing changes (no split either).
    let before = (
        raw(&child, HUGE),
        refs.owners(PhyAddr::new(base.as_u64() + 0x5000)),
    );
    let mut none = OneFrame(None);
    let e =
        unsafe { child.resolve_write_fault(VirtAddr::new(HUGE + 0x5008), &mut refs, &mut none) };
    assert_eq!(e, Err(FaultError::OutOfMemory));
    assert_eq!(
        (
            raw(&child, HUGE),
            refs.owners(PhyAddr::new(base.as_u64() + 0x5000))
        ),
        before
    );
    assert_eq!(
        child.translate(VirtAddr::new(HUGE)).unwrap().size,
        PageSize::Size2M
    );

    // The child writes into page 5: split, copy of that 4 KiB page only.
    let mut data = &mem;
    let r =
        unsafe { child.resolve_write_fault(VirtAddr::new(HUGE + 0x5008), &mut refs, &mut data) }
            .unwrap();
    let Resolved::Copied { from, to } = r else {
        panic!("{r:?}")
    };
    assert_eq!(from, PhyAddr::new(base.as_u64() + 0x5000));
    assert_eq!(
        mem.read_u64(to),
        Some(0x1005),
        "the copy holds the page's data"
    );
    assert!(mem.write_u64(PhyAddr::new(to.as_u64() + 8), 0xc41d));
    let t = child.translate(VirtAddr::new(HUGE + 0x5000)).unwrap();
    assert_eq!(
        (t.size, t.frame, t.attrs.flags.write),
        (PageSize::Size4K, to, true)
    );
    assert!(!child.is_copy_on_write(VirtAddr::new(HUGE + 0x5000)));
    // Its neighbours: 4 KiB now, still the shared frames, still copy-on-write.
    for i in [0u64, 4, 6, 511] {
        let va = VirtAddr::new(HUGE + i * 0x1000);
        let t = child.translate(va).unwrap();
        assert_eq!(
            (t.size, t.frame, t.attrs.flags.write),
            (
                PageSize::Size4K,
                PhyAddr::new(base.as_u64() + i * 0x1000),
                false
            ),
            "child page {i}"
        );
        assert!(child.is_copy_on_write(va), "child page {i}");
    }
    assert_eq!(
        refs.owners(from),
        1,
        "page 5's frame: the parent's alone now"
    );
    assert_eq!(refs.owners(base), 2);
    // The parent: its 2 MiB page, the old data.
    let t = parent.translate(VirtAddr::new(HUGE + 0x5000)).unwrap();
    assert_eq!((t.size, t.frame), (PageSize::Size2M, base));
    assert_eq!(mem.read_u64(PhyAddr::new(base.as_u64() + 0x5008)), Some(0));
    // The parent writes page 5: it is the last owner of that 4 KiB frame, but the rest of its
    // huge page is shared: split, then made writable without a copy.
    let r =
        unsafe { parent.resolve_write_fault(VirtAddr::new(HUGE + 0x5000), &mut refs, &mut data) }
            .unwrap();
    assert_eq!(r, Resolved::MadeWritable { frame: from });
    let t = parent.translate(VirtAddr::new(HUGE + 0x4000)).unwrap();
    assert_eq!((t.size, t.attrs.flags.write), (PageSize::Size4K, false));
    assert!(parent.is_copy_on_write(VirtAddr::new(HUGE + 0x4000)));
    unsafe { child.destroy() };
}
