//! Conformance: `multicall` (SPEC.md §13). Sub-cases: `several` (calls of different kinds
//! with their exact results, a failing entry does not stop the rest, a mapping made by one
//! entry is seen by the next), `iret` (an `iret` entry is refused with -EINVAL and ends the
//! multicall), `nested` (so is a `multicall` entry), `count` (0, 64, 65 and u64::MAX),
//! `bad_array` (unreadable or unwritable arrays: -EFAULT first, else the count completed),
//! `yield` (a yield entry runs, returns 0 and ends the multicall). The argument selects
//! one; none or `all` runs every one.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

use guest_rt::abi::hypercall::{sched_cmd, version_cmd};
use guest_rt::abi::layout::{HYPERVISOR_START, PAGE_SIZE};
use guest_rt::abi::memory::{map_flags, memory_cmd, space_cmd};
use guest_rt::abi::multicall::{MulticallEntry, MULTICALL_MAX};
use guest_rt::abi::{Errno, Hypercall, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::memory::{self, map_entry, Space};
use guest_rt::multicall::{Multicall, NOT_EXECUTED};
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};
use support::{heap_page, Case};

guest_rt::entry!(multicall);

const CASES: &[(&str, Case)] = &[
    ("several", several),
    ("iret", iret),
    ("nested", nested),
    ("count", count),
    ("bad_array", bad_array),
    ("yield", yield_entry),
];

fn multicall(start: &'static StartInfo) -> u32 {
    support::run("multicall", start, CASES)
}

const WINDOW: u64 = 0x0000_3000_0000_0000;

fn show(calls: &Multicall) {
    for (index, entry) in calls.entries().iter().enumerate() {
        println!("  entry {index}: op {} result {:#x} ({})", entry.op, entry.result, entry.result);
    }
}

fn issue(calls: &mut Multicall) -> Result<u64, Errno> {
    let result = calls.call();
    println!("multicall({} entries) = {}", calls.len(), ShowResult(&result));
    show(calls);
    result
}

fn version_packed() -> i64 {
    i64::from(ABI_VERSION.packed())
}

fn several(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let maximum_gfn = memory::maximum_gfn().unwrap_or(0) as i64;
    let features = guest_rt::hypercall::features().unwrap_or(0) as i64;
    let current = memory::current_reservation().unwrap_or(0) as i64;
    let entries = [map_entry(WINDOW, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE)];
    let mut calls = Multicall::new();
    calls.version(version_cmd::ABI_VERSION);
    calls.memory_query(memory_cmd::CURRENT_RESERVATION);
    calls.memory_query(memory_cmd::MAXIMUM_GFN);
    calls.address_space_op(space_cmd::QUERY, 1000, WINDOW);
    calls.version(version_cmd::FEATURES);
    // SAFETY: number 63 is no hypercall; nothing is read.
    unsafe { calls.push(Hypercall(63), [1, 2, 3, 4, 5, 6]) };
    // SAFETY: `entries` lives until after the call.
    unsafe { calls.mmu_update(Space::INITIAL, &entries) };
    calls.query(Space::INITIAL, WINDOW);
    reporter.expect_eq(issue(&mut calls), Ok(8), "every entry completes");
    let expected = [
        version_packed(),
        current,
        maximum_gfn,
        Errno::ESRCH.to_return(),
        features,
        Errno::ENOSYS.to_return(),
        1,
        ((gfn << 12) | u64::from(map_flags::WRITABLE | map_flags::NO_EXECUTE)) as i64,
    ];
    for (index, (entry, expected)) in calls.entries().iter().zip(expected).enumerate() {
        reporter.expect_eq(entry.result, expected, format_args!("entry {index} (op {}) result", entry.op));
    }
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, WINDOW), Ok(()), "the multicall's mapping is there to unmap");
}

/// `[version, refused, version]`: the refused entry is -EINVAL, the third never runs.
fn refused_in_the_middle(reporter: &mut Reporter, op: Hypercall, args: [u64; 6], what: &str) {
    let mut calls = Multicall::new();
    calls.version(version_cmd::ABI_VERSION);
    // SAFETY: the hypervisor refuses the entry without executing it (what is tested);
    // if it did execute a nested multicall, its array is the caller's live local.
    unsafe { calls.push(op, args) };
    calls.version(version_cmd::ABI_VERSION);
    // SPEC §13: an entry is completed once its result is written, the refused one too.
    reporter.expect_eq(issue(&mut calls), Ok(2), format_args!("{what}: entries completed, the refused one included"));
    reporter.expect_eq(calls.entries()[0].result, version_packed(), format_args!("{what}: entry 0 ran"));
    reporter.expect_eq(calls.entries()[1].result, Errno::EINVAL.to_return(), format_args!("{what}: entry 1 refused"));
    reporter.expect_eq(calls.entries()[2].result, NOT_EXECUTED, format_args!("{what}: entry 2 not executed"));
}

fn iret(reporter: &mut Reporter, _start: &'static StartInfo) {
    refused_in_the_middle(reporter, Hypercall::IRET, [0; 6], "iret entry");
}

fn nested(reporter: &mut Reporter, _start: &'static StartInfo) {
    let mut inner = [MulticallEntry { op: Hypercall::VERSION.0, args: [0; 6], result: NOT_EXECUTED }];
    let pointer = inner.as_mut_ptr() as u64;
    refused_in_the_middle(reporter, Hypercall::MULTICALL, [pointer, 1, 0, 0, 0, 0], "multicall entry");
    // SAFETY: reading our own local after the hypercall (volatile: the hypervisor could
    // have written it behind the compiler's back, which is what is checked).
    let inner_result = unsafe { core::ptr::read_volatile(&inner[0].result) };
    reporter.expect_eq(inner_result, NOT_EXECUTED, "the nested multicall's entry never ran");
}

fn count(reporter: &mut Reporter, _start: &'static StartInfo) {
    let mut full = Multicall::new();
    while full.version(version_cmd::ABI_VERSION).is_some() {}
    reporter.expect_eq(full.len() as u64, MULTICALL_MAX, "MULTICALL_MAX entries fit");
    reporter.expect_eq(full.call(), Ok(MULTICALL_MAX), "a full multicall completes");
    reporter.check(
        full.entries().iter().all(|entry| entry.result == version_packed()),
        "every entry of the full multicall ran",
    );
    let mut array =
        [MulticallEntry { op: Hypercall::VERSION.0, args: [0; 6], result: NOT_EXECUTED }; MULTICALL_MAX as usize + 1];
    for count in [MULTICALL_MAX + 1, 1 << 32, u64::MAX] {
        // SAFETY: a live local array; the hypervisor refuses the count before reading.
        let result = unsafe { HYPERVISOR.multicall_raw(array.as_mut_ptr(), count) };
        reporter.expect_errno(result, Errno::EINVAL, format_args!("count {count}"));
    }
    // SAFETY: as above, read back after the calls.
    let untouched =
        (0..array.len()).all(|index| unsafe { core::ptr::read_volatile(&array[index].result) } == NOT_EXECUTED);
    reporter.check(untouched, "refused counts executed no entry");
    // SAFETY: count 0 reads nothing.
    reporter.expect_eq(unsafe { HYPERVISOR.multicall_raw(core::ptr::null_mut(), 0) }, Ok(0), "count 0, null array");
}

fn bad_array(reporter: &mut Reporter, start: &'static StartInfo) {
    for pointer in [0, HYPERVISOR_START, 0x0000_8000_0000_0000, WINDOW + 0x10 * PAGE_SIZE] {
        // SAFETY: unreadable arrays: the hypervisor says -EFAULT.
        let result = unsafe { HYPERVISOR.multicall_raw(pointer as *mut MulticallEntry, 2) };
        reporter.expect_errno(result, Errno::EFAULT, format_args!("array at {pointer:#x}"));
    }
    // Read-only: the first entry (op = the start-info magic: no such hypercall) runs, but
    // its result cannot be written back.
    // SAFETY: the hypervisor cannot write the read-only start-info page.
    let result = unsafe { HYPERVISOR.multicall_raw(start.start_info_address.0 as *mut MulticallEntry, 1) };
    reporter.expect_errno(result, Errno::EFAULT, "array in the read-only start-info page");
    // Two entries, the second on an unmapped page: one completes.
    let (page, gfn) = heap_page(start);
    let _ = page;
    let window = WINDOW + 0x20 * PAGE_SIZE;
    reporter.expect_eq(
        memory::map_page(Space::INITIAL, window, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE),
        Ok(()),
        "map the array page",
    );
    let last = (window + PAGE_SIZE - 64) as *mut MulticallEntry;
    // SAFETY: the page at `window` is mapped writable and is ours alone.
    unsafe { last.write_volatile(MulticallEntry { op: Hypercall::VERSION.0, args: [0; 6], result: NOT_EXECUTED }) };
    // SAFETY: the first entry is ours; the second is unmapped and the hypervisor stops there.
    let result = unsafe { HYPERVISOR.multicall_raw(last, 2) };
    reporter.expect_eq(result, Ok(1), "second entry unreadable: one completed");
    // SAFETY: reading back our own entry.
    let first = unsafe { last.read_volatile() };
    reporter.expect_eq(first.result, version_packed(), "the first entry's result was written");
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, window), Ok(()), "unmap");
}

fn yield_entry(reporter: &mut Reporter, _start: &'static StartInfo) {
    let mut calls = Multicall::new();
    calls.version(version_cmd::ABI_VERSION);
    // SAFETY: sched_op(YIELD) takes no pointers.
    unsafe { calls.push(Hypercall::SCHED_OP, [sched_cmd::YIELD, 0, 0, 0, 0, 0]) };
    calls.version(version_cmd::ABI_VERSION);
    reporter.expect_eq(issue(&mut calls), Ok(2), "the yield entry completes and ends the multicall");
    reporter.expect_eq(calls.entries()[1].result, 0, "yield result");
    reporter.expect_eq(calls.entries()[2].result, NOT_EXECUTED, "the entry after the yield did not run");
}
