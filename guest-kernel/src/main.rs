//! guest-kernel: a small kernel shaped for porting. Its core ([`kernel`], [`memory`],
//! [`process`], [`syscall`], [`shell`] and the rest) never names a platform: it is generic
//! over [`arch::Arch`], and every sensitive operation goes through that trait:
//!
//! * console output, and console input;
//! * the interrupt flag: starting delivery, enabling, disabling, reading it;
//! * idling until an interrupt (or another domain's turn) may have come;
//! * the timer and the wallclock;
//! * what the machine told the kernel at boot;
//! * shutdown and crash;
//! * installing exception and system-call entry (page faults and breakpoints reach the
//!   core, other exceptions end a user process or the kernel), and executing a breakpoint;
//! * mapping fresh zeroed kernel pages and unmapping them;
//! * running a user program in an address space of its own, with its system calls, and
//!   copying from its memory.
//!
//! The entry point, heap and panic handler come from the platform too ([`arch::boot!`]).
//! Today the platform is ringfence's paravirtual one ([`arch::paravirt`]: ABI 0.3, ring 3,
//! hypercalls via guest-rt); a native implementation can be added beside it without
//! touching the core. The core uses guest-rt's platform-independent helpers (the line
//! buffer, the calendar) through [`portable`] only.
//!
//! # Sensitive operations of the paravirtual backend
//!
//! [`arch::paravirt::ParavirtMachine`] implements [`arch::machine::Machine`] on ringfence
//! (ABI 0.3). The kernel runs in ring 3 there, so every operation below is a hypercall, a
//! plain access to the shared-info page, or an unprivileged instruction:
//!
//! * console output: `console_io(WRITE)`; console input: `console_io(READ)`, with
//!   `VIRQ_CONSOLE` bound so that input ends `idle` and user runs;
//! * the interrupt flag: the upcall mask in the shared-info page, written with plain stores
//!   (`cli`/`sti` would fault); the kernel runs masked, user mode unmasked;
//! * waiting for an interrupt: `sched_op(BLOCK)`, which unmasks and sleeps as one step;
//! * the one-shot timer: `set_timer_op` (skipped when that deadline is armed already),
//!   expiring on `VIRQ_TIMER`;
//! * time: system time from the shared-info time info and `rdtsc`, with no hypercall; the
//!   wallclock at boot from the shared-info page;
//! * boot information: the start-info page (domain id, memory, command line); the
//!   initramfs: none until the hypervisor ABI can pass a module to a domain;
//! * memory: the heap over the free region, whose gfns follow from addresses; memory up
//!   to the quota with `memory_op(CURRENT_RESERVATION, INCREASE_RESERVATION)` and
//!   `mmu_update(MAP)` in the kernel's own space (and `DECREASE_RESERVATION` for gfns it
//!   cannot use);
//! * user address spaces: `address_space_op(CREATE, DESTROY)`, their pages with batched
//!   `mmu_update(MAP, PROTECT, UNMAP)`;
//! * entering user mode: `address_space_op(SWITCH)` when the user root changes,
//!   `set_segment_base(FS)` when the FS base changes, XRSTOR (mask from CPUID and XGETBV)
//!   or FXRSTOR, and `iret`;
//! * leaving it: the hypervisor bounces every event to one entry — exceptions through the
//!   trap table (`set_trap_table`), `syscall` through `callback_op(SYSCALL)`, upcalls
//!   through `set_callbacks` — on the stack given to `stack_switch`; XSAVE or FXSAVE;
//! * interrupts: `event_channel_op(BIND_VIRQ)`, and acknowledging ports in the
//!   shared-info bitmaps;
//! * the CPU's extended-state format: CPUID, XGETBV, FXSAVE (for the MXCSR mask);
//! * shutdown and crash: `sched_op(SHUTDOWN, POWEROFF | CRASH)`; an exception in the
//!   kernel prints its frame and crashes with code 5.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod init;
pub mod kernel;
pub mod memory;
pub mod portable;
pub mod process;
pub mod shell;
pub mod syscall;
pub mod user_abi;

arch::boot!(kernel_main);

/// Runs the kernel, then shuts down through the platform.
fn kernel_main() -> u32 {
    use arch::Arch;
    let platform = arch::platform();
    let code = kernel::run(platform);
    platform.shutdown(code)
}
