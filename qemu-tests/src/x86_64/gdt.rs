//! The runtime GDT (same code/data selectors as the boot GDT, plus a TSS) and the TSS whose
//! interrupt stack table gives #DF its own stack: a double fault caused by a bad stack pointer
//! still reaches the handler instead of escalating to a triple fault (which, with `-no-reboot`,
//! would silently end QEMU).

use core::ops::Range;

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// The IST slot (1-based, as written in an IDT gate) #DF runs on.
pub const DOUBLE_FAULT_IST: u64 = 1;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

static mut DOUBLE_FAULT_STACK: Stack = Stack([0; IST_STACK_SIZE]);

/// The stack exceptions from ring 3 switch to (TSS.RSP0; see [`super::user`]).
static mut RING0_STACK: Stack = Stack([0; IST_STACK_SIZE]);

static TSS: Once<TaskStateSegment> = Once::new();

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
    user_code: SegmentSelector,
    user_data: SegmentSelector,
}

static GDT: Once<Gdt> = Once::new();

/// The address range of the #DF stack.
pub fn double_fault_stack() -> Range<u64> {
    let start = core::ptr::addr_of!(DOUBLE_FAULT_STACK) as u64;
    start..start + IST_STACK_SIZE as u64
}

/// The TSS selector `ltr` loaded.
pub fn tss_selector() -> u16 {
    GDT.get().map_or(0, |g| g.tss.0)
}

/// The ring-3 selectors (code, stack/data), RPL 3: `(0x33, 0x2b)`.
pub fn user_selectors() -> (u16, u16) {
    GDT.get().map_or((0, 0), |g| (g.user_code.0, g.user_data.0))
}

/// Loads the GDT (code 0x08, data 0x10, TSS 0x18, user data 0x28, user code 0x30), reloads the
/// segment registers and the task register. Idempotent.
pub fn init() {
    if GDT.get().is_some() {
        return;
    }
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[DOUBLE_FAULT_IST as usize - 1] =
            VirtAddr::new(double_fault_stack().end);
        let ring0 = core::ptr::addr_of!(RING0_STACK) as u64 + IST_STACK_SIZE as u64;
        tss.privilege_stack_table[0] = VirtAddr::new(ring0);
        tss
    });
    let gdt = GDT.call_once(|| {
        let mut table = GlobalDescriptorTable::new();
        let code = table.append(Descriptor::kernel_code_segment());
        let data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(tss));
        let user_data = table.append(Descriptor::user_data_segment());
        let user_code = table.append(Descriptor::user_code_segment());
        Gdt {
            table,
            code,
            data,
            tss,
            user_code,
            user_data,
        }
    });
    gdt.table.load();
    // SAFETY: the selectors index the GDT just loaded; the TSS descriptor is fresh (not busy).
    unsafe {
        CS::set_reg(gdt.code);
        SS::set_reg(gdt.data);
        DS::set_reg(gdt.data);
        ES::set_reg(gdt.data);
        load_tss(gdt.tss);
    }
}
