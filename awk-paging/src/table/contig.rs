//! The contiguous hint (AArch64): set only on complete, aligned, identically attributed runs;
//! cleared on a whole run, with break-before-make, before any entry of it changes in a way that
//! would leave the run inconsistent (Arm ARM D8.6.1, "Misprogramming the Contiguous bit").
//!
//! A run may keep its hint through an operation that covers all of it uniformly with a
//! permission-only change (the TLB then holds either the old or the new run until the flush, as
//! Linux's arm64 `contpte` code relies on); anything else — a change to part of a run, a change
//! of output address or memory type, a split of a hinted block — unhints the run first.

use super::chunk::entry_span;
use super::entry::Slot;
use super::PageTable;
use crate::arch::{Arch, ContiguousHint, Entry};
use crate::{FrameAllocator, PhysMem, Tlb, VirtAddr};

/// The longest run handled (AArch64's 4 KiB granule has 16; 16 KiB granule would need 128).
const MAX_RUN: usize = 128;

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Whether the run of hinted leaves at `level` containing table bits `base` lies inside
    /// `[start, end)` (so an operation over that range covers all of it).
    #[inline(always)]
    pub(crate) fn run_covered(&self, level: u8, base: u64, start: u64, end: u64) -> bool {
        match self.arch.contiguous_hint(level) {
            Some(h) => {
                let len = entry_span(level) * h.entries as u64;
                let first = base & !(len - 1);
                first >= start && first + len <= end
            }
            None => false,
        }
    }

    /// Whether a new leaf at `level` for table bits `base`, mapping `pa`, can carry the hint:
    /// its whole run lies inside the range being mapped (`[start, end)`, mapped from `pa0`) with
    /// leaves of this level, and the run's output range is aligned to the run.
    #[inline(always)]
    pub(crate) fn run_hintable(
        &self,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        pa: u64,
    ) -> Option<u64> {
        let h = self.arch.contiguous_hint(level)?;
        let len = entry_span(level) * h.entries as u64;
        let first = base & !(len - 1);
        let first_pa = pa.wrapping_sub(base - first);
        (first >= start && first + len <= end && first_pa & (len - 1) == 0).then_some(h.bit)
    }

    /// If the leaf in `slot` (holding `raw`, at `level`; `va` is the first address it maps)
    /// carries the contiguous hint, clears the hint on its whole run: every entry of the run is
    /// made invalid, each invalidated, then written back without the hint. Returns what the
    /// entry holds afterwards.
    #[inline(always)]
    pub(crate) fn unhint(&mut self, slot: Slot, raw: u64, level: u8, va: VirtAddr) -> u64 {
        match self.arch.contiguous_hint(level) {
            Some(h) if raw & h.bit != 0 && h.entries <= MAX_RUN => {
                self.unhint_run(slot, level, va, h)
            }
            _ => raw,
        }
    }

    /// Before a leaf is written into the invalid entry `slot` at `level` (`va`: the first
    /// address it will map): if another entry of its run is a hinted leaf, clears the hint on
    /// the whole run as [`unhint`](Self::unhint) does, so the new leaf never joins a run whose
    /// other entries claim to be one contiguous block (Arm ARM D8.6.1). Only tables taken over
    /// with `from_root` can hold such a run with a hole (this type unhints a run before removing
    /// any entry of it), so only those are checked: one OR over the run's entries.
    #[inline(always)]
    pub(crate) fn unhint_hole(&mut self, slot: Slot, level: u8, va: VirtAddr) {
        if !self.adopted {
            return;
        }
        let Some(h) = self.arch.contiguous_hint(level) else {
            return;
        };
        if h.entries > MAX_RUN {
            return;
        }
        let first = slot.index() & !(h.entries - 1);
        let load = |i: usize| slot.sibling(i).map_or(0, Slot::load);
        // The usual answer (no entry of the run carries the hint) from one OR over the run;
        // only a run that has the bit somewhere is decoded entry by entry.
        let any = (first..first + h.entries).fold(0, |acc, i| acc | load(i));
        if any & h.bit == 0 {
            return;
        }
        let hinted = (first..first + h.entries).any(|i| {
            let raw = load(i);
            i != slot.index() && raw & h.bit != 0 && self.arch.decode(raw, level) != Entry::Invalid
        });
        if hinted {
            self.unhint_run(slot, level, va, h);
        }
    }

    /// [`unhint`](Self::unhint) of a hinted entry: the whole run.
    #[inline(never)]
    fn unhint_run(&mut self, slot: Slot, level: u8, va: VirtAddr, h: ContiguousHint) -> u64 {
        let span = entry_span(level);
        let first = slot.index() & !(h.entries - 1);
        let first_va = va
            .as_u64()
            .wrapping_sub((slot.index() - first) as u64 * span);
        let hw = self.arch.hardware_updates_entries();
        let mut old = [0u64; MAX_RUN];
        // Break...
        for (i, o) in old.iter_mut().enumerate().take(h.entries) {
            if let Some(s) = Slot::of(&self.mem, slot.table(), first + i) {
                *o = s.clear(&self.mem, hw, s.load());
            }
        }
        // ...invalidate every page of the run...
        for (i, &o) in old.iter().enumerate().take(h.entries) {
            if self.arch.decode(o, level) != Entry::Invalid {
                self.tlb
                    .flush_leaf(VirtAddr::new(first_va.wrapping_add(i as u64 * span)));
            }
        }
        // ...then make, without the hint.
        for (i, &o) in old.iter().enumerate().take(h.entries) {
            if let Some(s) = Slot::of(&self.mem, slot.table(), first + i) {
                s.store(&self.mem, 0, o & !h.bit);
            }
        }
        old[slot.index() - first] & !h.bit
    }
}
