//! Copy-on-write: [`UserSpace::fork`], zero pages ([`UserSpace::map_zero`]) and the write-fault
//! helper ([`UserSpace::resolve_write_fault`]).
//!
//! A copy-on-write page is a read-only user leaf with the format's software bit set
//! ([`Arch::software_bit`]: x86 bit 9, AArch64 bit 55). The hardware ignores the bit; a write
//! to the page faults as any write to a read-only page does, and the kernel's fault handler
//! asks [`UserSpace::resolve_write_fault`] to make it writable.

use core::fmt;

use super::user::UserSpace;
use crate::arch::Arch;
use crate::{
    Attrs, FlagsError, Flush, FrameAllocator, MapError, PageSize, PhyAddr, PhysMem, Tlb, VirtAddr,
    PAGESIZE,
};

/// The kernel's reference counts of data frames: how many address spaces map each one. The
/// fork counts a share for every user page it maps in the child; the fault helper drops one
/// when it gives the faulting space a copy.
///
/// ```
/// use awk_paging::space::FrameRefs;
/// use awk_paging::PhyAddr;
/// use std::collections::HashMap;
///
/// struct Refs(HashMap<u64, usize>);
/// impl FrameRefs for Refs {
///     fn share(&mut self, f: PhyAddr) { *self.0.entry(f.as_u64()).or_insert(1) += 1; }
///     fn owners(&self, f: PhyAddr) -> usize { self.0.get(&f.as_u64()).copied().unwrap_or(1) }
///     fn release(&mut self, f: PhyAddr) {
///         if let Some(n) = self.0.get_mut(&f.as_u64()) { *n -= 1; }
///     }
/// }
/// let mut r = Refs(HashMap::new());
/// r.share(PhyAddr::new(0x5000));
/// assert_eq!(r.owners(PhyAddr::new(0x5000)), 2);
/// ```
pub trait FrameRefs {
    /// One more address space maps `frame`.
    fn share(&mut self, frame: PhyAddr);
    /// How many address spaces map `frame` (1, or 0 for a frame never counted: only the
    /// asking space).
    fn owners(&self, frame: PhyAddr) -> usize;
    /// One address space stopped mapping `frame` (it got a copy).
    fn release(&mut self, frame: PhyAddr);
}

/// How a write fault was resolved.
///
/// ```
/// use awk_paging::space::Resolved;
/// let r = Resolved::MadeWritable { frame: awk_paging::PhyAddr::new(0x5000) };
/// assert!(!matches!(r, Resolved::Copied { .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The frame was shared: the page now maps a private copy `to` of `from`, writable
    /// (`from` lost one owner through [`FrameRefs::release`]).
    Copied {
        /// The shared frame.
        from: PhyAddr,
        /// The new, private frame.
        to: PhyAddr,
    },
    /// The page mapped the zero frame: it now maps the new zeroed frame `to`, writable.
    Zeroed {
        /// The new frame.
        to: PhyAddr,
    },
    /// This space was the frame's last owner: the page was only made writable.
    MadeWritable {
        /// The frame, unchanged.
        frame: PhyAddr,
    },
}

/// Why [`UserSpace::resolve_write_fault`] did not resolve a fault. Nothing changed.
///
/// ```
/// assert_eq!(awk_paging::space::FaultError::OutOfMemory.to_string(), "out of memory for the copy");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// Nothing is mapped there (a genuine fault for the kernel to handle).
    NotMapped,
    /// The page is not copy-on-write (a genuine protection fault).
    NotCopyOnWrite,
    /// The address is in the kernel half.
    KernelHalf,
    /// No frame for the copy: retry after reclaiming memory.
    OutOfMemory,
    /// A new frame or the old one is not reachable through the [`PhysMem`].
    FrameUnreachable,
    /// The writable page would break the space's policy (W^X on an executable page).
    InvalidFlags(FlagsError),
    /// The format has no software bit ([`Arch::software_bit`] is 0).
    Unsupported,
    /// A table on the walk is unreachable or malformed.
    InvalidPageTable,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::NotMapped => f.write_str("no mapping at the faulting address"),
            FaultError::NotCopyOnWrite => f.write_str("the page is not copy-on-write"),
            FaultError::KernelHalf => f.write_str("the address is in the kernel half"),
            FaultError::OutOfMemory => f.write_str("out of memory for the copy"),
            FaultError::FrameUnreachable => f.write_str("frame not reachable through PhysMem"),
            FaultError::InvalidFlags(e) => e.fmt(f),
            FaultError::Unsupported => f.write_str("the format has no software bit"),
            FaultError::InvalidPageTable => f.write_str("invalid page table"),
        }
    }
}

/// Why [`UserSpace::fork`] failed. Nothing changed in the parent; the child's tables were
/// freed.
///
/// ```
/// use awk_paging::space::ForkError;
/// assert_eq!(ForkError::Unsupported.to_string(), "the format has no software bit");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkError {
    /// The format has no software bit.
    Unsupported,
    /// Building the child failed (out of memory for its tables, ...).
    Map(MapError),
}

impl fmt::Display for ForkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForkError::Unsupported => f.write_str("the format has no software bit"),
            ForkError::Map(e) => e.fmt(f),
        }
    }
}

impl<A: Arch, M: PhysMem + Clone, F: FrameAllocator, T: Tlb + Clone> UserSpace<A, M, F, T> {
    /// Whether `raw` (a leaf) carries the copy-on-write mark.
    fn is_cow(&self, raw: u64) -> bool {
        let bit = self.pt.arch().software_bit();
        bit != 0 && raw & bit != 0
    }

    /// Whether the page at `va` is copy-on-write (or a zero page that becomes writable on its
    /// first write).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelHalf, UserSpace};
    /// # use awk_paging::{NoTlb, VirtAddr};
    /// let mem = EmuMemory::new(2);
    /// let user = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// assert!(!user.is_copy_on_write(VirtAddr::new(0x1000)));
    /// ```
    #[must_use]
    pub fn is_copy_on_write(&self, va: VirtAddr) -> bool {
        self.raw_entry(va).is_ok_and(|(_, raw)| self.is_cow(raw))
    }

    /// The shared zero frame (a zeroed data frame the kernel never writes): from now on it can
    /// only be mapped read-only in this space, and [`map_zero`](Self::map_zero) maps it.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{EditError, KernelHalf, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut user = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// let zero = mem.allocate_data_frame().unwrap();
    /// user.set_zero_frame(zero);
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// let e = unsafe { user.map(VirtAddr::new(0x1000), zero, PageSize::Size4K, rw) }.unwrap_err();
    /// assert_eq!(e, EditError::WritableZeroFrame);
    /// ```
    pub fn set_zero_frame(&mut self, frame: PhyAddr) {
        self.zero = Some(frame);
    }

    /// Maps the 4 KiB page at `va` to the zero frame, read-only. With `attrs.flags.write`, the
    /// page is marked copy-on-write: its first write fault gets a fresh zeroed frame from
    /// [`resolve_write_fault`](Self::resolve_write_fault); reads never allocate.
    ///
    /// Fails, changing nothing, with `InvalidPageTable` if no zero frame was set, and as
    /// [`map`](Self::map) does.
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelHalf, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut user = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// let zero = mem.allocate_data_frame().unwrap();
    /// user.set_zero_frame(zero);
    /// let va = VirtAddr::new(0x1000);
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// unsafe { user.map_zero(va, rw) }.unwrap().flush();
    /// let t = user.translate(va).unwrap();
    /// assert_eq!((t.frame, t.attrs.flags.write), (zero, false));
    /// assert!(user.is_copy_on_write(va));
    /// ```
    pub unsafe fn map_zero(
        &mut self,
        va: VirtAddr,
        attrs: impl Into<Attrs>,
    ) -> Result<Flush<T>, super::EditError<MapError>> {
        let attrs = attrs.into();
        let zero = self.zero.ok_or(MapError::InvalidPageTable)?;
        let on_demand = attrs.flags.write;
        if on_demand && self.pt.arch().software_bit() == 0 {
            return Err(MapError::InvalidPageTable.into());
        }
        let mut ro = attrs;
        ro.flags.write = false;
        // SAFETY: forwarded.
        let flush = unsafe { self.map(va, zero, PageSize::Size4K, ro) }?;
        if on_demand {
            self.mark(va, PageSize::Size4K, true);
        }
        Ok(flush)
    }

    /// Sets (or clears) the software bit of the leaf of `size` at `va` in place: the hardware
    /// ignores the bit, so no invalidation is owed.
    fn mark(&self, va: VirtAddr, size: PageSize, on: bool) {
        let bit = self.pt.arch().software_bit();
        if let Ok((hit, _)) = self.pt.leaf_at(va, size) {
            let hw = self.pt.arch().hardware_updates_entries();
            hit.slot
                .modify(self.pt.mem(), hw, |r| if on { r | bit } else { r & !bit });
        }
    }

    /// A copy of this address space that shares every user page: writable pages become
    /// read-only + copy-on-write **in both** (the frame is shared, [`FrameRefs::share`] counts
    /// the child), read-only pages are shared as they are. The child gets its own root (with
    /// the same kernel half), tables from `frames` and TLB hook `tlb`; the parent's ASID is
    /// flushed once at the end (its writable entries must go).
    ///
    /// Huge pages (2 MiB, 1 GiB) are shared whole, copy-on-write at their size; the counts
    /// are per 4 KiB frame ([`FrameRefs`] is asked about every 4 KiB frame of a huge page, as
    /// Linux counts the subpages of a transparent huge page), because the fault helper splits
    /// a huge page and copies only the 4 KiB page written.
    ///
    /// Fails, changing nothing in the parent (the child's tables are freed), if the format
    /// has no software bit or the child's tables cannot be built.
    ///
    /// # Safety
    ///
    /// As [`map`](Self::map) for the child's mappings; `refs` counts this space's frames.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::space::{FrameRefs, KernelHalf, UserSpace};
    /// use awk_paging::{Attrs, Flags, NoTlb, PageSize, PhyAddr, VirtAddr};
    /// # struct NoRefs;
    /// # impl FrameRefs for NoRefs {
    /// #     fn share(&mut self, _: PhyAddr) {}
    /// #     fn owners(&self, _: PhyAddr) -> usize { 2 }
    /// #     fn release(&mut self, _: PhyAddr) {}
    /// # }
    /// let mem = EmuMemory::new(16);
    /// let mut parent = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// let (va, frame) = (VirtAddr::new(0x1000), mem.allocate_data_frame().unwrap());
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// unsafe { parent.map(va, frame, PageSize::Size4K, rw) }.unwrap().flush();
    /// let child = unsafe { parent.fork(&mem, NoTlb, &mut NoRefs) }.unwrap();
    /// for s in [&parent, &child] {
    ///     let t = s.translate(va).unwrap();
    ///     assert_eq!((t.frame, t.attrs.flags.write), (frame, false));
    ///     assert!(s.is_copy_on_write(va));
    /// }
    /// ```
    pub unsafe fn fork<R: FrameRefs>(
        &mut self,
        frames: F,
        tlb: T,
        refs: &mut R,
    ) -> Result<Self, ForkError> {
        let bit = self.pt.arch().software_bit();
        if bit == 0 {
            return Err(ForkError::Unsupported);
        }
        let in_user_half =
            |s: &Self, va: VirtAddr| s.check_range::<()>(va, PAGESIZE as u64).is_ok();
        // 1. The child: every user-half mapping, writable ones read-only + marked.
        let arch = *self.pt.arch();
        let mut child = UserSpace::new(arch, self.pt.mem().clone(), frames, tlb, self.half)
            .map_err(ForkError::Map)?;
        child.zero = self.zero;
        let mut failed = None;
        self.pt.for_each_mapping(|m| {
            if failed.is_some() || !in_user_half(self, m.page) {
                return;
            }
            let raw = self.pt.raw_entry(m.page).map_or(0, |(_, r)| r);
            let cow = m.attrs.flags.write || raw & bit != 0;
            let mut attrs = m.attrs;
            attrs.flags.write &= !cow;
            // SAFETY: the child is inactive; the caller vouches for the mappings.
            match unsafe { child.pt.map(m.page, m.frame, m.size, attrs) } {
                Ok(f) => {
                    f.ignore(); // never active yet: nothing to publish to
                    if cow {
                        child.mark(m.page, m.size, true);
                    }
                }
                Err(e) => failed = Some(e),
            }
        });
        if let Some(e) = failed {
            // SAFETY: never active.
            unsafe { child.destroy() };
            return Err(ForkError::Map(e));
        }
        // 2. Nothing can fail from here: the parent's writable pages become read-only + marked,
        // and every shared 4 KiB frame gains an owner.
        let hw = self.pt.arch().hardware_updates_entries();
        self.pt.for_each_mapping(|m| {
            if !in_user_half(self, m.page) {
                return;
            }
            if Some(m.frame) != self.zero {
                for i in 0..m.size.bytes() / PAGESIZE as u64 {
                    refs.share(PhyAddr::new(m.frame.as_u64() + i * PAGESIZE as u64));
                }
            }
            if !m.attrs.flags.write {
                return;
            }
            let Ok((hit, frame)) = self.pt.leaf_at(m.page, m.size) else {
                return;
            };
            let a = self.pt.arch();
            let level = m.size.level();
            let mut ro = a.leaf_attrs(hit.raw, level);
            ro.flags.write = false;
            let hint = a.contiguous_hint(level).map_or(0, |h| h.bit);
            let new = a.leaf_entry(frame, level, ro) | bit;
            if a.needs_break_before_make(hit.raw, new | (hit.raw & hint), level) {
                let old = hit.slot.clear(self.pt.mem(), hw, hit.raw);
                self.pt.tlb().flush_leaf(m.page);
                let next = a.keep_hardware_bits(old, new) | (old & hint);
                hit.slot.store(self.pt.mem(), 0, next);
            } else {
                // A permission change in place; a hinted run is rewritten whole by this loop
                // (its entries share attributes), as `protect_range` does.
                hit.slot.modify(self.pt.mem(), hw, |old| {
                    a.keep_hardware_bits(old, new) | (old & hint)
                });
            }
        });
        // The parent's TLB may hold its pages writable: drop this ASID's entries.
        self.pt.tlb().flush_all();
        Ok(child)
    }

    /// Resolves a write fault at `va` on a copy-on-write page of this space: if its frame has
    /// other owners ([`FrameRefs::owners`] > 1) or is the zero frame, a new frame from `data`
    /// gets a copy (or zeroes) and replaces it, writable; if this space is the last owner, the
    /// page is only made writable. Either way the page is invalidated for **this space's ASID
    /// only** (the hook's [`Tlb::flush_leaf`], a [`SpaceTlb`](super::SpaceTlb) targets its
    /// ASID), after break-before-make where the format needs it (a new frame on AArch64).
    ///
    /// A copy-on-write huge page is first split (its 4 KiB pages stay copy-on-write, sharing
    /// the huge frame's 4 KiB frames, as [`fork`](Self::fork) counted them), then only the
    /// 4 KiB page written is resolved as above: one 4 KiB copy, not a copy of the whole huge
    /// page (what Linux does on a write to a shared transparent huge page).
    ///
    /// Fails, changing nothing (no frame kept, no count changed, no split), if the page is not
    /// mapped or not copy-on-write, or no frame (for the copy or the split's tables) can be
    /// had.
    ///
    /// # Safety
    ///
    /// `data` hands out frames nobody else uses; the caller holds this space's lock (no
    /// concurrent edit).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::space::{FaultError, FrameRefs, KernelHalf, Resolved, UserSpace};
    /// use awk_paging::{Attrs, Flags, NoTlb, PhyAddr, VirtAddr};
    /// # struct One;
    /// # impl FrameRefs for One {
    /// #     fn share(&mut self, _: PhyAddr) {}
    /// #     fn owners(&self, _: PhyAddr) -> usize { 1 }
    /// #     fn release(&mut self, _: PhyAddr) {}
    /// # }
    /// let mem = EmuMemory::new(8);
    /// let mut user = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// user.set_zero_frame(mem.allocate_data_frame().unwrap());
    /// let va = VirtAddr::new(0x1000);
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// unsafe { user.map_zero(va, rw) }.unwrap().flush();
    /// let mut data = &mem;
    /// let r = unsafe { user.resolve_write_fault(VirtAddr::new(0x1234), &mut One, &mut data) }.unwrap();
    /// let Resolved::Zeroed { to } = r else { panic!("{r:?}") };
    /// assert_eq!(user.translate(va).unwrap().frame, to);
    /// assert!(user.translate(va).unwrap().attrs.flags.write);
    /// let again = unsafe { user.resolve_write_fault(va, &mut One, &mut data) };
    /// assert_eq!(again, Err(FaultError::NotCopyOnWrite));
    /// ```
    pub unsafe fn resolve_write_fault<R: FrameRefs, D: FrameAllocator>(
        &mut self,
        va: VirtAddr,
        refs: &mut R,
        data: &mut D,
    ) -> Result<Resolved, FaultError> {
        let bit = self.pt.arch().software_bit();
        if bit == 0 {
            return Err(FaultError::Unsupported);
        }
        let page = va.align_down(PageSize::Size4K);
        if self.check_range::<()>(page, PAGESIZE as u64).is_err() {
            return Err(FaultError::KernelHalf);
        }
        let hit = self.pt.translate(page).map_err(|e| match e {
            crate::TranslateError::NotMapped => FaultError::NotMapped,
            crate::TranslateError::InvalidPageTable => FaultError::InvalidPageTable,
            _ => FaultError::NotMapped,
        })?;
        // A frame for the copy, taken before a huge page is split (so running out changes
        // nothing).
        let mut copy_to = None;
        if hit.size != PageSize::Size4K {
            copy_to = self.split_for_fault(page, hit.size, hit.page, hit.frame, refs, data)?;
        }
        let (leaf, frame) = self
            .pt
            .leaf_at(page, PageSize::Size4K)
            .map_err(|_| FaultError::InvalidPageTable)?;
        if !self.is_cow(leaf.raw) {
            return Err(FaultError::NotCopyOnWrite);
        }
        let a = *self.pt.arch();
        let mut writable = a.leaf_attrs(leaf.raw, 0);
        writable.flags.write = true;
        writable
            .validate(self.pt.policy())
            .map_err(FaultError::InvalidFlags)?;
        let zero = Some(frame) == self.zero;
        let shared = zero || refs.owners(frame) > 1;
        let (target, result) = if shared {
            let to = match copy_to.take() {
                Some(to) => to,
                None => data.allocate_frame().ok_or(FaultError::OutOfMemory)?,
            };
            let (dst, src) = (self.pt.mem().frame_ptr(to), self.pt.mem().frame_ptr(frame));
            let (Some(dst), Some(src)) = (dst, src) else {
                // SAFETY: just allocated, never mapped.
                unsafe { data.deallocate_frame(to) };
                return Err(FaultError::FrameUnreachable);
            };
            if zero {
                // SAFETY: a fresh frame nobody else sees (caller's contract for `data`), valid
                // for 4 KiB (PhysMem contract).
                unsafe { core::ptr::write_bytes(dst.as_ptr(), 0, PAGESIZE) };
                (to, Resolved::Zeroed { to })
            } else {
                // SAFETY: both valid for 4 KiB; `to` is fresh, so they do not overlap.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), PAGESIZE) };
                (to, Resolved::Copied { from: frame, to })
            }
        } else {
            (frame, Resolved::MadeWritable { frame })
        };
        // One entry of a hinted run changes alone: unhint the run first.
        let raw = self.pt.unhint(leaf.slot, leaf.raw, 0, page);
        let new = a.leaf_entry(target, 0, writable);
        let hw = a.hardware_updates_entries();
        if a.needs_break_before_make(raw, new, 0) {
            // Break, invalidate (this ASID), make (Arm ARM D8.16.1).
            let old = leaf.slot.clear(self.pt.mem(), hw, raw);
            self.pt.tlb().flush_leaf(page);
            leaf.slot
                .store(self.pt.mem(), 0, a.keep_hardware_bits(old, new) & !bit);
        } else {
            leaf.slot.modify(self.pt.mem(), hw, |old| {
                a.keep_hardware_bits(old, new) & !bit
            });
        }
        // The read-only translation may be cached: drop it (this ASID only).
        self.pt.tlb().flush_leaf(page);
        if let Resolved::Copied { from, .. } = result {
            refs.release(from);
        }
        if let Some(unused) = copy_to {
            // SAFETY: taken above, never mapped (the page turned out not to be shared).
            unsafe { data.deallocate_frame(unused) };
        }
        Ok(result)
    }

    /// Splits the copy-on-write huge page of `size` at `huge` (frame `frame`) so the 4 KiB
    /// `page` in it can be resolved alone: its leaves keep the attributes and the
    /// copy-on-write mark. Returns a frame for the copy if the 4 KiB frame of `page` is
    /// shared, taken before the split; on any failure nothing changed and nothing is kept.
    fn split_for_fault<R: FrameRefs, D: FrameAllocator>(
        &mut self,
        page: VirtAddr,
        size: PageSize,
        huge: VirtAddr,
        frame: PhyAddr,
        refs: &mut R,
        data: &mut D,
    ) -> Result<Option<PhyAddr>, FaultError> {
        let (level, raw) = self
            .pt
            .raw_entry(page)
            .map_err(|_| FaultError::InvalidPageTable)?;
        if !self.is_cow(raw) {
            return Err(FaultError::NotCopyOnWrite);
        }
        let a = *self.pt.arch();
        let attrs = a.leaf_attrs(raw, level);
        let mut writable = attrs;
        writable.flags.write = true;
        writable
            .validate(self.pt.policy())
            .map_err(FaultError::InvalidFlags)?;
        let sub = PhyAddr::new(frame.as_u64() + (page.as_u64() - huge.as_u64()));
        let copy_to = if refs.owners(sub) > 1 {
            Some(data.allocate_frame().ok_or(FaultError::OutOfMemory)?)
        } else {
            None
        };
        let give_back = |data: &mut D| {
            if let Some(to) = copy_to {
                // SAFETY: taken above, never mapped.
                unsafe { data.deallocate_frame(to) };
            }
        };
        // Protecting the 4 KiB page with the attributes it has splits the huge page around it
        // (break-before-make where the format needs it) and changes nothing else.
        let mut g = self.pt.gather();
        // SAFETY: the same attributes: nothing Rust relies on changes.
        let r = unsafe { self.pt.protect_range(page, PAGESIZE as u64, attrs, &mut g) };
        if self.pt.finish(g).is_err() {
            give_back(data);
            return Err(FaultError::InvalidPageTable);
        }
        if let Err(e) = r {
            give_back(data);
            return Err(match e.error {
                crate::ProtectError::OutOfMemory => FaultError::OutOfMemory,
                _ => FaultError::InvalidPageTable,
            });
        }
        debug_assert!(size != PageSize::Size4K);
        Ok(copy_to)
    }
}
