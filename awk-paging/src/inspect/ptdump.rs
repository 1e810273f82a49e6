//! A ptdump in Linux's spirit over any [`ForeignTable`] (a live table through
//! [`LiveMem`](super::LiveMem) included): leaves merged into regions with size, access, memory
//! type, user/global and level, and an audit listing writable+executable regions, executable
//! device memory, user memory the kernel may execute, malformed entries and broken tables.

use core::fmt::{self, Write};
use core::ops::ControlFlow;

use super::classify::{Access, Classify, Invalid};
use super::read::PhysRead;
use super::walk::{Broken, ForeignTable, Hole, Leaf, Visitor, WalkError, Walked};
use crate::{Attrs, MemoryType, PageSize, PhyAddr, VirtAddr};

/// Consecutive leaves of one size whose virtual and physical addresses both continue and whose
/// attributes, access and memory type agree.
///
/// ```
/// use awk_paging::emu::{EmuArch, EmuMemory};
/// use awk_paging::inspect::{ForeignTable, LiveMem};
/// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
/// let mem = EmuMemory::new(8);
/// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
/// for i in 0..3 {
///     unsafe { pt.map(VirtAddr::new(0x1000 * (i + 1)), PhyAddr::new(0x9000 + 0x1000 * i), PageSize::Size4K, Flags::RW) }.unwrap().flush();
/// }
/// let mut regions = Vec::new();
/// ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root()).regions(|r| regions.push(*r)).unwrap();
/// assert_eq!(regions.len(), 1);
/// assert_eq!((regions[0].start, regions[0].len, regions[0].pages), (VirtAddr::new(0x1000), 0x3000, 3));
/// assert_eq!(
///     regions[0].to_string(),
///     "0x0000000000001000-0x0000000000004000     12K -> 0x000000009000  4K x3     L0 k:rw- u:--- write-back    kernel ng"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First virtual address.
    pub start: VirtAddr,
    /// Length in bytes.
    pub len: u64,
    /// Physical address of `start`.
    pub frame: PhyAddr,
    /// Page size of every leaf in it.
    pub size: PageSize,
    /// Number of leaves.
    pub pages: u64,
    /// Effective attributes.
    pub attrs: Attrs,
    /// Who may read, write and execute.
    pub access: Access,
    /// Memory type.
    pub memory_type: MemoryType,
}

impl Region {
    /// The level of its leaves (0 = 4 KiB).
    ///
    /// ```
    /// # use awk_paging::inspect::{Access, Region};
    /// # use awk_paging::{Attrs, Flags, MemoryType, PageSize, PhyAddr, VirtAddr};
    /// let r = Region { start: VirtAddr::new(0), len: 1 << 21, frame: PhyAddr::ZERO, size: PageSize::Size2M, pages: 1,
    ///     attrs: Attrs::from(Flags::RO), access: Access::READ_ONLY, memory_type: MemoryType::WriteBack };
    /// assert_eq!(r.level(), 1);
    /// ```
    #[must_use]
    pub const fn level(&self) -> u8 {
        self.size.level()
    }

    /// The first address after it (wrapping to 0 at the top of the address space).
    ///
    /// ```
    /// # use awk_paging::inspect::{Access, Region};
    /// # use awk_paging::{Attrs, Flags, MemoryType, PageSize, PhyAddr, VirtAddr};
    /// let r = Region { start: VirtAddr::new(0xffff_ffff_ffff_f000), len: 0x1000, frame: PhyAddr::ZERO, size: PageSize::Size4K,
    ///     pages: 1, attrs: Attrs::from(Flags::RO), access: Access::READ_ONLY, memory_type: MemoryType::WriteBack };
    /// assert_eq!(r.end(), 0);
    /// ```
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.start.as_u64().wrapping_add(self.len)
    }

    fn extends(&self, l: &Leaf, access: Access, mt: MemoryType) -> bool {
        self.size == l.size
            && self.attrs == l.attrs
            && self.access == access
            && self.memory_type == mt
            && self.start.as_u64().wrapping_add(self.len) == l.va.as_u64()
            && self.frame.as_u64().wrapping_add(self.len) == l.frame.as_u64()
    }
}

/// `start-end  length -> phys  size xN  level access memory-type user|kernel global|ng`.
impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#018x}-{:#018x} {:>7} -> {:#014x} {:>3} x{:<5} L{} {} {:<13} {} {}",
            self.start.as_u64(),
            self.end(),
            Bytes(self.len),
            self.frame.as_u64(),
            self.size,
            self.pages,
            self.level(),
            self.access,
            memory_type_name(self.memory_type),
            if self.attrs.user { "user  " } else { "kernel" },
            if self.attrs.global { "global" } else { "ng" },
        )
    }
}

/// A length with a binary unit (`4K`, `2M`, `1G`, `3T`), exact or in bytes.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = heapless_str::<24>();
        let n = self.0;
        let (v, unit) = [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')]
            .into_iter()
            .find(|&(s, _)| n >= 1 << s && n.is_multiple_of(1 << s))
            .map_or((n, None), |(s, u)| (n >> s, Some(u)));
        let _ = write!(text, "{v}");
        if let Some(u) = unit {
            let _ = text.write_char(u);
        }
        f.pad(text.as_str())
    }
}

/// A tiny fixed-capacity string, so `Bytes` can honour width and alignment with `pad`.
struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

const fn heapless_str<const N: usize>() -> Buf<N> {
    Buf {
        bytes: [0; N],
        len: 0,
    }
}

impl<const N: usize> Buf<N> {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl<const N: usize> Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn memory_type_name(mt: MemoryType) -> &'static str {
    match mt {
        MemoryType::WriteBack => "write-back",
        MemoryType::WriteThrough => "write-through",
        MemoryType::Uncached => "uncached",
        MemoryType::Device => "device",
    }
}

/// Something the audit reports.
///
/// ```
/// use awk_paging::inspect::{Finding, Invalid};
/// use awk_paging::VirtAddr;
/// let f = Finding::Fault { va: VirtAddr::new(0x4000), len: 0x1000, level: 0, raw: 0x80, why: Invalid::ReservedBits };
/// assert_eq!(f.to_string(), "FAULT      0x0000000000004000-0x0000000000005000 level 0 entry 0x80: reserved bits set (reserved-bit fault)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A region writable and executable (by any privilege levels).
    WriteExec(Region),
    /// Executable device memory.
    DeviceExec(Region),
    /// User-accessible memory the kernel may execute.
    UserExecByKernel(Region),
    /// An entry the MMU faults on for another reason than "not present".
    Fault {
        /// First virtual address it covers.
        va: VirtAddr,
        /// Bytes it covers (clipped to the walked range).
        len: u64,
        /// Its level.
        level: u8,
        /// The entry.
        raw: u64,
        /// The fault.
        why: Invalid,
    },
    /// A spot the walk could not follow.
    Broken(Broken),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::WriteExec(r) => write!(f, "W+X        {r}"),
            Finding::DeviceExec(r) => write!(f, "DEVICE+X   {r}"),
            Finding::UserExecByKernel(r) => write!(f, "USER-KEXEC {r}"),
            Finding::Fault {
                va,
                len,
                level,
                raw,
                why,
            } => write!(
                f,
                "FAULT      {:#018x}-{:#018x} level {level} entry {raw:#x}: {why}",
                va.as_u64(),
                va.as_u64().wrapping_add(*len)
            ),
            Finding::Broken(b) => write!(
                f,
                "BROKEN     {:#018x}-{:#018x} level {} table {:#x} entry {}: {}",
                b.va.as_u64(),
                b.va.as_u64().wrapping_add(b.len),
                b.level,
                b.table.as_u64(),
                b.index,
                b.kind
            ),
        }
    }
}

/// Count and bytes of one kind of finding.
///
/// ```
/// let t = awk_paging::inspect::Tally::default();
/// assert_eq!((t.count, t.bytes), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many regions (entries, spots).
    pub count: u64,
    /// How many bytes of address space they cover.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// The audit's totals.
///
/// ```
/// let a = awk_paging::inspect::Audit::default();
/// assert!(a.is_clean());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// All regions (mapped memory).
    pub mapped: Tally,
    /// Writable and executable regions.
    pub write_exec: Tally,
    /// Executable device regions.
    pub device_exec: Tally,
    /// User regions the kernel may execute.
    pub user_exec_by_kernel: Tally,
    /// Entries the MMU faults on for another reason than "not present".
    pub faults: Tally,
    /// Spots the walk could not follow.
    pub broken: Tally,
    /// What the walk went through.
    pub walked: Walked,
}

impl Audit {
    /// Whether nothing was found.
    ///
    /// ```
    /// use awk_paging::inspect::{Audit, Tally};
    /// assert!(!Audit { faults: Tally { count: 1, bytes: 4096 }, ..Audit::default() }.is_clean());
    /// ```
    #[must_use]
    pub const fn is_clean(&self) -> bool {
        self.write_exec.count == 0
            && self.device_exec.count == 0
            && self.user_exec_by_kernel.count == 0
            && self.faults.count == 0
            && self.broken.count == 0
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |t: Tally| (t.count, Bytes(t.bytes));
        let (m, mb) = t(self.mapped);
        let (wx, wxb) = t(self.write_exec);
        let (dx, dxb) = t(self.device_exec);
        let (ux, uxb) = t(self.user_exec_by_kernel);
        let (fa, fab) = t(self.faults);
        let (br, brb) = t(self.broken);
        write!(
            f,
            "{m} regions ({mb} mapped); W+X: {wx} ({wxb}); device+X: {dx} ({dxb}); \
             user executable by kernel: {ux} ({uxb}); faulting entries: {fa} ({fab}); \
             broken: {br} ({brb}); {} tables, {} entries read",
            self.walked.tables, self.walked.entries
        )
    }
}

/// What the merger hands on.
enum Event<'a> {
    Region(&'a Region),
    Fault(Finding),
    Broken(&'a Broken),
}

/// Merges leaves into regions and classifies holes.
struct Merger<'a, A, F> {
    arch: &'a A,
    current: Option<Region>,
    f: F,
}

impl<A: Classify, B, F: FnMut(Event<'_>) -> ControlFlow<B>> Merger<'_, A, F> {
    fn close(&mut self) -> ControlFlow<B> {
        match self.current.take() {
            Some(r) => (self.f)(Event::Region(&r)),
            None => ControlFlow::Continue(()),
        }
    }
}

impl<A: Classify, B, F: FnMut(Event<'_>) -> ControlFlow<B>> Visitor for Merger<'_, A, F> {
    type Break = B;

    fn leaf(&mut self, l: &Leaf) -> ControlFlow<B> {
        let access = self.arch.access(l.raw, l.level, l.limits);
        let mt = self.arch.memory_type(l.raw, l.level);
        match &mut self.current {
            Some(r) if r.extends(l, access, mt) => {
                r.len += l.size.bytes();
                r.pages += 1;
                ControlFlow::Continue(())
            }
            _ => {
                self.close()?;
                self.current = Some(Region {
                    start: l.va,
                    len: l.size.bytes(),
                    frame: l.frame,
                    size: l.size,
                    pages: 1,
                    attrs: l.attrs,
                    access,
                    memory_type: mt,
                });
                ControlFlow::Continue(())
            }
        }
    }

    fn hole(&mut self, h: &Hole) -> ControlFlow<B> {
        self.close()?;
        let why = self.arch.invalid(h.raw, h.level);
        if why.is_not_present() {
            return ControlFlow::Continue(());
        }
        (self.f)(Event::Fault(Finding::Fault {
            va: h.va,
            len: h.len,
            level: h.level,
            raw: h.raw,
            why,
        }))
    }

    fn broken(&mut self, b: &Broken) -> ControlFlow<B> {
        self.close()?;
        (self.f)(Event::Broken(b))
    }
}

impl<A: Classify, R: PhysRead> ForeignTable<A, R> {
    fn merged<B>(
        &self,
        f: impl FnMut(Event<'_>) -> ControlFlow<B>,
    ) -> Result<Walked, WalkError<B>> {
        let mut m = Merger {
            arch: &self.arch,
            current: None,
            f,
        };
        let walked = self.walk(&mut m)?;
        match m.close() {
            ControlFlow::Continue(()) => Ok(walked),
            ControlFlow::Break(b) => Err(WalkError::Stopped(b)),
        }
    }

    /// Calls `f` with every [`Region`] of the address space, in table order. Malformed and
    /// unreadable entries end the region before them and are otherwise skipped (see
    /// [`audit`](Self::audit)).
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{ForeignTable, LiveMem};
    /// use awk_paging::{NoTlb, PageTable};
    /// let mem = EmuMemory::new(4);
    /// let pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// let walked = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root())
    ///     .regions(|_| panic!("empty"))
    ///     .unwrap();
    /// assert_eq!((walked.tables, walked.entries), (1, 512));
    /// ```
    pub fn regions(
        &self,
        mut f: impl FnMut(&Region),
    ) -> Result<Walked, WalkError<core::convert::Infallible>> {
        self.merged(|e| {
            if let Event::Region(r) = e {
                f(r);
            }
            ControlFlow::Continue(())
        })
    }

    /// Walks the address space once and calls `f` with every [`Finding`]: W+X, executable
    /// device memory, user memory the kernel may execute, malformed entries, broken tables.
    /// Returns the totals.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{Finding, ForeignTable, LiveMem};
    /// use awk_paging::{Attrs, Flags, NoTlb, PageSize, PageTable, PhyAddr, Policy, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// pt.set_policy(Policy { allow_write_execute: true, ..Policy::default() });
    /// let rwx = Attrs::from(Flags { write: true, execute: true, ..Flags::RO });
    /// unsafe { pt.map(VirtAddr::new(0x1000), PhyAddr::new(0x8000), PageSize::Size4K, rwx) }.unwrap().flush();
    /// let mut found = Vec::new();
    /// let audit = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root())
    ///     .audit(|f| found.push(*f))
    ///     .unwrap();
    /// assert_eq!((audit.write_exec.count, audit.write_exec.bytes), (1, 0x1000));
    /// assert!(matches!(found[..], [Finding::WriteExec(r)] if r.start == VirtAddr::new(0x1000)));
    /// ```
    pub fn audit(
        &self,
        mut f: impl FnMut(&Finding),
    ) -> Result<Audit, WalkError<core::convert::Infallible>> {
        let mut a = Audit::default();
        a.walked = self.merged(|e| {
            match e {
                Event::Region(r) => {
                    a.mapped.add(r.len);
                    if r.access.write_exec() {
                        a.write_exec.add(r.len);
                        f(&Finding::WriteExec(*r));
                    }
                    if r.memory_type == MemoryType::Device && r.access.exec() {
                        a.device_exec.add(r.len);
                        f(&Finding::DeviceExec(*r));
                    }
                    if r.access.user_exec_by_kernel() {
                        a.user_exec_by_kernel.add(r.len);
                        f(&Finding::UserExecByKernel(*r));
                    }
                }
                Event::Fault(finding) => {
                    if let Finding::Fault { len, .. } = finding {
                        a.faults.add(len);
                    }
                    f(&finding);
                }
                Event::Broken(b) => {
                    a.broken.add(b.len);
                    f(&Finding::Broken(*b));
                }
            }
            ControlFlow::Continue(())
        })?;
        Ok(a)
    }

    /// Writes the ptdump to `out`: one line per region, then one per finding, then the audit's
    /// totals; returns the totals.
    ///
    /// ```
    /// use awk_paging::emu::{EmuArch, EmuMemory};
    /// use awk_paging::inspect::{ForeignTable, LiveMem};
    /// use awk_paging::{Flags, NoTlb, PageSize, PageTable, PhyAddr, VirtAddr};
    /// let mem = EmuMemory::new(8);
    /// let mut pt = PageTable::new(EmuArch::default(), &mem, &mem, NoTlb).unwrap();
    /// unsafe { pt.map(VirtAddr::new(0x20_0000), PhyAddr::new(0x40_0000), PageSize::Size2M, Flags::RX) }.unwrap().flush();
    /// let mut text = String::new();
    /// let audit = ForeignTable::new(EmuArch::default(), LiveMem::new(&mem), pt.root()).ptdump(&mut text).unwrap();
    /// assert!(audit.is_clean());
    /// assert!(text.starts_with("0x0000000000200000-0x0000000000400000      2M -> 0x000000400000  2M x1     L1 k:r-x u:--- write-back    kernel ng\n"));
    /// assert!(text.ends_with("; 3 tables, 1536 entries read\n"));
    /// ```
    pub fn ptdump(&self, out: &mut impl Write) -> Result<Audit, WalkError<fmt::Error>> {
        self.merged(|e| match e {
            Event::Region(r) => match writeln!(out, "{r}") {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            },
            _ => ControlFlow::Continue(()),
        })?;
        let mut err = Ok(());
        let audit = self
            .audit(|finding| {
                if err.is_ok() {
                    err = writeln!(out, "{finding}");
                }
            })
            .map_err(|e| match e {
                WalkError::Range(r) => WalkError::Range(r),
                WalkError::Budget { at } => WalkError::Budget { at },
                WalkError::Stopped(never) => match never {},
            })?;
        err.map_err(WalkError::Stopped)?;
        writeln!(out, "{audit}").map_err(WalkError::Stopped)?;
        Ok(audit)
    }
}
