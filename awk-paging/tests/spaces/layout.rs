//! The shared kernel half: what user spaces see of it, what they may not edit, what
//! destroying them frees, and that the kernel's own edits keep the shared tables.

use super::*;

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
