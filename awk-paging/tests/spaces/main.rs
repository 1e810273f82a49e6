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

fn raw<F: FrameAllocator>(
    p: &UserSpace<EmuArch, &EmuMemory, F, SpaceTlb<'_, &EmuTlb>>,
    va: u64,
) -> (u8, u64) {
    p.raw_entry(VirtAddr::new(va)).unwrap()
}

mod asids;
mod cow;
mod layout;
mod walk;
