//! TLB maintenance: the [`Tlb`] hook every page table calls, and the `#[must_use]` tokens that
//! operations return.
//!
//! # Who flushes what
//!
//! - A new mapping (invalid → valid) needs no invalidation on either architecture: neither
//!   x86 (Intel SDM Vol. 3A §4.10.2.3) nor Arm (Arm ARM D8.13, "translation faults are not
//!   cached") keeps invalid entries in the TLB. It does need the table writes to be visible to the
//!   hardware walker before the page is used — on AArch64 `dsb ishst; isb`. Its token's
//!   [`Flush::flush`] does exactly that ([`Tlb::publish`]).
//! - Removing a mapping or changing its address or attributes needs an invalidation of that page
//!   ([`Tlb::flush_page`]); the token carries the address.
//! - A page table never skips an invalidation it needs *internally* (break-before-make, freeing
//!   tables): those happen inside the operation, through the same hook.
//!
//! The hook is also where SMP shootdown goes: a kernel's `Tlb` can send IPIs to the other CPUs
//! running the address space (x86: [`ShootdownTlb`] over a [`Shootdown`]), or rely on broadcast
//! `tlbi ...is` (AArch64).

mod gather;
mod shootdown;

pub use gather::{Gather, Invalidation, FULL_FLUSH_THRESHOLD, GATHER_TABLES};
pub use shootdown::{Ipi, Request, Shootdown, ShootdownTlb};

use crate::VirtAddr;

/// TLB maintenance for one address space: the CPU's instructions on bare metal, the TLB model in
/// the host emulator, or a kernel's shootdown logic.
///
/// The table behind the seed static API calls its hook while holding that API's lock, with
/// interrupts masked on the CPU: the hook must not call back into the same seed API (the call
/// fails at once with a `Reentered` error) or wait for an interrupt on this CPU; it may wait for
/// other CPUs to acknowledge a shootdown (CPUs waiting for the lock keep their interrupts as their
/// callers had them) — see
/// [`ActiveTable`](crate::ActiveTable#hooks).
///
/// ```
/// use awk_paging::{Tlb, VirtAddr};
/// use core::cell::Cell;
///
/// /// Counts flushes (a stand-in for a kernel's shootdown).
/// struct Counting(Cell<u32>);
/// impl Tlb for Counting {
///     fn flush_page(&self, _va: VirtAddr) { self.0.set(self.0.get() + 1) }
///     fn flush_all(&self) { self.0.set(self.0.get() + 100) }
/// }
/// let t = Counting(Cell::new(0));
/// t.flush_page(VirtAddr::new(0x1000));
/// t.publish(); // default: nothing to do
/// assert_eq!(t.0.get(), 1);
/// ```
pub trait Tlb {
    /// Invalidates every cached translation for the page containing `va` **at every level**,
    /// walk caches included (AArch64 `tlbi vae1is`/`vaae1is`; x86 `invlpg`, which also drops
    /// paging-structure caches), after making prior table writes visible. Required whenever a
    /// table entry on the walk to `va` was removed or changed. Complete when it returns.
    fn flush_page(&self, va: VirtAddr);

    /// Invalidates the cached *leaf* translation of the page containing `va` only (AArch64
    /// `tlbi vale1is`/`vaale1is`), for changes to a leaf entry when no table above it was
    /// removed or changed. Default: [`flush_page`](Self::flush_page), which is always enough.
    #[inline]
    fn flush_leaf(&self, va: VirtAddr) {
        self.flush_page(va);
    }

    /// Invalidates every cached translation of this address space, walk caches included.
    fn flush_all(&self);

    /// Invalidates a batch (at most [`FULL_FLUSH_THRESHOLD`] pages or blocks; a
    /// [`Gather`] flushes everything instead above that): each as
    /// [`flush_page`](Self::flush_page) or [`flush_leaf`](Self::flush_leaf) says. Default: one
    /// call each. AArch64 overrides it to share the barriers (`dsb ishst`, the TLBIs, one
    /// `dsb ish; isb`).
    #[inline]
    fn flush_pages(&self, pages: &[Invalidation]) {
        for p in pages {
            if p.walks {
                self.flush_page(p.va);
            } else {
                self.flush_leaf(p.va);
            }
        }
    }

    /// Invalidates every cached translation of the `pages` 4 KiB pages from `first` (walk
    /// caches too if `walks`), if this hook can do that with range operations (AArch64
    /// FEAT_TLBIRANGE: `tlbi rvae1is`/`rvale1is`), and returns whether it did. A [`Gather`]
    /// past [`FULL_FLUSH_THRESHOLD`] pages asks this first and falls back to
    /// [`flush_all`](Self::flush_all) on `false`. The range may cover more than what changed;
    /// it always covers all of it. Default: `false`.
    ///
    /// ```
    /// use awk_paging::{NoTlb, Tlb, VirtAddr};
    /// assert!(!NoTlb.flush_range(VirtAddr::new(0x4000_0000), 512, false));
    /// ```
    #[inline]
    fn flush_range(&self, _first: VirtAddr, _pages: u64, _walks: bool) -> bool {
        false
    }

    /// Makes prior table writes visible to the hardware walker before the new entries are used
    /// (AArch64: `dsb ishst; isb`). Default: nothing (x86 walks are coherent with ordinary
    /// stores).
    #[inline]
    fn publish(&self) {}

    /// Orders the writes that initialised a new table before the store that links it into a
    /// live table (Linux's `smp_wmb()` in its pte/pmd install): the hardware walker is another
    /// observer and must never see the link before the zeroed contents. Called by the walker
    /// between filling a new table and linking it, every time.
    ///
    /// Default: a release fence — `dmb ish` on AArch64 (a superset of the `dmb ishst` the Arm
    /// ARM needs), a compiler barrier on x86 (stores are not reordered with other stores there,
    /// but Rust could otherwise move the non-volatile zeroing past the link).
    #[inline]
    fn order_table_writes(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    }

    /// Invalidates the page containing `va` for address-space id `asid` only, walk caches
    /// included (AArch64 `tlbi vae1is` with the ASID in bits 63:48; x86 `invpcid`
    /// individual-address, or `invlpg` when `asid` is the current PCID). Global entries for
    /// the page may go too (the ASID forms also match them). Used by
    /// [`space`](crate::space) for pages of a process that may be inactive on this CPU.
    ///
    /// Default: [`flush_page`](Self::flush_page) — enough for hooks without ASIDs (they
    /// invalidate every address space), and for ASID-aware hooks only if they already flush
    /// every ASID there.
    ///
    /// ```
    /// use awk_paging::{NoTlb, Tlb, VirtAddr};
    /// NoTlb.flush_page_asid(VirtAddr::new(0x1000), 3);
    /// ```
    #[inline]
    fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
        let _ = asid;
        self.flush_page(va);
    }

    /// As [`flush_page_asid`](Self::flush_page_asid), the leaf translation only (AArch64
    /// `tlbi vale1is` with the ASID). Default: [`flush_page_asid`](Self::flush_page_asid).
    ///
    /// ```
    /// use awk_paging::{NoTlb, Tlb, VirtAddr};
    /// NoTlb.flush_leaf_asid(VirtAddr::new(0x1000), 3);
    /// ```
    #[inline]
    fn flush_leaf_asid(&self, va: VirtAddr, asid: u16) {
        self.flush_page_asid(va, asid);
    }

    /// Invalidates every **non-global** cached translation of address-space id `asid`, walk
    /// caches included, on every CPU (AArch64 `tlbi aside1is`; x86 `invpcid` single-context,
    /// or a CR3 load of that PCID without the no-flush bit). Global (kernel) entries stay: a
    /// per-process flush never costs the kernel its TLB entries.
    ///
    /// Default: [`flush_all`](Self::flush_all), which is always enough (it may drop more).
    ///
    /// ```
    /// use awk_paging::{NoTlb, Tlb};
    /// NoTlb.flush_asid(3);
    /// ```
    #[inline]
    fn flush_asid(&self, asid: u16) {
        let _ = asid;
        self.flush_all();
    }
}

impl<T: Tlb + ?Sized> Tlb for &T {
    #[inline]
    fn flush_page(&self, va: VirtAddr) {
        (**self).flush_page(va)
    }
    #[inline]
    fn flush_leaf(&self, va: VirtAddr) {
        (**self).flush_leaf(va)
    }
    #[inline]
    fn flush_all(&self) {
        (**self).flush_all()
    }
    #[inline]
    fn flush_pages(&self, pages: &[Invalidation]) {
        (**self).flush_pages(pages)
    }
    #[inline]
    fn flush_range(&self, first: VirtAddr, pages: u64, walks: bool) -> bool {
        (**self).flush_range(first, pages, walks)
    }
    #[inline]
    fn publish(&self) {
        (**self).publish()
    }
    #[inline]
    fn order_table_writes(&self) {
        (**self).order_table_writes()
    }
    #[inline]
    fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
        (**self).flush_page_asid(va, asid)
    }
    #[inline]
    fn flush_leaf_asid(&self, va: VirtAddr, asid: u16) {
        (**self).flush_leaf_asid(va, asid)
    }
    #[inline]
    fn flush_asid(&self, asid: u16) {
        (**self).flush_asid(asid)
    }
}

/// A [`Tlb`] that invalidates nothing: for tables that are not active anywhere yet (being built
/// before the first switch to them) and for benchmarks that measure table edits alone. It keeps
/// the default [`Tlb::order_table_writes`] fence, so tables built under it are still initialised
/// before they are linked.
///
/// ```
/// use awk_paging::{NoTlb, Tlb, VirtAddr};
/// NoTlb.flush_page(VirtAddr::new(0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoTlb;

impl Tlb for NoTlb {
    #[inline(always)]
    fn flush_page(&self, _va: VirtAddr) {}
    #[inline(always)]
    fn flush_all(&self) {}
}

/// What a token still owes the TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owed {
    /// Only make new entries visible (a fresh mapping).
    Publish,
    /// Invalidate the page at this address, walk caches included.
    Page(VirtAddr),
    /// Invalidate the leaf translation of the page at this address (no table changed).
    Leaf(VirtAddr),
}

/// The TLB work one single-page operation still owes. Call [`flush`](Self::flush), or
/// [`ignore`](Self::ignore) when a later, wider flush covers it.
///
/// ```
/// use awk_paging::{Flush, NoTlb, VirtAddr};
/// let t = Flush::page(NoTlb, VirtAddr::new(0x1000));
/// assert_eq!(t.va(), Some(VirtAddr::new(0x1000)));
/// t.flush();
/// ```
#[must_use = "the TLB may still hold the old translation: call .flush(), or .ignore() if a later flush covers it"]
#[derive(Debug)]
pub struct Flush<T: Tlb> {
    tlb: T,
    owed: Owed,
}

impl<T: Tlb> Flush<T> {
    /// A token owing an invalidation of the page at `va`.
    ///
    /// ```
    /// let t = awk_paging::Flush::page(awk_paging::NoTlb, awk_paging::VirtAddr::new(0));
    /// t.ignore();
    /// ```
    #[inline]
    pub const fn page(tlb: T, va: VirtAddr) -> Self {
        Flush {
            tlb,
            owed: Owed::Page(va),
        }
    }

    /// A token owing an invalidation of the leaf translation at `va` only: the operation
    /// changed a leaf entry and no table entry above it ([`Tlb::flush_leaf`]).
    ///
    /// ```
    /// let t = awk_paging::Flush::leaf(awk_paging::NoTlb, awk_paging::VirtAddr::new(0x2000));
    /// assert_eq!(t.va(), Some(awk_paging::VirtAddr::new(0x2000)));
    /// t.flush();
    /// ```
    #[inline]
    pub const fn leaf(tlb: T, va: VirtAddr) -> Self {
        Flush {
            tlb,
            owed: Owed::Leaf(va),
        }
    }

    /// Whether flushing this token invalidates walk caches too (a table entry changed), not
    /// just a leaf translation.
    ///
    /// ```
    /// use awk_paging::{Flush, NoTlb, VirtAddr};
    /// assert!(Flush::page(NoTlb, VirtAddr::new(0)).invalidates_walks());
    /// assert!(!Flush::leaf(NoTlb, VirtAddr::new(0)).invalidates_walks());
    /// # Flush::page(NoTlb, VirtAddr::new(0)).ignore();
    /// ```
    #[inline]
    #[must_use]
    pub fn invalidates_walks(&self) -> bool {
        matches!(self.owed, Owed::Page(_))
    }

    /// A token owing only the publication of new entries (nothing was cached for them).
    ///
    /// ```
    /// let t = awk_paging::Flush::publish(awk_paging::NoTlb);
    /// assert_eq!(t.va(), None);
    /// t.flush();
    /// ```
    #[inline]
    pub const fn publish(tlb: T) -> Self {
        Flush {
            tlb,
            owed: Owed::Publish,
        }
    }

    /// The page this token invalidates, if it invalidates one.
    ///
    /// ```
    /// let t = awk_paging::Flush::publish(awk_paging::NoTlb);
    /// assert!(t.va().is_none());
    /// t.ignore();
    /// ```
    #[inline]
    #[must_use]
    pub fn va(&self) -> Option<VirtAddr> {
        match self.owed {
            Owed::Page(va) | Owed::Leaf(va) => Some(va),
            Owed::Publish => None,
        }
    }

    /// Does the owed maintenance now.
    ///
    /// ```
    /// awk_paging::Flush::page(awk_paging::NoTlb, awk_paging::VirtAddr::new(0)).flush();
    /// ```
    #[inline]
    pub fn flush(self) {
        match self.owed {
            Owed::Publish => self.tlb.publish(),
            Owed::Page(va) => self.tlb.flush_page(va),
            Owed::Leaf(va) => self.tlb.flush_leaf(va),
        }
    }

    /// Drops the token without flushing: the caller takes over (e.g. one
    /// [`Tlb::flush_all`] after many operations).
    ///
    /// ```
    /// awk_paging::Flush::page(awk_paging::NoTlb, awk_paging::VirtAddr::new(0)).ignore();
    /// ```
    #[inline]
    pub fn ignore(self) {}
}
