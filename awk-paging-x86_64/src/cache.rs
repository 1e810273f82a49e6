//! `clflush` over a range, for memory-type changes (see the crate documentation, "Changing a
//! page's memory type"): `mfence`, one `clflush` per cache line, `mfence` — as [`Op`]s, run on
//! bare metal by [`clflush_range`].
//!
//! ```
//! use awk_paging::VirtAddr;
//! use awk_paging_x86_64::cache::{clflush_ops, ClflushLine};
//! use awk_paging_x86_64::maint::Op;
//! let line = ClflushLine::from_cpuid_ebx(8 << 8).unwrap(); // 8 × 8 = 64 bytes
//! let ops: Vec<Op> = clflush_ops(VirtAddr::new(0x1010), 0x40, line).unwrap().collect();
//! assert_eq!(ops, [Op::Mfence, Op::Clflush(0x1000), Op::Clflush(0x1040), Op::Mfence]);
//! ```

use awk_paging::VirtAddr;

use crate::maint::Op;

/// The `clflush` line size: CPUID.01H:EBX\[15:8\] × 8 bytes.
///
/// ```
/// use awk_paging_x86_64::cache::ClflushLine;
/// assert_eq!(ClflushLine::from_cpuid_ebx(0x0000_0800).unwrap().bytes(), 64);
/// assert_eq!(ClflushLine::from_cpuid_ebx(0), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClflushLine(u32);

impl ClflushLine {
    /// The line size CPUID leaf 1's EBX reports; `None` if it reports none or one that is not a
    /// power of two.
    ///
    /// ```
    /// assert_eq!(awk_paging_x86_64::cache::ClflushLine::from_cpuid_ebx(3 << 8), None);
    /// ```
    #[must_use]
    pub const fn from_cpuid_ebx(ebx: u32) -> Option<Self> {
        let bytes = ((ebx >> 8) & 0xff) * 8;
        if bytes.is_power_of_two() {
            Some(ClflushLine(bytes))
        } else {
            None
        }
    }

    /// This CPU's line size, `None` without `clflush` (CPUID.01H:EDX.CLFSH\[bit 19\]).
    /// Bare-metal x86_64 only.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    /// # fn f() {
    /// assert!(awk_paging_x86_64::cache::ClflushLine::read().is_some());
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "x86_64", target_os = "none")))]
    #[must_use]
    #[allow(unused_unsafe)]
    pub fn read() -> Option<Self> {
        // SAFETY: CPUID leaf 1 exists on every x86_64 CPU.
        let r = unsafe { core::arch::x86_64::__cpuid(1) };
        if r.edx & 1 << 19 == 0 {
            return None;
        }
        Self::from_cpuid_ebx(r.ebx)
    }

    /// The size in bytes.
    ///
    /// ```
    /// assert_eq!(awk_paging_x86_64::cache::ClflushLine::from_cpuid_ebx(4 << 8).unwrap().bytes(), 32);
    /// ```
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0 as u64
    }
}

/// The range passed to [`clflush_ops`] wraps around the end of the address space.
///
/// ```
/// use awk_paging_x86_64::cache::RangeWraps;
/// assert_eq!(RangeWraps.to_string(), "address range wraps around the address space");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeWraps;

impl core::fmt::Display for RangeWraps {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("address range wraps around the address space")
    }
}

/// The ops of one range flush: `mfence` (earlier accesses done), `clflush` for each line that
/// overlaps the range, lowest first, `mfence` (the flushes complete before later accesses).
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_x86_64::cache::{clflush_ops, ClflushLine};
/// let line = ClflushLine::from_cpuid_ebx(8 << 8).unwrap();
/// assert_eq!(clflush_ops(VirtAddr::new(0x2000), 4096, line).unwrap().count(), 64 + 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClflushRange {
    started: bool,
    next: u64,
    end: u64,
    line: u64,
    done: bool,
}

impl Iterator for ClflushRange {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        if !self.started {
            self.started = true;
            Some(Op::Mfence)
        } else if self.next < self.end {
            let op = Op::Clflush(self.next);
            self.next = self.next.saturating_add(self.line);
            Some(op)
        } else if !self.done {
            self.done = true;
            Some(Op::Mfence)
        } else {
            None
        }
    }
}

/// The ops that write back and invalidate `[start, start + len)` from every cache.
///
/// # Errors
///
/// [`RangeWraps`] if `start + len` overflows.
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_x86_64::cache::{clflush_ops, ClflushLine, RangeWraps};
/// let line = ClflushLine::from_cpuid_ebx(8 << 8).unwrap();
/// assert_eq!(clflush_ops(VirtAddr::new(0x1000), 0, line).unwrap().count(), 2);
/// assert_eq!(clflush_ops(VirtAddr::new(u64::MAX), 2, line), Err(RangeWraps));
/// ```
pub fn clflush_ops(
    start: VirtAddr,
    len: u64,
    line: ClflushLine,
) -> Result<ClflushRange, RangeWraps> {
    let end = start.as_u64().checked_add(len).ok_or(RangeWraps)?;
    let line = line.bytes();
    let next = if len == 0 {
        end
    } else {
        start.as_u64() & !(line - 1)
    };
    Ok(ClflushRange {
        started: false,
        next,
        end,
        line,
        done: false,
    })
}

/// Why [`clflush_range`] did nothing.
///
/// ```
/// use awk_paging_x86_64::cache::ClflushError;
/// assert_eq!(ClflushError::Unsupported.to_string(), "the CPU has no clflush");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClflushError {
    /// CPUID reports no `clflush` (or no usable line size).
    Unsupported,
    /// The range wraps around the address space.
    RangeWraps,
}

impl core::fmt::Display for ClflushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClflushError::Unsupported => f.write_str("the CPU has no clflush"),
            ClflushError::RangeWraps => RangeWraps.fmt(f),
        }
    }
}

/// Writes back and invalidates `[start, start + len)` from every cache in the coherence domain
/// ([`clflush_ops`] with this CPU's line size, executed). Bare-metal x86_64 only.
///
/// # Safety
///
/// Every page of the range must be mapped, or `clflush` faults.
///
/// # Errors
///
/// [`ClflushError`]; nothing is done then.
///
/// ```no_run
/// # #[cfg(all(target_arch = "x86_64", target_os = "none"))]
/// # fn f(buffer: awk_paging::VirtAddr) {
/// unsafe { awk_paging_x86_64::cache::clflush_range(buffer, 4096) }.unwrap();
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "x86_64", target_os = "none")))]
pub unsafe fn clflush_range(start: VirtAddr, len: u64) -> Result<(), ClflushError> {
    let line = ClflushLine::read().ok_or(ClflushError::Unsupported)?;
    let ops = clflush_ops(start, len, line).map_err(|_| ClflushError::RangeWraps)?;
    for op in ops {
        // SAFETY: `clflush` of the caller's mapped range, and fences.
        unsafe { crate::maint::execute(op) };
    }
    Ok(())
}
