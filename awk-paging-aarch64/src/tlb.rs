//! TLB maintenance for EL1&0 (Arm ARM D8.13 "Translation Lookaside Buffers", D8.16
//! "Break-before-make"), described as [`maint`](crate::maint) sequences.

use awk_paging::{Invalidation, VirtAddr, FULL_FLUSH_THRESHOLD};

use crate::maint::{
    tlbi_asid_operand, tlbi_range_operand, tlbi_va_operand, Barrier, Op, Sequence, TlbiOp,
};

/// The sequences [`TlbEl1`] produces: at most four ops.
pub type TlbSequence = Sequence<4>;

/// The sequence of a batch of up to [`FULL_FLUSH_THRESHOLD`] invalidations: one `dsb ishst`,
/// the TLBIs, one `dsb ish; isb`.
pub type TlbBatch = Sequence<{ FULL_FLUSH_THRESHOLD + 3 }>;

/// EL1&0 TLB maintenance, broadcast to the inner shareable domain (every PE running the OS).
///
/// Each [`Tlb`](awk_paging::Tlb) hook is one [`TlbSequence`] built by a pure method (so the host
/// checks it against the Arm ARM) and run by the [`maint`](crate::maint) interpreter:
///
/// | hook | with `asid: Some(a)` | with `asid: None` |
/// |---|---|---|
/// | `flush_page(va)` | `dsb ishst; tlbi vae1is, a<<48 \| VA[55:12]; dsb ish; isb` | `… tlbi vaae1is, VA[55:12] …` |
/// | `flush_leaf(va)` | `dsb ishst; tlbi vale1is, …; dsb ish; isb` | `… tlbi vaale1is, …` |
/// | `flush_all()` | `dsb ishst; tlbi aside1is, a<<48; dsb ish; isb` | `dsb ishst; tlbi vmalle1is; dsb ish; isb` |
/// | `publish()` | `dsb ishst; isb` | same |
/// | `order_table_writes()` | `dmb ishst` | same |
/// | `flush_page_asid(va, b)` / `flush_leaf_asid` / `flush_asid(b)` | as with `Some(b)` | as with `Some(b)` |
///
/// Why each part (Arm ARM D8.13.x, "Ordering and completion of TLB maintenance instructions"):
/// the leading `dsb ishst` makes the table writes visible to every walker before the
/// invalidation, so no PE can re-fetch the old entry after it; the `…is` form broadcasts; the
/// trailing `dsb ish` waits until every PE has completed the invalidation; the `isb` makes this
/// PE's later instruction fetches and accesses use the new translation. `flush_page` uses the
/// all-levels forms (`vae1is`/`vaae1is`) because a removed or changed table entry may sit in a
/// walk cache; `flush_leaf` the last-level forms, for leaf-only changes.
///
/// The operand carries VA\[55:12\] in bits 43:0 and, with an ASID, the ASID in bits 63:48
/// ([`tlbi_va_operand`]). The ASID forms also hit global entries for that VA. `flush_all` with
/// an ASID uses `tlbi aside1is`, which drops only that ASID's **non-global** entries: a table
/// holding global mappings should use `asid: None` (then `vmalle1is` drops everything at
/// EL1&0). ASIDs above 255 need TCR_EL1.AS = 1 (16-bit ASIDs; [`mmu::plan`](crate::mmu::plan)
/// sets it when the CPU has them, and refuses such an ASID otherwise); with 8-bit ASIDs the
/// hardware ignores the operand's upper ASID byte.
///
/// # Where it runs
///
/// `TlbEl1` and its `*_ops` methods exist on every target. `impl Tlb for TlbEl1` exists only
/// on bare-metal AArch64 (`target_arch = "aarch64"`, `target_os = "none"`), where each hook runs
/// its sequence; elsewhere there is no CPU to run it on, and a hook that silently did nothing
/// would hide missing flushes — use the host emulator's TLB there. (Rustdoc lists the impl on
/// every target.)
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_aarch64::TlbEl1;
/// let t = TlbEl1 { asid: None };
/// assert_eq!(
///     t.flush_page_ops(VirtAddr::new(0x4000_0000)).to_string(),
///     "dsb ishst; tlbi vaae1is, 0x40000; dsb ish; isb"
/// );
/// assert_eq!(t.flush_all_ops().to_string(), "dsb ishst; tlbi vmalle1is; dsb ish; isb");
/// ```
///
/// On the target:
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn f() {
/// use awk_paging::{Tlb, VirtAddr};
/// awk_paging_aarch64::TlbEl1 { asid: None }.flush_page(VirtAddr::new(0x4000_0000));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbEl1 {
    /// The address space's ASID, if it uses one.
    pub asid: Option<u16>,
}

/// `dsb ishst; tlbi <op>, x; dsb ish; isb`.
#[inline(always)]
const fn invalidate(op: TlbiOp, x: u64) -> TlbSequence {
    Sequence::from_ops([
        Op::Dsb(Barrier::IshSt),
        Op::Tlbi(op, x),
        Op::Dsb(Barrier::Ish),
        Op::Isb,
    ])
}

impl TlbEl1 {
    /// The sequence of [`Tlb::flush_page`](awk_paging::Tlb::flush_page): all levels (walk caches
    /// too) for the page containing `va`.
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// use awk_paging_aarch64::maint::{Op, TlbiOp};
    /// let s = awk_paging_aarch64::TlbEl1 { asid: Some(2) }.flush_page_ops(VirtAddr::new(0x5000));
    /// assert_eq!(s.ops()[1], Op::Tlbi(TlbiOp::Vae1is, 2 << 48 | 5));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn flush_page_ops(&self, va: VirtAddr) -> TlbSequence {
        match self.asid {
            Some(_) => invalidate(TlbiOp::Vae1is, tlbi_va_operand(va, self.asid)),
            None => invalidate(TlbiOp::Vaae1is, tlbi_va_operand(va, None)),
        }
    }

    /// The sequence of [`Tlb::flush_leaf`](awk_paging::Tlb::flush_leaf): the last-level entry of
    /// the page containing `va` only.
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// use awk_paging_aarch64::maint::{Op, TlbiOp};
    /// let s = awk_paging_aarch64::TlbEl1 { asid: None }.flush_leaf_ops(VirtAddr::new(0x5000));
    /// assert_eq!(s.ops()[1], Op::Tlbi(TlbiOp::Vaale1is, 5));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn flush_leaf_ops(&self, va: VirtAddr) -> TlbSequence {
        match self.asid {
            Some(_) => invalidate(TlbiOp::Vale1is, tlbi_va_operand(va, self.asid)),
            None => invalidate(TlbiOp::Vaale1is, tlbi_va_operand(va, None)),
        }
    }

    /// The sequence of [`Tlb::flush_all`](awk_paging::Tlb::flush_all): the ASID's non-global
    /// entries (`aside1is`), or everything at EL1&0 (`vmalle1is`) without an ASID.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::{Op, TlbiOp};
    /// let s = awk_paging_aarch64::TlbEl1 { asid: Some(9) }.flush_all_ops();
    /// assert_eq!(s.ops()[1], Op::Tlbi(TlbiOp::Aside1is, 9 << 48));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn flush_all_ops(&self) -> TlbSequence {
        match self.asid {
            Some(asid) => invalidate(TlbiOp::Aside1is, tlbi_asid_operand(asid)),
            None => invalidate(TlbiOp::Vmalle1is, 0),
        }
    }

    /// The sequence of [`Tlb::flush_pages`](awk_paging::Tlb::flush_pages): the batch shares its
    /// barriers — `dsb ishst`, one TLBI per page or block (all levels where `walks`, else the
    /// last level), `dsb ish; isb`. `None` for more than [`FULL_FLUSH_THRESHOLD`] entries (a
    /// [`Gather`](awk_paging::Gather) never hands over more).
    ///
    /// ```
    /// use awk_paging::{Invalidation, PageSize, VirtAddr};
    /// let p = |va, walks| Invalidation { va: VirtAddr::new(va), size: PageSize::Size4K, walks };
    /// let s = awk_paging_aarch64::TlbEl1 { asid: None }
    ///     .flush_pages_ops(&[p(0x5000, false), p(0x20_0000, true)])
    ///     .unwrap();
    /// assert_eq!(s.to_string(), "dsb ishst; tlbi vaale1is, 0x5; tlbi vaae1is, 0x200; dsb ish; isb");
    /// ```
    #[must_use]
    pub fn flush_pages_ops(&self, pages: &[Invalidation]) -> Option<TlbBatch> {
        if pages.len() > FULL_FLUSH_THRESHOLD {
            return None;
        }
        let mut s = TlbBatch::from_ops([Op::Dsb(Barrier::IshSt)]);
        for p in pages {
            let op = match (self.asid.is_some(), p.walks) {
                (true, true) => TlbiOp::Vae1is,
                (true, false) => TlbiOp::Vale1is,
                (false, true) => TlbiOp::Vaae1is,
                (false, false) => TlbiOp::Vaale1is,
            };
            s.push(Op::Tlbi(op, tlbi_va_operand(p.va, self.asid)));
        }
        s.push(Op::Dsb(Barrier::Ish));
        s.push(Op::Isb);
        Some(s)
    }

    /// The sequence of [`Tlb::flush_range`](awk_paging::Tlb::flush_range) on a CPU with
    /// FEAT_TLBIRANGE: `dsb ishst; tlbi rvae1is/rvaae1is (walks) or rvale1is/rvaale1is,
    /// <range>; dsb ish; isb`, one operation for at least `pages` pages from `first`
    /// ([`tlbi_range_operand`]). `None` where one operation cannot cover them (more than
    /// 2^21 pages): the caller flushes everything instead.
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// let s = awk_paging_aarch64::TlbEl1 { asid: Some(3) }
    ///     .flush_range_ops(VirtAddr::new(0x4000_0000), 64, true)
    ///     .unwrap();
    /// assert_eq!(
    ///     s.to_string(),
    ///     "dsb ishst; tlbi rvae1is, 0x34f8000040000; dsb ish; isb"
    /// );
    /// ```
    #[must_use]
    pub const fn flush_range_ops(
        &self,
        first: VirtAddr,
        pages: u64,
        walks: bool,
    ) -> Option<TlbSequence> {
        let Some(x) = tlbi_range_operand(first, pages, self.asid) else {
            return None;
        };
        let op = match (self.asid.is_some(), walks) {
            (true, true) => TlbiOp::Rvae1is,
            (true, false) => TlbiOp::Rvale1is,
            (false, true) => TlbiOp::Rvaae1is,
            (false, false) => TlbiOp::Rvaale1is,
        };
        Some(invalidate(op, x))
    }

    /// The sequence of [`Tlb::publish`](awk_paging::Tlb::publish): `dsb ishst; isb` — new
    /// entries visible to the walkers, this PE resynchronised. Nothing was cached for them, so
    /// nothing is invalidated.
    ///
    /// ```
    /// assert_eq!(awk_paging_aarch64::TlbEl1::default().publish_ops().to_string(), "dsb ishst; isb");
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn publish_ops(&self) -> TlbSequence {
        Sequence::from_ops([Op::Dsb(Barrier::IshSt), Op::Isb])
    }

    /// The sequence of [`Tlb::order_table_writes`](awk_paging::Tlb::order_table_writes):
    /// `dmb ishst`, so a walker on any PE that sees the link to a new table also sees the
    /// table's initialised contents (what Linux's `smp_wmb()` does in `pmd_populate`).
    ///
    /// ```
    /// assert_eq!(awk_paging_aarch64::TlbEl1::default().order_table_writes_ops().to_string(), "dmb ishst");
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn order_table_writes_ops(&self) -> TlbSequence {
        Sequence::from_ops([Op::Dmb(Barrier::IshSt)])
    }
}

/// Whether an ID_AA64ISAR0_EL1 value reports the TLB range instructions (its TLB field, bits
/// 59:56, at 0b0010: FEAT_TLBIRANGE with FEAT_TLBIOS; 0b0001 is FEAT_TLBIOS alone).
///
/// ```
/// use awk_paging_aarch64::tlbi_range_in_isar0;
/// assert!(tlbi_range_in_isar0(0b0010 << 56));
/// assert!(!tlbi_range_in_isar0(0b0001 << 56));
/// assert!(!tlbi_range_in_isar0(0));
/// ```
#[must_use]
pub const fn tlbi_range_in_isar0(isar0: u64) -> bool {
    (isar0 >> 56) & 0xf >= 0b0010
}

/// Whether this CPU has the TLB range instructions (reads ID_AA64ISAR0_EL1 once).
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
fn has_tlbi_range() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
    // 0: not read yet; 1: no; 2: yes.
    static RANGE: AtomicU8 = AtomicU8::new(0);
    match RANGE.load(Relaxed) {
        0 => {
            let isar0: u64;
            // SAFETY: reading an ID register has no side effects.
            unsafe {
                core::arch::asm!("mrs {x}, id_aa64isar0_el1", x = out(reg) isar0,
                    options(nomem, nostack, preserves_flags));
            }
            let yes = tlbi_range_in_isar0(isar0);
            RANGE.store(if yes { 2 } else { 1 }, Relaxed);
            yes
        }
        v => v == 2,
    }
}

/// Runs `seq` (barriers and TLB invalidations only). Each hook below calls it once per ASID
/// case, so the sequence's ops are compile-time constants there (only operands vary) and the
/// interpreter folds to the straight-line instructions.
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
#[inline(always)]
fn run(seq: TlbSequence) {
    // SAFETY: the `TlbEl1` sequences hold barriers and TLB invalidations only, which have no
    // memory-safety requirements.
    unsafe { seq.run() }
}

#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
impl awk_paging::Tlb for TlbEl1 {
    #[inline]
    fn flush_page(&self, va: VirtAddr) {
        match self.asid {
            Some(a) => run(TlbEl1 { asid: Some(a) }.flush_page_ops(va)),
            None => run(TlbEl1 { asid: None }.flush_page_ops(va)),
        }
    }

    #[inline]
    fn flush_leaf(&self, va: VirtAddr) {
        match self.asid {
            Some(a) => run(TlbEl1 { asid: Some(a) }.flush_leaf_ops(va)),
            None => run(TlbEl1 { asid: None }.flush_leaf_ops(va)),
        }
    }

    #[inline]
    fn flush_all(&self) {
        match self.asid {
            Some(a) => run(TlbEl1 { asid: Some(a) }.flush_all_ops()),
            None => run(TlbEl1 { asid: None }.flush_all_ops()),
        }
    }

    #[inline]
    fn flush_pages(&self, pages: &[awk_paging::Invalidation]) {
        match self.flush_pages_ops(pages) {
            // SAFETY: barriers and TLB invalidations only.
            Some(batch) => unsafe { batch.run() },
            None => awk_paging::Tlb::flush_all(self),
        }
    }

    #[inline]
    fn flush_range(&self, first: VirtAddr, pages: u64, walks: bool) -> bool {
        if !has_tlbi_range() {
            return false;
        }
        match self.flush_range_ops(first, pages, walks) {
            Some(seq) => {
                run(seq);
                true
            }
            None => false,
        }
    }

    #[inline]
    fn publish(&self) {
        run(self.publish_ops())
    }

    #[inline]
    fn flush_page_asid(&self, va: VirtAddr, asid: u16) {
        run(TlbEl1 { asid: Some(asid) }.flush_page_ops(va))
    }

    #[inline]
    fn flush_leaf_asid(&self, va: VirtAddr, asid: u16) {
        run(TlbEl1 { asid: Some(asid) }.flush_leaf_ops(va))
    }

    #[inline]
    fn flush_asid(&self, asid: u16) {
        run(TlbEl1 { asid: Some(asid) }.flush_all_ops())
    }

    #[inline]
    fn order_table_writes(&self) {
        run(self.order_table_writes_ops())
    }
}
