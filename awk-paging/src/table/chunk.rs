//! Pure range arithmetic: how a range of the address space falls onto the entries of a table,
//! and which leaf size fits where. No memory access, so it is tested on its own.
//!
//! Positions are *table bits*: the low `12 + 9 × levels` bits of a virtual address (the indices
//! and offset; [`Arch::va_from_bits`](crate::arch::Arch::va_from_bits) turns them back into an
//! address). A range inside one half of the address space is contiguous in this domain.

use crate::{PageSize, PageSizes};

/// The bytes one entry at `level` covers (4 KiB at level 0, 2 MiB at 1, 1 GiB at 2, ...).
#[inline(always)]
pub(crate) const fn entry_span(level: u8) -> u64 {
    1u64 << (12 + 9 * level as u32)
}

/// The output-address bits of a leaf at `level` in a format with `pa_bits`-bit physical
/// addresses. Two leaves at `level` equal outside these bits map the same way (the
/// conformance check `leaf_address_bits_pass_through` pins that per format), which the range
/// loops use to decode once per run of such leaves.
#[inline(always)]
pub(crate) const fn address_bits(pa_bits: u32, level: u8) -> u64 {
    let top = if pa_bits >= 64 {
        u64::MAX
    } else {
        (1u64 << pa_bits) - 1
    };
    top & !((1u64 << (12 + 9 * level as u32)) - 1)
}

/// One entry's share of a range: entry `index` of the table, covering `[start, end)` of the
/// entry's span `[base, base + entry_span(level))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) index: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) base: u64,
}

impl Piece {
    /// Whether the range covers the whole entry.
    #[inline(always)]
    pub(crate) const fn whole(&self, level: u8) -> bool {
        self.start == self.base && self.end - self.base == entry_span(level)
    }
}

/// The entries of one table at `level` that `[start, end)` touches, in order.
#[derive(Clone, Debug)]
pub(crate) struct Pieces {
    level: u8,
    cur: u64,
    end: u64,
}

impl Pieces {
    /// `[start, end)` must lie inside one table's span at `level`.
    #[inline(always)]
    pub(crate) const fn new(level: u8, start: u64, end: u64) -> Pieces {
        Pieces {
            level,
            cur: start,
            end,
        }
    }
}

impl Pieces {
    /// Leaves out the next `n` entries (never past the range's end).
    #[inline(always)]
    pub(crate) fn skip_entries(&mut self, n: usize) {
        let span = entry_span(self.level);
        let to = (self.cur & !(span - 1)).saturating_add((n as u64).saturating_mul(span));
        if to > self.cur {
            self.cur = to.min(self.end);
        }
    }
}

impl Iterator for Pieces {
    type Item = Piece;

    #[inline(always)]
    fn next(&mut self) -> Option<Piece> {
        if self.cur >= self.end {
            return None;
        }
        let span = entry_span(self.level);
        let base = self.cur & !(span - 1);
        let end = if self.end - base > span {
            base + span
        } else {
            self.end
        };
        let piece = Piece {
            index: ((self.cur >> (12 + 9 * self.level as u32)) & 0x1ff) as usize,
            start: self.cur,
            end,
            base,
        };
        self.cur = end;
        Some(piece)
    }
}

/// Whether a leaf at `level` can map `piece` to the physical address `pa` (of `piece.start`):
/// the piece covers the whole entry, the level has leaves in `sizes`, not above `cap`, and `pa`
/// is aligned to it.
#[inline(always)]
pub(crate) fn leaf_fits(
    level: u8,
    piece: &Piece,
    pa: u64,
    sizes: PageSizes,
    cap: PageSize,
) -> bool {
    match PageSize::from_level(level) {
        Some(size) => {
            level <= cap.level()
                && sizes.contains(size)
                && piece.whole(level)
                && pa & size.offset_mask() == 0
        }
        None => false,
    }
}

/// How many new tables mapping `[start, end)` into an empty table at `level` needs (that table
/// not counted): one per entry that cannot be a leaf, plus what it needs itself.
pub(crate) fn new_tables(
    level: u8,
    start: u64,
    end: u64,
    pa: u64,
    sizes: PageSizes,
    cap: PageSize,
) -> usize {
    if level == 0 {
        return 0; // every entry of a level-0 table is a 4 KiB leaf
    }
    Pieces::new(level, start, end)
        .filter(|p| !leaf_fits(level, p, pa + (p.start - start), sizes, cap))
        .map(|p| {
            1 + new_tables(
                level - 1,
                p.start,
                p.end,
                pa + (p.start - start),
                sizes,
                cap,
            )
        })
        .sum()
}

/// How many tables splitting a leaf at `level` needs so that `[start, end)` (part of it) is
/// covered by whole entries: one for the leaf, plus splits of the (at most two) partly covered
/// smaller leaves at its ends.
pub(crate) fn split_tables(level: u8, start: u64, end: u64) -> usize {
    if level == 0 {
        return 0;
    }
    1 + Pieces::new(level - 1, start, end)
        .filter(|p| !p.whole(level - 1))
        .map(|p| split_tables(level - 1, p.start, p.end))
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_for_new_ranges_and_splits() {
        let all = PageSizes::ALL;
        // 1 GiB of 4 KiB pages into an empty level-2 table: 512 level-0 tables + 1 level-1.
        assert_eq!(new_tables(2, 0, 1 << 30, 0, all, PageSize::Size4K), 513);
        // The same with 2 MiB pages allowed: one level-1 table; with 1 GiB pages, none.
        assert_eq!(new_tables(2, 0, 1 << 30, 0, all, PageSize::Size2M), 1);
        assert_eq!(new_tables(2, 0, 1 << 30, 0, all, PageSize::Size1G), 0);
        // 4 KiB inside a 1 GiB leaf: a 2 MiB table, then a 4 KiB table.
        assert_eq!(split_tables(2, 0x20_1000, 0x20_2000), 2);
        // A 2 MiB-aligned part of a 1 GiB leaf: one split.
        assert_eq!(split_tables(2, 0x20_0000, 0x40_0000), 1);
    }

    #[test]
    fn pieces_clip_at_entry_boundaries() {
        let p: std::vec::Vec<_> = Pieces::new(1, 0x1f_f000, 0x40_1000).collect();
        assert_eq!(
            p,
            [
                Piece {
                    index: 0,
                    start: 0x1f_f000,
                    end: 0x20_0000,
                    base: 0
                },
                Piece {
                    index: 1,
                    start: 0x20_0000,
                    end: 0x40_0000,
                    base: 0x20_0000
                },
                Piece {
                    index: 2,
                    start: 0x40_0000,
                    end: 0x40_1000,
                    base: 0x40_0000
                },
            ]
        );
        assert!(!p[0].whole(1) && p[1].whole(1) && !p[2].whole(1));
    }

    #[test]
    fn skip_leaves_out_whole_entries_up_to_the_end() {
        let mut p = Pieces::new(1, 0x1f_f000, 0xa0_1000);
        assert_eq!(p.next().map(|p| p.index), Some(0));
        p.skip_entries(2); // entries 1 and 2
        assert_eq!(p.next().map(|p| (p.index, p.start)), Some((3, 0x60_0000)));
        p.skip_entries(0);
        assert_eq!(p.next().map(|p| p.index), Some(4));
        p.skip_entries(100); // past the end: stops there
        assert_eq!(p.next(), None);
        let mut q = Pieces::new(0, 0, 0x3000);
        q.next();
        q.skip_entries(1);
        assert_eq!(q.next().map(|p| p.index), Some(2));
    }

    #[test]
    fn address_bits_per_level() {
        assert_eq!(address_bits(52, 0), 0x000f_ffff_ffff_f000);
        assert_eq!(address_bits(48, 1), 0x0000_ffff_ffe0_0000);
        assert_eq!(address_bits(40, 2), 0x0000_00ff_c000_0000);
        assert_eq!(address_bits(64, 0), 0xffff_ffff_ffff_f000);
    }

    #[test]
    fn empty_range_has_no_pieces() {
        assert_eq!(Pieces::new(0, 0x5000, 0x5000).count(), 0);
    }

    #[test]
    fn leaf_fits_needs_whole_entry_alignment_size_and_cap() {
        let whole = Pieces::new(1, 0x20_0000, 0x40_0000).next().unwrap();
        let all = PageSizes::ALL;
        assert!(leaf_fits(1, &whole, 0x4000_0000, all, PageSize::Size1G));
        assert!(!leaf_fits(1, &whole, 0x4000_1000, all, PageSize::Size1G)); // PA misaligned
        assert!(!leaf_fits(1, &whole, 0x4000_0000, all, PageSize::Size4K)); // capped
        let no2m = all.without(PageSize::Size2M);
        assert!(!leaf_fits(1, &whole, 0x4000_0000, no2m, PageSize::Size1G)); // unsupported
        let part = Pieces::new(1, 0x20_1000, 0x40_0000).next().unwrap();
        assert!(!leaf_fits(1, &part, 0x4000_0000, all, PageSize::Size1G)); // partial
        assert!(!leaf_fits(3, &whole, 0, all, PageSize::Size1G)); // no 512 GiB leaves
    }
}
