//! Running code in ring 3 and coming back: [`run`] enters ring 3 at a user address with
//! `rdi`, `rsi` set (`iretq` with the user selectors of [`super::gdt`]), and the exception
//! handler brings the CPU back to ring 0 when the user code executes `ud2` (its `rax` is the
//! result: the test programs' "system call") or takes a fault the test's handler does not
//! resolve (the fault is the result). A resolved page fault returns to the faulting
//! instruction (the access is retried), as a kernel's page-fault path does. Exceptions from
//! ring 3 arrive on the TSS.RSP0 stack.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::interrupts::{Frame, INVALID_OPCODE, PAGE_FAULT};

core::arch::global_asm!(
    r#"
.section .text
.global x86_user_enter
// rdi: entry, rsi: first argument, rdx: second argument, rcx: user CS, r8: user SS.
x86_user_enter:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov [rip + X86_USER_KSP], rsp
    push r8
    push 0
    push 0x2
    push rcx
    push rdi
    mov rdi, rsi
    mov rsi, rdx
    iretq
.global x86_user_return
x86_user_return:
    mov rsp, [rip + X86_USER_KSP]
    mov cx, 0x10
    mov ds, cx
    mov es, cx
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
"#
);

/// The kernel stack pointer `x86_user_enter` left (read by `x86_user_return`).
#[no_mangle]
static X86_USER_KSP: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn x86_user_enter(entry: u64, a0: u64, a1: u64, cs: u64, ss: u64) -> u64;
    static x86_user_return: u8;
}

/// What [`run`] returns when the user code took a fault nobody resolved.
pub const ABORTED: u64 = 0xdead_0000_abcd_0001;

static LAST_ADDR: AtomicU64 = AtomicU64::new(0);
static LAST_ERROR: AtomicU64 = AtomicU64::new(0);
static LAST_VECTOR: AtomicU64 = AtomicU64::new(0);

type Handler<'a> = dyn FnMut(u64, u64) -> bool + 'a;

static HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Runs the ring-3 code at `entry` with `rdi = a0`, `rsi = a1` until its `ud2`; a page fault
/// is first offered to `on_fault(cr2, error code)`, which resolves it (`true`: retry) or not
/// (`false`: `run` returns [`ABORTED`], see [`last_fault`]).
///
/// # Safety
///
/// `entry` is mapped user-executable in the loaded CR3, the code there ends with `ud2` (or
/// faults), and the kernel's code, stacks, GDT, IDT and TSS stay mapped in those tables.
pub unsafe fn run(entry: u64, a0: u64, a1: u64, on_fault: &mut Handler<'_>) -> u64 {
    let (cs, ss) = super::gdt::user_selectors();
    let mut h: &mut Handler<'_> = on_fault;
    HANDLER.store((&mut h as *mut &mut Handler<'_>).cast(), Ordering::SeqCst);
    // SAFETY: the caller's contract; the stub preserves the callee-saved registers and comes
    // back through x86_user_return on this stack.
    let r = unsafe { x86_user_enter(entry, a0, a1, u64::from(cs), u64::from(ss)) };
    HANDLER.store(core::ptr::null_mut(), Ordering::SeqCst);
    r
}

/// The last fault [`run`] returned [`ABORTED`] for: (vector, CR2, error code).
pub fn last_fault() -> (u64, u64, u64) {
    (
        LAST_VECTOR.load(Ordering::SeqCst),
        LAST_ADDR.load(Ordering::SeqCst),
        LAST_ERROR.load(Ordering::SeqCst),
    )
}

/// Back to ring 0 at `x86_user_return` with `rax = result`.
fn leave(frame: &mut Frame, result: u64) {
    frame.rip = core::ptr::addr_of!(x86_user_return) as u64;
    frame.cs = 0x08;
    frame.ss = 0x10;
    frame.rsp = X86_USER_KSP.load(Ordering::SeqCst);
    frame.rflags = 0x2;
    frame.rax = result;
}

/// An exception from ring 3: `true` if handled (the frame then resumes ring 3 or returns to
/// [`run`]'s caller).
pub fn from_ring3(frame: &mut Frame) -> bool {
    let handler = HANDLER.load(Ordering::SeqCst).cast::<&mut Handler<'_>>();
    if handler.is_null() {
        return false;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    match frame.vector {
        INVALID_OPCODE => {
            let r = frame.rax;
            leave(frame, r);
        }
        PAGE_FAULT => {
            // SAFETY: set by `run` for its duration, which this exception is inside of.
            if !unsafe { (*handler)(cr2, frame.error) } {
                record(frame.vector, cr2, frame.error);
                leave(frame, ABORTED);
            }
        }
        v => {
            record(v, cr2, frame.error);
            leave(frame, ABORTED);
        }
    }
    true
}

fn record(vector: u64, addr: u64, error: u64) {
    LAST_VECTOR.store(vector, Ordering::SeqCst);
    LAST_ADDR.store(addr, Ordering::SeqCst);
    LAST_ERROR.store(error, Ordering::SeqCst);
}
