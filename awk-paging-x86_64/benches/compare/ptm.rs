//! `page_table_multiarch`'s generic `PageTable64`, with its own x86_64 entry (`X64PTE`) and with
//! an AArch64 entry written here ([`HostA64Pte`]): the crate's AArch64 table type only compiles
//! for aarch64 targets, but its generic table and `GenericPTE` trait compile anywhere.

use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::{
    GenericPTE, MappingFlags, PageSize, PageTable64, PagingHandler, PagingMetaData,
};

use crate::arena;
use crate::subject::{Size, Subject};

/// The arena as `page_table_multiarch`'s (static) frame source; physical addresses are host
/// addresses (offset 0).
pub struct ArenaHandler;

impl PagingHandler for ArenaHandler {
    #[inline(always)]
    fn alloc_frames(num: usize, _align: usize) -> Option<PhysAddr> {
        assert_eq!(num, 1, "tables are single frames");
        arena::alloc().map(|f| PhysAddr::from(f as usize))
    }

    #[inline(always)]
    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        assert_eq!(num, 1);
        // SAFETY: the table is being freed by its page table.
        unsafe { arena::free(paddr.as_usize() as u64) }
    }

    #[inline(always)]
    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

/// 4-level, 48-bit VMSAv8-64 (4 KiB granule) metadata for the host: no TLB to flush
/// (`PageTable64` only flushes on bare metal anyway).
pub struct HostA64Meta;

impl PagingMetaData for HostA64Meta {
    const LEVELS: usize = 4;
    const PA_MAX_BITS: usize = 48;
    const VA_MAX_BITS: usize = 48;
    type VirtAddr = VirtAddr;

    #[inline(always)]
    fn flush_tlb(_vaddr: Option<VirtAddr>) {}
}

/// A VMSAv8-64 stage-1 descriptor, 4 KiB granule, written for this benchmark from the Arm ARM
/// (D8.3, "Translation table descriptor formats"):
///
/// | bits | field |
/// |---|---|
/// | 0 | valid |
/// | 1 | 1: table (levels 0–2) or page (level 3); 0: block (levels 1–2) |
/// | 4:2 | AttrIndx (MAIR_EL1 index; here 0 = Normal write-back, 1 = Device-nGnRE, 2 = Normal non-cacheable) |
/// | 7:6 | AP\[2:1\]: bit 7 read-only, bit 6 EL0 access |
/// | 9:8 | SH (0b11 inner shareable) |
/// | 10 | AF (access flag) |
/// | 47:12 | output address |
/// | 53 | PXN |
/// | 54 | UXN |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct HostA64Pte(u64);

impl HostA64Pte {
    const VALID: u64 = 1 << 0;
    const NOT_BLOCK: u64 = 1 << 1;
    const ATTR_SHIFT: u32 = 2;
    const ATTR_MASK: u64 = 0b111 << 2;
    const ATTR_NORMAL: u64 = 0;
    const ATTR_DEVICE: u64 = 1;
    const ATTR_NORMAL_NC: u64 = 2;
    const AP_EL0: u64 = 1 << 6;
    const AP_RO: u64 = 1 << 7;
    const SH_INNER: u64 = 0b11 << 8;
    const AF: u64 = 1 << 10;
    const OA: u64 = 0x0000_ffff_ffff_f000;
    const PXN: u64 = 1 << 53;
    const UXN: u64 = 1 << 54;

    /// The attribute bits (everything but valid, type and output address) for `flags`.
    #[inline(always)]
    fn attr_bits(flags: MappingFlags) -> u64 {
        let index = if flags.contains(MappingFlags::DEVICE) {
            Self::ATTR_DEVICE
        } else if flags.contains(MappingFlags::UNCACHED) {
            Self::ATTR_NORMAL_NC
        } else {
            Self::ATTR_NORMAL
        };
        let mut d = Self::AF | Self::SH_INNER | (index << Self::ATTR_SHIFT);
        if !flags.contains(MappingFlags::WRITE) {
            d |= Self::AP_RO;
        }
        let user = flags.contains(MappingFlags::USER);
        if user {
            d |= Self::AP_EL0 | Self::PXN; // EL1 never executes EL0 code
        } else {
            d |= Self::UXN;
        }
        if !flags.contains(MappingFlags::EXECUTE) || index == Self::ATTR_DEVICE {
            d |= Self::PXN | Self::UXN;
        }
        d
    }
}

impl GenericPTE for HostA64Pte {
    #[inline(always)]
    fn new_page(paddr: PhysAddr, flags: MappingFlags, is_huge: bool) -> Self {
        let kind = if is_huge { 0 } else { Self::NOT_BLOCK };
        let valid = if flags.is_empty() { 0 } else { Self::VALID };
        HostA64Pte(valid | kind | Self::attr_bits(flags) | (paddr.as_usize() as u64 & Self::OA))
    }

    #[inline(always)]
    fn new_table(paddr: PhysAddr) -> Self {
        HostA64Pte(Self::VALID | Self::NOT_BLOCK | (paddr.as_usize() as u64 & Self::OA))
    }

    #[inline(always)]
    fn paddr(&self) -> PhysAddr {
        PhysAddr::from((self.0 & Self::OA) as usize)
    }

    #[inline(always)]
    fn flags(&self) -> MappingFlags {
        if self.0 & Self::VALID == 0 {
            return MappingFlags::empty();
        }
        let mut f = MappingFlags::READ;
        if self.0 & Self::AP_RO == 0 {
            f |= MappingFlags::WRITE;
        }
        let user = self.0 & Self::AP_EL0 != 0;
        if user {
            f |= MappingFlags::USER;
        }
        let xn = if user { Self::UXN } else { Self::PXN };
        if self.0 & xn == 0 {
            f |= MappingFlags::EXECUTE;
        }
        match (self.0 & Self::ATTR_MASK) >> Self::ATTR_SHIFT {
            Self::ATTR_DEVICE => f |= MappingFlags::DEVICE,
            Self::ATTR_NORMAL_NC => f |= MappingFlags::UNCACHED,
            _ => {}
        }
        f
    }

    #[inline(always)]
    fn set_paddr(&mut self, paddr: PhysAddr) {
        self.0 = (self.0 & !Self::OA) | (paddr.as_usize() as u64 & Self::OA);
    }

    #[inline(always)]
    fn set_flags(&mut self, flags: MappingFlags, is_huge: bool) {
        let kind = if is_huge { 0 } else { Self::NOT_BLOCK };
        let valid = if flags.is_empty() { 0 } else { Self::VALID };
        self.0 = (self.0 & Self::OA) | valid | kind | Self::attr_bits(flags);
    }

    #[inline(always)]
    fn bits(self) -> usize {
        self.0 as usize
    }

    #[inline(always)]
    fn is_unused(&self) -> bool {
        self.0 == 0
    }

    #[inline(always)]
    fn is_present(&self) -> bool {
        self.0 & Self::VALID != 0
    }

    #[inline(always)]
    fn is_huge(&self) -> bool {
        self.0 & (Self::VALID | Self::NOT_BLOCK) == Self::VALID
    }

    #[inline(always)]
    fn clear(&mut self) {
        self.0 = 0;
    }
}

pub type PtmX64 =
    Ptm<page_table_multiarch::x86_64::X64PagingMetaData, page_table_entry::x86_64::X64PTE>;
pub type PtmA64 = Ptm<HostA64Meta, HostA64Pte>;

/// One `PageTable64`; each operation goes through a cursor (the crate's editing API), which
/// would batch TLB flushes on bare metal.
pub struct Ptm<M: PagingMetaData<VirtAddr = VirtAddr>, P: GenericPTE>(
    pub PageTable64<M, P, ArenaHandler>,
);

#[inline(always)]
pub const fn ptm_size(size: Size) -> PageSize {
    match size {
        Size::K4 => PageSize::Size4K,
        Size::M2 => PageSize::Size2M,
    }
}

const RW: MappingFlags = MappingFlags::READ.union(MappingFlags::WRITE);

impl<M: PagingMetaData<VirtAddr = VirtAddr>, P: GenericPTE> Subject for Ptm<M, P> {
    fn new() -> Self {
        Ptm(PageTable64::try_new().expect("root frame"))
    }

    #[inline(always)]
    fn map(&mut self, va: u64, pa: u64, size: Size) -> Option<u64> {
        let (va, pa) = (VirtAddr::from(va as usize), PhysAddr::from(pa as usize));
        self.0.cursor().map(va, pa, ptm_size(size), RW).ok()?;
        Some(1)
    }

    #[inline(always)]
    fn translate(&mut self, va: u64, _size: Size) -> Option<u64> {
        let (pa, _, _) = self.0.query(VirtAddr::from(va as usize)).ok()?;
        Some(pa.as_usize() as u64)
    }

    #[inline(always)]
    fn protect(&mut self, va: u64, _size: Size) -> Option<u64> {
        let va = VirtAddr::from(va as usize);
        self.0.cursor().protect(va, MappingFlags::READ).ok()?;
        Some(1)
    }

    #[inline(always)]
    fn unmap(&mut self, va: u64, _size: Size) -> Option<u64> {
        let (pa, _, _) = self.0.cursor().unmap(VirtAddr::from(va as usize)).ok()?;
        Some(pa.as_usize() as u64)
    }

    fn teardown(self) {
        drop(self.0); // frees every table
    }
}
