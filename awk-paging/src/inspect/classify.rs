//! What the MMU makes of one entry beyond [`Arch::decode`]: why an entry that does not
//! translate faults ([`Invalid`]), and who may read, write and execute through a leaf
//! ([`Access`]).

use core::fmt;

use crate::arch::{Arch, Limits};
use crate::MemoryType;

/// Why an entry that [`Arch::decode`] calls [`Entry::Invalid`](crate::arch::Entry::Invalid)
/// stops the hardware walk: the fault the MMU raises there.
///
/// ```
/// use awk_paging::inspect::Invalid;
/// assert_eq!(Invalid::AccessFlag.to_string(), "access flag clear (access flag fault)");
/// assert!(Invalid::NotPresent.is_not_present());
/// assert!(!Invalid::ReservedBits.is_not_present());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalid {
    /// Not present / not valid (x86 P = 0; AArch64 bit 0 clear): a plain translation fault.
    NotPresent,
    /// Reserved bits set (x86: a page fault with RSVD = 1, Intel SDM Vol. 3A §4.7; address bits
    /// at or above MAXPHYADDR, bits 20:13 / 29:13 of a large page).
    ReservedBits,
    /// A leaf (block) at a level that has none: x86 PS = 1 in a PML4E (reserved, SDM §4.5);
    /// AArch64 a block descriptor at level 0 (without FEAT_LPA2) or `0b01` at level 3 (Arm ARM
    /// D8.3: a translation fault).
    LeafNotAllowed,
    /// A page size the regime (CPU) does not have: x86 PS = 1 in a PDPTE without Page1GB
    /// (reserved-bit fault).
    PageSizeNotSupported,
    /// AArch64: an output address wider than the configured PA size (Address size fault).
    AddressSize,
    /// AArch64: a leaf with AF = 0 (Access flag fault; hardware AF management off).
    AccessFlag,
}

impl Invalid {
    /// Whether this is the plain "nothing mapped here" case rather than a malformed entry.
    ///
    /// ```
    /// assert!(awk_paging::inspect::Invalid::NotPresent.is_not_present());
    /// ```
    #[must_use]
    pub const fn is_not_present(self) -> bool {
        matches!(self, Invalid::NotPresent)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::NotPresent => "not present (translation fault)",
            Invalid::ReservedBits => "reserved bits set (reserved-bit fault)",
            Invalid::LeafNotAllowed => "leaf at a level without leaves",
            Invalid::PageSizeNotSupported => "page size not supported by the CPU",
            Invalid::AddressSize => "output address too wide (address size fault)",
            Invalid::AccessFlag => "access flag clear (access flag fault)",
        })
    }
}

/// Who may do what through a leaf, as the MMU decides it from the leaf and every table entry
/// above it. Unlike [`Attrs`](crate::Attrs) (what the crate can *encode*), this reports what a
/// foreign table grants, including what the crate refuses to build (writable and executable,
/// executable device memory, user pages the kernel may execute).
///
/// ```
/// use awk_paging::inspect::Access;
/// let a = Access { kernel_write: true, kernel_exec: true, ..Access::READ_ONLY };
/// assert!(a.write_exec());
/// assert_eq!(a.to_string(), "k:rwx u:---");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// Kernel (x86 CPL 0; AArch64 EL1) reads.
    pub kernel_read: bool,
    /// Kernel writes (x86 with CR0.WP = 1).
    pub kernel_write: bool,
    /// Kernel instruction fetches (x86 without SMEP; AArch64 PXN and the implicit PXN of
    /// EL0-writable memory).
    pub kernel_exec: bool,
    /// User (x86 CPL 3; AArch64 EL0) reads.
    pub user_read: bool,
    /// User writes.
    pub user_write: bool,
    /// User instruction fetches.
    pub user_exec: bool,
}

impl Access {
    /// Kernel read only.
    pub const READ_ONLY: Access = Access {
        kernel_read: true,
        kernel_write: false,
        kernel_exec: false,
        user_read: false,
        user_write: false,
        user_exec: false,
    };

    /// Writable and executable by anyone (possibly by different privilege levels): the W+X
    /// the audit lists.
    ///
    /// ```
    /// use awk_paging::inspect::Access;
    /// assert!(!Access::READ_ONLY.write_exec());
    /// ```
    #[must_use]
    pub const fn write_exec(&self) -> bool {
        (self.kernel_write || self.user_write) && (self.kernel_exec || self.user_exec)
    }

    /// Executable by anyone.
    ///
    /// ```
    /// use awk_paging::inspect::Access;
    /// assert!(Access { user_exec: true, ..Access::READ_ONLY }.exec());
    /// ```
    #[must_use]
    pub const fn exec(&self) -> bool {
        self.kernel_exec || self.user_exec
    }

    /// A user page the kernel may execute (what SMEP / PXN exist to prevent).
    ///
    /// ```
    /// use awk_paging::inspect::Access;
    /// assert!(Access { user_read: true, kernel_exec: true, ..Access::READ_ONLY }.user_exec_by_kernel());
    /// ```
    #[must_use]
    pub const fn user_exec_by_kernel(&self) -> bool {
        (self.user_read || self.user_write || self.user_exec) && self.kernel_exec
    }
}

impl fmt::Display for Access {
    /// `k:rwx u:rwx`, `-` for what is denied.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "k:{}{}{} u:{}{}{}",
            c(self.kernel_read, 'r'),
            c(self.kernel_write, 'w'),
            c(self.kernel_exec, 'x'),
            c(self.user_read, 'r'),
            c(self.user_write, 'w'),
            c(self.user_exec, 'x'),
        )
    }
}

/// What an architecture adds for inspection: the fault behind an invalid entry and the access a
/// leaf grants. Both have conservative defaults (every invalid entry is not present; access
/// follows [`Arch::effective_attrs`]); the x86_64 and AArch64 regimes implement the hardware's
/// rules.
///
/// ```
/// use awk_paging::arch::{Arch, Limits};
/// use awk_paging::emu::EmuArch;
/// use awk_paging::inspect::{Classify, Invalid};
/// use awk_paging::{Flags, PhyAddr};
/// let a = EmuArch::default();
/// assert_eq!(a.invalid(0, 0), Invalid::NotPresent);
/// let raw = a.leaf_entry(PhyAddr::new(0x1000), 0, Flags::RX.into());
/// let acc = a.access(raw, 0, Limits::NONE);
/// assert!(acc.kernel_exec && !acc.kernel_write && !acc.user_read);
/// ```
pub trait Classify: Arch {
    /// Why `raw` at `level` (which [`Arch::decode`] calls invalid) faults.
    #[inline]
    fn invalid(&self, _raw: u64, _level: u8) -> Invalid {
        Invalid::NotPresent
    }

    /// What the leaf `raw` at `level` grants under the table `limits` above it.
    #[inline]
    fn access(&self, raw: u64, level: u8, limits: Limits) -> Access {
        let a = self.effective_attrs(raw, level, limits);
        let (w, x) = (a.flags.write, a.flags.execute);
        Access {
            kernel_read: true,
            kernel_write: w,
            kernel_exec: x && !a.user,
            user_read: a.user,
            user_write: a.user && w,
            user_exec: a.user && x,
        }
    }

    /// The memory type of the leaf `raw` at `level`. Default: from [`Arch::leaf_attrs`].
    #[inline]
    fn memory_type(&self, raw: u64, level: u8) -> MemoryType {
        self.leaf_attrs(raw, level).flags.memory_type()
    }
}

#[cfg(feature = "std")]
impl Classify for crate::emu::EmuArch {}
