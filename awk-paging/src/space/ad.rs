//! Accessed/dirty harvesting for page reclaim and dirty tracking:
//! [`UserSpace::clear_accessed_dirty`].
//!
//! x86 sets Accessed on a walk and Dirty on the first write through a translation (SDM Vol. 3A
//! §4.8); both are set only when the TLB misses or holds the entry clean. So a cleared **Dirty**
//! bit must be followed by an invalidation of the page, or a writable entry still in some TLB
//! lets writes through without setting it again — a later reclaim would drop data. A cleared
//! **Accessed** bit without an invalidation only makes the next age check less precise (Linux's
//! x86 `ptep_clear_flush_young` skips it); this crate's token invalidates in both cases, and a
//! caller may `ignore` it for an Accessed-only clear.
//!
//! AArch64 (this crate's regime: no FEAT_HAFDBS management, AF = 0 decodes as no mapping) keeps
//! no record: [`accessed_dirty`](crate::arch::Arch::accessed_dirty) answers `(true, true)`, and
//! nothing is cleared (a software-AF scheme would need the walker to keep AF = 0 leaves as
//! mappings).

use super::user::UserSpace;
use super::EditError;
use crate::arch::Arch;
use crate::{Flush, FrameAllocator, PageSize, PhysMem, ProtectError, Tlb, VirtAddr};

/// What a leaf recorded before [`UserSpace::clear_accessed_dirty`] cleared it.
///
/// ```
/// let clean = awk_paging::space::AccessedDirty { accessed: true, dirty: false };
/// assert!(!clean.dirty);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessedDirty {
    /// The page was accessed (always `true` for formats without the record).
    pub accessed: bool,
    /// The page may have been written (always `true` for formats without the record).
    pub dirty: bool,
}

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> UserSpace<A, M, F, T> {
    /// Reads the Accessed/Dirty record of the page of `size` at `va` and clears the Accessed
    /// bit if `accessed`, the Dirty bit if `dirty`, in one atomic read-modify-write (a bit the
    /// hardware sets meanwhile is either returned or kept). The token invalidates the page for
    /// this space's ASID: flush it before relying on the cleared bits (mandatory after clearing
    /// Dirty, see the module docs). Formats without the record report both set and change
    /// nothing (the token then owes nothing).
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{KernelHalf, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// let va = VirtAddr::new(0x1000);
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// unsafe { u.map(va, mem.allocate_data_frame().unwrap(), PageSize::Size4K, rw) }.unwrap().flush();
    /// let (ad, flush) = u.clear_accessed_dirty(va, PageSize::Size4K, true, true).unwrap();
    /// flush.flush();
    /// assert!(ad.accessed && ad.dirty); // the emulator's format keeps no record
    /// ```
    pub fn clear_accessed_dirty(
        &mut self,
        va: VirtAddr,
        size: PageSize,
        accessed: bool,
        dirty: bool,
    ) -> Result<(AccessedDirty, Flush<T>), EditError<ProtectError>> {
        self.check_range(va, size.bytes())?;
        let (hit, _) = self.pt.leaf_at(va, size).map_err(ProtectError::from)?;
        let a = *self.pt.arch();
        if a.clear_accessed_dirty(hit.raw, hit.level, accessed, dirty)
            .is_none()
        {
            let (accessed, dirty) = a.accessed_dirty(hit.raw, hit.level);
            return Ok((
                AccessedDirty { accessed, dirty },
                Flush::publish(self.pt.tlb().clone()),
            ));
        }
        let hw = a.hardware_updates_entries();
        let (old, _) = hit.slot.modify(self.pt.mem(), hw, |r| {
            a.clear_accessed_dirty(r, hit.level, accessed, dirty)
                .unwrap_or(r)
        });
        let (was_accessed, was_dirty) = a.accessed_dirty(old, hit.level);
        Ok((
            AccessedDirty {
                accessed: was_accessed,
                dirty: was_dirty,
            },
            Flush::leaf(self.pt.tlb().clone(), va),
        ))
    }
}
