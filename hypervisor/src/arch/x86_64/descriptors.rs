//! GDT, TSS and IDT. The GDT order is dictated by `syscall`/`sysret` (STAR): kernel code,
//! kernel data, user data, user code, TSS.

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::{Entry, HandlerFunc};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// IST slot used for NMI, #DF and #MC: they must work even if the regular stack is bad.
const CRITICAL_STACK_INDEX: u16 = 0;
/// IST slot of #DB alone. A #DB raised in ring 0 before the entry code has switched away
/// from the guest's RSP (the XSA-260 shape: `mov ss` or a breakpoint deferring it past
/// `syscall`) must not be pushed onto a stack the guest chose; its own slot, apart from
/// NMI's, means neither can overwrite the other's frame when one interrupts the other.
const DEBUG_STACK_INDEX: u16 = 1;

pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// All 256 gates (x86_64's own table leaves the reserved vectors unsettable; every
/// vector here has a stub).
#[repr(C, align(16))]
struct InterruptTable([Entry<HandlerFunc>; 256]);

static IDT: Once<InterruptTable> = Once::new();

extern "C" {
    static hypervisor_stack_top: u8;
    static critical_stack_top: u8;
    static debug_stack_top: u8;
    static trap_stub_table: [u64; 256];
}

/// Loads GDT, TSS and IDT; returns the selectors for STAR.
pub fn init() -> &'static Selectors {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        // Addresses of the stacks defined in entry.s; never dereferenced here.
        let (stack_top, critical_top) = (&raw const hypervisor_stack_top as u64, &raw const critical_stack_top as u64);
        tss.privilege_stack_table[0] = VirtAddr::new(stack_top);
        tss.interrupt_stack_table[CRITICAL_STACK_INDEX as usize] = VirtAddr::new(critical_top);
        tss.interrupt_stack_table[DEBUG_STACK_INDEX as usize] = VirtAddr::new(&raw const debug_stack_top as u64);
        // No I/O permission bitmap: with IOPL 0, every port access from ring 3 faults.
        tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { kernel_code, kernel_data, user_data, user_code, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded and describe flat ring-0 segments
    // and the TSS initialized above.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }

    let idt = IDT.call_once(|| {
        let mut table = InterruptTable([const { Entry::missing() }; 256]);
        // SAFETY: the stub table is a read-only array of 256 addresses emitted by entry.s.
        let stubs = unsafe { &trap_stub_table };
        for (vector, gate) in table.0.iter_mut().enumerate() {
            // Present, DPL 0 but for vector 3 below (`int n` from ring 3 raises #GP), an
            // interrupt gate (IF is cleared on entry), the kernel code selector loaded above.
            // SAFETY: the address is entry.s's stub for this vector, which builds a
            // TrapFrame and calls `trap_dispatch`, whatever the vector.
            let options = unsafe { gate.set_handler_addr(VirtAddr::new(stubs[vector])) };
            // Vector 3 admits ring 3, as hardware debuggers expect: `int3` then raises #BP
            // after the instruction instead of #GP at it, so the hypervisor delivers a
            // granted one without decoding the instruction (SPEC.md §11.4.3).
            if vector == 3 {
                options.set_privilege_level(x86_64::PrivilegeLevel::Ring3);
            }
            if matches!(vector, 2 | 8 | 18) {
                // SAFETY: the TSS loaded above has this IST slot pointing at its own stack.
                unsafe { options.set_stack_index(CRITICAL_STACK_INDEX) };
            }
            if vector == 1 {
                // SAFETY: as above, the debug slot's own stack.
                unsafe { options.set_stack_index(DEBUG_STACK_INDEX) };
            }
        }
        table
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<InterruptTable>() - 1) as u16,
        base: VirtAddr::new(idt as *const InterruptTable as u64),
    };
    // SAFETY: the table is 'static, fully initialized, and every gate points at a stub
    // in entry.s that builds a TrapFrame and calls `trap_dispatch`.
    unsafe { lidt(&pointer) };
    selectors
}
