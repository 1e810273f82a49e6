//! Running code at EL0 and coming back: [`run`] enters EL0 at a user address with `x0`, `x1`
//! set (`eret` with SPSR_EL1 = EL0t), and the lower-EL synchronous vector brings the CPU back
//! to EL1 when the user code makes an `svc` (its `x0` is the result) or takes an abort the
//! test's fault handler does not resolve (the abort is the result). A resolved abort returns to
//! the faulting instruction (the access is retried), as a kernel's page-fault path does.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::exceptions::{exception_class, Frame};

core::arch::global_asm!(
    r#"
.section .text
.global user_enter
// x0: entry, x1: first argument, x2: second argument. Returns the user's x0 at its svc, or
// the marker the vector leaves for an unresolved abort.
user_enter:
    stp x29, x30, [sp, #-96]!
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    msr elr_el1, x0
    mov x0, #0x3c0            // EL0t, DAIF masked
    msr spsr_el1, x0
    msr sp_el0, xzr
    mov x0, x1
    mov x1, x2
    eret
.global user_return
user_return:
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp x29, x30, [sp], #96
    ret
"#
);

extern "C" {
    fn user_enter(entry: u64, a0: u64, a1: u64) -> u64;
    static user_return: u8;
}

/// What [`run`] returns when the user code took an abort nobody resolved.
pub const ABORTED: u64 = 0xdead_0000_abcd_0001;

/// The last unresolved EL0 abort: (FAR_EL1, ESR_EL1).
static LAST_FAR: AtomicU64 = AtomicU64::new(0);
static LAST_ESR: AtomicU64 = AtomicU64::new(0);

type Handler<'a> = dyn FnMut(u64, u64) -> bool + 'a;

/// The running test's abort handler (a `*mut &mut Handler`), while [`run`] runs.
static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Runs the EL0 code at `entry` with `x0 = a0`, `x1 = a1` until its `svc`; an abort is first
/// offered to `on_abort(far, esr)`, which resolves it (`true`: retry the access) or not
/// (`false`: `run` returns [`ABORTED`], see [`last_abort`]).
///
/// # Safety
///
/// `entry` is mapped user-executable in the active TTBR0 tables, and the code there ends with
/// an `svc` (or aborts); the kernel's code, stack and vectors stay mapped in those tables.
pub unsafe fn run(entry: u64, a0: u64, a1: u64, on_abort: &mut Handler<'_>) -> u64 {
    let mut h: &mut Handler<'_> = on_abort;
    let pan = if awk_paging_aarch64::pan::is_on() {
        awk_paging_aarch64::pan::PAN_BIT
    } else {
        0
    };
    CALLER_PAN.store(pan, Ordering::SeqCst);
    HANDLER.store((&mut h as *mut &mut Handler<'_>).cast(), Ordering::SeqCst);
    // SAFETY: the caller's contract; user_enter preserves the callee-saved registers and
    // comes back through user_return on this stack.
    let r = unsafe { user_enter(entry, a0, a1) };
    HANDLER.store(core::ptr::null_mut(), Ordering::SeqCst);
    r
}

/// The last abort [`run`] returned [`ABORTED`] for: (FAR_EL1, ESR_EL1).
pub fn last_abort() -> (u64, u64) {
    (
        LAST_FAR.load(Ordering::SeqCst),
        LAST_ESR.load(Ordering::SeqCst),
    )
}

/// PSTATE.PAN of the EL1 code that called [`run`] (SPSR bit 22), restored when it returns.
static CALLER_PAN: AtomicU64 = AtomicU64::new(0);

/// Back to EL1 at `user_return` with `x0 = result`, with PSTATE.PAN as [`run`]'s caller had it
/// (the kernel runs with PAN on where the CPU has it).
fn leave(frame: &mut Frame, result: u64) {
    frame.elr = core::ptr::addr_of!(user_return) as u64;
    frame.spsr = 0x3c5 | CALLER_PAN.load(Ordering::SeqCst); // EL1h, DAIF masked, PAN
    frame.x[0] = result;
}

/// The lower-EL synchronous vector: `true` if handled (the frame then resumes EL0 or returns
/// to [`run`]'s caller).
pub fn lower_el_sync(frame: &mut Frame, esr: u64, far: u64) -> bool {
    let handler = HANDLER.load(Ordering::SeqCst).cast::<&mut Handler<'_>>();
    if handler.is_null() {
        return false;
    }
    match exception_class(esr) {
        0x15 => {
            let r = frame.x[0];
            leave(frame, r);
        }
        0x20 | 0x24 => {
            // SAFETY: set by `run` for its duration, which this exception is inside of.
            let resolved = unsafe { (*handler)(far, esr) };
            if !resolved {
                LAST_FAR.store(far, Ordering::SeqCst);
                LAST_ESR.store(esr, Ordering::SeqCst);
                leave(frame, ABORTED);
            }
        }
        _ => return false,
    }
    true
}
