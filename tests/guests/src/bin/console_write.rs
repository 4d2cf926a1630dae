//! Conformance: `console_io(WRITE, count, buffer)`. The argument selects one sub-case
//! (normal, zero, maximum, over, hypervisor, noncanonical, unmapped, wrap, straddle,
//! readonly, badcmd); none or `all` runs every sub-case in turn.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::{raw_result, words, Landmarks};
use guest_rt::abi::hypercall::console_cmd::{WRITE, WRITE_MAX};
use guest_rt::abi::{Errno, Hypercall, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};

guest_rt::entry!(console_write);

type Case = fn(&mut Reporter, &StartInfo);

const CASES: &[(&str, Case)] = &[
    ("normal", normal),
    ("zero", zero),
    ("maximum", maximum),
    ("over", over),
    ("hypervisor", hypervisor),
    ("noncanonical", noncanonical),
    ("unmapped", unmapped),
    ("wrap", wrap),
    ("straddle", straddle),
    ("readonly", readonly),
    ("badcmd", badcmd),
];

fn console_write(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    match words(start).next() {
        None | Some("all") => {
            for (name, case) in CASES {
                println!("console_write: sub-case {name}");
                case(&mut reporter, start);
            }
        }
        Some(wanted) => match CASES.iter().find(|(name, _)| *name == wanted) {
            Some((name, case)) => {
                println!("console_write: sub-case {name}");
                case(&mut reporter, start);
            }
            None => reporter.error(format_args!("unknown sub-case '{wanted}'")),
        },
    }
    reporter.finish()
}

/// `console_io(cmd, count, address)` with whatever arguments, printed and returned.
fn console_io(command: u64, count: u64, address: u64) -> Result<u64, Errno> {
    // SAFETY: console_io only reads guest memory; bad addresses come back as -EFAULT.
    let result = unsafe { raw_result(Hypercall::CONSOLE_IO.0, [command, count, address, 0, 0, 0]) };
    println!("console_io({command}, {count:#x}, {address:#018x}) = {}", ShowResult(&result));
    result
}

fn expect_fault(reporter: &mut Reporter, count: u64, address: u64, what: &str) {
    let result = console_io(WRITE, count, address);
    reporter.expect_errno(result, Errno::EFAULT, format_args!("{what}: write {count:#x} bytes at {address:#018x}"));
}

fn normal(reporter: &mut Reporter, _start: &StartInfo) {
    let line = b"console_write normal: this whole line went through one console_io(WRITE)\n";
    reporter.expect_eq(HYPERVISOR.console_write_once(line), Ok(line.len()), "normal write returns its length");
}

fn zero(reporter: &mut Reporter, _start: &StartInfo) {
    let buffer = b"never printed";
    reporter.expect_eq(console_io(WRITE, 0, buffer.as_ptr() as u64), Ok(0), "zero-length write of a valid buffer");
    reporter.expect_eq(console_io(WRITE, 0, 0), Ok(0), "zero-length write of a null pointer");
}

/// `count` bytes of printable text in lines of 64 (63 characters and a newline).
fn fill_lines(buffer: &mut [u8], marker: u8) {
    for (index, byte) in buffer.iter_mut().enumerate() {
        *byte = if index % 64 == 63 { b'\n' } else { marker };
    }
}

fn maximum(reporter: &mut Reporter, _start: &StartInfo) {
    let mut buffer = [0u8; WRITE_MAX as usize];
    fill_lines(&mut buffer, b'M');
    reporter.expect_eq(HYPERVISOR.console_write_once(&buffer), Ok(buffer.len()), "write of exactly WRITE_MAX bytes");
}

fn over(reporter: &mut Reporter, _start: &StartInfo) {
    let mut buffer = [0u8; WRITE_MAX as usize + 1];
    fill_lines(&mut buffer, b'O');
    let result = HYPERVISOR.console_write_once(&buffer);
    reporter.expect_errno(result, Errno::EINVAL, "write of WRITE_MAX + 1 bytes");
    let huge = console_io(WRITE, u64::MAX, buffer.as_ptr() as u64);
    reporter.expect_errno(huge, Errno::EINVAL, "write of u64::MAX bytes");
}

fn hypervisor(reporter: &mut Reporter, _start: &StartInfo) {
    use guest_rt::abi::layout::{HYPERVISOR_END, HYPERVISOR_START};
    expect_fault(reporter, 16, 0xffff_8000_0010_0000, "hypervisor range");
    expect_fault(reporter, 1, HYPERVISOR_START, "first hypervisor byte");
    expect_fault(reporter, 1, HYPERVISOR_END - 1, "last hypervisor byte");
}

fn noncanonical(reporter: &mut Reporter, _start: &StartInfo) {
    expect_fault(reporter, 16, 0x0000_8000_0000_0000, "first non-canonical address");
    expect_fault(reporter, 16, 0xffff_7fff_ffff_0000, "high non-canonical address");
    expect_fault(reporter, 16, 0x0000_7fff_ffff_fff8, "range running into the non-canonical hole");
}

fn unmapped(reporter: &mut Reporter, start: &StartInfo) {
    let landmarks = Landmarks::of(start);
    expect_fault(reporter, 16, landmarks.guard_below_start_info, "guard page below start info");
    expect_fault(reporter, 16, 0x1000, "unmapped low address");
}

fn wrap(reporter: &mut Reporter, _start: &StartInfo) {
    expect_fault(reporter, 64, u64::MAX - 15, "range wrapping past the top of the address space");
}

fn straddle(reporter: &mut Reporter, start: &StartInfo) {
    let landmarks = Landmarks::of(start);
    expect_fault(reporter, 16, landmarks.stack_top - 8, "last bytes in the guard page above the stack");
    expect_fault(reporter, 16, landmarks.image_end - 8, "last bytes in the guard page below start info");
    expect_fault(
        reporter,
        16,
        landmarks.guard_below_start_info + 0x1000 - 8,
        "first bytes in the guard page below start info",
    );
    expect_fault(reporter, 16, landmarks.guard_below_stack - 8, "last bytes in the guard page below the stack");
    expect_fault(reporter, 16, landmarks.stack_bottom - 8, "first bytes in the guard page below the stack");
}

fn readonly(reporter: &mut Reporter, start: &StartInfo) {
    // The magic's 8 bytes ("RINGFNCE"), straight from the read-only start-info page.
    guest_rt::print!("console_write readonly: start-info magic reads ");
    // SAFETY: console_io only reads; the start-info page is mapped readable.
    let result = unsafe { raw_result(Hypercall::CONSOLE_IO.0, [WRITE, 8, start.start_info_address.0, 0, 0, 0]) };
    println!();
    println!("console_io(WRITE, 8, start info {:#018x}) = {}", start.start_info_address.0, ShowResult(&result));
    reporter.expect_eq(result, Ok(8), "write from the read-only start-info page");
}

fn badcmd(reporter: &mut Reporter, _start: &StartInfo) {
    let buffer = b"badcmd: this must not be printed\n";
    for command in [7, 0x100, u64::MAX] {
        let result = console_io(command, buffer.len() as u64, buffer.as_ptr() as u64);
        reporter.expect_errno(result, Errno::EINVAL, format_args!("console_io sub-command {command:#x}"));
    }
}
