//! Conformance: `memory_op` reservation (SPEC.md §12.2). Run with `maxmem=` above `mem=`
//! so there is room to grow. Sub-cases: `counts` (CURRENT/MAXIMUM/MAXIMUM_GFN against
//! start info), `quota` (grow to the quota: lowest free gfns, partial success, then
//! -ENOMEM; shrink back), `zeroed` (new frames read as zero, also after reuse), `errors`
//! (bad order, bad arrays, unpopulated gfns), `decrease_mapped` (a gfn mapped in two
//! spaces: decrease removes both mappings, an access faults, QUERY is -ENOENT), `large`
//! (order-9 extent mapped as a 2 MiB page). The argument selects one; none or `all` runs
//! every one.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use guest_rt::abi::layout::{HYPERVISOR_START, PAGE_SIZE};
use guest_rt::abi::memory::{map_flags, memory_cmd, LARGE_PAGE_ORDER, LARGE_PAGE_PAGES, LARGE_PAGE_SIZE};
use guest_rt::abi::trap::page_fault;
use guest_rt::abi::{Errno, Gfn, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::memory::{self, map_entry, unmap_entry, BatchResult, Space};
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};
use support::{peek, peek_byte, poke, poke_byte, Case};

guest_rt::entry!(reservation);

const CASES: &[(&str, Case)] = &[
    ("counts", counts),
    ("quota", quota),
    ("zeroed", zeroed),
    ("errors", errors),
    ("decrease_mapped", decrease_mapped),
    ("large", large),
];

fn reservation(start: &'static StartInfo) -> u32 {
    if let Err(errno) = support::install_fault_probe() {
        let mut reporter = Reporter::new();
        reporter.error(format_args!("installing the #PF handler: -{errno}"));
        reporter.finish();
    }
    support::run("reservation", start, CASES)
}

const fn window(index: u64) -> u64 {
    0x0000_6000_0000_0000 + index * 0x1_0000_0000
}

fn current(reporter: &mut Reporter) -> u64 {
    reporter.expect_ok(memory::current_reservation(), "CURRENT_RESERVATION").unwrap_or(0)
}

/// Room left under the quota; an ERROR if there is none (the case needs `maxmem=`).
fn headroom(reporter: &mut Reporter, needed: u64) -> Option<u64> {
    let maximum = reporter.expect_ok(memory::maximum_reservation(), "MAXIMUM_RESERVATION")?;
    let room = maximum.saturating_sub(current(reporter));
    if room < needed {
        reporter.error(format_args!("needs {needed} pages of headroom, has {room}: run with maxmem= above mem="));
        return None;
    }
    Some(room)
}

fn increase(gfns: &mut [u64], order: u64) -> Result<usize, Errno> {
    let result = memory::increase_reservation(gfns, order);
    println!("increase_reservation({} extents, order {order}) = {}", gfns.len(), ShowResult(&result));
    result
}

fn decrease(gfns: &[u64], order: u64) -> Result<usize, Errno> {
    let result = memory::decrease_reservation(gfns, order);
    println!("decrease_reservation({} extents, order {order}) = {}", gfns.len(), ShowResult(&result));
    result
}

fn counts(reporter: &mut Reporter, start: &'static StartInfo) {
    reporter.expect_eq(memory::current_reservation(), Ok(start.nr_pages), "CURRENT_RESERVATION = nr_pages");
    reporter.expect_eq(memory::maximum_reservation(), Ok(start.max_pages), "MAXIMUM_RESERVATION = max_pages");
    let rounded = start.max_pages.div_ceil(LARGE_PAGE_PAGES) * LARGE_PAGE_PAGES;
    reporter.expect_eq(memory::maximum_gfn(), Ok(rounded), "MAXIMUM_GFN = max_pages rounded up to 512");
    reporter.check(start.max_pages >= start.nr_pages, "max_pages >= nr_pages");
    println!("nr_pages {} max_pages {} free_gfn {}", start.nr_pages, start.max_pages, start.free_gfn.0);
}

fn quota(reporter: &mut Reporter, start: &'static StartInfo) {
    let Some(room) = headroom(reporter, 1) else { return };
    let before = current(reporter);
    // Ask for 5 more than the quota allows: a partial success, not an error.
    let mut gfns = vec![u64::MAX; room as usize + 5];
    let mut done = 0;
    while done < gfns.len() {
        match increase(&mut gfns[done..], 0) {
            Ok(0) => break,
            Ok(count) => done += count,
            Err(errno) => {
                reporter.expect_errno::<()>(Err(errno), Errno::ENOMEM, "increase past the quota stops with -ENOMEM");
                break;
            }
        }
    }
    reporter.expect_eq(done as u64, room, "extents populated = headroom");
    reporter.expect_eq(memory::current_reservation(), Ok(start.max_pages), "CURRENT_RESERVATION = quota when full");
    // gfns were contiguous 0..before: each new extent is the lowest free gfn.
    let expected: Vec<u64> = (before..before + room).collect();
    reporter.expect_eq(&gfns[..done], &expected[..], "new gfns are the lowest free ones, in order");
    reporter.expect_eq(&gfns[done..], &[u64::MAX; 5][..], "no gfn written past the last populated extent");
    let mut one = [u64::MAX];
    reporter.expect_errno(increase(&mut one, 0), Errno::ENOMEM, "one more page at the quota");
    reporter.expect_eq(one[0], u64::MAX, "-ENOMEM writes no gfn");
    reporter.expect_errno(increase(&mut one, LARGE_PAGE_ORDER), Errno::ENOMEM, "a 2 MiB extent at the quota");
    reporter.expect_eq(memory::current_reservation(), Ok(start.max_pages), "failed increases change nothing");
    let released = decrease(&gfns[..done], 0);
    reporter.expect_eq(released, Ok(done), "give every new page back");
    reporter.expect_eq(memory::current_reservation(), Ok(before), "CURRENT_RESERVATION back where it was");
    // And the quota is usable again.
    reporter.expect_eq(increase(&mut one, 0), Ok(1), "increase after giving back");
    reporter.expect_eq(one[0], before, "the lowest free gfn again");
    reporter.expect_eq(decrease(&one, 0), Ok(1), "decrease it");
}

fn zeroed(reporter: &mut Reporter, _start: &'static StartInfo) {
    if headroom(reporter, 1).is_none() {
        return;
    }
    let address = window(0);
    for round in 0..2 {
        let mut gfn = [0u64];
        if reporter.expect_eq(increase(&mut gfn, 0), Ok(1), format_args!("round {round}: increase")) {
            reporter.expect_eq(memory::map_page(Space::INITIAL, address, gfn[0], map_flags::WRITABLE), Ok(()), "map");
            let nonzero = (0..PAGE_SIZE / 8).filter(|index| peek(address + index * 8) != 0).count();
            reporter.expect_eq(nonzero, 0, format_args!("round {round}: words not zero in a new frame"));
            for index in 0..PAGE_SIZE / 8 {
                poke(address + index * 8, 0xdead_beef_0000_0000 | index);
            }
            reporter.expect_eq(memory::unmap_page(Space::INITIAL, address), Ok(()), "unmap");
            reporter.expect_eq(decrease(&gfn, 0), Ok(1), "decrease");
        }
    }
}

fn errors(reporter: &mut Reporter, start: &'static StartInfo) {
    let before = current(reporter);
    let mut gfns = [u64::MAX; 2];
    for order in [1, 8, 10, 18, u64::MAX] {
        reporter.expect_errno(increase(&mut gfns, order), Errno::EINVAL, format_args!("increase order {order}"));
        reporter.expect_errno(
            decrease(&[start.free_gfn.0], order),
            Errno::EINVAL,
            format_args!("decrease order {order}"),
        );
    }
    reporter.expect_eq(gfns, [u64::MAX; 2], "refused increases write nothing");
    for pointer in [0, HYPERVISOR_START, start.start_info_address.0, 0x0000_8000_0000_0000] {
        // SAFETY: the hypervisor cannot write any of these arrays and says -EFAULT.
        let result = unsafe { HYPERVISOR.memory_op(memory_cmd::INCREASE_RESERVATION, pointer, 1, 0) };
        reporter.expect_errno(result, Errno::EFAULT, format_args!("increase into an array at {pointer:#x}"));
        reporter.expect_eq(
            memory::current_reservation(),
            Ok(before),
            format_args!("array at {pointer:#x}: the extent was given back"),
        );
        // SAFETY: decrease only reads; these arrays are unreadable (or read-only start info,
        // whose first word is the magic: not a gfn of ours).
        let result = unsafe { HYPERVISOR.memory_op(memory_cmd::DECREASE_RESERVATION, pointer, 1, 0) };
        let expected = if pointer == start.start_info_address.0 { Errno::EINVAL } else { Errno::EFAULT };
        reporter.expect_errno(result, expected, format_args!("decrease from an array at {pointer:#x}"));
    }
    for command in [5, 99, u64::MAX] {
        // SAFETY: unknown sub-commands take no pointers (all arguments are 0).
        let result = unsafe { HYPERVISOR.memory_op(command, 0, 0, 0) };
        reporter.expect_errno(
            result,
            Errno::EINVAL,
            format_args!("memory_op({command}) (SPEC §12.2: other → -EINVAL)"),
        );
    }
    reporter.expect_eq(increase(&mut [], 0), Ok(0), "increase of 0 extents");
    reporter.expect_eq(decrease(&[], 0), Ok(0), "decrease of 0 extents");
    let maximum_gfn = memory::maximum_gfn().unwrap_or(0);
    for gfn in [before, maximum_gfn - 1, maximum_gfn, u64::MAX] {
        reporter.expect_errno(decrease(&[gfn], 0), Errno::EINVAL, format_args!("decrease of unpopulated gfn {gfn}"));
    }
    if headroom(reporter, 1).is_some() {
        let mut one = [0];
        if reporter.expect_eq(increase(&mut one, 0), Ok(1), "increase one") {
            reporter.expect_eq(decrease(&[one[0], one[0]], 0), Ok(1), "[good, same again]: stops after the first");
            reporter.expect_errno(decrease(&[one[0]], 0), Errno::EINVAL, "decrease of a gfn already given back");
        }
    }
    // An order-9 decrease needs a 512-aligned gfn whose 512 gfns are one extent.
    reporter.expect_errno(
        decrease(&[before + 1], LARGE_PAGE_ORDER),
        Errno::EINVAL,
        "order-9 decrease of a misaligned gfn",
    );
    reporter.expect_eq(memory::current_reservation(), Ok(before), "CURRENT_RESERVATION unchanged by the refused calls");
}

fn decrease_mapped(reporter: &mut Reporter, _start: &'static StartInfo) {
    if headroom(reporter, 1).is_none() {
        return;
    }
    let before = current(reporter);
    let mut gfn = [0u64];
    if !reporter.expect_eq(increase(&mut gfn, 0), Ok(1), "increase") {
        return;
    }
    let gfn = gfn[0];
    let Some(other) = reporter.expect_ok(memory::create_space(), "create a second space") else { return };
    let here = window(1);
    let there = window(1) + 0x40 * PAGE_SIZE;
    reporter.expect_eq(
        memory::map_page(Space::INITIAL, here, gfn, map_flags::WRITABLE),
        Ok(()),
        "map in the initial space",
    );
    reporter.expect_eq(memory::map_page(other, there, gfn, map_flags::WRITABLE), Ok(()), "map in the second space");
    reporter.expect_eq(memory::map_page(Space::INITIAL, here + PAGE_SIZE, gfn, 0), Ok(()), "map a second alias here");
    poke_byte(here + 9, 0x5a);
    reporter.expect_eq(memory::query(other, there), Ok((Gfn(gfn), map_flags::WRITABLE)), "query in the second space");
    reporter.expect_eq(decrease(&[gfn], 0), Ok(1), "decrease the mapped gfn");
    reporter.expect_errno(memory::query(Space::INITIAL, here), Errno::ENOENT, "query here after decrease");
    reporter.expect_errno(
        memory::query(Space::INITIAL, here + PAGE_SIZE),
        Errno::ENOENT,
        "query second alias after decrease",
    );
    reporter.expect_errno(memory::query(other, there), Errno::ENOENT, "query in the second space after decrease");
    match support::probe_read(here + 9) {
        Ok(byte) => reporter.fail(format_args!("read after decrease: no fault, read {byte:#x}")),
        Err(fault) => {
            reporter.expect_eq(fault.address, here + 9, "read after decrease: #PF address");
            reporter.expect_eq(fault.error_code, 0, "read after decrease: #PF error code (not present, read)");
        }
    }
    match support::probe_write(here + PAGE_SIZE, 1) {
        Ok(()) => reporter.fail("write to the second alias after decrease: no fault"),
        Err(fault) => {
            reporter.expect_eq(fault.address, here + PAGE_SIZE, "write after decrease: #PF address");
            reporter.expect_eq(fault.error_code, page_fault::WRITE, "write after decrease: #PF error code");
        }
    }
    reporter.expect_errno(memory::unmap_page(other, there), Errno::ENOENT, "unmap in the second space: already gone");
    reporter.expect_eq(memory::destroy_space(other), Ok(()), "destroy the second space");
    reporter.expect_eq(memory::current_reservation(), Ok(before), "CURRENT_RESERVATION back");
}

fn large(reporter: &mut Reporter, _start: &'static StartInfo) {
    if headroom(reporter, LARGE_PAGE_PAGES).is_none() {
        return;
    }
    let before = current(reporter);
    let mut extent = [u64::MAX];
    if !reporter.expect_eq(increase(&mut extent, LARGE_PAGE_ORDER), Ok(1), "increase one 2 MiB extent") {
        return;
    }
    let gfn = extent[0];
    reporter.expect_eq(gfn % LARGE_PAGE_PAGES, 0, "the extent's first gfn is 512-aligned");
    reporter.expect_eq(
        memory::current_reservation(),
        Ok(before + LARGE_PAGE_PAGES),
        "CURRENT_RESERVATION counts 512 pages",
    );
    let base = window(2) + LARGE_PAGE_SIZE;
    let large_rw = map_flags::LARGE | map_flags::WRITABLE | map_flags::NO_EXECUTE;
    // Refusals first: misaligned address or gfn, and a 4 KiB mapping in the way.
    let refused = |entry| memory::mmu_update(Space::INITIAL, &[entry]);
    reporter.expect_eq(
        refused(map_entry(base + PAGE_SIZE, gfn, large_rw)),
        BatchResult { done: 0, result: Err(Errno::EINVAL) },
        "LARGE at a 4 KiB-aligned address",
    );
    reporter.expect_eq(
        refused(map_entry(base, gfn + 1, large_rw)),
        BatchResult { done: 0, result: Err(Errno::EINVAL) },
        "LARGE of a gfn inside the extent",
    );
    reporter.expect_eq(
        refused(map_entry(base, 0, large_rw)),
        BatchResult { done: 0, result: Err(Errno::EINVAL) },
        "LARGE of gfns 0..512 (order-0 pages, not one extent)",
    );
    reporter.expect_eq(
        memory::map_page(Space::INITIAL, base + 5 * PAGE_SIZE, gfn + 3, map_flags::WRITABLE),
        Ok(()),
        "a 4 KiB mapping of a gfn of the extent",
    );
    reporter.expect_eq(
        refused(map_entry(base, gfn, large_rw)),
        BatchResult { done: 0, result: Err(Errno::EEXIST) },
        "LARGE over an existing 4 KiB mapping",
    );
    poke(base + 5 * PAGE_SIZE, 0x3333);
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, base + 5 * PAGE_SIZE), Ok(()), "unmap the 4 KiB mapping");

    reporter.expect_eq(memory::map_page(Space::INITIAL, base, gfn, large_rw), Ok(()), "map the extent as a 2 MiB page");
    reporter.expect_eq(peek(base + 3 * PAGE_SIZE), 0x3333, "the 2 MiB page shows what gfn + 3 held");
    poke_byte(base, 0xa1);
    poke_byte(base + LARGE_PAGE_SIZE - 1, 0xb2);
    reporter.expect_eq(peek_byte(base), 0xa1, "first byte");
    reporter.expect_eq(peek_byte(base + LARGE_PAGE_SIZE - 1), 0xb2, "last byte");
    reporter.expect_eq(memory::query(Space::INITIAL, base), Ok((Gfn(gfn), large_rw)), "query the first page");
    reporter.expect_eq(
        memory::query(Space::INITIAL, base + 0x1234),
        Ok((Gfn(gfn + 1), large_rw)),
        "query inside: that 4 KiB part's gfn",
    );
    reporter.expect_eq(
        memory::query(Space::INITIAL, base + LARGE_PAGE_SIZE - 1),
        Ok((Gfn(gfn + 511), large_rw)),
        "query the last page",
    );
    reporter.expect_errno(
        memory::query(Space::INITIAL, base + LARGE_PAGE_SIZE),
        Errno::ENOENT,
        "query past the 2 MiB page",
    );
    reporter.expect_eq(
        refused(map_entry(base + 7 * PAGE_SIZE, gfn + 7, map_flags::WRITABLE)),
        BatchResult { done: 0, result: Err(Errno::EEXIST) },
        "4 KiB map inside the 2 MiB page",
    );
    reporter.expect_eq(
        refused(unmap_entry(base, 0)),
        BatchResult { done: 0, result: Err(Errno::ENOENT) },
        "4 KiB unmap of a 2 MiB mapping",
    );
    reporter.expect_eq(
        refused(unmap_entry(base + PAGE_SIZE, map_flags::LARGE)),
        BatchResult { done: 0, result: Err(Errno::EINVAL) },
        "LARGE unmap at a misaligned address",
    );
    reporter.expect_eq(
        refused(unmap_entry(base, map_flags::LARGE)),
        BatchResult { done: 1, result: Ok(()) },
        "unmap the 2 MiB page",
    );
    reporter.expect_errno(memory::query(Space::INITIAL, base), Errno::ENOENT, "query after unmap");

    // Mapped again, then decreased while mapped: the mapping goes with it.
    reporter.expect_eq(memory::map_page(Space::INITIAL, base, gfn, large_rw), Ok(()), "map the 2 MiB page again");
    reporter.expect_eq(
        decrease(&[gfn + 1], LARGE_PAGE_ORDER),
        Err(Errno::EINVAL),
        "order-9 decrease of a misaligned gfn",
    );
    reporter.expect_eq(decrease(&[gfn], LARGE_PAGE_ORDER), Ok(1), "decrease the extent while mapped");
    reporter.expect_errno(memory::query(Space::INITIAL, base), Errno::ENOENT, "query after decrease");
    match support::probe_read(base + LARGE_PAGE_SIZE - 1) {
        Ok(byte) => reporter.fail(format_args!("read after decrease: no fault, read {byte:#x}")),
        Err(fault) => {
            reporter.expect_eq(fault.address, base + LARGE_PAGE_SIZE - 1, "read after decrease: #PF address");
            reporter.expect_eq(fault.error_code, 0, "read after decrease: #PF error code");
        }
    }
    reporter.expect_eq(memory::current_reservation(), Ok(before), "CURRENT_RESERVATION back");

    // Releasing one gfn of an extent breaks it: the other 511 stay, as order-0 gfns.
    let mut extent = [u64::MAX];
    if !reporter.expect_eq(increase(&mut extent, LARGE_PAGE_ORDER), Ok(1), "increase another 2 MiB extent") {
        return;
    }
    let gfn = extent[0];
    reporter.expect_eq(memory::map_page(Space::INITIAL, base, gfn, large_rw), Ok(()), "map it as a 2 MiB page");
    reporter.expect_eq(decrease(&[gfn + 5], 0), Ok(1), "release one gfn of the extent");
    reporter.expect_errno(memory::query(Space::INITIAL, base), Errno::ENOENT, "the 2 MiB mapping went whole");
    reporter.expect_eq(memory::current_reservation(), Ok(before + LARGE_PAGE_PAGES - 1), "511 gfns stay populated");
    reporter.expect_errno(
        memory::map_page(Space::INITIAL, base, gfn, large_rw),
        Errno::EINVAL,
        "LARGE of a broken extent",
    );
    reporter.expect_errno(decrease(&[gfn], LARGE_PAGE_ORDER), Errno::EINVAL, "order-9 decrease of a broken extent");
    reporter.expect_eq(
        memory::map_page(Space::INITIAL, base, gfn + 6, map_flags::WRITABLE),
        Ok(()),
        "a remaining gfn maps as 4 KiB",
    );
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, base), Ok(()), "unmap it");
    let rest: Vec<u64> = (gfn..gfn + LARGE_PAGE_PAGES).filter(|&each| each != gfn + 5).collect();
    reporter.expect_eq(decrease(&rest, 0), Ok(rest.len()), "release the other 511 one by one");
    reporter.expect_eq(memory::current_reservation(), Ok(before), "CURRENT_RESERVATION back again");
}
