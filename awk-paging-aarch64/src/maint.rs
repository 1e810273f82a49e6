//! System maintenance as data: barriers, TLB invalidations, cache maintenance and system-register
//! writes are [`Op`] values, grouped in fixed-capacity [`Sequence`]s (no allocator) that pure
//! functions build — [`TlbEl1`](crate::TlbEl1)'s `*_ops` methods,
//! [`mmu::plan`](crate::mmu::plan), [`cache::clean_invalidate_ops`](crate::cache::clean_invalidate_ops).
//!
//! On the host the sequences are plain values: tests check them against the Arm ARM's rules
//! (barrier before and after every `tlbi`, broadcast forms, operand layout, the `isb` before
//! `SCTLR_EL1` is written, ...) — checks that running under QEMU cannot make, because QEMU's TCG
//! does not model weak memory ordering. On bare-metal AArch64 (`target_arch = "aarch64"`,
//! `target_os = "none"`) [`execute`] and [`Sequence::run`] interpret them, one short
//! `asm!` block per op; everywhere else the interpreter does not exist.
//!
//! ```
//! use awk_paging::VirtAddr;
//! use awk_paging_aarch64::maint::{Barrier, Op, TlbiOp};
//! use awk_paging_aarch64::TlbEl1;
//!
//! let seq = TlbEl1 { asid: Some(5) }.flush_page_ops(VirtAddr::new(0x4000_1000));
//! assert_eq!(
//!     seq.ops(),
//!     &[
//!         Op::Dsb(Barrier::IshSt),
//!         Op::Tlbi(TlbiOp::Vae1is, 5 << 48 | 0x4_0001),
//!         Op::Dsb(Barrier::Ish),
//!         Op::Isb,
//!     ]
//! );
//! assert_eq!(seq.ops()[1].to_string(), "tlbi vae1is, 0x5000000040001");
//! ```

use core::fmt;

use awk_paging::VirtAddr;

/// The shareability domain a barrier (or a TLB invalidation) reaches, narrowest first.
///
/// ```
/// use awk_paging_aarch64::maint::Domain;
/// assert!(Domain::NonShareable < Domain::InnerShareable);
/// assert!(Domain::InnerShareable < Domain::FullSystem);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// This PE only (`nsh`).
    NonShareable,
    /// The inner shareable domain: every PE running the same OS (`ish`).
    InnerShareable,
    /// The full system, including observers outside the shareability domains such as
    /// non-coherent devices (`sy`).
    FullSystem,
}

/// The option of a `dsb`/`dmb`: a shareability domain and whether only stores are ordered
/// (Arm ARM C6.2 "DSB", "DMB").
///
/// ```
/// use awk_paging_aarch64::maint::{Barrier, Domain};
/// assert_eq!(Barrier::IshSt.domain(), Domain::InnerShareable);
/// assert!(Barrier::IshSt.stores_only());
/// assert!(Barrier::Sy.covers(Barrier::IshSt));
/// assert!(!Barrier::NshSt.covers(Barrier::IshSt));
/// assert!(!Barrier::IshSt.covers(Barrier::Ish));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Barrier {
    /// `sy`: full system, all accesses.
    Sy,
    /// `st`: full system, stores only.
    St,
    /// `ish`: inner shareable, all accesses.
    Ish,
    /// `ishst`: inner shareable, stores only.
    IshSt,
    /// `nsh`: this PE, all accesses.
    Nsh,
    /// `nshst`: this PE, stores only.
    NshSt,
}

impl Barrier {
    /// The domain the barrier reaches.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::{Barrier, Domain};
    /// assert_eq!(Barrier::St.domain(), Domain::FullSystem);
    /// ```
    #[must_use]
    pub const fn domain(self) -> Domain {
        match self {
            Barrier::Sy | Barrier::St => Domain::FullSystem,
            Barrier::Ish | Barrier::IshSt => Domain::InnerShareable,
            Barrier::Nsh | Barrier::NshSt => Domain::NonShareable,
        }
    }

    /// Whether only stores are ordered/waited for (the `…st` options).
    ///
    /// ```
    /// assert!(!awk_paging_aarch64::maint::Barrier::Ish.stores_only());
    /// ```
    #[must_use]
    pub const fn stores_only(self) -> bool {
        matches!(self, Barrier::St | Barrier::IshSt | Barrier::NshSt)
    }

    /// Whether this barrier does at least what `other` does: a domain at least as wide, and
    /// all accesses unless `other` is stores-only too.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::Barrier;
    /// assert!(Barrier::Ish.covers(Barrier::IshSt));
    /// assert!(!Barrier::Nsh.covers(Barrier::IshSt));
    /// ```
    #[must_use]
    pub const fn covers(self, other: Barrier) -> bool {
        self.domain() as u8 >= other.domain() as u8 && (!self.stores_only() || other.stores_only())
    }
}

/// One table, two uses: the mnemonics `Display` prints (and the host tests check), and the
/// `asm!` templates the interpreter executes — so the executed instruction is the checked text.
macro_rules! barrier_table {
    ($($variant:ident => $option:literal),* $(,)?) => {
        impl Barrier {
            /// The assembler option.
            ///
            /// ```
            /// assert_eq!(awk_paging_aarch64::maint::Barrier::IshSt.mnemonic(), "ishst");
            /// ```
            #[must_use]
            pub const fn mnemonic(self) -> &'static str {
                match self {
                    $(Barrier::$variant => $option,)*
                }
            }
        }

        /// `dsb <option>`.
        #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
        #[inline(always)]
        unsafe fn dsb(b: Barrier) {
            // SAFETY: a barrier.
            unsafe {
                match b {
                    $(Barrier::$variant => core::arch::asm!(
                        concat!("dsb ", $option),
                        options(nostack, preserves_flags)
                    ),)*
                }
            }
        }

        /// `dmb <option>`.
        #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
        #[inline(always)]
        unsafe fn dmb(b: Barrier) {
            // SAFETY: a barrier.
            unsafe {
                match b {
                    $(Barrier::$variant => core::arch::asm!(
                        concat!("dmb ", $option),
                        options(nostack, preserves_flags)
                    ),)*
                }
            }
        }
    };
}

barrier_table! {
    Sy => "sy",
    St => "st",
    Ish => "ish",
    IshSt => "ishst",
    Nsh => "nsh",
    NshSt => "nshst",
}

/// What a TLB invalidation selects (Arm ARM D8.13 "TLB maintenance instructions").
///
/// ```
/// use awk_paging_aarch64::maint::{Scope, TlbiOp};
/// assert_eq!(TlbiOp::Vale1is.scope(), Scope::Page { asid: true, last_level_only: true });
/// assert_eq!(TlbiOp::Vmalle1.scope(), Scope::All);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One VA (operand bits 43:0 = VA\[55:12\]).
    Page {
        /// Matches the ASID in operand bits 63:48 (and global entries); otherwise every ASID.
        asid: bool,
        /// Last level (leaf) entries only; otherwise walk caches too.
        last_level_only: bool,
    },
    /// A range of VAs (FEAT_TLBIRANGE; operand: [`tlbi_range_operand`]).
    Range {
        /// Matches the ASID in operand bits 63:48 (and global entries); otherwise every ASID.
        asid: bool,
        /// Last level (leaf) entries only; otherwise walk caches too.
        last_level_only: bool,
    },
    /// Every non-global entry of the ASID in operand bits 63:48.
    Asid,
    /// Every EL1&0 entry of the current VMID.
    All,
}

/// An EL1&0 stage-1 TLB invalidation (`TLBI <op>`). The `…is` forms are broadcast to the inner
/// shareable domain; the others act on this PE only.
///
/// ```
/// use awk_paging_aarch64::maint::TlbiOp;
/// assert!(TlbiOp::Vae1is.broadcast());
/// assert!(!TlbiOp::Vae1.broadcast());
/// assert!(TlbiOp::Vae1is.takes_operand());
/// assert!(!TlbiOp::Vmalle1is.takes_operand());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiOp {
    /// By VA and ASID, all levels, broadcast.
    Vae1is,
    /// By VA, all ASIDs, all levels, broadcast.
    Vaae1is,
    /// By VA and ASID, last level only, broadcast.
    Vale1is,
    /// By VA, all ASIDs, last level only, broadcast.
    Vaale1is,
    /// By ASID, broadcast.
    Aside1is,
    /// Everything at EL1&0, broadcast.
    Vmalle1is,
    /// By VA and ASID, all levels, this PE.
    Vae1,
    /// By VA, all ASIDs, all levels, this PE.
    Vaae1,
    /// By VA and ASID, last level only, this PE.
    Vale1,
    /// By VA, all ASIDs, last level only, this PE.
    Vaale1,
    /// By ASID, this PE.
    Aside1,
    /// Everything at EL1&0, this PE.
    Vmalle1,
    /// By VA range and ASID, all levels, broadcast (FEAT_TLBIRANGE).
    Rvae1is,
    /// By VA range, all ASIDs, all levels, broadcast (FEAT_TLBIRANGE).
    Rvaae1is,
    /// By VA range and ASID, last level only, broadcast (FEAT_TLBIRANGE).
    Rvale1is,
    /// By VA range, all ASIDs, last level only, broadcast (FEAT_TLBIRANGE).
    Rvaale1is,
}

impl TlbiOp {
    /// Whether the invalidation is broadcast to every PE of the inner shareable domain.
    ///
    /// ```
    /// assert!(awk_paging_aarch64::maint::TlbiOp::Aside1is.broadcast());
    /// ```
    #[must_use]
    pub const fn broadcast(self) -> bool {
        matches!(
            self,
            TlbiOp::Vae1is
                | TlbiOp::Vaae1is
                | TlbiOp::Vale1is
                | TlbiOp::Vaale1is
                | TlbiOp::Aside1is
                | TlbiOp::Vmalle1is
                | TlbiOp::Rvae1is
                | TlbiOp::Rvaae1is
                | TlbiOp::Rvale1is
                | TlbiOp::Rvaale1is
        )
    }

    /// What the invalidation selects.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::{Scope, TlbiOp};
    /// assert_eq!(TlbiOp::Vaae1is.scope(), Scope::Page { asid: false, last_level_only: false });
    /// ```
    #[must_use]
    pub const fn scope(self) -> Scope {
        match self {
            TlbiOp::Vae1is | TlbiOp::Vae1 => Scope::Page {
                asid: true,
                last_level_only: false,
            },
            TlbiOp::Vaae1is | TlbiOp::Vaae1 => Scope::Page {
                asid: false,
                last_level_only: false,
            },
            TlbiOp::Vale1is | TlbiOp::Vale1 => Scope::Page {
                asid: true,
                last_level_only: true,
            },
            TlbiOp::Vaale1is | TlbiOp::Vaale1 => Scope::Page {
                asid: false,
                last_level_only: true,
            },
            TlbiOp::Rvae1is => Scope::Range {
                asid: true,
                last_level_only: false,
            },
            TlbiOp::Rvaae1is => Scope::Range {
                asid: false,
                last_level_only: false,
            },
            TlbiOp::Rvale1is => Scope::Range {
                asid: true,
                last_level_only: true,
            },
            TlbiOp::Rvaale1is => Scope::Range {
                asid: false,
                last_level_only: true,
            },
            TlbiOp::Aside1is | TlbiOp::Aside1 => Scope::Asid,
            TlbiOp::Vmalle1is | TlbiOp::Vmalle1 => Scope::All,
        }
    }
}

/// The TLBI forms, with and without an operand: mnemonics for `Display` and the host tests, and
/// the interpreter's `asm!` templates, from one table.
macro_rules! tlbi_table {
    (
        operand: $($op_variant:ident => $op_name:literal),* ;
        none: $($variant:ident => $name:literal),* ;
        range: $($r_variant:ident => $r_name:literal, $op2:literal),* $(,)?
    ) => {
        impl TlbiOp {
            /// Whether the instruction takes an `Xt` operand (all but `vmalle1[is]`).
            ///
            /// ```
            /// assert!(awk_paging_aarch64::maint::TlbiOp::Aside1.takes_operand());
            /// ```
            #[must_use]
            pub const fn takes_operand(self) -> bool {
                match self {
                    $(TlbiOp::$op_variant => true,)*
                    $(TlbiOp::$variant => false,)*
                    $(TlbiOp::$r_variant => true,)*
                }
            }

            /// The assembler name.
            ///
            /// ```
            /// assert_eq!(awk_paging_aarch64::maint::TlbiOp::Vaale1is.mnemonic(), "vaale1is");
            /// ```
            #[must_use]
            pub const fn mnemonic(self) -> &'static str {
                match self {
                    $(TlbiOp::$op_variant => $op_name,)*
                    $(TlbiOp::$variant => $name,)*
                    $(TlbiOp::$r_variant => $r_name,)*
                }
            }
        }

        /// `tlbi <op>[, x]`.
        #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
        #[inline(always)]
        unsafe fn tlbi(t: TlbiOp, x: u64) {
            // SAFETY: a TLB invalidation.
            unsafe {
                match t {
                    $(TlbiOp::$op_variant => core::arch::asm!(
                        concat!("tlbi ", $op_name, ", {x}"),
                        x = in(reg) x,
                        options(nostack, preserves_flags)
                    ),)*
                    $(TlbiOp::$variant => {
                        let _ = x;
                        core::arch::asm!(concat!("tlbi ", $name), options(nostack, preserves_flags))
                    })*
                    // The range forms as their system-instruction encodings (op1 = 0,
                    // CRn = c8, CRm = c2), which assemble without the FEAT_TLBIRANGE target
                    // feature; only run where the CPU has it (`mmu::has_tlbi_range`).
                    $(TlbiOp::$r_variant => core::arch::asm!(
                        concat!("sys #0, c8, c2, #", $op2, ", {x}"),
                        x = in(reg) x,
                        options(nostack, preserves_flags)
                    ),)*
                }
            }
        }
    };
}

tlbi_table! {
    operand:
        Vae1is => "vae1is",
        Vaae1is => "vaae1is",
        Vale1is => "vale1is",
        Vaale1is => "vaale1is",
        Aside1is => "aside1is",
        Vae1 => "vae1",
        Vaae1 => "vaae1",
        Vale1 => "vale1",
        Vaale1 => "vaale1",
        Aside1 => "aside1";
    none:
        Vmalle1is => "vmalle1is",
        Vmalle1 => "vmalle1";
    range:
        Rvae1is => "rvae1is", "1",
        Rvaae1is => "rvaae1is", "3",
        Rvale1is => "rvale1is", "5",
        Rvaale1is => "rvaale1is", "7",
}

/// A system register a [`Sequence`] may write.
///
/// ```
/// assert_eq!(awk_paging_aarch64::maint::SysReg::Ttbr1El1.name(), "ttbr1_el1");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SysReg {
    /// Memory attribute indirection.
    MairEl1,
    /// Translation control.
    TcrEl1,
    /// Lower-half (TTBR0) table base and ASID.
    Ttbr0El1,
    /// Upper-half (TTBR1) table base.
    Ttbr1El1,
    /// System control (MMU and cache enables).
    SctlrEl1,
}

/// System registers: names for `Display` and the host tests, and the interpreter's `msr`
/// templates, from one table.
macro_rules! sysreg_table {
    ($($variant:ident => $name:literal),* $(,)?) => {
        impl SysReg {
            /// The assembler name.
            ///
            /// ```
            /// assert_eq!(awk_paging_aarch64::maint::SysReg::SctlrEl1.name(), "sctlr_el1");
            /// ```
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(SysReg::$variant => $name,)*
                }
            }
        }

        /// `msr <reg>, x`.
        #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
        #[inline(always)]
        unsafe fn msr(r: SysReg, x: u64) {
            // SAFETY: the caller's guarantee for the value.
            unsafe {
                match r {
                    $(SysReg::$variant => core::arch::asm!(
                        concat!("msr ", $name, ", {x}"),
                        x = in(reg) x,
                        options(nostack, preserves_flags)
                    ),)*
                }
            }
        }
    };
}

sysreg_table! {
    MairEl1 => "mair_el1",
    TcrEl1 => "tcr_el1",
    Ttbr0El1 => "ttbr0_el1",
    Ttbr1El1 => "ttbr1_el1",
    SctlrEl1 => "sctlr_el1",
}

/// One maintenance step: an instruction with its operand.
///
/// ```
/// use awk_paging_aarch64::maint::{Barrier, Op, SysReg, TlbiOp};
/// assert_eq!(Op::Dsb(Barrier::IshSt).to_string(), "dsb ishst");
/// assert_eq!(Op::Tlbi(TlbiOp::Vmalle1is, 0).to_string(), "tlbi vmalle1is");
/// assert_eq!(Op::Msr(SysReg::MairEl1, 0xff).to_string(), "msr mair_el1, 0xff");
/// assert_eq!(Op::DcCivac(0x4000_0040).to_string(), "dc civac, 0x40000040");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Data synchronization barrier: waits for prior accesses and maintenance to complete.
    Dsb(Barrier),
    /// Data memory barrier: orders prior accesses before later ones.
    Dmb(Barrier),
    /// Instruction synchronization barrier (context synchronization).
    Isb,
    /// TLB invalidation with its `Xt` operand (0 and unused for the forms without one).
    Tlbi(TlbiOp, u64),
    /// System register write.
    Msr(SysReg, u64),
    /// Data cache clean and invalidate by VA to the point of coherency.
    DcCivac(u64),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Dsb(b) => write!(f, "dsb {}", b.mnemonic()),
            Op::Dmb(b) => write!(f, "dmb {}", b.mnemonic()),
            Op::Isb => f.write_str("isb"),
            Op::Tlbi(t, x) if t.takes_operand() => write!(f, "tlbi {}, {x:#x}", t.mnemonic()),
            Op::Tlbi(t, _) => write!(f, "tlbi {}", t.mnemonic()),
            Op::Msr(r, v) => write!(f, "msr {}, {v:#x}", r.name()),
            Op::DcCivac(a) => write!(f, "dc civac, {a:#x}"),
        }
    }
}

/// At most `N` ops, in order, in a fixed-size array (no allocator).
///
/// ```
/// use awk_paging_aarch64::maint::{Barrier, Op, Sequence};
/// let s: Sequence<4> = Sequence::from_ops([Op::Dsb(Barrier::IshSt), Op::Isb]);
/// assert_eq!(s.len(), 2);
/// assert_eq!(s.ops(), &[Op::Dsb(Barrier::IshSt), Op::Isb]);
/// assert_eq!(s.to_string(), "dsb ishst; isb");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sequence<const N: usize> {
    ops: [Op; N],
    len: usize,
}

impl<const N: usize> Sequence<N> {
    /// The sequence of `ops`; `K <= N` is checked at compile time.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::{Op, Sequence};
    /// assert!(Sequence::<2>::from_ops([]).is_empty());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn from_ops<const K: usize>(ops: [Op; K]) -> Self {
        const { assert!(K <= N, "more ops than the sequence holds") };
        let mut all = [Op::Isb; N];
        let mut i = 0;
        while i < K {
            all[i] = ops[i];
            i += 1;
        }
        Sequence { ops: all, len: K }
    }

    /// Appends `op`; `false` (nothing appended) if the sequence is full.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::{Op, Sequence};
    /// let mut s = Sequence::<1>::from_ops([]);
    /// assert!(s.push(Op::Isb));
    /// assert!(!s.push(Op::Isb));
    /// ```
    #[inline(always)]
    pub fn push(&mut self, op: Op) -> bool {
        match self.ops.get_mut(self.len) {
            Some(slot) => {
                *slot = op;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The ops, in execution order.
    ///
    /// ```
    /// use awk_paging_aarch64::maint::{Op, Sequence};
    /// assert_eq!(Sequence::<3>::from_ops([Op::Isb]).ops(), &[Op::Isb]);
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn ops(&self) -> &[Op] {
        self.ops.get(..self.len).unwrap_or(&[])
    }

    /// The number of ops.
    ///
    /// ```
    /// assert_eq!(awk_paging_aarch64::maint::Sequence::<3>::from_ops([]).len(), 0);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to do.
    ///
    /// ```
    /// assert!(awk_paging_aarch64::maint::Sequence::<1>::from_ops([]).is_empty());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Executes the ops in order with [`execute`]. Bare-metal AArch64 only.
    ///
    /// # Safety
    ///
    /// As for [`execute`], for every op of the sequence.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    /// # fn f() {
    /// use awk_paging_aarch64::TlbEl1;
    /// // SAFETY: barriers only.
    /// unsafe { TlbEl1 { asid: None }.publish_ops().run() };
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
    #[inline(always)]
    pub unsafe fn run(&self) {
        let ops = self.ops();
        // The first four ops straight-line, not in a loop: for a sequence whose ops are known at
        // compile time (every TLB hook's) each `execute` then folds to its one instruction.
        let (head, tail) = ops.split_at(ops.len().min(4));
        // SAFETY (all four blocks and the loop): the caller's guarantee for every op.
        if let Some(&op) = head.first() {
            unsafe { execute(op) };
        }
        if let Some(&op) = head.get(1) {
            unsafe { execute(op) };
        }
        if let Some(&op) = head.get(2) {
            unsafe { execute(op) };
        }
        if let Some(&op) = head.get(3) {
            unsafe { execute(op) };
        }
        for &op in tail {
            unsafe { execute(op) };
        }
    }
}

impl<const N: usize> fmt::Debug for Sequence<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ops()).finish()
    }
}

/// The ops as assembly, separated by `"; "`.
impl<const N: usize> fmt::Display for Sequence<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.ops().iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

impl<'a, const N: usize> IntoIterator for &'a Sequence<N> {
    type Item = &'a Op;
    type IntoIter = core::slice::Iter<'a, Op>;
    fn into_iter(self) -> Self::IntoIter {
        self.ops().iter()
    }
}

/// The `Xt` operand of a TLB invalidation by VA (Arm ARM D8.13, "TLBI VAE1IS" and friends):
/// VA\[55:12\] in bits 43:0, the ASID in bits 63:48 when the form matches one (`asid`), bits
/// 47:44 (TTL, FEAT_TTL) zero: no level hint.
///
/// Bit 55 of the VA is kept (it selects TTBR1), the top byte is not part of the match.
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_aarch64::maint::tlbi_va_operand;
/// assert_eq!(tlbi_va_operand(VirtAddr::new(0x4000_1234), Some(0x1234)), 0x1234 << 48 | 0x4_0001);
/// assert_eq!(tlbi_va_operand(VirtAddr::new(0xffff_8000_0000_0000), None), 0xff8_0000_0000);
/// ```
#[inline(always)]
#[must_use]
pub const fn tlbi_va_operand(va: VirtAddr, asid: Option<u16>) -> u64 {
    let page = (va.as_u64() >> 12) & ((1 << 44) - 1);
    match asid {
        Some(asid) => (asid as u64) << 48 | page,
        None => page,
    }
}

/// The `Xt` operand of the range forms (`tlbi rvae1is` …, FEAT_TLBIRANGE, 4 KiB granule) for
/// at least the `pages` 4 KiB pages from `first`: ASID in bits 63:48, TG = 0b01 (4 KiB) in
/// 47:46, SCALE in 45:44, NUM in 43:39, TTL = 0 (any level) in 38:37, BaseADDR = VA\[48:12\]
/// in 36:0. The range is (NUM + 1) × 2^(5 × SCALE + 1) pages from BaseADDR: the smallest
/// SCALE whose 32 steps reach `pages`, rounded up. `None` for no pages or more than one
/// operation covers (2^21 pages, 8 GiB).
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_aarch64::maint::tlbi_range_operand;
/// // 512 pages: SCALE 1 (64-page steps), NUM 7.
/// assert_eq!(
///     tlbi_range_operand(VirtAddr::new(0x4000_0000), 512, None),
///     Some(1 << 46 | 1 << 44 | 7 << 39 | 0x4_0000)
/// );
/// assert_eq!(tlbi_range_operand(VirtAddr::new(0), 0, None), None);
/// ```
#[must_use]
pub const fn tlbi_range_operand(first: VirtAddr, pages: u64, asid: Option<u16>) -> Option<u64> {
    if pages == 0 {
        return None;
    }
    let mut scale = 0;
    while scale < 4 {
        let step = 1u64 << (5 * scale + 1);
        let num = pages.div_ceil(step);
        if num <= 32 {
            let base = (first.as_u64() >> 12) & ((1 << 37) - 1);
            let asid = match asid {
                Some(a) => (a as u64) << 48,
                None => 0,
            };
            return Some(asid | 1 << 46 | (scale as u64) << 44 | (num - 1) << 39 | base);
        }
        scale += 1;
    }
    None
}

/// The `Xt` operand of `tlbi aside1[is]`: the ASID in bits 63:48.
///
/// ```
/// assert_eq!(awk_paging_aarch64::maint::tlbi_asid_operand(7), 7 << 48);
/// ```
#[inline(always)]
#[must_use]
pub const fn tlbi_asid_operand(asid: u16) -> u64 {
    (asid as u64) << 48
}

/// Executes one op on this PE.
///
/// Only on bare-metal AArch64 (`target_arch = "aarch64"`, `target_os = "none"`), at EL1 or
/// higher. Every op is a compiler memory barrier as well (the `asm!` blocks may touch memory), so
/// the compiler keeps ordinary loads and stores on their side of it.
///
/// # Safety
///
/// - [`Op::Msr`]: the new register value must be valid for the code that runs on (translation
///   tables that map it, a MAIR matching the tables' attribute indices, ...).
/// - [`Op::DcCivac`]: the address must be mapped (or the MMU off), or the instruction faults.
/// - Barriers and TLB invalidations have no memory-safety requirements of their own.
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn f() {
/// use awk_paging_aarch64::maint::{execute, Barrier, Op};
/// // SAFETY: a barrier.
/// unsafe { execute(Op::Dsb(Barrier::Ish)) };
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
#[inline(always)]
pub unsafe fn execute(op: Op) {
    // SAFETY: the caller's guarantee; each helper emits the one instruction the op names, from
    // the same table as the op's `Display` text.
    unsafe {
        match op {
            Op::Dsb(b) => dsb(b),
            Op::Dmb(b) => dmb(b),
            Op::Isb => core::arch::asm!("isb", options(nostack, preserves_flags)),
            Op::Tlbi(t, x) => tlbi(t, x),
            Op::Msr(r, v) => msr(r, v),
            Op::DcCivac(a) => {
                core::arch::asm!("dc civac, {x}", x = in(reg) a, options(nostack, preserves_flags))
            }
        }
    }
}
