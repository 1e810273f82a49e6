//! TLB maintenance on x86_64 hardware: [`Invlpg`], its hooks described as
//! [`maint`](crate::maint) ops.

use awk_paging::VirtAddr;

use crate::maint::{Op, Sequence};

/// The sequences [`Invlpg`] produces: at most two ops.
pub type TlbSequence = Sequence<2>;

/// The CPU's own TLB, for the address space in CR3 — **the current PCID only**: `invlpg` for one
/// page; for everything, a CR4.PGE toggle (which also drops global entries) when PGE is on, a
/// CR3 reload (which keeps global entries, but there are none without PGE) when it is off.
///
/// | hook | ops |
/// |---|---|
/// | `flush_page(va)`, `flush_leaf(va)` | `invlpg [va]` (nothing for a non-canonical `va`, which nothing maps) |
/// | `flush_all()` | `mov cr4, cr4 ^ PGE; mov cr4, cr4` if CR4.PGE, else `mov cr3, cr3` |
/// | `publish()` | nothing (the walker reads ordinary stores) |
/// | `order_table_writes()` | a compiler fence (stores stay in order on x86) |
///
/// `invlpg` has no leaf-only form and also drops the paging-structure caches for the address,
/// so `flush_leaf` is `flush_page`.
///
/// Single CPU, current address space: entries cached for other PCIDs or on other CPUs stay.
/// A kernel that uses PCIDs (not supported by this crate yet) needs `invpcid`, and an SMP
/// kernel a `Tlb` wrapper that also sends shootdown IPIs.
///
/// `Invlpg` and its `*_ops` methods exist on every target; `impl Tlb for Invlpg` only on
/// bare-metal x86_64 (`target_os = "none"`), where the ops can run: on a hosted target they
/// would fault, and a hook that did nothing would hide missing flushes. (Rustdoc lists the impl
/// on every target.)
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_x86_64::maint::Op;
/// use awk_paging_x86_64::Invlpg;
/// assert_eq!(Invlpg.flush_page_ops(VirtAddr::new(0x1000)).ops(), &[Op::Invlpg(0x1000)]);
/// assert_eq!(Invlpg.flush_all_ops(true).ops(), &[Op::ToggleCr4Pge]);
/// assert_eq!(Invlpg.flush_all_ops(false).ops(), &[Op::ReloadCr3]);
/// ```
///
/// On bare metal:
///
/// ```no_run
/// # #[cfg(all(target_arch = "x86_64", target_os = "none"))]
/// # fn f() {
/// use awk_paging::{Tlb, VirtAddr};
/// awk_paging_x86_64::Invlpg.flush_page(VirtAddr::new(0xffff_8000_0000_0000));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Invlpg;

impl Invlpg {
    /// The ops of [`Tlb::flush_page`](awk_paging::Tlb::flush_page): `invlpg [va]`, or nothing
    /// when `va` is not canonical (never mapped, so never cached).
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// assert!(awk_paging_x86_64::Invlpg.flush_page_ops(VirtAddr::new(0x8000_0000_0000)).is_empty());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn flush_page_ops(&self, va: VirtAddr) -> TlbSequence {
        let bits = va.as_u64();
        // Canonical: bits 63:47 all equal.
        let top = bits >> 47;
        if top == 0 || top == 0x1_ffff {
            Sequence::from_ops([Op::Invlpg(bits)])
        } else {
            Sequence::from_ops([])
        }
    }

    /// The ops of [`Tlb::flush_leaf`](awk_paging::Tlb::flush_leaf): the same as
    /// [`flush_page_ops`](Self::flush_page_ops).
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// use awk_paging_x86_64::Invlpg;
    /// let va = VirtAddr::new(0x7000);
    /// assert_eq!(Invlpg.flush_leaf_ops(va), Invlpg.flush_page_ops(va));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn flush_leaf_ops(&self, va: VirtAddr) -> TlbSequence {
        self.flush_page_ops(va)
    }

    /// The ops of [`Tlb::flush_all`](awk_paging::Tlb::flush_all) when CR4.PGE is `pge`: a PGE
    /// toggle when global pages are enabled (a CR3 write would keep global entries), else a CR3
    /// reload.
    ///
    /// ```
    /// use awk_paging_x86_64::maint::Op;
    /// use awk_paging_x86_64::Invlpg;
    /// assert_eq!(Invlpg.flush_all_ops(true).ops(), &[Op::ToggleCr4Pge]);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn flush_all_ops(&self, pge: bool) -> TlbSequence {
        if pge {
            Sequence::from_ops([Op::ToggleCr4Pge])
        } else {
            Sequence::from_ops([Op::ReloadCr3])
        }
    }

    /// The ops of [`Tlb::publish`](awk_paging::Tlb::publish): none — the page walker reads
    /// ordinary stores, and not-present entries are never cached (SDM Vol. 3A §4.10.2.3).
    ///
    /// ```
    /// assert!(awk_paging_x86_64::Invlpg.publish_ops().is_empty());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn publish_ops(&self) -> TlbSequence {
        Sequence::from_ops([])
    }

    /// The ops of [`Tlb::order_table_writes`](awk_paging::Tlb::order_table_writes): a compiler
    /// fence, so the new table's initialising stores are emitted before the store that links
    /// it (the CPU keeps stores in order).
    ///
    /// ```
    /// use awk_paging_x86_64::maint::Op;
    /// use awk_paging_x86_64::Invlpg;
    /// assert_eq!(Invlpg.order_table_writes_ops().ops(), &[Op::CompilerFence]);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn order_table_writes_ops(&self) -> TlbSequence {
        Sequence::from_ops([Op::CompilerFence])
    }
}

#[cfg(any(doc, all(target_arch = "x86_64", target_os = "none")))]
impl awk_paging::Tlb for Invlpg {
    #[inline]
    fn flush_page(&self, va: VirtAddr) {
        // SAFETY: TLB invalidation only.
        unsafe { self.flush_page_ops(va).run() }
    }

    #[inline]
    fn flush_leaf(&self, va: VirtAddr) {
        // SAFETY: as above.
        unsafe { self.flush_leaf_ops(va).run() }
    }

    #[inline]
    fn flush_all(&self) {
        use x86_64::registers::control::{Cr4, Cr4Flags};
        let pge = Cr4::read().contains(Cr4Flags::PAGE_GLOBAL);
        // SAFETY: ring 0 (the crate's bare-metal precondition); CR3/CR4 are written back with
        // their own values (PGE flipped and restored).
        unsafe { self.flush_all_ops(pge).run() }
    }

    #[inline]
    fn publish(&self) {
        // SAFETY: no ops.
        unsafe { self.publish_ops().run() }
    }

    #[inline]
    fn order_table_writes(&self) {
        // SAFETY: a fence.
        unsafe { self.order_table_writes_ops().run() }
    }
}
