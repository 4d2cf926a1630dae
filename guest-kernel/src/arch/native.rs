//! The native platform: guest-kernel in ring 0 on a PC, booted by PVH under QEMU (or any
//! PVH loader), with no hypervisor. Each [`Machine`] operation is done by the hardware
//! directly:
//!
//! * boot: the PVH entry (`boot.s`: 32-bit protected mode to long mode on static tables),
//!   then [`boot`]: descriptor tables, the kernel's own page tables (the image at its link
//!   address with W^X, all RAM in a direct map, no identity map), the heap over free RAM;
//!   `BootInfo` from the PVH start info (memory map, command line, first module);
//! * console: COM1's UART, polled output and interrupt-driven input into a ring
//!   ([`console`], routed by [`ioapic`]);
//! * time: the TSC, its rate from CPUID checked against the PIT or measured against it
//!   ([`clock`], [`pit`]); the local APIC timer, TSC-deadline or countdown ([`apic`]); the
//!   wallclock from the CMOS clock ([`rtc`]);
//! * idle: `sti; hlt; cli`;
//! * address spaces: one PML4 each with the kernel's upper half, changed through the
//!   `x86_64` crate's mapper, `invlpg` on the live one ([`paging`]);
//! * user mode: `sysretq`/`iretq` into ring 3 and `syscall`, exceptions and interrupts back,
//!   the FS base and x87/SSE/AVX state switched with it ([`user`], `entry.s`,
//!   [`extended_state`]);
//! * shutdown and crash: a last console line and QEMU's `isa-debug-exit` ([`ending`]).
//!
//! Every privileged instruction of this build is in this module.

use crate::arch::machine::{
    AddressSpace, BootInfo, ClockParameters, Machine, MachineError, PageUpdate, Trap, UserContext,
};
use core::fmt;
use spin::Once;
use x86_64::instructions::port::Port;

pub mod apic;
pub mod boot;
pub mod calendar;
pub mod check;
pub mod clock;
pub mod console;
pub mod cpu;
pub mod descriptors;
pub mod ending;
pub mod extended_state;
pub mod heap;
pub mod ioapic;
pub mod paging;
mod panic;
pub mod pit;
pub mod pvh;
pub mod ranges;
pub mod rtc;
pub mod traps;
pub mod user;

core::arch::global_asm!(
    include_str!("native/boot.s"),
    exit_port = const ending::DEBUG_EXIT_PORT,
    crash_value = const ending::Ending::Crash.device_value(1),
    stack_size = const STACK_BYTES,
);

core::arch::global_asm!(
    include_str!("native/entry.s"),
    rax = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rax),
    rbx = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rbx),
    rcx = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rcx),
    rdx = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rdx),
    rsi = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rsi),
    rdi = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rdi),
    rbp = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rbp),
    rsp = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rsp),
    r8 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r8),
    r9 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r9),
    r10 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r10),
    r11 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r11),
    r12 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r12),
    r13 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r13),
    r14 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r14),
    r15 = const core::mem::offset_of!(crate::arch::machine::UserRegisters, r15),
    rip = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rip),
    rflags = const core::mem::offset_of!(crate::arch::machine::UserRegisters, rflags),
    user_code = const descriptors::USER_CODE,
    user_data = const descriptors::USER_DATA,
    kernel_data = const descriptors::KERNEL_DATA,
    syscall_vector = const traps::SYSCALL_VECTOR,
);

/// Bytes of the one kernel stack (below it, an unmapped guard page).
const STACK_BYTES: usize = 256 << 10;

/// What boot found and set up, kept for [`Machine::describe`] and [`Machine::boot_info`].
pub struct State {
    pub boot_info: BootInfo,
    pub features: cpu::Features,
    pub apic: apic::Description,
    pub clock: clock::Clock,
    pub extended: extended_state::Method,
    pub heap_bytes: u64,
    pub table_pages: u64,
    pub modules: u32,
    pub wallclock_at_boot_ns: Option<u64>,
}

/// The native platform; its one instance is handed to the kernel's main function.
pub struct Native {
    state: Once<State>,
}

static NATIVE: Native = Native { state: Once::new() };

/// Records what boot found; returns the platform.
fn install(state: State) -> &'static Native {
    NATIVE.state.call_once(|| state);
    &NATIVE
}

impl Native {
    fn state(&self) -> &State {
        self.state.get().expect("boot installs the state before the kernel runs")
    }
}

/// Ends the run: the last console line, then QEMU's exit device (see [`ending`]). Without
/// the device (another PVH loader, real hardware) the processor halts for good.
pub fn end(ending: ending::Ending, code: u32) -> ! {
    console::print_line(format_args!("{}{}, code {code}", ending::LINE_PREFIX, ending.words()));
    exit_device(ending, code)
}

/// Writes QEMU's exit device and halts for good (see [`end`]).
pub fn exit_device(ending: ending::Ending, code: u32) -> ! {
    // SAFETY: the isa-debug-exit device's port on the machines xtask configures; elsewhere
    // an unclaimed port, whose write does nothing.
    unsafe { Port::<u32>::new(ending::DEBUG_EXIT_PORT).write(ending.device_value(code)) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

impl Machine for Native {
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let state = self.state();
        out.write_str("native on x86_64")?;
        if let Some(signature) = state.features.hypervisor {
            let name = core::str::from_utf8(&signature).unwrap_or("?").trim_end_matches('\0');
            write!(out, " (hypervisor {name:?})")?;
        }
        write!(
            out,
            ", {} id {}, timer {}, {}, {} ({} bytes)",
            if state.apic.x2apic { "x2APIC" } else { "xAPIC" },
            state.apic.id,
            match state.apic.mode {
                apic::TimerMode::TscDeadline => "TSC-deadline",
                apic::TimerMode::OneShot { .. } => "one-shot countdown",
            },
            state.clock,
            state.extended.describe(),
            state.extended.area_bytes(),
        )?;
        let (heap, used) = heap::usage();
        write!(
            out,
            ", {} MiB RAM, heap {} MiB ({} KiB used), {} page-table pages at boot, {} boot module(s)",
            state.boot_info.memory_bytes >> 20,
            heap >> 20,
            used >> 10,
            state.table_pages,
            state.modules
        )?;
        let features = &state.features;
        for (present, name) in
            [(features.smep, "SMEP"), (features.smap, "SMAP"), (features.umip, "UMIP"), (features.global_pages, "PGE")]
        {
            write!(out, " {}{name}", if present { '+' } else { '-' })?;
        }
        Ok(())
    }

    fn boot_info(&self) -> BootInfo {
        self.state().boot_info
    }

    fn console_write(&self, bytes: &[u8]) {
        console::write(bytes);
    }

    fn console_read(&self, buffer: &mut [u8]) -> usize {
        console::read(buffer)
    }

    fn now_ns(&self) -> u64 {
        clock::now_ns()
    }

    fn clock_parameters(&self) -> ClockParameters {
        clock::parameters()
    }

    fn wallclock_at_boot_ns(&self) -> Option<u64> {
        self.state().wallclock_at_boot_ns
    }

    fn set_timer(&self, deadline_ns: u64) {
        apic::arm(clock::tsc_at(deadline_ns), clock::hz());
    }

    fn idle(&self) {
        extern "C" {
            fn native_idle_halt();
        }
        traps::take_event();
        while !traps::take_event() {
            // SAFETY: interrupts are on only for the halt; the IDT and every handler are
            // set up at boot, and the handlers take no lock the kernel can hold here
            // (kernel code never runs with interrupts on).
            unsafe { native_idle_halt() };
        }
    }

    fn shutdown(&self, code: u32) -> ! {
        end(ending::Ending::PowerOff, code)
    }

    fn crash(&self, code: u32) -> ! {
        end(ending::Ending::Crash, code)
    }

    fn create_space(&self) -> Result<AddressSpace, MachineError> {
        paging::create()
    }

    fn destroy_space(&self, space: AddressSpace) -> Result<(), MachineError> {
        paging::destroy(space)
    }

    fn update_space(&self, space: AddressSpace, updates: &[PageUpdate]) -> Result<(), (usize, MachineError)> {
        paging::update(space, updates)
    }

    fn enter_user(&self, space: AddressSpace, context: &mut UserContext) -> Trap {
        user::enter(space, context)
    }

    fn save_extended(&self, context: &mut UserContext) {
        user::save_extended(context);
    }
}

/// Declares the kernel's main function (`fn(&'static Native) -> u32`, its result the
/// power-off code) and emits the entry boot.s calls.
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        extern "C" fn native_boot_main(start_info: u32, entry_tsc: u64) -> ! {
            $crate::arch::native::boot::start(u64::from(start_info), entry_tsc, $main)
        }
    };
}
pub(crate) use entry;
