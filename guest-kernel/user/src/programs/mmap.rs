//! Anonymous memory: mmap, munmap, mprotect, MAP_FIXED, SIGSEGV (with the faulting address)
//! on an access the protection forbids, copy-on-write across fork, demand paging of a
//! large mapping, and the main thread's stack.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::check::expect_eq;
use crate::check::{Outcome, Suite};
use crate::process::{errno_name, in_child, Status};
use crate::signals::{install, Action};
use crate::syscall::raw;

const PAGE: usize = 4096;

// The three calls go to the kernel as made: musl's `mprotect` rounds the address down to
// a page, which would hide the kernel's EINVAL.

fn map(length: usize, protection: i32, flags: i32, address: usize) -> Result<usize, i32> {
    let arguments = [address, length, protection as usize, (flags | libc::MAP_ANONYMOUS) as usize, usize::MAX, 0];
    // SAFETY: an anonymous mapping; with MAP_FIXED only over ranges this program mapped
    // itself and holds no references into.
    unsafe { raw(libc::SYS_mmap, arguments) }.map(|address| address as usize)
}

fn map_rw(length: usize) -> Result<usize, String> {
    map(length, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, 0)
        .map_err(|error| format!("mmap of {length} bytes: {}", errno_name(error)))
}

fn unmap(address: usize, length: usize) -> Result<(), i32> {
    // SAFETY: only ranges this program mapped and no longer uses.
    unsafe { raw(libc::SYS_munmap, [address, length, 0, 0, 0, 0]) }.map(drop)
}

fn protect(address: usize, length: usize, protection: i32) -> Result<(), i32> {
    // SAFETY: only ranges this program mapped; the tests touch them only as allowed after.
    unsafe { raw(libc::SYS_mprotect, [address, length, protection as usize, 0, 0, 0]) }.map(drop)
}

fn read_byte(address: usize) -> u8 {
    // SAFETY: the callers pass an address inside a mapping this program made; where the
    // protection forbids the read, the fault is the point of the test (run in a child).
    unsafe { std::ptr::read_volatile(address as *const u8) }
}

fn write_byte(address: usize, value: u8) {
    // SAFETY: as for `read_byte`, for writes.
    unsafe { std::ptr::write_volatile(address as *mut u8, value) }
}

fn fill_and_check() -> Outcome {
    let length = 16 * PAGE;
    let base = map_rw(length)?;
    for offset in (0..length).step_by(PAGE / 4) {
        expect_eq(&format!("fresh byte at offset {offset}"), read_byte(base + offset), 0)?;
    }
    for offset in 0..length {
        write_byte(base + offset, (offset % 251) as u8);
    }
    for offset in 0..length {
        if read_byte(base + offset) != (offset % 251) as u8 {
            return Err(format!("byte at offset {offset} changed"));
        }
    }
    unmap(base, length).map_err(errno_name)
}

static FAULT_ADDRESS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn report_fault(_signal: i32, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; for SIGSEGV the
    // fault address is the valid union member.
    let address = unsafe { (*info).si_addr() } as usize;
    let expected = FAULT_ADDRESS.load(Ordering::SeqCst);
    // Returning would retry the access forever: leave with the verdict.
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(if address == expected { 77 } else { 78 }) };
}

/// Runs `access` in a child and returns how the child ended.
fn fault_in_child(access: impl FnOnce()) -> Result<Status, String> {
    in_child(|| {
        access();
        0
    })
}

fn write_to_read_only() -> Outcome {
    let base = map_rw(2 * PAGE)?;
    write_byte(base, 1);
    protect(base, 2 * PAGE, libc::PROT_READ).map_err(|error| format!("mprotect: {}", errno_name(error)))?;
    expect_eq("reading it still works", read_byte(base), 1)?;
    expect_eq(
        "a write in a child",
        fault_in_child(|| write_byte(base + PAGE + 8, 2))?,
        Status::Signaled(libc::SIGSEGV),
    )?;
    // A handler sees the faulting address.
    let status = in_child(|| {
        FAULT_ADDRESS.store(base + PAGE + 8, Ordering::SeqCst);
        if install(libc::SIGSEGV, Action::InfoHandler(report_fault, 0)).is_err() {
            return 90;
        }
        write_byte(base + PAGE + 8, 2);
        91
    })?;
    expect_eq("a SIGSEGV handler's si_addr (77 = right address)", status, Status::Exited(77))?;
    protect(base, 2 * PAGE, libc::PROT_READ | libc::PROT_WRITE).map_err(errno_name)?;
    write_byte(base + PAGE + 8, 3);
    expect_eq("after mprotect back to read-write", read_byte(base + PAGE + 8), 3)?;
    unmap(base, 2 * PAGE).map_err(errno_name)
}

fn no_access_and_unmapped() -> Outcome {
    let base = map(PAGE, libc::PROT_NONE, libc::MAP_PRIVATE, 0).map_err(errno_name)?;
    expect_eq(
        "reading PROT_NONE",
        fault_in_child(|| {
            read_byte(base);
        })?,
        Status::Signaled(libc::SIGSEGV),
    )?;
    protect(base, PAGE, libc::PROT_READ).map_err(errno_name)?;
    expect_eq("reading after mprotect(PROT_READ)", read_byte(base), 0)?;
    unmap(base, PAGE).map_err(errno_name)?;
    expect_eq(
        "reading after munmap",
        fault_in_child(|| {
            read_byte(base);
        })?,
        Status::Signaled(libc::SIGSEGV),
    )
}

fn unmap_the_middle() -> Outcome {
    let base = map_rw(3 * PAGE)?;
    for page in 0..3 {
        write_byte(base + page * PAGE, 10 + page as u8);
    }
    unmap(base + PAGE, PAGE).map_err(errno_name)?;
    expect_eq("first page", read_byte(base), 10)?;
    expect_eq("last page", read_byte(base + 2 * PAGE), 12)?;
    expect_eq(
        "the hole",
        fault_in_child(|| {
            read_byte(base + PAGE);
        })?,
        Status::Signaled(libc::SIGSEGV),
    )?;
    unmap(base, 3 * PAGE).map_err(|error| format!("munmap over a hole: {}", errno_name(error)))
}

fn map_fixed_replaces() -> Outcome {
    let base = map_rw(4 * PAGE)?;
    for page in 0..4 {
        write_byte(base + page * PAGE, 0xa0 + page as u8);
    }
    let fixed = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_FIXED, base + PAGE)
        .map_err(|error| format!("MAP_FIXED: {}", errno_name(error)))?;
    expect_eq("MAP_FIXED address", fixed, base + PAGE)?;
    expect_eq("the replaced page reads zero", read_byte(base + PAGE), 0)?;
    expect_eq("its neighbours keep their data", (read_byte(base), read_byte(base + 2 * PAGE)), (0xa0, 0xa2))?;
    unmap(base, 4 * PAGE).map_err(errno_name)
}

fn bad_arguments() -> Outcome {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    expect_eq("mmap of length 0", map(0, rw, libc::MAP_PRIVATE, 0).err(), Some(libc::EINVAL))?;
    expect_eq("mmap without PRIVATE or SHARED", map(PAGE, rw, 0, 0).err(), Some(libc::EINVAL))?;
    let base = map_rw(2 * PAGE)?;
    expect_eq(
        "MAP_FIXED at an unaligned address",
        map(PAGE, rw, libc::MAP_PRIVATE | libc::MAP_FIXED, base + 1).err(),
        Some(libc::EINVAL),
    )?;
    expect_eq("munmap of an unaligned address", unmap(base + 1, PAGE), Err(libc::EINVAL))?;
    expect_eq("mprotect of an unaligned address", protect(base + 1, PAGE, libc::PROT_READ), Err(libc::EINVAL))?;
    unmap(base, 2 * PAGE).map_err(errno_name)?;
    expect_eq("mprotect of an unmapped range", protect(base, PAGE, libc::PROT_READ), Err(libc::ENOMEM))?;
    // Unmapping a range where nothing is mapped is not an error.
    expect_eq("munmap of nothing", unmap(base, PAGE), Ok(()))
}

fn copy_on_write_after_fork() -> Outcome {
    let base = map_rw(2 * PAGE)?;
    write_byte(base, b'A');
    let status = in_child(|| {
        let before = read_byte(base);
        write_byte(base, b'B');
        match (before, read_byte(base)) {
            (b'A', b'B') => 0,
            _ => 1,
        }
    })?;
    expect_eq("the child saw the parent's page, then its own", status, Status::Exited(0))?;
    expect_eq("the parent's page after the child wrote", read_byte(base), b'A')?;
    // The parent writing after fork does not show in a child either.
    let status = in_child(|| i32::from(read_byte(base) != b'A'))?;
    expect_eq("a second child", status, Status::Exited(0))?;
    unmap(base, 2 * PAGE).map_err(errno_name)
}

fn large_mapping_is_paged_on_demand() -> Outcome {
    // 64 MiB reserved (more than a small guest has), one page touched per MiB: memory is
    // spent only where touched.
    let length = 64 << 20;
    let base = map(length, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_NORESERVE, 0)
        .map_err(|error| format!("mmap of 64 MiB: {}", errno_name(error)))?;
    for mib in 0..64 {
        write_byte(base + (mib << 20), mib as u8);
    }
    for mib in 0..64 {
        expect_eq("a touched page", read_byte(base + (mib << 20)), mib as u8)?;
    }
    unmap(base, length).map_err(errno_name)
}

fn executable_only_when_asked() -> Outcome {
    let base = map_rw(PAGE)?;
    // `mov eax, 42; ret`.
    for (offset, byte) in [0xb8u8, 42, 0, 0, 0, 0xc3].into_iter().enumerate() {
        write_byte(base + offset, byte);
    }
    let call = move || {
        // SAFETY: the page holds a complete function of this type (above); whether the
        // CPU may execute it is what the test finds out, in a child.
        let function: extern "C" fn() -> i32 = unsafe { std::mem::transmute(base) };
        function()
    };
    expect_eq("calling into a read-write page", in_child(call)?, Status::Signaled(libc::SIGSEGV))?;
    protect(base, PAGE, libc::PROT_READ | libc::PROT_EXEC).map_err(errno_name)?;
    expect_eq("calling into a read-execute page", in_child(call)?, Status::Exited(42))?;
    unmap(base, PAGE).map_err(errno_name)
}

#[inline(never)]
fn recurse(depth: usize) -> u64 {
    let mut frame = [0u8; 1024];
    frame[depth % 1024] = depth as u8;
    let below = if depth == 0 { 0 } else { recurse(depth - 1) };
    std::hint::black_box(&frame);
    below + u64::from(frame[depth % 1024])
}

fn the_stack_grows() -> Outcome {
    // About 2 MiB of stack frames: Linux gives the main thread 8 MiB.
    let status = in_child(|| i32::from(std::hint::black_box(recurse(2048)) == 0))?;
    expect_eq("2 MiB of stack", status, Status::Exited(0))
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("mmap");
    suite.case("fill_and_check", fill_and_check);
    suite.case("write_to_read_only_segv", write_to_read_only);
    suite.case("prot_none_and_unmapped_segv", no_access_and_unmapped);
    suite.case("unmap_the_middle", unmap_the_middle);
    suite.case("map_fixed_replaces", map_fixed_replaces);
    suite.case("bad_arguments", bad_arguments);
    suite.case("copy_on_write", copy_on_write_after_fork);
    suite.case("demand_paging", large_mapping_is_paged_on_demand);
    suite.case("exec_permission", executable_only_when_asked);
    suite.case("stack_grows", the_stack_grows);
    suite.finish()
}
