//! Processes on the real MMU: user address spaces in `TTBR0_EL1` with ASIDs
//! ([`awk_paging::space`], [`Ttbr0Mmu`]), code running at EL0 ([`super::user`]), faults from
//! and into user pages, and copy-on-write resolved by the fault helper.
//!
//! Each user space shares the kernel's root entry 0 (the identity map of RAM, the UART and this
//! kernel, none of it EL0-accessible) and maps its own pages at [`UCODE`] / [`UDATA`] (root
//! entry 2). Every test switches back to the kernel's own TTBR0 (ASID 0) before it returns.

use aarch64_cpu::registers::{Readable, TCR_EL1, TTBR0_EL1};
use awk_paging::space::{Asids, ContextId, FrameRefs, KernelHalf, Resolved, SpaceTlb, UserSpace};
use awk_paging::{Attrs, Flags, OffsetPhysMem, PageSize, PhyAddr, VirtAddr};
use awk_paging_aarch64::features::{self, Tracking};
use awk_paging_aarch64::space::Ttbr0Mmu;
use awk_paging_aarch64::{pan, TlbEl1, A64};

use super::user::{last_abort, run, ABORTED};
use crate::frames::{free_frames, PoolFrames};
use crate::harness::{Failure, Test};
use crate::live::FaultKind;
use crate::probe;
use crate::{ensure, ensure_eq, fail};

/// User code: the programs below, one page.
pub const UCODE: u64 = 0x0000_0100_0000_0000;
/// User data: one page per test use.
pub const UDATA: u64 = UCODE + 0x20_0000;

/// `ldr x0, [x0]; svc #0`: returns the word at `x0`.
const READ: u64 = UCODE;
/// `str x1, [x0]; ldr x0, [x0]; svc #0`: writes `x1` at `x0`, returns what is there.
const WRITE_READ: u64 = UCODE + 8;
const PROGRAM: [u32; 5] = [
    0xf940_0000,
    0xd400_0001,
    0xf900_0001,
    0xf940_0000,
    0xd400_0001,
];

type Space = UserSpace<A64, OffsetPhysMem, PoolFrames, SpaceTlb<'static, TlbEl1>>;

static IDS: [ContextId; 13] = [const { ContextId::new() }; 13];

/// Switches back to the kernel's TTBR0 (root and ASID 0) when dropped.
struct KernelTtbr0(u64);

impl Drop for KernelTtbr0 {
    fn drop(&mut self) {
        // SAFETY: the kernel's own tables, as loaded before the test.
        unsafe { core::arch::asm!("msr ttbr0_el1, {}", "isb", in(reg) self.0, options(nostack)) };
    }
}

fn kernel_ttbr0() -> KernelTtbr0 {
    KernelTtbr0(TTBR0_EL1.get())
}

fn mem() -> OffsetPhysMem {
    // SAFETY: all RAM is identity-mapped in every table these tests load.
    unsafe { OffsetPhysMem::new(0) }
}

fn user(flags: Flags) -> Attrs {
    Attrs {
        user: true,
        ..Attrs::from(flags)
    }
}

fn frame() -> Result<PhyAddr, Failure> {
    crate::live::frame()
}

/// A user space sharing the kernel's root entry 0, with the program page at [`UCODE`].
fn space(id: &'static ContextId, code: PhyAddr) -> Result<Space, Failure> {
    space_in(A64::default(), id, code)
}

/// [`space`] in the regime `regime` (its access tracking, say).
fn space_in(regime: A64, id: &'static ContextId, code: PhyAddr) -> Result<Space, Failure> {
    let root = PhyAddr::new(TTBR0_EL1.get() & 0x0000_ffff_ffff_f000);
    // SAFETY: the kernel never detaches its identity map's level-2 table.
    let half = unsafe { KernelHalf::from_root(root, 0..1) }
        .ok_or_else(|| Failure::new(format_args!("kernel half")))?;
    let mut s = UserSpace::new(
        regime,
        mem(),
        PoolFrames,
        SpaceTlb::new(TlbEl1 { asid: None }, id),
        half,
    )
    .map_err(|e| Failure::new(format_args!("user space: {e}")))?;
    // SAFETY: a fresh user space; the code frame holds the program.
    unsafe {
        s.map(
            VirtAddr::new(UCODE),
            code,
            PageSize::Size4K,
            user(Flags::RX),
        )
    }
    .map_err(|e| Failure::new(format_args!("map code: {e}")))?
    .flush();
    Ok(s)
}

fn map_data(s: &mut Space, va: u64, f: PhyAddr) -> Result<(), Failure> {
    // SAFETY: a pool frame in a user space.
    unsafe { s.map(VirtAddr::new(va), f, PageSize::Size4K, user(Flags::RW)) }
        .map_err(|e| Failure::new(format_args!("map data: {e}")))?
        .flush();
    Ok(())
}

/// The program frame: written through the identity map, made visible to instruction fetch.
fn code_frame() -> Result<PhyAddr, Failure> {
    let f = frame()?;
    for (i, w) in PROGRAM.iter().enumerate() {
        // SAFETY: a pool frame, identity-mapped.
        unsafe { ((f.as_u64() + 4 * i as u64) as *mut u32).write_volatile(*w) };
    }
    // SAFETY: cache maintenance by VA of mapped memory; barriers.
    unsafe {
        core::arch::asm!("dc cvau, {a}", "dsb ish", "ic iallu", "dsb ish", "isb", a = in(reg) f.as_u64(), options(nostack));
    }
    Ok(f)
}

fn poke(f: PhyAddr, v: u64) {
    // SAFETY: a pool frame, identity-mapped.
    unsafe { (f.as_u64() as *mut u64).write_volatile(v) };
}

fn peek(f: PhyAddr) -> u64 {
    // SAFETY: as above.
    unsafe { (f.as_u64() as *const u64).read_volatile() }
}

fn activate(
    s: &Space,
    asids: &mut Asids<1>,
    id: &ContextId,
) -> Result<awk_paging::space::Switch, Failure> {
    // SAFETY: this CPU, the space shares the kernel's identity map; switched back by the
    // test's KernelTtbr0 guard.
    unsafe { s.activate(asids, 0, id, &Ttbr0Mmu { asid16: false }) }
        .map_err(|e| Failure::new(format_args!("activate: {e}")))
}

/// Runs `entry` at EL0 with no fault handler.
fn el0(entry: u64, a0: u64, a1: u64) -> u64 {
    // SAFETY: the program page is mapped user-executable in the active space.
    unsafe { run(entry, a0, a1, &mut |_, _| false) }
}

fn destroy(s: Space) {
    // SAFETY: the kernel's TTBR0 is loaded again (the guard dropped) before this is called.
    let _ = unsafe { s.destroy() };
}

/// Two processes map the same user VA to different frames; EL0 code reads its own in each, and
/// switching back keeps the ASID (no flush on switch).
fn same_va_in_two_processes_at_el0() -> Result<(), Failure> {
    let code = code_frame()?;
    let (fa, fb) = (frame()?, frame()?);
    poke(fa, 0xa);
    poke(fb, 0xb);
    let (mut a, mut b) = (space(&IDS[0], code)?, space(&IDS[1], code)?);
    map_data(&mut a, UDATA, fa)?;
    map_data(&mut b, UDATA, fb)?;
    let mut asids = Asids::<1>::new(256).map_err(|e| Failure::new(format_args!("{e}")))?;
    let r = {
        let _k = kernel_ttbr0();
        let sa = activate(&a, &mut asids, &IDS[0])?;
        let ra = el0(READ, UDATA, 0);
        let sb = activate(&b, &mut asids, &IDS[1])?;
        let rb = el0(READ, UDATA, 0);
        let again = activate(&a, &mut asids, &IDS[0])?;
        let ra2 = el0(READ, UDATA, 0);
        (sa, sb, again, ra, rb, ra2)
    };
    destroy(a);
    destroy(b);
    let (sa, sb, again, ra, rb, ra2) = r;
    ensure_eq!(
        (ra, rb, ra2),
        (0xa, 0xb, 0xa),
        "each process reads its own frame"
    );
    ensure!(sa.asid != sb.asid, "two ASIDs");
    ensure_eq!(
        (again.asid, again.flush_local, again.new_asid),
        (sa.asid, false, false),
        "back to a live ASID: no flush"
    );
    Ok(())
}

/// EL0 code reading a kernel page (this kernel's own data, identity-mapped, EL1-only) takes a
/// permission fault; the kernel executing a user page takes one too (PXN).
fn user_kernel_isolation() -> Result<(), Failure> {
    static SECRET: u64 = 0x5ec7e7;
    let code = code_frame()?;
    let a = space(&IDS[2], code)?;
    let mut asids = Asids::<1>::new(256).map_err(|e| Failure::new(format_args!("{e}")))?;
    let secret = core::ptr::addr_of!(SECRET) as u64;
    let (r, abort, exec) = {
        let _k = kernel_ttbr0();
        activate(&a, &mut asids, &IDS[2])?;
        let r = el0(READ, secret, 0);
        let abort = last_abort();
        let exec = probe::exec(UCODE);
        (r, abort, exec)
    };
    destroy(a);
    ensure_eq!(r, ABORTED, "EL0 read of a kernel page");
    let (far, esr) = abort;
    ensure_eq!(far, secret, "FAR");
    ensure_eq!(
        ((esr >> 26) & 0x3f, (esr & 0x3f) >> 2),
        (0x24, 0b0011),
        "data abort from EL0, permission fault (ESR {esr:#x})"
    );
    match exec {
        Err(f) => ensure_eq!(
            (f.addr, f.kind),
            (UCODE, FaultKind::ExecDenied),
            "kernel fetch from a user page"
        ),
        Ok(()) => return Err(Failure::new(format_args!("EL1 executed a user page (PXN)"))),
    }
    Ok(())
}

/// The kernel runs with PAN on (FEAT_PAN: `-cpu max`; enabled at boot on every CPU, kept
/// across the EL0 round trips of the tests before this one): an EL1 read of a page EL0 may
/// access takes a permission fault, and the same read succeeds inside the explicit window
/// (`pan::with_user_access`), after which PAN is on again. Without FEAT_PAN (`cortex-a72`) PAN
/// reads as off and the window is a plain call (no PAN instruction runs: it would be UNDEFINED
/// there), and the read succeeds both ways.
fn pan_blocks_kernel_access_to_user_pages() -> Result<(), Failure> {
    let code = code_frame()?;
    let data = frame()?;
    poke(data, 0xda7a);
    let mut a = space(&IDS[11], code)?;
    map_data(&mut a, UDATA, data)?;
    let mut asids = Asids::<1>::new(256).map_err(|e| Failure::new(format_args!("{e}")))?;
    let (on, plain, window, after) = {
        let _k = kernel_ttbr0();
        activate(&a, &mut asids, &IDS[11])?;
        // The kernel turned PAN on at boot (where the CPU has it) and after every EL0 round
        // trip it is still on.
        let on = pan::is_on();
        let plain = probe::read(UDATA);
        let window = pan::with_user_access(|| probe::read(UDATA));
        let after = pan::is_on();
        (on, plain, window, after)
    };
    destroy(a);
    ensure_eq!(on, pan::has_pan(), "PAN on exactly where the CPU has it");
    ensure_eq!(after, on, "PAN back on after the window");
    ensure_eq!(window, Ok(0xda7a), "read inside the window");
    if !on {
        ensure_eq!(plain, Ok(0xda7a), "no PAN: the plain read works");
        return Ok(());
    }
    match plain {
        Err(f) => ensure_eq!(
            (f.addr, (f.raw >> 26) & 0x3f, (f.raw & 0x3f) >> 2),
            (UDATA, 0x25, 0b0011),
            "data abort from EL1, permission fault (ESR {:#x})",
            f.raw
        ),
        Ok(v) => fail!("PAN let EL1 read a user page: {v:#x}"),
    }
    Ok(())
}

/// Sets TCR_EL1's hardware-update bits (HA, HD) for its lifetime, then clears them again. The
/// kernel's own tables are unaffected either way: their leaves are created with AF = 1 and
/// without DBM, so the hardware has nothing to update in them.
struct HardwareUpdates(u64);

impl HardwareUpdates {
    fn set(bits: u64) -> Self {
        const MASK: u64 = features::TCR_HA | features::TCR_HD;
        let old = TCR_EL1.get();
        // SAFETY: EL1; only HA/HD change. TCR_EL1 fields may be held in TLB entries, so the
        // local TLB is invalidated after the write (and again when the guard drops).
        unsafe { set_tcr((old & !MASK) | (bits & MASK)) };
        HardwareUpdates(old)
    }
}

impl Drop for HardwareUpdates {
    fn drop(&mut self) {
        // SAFETY: the value read before.
        unsafe { set_tcr(self.0) };
    }
}

/// # Safety
///
/// EL1; `v` differs from TCR_EL1 only in fields the tables in use allow.
unsafe fn set_tcr(v: u64) {
    // SAFETY: the caller's.
    unsafe {
        core::arch::asm!("msr tcr_el1, {}", "isb", "tlbi vmalle1", "dsb nsh", "isb", in(reg) v, options(nostack));
    }
}

/// DFSC of an Access flag fault at level 3 (ESR_EL1.ISS\[5:0\] = 0b0010_11).
const ACCESS_FLAG_FAULT_L3: u64 = 0b00_1011;

/// The ESRs of the aborts [`el0_tracked`] handed to `set_accessed`.
#[derive(Default)]
struct Faults {
    esr: [u64; 4],
    n: usize,
}

/// Runs EL0 code in `a` (active); an abort goes to `set_accessed` and is retried if that set
/// AF, at most 4 times in all (a helper that did not set AF would otherwise fault forever).
fn el0_tracked(a: &mut Space, faults: &mut Faults, entry: u64, a0: u64, a1: u64) -> u64 {
    let mut handler = |far: u64, esr: u64| {
        let Some(slot) = faults.esr.get_mut(faults.n) else {
            return false;
        };
        *slot = esr;
        faults.n += 1;
        a.set_accessed(VirtAddr::new(far)) == Ok(true)
    };
    // SAFETY: the program page is user-executable in the active space.
    unsafe { run(entry, a0, a1, &mut handler) }
}

/// The Access flag and dirty state at EL0, with the best tracking the CPU has
/// (`Tracking::for_cpu`): on `-cpu max` (FEAT_HAFDBS) the hardware sets AF and marks a
/// writable-clean page dirty on the first write, with no fault; on `cortex-a72` the software
/// fallback: a cleared AF makes the next access take an Access flag fault, which the fault
/// handler resolves with `set_accessed`, and the access is retried. Either way
/// `clear_accessed_dirty` reads the record and clears it, and its flush makes the next access
/// record again.
fn access_and_dirty_at_el0() -> Result<(), Failure> {
    let tracking = Tracking::for_cpu(features::Mmfr1::read().hardware_flags());
    let hardware_dirty = tracking == Tracking::HardwareAccessDirty;
    let code = code_frame()?;
    let data = frame()?;
    poke(data, 0);
    let mut a = space_in(A64::default().with_tracking(tracking), &IDS[12], code)?;
    map_data(&mut a, UDATA, data)?;
    let mut asids = Asids::<1>::new(256).map_err(|e| Failure::new(format_args!("{e}")))?;
    let va = VirtAddr::new(UDATA);
    let mut faults = Faults::default();
    let clear = |a: &mut Space, accessed: bool, dirty: bool| {
        a.clear_accessed_dirty(va, PageSize::Size4K, accessed, dirty)
            .map(|(ad, flush)| {
                flush.flush();
                (ad.accessed, ad.dirty)
            })
            .map_err(|e| Failure::new(format_args!("clear_accessed_dirty: {e}")))
    };
    let r = (|| -> Result<_, Failure> {
        let _k = kernel_ttbr0();
        let _hw = HardwareUpdates::set(tracking.tcr_bits());
        activate(&a, &mut asids, &IDS[12])?;
        let wrote = el0_tracked(&mut a, &mut faults, WRITE_READ, UDATA, 0x77);
        let first = clear(&mut a, true, true)?;
        let faults_before_read = faults.n;
        let read = el0_tracked(&mut a, &mut faults, READ, UDATA, 0);
        let read_faults = faults.n - faults_before_read;
        let after_read = clear(&mut a, false, false)?;
        let wrote_again = el0_tracked(&mut a, &mut faults, WRITE_READ, UDATA, 0x88);
        let after_write = clear(&mut a, false, false)?;
        Ok((
            wrote,
            first,
            read,
            read_faults,
            after_read,
            wrote_again,
            after_write,
        ))
    })();
    destroy(a);
    let (wrote, first, read, read_faults, after_read, wrote_again, after_write) = r?;
    ensure_eq!(
        (wrote, read, wrote_again),
        (0x77, 0x77, 0x88),
        "EL0 accesses"
    );
    ensure_eq!(
        first,
        (true, true),
        "accessed and dirty after the first write"
    );
    ensure_eq!(peek(data), 0x88, "the frame holds the last write");
    if tracking == Tracking::SoftwareAccess {
        ensure_eq!(read_faults, 1, "one Access flag fault after AF was cleared");
        ensure_eq!(
            ((faults.esr[0] >> 26) & 0x3f, faults.esr[0] & 0x3f),
            (0x24, ACCESS_FLAG_FAULT_L3),
            "data abort from EL0, Access flag fault at level 3 (ESR {:#x})",
            faults.esr[0]
        );
        ensure_eq!(
            after_read,
            (true, true),
            "AF set again by the helper; no dirty record"
        );
    } else {
        ensure_eq!(
            faults.n,
            0,
            "the hardware updates without faults (ESR {:#x})",
            faults.esr[0]
        );
        ensure_eq!(
            after_read,
            (true, !hardware_dirty),
            "the read set AF; a read leaves a cleaned page clean"
        );
    }
    ensure_eq!(after_write, (true, true), "the write is recorded");
    Ok(())
}

/// Owner counts for a few frames (no allocator here).
struct Refs([(u64, usize); 16]);

impl FrameRefs for Refs {
    fn share(&mut self, f: PhyAddr) {
        if let Some(e) = self.0.iter_mut().find(|e| e.0 == f.as_u64()) {
            e.1 += 1;
        } else if let Some(e) = self.0.iter_mut().find(|e| e.0 == 0) {
            *e = (f.as_u64(), 2);
        }
    }
    fn owners(&self, f: PhyAddr) -> usize {
        self.0.iter().find(|e| e.0 == f.as_u64()).map_or(1, |e| e.1)
    }
    fn release(&mut self, f: PhyAddr) {
        if let Some(e) = self.0.iter_mut().find(|e| e.0 == f.as_u64()) {
            e.1 -= 1;
        }
    }
}

/// Fork-like copy-on-write: the child's EL0 write faults, the fault handler calls the helper,
/// the write is retried and succeeds; the parent still reads the old value. A zero page reads
/// zero without allocating; its first write allocates one frame.
fn copy_on_write_at_el0() -> Result<(), Failure> {
    let code = code_frame()?;
    let (data, zero) = (frame()?, frame()?);
    poke(data, 0x1111);
    poke(zero, 0);
    let mut parent = space(&IDS[3], code)?;
    map_data(&mut parent, UDATA, data)?;
    let mut refs = Refs([(0, 0); 16]);
    // SAFETY: the parent is not active; the child gets the same mappings.
    let mut child = unsafe {
        parent.fork(
            PoolFrames,
            SpaceTlb::new(TlbEl1 { asid: None }, &IDS[4]),
            &mut refs,
        )
    }
    .map_err(|e| Failure::new(format_args!("fork: {e}")))?;
    child.set_zero_frame(zero);
    // SAFETY: the zero frame, read-only, copy-on-write.
    unsafe { child.map_zero(VirtAddr::new(UDATA + 0x1000), user(Flags::RW)) }
        .map_err(|e| Failure::new(format_args!("map_zero: {e}")))?
        .flush();
    let mut asids = Asids::<1>::new(256).map_err(|e| Failure::new(format_args!("{e}")))?;
    let mut resolved = [None; 4];
    let mut n = 0;
    let out = {
        let _k = kernel_ttbr0();
        activate(&child, &mut asids, &IDS[4])?;
        let mut handler = |far: u64, _esr: u64| {
            // SAFETY: this space's lock is this test; PoolFrames hands out unused frames.
            let r = unsafe {
                child.resolve_write_fault(VirtAddr::new(far), &mut refs, &mut PoolFrames)
            };
            if n < resolved.len() {
                resolved[n] = Some(r);
                n += 1;
            }
            r.is_ok()
        };
        // SAFETY: the program page is user-executable in the child.
        let wrote = unsafe { run(WRITE_READ, UDATA, 0x2222, &mut handler) };
        let before_zero = free_frames();
        let zero_read = el0(READ, UDATA + 0x1000, 0);
        let after_read = free_frames();
        // SAFETY: as above.
        let zero_write = unsafe { run(WRITE_READ, UDATA + 0x1008, 0x3333, &mut handler) };
        let after_write = free_frames();
        activate(&parent, &mut asids, &IDS[3])?;
        let parent_read = el0(READ, UDATA, 0);
        (
            wrote,
            zero_read,
            zero_write,
            parent_read,
            before_zero - after_read,
            before_zero - after_write,
        )
    };
    let (wrote, zero_read, zero_write, parent_read, read_alloc, write_alloc) = out;
    let first = resolved[0];
    let second = resolved[1];
    destroy(child);
    destroy(parent);
    ensure_eq!(wrote, 0x2222, "the child's write, retried after the fault");
    ensure!(
        matches!(first, Some(Ok(Resolved::Copied { from, .. })) if from == data),
        "the helper copied the shared frame: {first:?}"
    );
    ensure_eq!(parent_read, 0x1111, "the parent still reads the old value");
    ensure_eq!(peek(data), 0x1111, "the shared frame untouched");
    ensure_eq!(
        (zero_read, read_alloc),
        (0, 0),
        "a zero page reads zero without allocating"
    );
    ensure_eq!(
        (zero_write, write_alloc),
        (0x3333, 1),
        "the first write allocates one frame"
    );
    ensure!(
        matches!(second, Some(Ok(Resolved::Zeroed { .. }))),
        "zero page resolved: {second:?}"
    );
    ensure_eq!(n, 2, "two faults resolved");
    Ok(())
}

/// An ASID rollover on this CPU: the fourth process reuses the first one's ASID and reads its
/// own frame at the same VA (the switch flushes the local TLB first). QEMU's TCG drops its
/// TLB on every ASID change, so this proves the flow, not the flush (that is the host test
/// `rollover_flushes_a_reused_asid_before_use`).
fn asid_rollover_reuses_an_asid() -> Result<(), Failure> {
    let code = code_frame()?;
    let mut asids = Asids::<1>::new(4).map_err(|e| Failure::new(format_args!("{e}")))?;
    let mut spaces: [Option<Space>; 4] = [None, None, None, None];
    for (i, slot) in spaces.iter_mut().enumerate() {
        let mut s = space(&IDS[5 + i], code)?;
        let f = frame()?;
        poke(f, 0x100 + i as u64);
        map_data(&mut s, UDATA, f)?;
        *slot = Some(s);
    }
    let mut seen = [0u64; 4];
    let mut switches = [None; 4];
    {
        let _k = kernel_ttbr0();
        for (i, s) in spaces.iter().enumerate() {
            if let Some(s) = s {
                switches[i] = Some(activate(s, &mut asids, &IDS[5 + i])?);
                seen[i] = el0(READ, UDATA, 0);
            }
        }
    }
    for s in spaces.into_iter().flatten() {
        destroy(s);
    }
    ensure_eq!(seen, [0x100, 0x101, 0x102, 0x103], "each reads its own");
    let (first, last) = (switches[0], switches[3]);
    ensure!(
        matches!((first, last), (Some(f), Some(l)) if f.asid == l.asid && l.flush_local),
        "the fourth reuses the first ASID after a local flush: {first:?} {last:?}"
    );
    ensure_eq!(asids.rollovers(), 1, "one rollover");
    Ok(())
}

/// The tests of this module, in order.
pub const TESTS: &[Test] = &[
    Test {
        name: "spaces::same_va_in_two_processes_at_el0",
        run: same_va_in_two_processes_at_el0,
    },
    Test {
        name: "spaces::user_kernel_isolation",
        run: user_kernel_isolation,
    },
    Test {
        name: "spaces::copy_on_write_at_el0",
        run: copy_on_write_at_el0,
    },
    Test {
        name: "spaces::pan_blocks_kernel_access_to_user_pages",
        run: pan_blocks_kernel_access_to_user_pages,
    },
    Test {
        name: "spaces::access_and_dirty_at_el0",
        run: access_and_dirty_at_el0,
    },
    Test {
        name: "spaces::asid_rollover_reuses_an_asid",
        run: asid_rollover_reuses_an_asid,
    },
];
