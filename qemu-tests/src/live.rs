//! The live-table tests both kernels run through the seed [`Mapper`] API — and the instance
//! API's range engine, through [`ActiveTable::with_table`] — on the tables the MMU walks. A
//! kernel describes its machine with [`Machine`]; each test is generic over it and is listed by
//! the kernel as `live::some_test::<TheMachine>`.

use awk_paging::arch::{Arch, Entry};
use awk_paging::{
    AccessError, ActiveTable, Flags, FrameAllocator, Gather, InstanceOf, MapError, Mapper,
    PageSize, PhyAddr, RangeOptions, Tlb, TranslateError, UnmapError, VirtAddr,
};

use crate::frames::{data_frame, free_frames, upcoming, PoolFrames};
use crate::harness::Failure;
use crate::probe;
use crate::{ensure, ensure_eq, fail};

/// What an expected fault was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No valid entry (x86 not-present, Arm translation fault).
    NotMapped,
    /// A write the entry forbids.
    WriteDenied,
    /// An instruction fetch the entry forbids.
    ExecDenied,
    /// Anything else (access flag, other permission faults).
    Other,
}

/// A fault recorded by a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The faulting address (CR2 / FAR_EL1).
    pub addr: u64,
    /// Its classification.
    pub kind: FaultKind,
    /// The raw syndrome (x86 error code / ESR_EL1).
    pub raw: u64,
}

/// One machine's side of the live tests.
pub trait Machine {
    /// The seed API on the live table (and, through [`ActiveTable::with_table`], the instance
    /// API on the same table).
    type Mapper: Mapper + ActiveTable;
    /// A 2 MiB-aligned, identity-mapped RAM region nothing else uses.
    const SPARE_2M: u64;
    /// The return instruction, little-endian, as written to memory.
    const RET: u64;
    /// Makes instructions written through `addr` visible to instruction fetch.
    fn sync_icache(_addr: u64) {}
}

/// Test mappings live here: far from the kernels' identity maps.
const WINDOW: u64 = 0x0000_2000_0000_0000;

/// The `n`-th page of the test window.
pub fn va(n: u64) -> VirtAddr {
    VirtAddr::new(WINDOW + n * 0x1000)
}

/// The `n`-th GiB of the test window (`n >= 2`; 0 and 1 hold [`va`] and
/// [`instance_api_huge_page_lifecycle`]). Each range test takes a GiB of its own, so every table
/// under its mappings is its own: created by its first map, reclaimed by its last unmap.
pub fn gib(n: u64) -> VirtAddr {
    VirtAddr::new(WINDOW + (n << 30))
}

const PAGE: u64 = 0x1000;

/// Where inside its GiB a range test puts the pages whose stale translations it looks for:
/// from page `0xa0` on. QEMU's TLB is indexed by the low bits of the page number (256 entries
/// to start with); the kernel image, its stack and the first pool frames take the low indices,
/// so a test page there is evicted by the operation's own code and data accesses, and a stale
/// entry the `no-tlb-flush` build should show may be gone before the check.
pub const QUIET_PAGE: u64 = 0xa0;

/// `v + off`.
fn at(v: VirtAddr, off: u64) -> VirtAddr {
    VirtAddr::new(v.as_u64() + off)
}

/// Runs `op` on the live table with a fresh [`Gather`], then finishes the gather: the TLB
/// invalidation first, then the tables the operation detached are freed.
pub fn batch<M: Machine, R>(
    op: impl FnOnce(&mut InstanceOf<M::Mapper>, &mut Gather) -> R,
) -> Result<R, Failure> {
    let done = M::Mapper::with_table(|t| {
        let mut g = t.gather();
        let r = op(t, &mut g);
        t.finish(g).map(|()| r).map_err(|_| ())
    });
    match done {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(())) => Err(Failure::new(format_args!(
            "finish: not this table's gather"
        ))),
        Err(e) => Err(Failure::new(format_args!("with_table: {e}"))),
    }
}

/// `map_range` on the live table (largest pages up to `max_page`), finished.
pub fn map_range<M: Machine>(
    v: VirtAddr,
    pa: PhyAddr,
    len: u64,
    flags: Flags,
    max_page: PageSize,
) -> Result<(), Failure> {
    // SAFETY: test window over spare RAM or pool frames.
    batch::<M, _>(|t, g| unsafe { t.map_range(v, pa, len, flags, RangeOptions { max_page }, g) })?
        .map_err(|e| Failure::new(format_args!("map_range {v:?}: {e}")))
}

/// `unmap_range` on the live table, finished; returns how many pages (of any size) it removed.
pub fn unmap_range<M: Machine>(v: VirtAddr, len: u64) -> Result<usize, Failure> {
    let mut n = 0;
    // SAFETY: test window; nothing relies on the range any more.
    batch::<M, _>(|t, g| unsafe { t.unmap_range(v, len, g, |_| n += 1) })?
        .map_err(|e| Failure::new(format_args!("unmap_range {v:?}: {e}")))?;
    Ok(n)
}

/// `protect_range` on the live table, finished.
pub fn protect_range<M: Machine>(v: VirtAddr, len: u64, flags: Flags) -> Result<(), Failure> {
    // SAFETY: test window; the test expects the new permissions.
    batch::<M, _>(|t, g| unsafe { t.protect_range(v, len, flags, g) })?
        .map_err(|e| Failure::new(format_args!("protect_range {v:?}: {e}")))
}

/// The live table's translation of `v`: page size and whether it is writable.
pub fn size_and_write<M: Machine>(v: VirtAddr) -> Result<(PageSize, bool), TranslateError> {
    M::Mapper::with_table(|t| t.translate(v).map(|t| (t.size, t.attrs.flags.write)))?
}

/// Expects a fault of `kind` at `addr` from `access` (a probe), naming `what` otherwise.
fn expect_fault<T: core::fmt::Debug>(
    access: Result<T, Fault>,
    addr: VirtAddr,
    kind: FaultKind,
    what: core::fmt::Arguments<'_>,
) -> Result<(), Failure> {
    match access {
        Err(f) => ensure_eq!((f.addr, f.kind), (addr.as_u64(), kind), "{what}"),
        Ok(x) => fail!("{what}: no fault ({x:?})"),
    }
    Ok(())
}

/// A data frame from the pool.
pub fn frame() -> Result<PhyAddr, Failure> {
    data_frame().ok_or_else(|| Failure::new(format_args!("frame pool empty")))
}

/// Maps one page through the seed API.
pub fn map<M: Machine>(v: VirtAddr, p: PhyAddr, f: Flags) -> Result<(), Failure> {
    // SAFETY: test window and pool frames only.
    unsafe { M::Mapper::map(v, p, f) }.map_err(|e| Failure::new(format_args!("map {v:?}: {e}")))
}

/// Unmaps one page through the seed API.
pub fn unmap<M: Machine>(v: VirtAddr) {
    // SAFETY: test window.
    unsafe { M::Mapper::unmap(v) };
}

/// Write through a new mapping, read through the identity map; and the reverse.
pub fn write_then_read_both_ways<M: Machine>() -> Result<(), Failure> {
    let (v, f) = (va(0), frame()?);
    map::<M>(v, f, Flags::RW)?;
    ensure!(
        probe::write(v.as_u64(), 0x1111_2222_3333_4444).is_ok(),
        "write through new mapping"
    );
    ensure_eq!(
        probe::read(f.as_u64()),
        Ok(0x1111_2222_3333_4444),
        "read through identity"
    );
    ensure!(
        probe::write(f.as_u64() + 8, 0x5555).is_ok(),
        "write through identity"
    );
    ensure_eq!(
        probe::read(v.as_u64() + 8),
        Ok(0x5555),
        "read through new mapping"
    );
    let back = M::Mapper::vm_to_phy(VirtAddr::new(v.as_u64() + 8));
    ensure_eq!(back, Some(PhyAddr::new(f.as_u64() + 8)), "vm_to_phy");
    unmap::<M>(v);
    Ok(())
}

/// Remap a page to another frame: reads see the new frame (the flush works). Fails when the
/// kernel is built with `no-tlb-flush` (the negative control).
pub fn remap_visible_after_flush<M: Machine>() -> Result<(), Failure> {
    let (v, f1, f2) = (va(1), frame()?, frame()?);
    ensure!(
        probe::write(f1.as_u64(), 0xaaaa).is_ok() && probe::write(f2.as_u64(), 0xbbbb).is_ok(),
        "fill frames"
    );
    map::<M>(v, f1, Flags::RO)?;
    ensure_eq!(
        probe::read(v.as_u64()),
        Ok(0xaaaa),
        "first frame (now cached in the TLB)"
    );
    unmap::<M>(v);
    map::<M>(v, f2, Flags::RO)?;
    ensure_eq!(
        probe::read(v.as_u64()),
        Ok(0xbbbb),
        "after remap (stale TLB entry if not flushed)"
    );
    unmap::<M>(v);
    Ok(())
}

/// Remap a page to another frame without flushing the page itself, then flush the whole TLB
/// through the live table's hook ([`Tlb::flush_all`](awk_paging::Tlb::flush_all)): reads see
/// the new frame. A `flush_all` that does nothing leaves the first frame's translation cached
/// (QEMU's TLB keeps it until invalidated), so this fails with it — and in the `no-tlb-flush`
/// build. A table stays under the page (its neighbour stays mapped), so the unmap frees no
/// table and does no flush of its own.
pub fn remap_visible_after_flush_all<M: Machine>() -> Result<(), Failure> {
    remap_visible_after::<M>(8, |tlb, _| tlb.flush_all())
}

/// As [`remap_visible_after_flush_all`], with the hook's
/// [`Tlb::flush_page`](awk_paging::Tlb::flush_page) of the remapped page instead (the all-levels
/// invalidation the walker uses when a table entry changes; the seed API's unmap flushes with
/// `flush_leaf`). A `flush_page` that does nothing fails here.
pub fn remap_visible_after_flush_page<M: Machine>() -> Result<(), Failure> {
    remap_visible_after::<M>(14, |tlb, v| tlb.flush_page(v))
}

/// [`remap_visible_after_flush_all`] on test pages `page` and `page + 1` ([`va`]), with `flush`
/// doing the invalidation (it gets the live table's hook and the remapped address; a kernel may
/// test its own TLB code instead).
pub fn remap_visible_after<M: Machine>(
    page: u64,
    flush: impl FnOnce(&dyn Tlb, VirtAddr),
) -> Result<(), Failure> {
    let (v, neighbour, f1, f2) = (va(page), va(page + 1), frame()?, frame()?);
    ensure!(
        probe::write(f1.as_u64(), 0xa11a).is_ok() && probe::write(f2.as_u64(), 0xb22b).is_ok(),
        "fill frames"
    );
    map::<M>(neighbour, f1, Flags::RO)?;
    map::<M>(v, f1, Flags::RO)?;
    ensure_eq!(
        probe::read(v.as_u64()),
        Ok(0xa11a),
        "first frame (now cached in the TLB)"
    );
    let remapped = M::Mapper::with_table(|t| {
        // SAFETY: test window; nothing relies on the old mapping.
        let (gone, token) = unsafe { t.unmap(v, PageSize::Size4K) }.map_err(|_| "unmap")?;
        // The unmap's own invalidation is skipped on purpose: `flush` below must cover it.
        token.ignore();
        // SAFETY: as above; a fresh data frame.
        unsafe { t.map(v, f2, PageSize::Size4K, Flags::RO) }
            .map_err(|_| "map")?
            .flush();
        flush(t.tlb(), v);
        Ok::<_, &str>(gone.frame)
    });
    ensure_eq!(remapped, Ok(Ok(f1)), "unmap, map, flush");
    ensure_eq!(
        probe::read(v.as_u64()),
        Ok(0xb22b),
        "after remap and flush (stale TLB entry if the flush does nothing)"
    );
    unmap::<M>(v);
    unmap::<M>(neighbour);
    Ok(())
}

/// A read from an unmapped page faults at that address.
pub fn unmapped_page_faults<M: Machine>() -> Result<(), Failure> {
    let v = va(2).as_u64() + 0x18;
    match probe::read(v) {
        Err(f) => ensure_eq!((f.addr, f.kind), (v, FaultKind::NotMapped), "fault"),
        Ok(x) => fail!("read {x:#x} from an unmapped page"),
    }
    Ok(())
}

/// A write to a read-only page faults at that address; reads work.
pub fn write_to_read_only_faults<M: Machine>() -> Result<(), Failure> {
    let (v, f) = (va(3), frame()?);
    map::<M>(v, f, Flags::RO)?;
    ensure!(probe::read(v.as_u64()).is_ok(), "read of read-only page");
    let target = v.as_u64() + 0x40;
    match probe::write(target, 1) {
        Err(fault) => ensure_eq!(
            (fault.addr, fault.kind),
            (target, FaultKind::WriteDenied),
            "fault"
        ),
        Ok(()) => fail!("wrote to a read-only page"),
    }
    unmap::<M>(v);
    Ok(())
}

/// Code runs from an executable mapping of a frame and faults from a no-execute one.
pub fn execute_from_no_execute_faults<M: Machine>() -> Result<(), Failure> {
    let (code, data, f) = (va(4), va(5), frame()?);
    ensure!(
        probe::write(f.as_u64(), M::RET).is_ok(),
        "write the return instruction"
    );
    M::sync_icache(f.as_u64());
    map::<M>(code, f, Flags::RX)?;
    map::<M>(data, f, Flags::RO)?;
    ensure_eq!(
        probe::exec(code.as_u64()),
        Ok(()),
        "executable mapping runs"
    );
    match probe::exec(data.as_u64()) {
        Err(fault) => ensure_eq!(
            (fault.addr, fault.kind),
            (data.as_u64(), FaultKind::ExecDenied),
            "fault"
        ),
        Ok(()) => fail!("executed from a no-execute page"),
    }
    unmap::<M>(code);
    unmap::<M>(data);
    Ok(())
}

/// The instance API on the live table: a 2 MiB page mapped, read through at an offset,
/// write-protected, then unmapped — each step made visible by flushing its token.
pub fn instance_api_huge_page_lifecycle<M: Machine>() -> Result<(), Failure> {
    let (v, pa) = (
        VirtAddr::new(WINDOW + 0x4000_0000),
        PhyAddr::new(M::SPARE_2M),
    );
    let off = 0x1_2340;
    ensure!(
        probe::write(pa.as_u64() + off, 0x600d_f00d).is_ok(),
        "write through identity"
    );
    let mapped = M::Mapper::with_table(|t| {
        // SAFETY: a fresh window address over a spare RAM region.
        unsafe { t.map(v, pa, PageSize::Size2M, Flags::RW) }.map(|token| token.flush())
    });
    ensure_eq!(mapped, Ok(Ok(())), "map 2 MiB");
    ensure_eq!(
        probe::read(v.as_u64() + off),
        Ok(0x600d_f00d),
        "read through the huge page"
    );
    let t = M::Mapper::with_table(|t| {
        t.translate(VirtAddr::new(v.as_u64() + off))
            .map(|t| (t.pa, t.size))
    });
    ensure_eq!(
        t,
        Ok(Ok((PhyAddr::new(pa.as_u64() + off), PageSize::Size2M))),
        "translate"
    );
    let protected = M::Mapper::with_table(|t| {
        // SAFETY: as above.
        unsafe { t.update_flags(v, PageSize::Size2M, Flags::RO) }.map(|token| token.flush())
    });
    ensure_eq!(protected, Ok(Ok(())), "update_flags to read-only");
    match probe::write(v.as_u64() + 8, 1) {
        Err(f) => ensure_eq!(f.kind, FaultKind::WriteDenied, "write after protect"),
        Ok(()) => fail!("wrote through a page made read-only"),
    }
    let gone = M::Mapper::with_table(|t| {
        // SAFETY: as above.
        unsafe { t.unmap(v, PageSize::Size2M) }.map(|(gone, token)| {
            token.flush();
            (gone.frame, gone.size)
        })
    });
    ensure_eq!(gone, Ok(Ok((pa, PageSize::Size2M))), "unmap");
    match probe::read(v.as_u64() + off) {
        Err(f) => ensure_eq!(f.kind, FaultKind::NotMapped, "read after unmap"),
        Ok(x) => fail!("read {x:#x} after unmap"),
    }
    Ok(())
}

/// The seed API's edits called while this CPU holds the table's lock — as a TLB hook or an
/// exception handler would — fail at once with the re-entry errors (the lock recognises its
/// holder by the real CPU id: APIC ID / MPIDR_EL1) instead of spinning forever; translation
/// takes no lock and answers; nothing changed, and the lock is free again afterwards.
pub fn seed_api_reentry_is_an_error<M: Machine>() -> Result<(), Failure> {
    let (v, f) = (va(0x80), frame()?);
    let inner = M::Mapper::with_table(|_| {
        (
            M::Mapper::try_vm_to_phy(v),
            M::Mapper::vm_to_phy(v),
            // SAFETY: test window and a pool frame; refused anyway.
            unsafe { M::Mapper::map(v, f, Flags::RW) },
            // SAFETY: test window.
            unsafe { M::Mapper::try_unmap(v) }.map(|_| ()),
            M::Mapper::with_table(|_| ()),
        )
    });
    ensure_eq!(
        inner,
        Ok((
            Err(TranslateError::NotMapped),
            None,
            Err(MapError::Reentered),
            Err(UnmapError::Reentered),
            Err(AccessError::Reentered),
        )),
        "seed calls from inside with_table"
    );
    ensure_eq!(
        M::Mapper::try_vm_to_phy(v),
        Err(TranslateError::NotMapped),
        "nothing mapped by the refused call"
    );
    map::<M>(v, f, Flags::RW)?;
    ensure_eq!(M::Mapper::vm_to_phy(v), Some(f), "lock free again");
    unmap::<M>(v);
    Ok(())
}

/// A live 2 MiB page, mapped by `map_range` (which chose the 2 MiB page itself) and used
/// (reads and writes: the TLB holds it writable), then split by `protect_range` of one 4 KiB
/// page in it to read-only: that page is a read-only 4 KiB page now and faults on write (a
/// stale TLB entry of the 2 MiB page would let the write through), its content is unchanged;
/// its neighbours (adjacent and far pages of the same 2 MiB) still read and write, and the
/// writes reach their frames. The table the split took and the one holding the 2 MiB page go
/// back to the pool with the final `unmap_range`, after which every probed page faults.
pub fn protect_range_splits_live_huge_page<M: Machine>() -> Result<(), Failure> {
    // Pages probed: the protected one, its neighbours, two far ones (see QUIET_PAGE).
    const RO: u64 = 0xd7;
    const PROBED: [u64; 5] = [QUIET_PAGE, RO - 1, RO, RO + 1, 0x1f0];
    let (v, pa) = (gib(3), M::SPARE_2M);
    let marker = |i: u64| 0x5b11_7000_0000 + i;
    for i in PROBED {
        ensure!(
            probe::write(pa + i * PAGE, marker(i)).is_ok()
                && probe::write(pa + i * PAGE + 0x10, 0).is_ok(),
            "fill page {i:#x} through the identity map"
        );
    }
    let before = free_frames();
    map_range::<M>(v, PhyAddr::new(pa), 0x20_0000, Flags::RW, PageSize::Size1G)?;
    let ro = at(v, RO * PAGE);
    ensure_eq!(
        size_and_write::<M>(ro),
        Ok((PageSize::Size2M, true)),
        "map_range chose one writable 2 MiB page"
    );
    ensure_eq!(
        free_frames(),
        before - 1,
        "one new table, for the 2 MiB page"
    );
    // Use the huge page, writes included: the TLB holds it writable now.
    for i in PROBED {
        let p = at(v, i * PAGE);
        ensure_eq!(probe::read(p.as_u64()), Ok(marker(i)), "read page {i:#x}");
        ensure_eq!(
            probe::write(p.as_u64() + 8, !marker(i)),
            Ok(()),
            "write page {i:#x}"
        );
    }
    protect_range::<M>(ro, PAGE, Flags::RO)?;
    // What the MMU does first, then what the table says.
    expect_fault(
        probe::write(ro.as_u64() + 0x10, 0xbad),
        at(ro, 0x10),
        FaultKind::WriteDenied,
        format_args!(
            "write to the page protected read-only (a stale TLB entry of the writable 2 MiB page?)"
        ),
    )?;
    ensure_eq!(
        (
            probe::read(ro.as_u64()),
            probe::read(ro.as_u64() + 8),
            probe::read(ro.as_u64() + 0x10)
        ),
        (Ok(marker(RO)), Ok(!marker(RO)), Ok(0)),
        "protected page's content, through the mapping"
    );
    ensure_eq!(
        probe::read(pa + RO * PAGE + 0x10),
        Ok(0),
        "protected page's content, through the identity map"
    );
    for i in PROBED.into_iter().filter(|&i| i != RO) {
        let p = at(v, i * PAGE);
        ensure_eq!(
            probe::read(p.as_u64() + 8),
            Ok(!marker(i)),
            "neighbour page {i:#x}: read"
        );
        ensure_eq!(
            probe::write(p.as_u64() + 0x18, 0x1000 + i),
            Ok(()),
            "neighbour page {i:#x}: write (the whole 2 MiB protected: not split?)"
        );
        ensure_eq!(
            probe::read(pa + i * PAGE + 0x18),
            Ok(0x1000 + i),
            "neighbour page {i:#x}: the write reached its frame"
        );
        ensure_eq!(
            size_and_write::<M>(p),
            Ok((PageSize::Size4K, true)),
            "neighbour page {i:#x}: 4 KiB, writable"
        );
    }
    ensure_eq!(
        size_and_write::<M>(ro),
        Ok((PageSize::Size4K, false)),
        "protected page: 4 KiB, read-only"
    );
    ensure_eq!(
        free_frames(),
        before - 2,
        "the split took one table from the pool"
    );
    ensure_eq!(unmap_range::<M>(v, 0x20_0000)?, 512, "pages unmapped");
    for i in PROBED {
        let p = at(v, i * PAGE);
        expect_fault(
            probe::read(p.as_u64()),
            p,
            FaultKind::NotMapped,
            format_args!("read page {i:#x} after unmap_range"),
        )?;
    }
    ensure_eq!(free_frames(), before, "both tables reclaimed");
    Ok(())
}

/// Range operations past the per-page invalidation threshold (64 pages): the gather flushes
/// everything or, on a CPU with range invalidation (AArch64 FEAT_TLBIRANGE, e.g. `-cpu max`),
/// the range of changes. Every page is written first (the TLB holds it writable), then
/// protected read-only in one call: every write must fault; then unmapped in one call: every
/// read must fault. A flush that misses part of the range (or none: the `no-tlb-flush` build)
/// leaves stale writable or mapped entries.
pub fn range_past_the_threshold_is_seen_by_the_cpu<M: Machine>() -> Result<(), Failure> {
    const PAGES: u64 = 64;
    let (v, pa) = (gib(3), M::SPARE_2M);
    map_range::<M>(
        v,
        PhyAddr::new(pa),
        PAGES * PAGE,
        Flags::RW,
        PageSize::Size4K,
    )?;
    for i in 0..PAGES {
        let p = at(v, i * PAGE);
        ensure_eq!(
            probe::write(p.as_u64(), 0x7a00 + i),
            Ok(()),
            "write page {i}"
        );
    }
    protect_range::<M>(v, PAGES * PAGE, Flags::RO)?;
    for i in 0..PAGES {
        let p = at(v, i * PAGE);
        expect_fault(
            probe::write(p.as_u64() + 8, 0xbad),
            at(p, 8),
            FaultKind::WriteDenied,
            format_args!("write page {i} after protect_range (stale writable TLB entry?)"),
        )?;
        ensure_eq!(probe::read(p.as_u64()), Ok(0x7a00 + i), "read page {i}");
    }
    ensure_eq!(
        unmap_range::<M>(v, PAGES * PAGE)?,
        PAGES as usize,
        "pages unmapped"
    );
    for i in 0..PAGES {
        let p = at(v, i * PAGE);
        expect_fault(
            probe::read(p.as_u64()),
            p,
            FaultKind::NotMapped,
            format_args!("read page {i} after unmap_range (stale TLB entry?)"),
        )?;
    }
    Ok(())
}

/// `unmap_range` reclaims the tables under the range — after its TLB invalidation — and
/// nothing walks them afterwards. 16 pages are mapped in a GiB of their own (a level-2 and a
/// level-1 table, taken from the pool: known in advance, since the pool is a stack), half of
/// them read (the TLB holds those), then unmapped: the pool count goes back. The two table
/// frames are taken from the pool again and filled with entries that decode, at every level, as
/// valid and pointing at the leaf table's own frame (readable RAM holding the same pattern): a
/// walk through either reused frame, from any level, would succeed and read the pattern. Every
/// page of the range must fault as unmapped instead. A stale TLB entry (no invalidation before
/// the free: the `no-tlb-flush` build) reads the page's old data and fails the test; so does a
/// table left linked when it was freed (it reads the pattern).
pub fn unmap_range_reclaimed_table_is_not_walked<M: Machine>() -> Result<(), Failure> {
    const PAGES: u64 = 16;
    let (v, pa) = (
        at(gib(2), QUIET_PAGE * PAGE),
        M::SPARE_2M + QUIET_PAGE * PAGE,
    );
    let marker = |i: u64| 0x7ab1_e000_0000 + i;
    for i in 0..PAGES {
        ensure!(
            probe::write(pa + i * PAGE, marker(i)).is_ok(),
            "fill page {i:#x} through the identity map"
        );
    }
    let before = free_frames();
    let tables = match (upcoming(0), upcoming(1)) {
        (Some(a), Some(b)) => [a, b],
        _ => fail!("frame pool empty"),
    };
    map_range::<M>(
        v,
        PhyAddr::new(pa),
        PAGES * PAGE,
        Flags::RW,
        PageSize::Size4K,
    )?;
    ensure_eq!(free_frames(), before - 2, "two new tables (levels 2 and 1)");
    // Which frame is which: the leaf table holds v's entry, the other links it.
    let entries = M::Mapper::with_table(|t| {
        let leaf = t.raw_entry(v).map(|(_, raw)| raw);
        let links = tables.map(|f| t.arch().decode(read_entry(f, v, 1), 1));
        (leaf, links)
    });
    let Ok((Ok(leaf), links)) = entries else {
        fail!("no entry for {v:?} after map_range")
    };
    let (leaf_table, upper) = match links {
        [_, Entry::Table(l)] if l == tables[0] => (tables[0], tables[1]),
        [Entry::Table(l), _] if l == tables[1] => (tables[1], tables[0]),
        _ => fail!("the new tables {tables:?} do not link each other ({links:?})"),
    };
    ensure_eq!(
        read_entry(leaf_table, v, 0),
        leaf,
        "the leaf table holds the range's first entry"
    );
    // Half the pages read: the TLB holds their translations now.
    for i in 0..PAGES / 2 {
        ensure_eq!(
            probe::read(v.as_u64() + i * PAGE),
            Ok(marker(i)),
            "read page {i} through the mapping"
        );
    }
    ensure_eq!(
        unmap_range::<M>(v, PAGES * PAGE)?,
        PAGES as usize,
        "pages unmapped"
    );
    ensure_eq!(free_frames(), before, "both tables reclaimed");
    // Take frames until both table frames are back (the first two, the pool being a stack).
    let mut taken = [PhyAddr::ZERO; 8];
    let mut n = 0;
    while n < taken.len() && !(taken[..n].contains(&leaf_table) && taken[..n].contains(&upper)) {
        taken[n] = frame()?;
        n += 1;
    }
    let got_back = taken[..n].contains(&leaf_table) && taken[..n].contains(&upper);
    let pattern = M::Mapper::with_table(|t| t.arch().leaf_entry(leaf_table, 0, Flags::RW.into()));
    let result = (|| {
        ensure!(
            got_back,
            "the reclaimed tables {leaf_table:?}, {upper:?} did not come back from the pool ({:?})",
            &taken[..n]
        );
        let Ok(pattern) = pattern else {
            fail!("with_table")
        };
        for f in [leaf_table, upper] {
            for i in 0..512 {
                ensure!(
                    probe::write(f.as_u64() + i * 8, pattern).is_ok(),
                    "fill the reused frame {f:?}"
                );
            }
        }
        for i in 0..PAGES {
            let p = at(v, i * PAGE);
            match probe::read(p.as_u64()) {
                Err(f) => ensure_eq!(
                    (f.addr, f.kind),
                    (p.as_u64(), FaultKind::NotMapped),
                    "page {i}"
                ),
                Ok(x) if x == pattern => {
                    fail!("page {i}: read {x:#x}, the pattern: walked the reused table frame")
                }
                Ok(x) => fail!("page {i}: read {x:#x} after unmap_range (stale TLB entry)"),
            }
        }
        expect_fault(
            probe::write(v.as_u64() + 8, 1),
            at(v, 8),
            FaultKind::NotMapped,
            format_args!("write after unmap_range"),
        )
    })();
    for &f in taken[..n].iter().rev() {
        // SAFETY: taken from the pool above, mapped nowhere.
        unsafe { PoolFrames.deallocate_frame(f) };
    }
    result?;
    ensure_eq!(free_frames(), before, "frames given back");
    Ok(())
}

/// The entry of table `table` (entries at `level`) that translates `v`, read through the
/// identity map (4 KiB granule: 9 bits per level on both architectures).
fn read_entry(table: PhyAddr, v: VirtAddr, level: u8) -> u64 {
    let index = (v.as_u64() >> (12 + 9 * u32::from(level))) & 0x1ff;
    probe::read(table.as_u64() + index * 8).unwrap_or(0)
}

/// `map_range_alloc` and `unmap_range_free` on the live table: the allocating map takes its
/// data frames and tables from the pool (the count drops by exactly that many; the frames were
/// dirtied first, and every word reads zero through the mapping), each page is backed by its own
/// frame; `unmap_range_free` gives all of it back (count as before, the same frames next in
/// the pool) and the range faults.
pub fn map_range_alloc_then_unmap_range_free<M: Machine>() -> Result<(), Failure> {
    const PAGES: u64 = 8;
    const TAKEN: usize = PAGES as usize + 2; // and a level-2 and a level-1 table
    let v = at(gib(4), QUIET_PAGE * PAGE);
    let before = free_frames();
    let mut next = [0u64; TAKEN];
    for (k, slot) in next.iter_mut().enumerate() {
        let Some(f) = upcoming(k) else {
            fail!("frame pool too small")
        };
        *slot = f.as_u64();
        for w in 0..512 {
            ensure!(
                probe::write(f.as_u64() + w * 8, 0xd1e7_0000_0000 + w).is_ok(),
                "dirty frame {f:?}"
            );
        }
    }
    // SAFETY: a fresh GiB of the test window, backed by fresh frames.
    batch::<M, _>(|t, g| unsafe { t.map_range_alloc(v, PAGES * PAGE, Flags::RW, true, g) })?
        .map_err(|e| Failure::new(format_args!("map_range_alloc: {e}")))?;
    ensure_eq!(
        free_frames(),
        before - TAKEN,
        "frames taken: one per page and two tables"
    );
    let mut frames = [0u64; PAGES as usize];
    for i in 0..PAGES as usize {
        let p = at(v, i as u64 * PAGE);
        let t = M::Mapper::with_table(|t| t.translate(p).map(|t| (t.frame, t.size)));
        let Ok(Ok((f, PageSize::Size4K))) = t else {
            fail!("page {i}: {t:?}")
        };
        ensure!(
            next.contains(&f.as_u64()) && !frames.contains(&f.as_u64()),
            "page {i}: frame {f:?} is not a new frame from the pool"
        );
        frames[i] = f.as_u64();
        for w in 0..512 {
            ensure_eq!(
                probe::read(p.as_u64() + w * 8),
                Ok(0),
                "page {i}, word {w}: zeroed"
            );
        }
        ensure_eq!(
            probe::write(p.as_u64() + 8, 0xa110_c000 + i as u64),
            Ok(()),
            "write page {i:#x}"
        );
        ensure_eq!(
            probe::read(f.as_u64() + 8),
            Ok(0xa110_c000 + i as u64),
            "page {i}: the write reached its frame"
        );
    }
    // SAFETY: the range maps only frames map_range_alloc took from this table's allocator.
    batch::<M, _>(|t, g| unsafe { t.unmap_range_free(v, PAGES * PAGE, g) })?
        .map_err(|e| Failure::new(format_args!("unmap_range_free: {e}")))?;
    ensure_eq!(
        free_frames(),
        before,
        "data frames and tables back in the pool"
    );
    let mut back = [0u64; TAKEN];
    for (k, slot) in back.iter_mut().enumerate() {
        *slot = upcoming(k).map_or(0, PhyAddr::as_u64);
    }
    back.sort_unstable();
    next.sort_unstable();
    ensure_eq!(back, next, "the frames next in the pool are the ones taken");
    for i in 0..PAGES {
        let p = at(v, i * PAGE);
        expect_fault(
            probe::read(p.as_u64()),
            p,
            FaultKind::NotMapped,
            format_args!("read page {i} after unmap_range_free"),
        )?;
    }
    Ok(())
}
