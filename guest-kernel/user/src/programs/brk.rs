//! The program break: brk(0) reads it, growing it gives zeroed memory, shrinking it takes
//! the pages back (an access there faults), and an impossible request leaves it as it was.
//!
//! Raw system calls: musl's `brk` wrapper refuses to move the break. No allocation happens
//! between moving the break and putting it back, so the allocator's own use of the break
//! is not disturbed.

use std::process::ExitCode;

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{in_child, Status};
use crate::syscall::raw;

const PAGE: usize = 4096;

/// `brk(address)`: Linux returns the new break, or the old one when it refuses.
fn brk(address: usize) -> usize {
    // SAFETY: brk takes no pointer the kernel dereferences; the memory it maps or unmaps
    // lies above the break, which nothing in this program refers to.
    unsafe { raw(libc::SYS_brk, [address, 0, 0, 0, 0, 0]) }.map_or(0, |value| value as usize)
}

fn touch_page(address: usize) -> u8 {
    // SAFETY: only addresses between the old and the new break, which the kernel just
    // mapped, or (in a child) above a lowered break, where the fault is the point.
    unsafe {
        let before = std::ptr::read_volatile(address as *const u8);
        std::ptr::write_volatile(address as *mut u8, 0x5a);
        before
    }
}

fn grow_use_and_shrink() -> Outcome {
    const GROWTH: usize = 4 << 20;
    let start = brk(0);
    let grown = brk(start + GROWTH);
    // No allocation until the break is back at `start`: results are kept in locals.
    let mut nonzero = 0usize;
    if grown == start + GROWTH {
        for page in (start.next_multiple_of(PAGE)..grown).step_by(PAGE) {
            nonzero += usize::from(touch_page(page) != 0);
        }
    }
    let shrunk = brk(start);
    ensure(start != 0, || "brk(0) returned nothing".into())?;
    expect_eq("break after growing by 4 MiB", grown, start + GROWTH)?;
    expect_eq("fresh pages not reading zero", nonzero, 0)?;
    expect_eq("break after shrinking back", shrunk, start)?;
    // The pages above the old break's page are gone.
    let gone = start.next_multiple_of(PAGE) + PAGE;
    expect_eq("touching a page given back", in_child(|| i32::from(touch_page(gone)))?, Status::Signaled(libc::SIGSEGV))
}

fn impossible_requests_change_nothing() -> Outcome {
    let start = brk(0);
    let huge = brk(start + (1 << 46));
    let below = brk(PAGE);
    let kernel = brk(0xffff_8000_0000_0000);
    let now = brk(0);
    expect_eq("brk 64 TiB higher", huge, start)?;
    expect_eq("brk below the program", below, start)?;
    expect_eq("brk into the kernel half", kernel, start)?;
    expect_eq("break afterwards", now, start)
}

fn growth_in_small_steps() -> Outcome {
    // As an allocator grows it: many small unaligned steps, each usable at once.
    let start = brk(0);
    let mut current = start;
    let mut failed_at = None;
    for step in 0..256 {
        let wanted = current + 1000;
        if brk(wanted) != wanted {
            failed_at = Some(step);
            break;
        }
        // The byte just below the new break is mapped.
        touch_page(wanted - 1);
        current = wanted;
    }
    let restored = brk(start);
    expect_eq("a step that failed", failed_at, None)?;
    expect_eq("break restored", restored, start)
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("brk");
    suite.case("grow_use_shrink", grow_use_and_shrink);
    suite.case("impossible_requests", impossible_requests_change_nothing);
    suite.case("small_steps", growth_in_small_steps);
    suite.finish()
}
