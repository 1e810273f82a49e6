//! Data-cache maintenance for memory-type changes: clean and invalidate a VA range to the
//! point of coherency (PoC), as [`maint`](crate::maint) ops (`dc civac` per cache line, then
//! `dsb sy`). When a kernel must use it is explained in the crate documentation, "Changing a
//! page's memory type".
//!
//! ```
//! use awk_paging::VirtAddr;
//! use awk_paging_aarch64::cache::{clean_invalidate_ops, LineSize};
//! use awk_paging_aarch64::maint::{Barrier, Op};
//!
//! let line = LineSize::from_ctr_el0(0x8444_c004); // Cortex-A72: DminLine = 4 → 64 bytes
//! assert_eq!(line.bytes(), 64);
//! let ops: Vec<Op> = clean_invalidate_ops(VirtAddr::new(0x4000_0030), 0x40, line).unwrap().collect();
//! assert_eq!(
//!     ops,
//!     [Op::DcCivac(0x4000_0000), Op::DcCivac(0x4000_0040), Op::Dsb(Barrier::Sy)]
//! );
//! ```

use awk_paging::VirtAddr;

use crate::maint::{Barrier, Op};

/// The smallest data-cache line size of every cache the PE's maintenance reaches
/// (CTR_EL0.DminLine, bits 19:16: log2 of the size in 4-byte words). Stepping by it visits
/// every line of a range.
///
/// ```
/// use awk_paging_aarch64::cache::LineSize;
/// assert_eq!(LineSize::from_ctr_el0(3 << 16).bytes(), 32);
/// assert_eq!(LineSize::from_ctr_el0(0).bytes(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineSize(u32);

impl LineSize {
    /// The line size a CTR_EL0 value reports.
    ///
    /// ```
    /// assert_eq!(awk_paging_aarch64::cache::LineSize::from_ctr_el0(0xf << 16).bytes(), 128 * 1024);
    /// ```
    #[must_use]
    pub const fn from_ctr_el0(ctr_el0: u64) -> Self {
        LineSize(4 << ((ctr_el0 >> 16) & 0xf))
    }

    /// This PE's line size (reads CTR_EL0). Bare-metal AArch64 only.
    ///
    /// ```no_run
    /// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    /// # fn f() {
    /// assert!(awk_paging_aarch64::cache::LineSize::read().bytes() >= 16);
    /// # }
    /// ```
    #[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
    #[must_use]
    pub fn read() -> Self {
        let ctr: u64;
        // SAFETY: reading an ID register.
        unsafe {
            core::arch::asm!("mrs {x}, ctr_el0", x = out(reg) ctr, options(nomem, nostack, preserves_flags));
        }
        Self::from_ctr_el0(ctr)
    }

    /// The size in bytes (a power of two, 4 to 128 KiB).
    ///
    /// ```
    /// assert_eq!(awk_paging_aarch64::cache::LineSize::from_ctr_el0(4 << 16).bytes(), 64);
    /// ```
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0 as u64
    }
}

/// The range passed to [`clean_invalidate_ops`] wraps around the end of the address space.
///
/// ```
/// use awk_paging_aarch64::cache::RangeWraps;
/// assert_eq!(RangeWraps.to_string(), "address range wraps around the address space");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeWraps;

impl core::fmt::Display for RangeWraps {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("address range wraps around the address space")
    }
}

/// The ops of one clean-and-invalidate to PoC: `dc civac` for each line that overlaps the
/// range, lowest first, then one `dsb sy` (the maintenance complete for every observer,
/// non-coherent devices included). An iterator, so a range of any size takes no memory.
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_aarch64::cache::{clean_invalidate_ops, LineSize};
/// let ops = clean_invalidate_ops(VirtAddr::new(0x1000), 4096, LineSize::from_ctr_el0(4 << 16)).unwrap();
/// assert_eq!(ops.count(), 64 + 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanInvalidate {
    next: u64,
    end: u64,
    line: u64,
    done: bool,
}

impl Iterator for CleanInvalidate {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        if self.next < self.end {
            let op = Op::DcCivac(self.next);
            self.next = self.next.saturating_add(self.line);
            Some(op)
        } else if !self.done {
            self.done = true;
            Some(Op::Dsb(Barrier::Sy))
        } else {
            None
        }
    }
}

/// The ops that clean and invalidate `[start, start + len)` to the point of coherency, with
/// lines of `line` bytes. Dirty lines are written back first, so no data is lost. An empty range
/// is just the `dsb sy`.
///
/// # Errors
///
/// [`RangeWraps`] if `start + len` overflows.
///
/// ```
/// use awk_paging::VirtAddr;
/// use awk_paging_aarch64::cache::{clean_invalidate_ops, LineSize, RangeWraps};
/// let line = LineSize::from_ctr_el0(4 << 16);
/// assert_eq!(clean_invalidate_ops(VirtAddr::new(0x1000), 0, line).unwrap().count(), 1);
/// assert_eq!(clean_invalidate_ops(VirtAddr::new(u64::MAX), 2, line), Err(RangeWraps));
/// ```
pub fn clean_invalidate_ops(
    start: VirtAddr,
    len: u64,
    line: LineSize,
) -> Result<CleanInvalidate, RangeWraps> {
    let end = start.as_u64().checked_add(len).ok_or(RangeWraps)?;
    let line = line.bytes();
    // An empty range has no lines (aligning its start down would invent one).
    let next = if len == 0 {
        end
    } else {
        start.as_u64() & !(line - 1)
    };
    Ok(CleanInvalidate {
        next,
        end,
        line,
        done: false,
    })
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency on this PE's caches
/// (and, being broadcast, every PE's in the inner shareable domain): [`clean_invalidate_ops`]
/// with this PE's [`LineSize`], executed. Bare-metal AArch64 only.
///
/// # Safety
///
/// Every page of the range must be mapped (any memory type; with the MMU off, any address),
/// or the first unmapped line's `dc civac` takes a data abort.
///
/// # Errors
///
/// [`RangeWraps`] if `start + len` overflows; nothing is done then.
///
/// ```no_run
/// # #[cfg(all(target_arch = "aarch64", target_os = "none"))]
/// # fn f(buffer: awk_paging::VirtAddr) {
/// // The frame behind `buffer` is about to be mapped non-cacheable for a device.
/// unsafe { awk_paging_aarch64::cache::clean_invalidate_to_poc(buffer, 4096) }.unwrap();
/// # }
/// ```
#[cfg(any(doc, all(target_arch = "aarch64", target_os = "none")))]
pub unsafe fn clean_invalidate_to_poc(start: VirtAddr, len: u64) -> Result<(), RangeWraps> {
    for op in clean_invalidate_ops(start, len, LineSize::read())? {
        // SAFETY: `dc civac` on the caller's mapped range, and a barrier.
        unsafe { crate::maint::execute(op) };
    }
    Ok(())
}
