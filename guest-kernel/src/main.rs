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
//! # Sensitive operations of the native platform
//!
//! `arch::native` (feature `native`, binary `guest-kernel-native`): everything it does
//! that only ring 0 may, all of it in `src/arch/native/`:
//!
//! * entry: the PVH note and 32-bit entry, CPUID checks for long mode and NX, CR4.PAE,
//!   CR3, EFER (LME, NXE), CR0 (PE, PG), LGDT and a far return into long mode, segment
//!   loads;
//! * processor setup: CR0 (WP, NE, MP; EM and TS clear), CR4 (SMEP, SMAP, UMIP, PGE,
//!   OSFXSR, OSXMMEXCPT, OSXSAVE), XCR0 by XSETBV, EFER.SCE, and STAR, LSTAR and SFMASK;
//! * descriptor tables: LGDT, segment-register loads, LTR (the TSS: RSP0 written on every
//!   entry to user mode, IST stacks for #DF, NMI, #MC and #DB), LIDT (a gate per vector);
//! * page tables: the kernel's own (image, direct map, uncached device pages), one PML4
//!   per address space, CR3 loads, INVLPG;
//! * port I/O: the COM1 UART, the 8259 PICs' masks, the PIT and its gate (port 0x61), the
//!   CMOS clock, QEMU's isa-debug-exit device;
//! * the local APIC (x2APIC MSRs or the xAPIC page: timer, end-of-interrupt, spurious
//!   vector), IA32_APIC_BASE, IA32_TSC_DEADLINE, and the I/O APIC's registers;
//! * time: RDTSC and CPUID's frequency leaves;
//! * the interrupt flag: off in the kernel (interrupt gates, SFMASK), on only in user mode
//!   and for `sti; hlt; cli` in `idle`;
//! * user mode: SYSRETQ or IRETQ into ring 3 and the SYSCALL, exception and interrupt
//!   entries back, CR2, data-segment selectors nulled, IA32_FS_BASE written and read,
//!   XSAVE/XRSTOR (or FXSAVE/FXRSTOR) of the user's x87/SSE/AVX state;
//! * the end of a run: the exit device's port, then HLT with interrupts off for good.
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod init;
pub mod kernel;
pub mod kernel_old;
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
    let code = kernel_old::run(platform);
    platform.shutdown(code)
}
