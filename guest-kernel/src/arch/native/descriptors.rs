//! The descriptor tables: the GDT (its order is dictated by `syscall`/`sysret`: kernel
//! code, kernel data, user data, user code, then the TSS), the TSS (RSP0, written on
//! every entry to user mode, and the interrupt stacks) and the IDT (a stub for each of
//! the 256 vectors, from `entry.s`).

use core::cell::UnsafeCell;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::idt::{Entry, HandlerFunc};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::{PrivilegeLevel, VirtAddr};

/// The selectors of the GDT, fixed by its order; `entry.s` pushes the user ones for
/// `iretq` (so the order is checked at boot against what [`init`] built).
pub const KERNEL_CODE: u16 = 0x08;
pub const KERNEL_DATA: u16 = 0x10;
pub const USER_DATA: u16 = 0x18 | 3;
pub const USER_CODE: u16 = 0x20 | 3;

/// The interrupt stacks (TSS IST slots 1–4; an IDT entry names slot + 1): exceptions
/// that must work whatever the stack pointer was. A double fault usually means the
/// kernel stack overflowed into its guard page; an NMI or a machine check can strike
/// between `syscall` and the switch to the kernel stack; a debug trap likewise.
const DOUBLE_FAULT_STACK: u16 = 0;
const NMI_STACK: u16 = 1;
const MACHINE_CHECK_STACK: u16 = 2;
const DEBUG_STACK: u16 = 3;

extern "C" {
    static native_double_fault_stack_top: u8;
    static native_nmi_stack_top: u8;
    static native_machine_check_stack_top: u8;
    static native_debug_stack_top: u8;
    static native_trap_stubs: [u64; 256];
}

/// The TSS: the processor reads it, `entry.s` writes RSP0 in it.
struct TaskState(UnsafeCell<TaskStateSegment>);

// SAFETY: one processor; the TSS is written at boot (before anything reads it) and then
// only by `entry.s` (RSP0, with interrupts off); Rust code never reads it afterwards.
unsafe impl Sync for TaskState {}

static TSS: TaskState = TaskState(UnsafeCell::new(TaskStateSegment::new()));
static GDT: Once<(GlobalDescriptorTable, [SegmentSelector; 5])> = Once::new();

#[repr(C, align(16))]
struct InterruptTable([Entry<HandlerFunc>; 256]);

static IDT: Once<InterruptTable> = Once::new();

/// Where `entry.s` writes the kernel stack pointer for interrupts from user mode.
pub fn rsp0_slot() -> *mut u64 {
    // SAFETY: only the field's address is taken (a packed field: no reference is made).
    unsafe { (&raw mut (*TSS.0.get()).privilege_stack_table[0]).cast::<u64>() }
}

/// Loads the GDT, the TSS and the IDT.
pub fn init() -> Result<(), &'static str> {
    // SAFETY: runs once at boot, before the TSS is in use; the stacks' addresses are
    // taken, never dereferenced.
    unsafe {
        let tss = &mut *TSS.0.get();
        for (slot, top) in [
            (DOUBLE_FAULT_STACK, &raw const native_double_fault_stack_top),
            (NMI_STACK, &raw const native_nmi_stack_top),
            (MACHINE_CHECK_STACK, &raw const native_machine_check_stack_top),
            (DEBUG_STACK, &raw const native_debug_stack_top),
        ] {
            tss.interrupt_stack_table[usize::from(slot)] = VirtAddr::new(top as u64);
        }
        // No I/O permission bitmap: with IOPL 0, every port access from ring 3 faults.
        tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    }
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let selectors = [
            gdt.append(Descriptor::kernel_code_segment()),
            gdt.append(Descriptor::kernel_data_segment()),
            gdt.append(Descriptor::user_data_segment()),
            gdt.append(Descriptor::user_code_segment()),
            // SAFETY: the TSS is a static that lives for ever; it is loaded below.
            gdt.append(unsafe { Descriptor::tss_segment_unchecked(TSS.0.get()) }),
        ];
        (gdt, selectors)
    });
    let [kernel_code, kernel_data, user_data, user_code, tss_selector] = *selectors;
    if [kernel_code.0, kernel_data.0, user_data.0, user_code.0] != [KERNEL_CODE, KERNEL_DATA, USER_DATA, USER_CODE] {
        return Err("the GDT's selectors are not the ones entry.s pushes");
    }
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded: flat ring-0 code and data, the
    // TSS above; FS and GS get the null selector (their bases are MSRs).
    unsafe {
        CS::set_reg(SegmentSelector(KERNEL_CODE));
        SS::set_reg(SegmentSelector(KERNEL_DATA));
        DS::set_reg(SegmentSelector(KERNEL_DATA));
        ES::set_reg(SegmentSelector(KERNEL_DATA));
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(tss_selector);
    }
    let idt = IDT.call_once(|| {
        let mut table = InterruptTable([const { Entry::missing() }; 256]);
        // SAFETY: a read-only table of 256 addresses emitted by entry.s.
        let stubs = unsafe { &native_trap_stubs };
        for (vector, gate) in table.0.iter_mut().enumerate() {
            // SAFETY: the address is entry.s's stub for this vector, which handles any
            // vector from either ring; an interrupt gate (IF cleared on entry), present,
            // with the kernel code selector loaded above.
            let options = unsafe { gate.set_handler_addr(VirtAddr::new(stubs[vector])) };
            let stack = match vector {
                1 => Some(DEBUG_STACK),
                2 => Some(NMI_STACK),
                8 => Some(DOUBLE_FAULT_STACK),
                18 => Some(MACHINE_CHECK_STACK),
                _ => None,
            };
            if let Some(stack) = stack {
                // SAFETY: the TSS loaded above points this slot at its own stack.
                unsafe { options.set_stack_index(stack) };
            }
            // `int3` and `into` are instructions user programs use (debuggers, overflow
            // checks): their gates admit ring 3. Every other `int n` from user mode is a #GP.
            if matches!(vector, 3 | 4) {
                options.set_privilege_level(PrivilegeLevel::Ring3);
            }
        }
        table
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<InterruptTable>() - 1) as u16,
        base: VirtAddr::new(idt as *const InterruptTable as u64),
    };
    // SAFETY: the table is 'static, complete, and every gate points at an entry.s stub.
    unsafe { lidt(&pointer) };
    Ok(())
}
