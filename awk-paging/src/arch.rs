//! The contract between the shared walker and an architecture's descriptor format.
//!
//! Both supported formats have 4 KiB tables of 512 eight-byte entries, 9 VA bits per level and
//! leaves possible at levels 0 (4 KiB), 1 (2 MiB) and 2 (1 GiB). What differs — and what an
//! [`Arch`] provides — is the bit layout of entries, the valid VA ranges, the physical-address
//! width and the break-before-make rules. Architecture crates implement it; everything else
//! (walking, creating and freeing tables, rollback, TLB tokens) lives once in
//! [`PageTable`](crate::PageTable).

use crate::{AddrError, Attrs, PageSizes, PhyAddr, VirtAddr};

/// What one raw entry means at a given level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not valid: the walk stops with a translation fault.
    Invalid,
    /// Points to the next-level table at this physical address.
    Table(PhyAddr),
    /// Maps a page (or block) starting at this physical address.
    Leaf(PhyAddr),
}

/// What a table entry forbids for everything mapped below it (x86: R/W = 0, U/S = 0, XD = 1 in
/// a PML4E/PDPTE/PDE; AArch64: APTable, UXNTable, PXNTable). The hardware intersects these over
/// all levels of a walk; [`PageTable::translate`](crate::PageTable::translate) reports the
/// result.
///
/// ```
/// use awk_paging::{arch::Limits, Attrs, Flags};
/// let ro = Limits { no_write: true, ..Limits::NONE };
/// let a = ro.apply(Attrs::from(Flags::RW));
/// assert!(!a.flags.write);
/// assert!(ro.blocks(Attrs::from(Flags::RW)));
/// assert!(!ro.blocks(Attrs::from(Flags::RO)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Nothing below is writable (x86 R/W = 0; AArch64 APTable\[1\] = 1).
    pub no_write: bool,
    /// Nothing below is accessible from user mode (x86 U/S = 0; AArch64 APTable\[0\] = 1).
    pub no_user: bool,
    /// Nothing below is executable in kernel mode (x86 XD = 1; AArch64 PXNTable = 1).
    pub no_exec: bool,
    /// Nothing below is executable in user mode (x86 XD = 1; AArch64 UXNTable = 1).
    pub no_user_exec: bool,
}

impl Limits {
    /// No restriction.
    pub const NONE: Limits = Limits {
        no_write: false,
        no_user: false,
        no_exec: false,
        no_user_exec: false,
    };

    /// Both sets of restrictions (what two levels impose together).
    ///
    /// ```
    /// use awk_paging::arch::Limits;
    /// let a = Limits { no_write: true, ..Limits::NONE };
    /// let b = Limits { no_exec: true, ..Limits::NONE };
    /// assert_eq!(a.union(b), Limits { no_write: true, no_exec: true, ..Limits::NONE });
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn union(self, other: Limits) -> Limits {
        Limits {
            no_write: self.no_write | other.no_write,
            no_user: self.no_user | other.no_user,
            no_exec: self.no_exec | other.no_exec,
            no_user_exec: self.no_user_exec | other.no_user_exec,
        }
    }

    /// The limits as four bits: bit 0 `no_exec`, bit 1 `no_user_exec`, bit 2 `no_user`, bit 3
    /// `no_write` (the order of AArch64's PXNTable, UXNTable, APTable\[0\], APTable\[1\]), so
    /// the union of two is one OR. The walker accumulates limits in this form
    /// ([`Arch::table_limit_bits`]).
    ///
    /// ```
    /// use awk_paging::arch::Limits;
    /// let l = Limits { no_write: true, no_exec: true, ..Limits::NONE };
    /// assert_eq!(l.bits(), 0b1001);
    /// assert_eq!(Limits::from_bits(l.bits()), l);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn bits(self) -> u8 {
        (self.no_exec as u8)
            | (self.no_user_exec as u8) << 1
            | (self.no_user as u8) << 2
            | (self.no_write as u8) << 3
    }

    /// The limits [`bits`](Self::bits) stands for (bits 4..=7 are ignored).
    ///
    /// ```
    /// use awk_paging::arch::Limits;
    /// assert_eq!(Limits::from_bits(0b0100), Limits { no_user: true, ..Limits::NONE });
    /// assert_eq!(Limits::from_bits(0xf0), Limits::NONE);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn from_bits(bits: u8) -> Limits {
        Limits {
            no_exec: bits & 1 != 0,
            no_user_exec: bits & 2 != 0,
            no_user: bits & 4 != 0,
            no_write: bits & 8 != 0,
        }
    }

    /// Whether nothing is restricted.
    ///
    /// ```
    /// assert!(awk_paging::arch::Limits::NONE.is_none());
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn is_none(self) -> bool {
        !(self.no_write | self.no_user | self.no_exec | self.no_user_exec)
    }

    /// Whether these limits take away something a leaf with `attrs` grants (so a new leaf
    /// with `attrs` below them would not get what it asks for).
    ///
    /// ```
    /// use awk_paging::{arch::Limits, Attrs, Flags};
    /// let kernel_only = Limits { no_user: true, ..Limits::NONE };
    /// assert!(kernel_only.blocks(Attrs { user: true, ..Attrs::from(Flags::RO) }));
    /// assert!(!kernel_only.blocks(Attrs::from(Flags::RW)));
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn blocks(self, attrs: Attrs) -> bool {
        let f = attrs.flags;
        (self.no_write && f.write)
            || (self.no_user && attrs.user)
            || (f.execute && attrs.user && self.no_user_exec)
            || (f.execute && !attrs.user && self.no_exec)
    }

    /// `attrs` as the hardware grants them below these limits (user pages under a
    /// `no_user` table become kernel-only; a kernel page inherits no execute permission from
    /// a user page's).
    ///
    /// ```
    /// use awk_paging::{arch::Limits, Attrs, Flags};
    /// let nx = Limits { no_exec: true, no_user_exec: true, ..Limits::NONE };
    /// assert!(!nx.apply(Attrs::from(Flags::RX)).flags.execute);
    /// ```
    #[inline(always)]
    #[must_use]
    pub const fn apply(self, attrs: Attrs) -> Attrs {
        let mut a = attrs;
        if self.no_write {
            a.flags.write = false;
        }
        if a.user && self.no_user {
            a.user = false;
            // A user page (never kernel-executable) seen as a kernel page: not executable.
            a.flags.execute = false;
        }
        if a.flags.execute && ((a.user && self.no_user_exec) || (!a.user && self.no_exec)) {
            a.flags.execute = false;
        }
        a
    }
}

/// A format's contiguous hint for leaves at one level (AArch64 D8.6.1 "The Contiguous bit"):
/// `entries` aligned, adjacent leaves mapping one aligned, contiguous output range with
/// identical attributes may all carry `bit`, so the TLB may cache them as one entry. Every entry
/// of a run must agree; the walker only sets the bit on complete runs and clears it on a whole
/// run (with break-before-make) before changing any entry of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContiguousHint {
    /// The descriptor bit.
    pub bit: u64,
    /// Entries in a run (a power of two).
    pub entries: usize,
}

/// An architecture's translation regime: descriptor encoding and address rules.
///
/// Values are small `Copy` configurations (e.g. the AArch64 VA size); methods are called on the
/// hot path and should be `#[inline]`.
///
/// # Safety
///
/// [`Arch::decode`] must return physical addresses below `1 << pa_bits()`, and must decode as
/// [`Entry::Invalid`] every entry the hardware walker would fault on (reserved bits, output
/// addresses beyond the output size, block sizes the CPU lacks); the encodings must be what the
/// hardware walker reads (a wrong encoding is a memory-safety bug on bare metal).
pub unsafe trait Arch: Copy {
    /// Number of translation levels; the root table is at level `levels() - 1`.
    fn levels(&self) -> u8;

    /// Checks that `va` is translated by this regime (canonical and in range).
    fn check_va(&self, va: VirtAddr) -> Result<(), AddrError>;

    /// Output-address width in bits.
    fn pa_bits(&self) -> u32;

    /// Leaf sizes this regime (and CPU) supports.
    fn page_sizes(&self) -> PageSizes;

    /// Decodes a raw entry found at `level`.
    fn decode(&self, raw: u64, level: u8) -> Entry;

    /// A table entry pointing at `table`, for a new table created on the walk to a mapping with
    /// `attrs`.
    fn table_entry(&self, table: PhyAddr, attrs: Attrs) -> u64;

    /// What the table entry `raw` (decoded as [`Entry::Table`] at `level`) forbids below it.
    /// Default: nothing (formats without hierarchical permissions).
    #[inline]
    fn table_limits(&self, _raw: u64, _level: u8) -> Limits {
        Limits::NONE
    }

    /// [`table_limits`](Self::table_limits) as [`Limits::bits`]: what the walker calls on every
    /// table entry it passes, so formats override it with a few bit operations. Must equal
    /// `self.table_limits(raw, level).bits()`.
    #[inline(always)]
    fn table_limit_bits(&self, raw: u64, level: u8) -> u8 {
        self.table_limits(raw, level).bits()
    }

    /// `raw` (an existing table entry whose [`table_limits`](Self::table_limits) block `attrs`)
    /// with those limits lifted, so a new leaf with `attrs` below it takes effect. Must only
    /// clear permission-limiting bits. Default: unchanged.
    #[inline]
    fn widen_table_entry(&self, raw: u64, _attrs: Attrs) -> u64 {
        raw
    }

    /// `raw` (a valid table or leaf entry at `level`) additionally restricted by `limits`: how
    /// a restriction is pushed down one level before the entry above is widened, so existing
    /// mappings keep exactly the permissions they had. Default: unchanged (formats without
    /// hierarchical permissions never need it).
    #[inline]
    fn limit_entry(&self, raw: u64, _level: u8, _limits: Limits) -> u64 {
        raw
    }

    /// The contiguous hint for leaves at `level`, if the format has one there. Default: none.
    #[inline]
    fn contiguous_hint(&self, _level: u8) -> Option<ContiguousHint> {
        None
    }

    /// Whether the hardware itself writes to live entries (x86 Accessed/Dirty; AArch64 only
    /// with FEAT_HAFDBS enabled): then every change of a live leaf is an atomic
    /// read-modify-write so a concurrent hardware update is never lost. Default: `false`.
    #[inline]
    fn hardware_updates_entries(&self) -> bool {
        false
    }

    /// Whether the hardware may still write the live entry `raw` at `level`: only then must a
    /// change of it be an atomic read-modify-write. An x86 leaf with Accessed and Dirty both
    /// set is settled: the processor sets each only while it is clear (Intel SDM Vol. 3A §4.8)
    /// and never clears them, so a plain store over the value read loses nothing (the kernel's
    /// own leaves are created that way, as Linux creates its kernel PTEs). Default:
    /// [`hardware_updates_entries`](Self::hardware_updates_entries).
    #[inline(always)]
    fn hardware_may_write(&self, _raw: u64, _level: u8) -> bool {
        self.hardware_updates_entries()
    }

    /// `new` (a leaf replacing `old` at the same address and frame) with the hardware-managed
    /// state of `old` carried over (x86: Accessed and Dirty). Default: `new`.
    #[inline]
    fn keep_hardware_bits(&self, _old: u64, new: u64) -> u64 {
        new
    }

    /// Whether the leaf `raw` at `level` was accessed and may be dirty, as far as the entry
    /// records it. Default: `(true, true)` — the conservative answer for formats that do not
    /// track it (a kernel then writes the page back).
    #[inline]
    fn accessed_dirty(&self, _raw: u64, _level: u8) -> (bool, bool) {
        (true, true)
    }

    /// `raw` (a leaf at `level`) with its access record cleared if `accessed` and its dirty
    /// record cleared if `dirty`, or `None` if the format keeps neither (nothing to harvest:
    /// [`accessed_dirty`](Self::accessed_dirty) answers conservatively). Default: `None`.
    #[inline]
    fn clear_accessed_dirty(
        &self,
        _raw: u64,
        _level: u8,
        _accessed: bool,
        _dirty: bool,
    ) -> Option<u64> {
        None
    }

    /// `raw` (a leaf at `level`) with its access record set, resolving an access-flag fault
    /// (AArch64 with a software Access flag: a translation through a leaf with AF = 0 faults
    /// until software sets AF), or `None` if the format has no such fault: the hardware sets
    /// the record itself (x86 Accessed) or there is none. Default: `None`.
    ///
    /// No TLB invalidation is needed after it: a TLB never caches a translation whose access
    /// record would fault (AArch64 with TCR_EL1.HA = 0 caches no entry with AF = 0), so there
    /// is no stale entry to drop, and the next walk reads the new value.
    #[inline]
    fn set_accessed(&self, _raw: u64, _level: u8) -> Option<u64> {
        None
    }

    /// A bit of leaf entries (at every level) that the hardware ignores and leaves to
    /// software, used by [`space`](crate::space) to mark copy-on-write pages (x86: bit 9;
    /// AArch64: bit 55, the first of the software bits 58:55). `0`: the format has none, and
    /// copy-on-write is refused. Default: `0`.
    #[inline]
    fn software_bit(&self) -> u64 {
        0
    }

    /// A leaf entry at `level` mapping `pa` with `attrs` (already validated by
    /// [`Attrs::validate`]).
    fn leaf_entry(&self, pa: PhyAddr, level: u8, attrs: Attrs) -> u64;

    /// The attributes a leaf entry found at `level` grants on its own.
    fn leaf_attrs(&self, raw: u64, level: u8) -> Attrs;

    /// The bits of every leaf at `level` with `attrs` but its output address, if a leaf is
    /// exactly those bits with the address ORed in: `Some(t)` promises
    /// `leaf_entry(pa, level, attrs) == t | pa.as_u64()` for every `pa` aligned to the level's
    /// page size and below `1 << pa_bits()`. Range operations then encode a table's leaves
    /// with one OR each rather than one [`leaf_entry`](Self::leaf_entry) call each. Default:
    /// `None` (they call `leaf_entry`).
    #[inline]
    fn leaf_template(&self, _level: u8, _attrs: Attrs) -> Option<u64> {
        None
    }

    /// The attributes a leaf entry found at `level` grants under the table `limits` of every
    /// level above it — what the MMU enforces. Default: [`Limits::apply`].
    #[inline]
    fn effective_attrs(&self, raw: u64, level: u8, limits: Limits) -> Attrs {
        limits.apply(self.leaf_attrs(raw, level))
    }

    /// The virtual address whose table indices (and offset) are the low bits of `bits` — how a
    /// walk names what it finds. Default: sign-extended from the highest translated bit (x86
    /// canonical form; both halves of a 48-bit space).
    #[inline]
    fn va_from_bits(&self, bits: u64) -> VirtAddr {
        let span = (12 + 9 * u32::from(self.levels())).min(64);
        let shift = 64 - span;
        VirtAddr::new((((bits << shift) as i64) >> shift) as u64)
    }

    /// Whether replacing valid leaf `old` by `new` needs break-before-make (write invalid, flush,
    /// then write `new`). Default: whenever the output address or memory type changes, which is
    /// what AArch64 requires (Arm ARM D8.16.1); x86 can answer `false`.
    #[inline]
    fn needs_break_before_make(&self, old: u64, new: u64, level: u8) -> bool {
        let (a, b) = (self.decode(old, level), self.decode(new, level));
        a != b
            || self.leaf_attrs(old, level).flags.memory_type()
                != self.leaf_attrs(new, level).flags.memory_type()
    }
}

/// The index into the table at `level` for `va` (9 bits per level above the 4 KiB offset).
/// Levels above 5 (which no format has) are clamped to 5, so the function is total.
///
/// ```
/// use awk_paging::{arch::table_index, VirtAddr};
/// let va = VirtAddr::new(0x0000_7fff_ffff_f000);
/// assert_eq!(table_index(va, 3), 255);
/// assert_eq!(table_index(va, 0), 511);
/// assert_eq!(table_index(va, 7), table_index(va, 5)); // clamped, no panic
/// ```
#[inline(always)]
#[must_use]
pub const fn table_index(va: VirtAddr, level: u8) -> usize {
    let level = if level > 5 { 5 } else { level };
    ((va.as_u64() >> (12 + 9 * level as u32)) & 0x1ff) as usize
}

/// Checks that `va` is the sign extension of its low `bits` bits (x86 canonical form with
/// `bits = 48`; both halves of a `bits`-wide space). `bits` is clamped to `1..=64`: 64 accepts
/// every address, 0 is treated as 1 (only 0 and `u64::MAX`).
///
/// ```
/// use awk_paging::{arch::check_sign_extended, AddrError, VirtAddr};
/// assert!(check_sign_extended(VirtAddr::new(0xffff_8000_0000_0000), 48).is_ok());
/// assert_eq!(check_sign_extended(VirtAddr::new(0x0000_8000_0000_0000), 48), Err(AddrError::NonCanonical));
/// assert!(check_sign_extended(VirtAddr::new(0x1234), 65).is_ok()); // clamped to 64, no panic
/// assert!(check_sign_extended(VirtAddr::new(1), 0).is_err());     // clamped to 1
/// ```
#[inline(always)]
pub const fn check_sign_extended(va: VirtAddr, bits: u32) -> Result<(), AddrError> {
    let bits = if bits == 0 {
        1
    } else if bits > 64 {
        64
    } else {
        bits
    };
    let top = (va.as_u64() as i64) >> (bits - 1);
    if top == 0 || top == -1 {
        Ok(())
    } else {
        Err(AddrError::NonCanonical)
    }
}
