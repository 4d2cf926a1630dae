//! Conformance: a domain's module (SPEC.md §2.4, §3.2, §7).
//!
//! Sub-cases (the first argument word):
//! * `present length=<n> fnv=<hex>`: the start info names a module of exactly `n` bytes
//!   whose FNV-1a-64 hash is `fnv`, `guest_rt::module()` gives the same bytes, it lies where
//!   §3.2 puts it (after the stack's guard page, its own guard page before the free region,
//!   gfns right after the stack's), every page of it is mapped read-only, no-execute and
//!   kernel-only, the last page is zero past the module, and a write to it faults.
//! * `none`: the module fields are 0, `module()` is `None`, and the layout is the one
//!   without a module.
//!
//! Both check that `version(FEATURES)` advertises `MODULE`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

use conformance_guests::argument;
use guest_rt::abi::hypercall::features;
use guest_rt::abi::layout::{INITIAL_STACK_PAGES, PAGE_SIZE};
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::trap::page_fault;
use guest_rt::abi::{Errno, Gfn, StartInfo};
use guest_rt::memory::{self, Space};
use guest_rt::println;
use guest_rt::test::Reporter;
use support::{probe_read, probe_write, Case};

guest_rt::entry!(module);

const CASES: &[(&str, Case)] = &[("present", present), ("none", none)];

fn module(start: &'static StartInfo) -> u32 {
    if let Err(errno) = support::install_fault_probe() {
        let mut reporter = Reporter::new();
        reporter.error(format_args!("installing the #PF handler: -{errno}"));
        reporter.finish();
    }
    println!(
        "module: module_start {:#x} module_length {} module_gfn {:#x}; stack top {:#x}, free {:#x} x {} pages (gfn {:#x})",
        start.module_start.0,
        start.module_length,
        start.module_gfn.0,
        start.stack_top.0,
        start.free_start.0,
        start.free_pages,
        start.free_gfn.0
    );
    support::run("module", start, CASES)
}

/// FNV-1a, 64 bits: the runner hashes the module it put in the archive the same way.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

fn image_pages(start: &StartInfo) -> u64 {
    (start.image_end.0 - start.image_start.0) / PAGE_SIZE
}

fn check_feature(reporter: &mut Reporter) {
    match guest_rt::hypercall::features() {
        Ok(bits) => {
            reporter.check(bits & features::MODULE != 0, format_args!("features {bits:#x} advertise MODULE"));
        }
        Err(errno) => reporter.fail(format_args!("version(FEATURES) = -{errno}")),
    }
}

fn present(reporter: &mut Reporter, start: &'static StartInfo) {
    check_feature(reporter);
    let (Some(length), Some(hash)) = (argument(start, "length"), argument(start, "fnv")) else {
        reporter.error("present needs length=<n> and fnv=<hex> arguments");
        return;
    };
    let Some(bytes) = guest_rt::module() else {
        reporter.fail("guest_rt::module() is None, but the domain was given a module");
        return;
    };
    reporter.expect_eq(start.module_length, length, "module_length is the member's size");
    reporter.expect_eq(bytes.len() as u64, length, "module() spans module_length");
    reporter.expect_eq(bytes.as_ptr() as u64, start.module_start.0, "module() starts at module_start");
    let seen = fnv1a(bytes);
    println!("module: {} bytes, fnv1a {seen:#018x}", bytes.len());
    reporter.expect_eq(seen, hash, "the module's bytes are the member's (FNV-1a-64)");

    // The layout of SPEC.md §3.2 with a module.
    let pages = start.module_pages();
    reporter.expect_eq(pages, length.div_ceil(PAGE_SIZE), "module pages");
    reporter.check(start.module_start.0.is_multiple_of(PAGE_SIZE), "module_start is page aligned");
    reporter.expect_eq(start.module_start.0, start.stack_top.0 + PAGE_SIZE, "one guard page between stack and module");
    reporter.expect_eq(
        start.free_start.0,
        start.module_start.0 + (pages + 1) * PAGE_SIZE,
        "one guard page between module and free region",
    );
    let module_gfn = image_pages(start) + 1 + INITIAL_STACK_PAGES;
    reporter.expect_eq(start.module_gfn, Gfn(module_gfn), "module gfns follow image, start info and stack");
    reporter.expect_eq(start.free_gfn, Gfn(module_gfn + pages), "free gfns follow the module's");
    let accounted = image_pages(start) + 1 + INITIAL_STACK_PAGES + pages + start.free_pages;
    reporter.expect_eq(accounted, start.nr_pages, "image + start info + stack + module + free pages == nr_pages");

    // Every page: the next gfn, read-only, no-execute, kernel-only.
    let mut wrong = 0;
    for index in 0..pages {
        let address = start.module_start.0 + index * PAGE_SIZE;
        let expected = Ok((Gfn(module_gfn + index), map_flags::NO_EXECUTE));
        let seen = memory::query(Space::INITIAL, address);
        if seen != expected {
            wrong += 1;
            if wrong <= 4 {
                reporter.fail(format_args!("QUERY {address:#x}: {seen:?}, expected {expected:?}"));
            }
        }
    }
    reporter.expect_eq(wrong, 0, "every module page maps its gfn read-only, no-execute, kernel-only");
    for guard in [start.stack_top.0, start.module_start.0 + pages * PAGE_SIZE] {
        reporter.expect_errno(memory::query(Space::INITIAL, guard), Errno::ENOENT, format_args!("guard {guard:#x}"));
    }
    let tail_start = start.module_start.0 + length;
    let tail_end = start.module_start.0 + pages * PAGE_SIZE;
    let tail_zero = (tail_start..tail_end).all(|address| probe_read(address) == Ok(0));
    reporter.check(tail_zero, format_args!("the last page is zero past the module ({} bytes)", tail_end - tail_start));

    // A write faults as a write to a present page, and changes nothing.
    for address in [start.module_start.0, start.module_start.0 + length - 1] {
        let before = bytes[(address - start.module_start.0) as usize];
        match probe_write(address, !before) {
            Ok(()) => reporter.fail(format_args!("a write to the module at {address:#x} did not fault")),
            Err(fault) => {
                reporter.expect_eq(
                    (fault.address, fault.error_code),
                    (address, page_fault::PRESENT | page_fault::WRITE),
                    format_args!("the write at {address:#x} is #PF PRESENT|WRITE there"),
                );
            }
        }
        reporter.expect_eq(probe_read(address), Ok(before), format_args!("the byte at {address:#x} is unchanged"));
    }
}

fn none(reporter: &mut Reporter, start: &'static StartInfo) {
    check_feature(reporter);
    reporter.expect_eq(
        (start.module_start.0, start.module_length, start.module_gfn.0),
        (0, 0, 0),
        "no module: module_start, module_length and module_gfn are 0",
    );
    reporter.check(guest_rt::module().is_none(), "guest_rt::module() is None");
    reporter.expect_eq(start.free_start.0, start.stack_top.0 + PAGE_SIZE, "the free region follows the stack's guard");
    reporter.expect_eq(
        start.free_gfn,
        Gfn(image_pages(start) + 1 + INITIAL_STACK_PAGES),
        "free gfns follow image, start info and stack",
    );
}
