//! Fault probes, the architecture-independent half: memory accesses that may fault on purpose.
//!
//! Each architecture provides the three probe routines in assembly (`probe_read_asm`,
//! `probe_write_asm`, `probe_exec_asm`, with labels on their faulting instructions and resume
//! points), a `classify` function for its fault syndrome, and an exception handler that calls
//! its `recover`, which uses [`sites`], [`armed_exec_target`] and [`record`] from here.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(target_arch = "aarch64")]
use crate::aarch64::probe::classify;
use crate::live::Fault;
#[cfg(target_arch = "x86_64")]
use crate::x86_64::probe::classify;

#[repr(C)]
struct ReadResult {
    value: u64,
    faulted: u64,
}

extern "C" {
    fn probe_read_asm(addr: u64) -> ReadResult;
    fn probe_write_asm(addr: u64, value: u64) -> u64;
    fn probe_exec_asm(addr: u64) -> u64;
    static probe_read_insn: u8;
    static probe_read_resume: u8;
    static probe_write_insn: u8;
    static probe_write_resume: u8;
}

static EXEC_TARGET: AtomicU64 = AtomicU64::new(u64::MAX);
static EXEC_ARMED: AtomicBool = AtomicBool::new(false);
static LAST_ADDR: AtomicU64 = AtomicU64::new(0);
static LAST_RAW: AtomicU64 = AtomicU64::new(0);

/// Addresses of the probes' faulting instructions and resume points (an exception table).
pub struct Sites {
    /// The read probe's load.
    pub read_insn: u64,
    /// Where the read probe resumes after a fault.
    pub read_resume: u64,
    /// The write probe's store.
    pub write_insn: u64,
    /// Where the write probe resumes after a fault.
    pub write_resume: u64,
}

/// The exception table.
pub fn sites() -> Sites {
    let here = |sym: &u8| core::ptr::from_ref(sym) as u64;
    // SAFETY: taking the addresses of linker symbols.
    unsafe {
        Sites {
            read_insn: here(&probe_read_insn),
            read_resume: here(&probe_read_resume),
            write_insn: here(&probe_write_insn),
            write_resume: here(&probe_write_resume),
        }
    }
}

/// The address an exec probe is calling right now, if one is.
pub fn armed_exec_target() -> Option<u64> {
    EXEC_ARMED
        .load(Ordering::SeqCst)
        .then(|| EXEC_TARGET.load(Ordering::SeqCst))
}

/// Records a recovered fault (faulting address and raw syndrome).
pub fn record(addr: u64, raw: u64) {
    LAST_ADDR.store(addr, Ordering::SeqCst);
    LAST_RAW.store(raw, Ordering::SeqCst);
}

fn last_fault() -> Fault {
    let raw = LAST_RAW.load(Ordering::SeqCst);
    Fault {
        addr: LAST_ADDR.load(Ordering::SeqCst),
        kind: classify(raw),
        raw,
    }
}

/// Reads the 8 bytes at `addr`, or reports the fault.
pub fn read(addr: u64) -> Result<u64, Fault> {
    // SAFETY: faults are recovered by the handler; the caller picks addresses it may read.
    let r = unsafe { probe_read_asm(addr) };
    if r.faulted == 0 {
        Ok(r.value)
    } else {
        Err(last_fault())
    }
}

/// Writes `value` to `addr`, or reports the fault.
pub fn write(addr: u64, value: u64) -> Result<(), Fault> {
    // SAFETY: as above; the caller picks addresses it may write.
    if unsafe { probe_write_asm(addr, value) } == 0 {
        Ok(())
    } else {
        Err(last_fault())
    }
}

/// Calls the code at `addr` (a return instruction if it is executable), or reports the fault.
pub fn exec(addr: u64) -> Result<(), Fault> {
    EXEC_TARGET.store(addr, Ordering::SeqCst);
    EXEC_ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the target returns at once or faults on fetch, which the handler recovers.
    let faulted = unsafe { probe_exec_asm(addr) };
    EXEC_ARMED.store(false, Ordering::SeqCst);
    if faulted == 0 {
        Ok(())
    } else {
        Err(last_fault())
    }
}
