//! Allocating ranges (memory backed by fresh frames from the table's allocator, given back
//! after the flush when unmapped) and identity maps.

use super::range::MapPlan;
use super::reserve::Reserve;
use super::PageTable;
use crate::arch::Arch;
use crate::{
    Attrs, FrameAllocator, Gather, MapError, PageSize, PhyAddr, PhysMem, RangeError, RangeOptions,
    Tlb, UnmapError, VirtAddr,
};

/// Frames `unmap_range_free` collects before it flushes and gives them back (one 2 MiB slice).
const FREE_BATCH: usize = 512;

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Maps `va .. va + len` with 4 KiB pages backed by fresh frames from this table's
    /// allocator, zeroed if `zero` (otherwise their contents are whatever the allocator had,
    /// except the first word). Fails, changing nothing and allocating nothing, if anything in
    /// the range is mapped or the frames (data and tables) cannot all be taken.
    ///
    /// # Safety
    ///
    /// As [`map_range`](Self::map_range).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::{Flags, NoTlb, PageTable, VirtAddr};
    ///
    /// let mem = EmuMemory::new(16);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let va = VirtAddr::new(0x4000_0000);
    /// let mut g = pt.gather();
    /// unsafe { pt.map_range_alloc(va, 0x3000, Flags::RW, true, &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), 4 + 3); // root, three tables, three data frames
    /// let mut g = pt.gather();
    /// unsafe { pt.unmap_range_free(va, 0x3000, &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), 1); // data frames and emptied tables went back
    /// ```
    pub unsafe fn map_range_alloc(
        &mut self,
        va: VirtAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        zero: bool,
        gather: &mut Gather,
    ) -> Result<(), RangeError<MapError>> {
        let attrs = attrs.into();
        let fail = |error| RangeError { at: va, error };
        if gather.root != self.root {
            return Err(fail(MapError::InvalidPageTable));
        }
        attrs.validate(self.policy).map_err(|e| fail(e.into()))?;
        let span = self.span(va, len)?;
        if len == 0 {
            return Ok(());
        }
        let plan = MapPlan {
            start: span.start,
            end: span.end,
            pa: 0,
            attrs,
            cap: PageSize::Size4K,
            tables: 0,
            reserve: Reserve::default(),
            gather,
            widened: false,
            data: None,
        };
        self.run_map_plan(va, span, plan, Some(((len >> 12) as usize, zero)))
    }

    /// Unmaps `va .. va + len` like [`unmap_range`](Self::unmap_range) and gives every data
    /// frame back to this table's allocator — after the TLB invalidation that makes it
    /// unreachable: the range is processed in 2 MiB slices, and `gather` is finished (flushed,
    /// detached tables freed) after each slice, before that slice's frames are freed. Larger
    /// pages in the range are returned as their 4 KiB frames.
    ///
    /// # Safety
    ///
    /// As [`unmap_range`](Self::unmap_range); moreover every frame mapped in the range must
    /// have come from this table's allocator (as [`map_range_alloc`](Self::map_range_alloc)
    /// maps them) and be mapped nowhere else.
    ///
    /// # Errors
    ///
    /// Invalid input changes nothing. Out of memory for splitting a huge page can only happen
    /// in the first or last slice (splits happen at the range's ends); in the last slice the
    /// error's address says where: everything before it was unmapped and freed.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::{Flags, NoTlb, PageTable, VirtAddr};
    /// # let mem = EmuMemory::new(8);
    /// # let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let mut g = pt.gather();
    /// unsafe { pt.map_range_alloc(VirtAddr::new(0x1000), 0x1000, Flags::RW, false, &mut g) }.unwrap();
    /// unsafe { pt.unmap_range_free(VirtAddr::new(0x1000), 0x1000, &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(mem.frames_in_use(), 1);
    /// ```
    pub unsafe fn unmap_range_free(
        &mut self,
        va: VirtAddr,
        len: u64,
        gather: &mut Gather,
    ) -> Result<(), RangeError<UnmapError>> {
        // Validate the whole range first (nothing changes on error).
        self.span(va, len)?;
        // Lengths, not end addresses: the range may end at the top of the address space.
        let (mut at, mut left) = (va.as_u64(), len);
        while left > 0 {
            let slice = (0x20_0000 - (at & 0x1f_ffff)).min(left);
            // A slice never crosses a 2 MiB boundary, so its leaves (huge pages are split to
            // the slice) hold at most 512 frames between them.
            let mut batch = [PhyAddr::ZERO; FREE_BATCH];
            let mut n = 0;
            // SAFETY: forwarded.
            unsafe {
                self.unmap_range(VirtAddr::new(at), slice, gather, |u| {
                    for i in 0..u.unmapped.size.bytes() >> 12 {
                        if let Some(slot) = batch.get_mut(n) {
                            *slot = PhyAddr::new(u.unmapped.frame.as_u64() + (i << 12));
                            n += 1;
                        }
                    }
                })
            }?;
            // Invalidate (and free detached tables), then free the data frames.
            self.finish_in_place(gather);
            for &frame in &batch[..n] {
                // SAFETY: unmapped and invalidated just above; the caller vouches the frame
                // came from this allocator.
                unsafe { self.frames.deallocate_frame(frame) };
            }
            at = at.wrapping_add(slice);
            left -= slice;
        }
        Ok(())
    }

    /// Maps the physical range `pa .. pa + len` at the same virtual addresses (MMIO windows, RAM
    /// for an identity-mapped kernel), with the largest pages that fit, as
    /// [`map_range`](Self::map_range).
    ///
    /// # Safety
    ///
    /// As [`map_range`](Self::map_range).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, RangeOptions, VirtAddr};
    ///
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let mut g = pt.gather();
    /// let uart = PhyAddr::new(0x0900_0000);
    /// unsafe { pt.identity_map(uart, 0x1000, Flags::DEVICE, RangeOptions::default(), &mut g) }.unwrap();
    /// pt.finish(g).unwrap();
    /// assert_eq!(pt.translate(VirtAddr::new(0x0900_0000)).unwrap().pa, uart);
    /// ```
    pub unsafe fn identity_map(
        &mut self,
        pa: PhyAddr,
        len: u64,
        attrs: impl Into<Attrs>,
        opts: RangeOptions,
        gather: &mut Gather,
    ) -> Result<(), RangeError<MapError>> {
        // SAFETY: forwarded.
        unsafe { self.map_range(VirtAddr::new(pa.as_u64()), pa, len, attrs, opts, gather) }
    }
}
