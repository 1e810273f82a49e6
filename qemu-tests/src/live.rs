//! The live-table tests both kernels run through the seed [`Mapper`] API on the tables the MMU
//! walks. A kernel describes its machine with [`Machine`]; each test is generic over it and is
//! listed by the kernel as `live::some_test::<TheMachine>`.

use awk_paging::{
    AccessError, ActiveTable, Flags, MapError, Mapper, PageSize, PhyAddr, Tlb, TranslateError,
    UnmapError, VirtAddr,
};

use crate::frames::data_frame;
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

/// The seed API called while this CPU holds the table's lock — as a frame-allocator or TLB hook,
/// or an exception handler, would — fails at once with the re-entry errors (the lock recognises
/// its holder by the real CPU id: APIC ID / MPIDR_EL1) instead of spinning forever; nothing
/// changed, and the lock is free again afterwards.
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
            Err(TranslateError::Reentered),
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
