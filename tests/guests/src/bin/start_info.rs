//! Conformance: the start-info page and the domain layout it describes.
//!
//! Arguments: `expect-mem=<pages> [words...]`. Checks the magic, ABI version, domain id,
//! `nr_pages` against the expectation, the command line's encoding, that RSP is on the
//! described stack, that RDI pointed at `start_info_address`, that the image contains
//! `_start`, the layout (image, guard, start info, guard, shared info, guard, stack, guard,
//! free region), the gfn of the free region, the
//! page accounting `image + 1 + stack + free == nr_pages`, and writes and reads back a
//! pattern on every free page.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::{parse_number, stack_pointer, words};
use guest_rt::abi::layout::{INITIAL_STACK_PAGES, PAGE_SIZE};
use guest_rt::abi::start_info::{CMD_LINE_CAPACITY, START_INFO_MAGIC};
use guest_rt::abi::{StartInfo, ABI_VERSION};
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(start_info);

#[cfg(target_os = "none")]
fn entry_point() -> u64 {
    _start as *const () as u64
}

#[cfg(not(target_os = "none"))]
fn entry_point() -> u64 {
    0
}

fn start_info(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    println!(
        "start_info: domain {} nr_pages {} image {:#x}..{:#x} start info {:#x} stack {:#x}..{:#x} free {:#x} x {} pages",
        start.domain_id,
        start.nr_pages,
        start.image_start.0,
        start.image_end.0,
        start.start_info_address.0,
        start.stack_bottom.0,
        start.stack_top.0,
        start.free_start.0,
        start.free_pages
    );
    println!("start_info: cmd_line ({} bytes) '{}'", start.cmd_line_length, start.cmd_line());

    reporter.expect_eq(start.magic, START_INFO_MAGIC, "magic");
    reporter.expect_eq(start.abi_version, ABI_VERSION.packed(), "abi_version");
    reporter.check(start.domain_id != 0, "domain_id is not 0");
    reporter.expect_eq(start.flags, 0, "flags are zero");
    reporter.check(start.reserved.iter().all(|&byte| byte == 0), "reserved bytes are zero");

    check_arguments(&mut reporter, start);
    check_pointers(&mut reporter, start);
    check_layout(&mut reporter, start);
    check_free_pages(&mut reporter, start);
    reporter.finish()
}

fn check_arguments(reporter: &mut Reporter, start: &StartInfo) {
    let length = start.cmd_line_length as usize;
    if !reporter.check(length < CMD_LINE_CAPACITY, format_args!("cmd_line_length {length} leaves room for the NUL")) {
        return;
    }
    let text = &start.cmd_line[..length];
    reporter.check(!text.contains(&0), "no NUL inside cmd_line_length");
    reporter.check(start.cmd_line[length..].iter().all(|&byte| byte == 0), "NUL-terminated and zero after");
    reporter.check(core::str::from_utf8(text).is_ok(), "command line is UTF-8");
    let line = start.cmd_line();
    reporter.expect_eq(line.len(), length, "cmd_line() spans cmd_line_length");
    reporter.check(
        !line.starts_with(' ') && !line.ends_with(' ') && !line.contains("  "),
        format_args!("words joined by single spaces: '{line}'"),
    );
    let mut count = 0;
    for (index, word) in words(start).enumerate() {
        println!("start_info: argument {index}: '{word}'");
        count += 1;
    }
    match words(start).find_map(|word| word.strip_prefix("expect-mem=")) {
        Some(pages) => match parse_number(pages) {
            Some(pages) => {
                reporter.expect_eq(start.nr_pages, pages, "nr_pages as the command line asked");
            }
            None => reporter.error(format_args!("expect-mem={pages} is not a number")),
        },
        None => reporter.skip("no expect-mem=<pages> argument: nr_pages not checked"),
    }
    println!("start_info: {count} argument words");
}

fn check_pointers(reporter: &mut Reporter, start: &'static StartInfo) {
    let received = start as *const StartInfo as u64;
    reporter.expect_eq(received, start.start_info_address.0, "RDI at entry == start_info_address");
    let rsp = stack_pointer();
    reporter.check(
        (start.stack_bottom.0..start.stack_top.0).contains(&rsp),
        format_args!("RSP {rsp:#x} inside the stack {:#x}..{:#x}", start.stack_bottom.0, start.stack_top.0),
    );
    let entry = entry_point();
    reporter.check(
        (start.image_start.0..start.image_end.0).contains(&entry),
        format_args!("_start {entry:#x} inside the image {:#x}..{:#x}", start.image_start.0, start.image_end.0),
    );
}

fn check_layout(reporter: &mut Reporter, start: &StartInfo) {
    for (name, address) in [
        ("image_start", start.image_start.0),
        ("image_end", start.image_end.0),
        ("start_info_address", start.start_info_address.0),
        ("shared_info_address", start.shared_info_address.0),
        ("stack_bottom", start.stack_bottom.0),
        ("stack_top", start.stack_top.0),
        ("free_start", start.free_start.0),
    ] {
        reporter.check(address % PAGE_SIZE == 0, format_args!("{name} {address:#x} is page aligned"));
    }
    reporter.expect_eq(
        start.start_info_address.0,
        start.image_end.0 + PAGE_SIZE,
        "one guard page between image and start info",
    );
    reporter.expect_eq(
        start.shared_info_address.0,
        start.start_info_address.0 + 2 * PAGE_SIZE,
        "one guard page between start info and shared info",
    );
    reporter.expect_eq(
        start.stack_bottom.0,
        start.shared_info_address.0 + 2 * PAGE_SIZE,
        "one guard page between shared info and stack",
    );
    reporter.expect_eq(start.stack_top.0 - start.stack_bottom.0, INITIAL_STACK_PAGES * PAGE_SIZE, "stack size");
    reporter.expect_eq(
        start.free_start.0,
        start.stack_top.0 + PAGE_SIZE,
        "one guard page between stack and free region",
    );
    let image_pages = (start.image_end.0 - start.image_start.0) / PAGE_SIZE;
    let accounted = image_pages + 1 + INITIAL_STACK_PAGES + start.free_pages;
    println!(
        "start_info: {image_pages} image + 1 start info + {INITIAL_STACK_PAGES} stack + {} free = {accounted} pages of {}",
        start.free_pages, start.nr_pages
    );
    reporter.expect_eq(accounted, start.nr_pages, "image + start info + stack + free pages == nr_pages");
    // gfns run image, start info, stack, free region (SPEC.md §3.2).
    reporter.expect_eq(
        start.free_gfn.0,
        image_pages + 1 + INITIAL_STACK_PAGES,
        "free_gfn follows image, start info and stack",
    );
    reporter.expect_eq(start.max_pages, start.nr_pages, "max_pages defaults to mem");
}

/// Writes a pattern to every free page and reads it back. The heap lives in this region,
/// so each page's contents are saved first and restored after.
fn check_free_pages(reporter: &mut Reporter, start: &StartInfo) {
    const WORDS: usize = (PAGE_SIZE / 8) as usize;
    let mut saved = [0u64; WORDS];
    let mut bad_pages = 0u64;
    for page in 0..start.free_pages {
        let base = (start.free_start.0 + page * PAGE_SIZE) as *mut u64;
        let mut page_ok = true;
        for (index, slot) in saved.iter_mut().enumerate() {
            let pattern = (base as u64 + index as u64 * 8) ^ 0x5a5a_a5a5_0f0f_f0f0;
            // SAFETY: the free region is mapped read-write for this domain; the heap's use
            // of this page is suspended here (nothing else runs) and restored below.
            // Volatile accesses keep the compiler from eliding the round trip.
            unsafe {
                *slot = base.add(index).read_volatile();
                base.add(index).write_volatile(pattern);
                page_ok &= base.add(index).read_volatile() == pattern;
                base.add(index).write_volatile(*slot);
            }
        }
        if !page_ok {
            bad_pages += 1;
            if bad_pages <= 4 {
                reporter.fail(format_args!("free page {page} at {base:p} did not keep a pattern"));
            }
        }
    }
    println!("start_info: wrote and read back {} free pages, {bad_pages} bad", start.free_pages);
    reporter.expect_eq(bad_pages, 0, "every free page holds what was written");
}
