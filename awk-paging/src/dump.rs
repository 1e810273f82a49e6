//! A ptdump-style listing: mappings merged into runs (contiguous virtual *and* physical
//! addresses, same page size and attributes), one line per run; and the W+X [`audit`] of a
//! live table. Both read through the one read-only walker of [`crate::inspect`], which also
//! gives the richer ptdump (access per privilege level, level, findings) with
//! [`PageTable::inspect`].

use core::fmt::{self, Write};

use crate::arch::Arch;
use crate::inspect::{Audit, Classify, Finding};
use crate::{Attrs, FrameAllocator, Mapping, PageTable, PhysMem, Tlb};

/// One run of mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The first mapping of the run.
    pub first: Mapping,
    /// How many pages of `first.size` it covers.
    pub pages: u64,
}

impl Run {
    fn extends(&self, m: &Mapping) -> bool {
        let len = self.pages * self.first.size.bytes();
        m.size == self.first.size
            && m.attrs == self.first.attrs
            && self.first.page.checked_add(len) == Some(m.page)
            && self.first.frame.checked_add(len) == Some(m.frame)
    }
}

impl fmt::Display for Run {
    /// `start-end -> phys  [size × count]  permissions memory-type scope`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.pages * self.first.size.bytes();
        let end = self.first.page.as_u64().wrapping_add(len);
        write!(
            f,
            "{:#018x}-{:#018x} -> {:#014x}  {:>4} x{:<4}  ",
            self.first.page.as_u64(),
            end,
            self.first.frame.as_u64(),
            self.first.size,
            self.pages
        )?;
        write_attrs(f, self.first.attrs)
    }
}

fn write_attrs(f: &mut impl Write, a: Attrs) -> fmt::Result {
    let fl = a.flags;
    write!(
        f,
        "r{}{} {:<13} {}{}",
        if fl.write { 'w' } else { '-' },
        if fl.execute { 'x' } else { '-' },
        match fl.memory_type() {
            crate::MemoryType::WriteBack => "write-back",
            crate::MemoryType::WriteThrough => "write-through",
            crate::MemoryType::Uncached => "uncached",
            crate::MemoryType::Device => "device",
        },
        if a.user { "user" } else { "kernel" },
        if a.global { " global" } else { "" }
    )
}

/// Calls `f` for every run of `table`'s mappings, in walk order.
///
/// ```
/// # use awk_paging::emu::{EmuArch, EmuMemory};
/// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
/// let mem = EmuMemory::new(8);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// for i in 0..4u64 {
///     let (va, pa) = (VirtAddr::new(0x1000 * i), PhyAddr::new(0x8000 + 0x1000 * i));
///     unsafe { pt.map(va, pa, PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// }
/// let mut runs = Vec::new();
/// awk_paging::dump::runs(&pt, |r| runs.push(r));
/// assert_eq!(runs.len(), 1);
/// assert_eq!(runs[0].pages, 4);
/// ```
pub fn runs<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    table: &PageTable<A, M, F, T>,
    mut f: impl FnMut(Run),
) {
    let mut current: Option<Run> = None;
    table.for_each_mapping(|m| match &mut current {
        Some(run) if run.extends(&m) => run.pages += 1,
        _ => {
            if let Some(done) = current.replace(Run { first: m, pages: 1 }) {
                f(done);
            }
        }
    });
    if let Some(done) = current {
        f(done);
    }
}

/// Writes one line per run to `out`.
///
/// ```
/// # use awk_paging::emu::{EmuArch, EmuMemory};
/// # use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
/// let mem = EmuMemory::new(8);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// unsafe { pt.map(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RX) }
///     .unwrap()
///     .flush();
/// let mut text = String::new();
/// awk_paging::dump::write(&pt, &mut text).unwrap();
/// assert_eq!(
///     text,
///     "0x0000000000200000-0x0000000000400000 -> 0x000000400000    2M x1     r-x write-back    kernel\n"
/// );
/// ```
pub fn write<A: Arch, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    table: &PageTable<A, M, F, T>,
    out: &mut impl Write,
) -> fmt::Result {
    let mut result = Ok(());
    runs(table, |r| {
        if result.is_ok() {
            result = writeln!(out, "{r}");
        }
    });
    result
}

/// The W+X audit of a live table: calls `f` with every finding (writable and executable
/// regions, executable device memory, user memory the kernel may execute, malformed entries,
/// unreachable tables) and returns the totals. See [`crate::inspect::ForeignTable::audit`].
///
/// ```
/// # use awk_paging::emu::{EmuArch, EmuMemory};
/// # use awk_paging::{Attrs, Flags, NoTlb, PageSize, PageTable, PhyAddr, Policy, VirtAddr};
/// let mem = EmuMemory::new(8);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// pt.set_policy(Policy { allow_write_execute: true, ..Policy::default() });
/// let rwx = Flags { write: true, execute: true, ..Flags::RO };
/// unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x8000), PageSize::Size4K, rwx) }.unwrap().flush();
/// let mut found = 0;
/// let audit = awk_paging::dump::audit(&pt, |_| found += 1);
/// assert_eq!((audit.write_exec.count, found), (1, 1));
/// ```
pub fn audit<A: Classify, M: PhysMem, F: FrameAllocator, T: Tlb + Clone>(
    table: &PageTable<A, M, F, T>,
    f: impl FnMut(&Finding),
) -> Audit {
    // Unlimited budget, a visitor that never stops and a range the regime translates: the
    // walk cannot end early.
    table.inspect().audit(f).unwrap_or_default()
}
