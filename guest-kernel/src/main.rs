//! guest-kernel: a small Unix-like kernel, ported. One source runs natively (ring 0 on a
//! PC) and paravirtualized on ringfence (ring 3, its sensitive operations replaced by
//! hypercalls), and both run unmodified static Linux programs: Debian's busybox and Rust
//! programs built for musl.
//!
//! * [`kernel`]: the kernel proper — processes, `fork`/`execve`/`wait4`, signals, memory,
//!   the scheduler and the Linux system-call table — generic over the platform. With the
//!   policy in `guest-kernel-core` (file system, file calls, ELF loading, regions, signal
//!   state, the tty) it never names a platform and never imports guest-rt;
//! * [`arch`]: the one platform door, the [`arch::machine::Machine`] trait, and its two
//!   implementations; nothing outside `arch` executes a privileged instruction or a
//!   hypercall. Its one piece of machine code for user mode, the vDSO's clock functions
//!   (`rdtsc` and a read-only clock page the kernel keeps current), is shared by both;
//! * [`console`]: the kernel's own messages.
//!
//! The platform is chosen at build time: feature `paravirt` (the default, binary
//! `guest-kernel`, this crate root) or `native` (binary `guest-kernel-native`,
//! `src/bin/guest-kernel-native.rs`). `cargo xtask run` boots the first on ringfence,
//! `cargo xtask run --native` the second directly under QEMU.
//!
//! # Sensitive operations of the paravirtual backend
//!
//! [`arch::paravirt::ParavirtMachine`] implements [`arch::machine::Machine`] on ringfence
//! (ABI 0.4). The kernel runs in ring 3 there, so every operation below is a hypercall, a
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
//!   initramfs: the domain's boot module (SPEC.md §2.5), mapped read-only;
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
pub mod kernel;

arch::paravirt::boot!(kernel_main);

/// Runs the kernel on the paravirtual machine, then powers the domain off.
fn kernel_main() -> u32 {
    arch::paravirt::run_kernel(kernel::main)
}
