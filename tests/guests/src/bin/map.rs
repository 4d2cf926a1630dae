//! Conformance: `mmu_update` (SPEC.md §12.4) without faults. Sub-cases: `alias` (a gfn
//! mapped twice shows the same data), `errors` (every per-entry error, exact errno, done
//! count 0 and nothing mapped), `overlap` (second entry of a batch fails -EEXIST, done 1,
//! first stays), `batch_limit` (count 2^32 and u64::MAX: at most BATCH_MAX processed),
//! `long_batch` (guest-rt re-issues a batch longer than BATCH_MAX), `done_fault` (an
//! unwritable done pointer is -EFAULT but the entries stay done), `protect` (flags change
//! and QUERY reports them). The argument selects one; none or `all` runs every one.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

extern crate alloc;

use alloc::vec::Vec;

use conformance_guests::raw_result;
use guest_rt::abi::layout::{HYPERVISOR_END, HYPERVISOR_START, PAGE_SIZE};
use guest_rt::abi::memory::{map_flags, map_op, MapEntry, BATCH_MAX, LARGE_PAGE_SIZE};
use guest_rt::abi::{Errno, Gfn, GuestVirtualAddress, Hypercall, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::memory::{self, map_entry, protect_entry, unmap_entry, MapBatch, Space};
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};
use support::{heap_page, peek, poke, Case};

guest_rt::entry!(map);

const CASES: &[(&str, Case)] = &[
    ("alias", alias),
    ("errors", errors),
    ("overlap", overlap),
    ("batch_limit", batch_limit),
    ("long_batch", long_batch),
    ("done_fault", done_fault),
    ("protect", protect),
];

fn map(start: &'static StartInfo) -> u32 {
    support::run("map", start, CASES)
}

/// A window of unused lower-half address space for sub-case `index` (4 GiB apart).
const fn window(index: u64) -> u64 {
    0x0000_4000_0000_0000 + index * 0x1_0000_0000
}

/// One raw `mmu_update` of `entries` in the initial space; prints and returns
/// (done, result).
fn update(entries: &[MapEntry]) -> (u64, Result<u64, Errno>) {
    // SAFETY: `entries` is a live slice; the count is its length.
    let (done, result) = unsafe { HYPERVISOR.mmu_update_raw(Space::INITIAL, entries.as_ptr(), entries.len() as u64) };
    println!("mmu_update({} entries) = {}, done {done}", entries.len(), ShowResult(&result));
    (done, result)
}

/// Expects the single `entry` to fail with `expected`, done 0, and `probe` unmapped.
fn refused(reporter: &mut Reporter, entry: MapEntry, expected: Errno, what: &str) {
    let (done, result) = update(&[entry]);
    reporter.expect_errno(result, expected, format_args!("{what} (entry {entry:x?})"));
    reporter.expect_eq(done, 0, format_args!("{what}: done count"));
    let probe = entry.virtual_address.0 & !(PAGE_SIZE - 1);
    if guest_rt::abi::layout::is_guest_range(probe, PAGE_SIZE) && probe != 0 {
        let after = memory::query(Space::INITIAL, probe);
        reporter.expect_errno(after, Errno::ENOENT, format_args!("{what}: nothing mapped at {probe:#x} afterwards"));
    }
}

fn query_is(reporter: &mut Reporter, address: u64, expected: Result<(u64, u32), Errno>, what: &str) {
    // Compared as plain u64 so the expectations (and the log line) read as numbers.
    let got = memory::query(Space::INITIAL, address).map(|(gfn, flags)| (gfn.0, flags));
    println!("query({address:#x}) = {}", ShowResult(&got));
    reporter.expect_eq(got, expected, format_args!("{what}: query {address:#x}"));
}

fn alias(reporter: &mut Reporter, start: &'static StartInfo) {
    let (page, gfn) = heap_page(start);
    let first = window(0);
    let second = window(0) + 7 * PAGE_SIZE;
    poke(page, 0x1111_2222_3333_4444);
    let mut batch = MapBatch::new();
    batch.map(first, gfn, map_flags::WRITABLE).map(second, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE);
    let applied = batch.apply(Space::INITIAL);
    reporter.expect_eq(applied.result, Ok(()), "map one gfn at two addresses");
    reporter.expect_eq(applied.done, 2, "map one gfn at two addresses: done");
    query_is(reporter, first, Ok((gfn, map_flags::WRITABLE)), "first alias");
    query_is(reporter, second + 0xabc, Ok((gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE)), "second alias");
    reporter.expect_eq(peek(first), 0x1111_2222_3333_4444, "first alias reads what the heap address wrote");
    poke(second + 8, 0x5555_6666_7777_8888);
    reporter.expect_eq(peek(first + 8), 0x5555_6666_7777_8888, "a write through the second alias shows at the first");
    reporter.expect_eq(peek(page + 8), 0x5555_6666_7777_8888, "... and at the heap address");
    poke(first + PAGE_SIZE - 8, 0x99);
    reporter.expect_eq(peek(second + PAGE_SIZE - 8), 0x99, "last word of the page through both aliases");
    let mut undo = MapBatch::new();
    undo.unmap(first).unmap(second);
    reporter.expect_eq(
        undo.apply(Space::INITIAL),
        memory::BatchResult { done: 2, result: Ok(()) },
        "unmap both aliases",
    );
    query_is(reporter, first, Err(Errno::ENOENT), "first alias after unmap");
    query_is(reporter, second, Err(Errno::ENOENT), "second alias after unmap");
    reporter.expect_eq(peek(page + 8), 0x5555_6666_7777_8888, "the heap mapping of the gfn is untouched");
}

fn errors(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let base = window(1);
    let maximum_gfn = reporter.expect_ok(memory::maximum_gfn(), "MAXIMUM_GFN").unwrap_or(0);
    let current = reporter.expect_ok(memory::current_reservation(), "CURRENT_RESERVATION").unwrap_or(0);
    println!("map errors: heap gfn {gfn}, current {current}, maximum gfn {maximum_gfn}");
    let rw = map_flags::WRITABLE;

    refused(reporter, map_entry(base, maximum_gfn, rw), Errno::EINVAL, "gfn = MAXIMUM_GFN");
    refused(reporter, map_entry(base, u64::MAX, rw), Errno::EINVAL, "gfn = u64::MAX");
    refused(reporter, map_entry(base, 1 << 52, rw), Errno::EINVAL, "gfn = 2^52");
    // The domain's gfns are 0..current, contiguous, until it changes its reservation: the
    // ones above were never populated here (another domain's frames have such numbers).
    if maximum_gfn > current {
        refused(reporter, map_entry(base, maximum_gfn - 1, rw), Errno::EINVAL, "never-populated gfn MAXIMUM_GFN - 1");
        refused(reporter, map_entry(base, current, rw), Errno::EINVAL, "never-populated gfn CURRENT_RESERVATION");
    } else {
        reporter.error("no never-populated gfn below MAXIMUM_GFN: run with mem= not a multiple of 2 MiB");
    }
    for address in [HYPERVISOR_START, HYPERVISOR_START + 0x400_0000_0000, HYPERVISOR_END - PAGE_SIZE] {
        refused(reporter, map_entry(address, gfn, rw), Errno::EPERM, "address in the hypervisor's slots");
    }
    for address in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_f000, 0x1234_5678_9abc_d000] {
        refused(reporter, map_entry(address, gfn, rw), Errno::EINVAL, "non-canonical address");
    }
    for address in [base + 8, base + 0x800, base + 1] {
        refused(reporter, map_entry(address, gfn, rw), Errno::EINVAL, "unaligned address");
    }
    for flags in [1 << 5, 1 << 12, 1 << 31, u32::MAX] {
        refused(reporter, map_entry(base, gfn, flags), Errno::EINVAL, "undefined flag bits");
    }
    for op in [3, 4, u32::MAX] {
        refused(
            reporter,
            MapEntry { virtual_address: GuestVirtualAddress(base), gfn: Gfn(gfn), op, flags: rw },
            Errno::EINVAL,
            "undefined op",
        );
    }
    refused(
        reporter,
        MapEntry { virtual_address: GuestVirtualAddress(base), gfn: Gfn(1), op: map_op::UNMAP, flags: 0 },
        Errno::EINVAL,
        "UNMAP with gfn != 0",
    );
    refused(
        reporter,
        MapEntry { virtual_address: GuestVirtualAddress(base), gfn: Gfn(1), op: map_op::PROTECT, flags: rw },
        Errno::EINVAL,
        "PROTECT with gfn != 0",
    );
    // The shared-info page is the hypervisor's frame: it stays (SPEC §12.4).
    refused(reporter, unmap_entry(start.shared_info_address.0, 0), Errno::EPERM, "UNMAP of the shared-info page");
    refused(
        reporter,
        protect_entry(start.shared_info_address.0, map_flags::NO_EXECUTE),
        Errno::EPERM,
        "PROTECT of the shared-info page",
    );
    refused(reporter, unmap_entry(base, 0), Errno::ENOENT, "UNMAP of an unmapped address");
    refused(reporter, protect_entry(base, rw), Errno::ENOENT, "PROTECT of an unmapped address");
    refused(
        reporter,
        map_entry(base + PAGE_SIZE, gfn, rw | map_flags::LARGE),
        Errno::EINVAL,
        "LARGE at a 4 KiB-aligned address",
    );
    // The heap gfn is an order-0 page: never a 2 MiB extent, aligned or not.
    refused(
        reporter,
        map_entry(base + LARGE_PAGE_SIZE, gfn, rw | map_flags::LARGE),
        Errno::EINVAL,
        "LARGE of an order-0 gfn",
    );

    for handle in [1000, 65, u64::MAX] {
        let entry = [map_entry(base, gfn, rw)];
        // SAFETY: the entry is a live local; the handle is checked first.
        let (done, result) = unsafe { HYPERVISOR.mmu_update_raw(Space::from_raw(handle), entry.as_ptr(), 1) };
        reporter.expect_errno(result, Errno::ESRCH, format_args!("mmu_update on unknown space {handle}"));
        let _ = done;
    }
    for pointer in [0, HYPERVISOR_START, base, 0x0000_8000_0000_0000] {
        // SAFETY: the hypervisor refuses these pointers with -EFAULT; nothing is read here.
        let (done, result) = unsafe { HYPERVISOR.mmu_update_raw(Space::INITIAL, pointer as *const MapEntry, 1) };
        reporter.expect_errno(result, Errno::EFAULT, format_args!("entries at {pointer:#x}"));
        reporter.expect_eq(done, 0, format_args!("entries at {pointer:#x}: done count"));
    }
    // A zero count reads nothing, whatever the pointer.
    // SAFETY: count 0: nothing is read.
    let (done, result) = unsafe { HYPERVISOR.mmu_update_raw(Space::INITIAL, core::ptr::null(), 0) };
    reporter.expect_eq(result, Ok(0), "count 0 with a null pointer");
    reporter.expect_eq(done, 0, "count 0: done count");
}

fn overlap(reporter: &mut Reporter, start: &'static StartInfo) {
    let (page_a, gfn_a) = heap_page(start);
    let (_, gfn_b) = heap_page(start);
    poke(page_a, 0xa);
    let address = window(2);
    let (done, result) = update(&[
        map_entry(address, gfn_a, map_flags::WRITABLE),
        map_entry(address, gfn_b, map_flags::WRITABLE),
        map_entry(address + PAGE_SIZE, gfn_b, map_flags::WRITABLE),
    ]);
    reporter.expect_errno(result, Errno::EEXIST, "second entry maps the same address");
    reporter.expect_eq(done, 1, "overlap: done count");
    query_is(reporter, address, Ok((gfn_a, map_flags::WRITABLE)), "the first entry stays mapped");
    query_is(reporter, address + PAGE_SIZE, Err(Errno::ENOENT), "the entry after the failure is not done");
    reporter.expect_eq(peek(address), 0xa, "the first entry's gfn is what the address shows");
    // The same through guest-rt's batch: done 1, error -EEXIST.
    let mut batch = MapBatch::new();
    batch.map(address + 2 * PAGE_SIZE, gfn_b, 0).map(address, gfn_b, 0);
    reporter.expect_eq(
        batch.apply(Space::INITIAL),
        memory::BatchResult { done: 1, result: Err(Errno::EEXIST) },
        "MapBatch overlap",
    );
    let mut undo = MapBatch::new();
    undo.unmap(address).unmap(address + 2 * PAGE_SIZE);
    reporter.expect_eq(undo.apply(Space::INITIAL).result, Ok(()), "unmap");
}

fn batch_limit(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let base = window(3);
    let entries: Vec<MapEntry> =
        (0..BATCH_MAX).map(|index| map_entry(base + index * PAGE_SIZE, gfn, map_flags::NO_EXECUTE)).collect();
    for (count, what) in [(1u64 << 32, "count 2^32"), (u64::MAX, "count u64::MAX")] {
        let begin = guest_rt::tsc::rdtsc_serialized();
        // SAFETY: BATCH_MAX live entries; the hypervisor reads at most BATCH_MAX.
        let (done, result) = unsafe { HYPERVISOR.mmu_update_raw(Space::INITIAL, entries.as_ptr(), count) };
        let cycles = guest_rt::tsc::rdtsc_serialized().wrapping_sub(begin);
        println!("mmu_update({what}) = {}, done {done}, {cycles} TSC cycles", ShowResult(&result));
        reporter.expect_eq(result, Ok(BATCH_MAX), format_args!("{what}: BATCH_MAX entries processed"));
        reporter.expect_eq(done, BATCH_MAX, format_args!("{what}: done count"));
        query_is(reporter, base + (BATCH_MAX - 1) * PAGE_SIZE, Ok((gfn, map_flags::NO_EXECUTE)), "last entry mapped");
        query_is(reporter, base + BATCH_MAX * PAGE_SIZE, Err(Errno::ENOENT), "nothing past BATCH_MAX");
        let unmaps: Vec<MapEntry> = entries.iter().map(|entry| unmap_entry(entry.virtual_address.0, 0)).collect();
        reporter.expect_eq(
            memory::mmu_update(Space::INITIAL, &unmaps),
            memory::BatchResult { done: BATCH_MAX as usize, result: Ok(()) },
            format_args!("{what}: unmap every entry"),
        );
    }
}

fn long_batch(reporter: &mut Reporter, start: &'static StartInfo) {
    let (page, gfn) = heap_page(start);
    poke(page, 0x10_0000);
    let base = window(4);
    let count = 2 * BATCH_MAX + 5;
    let mut batch = MapBatch::new();
    for index in 0..count {
        batch.map(base + index * PAGE_SIZE, gfn, map_flags::WRITABLE | map_flags::NO_EXECUTE);
    }
    reporter.expect_eq(
        batch.apply(Space::INITIAL),
        memory::BatchResult { done: count as usize, result: Ok(()) },
        "2 * BATCH_MAX + 5 maps",
    );
    reporter.expect_eq(peek(base + (count - 1) * PAGE_SIZE), 0x10_0000, "the last address shows the gfn");
    reporter.expect_eq(
        peek(base + BATCH_MAX * PAGE_SIZE),
        0x10_0000,
        "the first address of the second call shows the gfn",
    );
    let mut undo = MapBatch::new();
    for index in 0..count {
        undo.unmap(base + index * PAGE_SIZE);
    }
    reporter.expect_eq(
        undo.apply(Space::INITIAL),
        memory::BatchResult { done: count as usize, result: Ok(()) },
        "2 * BATCH_MAX + 5 unmaps",
    );
    // Unmapping again fails at the first entry.
    reporter.expect_eq(
        undo.apply(Space::INITIAL),
        memory::BatchResult { done: 0, result: Err(Errno::ENOENT) },
        "unmapping again",
    );
}

fn done_fault(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let address = window(5);
    let entries = [map_entry(address, gfn, map_flags::WRITABLE)];
    for done_pointer in [start.start_info_address.0, HYPERVISOR_START, 0x0000_8000_0000_0000] {
        // SAFETY: the done pointer is read-only, hypervisor or non-canonical: the
        // hypervisor cannot write it and says -EFAULT; the entries are a live local.
        let result = unsafe {
            raw_result(Hypercall::MMU_UPDATE.0, [Space::INITIAL.raw(), entries.as_ptr() as u64, 1, done_pointer, 0, 0])
        };
        reporter.expect_errno(result, Errno::EFAULT, format_args!("done pointer {done_pointer:#x}"));
        query_is(reporter, address, Ok((gfn, map_flags::WRITABLE)), "the completed entry stays done");
        reporter.expect_eq(memory::unmap_page(Space::INITIAL, address), Ok(()), "unmap");
    }
}

fn protect(reporter: &mut Reporter, start: &'static StartInfo) {
    let (page, gfn) = heap_page(start);
    poke(page, 77);
    let address = window(6);
    reporter.expect_eq(memory::map_page(Space::INITIAL, address, gfn, map_flags::NO_EXECUTE), Ok(()), "map read-only");
    query_is(reporter, address, Ok((gfn, map_flags::NO_EXECUTE)), "read-only mapping");
    reporter.expect_eq(peek(address), 77, "read through the read-only mapping");
    let all_small = map_flags::WRITABLE | map_flags::NO_EXECUTE | map_flags::WRITE_THROUGH;
    reporter.expect_eq(HYPERVISOR.protect_page(Space::INITIAL, address, all_small), Ok(()), "protect to writable");
    query_is(reporter, address, Ok((gfn, all_small)), "after protect");
    poke(address, 78);
    reporter.expect_eq(peek(page), 78, "write through the protected mapping reaches the gfn");
    refused(reporter, protect_entry(address + PAGE_SIZE, 0), Errno::ENOENT, "protect next (unmapped) page");
    let (_, result) = update(&[protect_entry(address, map_flags::LARGE)]);
    reporter.expect_errno(result, Errno::ENOENT, "PROTECT with LARGE of a 4 KiB mapping");
    let (_, result) = update(&[protect_entry(address, 1 << 7)]);
    reporter.expect_errno(result, Errno::EINVAL, "PROTECT with undefined flags");
    query_is(reporter, address, Ok((gfn, all_small)), "failed protects changed nothing");
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, address), Ok(()), "unmap");
}
