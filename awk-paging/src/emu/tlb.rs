//! A TLB model: translations stay cached until invalidated, like on a real CPU, only more so —
//! nothing is ever evicted, so every missing invalidation is observable.

use core::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::{Attrs, PageSize, PhyAddr, Tlb, Translation, VirtAddr};

/// One cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cached {
    frame: PhyAddr,
    attrs: Attrs,
}

/// The emulated CPU's TLB for one address space.
///
/// [`access`](Self::access) is what the CPU does on a memory access: look up the TLB, and on a
/// miss walk the tables (the closure) and cache the result. `&EmuTlb` implements [`Tlb`], so page
/// tables and their flush tokens invalidate it.
///
/// ```
/// use awk_paging::emu::{CpuAccess, EmuArch, EmuMemory, EmuTlb};
/// use awk_paging::{Flags, PageSize, PageTable, VirtAddr};
///
/// let mem = EmuMemory::new(16);
/// let tlb = EmuTlb::new();
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, &tlb).unwrap();
/// let (f1, f2) = (mem.allocate_data_frame().unwrap(), mem.allocate_data_frame().unwrap());
/// let va = VirtAddr::new(0x1000);
/// unsafe { pt.map(va, f1, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// assert_eq!(tlb.access(va, |v| pt.translate(v).ok()), CpuAccess::Mapped(f1));
///
/// // Remap without flushing the unmap: the CPU still sees the old frame.
/// let (_, stale) = unsafe { pt.unmap(va, PageSize::Size4K) }.unwrap();
/// unsafe { pt.map(va, f2, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// assert_eq!(tlb.access(va, |v| pt.translate(v).ok()), CpuAccess::Mapped(f1));
/// stale.flush();
/// assert_eq!(tlb.access(va, |v| pt.translate(v).ok()), CpuAccess::Mapped(f2));
/// ```
#[derive(Debug, Default)]
pub struct EmuTlb {
    entries: RefCell<HashMap<(PageSize, u64), Cached>>,
    page_flushes: Cell<usize>,
    full_flushes: Cell<usize>,
    publishes: Cell<usize>,
}

/// The outcome of one emulated access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuAccess {
    /// Translated to this physical address (from the TLB or a fresh walk).
    Mapped(PhyAddr),
    /// Translation fault: no valid entry, nothing cached.
    Fault,
}

impl EmuTlb {
    /// An empty TLB.
    ///
    /// ```
    /// assert_eq!(awk_paging::emu::EmuTlb::new().cached(), 0);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates `va` as the CPU would: a cached entry wins; otherwise `walk` is called and a
    /// valid result is cached (faults are not cached, as on real hardware).
    pub fn access(
        &self,
        va: VirtAddr,
        walk: impl FnOnce(VirtAddr) -> Option<Translation>,
    ) -> CpuAccess {
        if let Some(hit) = self.lookup(va) {
            return CpuAccess::Mapped(PhyAddr::new(hit.0.as_u64() | hit.1));
        }
        match walk(va) {
            Some(t) => {
                let key = (t.size, va.as_u64() >> t.size.shift());
                self.entries.borrow_mut().insert(
                    key,
                    Cached {
                        frame: t.frame,
                        attrs: t.attrs,
                    },
                );
                CpuAccess::Mapped(t.pa)
            }
            None => CpuAccess::Fault,
        }
    }

    /// The attributes the TLB holds for `va`, if any (what a permission check would use).
    #[must_use]
    pub fn cached_attrs(&self, va: VirtAddr) -> Option<Attrs> {
        PageSize::ALL.iter().find_map(|&s| {
            self.entries
                .borrow()
                .get(&(s, va.as_u64() >> s.shift()))
                .map(|c| c.attrs)
        })
    }

    fn lookup(&self, va: VirtAddr) -> Option<(PhyAddr, u64)> {
        let entries = self.entries.borrow();
        PageSize::ALL.iter().find_map(|&s| {
            entries
                .get(&(s, va.as_u64() >> s.shift()))
                .map(|c| (c.frame, va.page_offset(s)))
        })
    }

    /// Number of cached translations.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Single-page invalidations performed so far.
    #[must_use]
    pub fn page_flushes(&self) -> usize {
        self.page_flushes.get()
    }

    /// Full invalidations performed so far.
    #[must_use]
    pub fn full_flushes(&self) -> usize {
        self.full_flushes.get()
    }

    /// Publish barriers performed so far.
    #[must_use]
    pub fn publishes(&self) -> usize {
        self.publishes.get()
    }
}

impl Tlb for EmuTlb {
    fn flush_page(&self, va: VirtAddr) {
        self.page_flushes.set(self.page_flushes.get() + 1);
        let mut entries = self.entries.borrow_mut();
        for s in PageSize::ALL {
            entries.remove(&(s, va.as_u64() >> s.shift()));
        }
    }

    fn flush_all(&self) {
        self.full_flushes.set(self.full_flushes.get() + 1);
        self.entries.borrow_mut().clear();
    }

    fn publish(&self) {
        self.publishes.set(self.publishes.get() + 1);
    }
}

impl Tlb for std::rc::Rc<EmuTlb> {
    fn flush_page(&self, va: VirtAddr) {
        (**self).flush_page(va)
    }

    fn flush_all(&self) {
        (**self).flush_all()
    }

    fn publish(&self) {
        (**self).publish()
    }
}
