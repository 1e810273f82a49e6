//! Page sizes of the 4 KiB-granule, 512-entry-table formats that x86_64 and AArch64 share.

use core::fmt;

/// The base page size in bytes (the seed API's constant).
pub const PAGESIZE: usize = 4096;

/// Entries in one translation table (4 KiB of 8-byte entries, both architectures).
pub const ENTRIES: usize = 512;

/// A page (or block) size: the span one leaf entry maps.
///
/// `level()` is the table level whose entries map pages of this size, counted from the leaf
/// tables (level 0 = 4 KiB pages, level 1 = 2 MiB, level 2 = 1 GiB). This numbering is the same on
/// both architectures, so the walker can be shared; the architecture names (PT/PD/PDPT on x86,
/// L3/L2/L1 on AArch64) are used only in docs.
///
/// ```
/// use awk_paging::PageSize;
/// assert_eq!(PageSize::Size2M.bytes(), 2 * 1024 * 1024);
/// assert_eq!(PageSize::Size1G.level(), 2);
/// assert_eq!(PageSize::from_level(1), Some(PageSize::Size2M));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB: x86 PT entry, AArch64 level-3 page descriptor.
    Size4K,
    /// 2 MiB: x86 PD entry with PS, AArch64 level-2 block descriptor.
    Size2M,
    /// 1 GiB: x86 PDPT entry with PS (CPUs with `pdpe1gb`), AArch64 level-1 block descriptor.
    Size1G,
}

impl PageSize {
    /// All sizes, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    /// log2 of the size in bytes.
    ///
    /// ```
    /// assert_eq!(awk_paging::PageSize::Size4K.shift(), 12);
    /// ```
    #[inline]
    #[must_use]
    pub const fn shift(self) -> u32 {
        12 + 9 * self.level() as u32
    }

    /// The size in bytes.
    ///
    /// ```
    /// assert_eq!(awk_paging::PageSize::Size1G.bytes(), 1 << 30);
    /// ```
    #[inline]
    #[must_use]
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// `bytes() - 1`: the mask of the in-page offset bits.
    ///
    /// ```
    /// assert_eq!(awk_paging::PageSize::Size4K.offset_mask(), 0xfff);
    /// ```
    #[inline]
    #[must_use]
    pub const fn offset_mask(self) -> u64 {
        self.bytes() - 1
    }

    /// The table level (0 = leaf tables) whose entries map pages of this size.
    ///
    /// ```
    /// assert_eq!(awk_paging::PageSize::Size4K.level(), 0);
    /// ```
    #[inline]
    #[must_use]
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
            PageSize::Size1G => 2,
        }
    }

    /// The size mapped by a leaf at `level`, if leaves exist there.
    ///
    /// ```
    /// assert_eq!(awk_paging::PageSize::from_level(3), None);
    /// ```
    #[inline]
    #[must_use]
    pub const fn from_level(level: u8) -> Option<PageSize> {
        match level {
            0 => Some(PageSize::Size4K),
            1 => Some(PageSize::Size2M),
            2 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        })
    }
}

/// A set of page sizes (which leaf sizes a translation regime supports).
///
/// ```
/// use awk_paging::{PageSize, PageSizes};
/// let s = PageSizes::EMPTY.with(PageSize::Size4K).with(PageSize::Size2M);
/// assert!(s.contains(PageSize::Size2M));
/// assert!(!s.contains(PageSize::Size1G));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSizes(u8);

impl PageSizes {
    /// No sizes.
    pub const EMPTY: PageSizes = PageSizes(0);
    /// 4 KiB, 2 MiB and 1 GiB.
    pub const ALL: PageSizes = PageSizes(0b111);

    /// This set plus `size`.
    ///
    /// ```
    /// use awk_paging::{PageSize, PageSizes};
    /// assert!(PageSizes::EMPTY.with(PageSize::Size1G).contains(PageSize::Size1G));
    /// ```
    #[inline]
    #[must_use]
    pub const fn with(self, size: PageSize) -> PageSizes {
        PageSizes(self.0 | 1 << size.level())
    }

    /// This set minus `size`.
    ///
    /// ```
    /// use awk_paging::{PageSize, PageSizes};
    /// assert!(!PageSizes::ALL.without(PageSize::Size1G).contains(PageSize::Size1G));
    /// ```
    #[inline]
    #[must_use]
    pub const fn without(self, size: PageSize) -> PageSizes {
        PageSizes(self.0 & !(1 << size.level()))
    }

    /// Whether `size` is in the set.
    ///
    /// ```
    /// use awk_paging::{PageSize, PageSizes};
    /// assert!(PageSizes::ALL.contains(PageSize::Size4K));
    /// ```
    #[inline]
    #[must_use]
    pub const fn contains(self, size: PageSize) -> bool {
        self.0 & 1 << size.level() != 0
    }
}
