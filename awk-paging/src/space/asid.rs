//! ASID / PCID allocation with generations and rollover, and what is active on each CPU.
//!
//! The design is the one Linux uses on arm64 (`arch/arm64/mm/context.c`), written here from
//! its description:
//!
//! - An address space's [`ContextId`] holds a **generation** and an ASID. Switching to a space
//!   whose id is of the current generation needs no allocation and no flush: its ASID is still
//!   its own, and the entries tagged with it are still its own.
//! - A space with an id of an older generation (or none) gets one: its old ASID if nobody took
//!   it in this generation, else a free one from the bitmap.
//! - When the bitmap is full, the generation rolls over: the bitmap is cleared except for the
//!   ASIDs **active on some CPU** right now (they are *reserved*: their owners keep them into
//!   the new generation, as the CPUs running them cannot drop them in the middle of a run), and
//!   every CPU is marked to **flush its whole local TLB before its next switch**. So an ASID
//!   reused for another space in the new generation never meets the old owner's entries: every
//!   CPU that could hold them flushes before it runs anything of the new generation.
//!
//! ASID 0 is never handed out: it is the tag of "no process" (AArch64 `TTBR0_EL1` with an
//! empty table, x86 the kernel's own PML4 with PCID 0).
//!
//! The allocator is plain data with `&mut self` methods: a kernel keeps it under the same lock
//! as its scheduler's switch (Linux's `cpu_asid_lock`), and uses [`ContextId`]'s atomic only to
//! read a space's ASID from its TLB hook ([`SpaceTlb`](super::SpaceTlb)).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::PhyAddr;

/// Bits of a [`ContextId`] value below the generation: the ASID.
const ASID_BITS: u32 = 16;
const ASID_MASK: u64 = (1 << ASID_BITS) - 1;

/// The most ASIDs any supported CPU has (AArch64 with 16-bit ASIDs).
///
/// ```
/// assert_eq!(awk_paging::space::MAX_ASIDS, 65536);
/// ```
pub const MAX_ASIDS: usize = 1 << ASID_BITS;

/// An address space's ASID and the generation it was allocated in (0: none yet). Kept by the
/// kernel next to the space (its process structure); read by the space's
/// [`SpaceTlb`](super::SpaceTlb), written by [`Asids::switch_to`].
///
/// ```
/// use awk_paging::space::ContextId;
/// let id = ContextId::new();
/// assert_eq!(id.asid(), None);
/// ```
#[derive(Debug, Default)]
pub struct ContextId(AtomicU64);

impl ContextId {
    /// No ASID yet (never activated: nothing of it can be cached anywhere).
    ///
    /// ```
    /// static ID: awk_paging::space::ContextId = awk_paging::space::ContextId::new();
    /// assert_eq!(ID.generation(), 0);
    /// ```
    #[must_use]
    pub const fn new() -> ContextId {
        ContextId(AtomicU64::new(0))
    }

    /// The ASID last given to the space (possibly of an older generation: its stale entries
    /// may still be cached under it, so per-ASID flushes use it), or `None` if it never had one.
    ///
    /// ```
    /// assert!(awk_paging::space::ContextId::new().asid().is_none());
    /// ```
    #[must_use]
    pub fn asid(&self) -> Option<u16> {
        let v = self.0.load(Ordering::Acquire);
        (v != 0).then_some((v & ASID_MASK) as u16)
    }

    /// The generation of that ASID (0: none).
    ///
    /// ```
    /// assert_eq!(awk_paging::space::ContextId::new().generation(), 0);
    /// ```
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.0.load(Ordering::Acquire) >> ASID_BITS
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, v: u64) {
        self.0.store(v, Ordering::Release);
    }
}

/// What a CPU must do to run an address space: load its root with `asid`, after flushing its
/// whole local TLB if `flush_local` (a rollover happened since this CPU last switched).
///
/// ```
/// let s = awk_paging::space::Switch { asid: 5, flush_local: false, new_asid: false };
/// assert!(!s.flush_local); // a live ASID: no flush
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The ASID to run with (never 0).
    pub asid: u16,
    /// Flush every non-global entry of every ASID on this CPU before using `asid` (AArch64
    /// `tlbi vmalle1; dsb nsh`; x86 `invpcid` all-contexts, or a CR4.PGE toggle without it).
    pub flush_local: bool,
    /// Whether `asid` is new to the space (allocated in this switch).
    pub new_asid: bool,
}

/// What one CPU runs.
///
/// ```
/// use awk_paging::space::{Active, Asids, ContextId};
/// let mut asids = Asids::<1>::new(256).unwrap();
/// let s = asids.switch_to(0, &ContextId::new(), awk_paging::PhyAddr::new(0x1000)).unwrap();
/// assert_eq!(asids.active(0), Some(Active { root: awk_paging::PhyAddr::new(0x1000), asid: s.asid }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    /// The root table loaded for user space.
    pub root: PhyAddr,
    /// Its ASID.
    pub asid: u16,
}

/// Why the allocator refused.
///
/// ```
/// use awk_paging::space::{AsidError, Asids, ContextId};
/// let mut asids = Asids::<1>::new(256).unwrap();
/// let e = asids.switch_to(1, &ContextId::new(), awk_paging::PhyAddr::new(0x1000));
/// assert_eq!(e.unwrap_err(), AsidError::NoSuchCpu);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsidError {
    /// The ASID count is not a power of two in `2..=65536`, or leaves no free ASID after a
    /// rollover (it must exceed the number of CPUs plus one: ASID 0 and one reserved per CPU).
    BadCount,
    /// The CPU index is not below the allocator's CPU count.
    NoSuchCpu,
}

impl core::fmt::Display for AsidError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AsidError::BadCount => {
                "ASID count must be a power of two above CPUs + 1, at most 65536"
            }
            AsidError::NoSuchCpu => "no such CPU",
        })
    }
}

/// The ASID allocator for `CPUS` CPUs (see the module docs): a bitmap of the ASIDs taken in
/// the current generation, and per CPU the id it runs, the id it reserved at the last rollover
/// and whether it owes a local flush.
///
/// ```
/// use awk_paging::space::{Asids, ContextId};
/// let mut asids = Asids::<2>::new(256).unwrap();
/// let (a, b) = (ContextId::new(), ContextId::new());
/// let sa = asids.switch_to(0, &a, awk_paging::PhyAddr::new(0x1000)).unwrap();
/// let sb = asids.switch_to(1, &b, awk_paging::PhyAddr::new(0x2000)).unwrap();
/// assert_ne!(sa.asid, sb.asid);
/// assert!(!sa.flush_local && !sb.flush_local);
/// // Switching back to `a` keeps its ASID: no flush (tagged TLB).
/// let again = asids.switch_to(1, &a, awk_paging::PhyAddr::new(0x1000)).unwrap();
/// assert_eq!((again.asid, again.flush_local, again.new_asid), (sa.asid, false, false));
/// ```
#[derive(Clone, Debug)]
pub struct Asids<const CPUS: usize> {
    count: usize,
    generation: u64,
    map: [u64; MAX_ASIDS / 64],
    next: usize,
    /// The id each CPU switched to last, zeroed at a rollover (then `reserved` holds it).
    active: [u64; CPUS],
    /// The id each CPU runs (kept across rollovers; 0 after `leave`).
    running: [u64; CPUS],
    roots: [PhyAddr; CPUS],
    reserved: [u64; CPUS],
    flush_pending: [bool; CPUS],
    rollovers: u64,
}

impl<const CPUS: usize> Asids<CPUS> {
    /// An allocator for `count` ASIDs (AArch64: 256 or 65536 — ID_AA64MMFR0_EL1.ASIDBits and
    /// TCR_EL1.AS; x86: 4096 PCIDs).
    ///
    /// ```
    /// use awk_paging::space::{AsidError, Asids};
    /// assert!(Asids::<4>::new(4096).is_ok());
    /// assert_eq!(Asids::<4>::new(100).unwrap_err(), AsidError::BadCount);
    /// assert_eq!(Asids::<4>::new(4).unwrap_err(), AsidError::BadCount); // 0 + 4 reserved
    /// ```
    pub const fn new(count: usize) -> Result<Self, AsidError> {
        if !count.is_power_of_two() || count > MAX_ASIDS || count <= CPUS + 1 {
            return Err(AsidError::BadCount);
        }
        Ok(Asids {
            count,
            generation: 1,
            map: [0; MAX_ASIDS / 64],
            next: 1,
            active: [0; CPUS],
            running: [0; CPUS],
            roots: [PhyAddr::ZERO; CPUS],
            reserved: [0; CPUS],
            flush_pending: [false; CPUS],
            rollovers: 0,
        })
    }

    /// The current generation (starts at 1, +1 per rollover).
    ///
    /// ```
    /// assert_eq!(awk_paging::space::Asids::<1>::new(256).unwrap().generation(), 1);
    /// ```
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Rollovers so far.
    ///
    /// ```
    /// assert_eq!(awk_paging::space::Asids::<1>::new(256).unwrap().rollovers(), 0);
    /// ```
    #[must_use]
    pub fn rollovers(&self) -> u64 {
        self.rollovers
    }

    /// What `cpu` runs (`None`: no user address space, or no such CPU).
    ///
    /// ```
    /// use awk_paging::space::{Asids, ContextId};
    /// use awk_paging::PhyAddr;
    /// let mut asids = Asids::<1>::new(256).unwrap();
    /// assert_eq!(asids.active(0), None);
    /// let s = asids.switch_to(0, &ContextId::new(), PhyAddr::new(0x5000)).unwrap();
    /// assert_eq!(asids.active(0).unwrap().root, PhyAddr::new(0x5000));
    /// assert_eq!(asids.active(0).unwrap().asid, s.asid);
    /// ```
    #[must_use]
    pub fn active(&self, cpu: usize) -> Option<Active> {
        let id = *self.running.get(cpu)?;
        let root = *self.roots.get(cpu)?;
        (id != 0).then_some(Active {
            root,
            asid: (id & ASID_MASK) as u16,
        })
    }

    /// Whether the space with id `ctx` runs on some CPU (it must not be destroyed then).
    ///
    /// ```
    /// use awk_paging::space::{Asids, ContextId};
    /// let mut asids = Asids::<1>::new(256).unwrap();
    /// let id = ContextId::new();
    /// assert!(!asids.is_active(&id));
    /// asids.switch_to(0, &id, awk_paging::PhyAddr::new(0x5000)).unwrap();
    /// assert!(asids.is_active(&id));
    /// asids.leave(0).unwrap();
    /// assert!(!asids.is_active(&id));
    /// ```
    #[must_use]
    pub fn is_active(&self, ctx: &ContextId) -> bool {
        // By ASID: a space running on a CPU keeps its ASID reserved through rollovers, so no
        // other space can hold the same ASID meanwhile.
        let id = ctx.get();
        id != 0
            && self
                .running
                .iter()
                .any(|&r| r != 0 && r & ASID_MASK == id & ASID_MASK)
    }

    /// `cpu` stops running a user address space (it loads the kernel-only root / ASID 0).
    ///
    /// ```
    /// let mut asids = awk_paging::space::Asids::<1>::new(256).unwrap();
    /// assert!(asids.leave(3).is_err());
    /// ```
    pub fn leave(&mut self, cpu: usize) -> Result<(), AsidError> {
        if cpu >= CPUS {
            return Err(AsidError::NoSuchCpu);
        }
        // The CPU's TLB may keep the space's entries; a rollover marks it for a flush before
        // its next switch, so a reused ASID never meets them.
        self.active[cpu] = 0;
        self.running[cpu] = 0;
        Ok(())
    }

    /// Makes `cpu` run the address space with id `ctx` and root `root`: keeps its ASID if it is
    /// of the current generation, else gives it one (rolling over when none is free). The
    /// caller loads `root` with [`Switch::asid`] (see [`Activate`](super::Activate)), first
    /// flushing the local TLB if [`Switch::flush_local`] says so.
    ///
    /// ```
    /// use awk_paging::space::{Asids, ContextId};
    /// use awk_paging::PhyAddr;
    /// // 4 ASIDs: 0 is never used, so three spaces fit in one generation.
    /// let mut asids = Asids::<1>::new(4).unwrap();
    /// let ids: Vec<ContextId> = (0..4).map(|_| ContextId::new()).collect();
    /// for id in &ids[..3] {
    ///     assert!(!asids.switch_to(0, id, PhyAddr::new(0x1000)).unwrap().flush_local);
    /// }
    /// // The fourth rolls over: this CPU must flush before it runs the reused ASID.
    /// let s = asids.switch_to(0, &ids[3], PhyAddr::new(0x2000)).unwrap();
    /// assert!(s.flush_local);
    /// assert_eq!(asids.generation(), 2);
    /// ```
    pub fn switch_to(
        &mut self,
        cpu: usize,
        ctx: &ContextId,
        root: PhyAddr,
    ) -> Result<Switch, AsidError> {
        if cpu >= CPUS {
            return Err(AsidError::NoSuchCpu);
        }
        let mut id = ctx.get();
        let mut new_asid = false;
        if id == 0 || id >> ASID_BITS != self.generation {
            let fresh = self.new_context(id);
            new_asid = fresh & ASID_MASK != id & ASID_MASK || id == 0;
            id = fresh;
            ctx.set(id);
        }
        let flush_local = core::mem::take(&mut self.flush_pending[cpu]);
        self.active[cpu] = id;
        self.running[cpu] = id;
        self.roots[cpu] = root;
        Ok(Switch {
            asid: (id & ASID_MASK) as u16,
            flush_local,
            new_asid,
        })
    }

    /// An id of the current generation for a space whose id is `old` (0 or older).
    fn new_context(&mut self, old: u64) -> u64 {
        let generation = self.generation << ASID_BITS;
        if old != 0 {
            let asid = old & ASID_MASK;
            // Active on some CPU at the last rollover: it kept its ASID (already in the map).
            if self.reserved.contains(&old) {
                let new = generation | asid;
                for r in self.reserved.iter_mut().filter(|r| **r == old) {
                    *r = new;
                }
                return new;
            }
            // Free in this generation: take it back (its own entries only can be cached).
            if !self.test_and_set(asid as usize) {
                return generation | asid;
            }
        }
        let asid = match self.find_free() {
            Some(a) => a,
            None => {
                self.rollover();
                // `count > CPUS + 1`: at most CPUS ASIDs are reserved, so one is free.
                self.find_free().unwrap_or(1)
            }
        };
        self.test_and_set(asid);
        self.next = asid + 1;
        (self.generation << ASID_BITS) | asid as u64
    }

    /// A new generation: only the ASIDs running now stay taken; every CPU flushes before its
    /// next switch.
    fn rollover(&mut self) {
        self.generation += 1;
        self.rollovers += 1;
        self.map = [0; MAX_ASIDS / 64];
        for cpu in 0..CPUS {
            let running = core::mem::take(&mut self.active[cpu]);
            // A CPU that ran nothing since the last rollover keeps what it reserved then.
            if running != 0 {
                self.reserved[cpu] = running;
            }
            let r = self.reserved[cpu];
            if r != 0 {
                self.test_and_set((r & ASID_MASK) as usize);
            }
            self.flush_pending[cpu] = true;
        }
        self.next = 1;
    }

    /// The first free ASID from `next` on (wrapping, never 0).
    fn find_free(&self) -> Option<usize> {
        let taken = |a: usize| self.map[a / 64] & (1 << (a % 64)) != 0;
        (self.next..self.count)
            .chain(1..self.next.min(self.count))
            .find(|&a| !taken(a))
    }

    /// Marks `asid` taken; whether it already was.
    fn test_and_set(&mut self, asid: usize) -> bool {
        let (w, b) = (asid / 64, 1u64 << (asid % 64));
        let Some(word) = self.map.get_mut(w) else {
            return true;
        };
        let was = *word & b != 0;
        *word |= b;
        was
    }
}
