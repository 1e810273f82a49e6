//! What the x86_64 MMU makes of entries the walker does not use (Intel SDM Vol. 3A §4.5
//! "4-level paging", §4.6 "Access rights", §4.7 "Page-fault exceptions"), for
//! [`awk_paging::inspect`].
//!
//! Assumed control state (what kernels run with): CR0.WP = 1 (the kernel cannot write
//! read-only pages), EFER.NXE = 1 (XD is an execute-disable bit, not reserved), CR4.SMEP = 0
//! (the kernel may execute user pages: the audit lists them), CR4.PKE = 0.

use awk_paging::arch::{Arch, Limits};
use awk_paging::inspect::{Access, Classify, Invalid};
use awk_paging::{MemoryType, PageSize};
use x86_64::structures::paging::PageTableFlags as F;

use crate::X86_64;

/// Bits 12..=51: the physical address field of every entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// ```
/// use awk_paging::arch::{Arch, Limits};
/// use awk_paging::inspect::{Classify, Invalid};
/// use awk_paging_x86_64::X86_64;
/// let x = X86_64::new(); // no 1 GiB pages
/// assert_eq!(x.invalid(0x1000, 0), Invalid::NotPresent);
/// assert_eq!(x.invalid(0x1000 | 0x81, 3), Invalid::LeafNotAllowed); // PS in a PML4E
/// assert_eq!(x.invalid(0x4000_0000 | 0x81, 2), Invalid::PageSizeNotSupported);
/// assert_eq!(x.invalid(0x20_1000 | 0x81, 1), Invalid::ReservedBits); // bit 13 of a 2 MiB page
/// assert_eq!(X86_64::new().with_pa_bits(39).invalid((1 << 40) | 1, 0), Invalid::ReservedBits);
/// // A user page without XD is executable by the kernel too (no SMEP).
/// let a = x.access(0x5000 | 0b111, 0, Limits::NONE);
/// assert!(a.user_write && a.user_exec && a.kernel_exec);
/// ```
impl Classify for X86_64 {
    fn invalid(&self, raw: u64, level: u8) -> Invalid {
        if raw & F::PRESENT.bits() == 0 {
            return Invalid::NotPresent;
        }
        if (raw & ADDR_MASK) >> self.pa_bits() != 0 {
            return Invalid::ReservedBits;
        }
        let huge = raw & F::HUGE_PAGE.bits() != 0;
        match level {
            3 if huge => Invalid::LeafNotAllowed,
            2 if huge && !self.page_sizes().contains(PageSize::Size1G) => {
                Invalid::PageSizeNotSupported
            }
            // Bits 20:13 / 29:13 of a large page. Every other present entry decodes; a format
            // change that forgets a case lands here too and shows up as "reserved" rather
            // than as a silent hole.
            _ => Invalid::ReservedBits,
        }
    }

    fn access(&self, raw: u64, _level: u8, limits: Limits) -> Access {
        let f = F::from_bits_retain(raw);
        let write = f.contains(F::WRITABLE) && !limits.no_write;
        let user = f.contains(F::USER_ACCESSIBLE) && !limits.no_user;
        let exec = !f.contains(F::NO_EXECUTE) && !limits.no_exec;
        Access {
            kernel_read: true,
            kernel_write: write,
            kernel_exec: exec,
            user_read: user,
            user_write: user && write,
            user_exec: user && exec,
        }
    }

    fn memory_type(&self, raw: u64, level: u8) -> MemoryType {
        self.leaf_attrs(raw, level).flags.memory_type()
    }
}
