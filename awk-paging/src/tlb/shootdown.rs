//! Cross-CPU TLB shootdown for architectures whose invalidations reach only the CPU that runs
//! them (x86 `invlpg`, CR3 writes): the initiator invalidates locally, interrupts the other CPUs
//! that have the address space active, and waits until each has run the same invalidation and
//! acknowledged it (what Linux's `flush_tlb_mm_range` → `smp_call_function_many` does).
//! AArch64 needs none of this: its `tlbi …is` forms are broadcast in hardware.
//!
//! # Protocol
//!
//! Every CPU has one request slot of its own (it is the only writer) and a row of
//! acknowledgements (one per initiator). An initiator writes its request, bumps its generation
//! (`Release`), sends the IPIs and spins until every target's acknowledgement reaches that
//! generation (`Acquire`). A target's IPI handler ([`Shootdown::handle`]) looks at every
//! initiator's generation (`Acquire`), runs each new request through its local [`Tlb`] and
//! acknowledges it (`Release`). The page-table stores the initiator made before the request are
//! therefore visible to a target before it invalidates, so no target can re-walk the old entry
//! afterwards; and the initiator returns only when no target can still use the old translation
//! (the precondition for freeing a page or a table).
//!
//! While it waits, an initiator runs its own handler too. Two CPUs that shoot each other down
//! at the same time — each with interrupts masked, as the seed API's lock does — therefore
//! both finish instead of waiting for each other forever. A CPU that never takes the IPI (its
//! interrupts masked for good, or a CPU that is not running) blocks the initiator: the kernel
//! must keep only running CPUs in an address space's active set.

use core::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use super::Tlb;
use crate::VirtAddr;

/// Sends the shootdown interrupt to CPUs (x86: a fixed-vector IPI through the local APIC),
/// whose handler calls [`Shootdown::handle`] for its CPU.
///
/// ```
/// use awk_paging::Ipi;
/// struct Nobody;
/// impl Ipi for Nobody {
///     fn send(&self, cpus: u64) { assert_eq!(cpus, 0) }
/// }
/// Nobody.send(0);
/// ```
pub trait Ipi {
    /// Interrupts every CPU whose bit is set in `cpus` (bit `n` = CPU `n`).
    fn send(&self, cpus: u64);
}

/// What one shootdown invalidates.
///
/// ```
/// use awk_paging::Request;
/// use awk_paging::VirtAddr;
/// assert_ne!(Request::Page(VirtAddr::new(0x1000)), Request::All);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// [`Tlb::flush_page`] of this address.
    Page(VirtAddr),
    /// [`Tlb::flush_leaf`] of this address.
    Leaf(VirtAddr),
    /// [`Tlb::flush_all`].
    All,
}

impl Request {
    const PAGE: u64 = 1;
    const LEAF: u64 = 2;
    const ALL: u64 = 3;

    fn encode(self) -> (u64, u64) {
        match self {
            Request::Page(va) => (Self::PAGE, va.as_u64()),
            Request::Leaf(va) => (Self::LEAF, va.as_u64()),
            Request::All => (Self::ALL, 0),
        }
    }

    /// Unknown kinds (never written) decode as a full flush: more than asked is always safe.
    fn decode(kind: u64, va: u64) -> Request {
        match kind {
            Self::PAGE => Request::Page(VirtAddr::new(va)),
            Self::LEAF => Request::Leaf(VirtAddr::new(va)),
            _ => Request::All,
        }
    }

    fn run(self, local: &impl Tlb) {
        match self {
            Request::Page(va) => local.flush_page(va),
            Request::Leaf(va) => local.flush_leaf(va),
            Request::All => local.flush_all(),
        }
    }
}

/// One initiator's request slot.
struct Slot {
    generation: AtomicU64,
    kind: AtomicU64,
    va: AtomicU64,
}

/// The shootdown state of up to `CPUS` CPUs (at most 64): one static per kernel.
///
/// ```
/// use awk_paging::{Ipi, Request, Shootdown};
/// use awk_paging::{NoTlb, VirtAddr};
/// static SHOOTDOWN: Shootdown<4> = Shootdown::new();
/// struct Nobody;
/// impl Ipi for Nobody {
///     fn send(&self, _: u64) {}
/// }
/// // CPU 0 invalidates a page in an address space only it runs: no IPI, no wait.
/// SHOOTDOWN.request(0, 0b0001, Request::Page(VirtAddr::new(0x1000)), &NoTlb, &Nobody);
/// ```
pub struct Shootdown<const CPUS: usize> {
    slots: [Slot; CPUS],
    /// `acks[target][initiator]`: the initiator's last generation the target ran.
    acks: [[AtomicU64; CPUS]; CPUS],
}

impl<const CPUS: usize> Default for Shootdown<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> Shootdown<CPUS> {
    const FITS: () = assert!(CPUS > 0 && CPUS <= 64, "1 to 64 CPUs (one bit each)");

    /// No request yet.
    ///
    /// ```
    /// let s = awk_paging::Shootdown::<2>::new();
    /// # let _ = s;
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::FITS;
        Shootdown {
            slots: [const {
                Slot {
                    generation: AtomicU64::new(0),
                    kind: AtomicU64::new(0),
                    va: AtomicU64::new(0),
                }
            }; CPUS],
            acks: [const { [const { AtomicU64::new(0) }; CPUS] }; CPUS],
        }
    }

    /// Runs on CPU `cpu` (its shootdown IPI handler, or an initiator waiting): performs every
    /// request made to it since its last call, through its local TLB hook `local`, and
    /// acknowledges each. CPUs out of range are ignored.
    ///
    /// ```
    /// let s = awk_paging::Shootdown::<2>::new();
    /// s.handle(1, &awk_paging::NoTlb); // nothing requested: nothing to do
    /// ```
    pub fn handle(&self, cpu: usize, local: &impl Tlb) {
        let Some(acks) = self.acks.get(cpu) else {
            return;
        };
        for (from, slot) in self.slots.iter().enumerate() {
            if from == cpu {
                continue;
            }
            let generation = slot.generation.load(Acquire);
            if generation == acks[from].load(Relaxed) {
                continue;
            }
            // The initiator writes its next request only after this CPU acknowledged this
            // one (or, if this CPU is not among its targets, a mixed read only means a
            // different invalidation than asked, which is never harmful here: the CPU owes
            // none).
            let request = Request::decode(slot.kind.load(Relaxed), slot.va.load(Relaxed));
            request.run(local);
            acks[from].store(generation, Release);
        }
    }

    /// CPU `from` invalidates `what` for an address space active on the CPUs in `active`
    /// (bit `n` = CPU `n`; bits past `CPUS` are ignored): locally through `local`, then on
    /// the others, interrupted through `ipi`. Returns when every one of them has run it.
    /// While waiting it runs [`handle`](Self::handle) for `from`, so concurrent shootdowns
    /// between CPUs cannot deadlock, even with interrupts masked.
    ///
    /// The page-table stores that made the invalidation necessary must come before the call
    /// (the request is published with `Release` after them).
    pub fn request(
        &self,
        from: usize,
        active: u64,
        what: Request,
        local: &impl Tlb,
        ipi: &impl Ipi,
    ) {
        what.run(local);
        let Some(slot) = self.slots.get(from) else {
            return;
        };
        let all = if CPUS == 64 {
            u64::MAX
        } else {
            (1u64 << CPUS) - 1
        };
        let targets = active & all & !(1u64 << from);
        if targets == 0 {
            return;
        }
        let (kind, va) = what.encode();
        slot.kind.store(kind, Relaxed);
        slot.va.store(va, Relaxed);
        let generation = slot.generation.load(Relaxed) + 1;
        slot.generation.store(generation, Release);
        ipi.send(targets);
        for target in 0..CPUS {
            if targets & (1 << target) == 0 {
                continue;
            }
            while self.acks[target][from].load(Acquire) != generation {
                self.handle(from, local);
                core::hint::spin_loop();
            }
        }
    }
}

/// The [`Tlb`] of one address space on a kernel with a [`Shootdown`]: every invalidation runs
/// on this CPU and on the CPUs in `active` (the address space's CPU set, which the kernel keeps
/// up to date when it switches address spaces). Batches and range flushes fall back to one
/// request per page or a full flush (the [`Tlb`] defaults).
///
/// ```
/// use awk_paging::{Ipi, Shootdown, ShootdownTlb};
/// use awk_paging::{NoTlb, Tlb, VirtAddr};
/// use core::sync::atomic::AtomicU64;
/// static SHOOTDOWN: Shootdown<2> = Shootdown::new();
/// static ACTIVE: AtomicU64 = AtomicU64::new(0b01);
/// #[derive(Clone)]
/// struct Nobody;
/// impl Ipi for Nobody {
///     fn send(&self, _: u64) {}
/// }
/// let tlb = ShootdownTlb { shootdown: &SHOOTDOWN, active: &ACTIVE, this_cpu: || 0, local: NoTlb, ipi: Nobody };
/// tlb.flush_page(VirtAddr::new(0x1000));
/// ```
#[derive(Clone)]
pub struct ShootdownTlb<'a, L, I, const CPUS: usize> {
    /// The kernel's shootdown state.
    pub shootdown: &'a Shootdown<CPUS>,
    /// The CPUs the address space is active on.
    pub active: &'a AtomicU64,
    /// This CPU's index.
    pub this_cpu: fn() -> usize,
    /// This CPU's own invalidation (x86: `Invlpg`).
    pub local: L,
    /// The interrupt to the others.
    pub ipi: I,
}

impl<L: Tlb, I: Ipi, const CPUS: usize> ShootdownTlb<'_, L, I, CPUS> {
    fn run(&self, what: Request) {
        let active = self.active.load(Acquire);
        self.shootdown
            .request((self.this_cpu)(), active, what, &self.local, &self.ipi);
    }
}

impl<L: Tlb, I: Ipi, const CPUS: usize> Tlb for ShootdownTlb<'_, L, I, CPUS> {
    fn flush_page(&self, va: VirtAddr) {
        self.run(Request::Page(va));
    }

    fn flush_leaf(&self, va: VirtAddr) {
        self.run(Request::Leaf(va));
    }

    fn flush_all(&self) {
        self.run(Request::All);
    }

    fn publish(&self) {
        self.local.publish();
    }

    fn order_table_writes(&self) {
        self.local.order_table_writes();
    }
}
