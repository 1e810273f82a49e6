//! Portable mapping attributes: the seed [`Flags`], the instance API's [`Attrs`] and the
//! validation rules both architectures share.
//!
//! # Memory type
//!
//! The three cache bits of [`Flags`] resolve to one [`MemoryType`] by priority, the same on every
//! backend:
//!
//! | `device` | `cache` | `write_through` | memory type |
//! |---|---|---|---|
//! | true | any | any | [`MemoryType::Device`] |
//! | false | false | any | [`MemoryType::Uncached`] |
//! | false | true | true | [`MemoryType::WriteThrough`] |
//! | false | true | false | [`MemoryType::WriteBack`] |
//!
//! A translation reads back the *canonical* flags of that memory type
//! ([`Flags::canonical`]), so `map(f)` followed by `translate` yields `f.canonical()`.
//!
//! # Rejected combinations
//!
//! - `device && execute`: device memory is never executable (speculative instruction fetch from
//!   MMIO has side effects). [`FlagsError::ExecutableDevice`].
//! - `write && execute` unless the page table's [`Policy`] allows it (W^X).
//!   [`FlagsError::WritableAndExecutable`].
//! - `user && global` unless the [`Policy`] allows it: a global entry is not tagged with an
//!   address-space id and survives a switch to another address space (x86 G with CR4.PGE,
//!   AArch64 nG = 0), so another process would see the page through a stale TLB entry.
//!   [`FlagsError::GlobalUser`].

/// The seed API's mapping flags. Every mapped page is readable.
///
/// ```
/// use awk_paging::{Flags, MemoryType};
/// let mmio = Flags { write: true, device: true, ..Flags::default() };
/// assert_eq!(mmio.memory_type(), MemoryType::Device);
/// assert_eq!(Flags::RW.memory_type(), MemoryType::WriteBack);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// Instructions may be fetched from the page.
    pub execute: bool,
    /// The page is writable.
    pub write: bool,
    /// The page is cacheable (ignored for device memory).
    pub cache: bool,
    /// Cacheable write-through instead of write-back (needs `cache`).
    pub write_through: bool,
    /// Device (MMIO) memory: uncached, strongly ordered, never executable.
    pub device: bool,
}

impl Flags {
    /// Read-only, non-executable, write-back data.
    pub const RO: Flags = Flags {
        execute: false,
        write: false,
        cache: true,
        write_through: false,
        device: false,
    };
    /// Read-write, non-executable, write-back data.
    pub const RW: Flags = Flags {
        execute: false,
        write: true,
        cache: true,
        write_through: false,
        device: false,
    };
    /// Read-only, executable, write-back code.
    pub const RX: Flags = Flags {
        execute: true,
        write: false,
        cache: true,
        write_through: false,
        device: false,
    };
    /// Read-write device memory (MMIO registers).
    pub const DEVICE: Flags = Flags {
        execute: false,
        write: true,
        cache: false,
        write_through: false,
        device: true,
    };

    /// All 32 combinations of the five booleans, in bit order
    /// (bit 0 execute, 1 write, 2 cache, 3 write_through, 4 device).
    ///
    /// ```
    /// let all = awk_paging::Flags::all_combinations();
    /// assert_eq!(all.len(), 32);
    /// assert!(all[31].device && all[31].execute);
    /// ```
    #[must_use]
    pub fn all_combinations() -> [Flags; 32] {
        core::array::from_fn(|i| Flags {
            execute: i & 1 != 0,
            write: i & 2 != 0,
            cache: i & 4 != 0,
            write_through: i & 8 != 0,
            device: i & 16 != 0,
        })
    }

    /// The memory type these flags select (see the module docs for the priority).
    ///
    /// ```
    /// use awk_paging::{Flags, MemoryType};
    /// let f = Flags { cache: false, write_through: true, ..Flags::RO };
    /// assert_eq!(f.memory_type(), MemoryType::Uncached);
    /// ```
    #[inline]
    #[must_use]
    pub const fn memory_type(self) -> MemoryType {
        if self.device {
            MemoryType::Device
        } else if !self.cache {
            MemoryType::Uncached
        } else if self.write_through {
            MemoryType::WriteThrough
        } else {
            MemoryType::WriteBack
        }
    }

    /// The flags a translation reports for a page mapped with `self`: permissions unchanged, the
    /// cache bits normalised to the memory type.
    ///
    /// ```
    /// use awk_paging::Flags;
    /// let f = Flags { device: true, cache: true, write_through: true, ..Flags::RO };
    /// assert_eq!(f.canonical(), Flags { device: true, cache: false, write_through: false, ..Flags::RO });
    /// ```
    #[inline]
    #[must_use]
    pub const fn canonical(self) -> Flags {
        self.memory_type()
            .with_permissions(self.write, self.execute)
    }
}

/// The memory type of a mapping, as both architectures can express it.
///
/// x86 selects it with PWT/PCD through the power-on PAT (WB, WT, UC-, UC); AArch64 with a MAIR
/// attribute index (Normal WB, Normal WT, Normal NC, Device-nGnRE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal memory, write-back cacheable.
    WriteBack,
    /// Normal memory, write-through cacheable.
    WriteThrough,
    /// Normal memory, not cacheable.
    Uncached,
    /// Device memory (MMIO): uncached, no speculative access, no gathering.
    Device,
}

impl MemoryType {
    /// Canonical [`Flags`] of this memory type with the given permissions.
    ///
    /// ```
    /// use awk_paging::{Flags, MemoryType};
    /// assert_eq!(MemoryType::WriteBack.with_permissions(true, false), Flags::RW);
    /// ```
    #[inline]
    #[must_use]
    pub const fn with_permissions(self, write: bool, execute: bool) -> Flags {
        let (cache, write_through, device) = match self {
            MemoryType::WriteBack => (true, false, false),
            MemoryType::WriteThrough => (true, true, false),
            MemoryType::Uncached => (false, false, false),
            MemoryType::Device => (false, false, true),
        };
        Flags {
            execute,
            write,
            cache,
            write_through,
            device,
        }
    }
}

/// Attributes of one mapping in the instance API: the seed [`Flags`] plus what address spaces
/// need (user access, global).
///
/// `Attrs::from(flags)` is a kernel-only, non-global mapping: the safe default (a global
/// mapping survives address-space switches and must be flushed everywhere).
///
/// ```
/// use awk_paging::{Attrs, Flags};
/// let a = Attrs::from(Flags::RW);
/// assert!(!a.user && !a.global);
/// let u = Attrs { user: true, ..Attrs::from(Flags::RX) };
/// assert!(u.flags.execute);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Permissions and memory type.
    pub flags: Flags,
    /// Accessible from user mode (x86 U/S, AArch64 AP\[1\]/EL0).
    pub user: bool,
    /// Global: not tagged with an address-space id, kept across address-space switches
    /// (x86 G with CR4.PGE, AArch64 nG clear).
    pub global: bool,
}

impl From<Flags> for Attrs {
    #[inline]
    fn from(flags: Flags) -> Self {
        Attrs {
            flags,
            user: false,
            global: false,
        }
    }
}

impl Attrs {
    /// These attributes with the cache bits canonicalised (what a translation reports).
    ///
    /// ```
    /// use awk_paging::{Attrs, Flags};
    /// let a = Attrs::from(Flags { write_through: true, cache: false, ..Flags::RO });
    /// assert!(!a.canonical().flags.write_through);
    /// ```
    #[inline]
    #[must_use]
    pub const fn canonical(self) -> Attrs {
        Attrs {
            flags: self.flags.canonical(),
            user: self.user,
            global: self.global,
        }
    }

    /// Checks the combination against the shared rules and `policy`.
    ///
    /// ```
    /// use awk_paging::{Attrs, Flags, FlagsError, Policy};
    /// let wx = Attrs::from(Flags { write: true, execute: true, ..Flags::RO });
    /// assert_eq!(wx.validate(Policy::default()), Err(FlagsError::WritableAndExecutable));
    /// assert_eq!(wx.validate(Policy { allow_write_execute: true, ..Policy::default() }), Ok(()));
    /// let gu = Attrs { user: true, global: true, ..Attrs::from(Flags::RO) };
    /// assert_eq!(gu.validate(Policy::default()), Err(FlagsError::GlobalUser));
    /// assert_eq!(gu.validate(Policy { allow_global_user: true, ..Policy::default() }), Ok(()));
    /// ```
    #[inline]
    pub const fn validate(self, policy: Policy) -> Result<(), FlagsError> {
        let f = self.flags;
        if f.device && f.execute {
            Err(FlagsError::ExecutableDevice)
        } else if f.write && f.execute && !policy.allow_write_execute {
            Err(FlagsError::WritableAndExecutable)
        } else if self.user && self.global && !policy.allow_global_user {
            Err(FlagsError::GlobalUser)
        } else {
            Ok(())
        }
    }
}

/// Per-page-table rules for which attribute combinations are accepted.
///
/// ```
/// let strict = awk_paging::Policy::default();
/// assert!(!strict.allow_write_execute && !strict.allow_global_user);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept writable+executable mappings (off by default: W^X).
    pub allow_write_execute: bool,
    /// Accept user-accessible global mappings (off by default: a global entry survives an
    /// address-space switch, so every other process could reach the page through the TLB).
    pub allow_global_user: bool,
}

/// Why a flag combination was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlagsError {
    /// `device` together with `execute`.
    ExecutableDevice,
    /// `write` together with `execute` while the [`Policy`] enforces W^X.
    WritableAndExecutable,
    /// `user` together with `global` while the [`Policy`] refuses it (a global user page stays
    /// in the TLB across address-space switches: another process would see it).
    GlobalUser,
}

impl core::fmt::Display for FlagsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FlagsError::ExecutableDevice => "device memory cannot be executable",
            FlagsError::WritableAndExecutable => "writable and executable mapping rejected (W^X)",
            FlagsError::GlobalUser => {
                "global user mapping rejected (it would outlive an address-space switch)"
            }
        })
    }
}
