//! Benchmark `hypercall_latency`: how far past the end of its time slice one domain can
//! keep the CPU by making the heaviest hypercalls it can (SPEC.md §5.5), as the other
//! domain sees it. Booted as a pair (`peer=<id>`); domain 1 is the *heartbeat*, domain 2
//! the *heavy* one.
//!
//! The heartbeat only reads the system time in a loop. A jump of more than
//! [`DESCHEDULED_NS`] between two reads is a time the heavy domain held the CPU: a slice
//! (`slice_ms=<n>`, default 10, the hypervisor's default) plus whatever the preemption
//! came late. One sample is that lateness (the jump minus the slice, 0 if shorter), in
//! TSC cycles; a second line names the worst in microseconds, which `cargo xtask bench`
//! holds against its 1 ms goal. The
//! heartbeat stops after `iterations=<n>` samples (after a tenth more of warm-up), or when
//! no jump came for 40 slices (the heavy domain is done).
//!
//! The heavy domain repeats, until the heartbeat has had time for its samples: one
//! `multicall` of 64 `mmu_update`s of 1024 entries each (65 536 page-table updates,
//! mapping and unmapping one window), `INCREASE_RESERVATION` of 1024 gfns, the 1024 mapped
//! in 32 address spaces, `DECREASE_RESERVATION` of all of them at once (32 768 mappings
//! removed), and one 4096-byte `console_io` write. It checks every result, so the rows
//! also prove that preempted hypercalls complete exactly as unpreempted ones do.
//! Prints `bench hypercall_latency median <c> p99 <c> iterations <n>`, or with `calls=0`
//! (the heavy domain spins without hypercalls: the host's own lateness, the control row)
//! `bench hypercall_latency_control ...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "bench_support/mod.rs"]
mod bench_support;

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use conformance_guests::argument;
use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::{map_flags, MapEntry};
use guest_rt::abi::StartInfo;
use guest_rt::memory::{self, Space};
use guest_rt::multicall::Multicall;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;
use guest_rt::tsc;

guest_rt::entry!(bench_hypercall_latency);

/// A jump in the system time longer than this means the domain was not running.
const DESCHEDULED_NS: u64 = 100_000;
/// Entries of one `mmu_update` (BATCH_MAX) and of the reservation batches.
const BATCH: usize = 1024;
/// The multicall's window for its map/unmap pairs, and the window the released gfns are
/// mapped at in every space: lower half, away from the image, the heap and each other.
const MULTICALL_WINDOW: u64 = 0x0000_5200_0000_0000;
const RESERVATION_WINDOW: u64 = 0x0000_5300_0000_0000;
/// Address spaces the released gfns are mapped in (the initial one included).
const SPACES: usize = 32;
const MILLISECOND: u64 = 1_000_000;
/// `calls=<mask>`: which of the heavy calls the heavy domain makes (bit 0 the multicall,
/// bit 1 the reservation round, bit 2 the console write; default all), to find which one
/// a late preemption comes from; `calls=0` spins without hypercalls, the control that
/// shows how late a preemption comes on this host anyway.
const ALL_CALLS: u64 = 0b111;

fn bench_hypercall_latency(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let iterations = bench_support::iterations(start);
    let warmup = bench_support::warmup(iterations);
    let slice_ns = argument(start, "slice_ms").unwrap_or(10) * MILLISECOND;
    let calls = argument(start, "calls").unwrap_or(ALL_CALLS);
    match bench_support::peer(start) {
        Some(2) => {
            let name = if calls == 0 { "hypercall_latency_control" } else { "hypercall_latency" };
            heartbeat(&mut reporter, name, warmup, iterations, slice_ns)
        }
        Some(_) => heavy(&mut reporter, start, calls, (warmup + iterations + 10) as u64 * 2 * slice_ns),
        None => reporter.error("no peer=<id> argument: boot this guest as a pair"),
    }
    reporter.finish()
}

fn heartbeat(reporter: &mut Reporter, name: &str, warmup: usize, iterations: usize, slice_ns: u64) {
    let mut lateness = Vec::new();
    if lateness.try_reserve_exact(warmup + iterations).is_err() {
        return reporter.error("no heap for the samples: give the domain more memory");
    }
    let mut last = time::now();
    let mut last_jump = last;
    while lateness.len() < warmup + iterations {
        let now = time::now();
        if now - last > DESCHEDULED_NS {
            lateness.push((now - last).saturating_sub(slice_ns));
            last_jump = now;
        } else if now - last_jump > 40 * slice_ns {
            break;
        }
        last = now;
    }
    if lateness.len() <= warmup {
        return reporter
            .error(format_args!("only {} descheduled times seen: did the heavy domain run?", lateness.len()));
    }
    let (info, _) = time::read_time(guest_rt::events::shared_info());
    let mut samples: Vec<u64> =
        lateness[warmup..].iter().map(|&ns| bench_support::cycles_of_nanoseconds(ns, &info)).collect();
    let worst_ns = lateness[warmup..].iter().copied().max().unwrap_or(0);
    println!("bench: {name}: worst {} us past the {} ms slice", worst_ns / 1_000, slice_ns / MILLISECOND);
    bench_support::report(reporter, name, Ok(tsc::summarize(&mut samples)));
}

fn heavy(reporter: &mut Reporter, start: &StartInfo, calls: u64, duration_ns: u64) {
    let Some((_, gfn)) = bench_support::heap_pages(start, 1) else {
        return reporter.error("no heap for the multicall's page");
    };
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    let map: Vec<MapEntry> =
        (0..BATCH as u64).map(|index| memory::map_entry(MULTICALL_WINDOW + index * PAGE_SIZE, gfn, flags)).collect();
    let unmap: Vec<MapEntry> =
        (0..BATCH as u64).map(|index| memory::unmap_entry(MULTICALL_WINDOW + index * PAGE_SIZE, 0)).collect();
    let unmap_reserved: Vec<MapEntry> =
        (0..BATCH as u64).map(|index| memory::unmap_entry(RESERVATION_WINDOW + index * PAGE_SIZE, 0)).collect();
    let mut spaces = vec![Space::INITIAL];
    for _ in 1..SPACES {
        match memory::create_space() {
            Ok(space) => spaces.push(space),
            Err(errno) => return reporter.error(format_args!("create_space: {errno}")),
        }
    }
    let text = [b'.'; 4096];
    let mut gfns = vec![0u64; BATCH];
    let began = time::now();
    let mut rounds = 0u64;
    while time::now() - began < duration_ns {
        if calls & 1 != 0 && !multicall(reporter, &map, &unmap) {
            return;
        }
        if calls & 2 != 0 && !reservation(reporter, &spaces, &mut gfns, &unmap_reserved) {
            return;
        }
        if calls & 4 != 0
            && !reporter.expect_eq(guest_rt::hypercall::console_write(&text), Ok(text.len()), "console write")
        {
            return;
        }
        rounds += 1;
    }
    println!("bench: hypercall_latency: heavy domain did {rounds} rounds");
}

/// One multicall of 64 `mmu_update`s of [`BATCH`] entries, mapping and unmapping.
fn multicall(reporter: &mut Reporter, map: &[MapEntry], unmap: &[MapEntry]) -> bool {
    let mut calls = Multicall::new();
    for index in 0..64 {
        let entries = if index % 2 == 0 { map } else { unmap };
        // SAFETY: both arrays live until after `call` and are not changed.
        if unsafe { calls.mmu_update(Space::INITIAL, entries) }.is_none() {
            reporter.error("the multicall holds 64 calls");
            return false;
        }
    }
    if !reporter.expect_eq(calls.call(), Ok(64), "multicall of 64 mmu_updates") {
        return false;
    }
    let results: Vec<_> = (0..64).map(|index| calls.result(index)).collect();
    let all_done = results.iter().all(|&result| result == Some(Ok(BATCH as u64)));
    reporter.check(all_done, "every mmu_update did 1024")
}

/// INCREASE of [`BATCH`] gfns, each mapped in every space, then DECREASE of all of them.
fn reservation(reporter: &mut Reporter, spaces: &[Space], gfns: &mut [u64], unmap_reserved: &[MapEntry]) -> bool {
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    if !reporter.expect_eq(memory::increase_reservation(gfns, 0), Ok(BATCH), "increase 1024") {
        return false;
    }
    let mapping: Vec<MapEntry> = gfns
        .iter()
        .enumerate()
        .map(|(index, &gfn)| memory::map_entry(RESERVATION_WINDOW + index as u64 * PAGE_SIZE, gfn, flags))
        .collect();
    for &space in spaces {
        let done = memory::mmu_update(space, &mapping);
        if !reporter.expect_eq(done.result, Ok(()), "map the new gfns") {
            return false;
        }
    }
    if !reporter.expect_eq(memory::decrease_reservation(gfns, 0), Ok(BATCH), "decrease 1024") {
        return false;
    }
    // Every mapping went with its gfn: unmapping finds nothing.
    reporter.expect_eq(memory::mmu_update(spaces[1], &unmap_reserved[..1]).done, 0, "released")
}
