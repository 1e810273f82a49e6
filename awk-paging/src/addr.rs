//! Typed virtual and physical addresses.
//!
//! Both are plain 64-bit newtypes: which values are *valid* depends on the translation regime
//! (x86 canonical form, AArch64 TTBR0/TTBR1 ranges, the CPU's physical-address width), so
//! validation happens where the regime is known — in the page table — and yields a precise error
//! there instead of a panic here.

use core::fmt;

use crate::PageSize;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The address `0`.
            pub const ZERO: Self = Self(0);

            /// Wraps a raw address.
            ///
            /// ```
            #[doc = concat!("let a = awk_paging::", stringify!($name), "::new(0x1000);")]
            /// assert_eq!(a.as_u64(), 0x1000);
            /// ```
            #[inline]
            #[must_use]
            pub const fn new(addr: u64) -> Self {
                Self(addr)
            }

            /// The raw address.
            ///
            /// ```
            #[doc = concat!("assert_eq!(awk_paging::", stringify!($name), "::new(7).as_u64(), 7);")]
            /// ```
            #[inline]
            #[must_use]
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Whether the address is a multiple of `size`.
            ///
            /// ```
            #[doc = concat!("use awk_paging::{", stringify!($name), ", PageSize};")]
            #[doc = concat!("assert!(", stringify!($name), "::new(0x20_0000).is_aligned(PageSize::Size2M));")]
            #[doc = concat!("assert!(!", stringify!($name), "::new(0x1000).is_aligned(PageSize::Size2M));")]
            /// ```
            #[inline]
            #[must_use]
            pub const fn is_aligned(self, size: PageSize) -> bool {
                self.0 & size.offset_mask() == 0
            }

            /// Rounds down to a multiple of `size`.
            ///
            /// ```
            #[doc = concat!("use awk_paging::{", stringify!($name), ", PageSize};")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::new(0x1234).align_down(PageSize::Size4K).as_u64(), 0x1000);")]
            /// ```
            #[inline]
            #[must_use]
            pub const fn align_down(self, size: PageSize) -> Self {
                Self(self.0 & !size.offset_mask())
            }

            /// Rounds up to a multiple of `size`; `None` if that overflows.
            ///
            /// ```
            #[doc = concat!("use awk_paging::{", stringify!($name), ", PageSize};")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::new(0x1001).align_up(PageSize::Size4K).unwrap().as_u64(), 0x2000);")]
            #[doc = concat!("assert!(", stringify!($name), "::new(u64::MAX).align_up(PageSize::Size4K).is_none());")]
            /// ```
            #[inline]
            #[must_use]
            pub const fn align_up(self, size: PageSize) -> Option<Self> {
                match self.0.checked_add(size.offset_mask()) {
                    Some(v) => Some(Self(v & !size.offset_mask())),
                    None => None,
                }
            }

            /// The offset of this address inside a page of `size`.
            ///
            /// ```
            #[doc = concat!("use awk_paging::{", stringify!($name), ", PageSize};")]
            #[doc = concat!("assert_eq!(", stringify!($name), "::new(0x1234).page_offset(PageSize::Size4K), 0x234);")]
            /// ```
            #[inline]
            #[must_use]
            pub const fn page_offset(self, size: PageSize) -> u64 {
                self.0 & size.offset_mask()
            }

            /// `self + bytes`, or `None` on overflow.
            ///
            /// ```
            #[doc = concat!("let a = awk_paging::", stringify!($name), "::new(u64::MAX - 1);")]
            /// assert_eq!(a.checked_add(1).unwrap().as_u64(), u64::MAX);
            /// assert!(a.checked_add(2).is_none());
            /// ```
            #[inline]
            #[must_use]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - bytes`, or `None` on underflow.
            ///
            /// ```
            #[doc = concat!("let a = awk_paging::", stringify!($name), "::new(0x1000);")]
            /// assert_eq!(a.checked_sub(0x1000).unwrap().as_u64(), 0);
            /// assert!(a.checked_sub(0x1001).is_none());
            /// ```
            #[inline]
            #[must_use]
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl From<$name> for u64 {
            #[inline]
            fn from(a: $name) -> u64 {
                a.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::UpperHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::UpperHex::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type! {
    /// A virtual address.
    ///
    /// ```
    /// use awk_paging::VirtAddr;
    /// let va = VirtAddr::new(0xffff_8000_0000_1234);
    /// assert_eq!(format!("{va:?}"), "VirtAddr(0xffff800000001234)");
    /// ```
    VirtAddr
}

address_type! {
    /// A physical address.
    ///
    /// ```
    /// use awk_paging::PhyAddr;
    /// let pa = PhyAddr::new(0x4000_0000);
    /// assert_eq!(format!("{pa}"), "0x40000000");
    /// ```
    PhyAddr
}

#[cfg(feature = "x86_64")]
mod x86_conversions {
    //! Conversions to and from the `x86_64` crate's address types.
    //!
    //! `x86_64::VirtAddr` is canonical by construction, so the conversion *into* it is fallible;
    //! `x86_64::PhysAddr` holds at most 52 bits, likewise.
    use super::{PhyAddr, VirtAddr};

    impl From<x86_64::VirtAddr> for VirtAddr {
        #[inline]
        fn from(a: x86_64::VirtAddr) -> Self {
            VirtAddr::new(a.as_u64())
        }
    }

    impl From<x86_64::PhysAddr> for PhyAddr {
        #[inline]
        fn from(a: x86_64::PhysAddr) -> Self {
            PhyAddr::new(a.as_u64())
        }
    }

    impl TryFrom<VirtAddr> for x86_64::VirtAddr {
        type Error = x86_64::addr::VirtAddrNotValid;
        /// Fails unless the address is canonical (bits 63..47 all equal).
        #[inline]
        fn try_from(a: VirtAddr) -> Result<Self, Self::Error> {
            x86_64::VirtAddr::try_new(a.as_u64())
        }
    }

    impl TryFrom<PhyAddr> for x86_64::PhysAddr {
        type Error = x86_64::addr::PhysAddrNotValid;
        /// Fails when bits 63..52 are not zero.
        #[inline]
        fn try_from(a: PhyAddr) -> Result<Self, Self::Error> {
            x86_64::PhysAddr::try_new(a.as_u64())
        }
    }
}
