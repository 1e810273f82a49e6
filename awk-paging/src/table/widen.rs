//! Lifting an upper-level restriction for a new or changed leaf without loosening anything
//! else.
//!
//! Permissions are intersected over all levels (x86 R/W, U/S, XD; AArch64 APTable, UXNTable,
//! PXNTable). Tables this crate builds restrict nothing, but taken-over tables may (the
//! `x86_64` crate creates parents with R/W = 0 for a read-only first mapping). Widening such a
//! parent would loosen every existing mapping below it, so the restriction is first **pushed
//! down** into every valid entry of the table below (those keep exactly their effective
//! permissions), the pushed-down writes are ordered before the widening
//! ([`Tlb::order_table_writes`]), and only then is the parent widened. Walk caches may still
//! hold the old, narrower parent, so an operation that widened returns a token that
//! invalidates walk caches too (never a publish-only one).

use super::entry::Slot;
use super::walk::Visited;
use super::PageTable;
use crate::arch::{table_index, Arch, Entry};
use crate::{Attrs, FrameAllocator, PhyAddr, PhysMem, Tlb, VirtAddr, ENTRIES};

impl<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone> PageTable<A, M, F, T> {
    /// Makes every table entry above `target` on the walk to `va` permit a leaf with `attrs`,
    /// pushing each lifted restriction down one level first. Returns whether anything was
    /// widened. Allocates nothing and cannot fail: callers run it only after every check and
    /// allocation of their operation succeeded.
    pub(crate) fn widen_path(&mut self, va: VirtAddr, target: u8, attrs: Attrs) -> bool {
        let mut level = self.arch.levels().saturating_sub(1);
        let mut table = self.root;
        let mut visited = Visited::new(table);
        let mut widened = false;
        while level > target {
            let Some(slot) = Slot::of(&self.mem, table, table_index(va, level)) else {
                break;
            };
            let raw = slot.load();
            let Entry::Table(next) = self.arch.decode(raw, level) else {
                break;
            };
            if !visited.enter(next) {
                break;
            }
            if self.arch.table_limits(raw, level).blocks(attrs) {
                self.lift_limits(slot, raw, level, next, attrs);
                widened = true;
            }
            table = next;
            level -= 1;
        }
        widened
    }

    /// Lifts what the table entry `slot` (holding `raw`, at `level`, pointing at `next`)
    /// forbids a leaf with `attrs`: pushes its limits into every valid entry of `next`, orders
    /// those writes, then widens the entry.
    pub(crate) fn lift_limits(
        &mut self,
        slot: Slot,
        raw: u64,
        level: u8,
        next: PhyAddr,
        attrs: Attrs,
    ) {
        let hw = self.arch.hardware_updates_entries();
        let limits = self.arch.table_limits(raw, level);
        // Push the restriction into every valid entry of the next table down...
        for i in 0..ENTRIES {
            let Some(child) = Slot::of(&self.mem, next, i) else {
                break;
            };
            if self.arch.decode(child.load(), level - 1) != Entry::Invalid {
                child.modify(&self.mem, hw, |e| {
                    self.arch.limit_entry(e, level - 1, limits)
                });
            }
        }
        // ...make those writes visible before the parent stops restricting...
        self.tlb.order_table_writes();
        // ...then lift the restriction.
        slot.modify(&self.mem, hw, |e| self.arch.widen_table_entry(e, attrs));
        // The cached limits of the leaf table are stale now.
        self.walk.clear();
    }
}
