//! TLB and cache maintenance on x86_64 as data: [`Op`]s grouped in fixed-capacity
//! [`Sequence`]s (no allocator), built by pure functions ([`Invlpg`](crate::Invlpg)'s `*_ops`
//! methods, [`cache::clflush_ops`](crate::cache::clflush_ops)) and checked on the host; on bare
//! metal (`target_arch = "x86_64"`, `target_os = "none"`) [`execute`] and [`Sequence::run`]
//! interpret them, one short `asm!` block per op.
//!
//! ```
//! use awk_paging::VirtAddr;
//! use awk_paging_x86_64::maint::Op;
//! use awk_paging_x86_64::Invlpg;
//! assert_eq!(Invlpg.flush_page_ops(VirtAddr::new(0x5000)).ops(), &[Op::Invlpg(0x5000)]);
//! ```

use core::fmt;

/// One TLB or cache maintenance step.
///
/// ```
/// use awk_paging_x86_64::maint::Op;
/// assert_eq!(Op::Invlpg(0x1000).to_string(), "invlpg [0x1000]");
/// assert_eq!(Op::ToggleCr4Pge.to_string(), "mov cr4, cr4 ^ PGE; mov cr4, cr4");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `invlpg [va]`: drops the TLB entries for the page containing `va` **in the current
    /// PCID** (global entries too), and the paging-structure-cache entries used to translate it
    /// (Intel SDM Vol. 3A §4.10.4.1).
    Invlpg(u64),
    /// Writes CR4 with PGE flipped, then the original value: any change of CR4.PGE invalidates
    /// every TLB entry, global ones included, for all PCIDs, and the paging-structure caches
    /// (SDM Vol. 3A §4.10.4.1, "Operations that invalidate TLBs and paging-structure caches").
    ToggleCr4Pge,
    /// Writes CR3 with its current value: invalidates the non-global entries of the current
    /// PCID (all of them without PCIDs) and the paging-structure caches; global entries stay.
    ReloadCr3,
    /// A release fence: on x86 it emits no instruction (stores are not reordered with other
    /// stores: SDM Vol. 3A, "Memory Ordering in P6 and More Recent Processor Families"), it
    /// only keeps the compiler from moving earlier stores past later ones.
    CompilerFence,
    /// `clflush [addr]`: writes back and invalidates the cache line containing `addr` in every
    /// cache of the coherence domain.
    Clflush(u64),
    /// `mfence`: orders and completes prior loads, stores and `clflush`es before later ones.
    Mfence,
    /// `mov cr3, value`: loads a root (bits 51:12), with CR4.PCIDE its PCID (bits 11:0) and
    /// bit 63 (no flush: keep the PCID's cached entries); without bit 63, or without PCIDE,
    /// the (current) PCID's non-global entries and paging-structure caches are invalidated
    /// (SDM Vol. 3A §4.10.4.1, "MOV to CR3").
    WriteCr3(u64),
    /// `invpcid` with descriptor `{pcid, va}` (SDM Vol. 2A "INVPCID"; needs
    /// CPUID.(EAX=07H,ECX=0):EBX.INVPCID\[bit 10\]).
    Invpcid(InvpcidKind, u16, u64),
}

/// The four INVPCID invalidation types (SDM Vol. 2A "INVPCID", the type operand).
///
/// ```
/// use awk_paging_x86_64::maint::InvpcidKind;
/// assert_eq!(InvpcidKind::SingleContext as u64, 1);
/// assert!(!InvpcidKind::IndividualAddress.drops_global());
/// assert!(InvpcidKind::AllIncludingGlobal.drops_global());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum InvpcidKind {
    /// Type 0: the one address in the one PCID, global translations excepted.
    IndividualAddress = 0,
    /// Type 1: every non-global translation of the one PCID (and its paging-structure
    /// caches).
    SingleContext = 1,
    /// Type 2: every translation of every PCID, global ones included.
    AllIncludingGlobal = 2,
    /// Type 3: every non-global translation of every PCID.
    AllNonGlobal = 3,
}

impl InvpcidKind {
    /// Whether this type drops global translations.
    #[must_use]
    pub const fn drops_global(self) -> bool {
        matches!(self, InvpcidKind::AllIncludingGlobal)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Invlpg(va) => write!(f, "invlpg [{va:#x}]"),
            Op::ToggleCr4Pge => f.write_str("mov cr4, cr4 ^ PGE; mov cr4, cr4"),
            Op::ReloadCr3 => f.write_str("mov cr3, cr3"),
            Op::CompilerFence => f.write_str("compiler fence"),
            Op::Clflush(a) => write!(f, "clflush [{a:#x}]"),
            Op::Mfence => f.write_str("mfence"),
            Op::WriteCr3(v) => write!(f, "mov cr3, {v:#x}"),
            Op::Invpcid(k, pcid, va) => {
                write!(f, "invpcid {}, {{pcid {pcid:#x}, va {va:#x}}}", k as u64)
            }
        }
    }
}

/// At most `N` ops, in order, in a fixed-size array (no allocator).
///
/// ```
/// use awk_paging_x86_64::maint::{Op, Sequence};
/// let s: Sequence<2> = Sequence::from_ops([Op::ReloadCr3]);
/// assert_eq!(s.ops(), &[Op::ReloadCr3]);
/// assert_eq!(s.to_string(), "mov cr3, cr3");
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
    /// assert!(awk_paging_x86_64::maint::Sequence::<2>::from_ops([]).is_empty());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn from_ops<const K: usize>(ops: [Op; K]) -> Self {
        const { assert!(K <= N, "more ops than the sequence holds") };
        let mut all = [Op::CompilerFence; N];
        let mut i = 0;
        while i < K {
            all[i] = ops[i];
            i += 1;
        }
        Sequence { ops: all, len: K }
    }

    /// The ops, in execution order.
    ///
    /// ```
    /// use awk_paging_x86_64::maint::{Op, Sequence};
    /// assert_eq!(Sequence::<1>::from_ops([Op::Mfence]).ops(), &[Op::Mfence]);
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn ops(&self) -> &[Op] {
        self.ops.get(..self.len).unwrap_or(&[])
    }

    /// Whether there is nothing to do.
    ///
    /// ```
    /// assert!(awk_paging_x86_64::Invlpg.publish_ops().is_empty());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Executes the ops in order with [`execute`]. Bare-metal x86_64 only.
    ///
    /// # Safety
    ///
    /// As for [`execute`], for every op.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    /// # fn f() {
    /// // SAFETY: TLB invalidation only.
    /// unsafe { awk_paging_x86_64::Invlpg.flush_all_ops(true).run() };
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "x86_64", target_os = "none")))]
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

/// Executes one op on this CPU (ring 0, bare-metal x86_64 only). Every op is a compiler memory
/// barrier (the `asm!` blocks may touch memory).
///
/// # Safety
///
/// - [`Op::Clflush`]: the address must be mapped, or the instruction faults.
/// - [`Op::ToggleCr4Pge`], [`Op::ReloadCr3`]: the CPU runs in ring 0 and CR3 holds valid tables
///   (they are written back unchanged, apart from the PGE flip).
/// - [`Op::WriteCr3`]: ring 0, the value's root is a valid PML4 mapping the running code (and
///   its stack and data) as the current one does; PCID bits only with CR4.PCIDE.
/// - [`Op::Invpcid`]: ring 0, a CPU with INVPCID (else `#UD`), a PCID below 4096.
/// - The others have no memory-safety requirements.
///
/// ```no_run
/// # #[cfg(all(target_arch = "x86_64", target_os = "none"))]
/// # fn f() {
/// use awk_paging_x86_64::maint::{execute, Op};
/// // SAFETY: TLB invalidation of one page.
/// unsafe { execute(Op::Invlpg(0xffff_8000_0000_0000)) };
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "x86_64", target_os = "none")))]
#[inline(always)]
pub unsafe fn execute(op: Op) {
    use core::arch::asm;
    const PGE: u64 = 1 << 7;
    // SAFETY: the caller's guarantee; each block is the instruction(s) the op names.
    unsafe {
        match op {
            Op::Invlpg(va) => asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)),
            Op::ToggleCr4Pge => asm!(
                "mov {tmp}, cr4",
                "mov {flip}, {tmp}",
                "xor {flip}, {pge}",
                "mov cr4, {flip}",
                "mov cr4, {tmp}",
                tmp = out(reg) _,
                flip = out(reg) _,
                pge = in(reg) PGE,
                options(nostack)
            ),
            Op::ReloadCr3 => asm!(
                "mov {tmp}, cr3",
                "mov cr3, {tmp}",
                tmp = out(reg) _,
                options(nostack, preserves_flags)
            ),
            Op::CompilerFence => core::sync::atomic::fence(core::sync::atomic::Ordering::Release),
            Op::Clflush(a) => asm!("clflush [{}]", in(reg) a, options(nostack, preserves_flags)),
            Op::Mfence => asm!("mfence", options(nostack, preserves_flags)),
            Op::WriteCr3(v) => asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)),
            Op::Invpcid(kind, pcid, va) => {
                let desc: [u64; 2] = [u64::from(pcid), va];
                asm!(
                    "invpcid {}, [{}]",
                    in(reg) kind as u64,
                    in(reg) desc.as_ptr(),
                    options(nostack, preserves_flags, readonly)
                )
            }
        }
    }
}
