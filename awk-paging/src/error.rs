//! Per-operation error enums.
//!
//! Every operation validates its whole input before it touches a table, so an `Err` always means
//! "nothing changed" (and, where an operation allocates, "no frame leaked").

use core::fmt;

use crate::{FlagsError, PageSize};

/// Why an address was rejected before any table was touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrError {
    /// The virtual or physical address is not a multiple of the page size.
    NotAligned,
    /// The virtual address is not canonical (x86: bits 63..47 differ; AArch64: neither all
    /// zeros nor all ones above the configured VA size).
    NonCanonical,
    /// The virtual address is canonical but outside the range this table translates
    /// (e.g. an upper-half address given to an AArch64 TTBR0 table).
    OutOfRange,
    /// The physical address has bits set above the output-address width.
    PhysTooWide,
    /// The range wraps around the end of the address space.
    Overflow,
}

macro_rules! op_error {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$vdoc:meta])* $variant:ident $( ( $ty:ty ) )? => $msg:literal, )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vdoc])* $variant $( ( $ty ) )?, )*
        }

        impl fmt::Display for $name {
            #[allow(unused_variables)]
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( op_error!(@pat $name $variant $( $ty )?) => {
                        f.write_str($msg)?;
                        op_error!(@detail f self $name $variant $( $ty )?);
                        Ok(())
                    } )*
                }
            }
        }
    };
    (@pat $name:ident $variant:ident $ty:ty) => { $name::$variant(_) };
    (@pat $name:ident $variant:ident) => { $name::$variant };
    (@detail $f:ident $self:ident $name:ident $variant:ident $ty:ty) => {
        if let $name::$variant(inner) = $self {
            write!($f, ": {inner}")?;
        }
    };
    (@detail $f:ident $self:ident $name:ident $variant:ident) => {};
}

op_error! {
    /// Why `map` failed. The seed API's error type.
    MapError {
        /// The frame allocator ran out while creating intermediate tables.
        OutOfMemory => "out of memory for page tables",
        /// The virtual page (or part of a larger page) is already mapped.
        AlreadyMapped => "virtual address already mapped",
        /// The static API has no table installed yet.
        NotInitialized => "static page-table API not initialised",
        /// The static API was called while this CPU holds its lock (from the frame allocator, the
        /// TLB hook or an exception handler); waiting would deadlock.
        Reentered => "page-table lock re-entered on the CPU holding it",
        /// A table on the walk is unreachable or malformed.
        InvalidPageTable => "invalid page table",
        /// The virtual or physical address is not aligned to the page size.
        AddressNotAligned => "address not aligned to the page size",
        /// The virtual address is not canonical.
        NonCanonicalAddress => "virtual address not canonical",
        /// The virtual address is outside the range this table translates.
        AddressOutOfRange => "virtual address outside the translated range",
        /// The physical address is wider than the output-address size.
        PhysAddrTooWide => "physical address too wide",
        /// The flag combination is rejected.
        InvalidFlags(FlagsError) => "invalid flags",
        /// A huge page was requested where a lower-level table already exists.
        HugePageConflict => "huge page conflicts with an existing page table",
        /// This translation regime (or CPU) has no leaves of that size.
        PageSizeNotSupported(PageSize) => "page size not supported",
        /// The allocator returned a frame for a new table above the output-address width (or
        /// one the physical-memory accessor cannot reach): the hardware could not walk it. The
        /// frame was given back.
        TableFrameTooWide => "allocated table frame above the output-address width",
        /// The walk to the address re-enters a table already on its path (a recursive slot):
        /// editing there would treat a table as a page.
        RecursiveTable => "walk re-enters a table on its own path (recursive entry)",
    }
}

op_error! {
    /// Why `unmap` failed.
    UnmapError {
        /// Nothing is mapped at the address.
        NotMapped => "virtual address not mapped",
        /// The address is not aligned to the page size.
        AddressNotAligned => "address not aligned to the page size",
        /// The virtual address is not canonical.
        NonCanonicalAddress => "virtual address not canonical",
        /// The virtual address is outside the range this table translates.
        AddressOutOfRange => "virtual address outside the translated range",
        /// A smaller page than the one asked for is mapped at the address (the found size).
        PageSizeMismatch(PageSize) => "a smaller page is mapped at the address",
        /// The page asked for lies inside (or at the start of) a larger page, of this size;
        /// unmapping part of it needs a split (`unmap_range`).
        InsideHugePage(PageSize) => "address lies inside a larger page",
        /// The static API has no table installed yet.
        NotInitialized => "static page-table API not initialised",
        /// The static API was called while this CPU holds its lock (from the frame allocator, the
        /// TLB hook or an exception handler); waiting would deadlock.
        Reentered => "page-table lock re-entered on the CPU holding it",
        /// A table on the walk is unreachable or malformed.
        InvalidPageTable => "invalid page table",
        /// A huge page straddling the range must be split and the frame allocator ran out.
        OutOfMemory => "out of memory for page tables",
        /// The allocator returned a table frame above the output-address width.
        TableFrameTooWide => "allocated table frame above the output-address width",
        /// The walk to the address re-enters a table already on its path (a recursive slot).
        RecursiveTable => "walk re-enters a table on its own path (recursive entry)",
    }
}

op_error! {
    /// Why changing a mapping's attributes failed.
    ProtectError {
        /// Nothing is mapped at the address.
        NotMapped => "virtual address not mapped",
        /// The address is not aligned to the page size.
        AddressNotAligned => "address not aligned to the page size",
        /// The virtual address is not canonical.
        NonCanonicalAddress => "virtual address not canonical",
        /// The virtual address is outside the range this table translates.
        AddressOutOfRange => "virtual address outside the translated range",
        /// A smaller page than the one asked for is mapped at the address (the found size).
        PageSizeMismatch(PageSize) => "a smaller page is mapped at the address",
        /// The page asked for lies inside (or at the start of) a larger page, of this size;
        /// changing part of it needs a split (`protect_range`).
        InsideHugePage(PageSize) => "address lies inside a larger page",
        /// The new flag combination is rejected.
        InvalidFlags(FlagsError) => "invalid flags",
        /// A table on the walk is unreachable or malformed, or the static API is not initialised.
        InvalidPageTable => "invalid page table",
        /// A huge page straddling the range must be split and the frame allocator ran out.
        OutOfMemory => "out of memory for page tables",
        /// The allocator returned a table frame above the output-address width.
        TableFrameTooWide => "allocated table frame above the output-address width",
        /// The walk to the address re-enters a table already on its path (a recursive slot).
        RecursiveTable => "walk re-enters a table on its own path (recursive entry)",
    }
}

op_error! {
    /// Why a translation failed.
    TranslateError {
        /// Nothing is mapped at the address.
        NotMapped => "virtual address not mapped",
        /// The virtual address is not canonical.
        NonCanonicalAddress => "virtual address not canonical",
        /// The virtual address is outside the range this table translates.
        AddressOutOfRange => "virtual address outside the translated range",
        /// The static API has no table installed yet.
        NotInitialized => "static page-table API not initialised",
        /// The static API was called while this CPU holds its lock (from the frame allocator, the
        /// TLB hook or an exception handler); waiting would deadlock.
        Reentered => "page-table lock re-entered on the CPU holding it",
        /// A table on the walk is unreachable or malformed.
        InvalidPageTable => "invalid page table",
    }
}

/// A range operation's error, with the address where it was found. An `Err` from a range
/// operation means nothing changed.
///
/// ```
/// use awk_paging::{MapError, RangeError, VirtAddr};
/// let e = RangeError { at: VirtAddr::new(0x5000), error: MapError::AlreadyMapped };
/// assert_eq!(e.to_string(), "virtual address already mapped at 0x5000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RangeError<E> {
    /// The first address the error concerns.
    pub at: crate::VirtAddr,
    /// What went wrong there.
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for RangeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}", self.error, self.at.as_u64())
    }
}

impl From<AddrError> for MapError {
    #[inline]
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::NotAligned => MapError::AddressNotAligned,
            AddrError::NonCanonical => MapError::NonCanonicalAddress,
            AddrError::OutOfRange | AddrError::Overflow => MapError::AddressOutOfRange,
            AddrError::PhysTooWide => MapError::PhysAddrTooWide,
        }
    }
}

impl From<AddrError> for UnmapError {
    #[inline]
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::NotAligned => UnmapError::AddressNotAligned,
            AddrError::NonCanonical => UnmapError::NonCanonicalAddress,
            AddrError::OutOfRange | AddrError::Overflow | AddrError::PhysTooWide => {
                UnmapError::AddressOutOfRange
            }
        }
    }
}

impl From<AddrError> for ProtectError {
    #[inline]
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::NotAligned => ProtectError::AddressNotAligned,
            AddrError::NonCanonical => ProtectError::NonCanonicalAddress,
            AddrError::OutOfRange | AddrError::Overflow | AddrError::PhysTooWide => {
                ProtectError::AddressOutOfRange
            }
        }
    }
}

impl From<AddrError> for TranslateError {
    #[inline]
    fn from(e: AddrError) -> Self {
        match e {
            AddrError::NonCanonical => TranslateError::NonCanonicalAddress,
            _ => TranslateError::AddressOutOfRange,
        }
    }
}

impl From<FlagsError> for MapError {
    #[inline]
    fn from(e: FlagsError) -> Self {
        MapError::InvalidFlags(e)
    }
}

impl From<FlagsError> for ProtectError {
    #[inline]
    fn from(e: FlagsError) -> Self {
        ProtectError::InvalidFlags(e)
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::NotAligned => "address not aligned",
            AddrError::NonCanonical => "virtual address not canonical",
            AddrError::OutOfRange => "virtual address outside the translated range",
            AddrError::PhysTooWide => "physical address too wide",
            AddrError::Overflow => "range wraps around the address space",
        })
    }
}
