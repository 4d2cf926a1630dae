//! Conformance: hypercall continuations and the zero-length rule (SPEC.md §5.4, §5.5).
//! Sub-cases, each one long hypercall run beside a `role=ticker` domain that prints a tick
//! every 2 ms of system time, with `slice=1`. The long call is one multicall whose first
//! and last entries write `continuation: <sub> inside begins` and `... inside done` (a
//! long call of another kind sits between them as the middle entry): a tick between the
//! two lines was printed while that one hypercall was in progress, so it was preempted
//! and the other domain ran (for the console write, a tick inside its own bytes).
//!
//! * `multicall`: one multicall of 62 `mmu_update`s of 1024 entries (map, unmap, ...)
//!   between the markers: 64 and every entry's 1024, the window unmapped at the end.
//! * `decrease`: 1024 new gfns mapped in 32 address spaces, released with one
//!   `DECREASE_RESERVATION`: 1024, no mapping left, the reservation as before.
//! * `console`: one 4095-byte `console_io` write (a digit pattern) and its newline: 4095;
//!   the runner checks the bytes arrived whole and in order, however many lines they span.
//! * `self_unmap` (negative): a 1024-entry `mmu_update` whose entry 2 unmaps the second
//!   page of its own array: the batch stops with -EFAULT at the first entry reaching that
//!   page (170), preempted or not — progress never comes from a snapshot of the array.
//! * `zero_length`: count 0 for every array-taking call, at an unmapped guest address
//!   (success, nothing done), a non-canonical one and the hypervisor's (-EFAULT).
//!
//! The first argument word selects the sub-case; `role=ticker` makes the ticker.
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;
#[path = "memory_support/mod.rs"]
mod support;

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use guest_rt::abi::event::status;
use guest_rt::abi::hypercall::{console_cmd, sched_cmd};
use guest_rt::abi::layout::{HYPERVISOR_START, PAGE_SIZE};
use guest_rt::abi::memory::{map_flags, memory_cmd, MapEntry, BATCH_MAX};
use guest_rt::abi::{Errno, Hypercall, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::memory::{self, map_entry, unmap_entry, Space};
use guest_rt::multicall::Multicall;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;
use support::{heap_page, Case};

guest_rt::entry!(continuation);

const CASES: &[(&str, Case)] = &[
    ("multicall", multicall),
    ("decrease", decrease),
    ("console", console),
    ("self_unmap", self_unmap),
    ("zero_length", zero_length),
];

/// Where the cases map their windows: lower half, away from the image and the heap.
const WINDOW: u64 = 0x0000_5400_0000_0000;
const ARRAY_WINDOW: u64 = 0x0000_5500_0000_0000;
const BATCH: usize = BATCH_MAX as usize;
/// The most ticks the ticker prints, one per 2 ms of system time (200 s): it stops as soon
/// as the worker is gone, so this only bounds a case whose lifeline could not be made. A
/// PVM-based KVM host, where every page-table write traps to the host, spends more than
/// 10 s setting up `decrease` alone.
const TICKS: u64 = 100_000;
/// The worker (d1) and the ticker (d2) share one channel, the lifeline: the ticker ticks
/// until the worker's death unbinds it, however long the worker's setup took (a fixed
/// count of ticks ran out before a loaded host's worker reached its call).
const WORKER: u64 = 1;
const TICKER: u64 = 2;
const LIFELINE: u32 = 1;
/// Addresses no array may have, and one that is a guest address but unmapped.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
const UNMAPPED: u64 = 0x0000_5600_0000_0000;

fn continuation(start: &'static StartInfo) -> u32 {
    if start.cmd_line().split_ascii_whitespace().any(|word| word == "role=ticker") {
        ticker(start);
    }
    // The worker's end of the lifeline stays open until it powers off.
    if let Err(reason) = events_support::connect(start, TICKER, LIFELINE) {
        println!("continuation: no lifeline to the ticker: {reason}");
    }
    support::run("continuation", start, CASES)
}

/// Prints a tick every 2 ms of system time until the worker is gone (its end of the
/// lifeline no longer bound) or [`TICKS`] have been printed, then powers off.
fn ticker(start: &'static StartInfo) -> ! {
    let mut reporter = Reporter::new();
    let lifeline = events_support::connect(start, WORKER, LIFELINE);
    if let Err(reason) = lifeline {
        reporter.fail(format_args!("no lifeline to the worker: {reason}"));
    }
    let worker_alive =
        || lifeline.is_ok_and(|port| port.status().is_ok_and(|found| found.state == status::INTERDOMAIN));
    let mut next = time::now();
    for tick in 0..TICKS {
        while time::now() < next {}
        if !worker_alive() {
            break;
        }
        println!("continuation: tick {tick}");
        next += 2_000_000;
    }
    reporter.finish()
}

fn multicall(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    let map: Vec<MapEntry> = (0..BATCH as u64).map(|index| map_entry(WINDOW + index * PAGE_SIZE, gfn, flags)).collect();
    let unmap: Vec<MapEntry> = (0..BATCH as u64).map(|index| unmap_entry(WINDOW + index * PAGE_SIZE, 0)).collect();
    let begins = marker("multicall", "begins");
    let done = marker("multicall", "done");
    let mut marked = Multicall::new();
    // SAFETY: the markers are live until after `call`.
    unsafe { marked.push(Hypercall::CONSOLE_IO, console_write(&begins)) };
    for index in 0..62 {
        let entries = if index % 2 == 0 { &map } else { &unmap };
        // SAFETY: both arrays live until after `call` and are not changed.
        unsafe { marked.mmu_update(Space::INITIAL, entries) };
    }
    // SAFETY: as for the first marker.
    unsafe { marked.push(Hypercall::CONSOLE_IO, console_write(&done)) };
    reporter.expect_eq(marked.call(), Ok(64), "multicall of 62 x 1024 entries between two console writes");
    let all = (1..63).all(|index| marked.result(index) == Some(Ok(BATCH as u64)));
    reporter.check(all, "every mmu_update entry completed its 1024 entries");
    for index in [0, 511, 1023] {
        let address = WINDOW + index * PAGE_SIZE;
        reporter.expect_eq(memory::query(Space::INITIAL, address), Err(Errno::ENOENT), "the last entry unmapped");
    }
}

fn decrease(reporter: &mut Reporter, _: &'static StartInfo) {
    let Ok(before) = memory::current_reservation() else {
        return reporter.error("CURRENT_RESERVATION failed");
    };
    let mut spaces = vec![Space::INITIAL];
    for _ in 1..32 {
        match reporter.expect_ok(memory::create_space(), "create a space") {
            Some(space) => spaces.push(space),
            None => return,
        }
    }
    let mut gfns = vec![0u64; BATCH];
    if !reporter.expect_eq(memory::increase_reservation(&mut gfns, 0), Ok(BATCH), "increase 1024") {
        return;
    }
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    let maps: Vec<MapEntry> =
        gfns.iter().enumerate().map(|(index, &gfn)| map_entry(WINDOW + index as u64 * PAGE_SIZE, gfn, flags)).collect();
    for &space in &spaces {
        if !reporter.expect_eq(memory::mmu_update(space, &maps).result, Ok(()), "map 1024 gfns") {
            return;
        }
    }
    let arguments = [memory_cmd::DECREASE_RESERVATION, gfns.as_ptr() as u64, BATCH as u64, 0, 0, 0];
    let result = marked(reporter, "decrease", Hypercall::MEMORY_OP, arguments);
    reporter.expect_eq(result, Some(Ok(BATCH as u64)), "one DECREASE of 1024 gfns mapped in 32 spaces");
    reporter.expect_eq(memory::current_reservation(), Ok(before), "the reservation as before");
    for &space in &spaces {
        for index in [0, 1023] {
            let address = WINDOW + index * PAGE_SIZE;
            reporter.expect_eq(memory::query(space, address), Err(Errno::ENOENT), "no mapping of a released gfn");
        }
    }
    for space in spaces.into_iter().skip(1) {
        reporter.expect_ok(memory::destroy_space(space), "destroy a space");
    }
}

/// `continuation: <sub> inside <what>` and a newline.
fn marker(sub: &str, what: &str) -> Vec<u8> {
    alloc::format!("continuation: {sub} inside {what}\n").into_bytes()
}

/// `console_io(WRITE)` arguments for `bytes`.
fn console_write(bytes: &[u8]) -> [u64; 6] {
    [console_cmd::WRITE, bytes.len() as u64, bytes.as_ptr() as u64, 0, 0, 0]
}

/// Makes hypercall `op` as the middle entry of a multicall between the two marker
/// writes; returns its result (`None` if the multicall did not run it).
fn marked(reporter: &mut Reporter, sub: &str, op: Hypercall, arguments: [u64; 6]) -> Option<Result<u64, Errno>> {
    let begins = marker(sub, "begins");
    let done = marker(sub, "done");
    let mut calls = Multicall::new();
    // SAFETY: the markers live until after `call`; the caller vouches for `arguments`.
    unsafe {
        calls.push(Hypercall::CONSOLE_IO, console_write(&begins));
        calls.push(op, arguments);
        calls.push(Hypercall::CONSOLE_IO, console_write(&done));
    }
    let start = time::now();
    reporter.expect_eq(calls.call(), Ok(3), "the three entries");
    println!("continuation: {sub} took {} us", time::now().saturating_sub(start) / 1000);
    calls.result(1)
}

/// The console sub-case's bytes: digits 0-9 repeated, 4095 of them.
fn pattern() -> Vec<u8> {
    (0..4095u32).map(|index| b'0' + (index % 10) as u8).collect()
}

fn console(reporter: &mut Reporter, _: &'static StartInfo) {
    let bytes = pattern();
    println!("continuation: console begins");
    // SAFETY: `bytes` is a live buffer of `len` bytes the hypervisor only reads.
    let written = unsafe {
        HYPERVISOR
            .raw(Hypercall::CONSOLE_IO.0, [console_cmd::WRITE, bytes.len() as u64, bytes.as_ptr() as u64, 0, 0, 0])
    };
    println!();
    println!("continuation: console done");
    reporter.expect_eq(written, 4095, "one console write of 4095 bytes");
}

fn self_unmap(reporter: &mut Reporter, start: &'static StartInfo) {
    // The array: two pages mapped at ARRAY_WINDOW, filled through their heap addresses.
    let (first, first_gfn) = heap_page(start);
    let (second, second_gfn) = heap_page(start);
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    let array = [map_entry(ARRAY_WINDOW, first_gfn, flags), map_entry(ARRAY_WINDOW + PAGE_SIZE, second_gfn, flags)];
    if !reporter.expect_eq(memory::mmu_update(Space::INITIAL, &array).result, Ok(()), "map the array window") {
        return;
    }
    let (_, gfn) = heap_page(start);
    let entry = |index: u64| match index {
        2 => unmap_entry(ARRAY_WINDOW + PAGE_SIZE, 0),
        _ => map_entry(WINDOW + index * PAGE_SIZE, gfn, flags),
    };
    let per_page = PAGE_SIZE / core::mem::size_of::<MapEntry>() as u64;
    // The entries the two pages hold; the rest of the 1024 would be past the window.
    for index in 0..2 * PAGE_SIZE / core::mem::size_of::<MapEntry>() as u64 {
        let offset = index * core::mem::size_of::<MapEntry>() as u64;
        let value = entry(index);
        // SAFETY: MapEntry is plain data without padding (two u64, two u32): its bytes.
        let bytes = unsafe {
            core::slice::from_raw_parts((&value as *const MapEntry).cast::<u8>(), core::mem::size_of::<MapEntry>())
        };
        // An entry may straddle the two pages: write it byte by byte where it falls.
        for (byte_index, &byte) in bytes.iter().enumerate() {
            let at = offset + byte_index as u64;
            let target = if at < PAGE_SIZE { first + at } else { second + (at - PAGE_SIZE) };
            support::poke_byte(target, byte);
        }
    }
    let mut done = u64::MAX;
    let done_address = &mut done as *mut u64 as u64;
    let arguments = [Space::INITIAL.raw(), ARRAY_WINDOW, BATCH as u64, done_address, 0, 0];
    let result = marked(reporter, "self_unmap", Hypercall::MMU_UPDATE, arguments);
    // SAFETY: the hypervisor wrote `done` during the call; volatile, so it is read again.
    let done = unsafe { core::ptr::read_volatile(&done) };
    // Entry `per_page` is the first that reaches into the second page.
    reporter.expect_eq(
        (done, result),
        (per_page, Some(Err(Errno::EFAULT))),
        "stopped where the array became unreadable",
    );
    let unmap: Vec<MapEntry> = (0..per_page)
        .filter(|&index| index != 2)
        .map(|index| unmap_entry(WINDOW + index * PAGE_SIZE, 0))
        .chain([unmap_entry(ARRAY_WINDOW, 0)])
        .collect();
    reporter.expect_eq(memory::mmu_update(Space::INITIAL, &unmap).result, Ok(()), "every completed map was made");
}

/// One array-taking hypercall with count 0 and the array at `address`.
fn empty_call(name: &str, address: u64) -> i64 {
    let (number, arguments) = match name {
        "set_trap_table" => (Hypercall::SET_TRAP_TABLE, [address, 0, 0, 0, 0, 0]),
        "mmu_update" => (Hypercall::MMU_UPDATE, [0, address, 0, 0, 0, 0]),
        "increase_reservation" => (Hypercall::MEMORY_OP, [memory_cmd::INCREASE_RESERVATION, address, 0, 0, 0, 0]),
        "decrease_reservation" => (Hypercall::MEMORY_OP, [memory_cmd::DECREASE_RESERVATION, address, 0, 0, 0, 0]),
        "multicall" => (Hypercall::MULTICALL, [address, 0, 0, 0, 0, 0]),
        "console_write" => (Hypercall::CONSOLE_IO, [console_cmd::WRITE, 0, address, 0, 0, 0]),
        "console_read" => (Hypercall::CONSOLE_IO, [console_cmd::READ, 0, address, 0, 0, 0]),
        // A POLL of no port with a timeout already passed returns at once.
        _ => (Hypercall::SCHED_OP, [sched_cmd::POLL, address, 0, 1, 0, 0]),
    };
    // SAFETY: count 0: the hypervisor reads and writes nothing at `address`.
    unsafe { HYPERVISOR.raw(number.0, arguments) }
}

fn zero_length(reporter: &mut Reporter, _: &'static StartInfo) {
    let calls = [
        "set_trap_table",
        "mmu_update",
        "increase_reservation",
        "decrease_reservation",
        "multicall",
        "console_write",
        "console_read",
        "poll",
    ];
    let reservation = memory::current_reservation();
    for name in calls {
        for address in [NON_CANONICAL, HYPERVISOR_START, HYPERVISOR_START + PAGE_SIZE] {
            let result = empty_call(name, address);
            reporter.expect_eq(result, Errno::EFAULT.to_return(), format_args!("{name} count 0 at {address:#x}"));
        }
        for address in [0, UNMAPPED] {
            reporter.expect_eq(empty_call(name, address), 0, format_args!("{name} count 0 at {address:#x}"));
        }
    }
    reporter.expect_eq(memory::current_reservation(), reservation, "no gfn came or went");
    // set_trap_table with count 0 at a valid address removed every handler: put guest-rt's back.
    reporter.expect_ok(guest_rt::trap::install(), "reinstall the trap table");
}
