//! The kernel proper, generic over [`Arch`]: boot banner, memory and heap check, a
//! critical section, the clock, its own exception handlers (a breakpoint), demand-paged
//! kernel memory ([`crate::memory`]), a user process ([`crate::init`]), idling, the
//! interactive shell when the command line asks for it ([`crate::shell`]), and an
//! orderly shutdown.

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{Arch, Breakpoint, ExceptionHandlers, FaultResolution, InterruptGuard, PageFault};
use crate::console::kprintln;
use crate::portable::Date;
use crate::{init, memory, shell};

/// The kernel's version (its crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Collects [`Arch::describe`] into a fixed buffer (no heap before the banner).
struct Description {
    text: [u8; 160],
    length: usize,
}

impl fmt::Write for Description {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let end = (self.length + piece.len()).min(self.text.len());
        let taken = end - self.length;
        self.text[self.length..end].copy_from_slice(&piece.as_bytes()[..taken]);
        self.length = end;
        Ok(())
    }
}

impl Description {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.text[..self.length]).unwrap_or("?")
    }
}

/// Boots the kernel on `arch` and returns the shutdown code.
pub fn run<A: Arch>(arch: &A) -> u32 {
    let mut description = Description { text: [0; 160], length: 0 };
    let _ = arch.describe(&mut description);
    kprintln!("guest-kernel {VERSION}: {}", description.as_str());

    let boot = arch.boot_info();
    match boot.domain_id {
        Some(id) => kprintln!("guest-kernel: domain id {id}"),
        None => kprintln!("guest-kernel: running natively"),
    }
    kprintln!("guest-kernel: memory {} KiB ({} pages)", boot.memory_bytes / 1024, boot.memory_bytes / 4096);
    kprintln!("guest-kernel: command line '{}'", boot.command_line);

    let mut healthy = true;
    healthy &= heap_check();
    if let Err(error) = arch.start_interrupts() {
        kprintln!("guest-kernel: interrupts: cannot start them: {error} (WRONG)");
        healthy = false;
    }
    healthy &= interrupt_check(arch);
    healthy &= timer_check(arch);
    match arch.install_exception_handlers::<Kernel>() {
        Ok(()) => {
            healthy &= breakpoint_check(arch);
            healthy &= memory::demand_paging_check(arch);
            healthy &= init::check(arch);
        }
        Err(error) => {
            // Without handlers a fault in the window, or any event of a user process,
            // would end the domain.
            kprintln!("guest-kernel: exceptions: installing handlers: {error}; the rest skipped (WRONG)");
            healthy = false;
        }
    }

    let before = arch.timer_read();
    arch.idle();
    let slept = arch.timer_read().saturating_sub(before);
    kprintln!("guest-kernel: idled once ({} us)", slept / 1000);
    // The shell's `exit <code>` is the shutdown code (when the checks passed).
    let code = if boot.command_line.split(' ').any(|word| word == "shell") { shell::run(arch) } else { 0 };
    kprintln!("guest-kernel: shutting down ({})", if healthy { "all checks passed" } else { "CHECKS FAILED" });
    if healthy {
        code
    } else {
        1
    }
}

/// Allocates, fills, grows and frees heap memory.
fn heap_check() -> bool {
    let mut primes: Vec<u64> = vec![2];
    let mut candidate = 3;
    while primes.len() < 1000 {
        if primes.iter().take_while(|&&p| p * p <= candidate).all(|&p| candidate % p != 0) {
            primes.push(candidate);
        }
        candidate += 2;
    }
    let mut summary = String::new();
    let _ = write!(summary, "{} primes, the last {}", primes.len(), primes[primes.len() - 1]);
    let big = vec![0xa5u8; 256 * 1024];
    let ok = primes[999] == 7919 && big.iter().all(|&byte| byte == 0xa5);
    kprintln!("guest-kernel: heap: {summary}; a {} KiB block {}", big.len() / 1024, if ok { "ok" } else { "CORRUPT" });
    ok
}

/// A critical section disables interrupts and restores them, nested.
fn interrupt_check<A: Arch>(arch: &A) -> bool {
    let before = arch.interrupts_enabled();
    let inside;
    let nested_inside;
    {
        let _outer = InterruptGuard::new(arch);
        inside = arch.interrupts_enabled();
        {
            let _inner = InterruptGuard::new(arch);
            nested_inside = arch.interrupts_enabled();
        }
    }
    let after = arch.interrupts_enabled();
    let ok = before && !inside && !nested_inside && after;
    kprintln!(
        "guest-kernel: interrupts {} -> critical section {} -> {} ({})",
        before,
        inside,
        after,
        if ok { "ok" } else { "WRONG" }
    );
    ok
}

/// The core's exception entry points.
struct Kernel;

/// Breakpoints taken, and where the last one resumed.
static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
static BREAKPOINT_RESUME: AtomicU64 = AtomicU64::new(0);

impl<A: Arch> ExceptionHandlers<A> for Kernel {
    fn page_fault(arch: &A, fault: &PageFault) -> FaultResolution {
        memory::handle_page_fault(arch, fault)
    }

    fn breakpoint(_arch: &A, breakpoint: &Breakpoint) {
        // Nothing to debug: count it and carry on.
        BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
        BREAKPOINT_RESUME.store(breakpoint.resume, Ordering::Relaxed);
    }
}

/// Takes one breakpoint (the handlers are installed).
fn breakpoint_check<A: Arch>(arch: &A) -> bool {
    let before = BREAKPOINTS.load(Ordering::Relaxed);
    arch.breakpoint();
    let taken = BREAKPOINTS.load(Ordering::Relaxed) - before;
    let ok = taken == 1;
    kprintln!(
        "guest-kernel: exceptions: handlers installed; breakpoint trapped {taken} time(s), resumed at {:#x} ({})",
        BREAKPOINT_RESUME.load(Ordering::Relaxed),
        if ok { "ok" } else { "WRONG" }
    );
    ok
}

/// The clock runs forward; the wallclock is shown as a date.
fn timer_check<A: Arch>(arch: &A) -> bool {
    let first = arch.timer_read();
    let mut spins = 0u64;
    let mut second = arch.timer_read();
    while second == first && spins < 1_000_000 {
        second = arch.timer_read();
        spins += 1;
    }
    let ok = second > first;
    match arch.timer_frequency_hint() {
        Some(1_000_000_000) => kprintln!("guest-kernel: clock {first} -> {second} ns since the hypervisor booted"),
        Some(hz) => kprintln!("guest-kernel: timer {first} -> {second} at {hz} Hz"),
        None => kprintln!("guest-kernel: timer {first} -> {second} (cycles, frequency not published)"),
    }
    match arch.wallclock_seconds() {
        Some(seconds) => kprintln!("guest-kernel: wallclock {} UTC", Date::from_unix_seconds(seconds)),
        None => kprintln!("guest-kernel: wallclock not available"),
    }
    ok
}
