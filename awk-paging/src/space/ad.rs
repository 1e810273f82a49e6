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
//! AArch64 keeps the record as its regime's tracking mode says (`awk_paging_aarch64::features::Tracking`):
//! none by default ([`accessed_dirty`](crate::arch::Arch::accessed_dirty) answers
//! `(AF, true)`, nothing is cleared, and an AF = 0 leaf is no mapping); with access tracking,
//! the Access flag (AF = 0 leaves stay mappings, aged); with FEAT_HAFDBS dirty state, also the
//! dirty state (AP\[2\] of DBM leaves, cleared by the hardware on the first write, set again
//! here). Without the hardware Access flag, the CPU's first access to an aged page takes an
//! Access flag fault, which the kernel resolves with [`UserSpace::set_accessed`]. A cleared
//! dirty record needs the invalidation for the same reason as on x86: a TLB entry cached
//! writable-dirty lets writes through without touching the descriptor.

use super::user::UserSpace;
use super::EditError;
use crate::arch::{Arch, Entry};
use crate::{
    Flush, FrameAllocator, PageSize, PhysMem, ProtectError, Tlb, TranslateError, VirtAddr,
};

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

    /// Resolves an Access flag fault at `va`: sets the access record of the leaf mapping `va`
    /// (whatever its size), in one atomic read-modify-write where the hardware may write the
    /// entry too. `Ok(true)` if it set the record, `Ok(false)` if it was already set or the
    /// format has no access-flag fault ([`Arch::set_accessed`] is `None`: x86, or AArch64 with
    /// tracking off). Fails, changing nothing, if nothing is mapped at `va`, it is in the
    /// kernel half or out of range, or a table on the walk is invalid.
    ///
    /// No invalidation is owed (see [`Arch::set_accessed`]): the faulting access is simply
    /// retried.
    ///
    /// ```
    /// # use awk_paging::emu::{EmuArch, EmuMemory};
    /// # use awk_paging::space::{EditError, KernelHalf, UserSpace};
    /// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, TranslateError, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut u = UserSpace::new(EmuArch::default(), &mem, &mem, NoTlb, KernelHalf::NONE).unwrap();
    /// let va = VirtAddr::new(0x20_0000);
    /// let rw = Attrs { user: true, ..Attrs::from(Flags::RW) };
    /// unsafe { u.map(va, mem.allocate_data_frame().unwrap(), PageSize::Size4K, rw) }.unwrap().flush();
    /// // The emulator's format has no Access flag fault: nothing to set.
    /// assert_eq!(u.set_accessed(VirtAddr::new(0x20_0123)), Ok(false));
    /// assert_eq!(
    ///     u.set_accessed(VirtAddr::new(0x40_0000)),
    ///     Err(EditError::Op(TranslateError::NotMapped))
    /// );
    /// ```
    pub fn set_accessed(&mut self, va: VirtAddr) -> Result<bool, EditError<TranslateError>> {
        self.check_range(va, 1)?;
        self.pt.arch().check_va(va).map_err(TranslateError::from)?;
        let hit = self
            .pt
            .find(va)
            .map_err(|_| TranslateError::InvalidPageTable)?;
        if !matches!(hit.entry, Entry::Leaf(_)) {
            return Err(TranslateError::NotMapped.into());
        }
        let a = *self.pt.arch();
        match a.set_accessed(hit.raw, hit.level) {
            // Already set (the hardware never clears it), or no such record.
            None => return Ok(false),
            Some(r) if r == hit.raw => return Ok(false),
            Some(_) => {}
        }
        let hw = a.hardware_may_write(hit.raw, hit.level);
        let (old, new) = hit.slot.modify(self.pt.mem(), hw, |r| {
            a.set_accessed(r, hit.level).unwrap_or(r)
        });
        Ok(old != new)
    }
}
