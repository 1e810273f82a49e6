//! Processes on the real MMU: user address spaces with PCIDs ([`awk_paging::space`],
//! [`PcidMmu`]), code running in ring 3 ([`super::user`]), faults from and into user pages
//! (SMEP, SMAP with `stac`/`clac`), and copy-on-write resolved by the fault helper.
//!
//! Each user space shares the boot PML4's entry 0 (the identity map of the first GiB: this
//! kernel, its stacks, the frame pool; no U/S) and maps its own pages at [`UCODE`] / [`UDATA`]
//! (PML4 entry 2). Every test loads the boot CR3 (PCID 0) and the original CR4 again before it
//! returns. The kernel QEMU runs with `-cpu qemu64,+smep,+smap` (xtask's `KERNELS`); without
//! those CPUID bits the isolation test fails and says so. QEMU's TCG has no PCIDs: the switch
//! then loads CR3 without them (every load flushes), which the tests accept; PCIDs and the
//! no-flush switch are checked on the host (`awk-paging-x86_64/tests/spaces.rs`).

use awk_paging::space::{
    Asids, ContextId, FrameRefs, KernelHalf, Resolved, SpaceTlb, Switch, UserSpace,
};
use awk_paging::{Attrs, Flags, OffsetPhysMem, PageSize, PhyAddr, VirtAddr};
use awk_paging_x86_64::space::{PcidMmu, PCIDS};
use awk_paging_x86_64::X86_64;

use super::interrupts::PAGE_FAULT;
use super::user::{last_fault, run, ABORTED};
use super::{CR4_SMAP, CR4_SMEP};
use crate::frames::{free_frames, PoolFrames};
use crate::harness::{Failure, Test};
use crate::probe;
use crate::{ensure, ensure_eq, fail};

/// User code: the programs below, one page (PML4 entry 2).
pub const UCODE: u64 = 0x0000_0100_0000_0000;
/// User data.
pub const UDATA: u64 = UCODE + 0x20_0000;

/// `mov rax, [rdi]; ud2`: returns the word at `rdi`.
const READ: u64 = UCODE;
/// `mov [rdi], rsi; mov rax, [rdi]; ud2`: writes `rsi` at `rdi`, returns what is there.
const WRITE_READ: u64 = UCODE + 8;
const PROGRAM: [(u64, &[u8]); 2] = [
    (0, &[0x48, 0x8b, 0x07, 0x0f, 0x0b]),
    (8, &[0x48, 0x89, 0x37, 0x48, 0x8b, 0x07, 0x0f, 0x0b]),
];

const CR4_PCIDE: u64 = 1 << 17;

/// #PF error code bits.
const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 2;
const PF_USER: u64 = 4;
const PF_FETCH: u64 = 0x10;

type Space = UserSpace<X86_64, OffsetPhysMem, PoolFrames, SpaceTlb<'static, PcidMmu>>;

static IDS: [ContextId; 12] = [const { ContextId::new() }; 12];

fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 in ring 0.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nostack, preserves_flags)) };
    v
}

fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 in ring 0.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nostack, preserves_flags)) };
    v
}

fn set_cr4(v: u64) {
    // SAFETY: ring 0; only PCIDE/SMEP/SMAP are toggled, with CR3's PCID 0 when PCIDE changes.
    unsafe { core::arch::asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// What the CPU has: (PCID, INVPCID, SMEP, SMAP).
fn features() -> (bool, bool, bool, bool) {
    use core::arch::x86_64::__cpuid_count;
    let l1 = __cpuid_count(1, 0);
    let l7 = __cpuid_count(7, 0);
    (
        l1.ecx & (1 << 17) != 0,
        l7.ebx & (1 << 10) != 0,
        l7.ebx & (1 << 7) != 0,
        l7.ebx & (1 << 20) != 0,
    )
}

/// Loads the boot CR3 (PCID 0, full flush) and the original CR4 again when dropped.
struct KernelCr3 {
    cr3: u64,
    cr4: u64,
}

impl Drop for KernelCr3 {
    fn drop(&mut self) {
        // SAFETY: the boot PML4, as loaded before the test; PCID bits 0.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) self.cr3 & !0xfff, options(nostack)) };
        set_cr4(self.cr4);
    }
}

/// Enables PCIDs (when the CPU has them) plus `extra` CR4 bits for the test's duration, and
/// the MMU driver matching the CPU.
fn enter(extra: u64) -> Result<(KernelCr3, PcidMmu), Failure> {
    let (pcid, invpcid, _, _) = features();
    let guard = KernelCr3 {
        cr3: cr3(),
        cr4: cr4(),
    };
    ensure_eq!(guard.cr3 & 0xfff, 0, "boot CR3 has PCID 0");
    let pcide = if pcid { CR4_PCIDE } else { 0 };
    set_cr4(guard.cr4 | pcide | extra);
    Ok((
        guard,
        PcidMmu {
            pcide: pcid,
            invpcid,
        },
    ))
}

fn mem() -> OffsetPhysMem {
    // SAFETY: the first GiB is identity-mapped in every table these tests load.
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

/// A user space sharing the boot PML4's entry 0, with the program page at [`UCODE`].
fn space(id: &'static ContextId, code: PhyAddr, mmu: PcidMmu) -> Result<Space, Failure> {
    let root = PhyAddr::new(super::boot_pml4_phys());
    // SAFETY: the boot identity map's PDPT is never detached.
    let half = unsafe { KernelHalf::from_root(root, 0..1) }
        .ok_or_else(|| Failure::new(format_args!("kernel half")))?;
    let mut s = UserSpace::new(
        X86_64::detect(),
        mem(),
        PoolFrames,
        SpaceTlb::new(mmu, id),
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

fn code_frame() -> Result<PhyAddr, Failure> {
    let f = frame()?;
    for (off, bytes) in PROGRAM {
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: a pool frame, identity-mapped.
            unsafe { ((f.as_u64() + off + i as u64) as *mut u8).write_volatile(*b) };
        }
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
    mmu: PcidMmu,
) -> Result<Switch, Failure> {
    // SAFETY: this CPU; the space shares the kernel's identity map; the guard reloads the
    // boot CR3.
    unsafe { s.activate(asids, 0, id, &mmu) }
        .map_err(|e| Failure::new(format_args!("activate: {e}")))
}

fn ring3(entry: u64, a0: u64, a1: u64) -> u64 {
    // SAFETY: the program page is mapped user-executable in the loaded CR3.
    unsafe { run(entry, a0, a1, &mut |_, _| false) }
}

fn destroy(s: Space) {
    // SAFETY: the boot CR3 is loaded again (the guard dropped) before this is called.
    let _ = unsafe { s.destroy() };
}

fn asids() -> Result<Asids<1>, Failure> {
    Asids::<1>::new(PCIDS).map_err(|e| Failure::new(format_args!("{e}")))
}

/// Two processes map the same user VA to different frames; ring-3 code reads its own in each;
/// switching back keeps the PCID and loads CR3 with the no-flush bit.
fn same_va_in_two_processes_in_ring3() -> Result<(), Failure> {
    let (pcid, ..) = features();
    let code = code_frame()?;
    let (fa, fb) = (frame()?, frame()?);
    poke(fa, 0xa);
    poke(fb, 0xb);
    let mut asids = asids()?;
    let out = {
        let (_k, mmu) = enter(0)?;
        let (mut a, mut b) = (space(&IDS[0], code, mmu)?, space(&IDS[1], code, mmu)?);
        map_data(&mut a, UDATA, fa)?;
        map_data(&mut b, UDATA, fb)?;
        let sa = activate(&a, &mut asids, &IDS[0], mmu)?;
        let ra = ring3(READ, UDATA, 0);
        let sb = activate(&b, &mut asids, &IDS[1], mmu)?;
        let rb = ring3(READ, UDATA, 0);
        let again = activate(&a, &mut asids, &IDS[0], mmu)?;
        let loaded = cr3();
        let ra2 = ring3(READ, UDATA, 0);
        drop(_k);
        destroy(a);
        destroy(b);
        (sa, sb, again, ra, rb, ra2, loaded)
    };
    let (sa, sb, again, ra, rb, ra2, loaded) = out;
    ensure_eq!(
        (ra, rb, ra2),
        (0xa, 0xb, 0xa),
        "each process reads its own frame"
    );
    ensure!(sa.asid != sb.asid, "two PCIDs");
    ensure_eq!(
        (again.asid, again.flush_local),
        (sa.asid, false),
        "back to a live PCID"
    );
    // QEMU's TCG has no PCIDs (CPUID.01H:ECX.PCID clear): then every CR3 load flushes and the
    // PCID bits stay 0; on a CPU with them CR3 carries the PCID and the no-flush bit.
    let want = if pcid { u64::from(sa.asid) } else { 0 };
    ensure_eq!(
        loaded & 0xfff,
        want,
        "CR3's PCID bits (PCID support: {pcid})"
    );
    Ok(())
}

/// Ring 3 reading a kernel page faults (U/S); with SMEP the kernel executing a user page
/// faults; with SMAP the kernel reading a user page faults, unless it opens the window with
/// `stac` (closed again with `clac`).
fn user_kernel_isolation() -> Result<(), Failure> {
    static SECRET: u64 = 0x5ec7e7;
    let (_, _, smep, smap) = features();
    ensure!(
        smep && smap,
        "CPUID lacks SMEP/SMAP (QEMU: -cpu qemu64,+smep,+smap)"
    );
    let code = code_frame()?;
    let data = frame()?;
    poke(data, 0xda7a);
    let secret = core::ptr::addr_of!(SECRET) as u64;
    let mut asids = asids()?;
    ensure_eq!(
        cr4() & (CR4_SMEP | CR4_SMAP),
        CR4_SMEP | CR4_SMAP,
        "SMEP and SMAP on since boot"
    );
    let (r, fault, exec, smap_read, stac_read) = {
        let (k, mmu) = enter(CR4_SMEP | CR4_SMAP)?;
        let mut a = space(&IDS[2], code, mmu)?;
        map_data(&mut a, UDATA, data)?;
        activate(&a, &mut asids, &IDS[2], mmu)?;
        let r = ring3(READ, secret, 0);
        let fault = last_fault();
        let exec = probe::exec(UCODE);
        let smap_read = probe::read(UDATA);
        // SAFETY: stac/clac only toggle RFLAGS.AC (ring 0, SMAP present).
        unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
        let stac_read = probe::read(UDATA);
        // SAFETY: as above.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
        drop(k);
        destroy(a);
        (r, fault, exec, smap_read, stac_read)
    };
    ensure_eq!(r, ABORTED, "ring-3 read of a kernel page");
    let (vector, addr, error) = fault;
    ensure_eq!(
        (vector, addr),
        (PAGE_FAULT, secret),
        "#PF at the kernel address"
    );
    ensure_eq!(
        error & (PF_PRESENT | PF_USER | PF_WRITE),
        PF_PRESENT | PF_USER,
        "present, user, read (error {error:#x})"
    );
    match exec {
        Err(f) => ensure_eq!(
            (f.addr, f.raw & (PF_PRESENT | PF_FETCH | PF_USER)),
            (UCODE, PF_PRESENT | PF_FETCH),
            "SMEP: supervisor fetch from a user page"
        ),
        Ok(()) => fail!("the kernel executed a user page with SMEP on"),
    }
    match smap_read {
        Err(f) => ensure_eq!(
            (f.addr, f.raw & (PF_PRESENT | PF_USER | PF_WRITE)),
            (UDATA, PF_PRESENT),
            "SMAP: supervisor read of a user page"
        ),
        Ok(v) => fail!("SMAP let the kernel read a user page: {v:#x}"),
    }
    ensure_eq!(stac_read, Ok(0xda7a), "the explicit window (stac)");
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

/// Fork-like copy-on-write: the child's ring-3 write faults, the fault handler calls the
/// helper, the write is retried and succeeds; the parent still reads the old value. A zero page
/// reads zero without allocating; its first write allocates one frame.
fn copy_on_write_in_ring3() -> Result<(), Failure> {
    let code = code_frame()?;
    let (data, zero) = (frame()?, frame()?);
    poke(data, 0x1111);
    poke(zero, 0);
    let mut asids = asids()?;
    let mut resolved = [None; 4];
    let mut n = 0;
    let out = {
        let (k, mmu) = enter(0)?;
        let mut parent = space(&IDS[3], code, mmu)?;
        map_data(&mut parent, UDATA, data)?;
        let mut refs = Refs([(0, 0); 16]);
        // SAFETY: the parent is not active; the child gets the same mappings.
        let mut child = unsafe { parent.fork(PoolFrames, SpaceTlb::new(mmu, &IDS[4]), &mut refs) }
            .map_err(|e| Failure::new(format_args!("fork: {e}")))?;
        child.set_zero_frame(zero);
        // SAFETY: the zero frame, read-only, copy-on-write.
        unsafe { child.map_zero(VirtAddr::new(UDATA + 0x1000), user(Flags::RW)) }
            .map_err(|e| Failure::new(format_args!("map_zero: {e}")))?
            .flush();
        activate(&child, &mut asids, &IDS[4], mmu)?;
        let mut handler = |cr2: u64, _error: u64| {
            // SAFETY: this test holds the space; PoolFrames hands out unused frames.
            let r = unsafe {
                child.resolve_write_fault(VirtAddr::new(cr2), &mut refs, &mut PoolFrames)
            };
            if n < resolved.len() {
                resolved[n] = Some(r);
                n += 1;
            }
            r.is_ok()
        };
        // SAFETY: the program page is user-executable in the child.
        let wrote = unsafe { run(WRITE_READ, UDATA, 0x2222, &mut handler) };
        let before = free_frames();
        let zero_read = ring3(READ, UDATA + 0x1000, 0);
        let after_read = free_frames();
        // SAFETY: as above.
        let zero_write = unsafe { run(WRITE_READ, UDATA + 0x1008, 0x3333, &mut handler) };
        let after_write = free_frames();
        activate(&parent, &mut asids, &IDS[3], mmu)?;
        let parent_read = ring3(READ, UDATA, 0);
        drop(k);
        destroy(child);
        destroy(parent);
        (
            wrote,
            zero_read,
            zero_write,
            parent_read,
            before - after_read,
            before - after_write,
        )
    };
    let (wrote, zero_read, zero_write, parent_read, read_alloc, write_alloc) = out;
    ensure_eq!(wrote, 0x2222, "the child's write, retried after the fault");
    ensure!(
        matches!(resolved[0], Some(Ok(Resolved::Copied { from, .. })) if from == data),
        "the helper copied the shared frame: {:?}",
        resolved[0]
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
        matches!(resolved[1], Some(Ok(Resolved::Zeroed { .. }))),
        "zero page resolved: {:?}",
        resolved[1]
    );
    ensure_eq!(n, 2, "two faults resolved");
    Ok(())
}

/// The tests of this module, in order.
pub const TESTS: &[Test] = &[
    Test {
        name: "spaces::same_va_in_two_processes_in_ring3",
        run: same_va_in_two_processes_in_ring3,
    },
    Test {
        name: "spaces::user_kernel_isolation",
        run: user_kernel_isolation,
    },
    Test {
        name: "spaces::copy_on_write_in_ring3",
        run: copy_on_write_in_ring3,
    },
];
