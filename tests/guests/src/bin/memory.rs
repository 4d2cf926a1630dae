//! Conformance: `address_space_op` (SPEC.md §12.3) and what QUERY reports of the initial
//! layout. Sub-cases: `query` (start info, stack, free region, image, shared info, bad
//! handles and addresses), `destroy` (the current root is -EBUSY, unknown handles -ESRCH),
//! `exhaust` (create until -ENOSPC, destroy all, three rounds: the same count each time,
//! so nothing leaks), `switch` (user roots: kernel-only mappings refused, a user root is
//! busy), `flush` (FLUSH_VA/FLUSH_ALL arguments). The argument selects one; none or `all`
//! runs every one.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

extern crate alloc;

use alloc::vec::Vec;

use guest_rt::abi::layout::{HYPERVISOR_START, PAGE_SIZE};
use guest_rt::abi::memory::{map_flags, space_cmd, SPACES_MAX};
use guest_rt::abi::{Errno, Gfn, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::memory::{self, FreeRegion, Space};
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};
use support::{heap_page, Case};

guest_rt::entry!(memory_guest);

const CASES: &[(&str, Case)] =
    &[("query", query), ("destroy", destroy), ("exhaust", exhaust), ("switch", switch), ("flush", flush)];

fn memory_guest(start: &'static StartInfo) -> u32 {
    support::run("memory", start, CASES)
}

const fn window(index: u64) -> u64 {
    0x0000_7000_0000_0000 + index * 0x1_0000_0000
}

fn query_is(reporter: &mut Reporter, space: Space, address: u64, expected: Result<(u64, u32), Errno>, what: &str) {
    // Compared as plain u64 so the expectations (and the log line) read as numbers.
    let got = memory::query(space, address).map(|(gfn, flags)| (gfn.0, flags));
    println!("query({}, {address:#x}) = {}", space.raw(), ShowResult(&got));
    reporter.expect_eq(got, expected, format_args!("{what}: query {address:#x}"));
}

fn query(reporter: &mut Reporter, start: &'static StartInfo) {
    let free = FreeRegion::of(start);
    let rw_nx = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    query_is(reporter, Space::INITIAL, start.free_start.0, Ok((start.free_gfn.0, rw_nx)), "first free page");
    let last = start.free_start.0 + (start.free_pages - 1) * PAGE_SIZE;
    query_is(reporter, Space::INITIAL, last + 0xfff, Ok((free.gfn_of(last).unwrap_or(0), rw_nx)), "last free page");
    query_is(reporter, Space::INITIAL, last + PAGE_SIZE, Err(Errno::ENOENT), "past the free region");
    // Start info: read-only, no-execute, the gfn right after the image's pages.
    match memory::query(Space::INITIAL, start.start_info_address.0) {
        Ok((gfn, flags)) => {
            reporter.expect_eq(flags, map_flags::NO_EXECUTE, "start-info flags");
            let image_pages = (start.image_end.0 - start.image_start.0) / PAGE_SIZE;
            reporter.expect_eq(gfn, Gfn(image_pages), "start-info gfn follows the image's");
        }
        Err(errno) => reporter.fail(format_args!("query start info: -{errno}")),
    }
    query_is(
        reporter,
        Space::INITIAL,
        start.start_info_address.0 - PAGE_SIZE,
        Err(Errno::ENOENT),
        "guard below start info",
    );
    match memory::query(Space::INITIAL, start.stack_top.0 - 8) {
        Ok((_, flags)) => {
            reporter.expect_eq(flags, rw_nx, "stack flags");
        }
        Err(errno) => reporter.fail(format_args!("query stack: -{errno}")),
    }
    query_is(reporter, Space::INITIAL, start.stack_top.0, Err(Errno::ENOENT), "guard above the stack");
    match memory::query(Space::INITIAL, start.image_start.0) {
        Ok((gfn, flags)) => {
            reporter.expect_eq(gfn, Gfn(0), "the image's first page is gfn 0");
            reporter.expect_eq(
                flags & (map_flags::WRITABLE | map_flags::NO_EXECUTE | map_flags::USER),
                0,
                "text: read-only, executable, kernel-only",
            );
        }
        Err(errno) => reporter.fail(format_args!("query image: -{errno}")),
    }
    // The shared-info page is the hypervisor's frame, not a gfn.
    query_is(reporter, Space::INITIAL, start.shared_info_address.0, Err(Errno::ENOENT), "shared info (not a gfn)");
    query_is(reporter, Space::INITIAL, window(0), Err(Errno::ENOENT), "an unused address");
    for address in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_f000] {
        query_is(reporter, Space::INITIAL, address, Err(Errno::EINVAL), "non-canonical address");
    }
    // The hypervisor's own slots hold no gfn of this domain (SPEC §12.3: -ENOENT).
    query_is(reporter, Space::INITIAL, HYPERVISOR_START, Err(Errno::ENOENT), "the hypervisor range");
    for handle in [SPACES_MAX, 1000, u64::MAX - 1] {
        query_is(reporter, Space::from_raw(handle), start.free_start.0, Err(Errno::ESRCH), "unknown handle");
    }
    // A new space is empty; what is mapped there shows only there.
    let (_, gfn) = heap_page(start);
    if let Some(space) = reporter.expect_ok(memory::create_space(), "create") {
        query_is(reporter, space, start.free_start.0, Err(Errno::ENOENT), "a new space is empty");
        reporter.expect_eq(memory::map_page(space, window(1), gfn, map_flags::USER), Ok(()), "map in the new space");
        query_is(reporter, space, window(1), Ok((gfn, map_flags::USER)), "mapped in the new space");
        query_is(reporter, Space::INITIAL, window(1), Err(Errno::ENOENT), "not in the initial space");
        reporter.expect_eq(memory::destroy_space(space), Ok(()), "destroy");
        query_is(reporter, space, window(1), Err(Errno::ESRCH), "a destroyed handle");
    }
    // SPEC §12.3: an unknown sub-command is -EINVAL.
    reporter.expect_errno(HYPERVISOR.address_space_op(99, 0, 0), Errno::EINVAL, "address_space_op(99)");
    reporter.expect_errno(HYPERVISOR.address_space_op(u64::MAX, 0, 0), Errno::EINVAL, "address_space_op(u64::MAX)");
}

fn destroy(reporter: &mut Reporter, _start: &'static StartInfo) {
    reporter.expect_errno(memory::destroy_space(Space::INITIAL), Errno::EBUSY, "destroy the current kernel root");
    for handle in [1, SPACES_MAX - 1, SPACES_MAX, 1000, u64::MAX - 1, u64::MAX] {
        reporter.expect_errno(
            memory::destroy_space(Space::from_raw(handle)),
            Errno::ESRCH,
            format_args!("destroy unknown handle {handle}"),
        );
    }
    if let Some(space) = reporter.expect_ok(memory::create_space(), "create") {
        reporter.check(space != Space::INITIAL, "a new handle differs from the initial one");
        reporter.expect_eq(memory::destroy_space(space), Ok(()), "destroy it");
        reporter.expect_errno(memory::destroy_space(space), Errno::ESRCH, "destroy it twice");
    }
    reporter.expect_errno(memory::destroy_space(Space::INITIAL), Errno::EBUSY, "the initial space is still busy");
}

fn exhaust(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let mut counts = Vec::new();
    for round in 0..3 {
        let mut spaces = Vec::new();
        let stop = loop {
            match memory::create_space() {
                Ok(space) => {
                    if spaces.contains(&space) || space == Space::INITIAL {
                        reporter.fail(format_args!("round {round}: handle {} handed out twice", space.raw()));
                    }
                    spaces.push(space);
                    if spaces.len() as u64 > SPACES_MAX {
                        break Ok(());
                    }
                }
                Err(errno) => break Err(errno),
            }
        };
        println!("round {round}: created {} spaces, then {}", spaces.len(), ShowResult(&stop.map(|()| 0)));
        reporter.expect_errno(stop, Errno::ENOSPC, format_args!("round {round}: create past SPACES_MAX"));
        reporter.expect_eq(
            spaces.len() as u64,
            SPACES_MAX - 1,
            format_args!("round {round}: spaces created besides the initial one"),
        );
        // Give every space some page tables, so destroying them has something to free.
        for (index, space) in spaces.iter().enumerate() {
            let address = window(2) + (index as u64) * 0x40_0000_0000;
            if memory::map_page(*space, address, gfn, 0) != Ok(()) {
                reporter.fail(format_args!("round {round}: map in space {}", space.raw()));
            }
        }
        for space in &spaces {
            if let Err(errno) = memory::destroy_space(*space) {
                reporter.fail(format_args!("round {round}: destroy {}: -{errno}", space.raw()));
            }
        }
        counts.push(spaces.len());
    }
    reporter
        .check(counts.windows(2).all(|pair| pair[0] == pair[1]), format_args!("spaces per round differ: {counts:?}"));
}

fn switch(reporter: &mut Reporter, start: &'static StartInfo) {
    let (_, gfn) = heap_page(start);
    let Some(user) = reporter.expect_ok(memory::create_space(), "create a user space") else { return };
    reporter.expect_eq(
        memory::map_page(user, window(3), gfn, map_flags::USER | map_flags::WRITABLE),
        Ok(()),
        "user mapping",
    );
    reporter.expect_eq(memory::switch_space(Space::INITIAL, Some(user)), Ok(()), "switch: user root = the new space");
    reporter.expect_errno(memory::destroy_space(user), Errno::EBUSY, "destroy the user root");
    // A kernel-only mapping into the user root is refused.
    reporter.expect_errno(
        memory::map_page(user, window(3) + PAGE_SIZE, gfn, map_flags::WRITABLE),
        Errno::EPERM,
        "kernel-only map into the user root",
    );
    query_is(reporter, user, window(3) + PAGE_SIZE, Err(Errno::ENOENT), "refused mapping absent");
    reporter.expect_eq(memory::switch_space(Space::INITIAL, None), Ok(()), "switch: no user root");
    reporter.expect_eq(
        memory::map_page(user, window(3) + PAGE_SIZE, gfn, map_flags::WRITABLE),
        Ok(()),
        "kernel-only map once it is not the user root",
    );
    reporter.expect_errno(
        memory::switch_space(Space::INITIAL, Some(user)),
        Errno::EPERM,
        "a space with a kernel-only mapping as user root",
    );
    reporter.expect_errno(
        memory::switch_space(Space::from_raw(1000), None),
        Errno::ESRCH,
        "switch to an unknown kernel root",
    );
    reporter.expect_errno(
        memory::switch_space(Space::INITIAL, Some(Space::from_raw(1000))),
        Errno::ESRCH,
        "switch to an unknown user root",
    );
    let same = memory::switch_space(Space::INITIAL, Some(Space::INITIAL));
    reporter.check(
        same.is_err(),
        format_args!("kernel root = user root: got {}, expected an error", ShowResult(&same.map(|()| 0))),
    );
    reporter.expect_eq(memory::destroy_space(user), Ok(()), "destroy once it is no root");
    reporter.expect_eq(memory::switch_space(Space::INITIAL, None), Ok(()), "switch to the same roots again");
}

fn flush(reporter: &mut Reporter, start: &'static StartInfo) {
    let space = Space::INITIAL;
    let op = |command, a, b| HYPERVISOR.address_space_op(command, a, b);
    reporter.expect_eq(HYPERVISOR.flush_va(space, start.free_start.0), Ok(()), "FLUSH_VA of a mapped page");
    reporter.expect_eq(HYPERVISOR.flush_va(space, window(4)), Ok(()), "FLUSH_VA of an unmapped page");
    reporter.expect_eq(HYPERVISOR.flush_all(space), Ok(()), "FLUSH_ALL");
    reporter.expect_errno(
        op(space_cmd::FLUSH_VA, space.raw(), 0x0000_8000_0000_0000),
        Errno::EINVAL,
        "FLUSH_VA non-canonical",
    );
    reporter.expect_errno(op(space_cmd::FLUSH_VA, 1000, start.free_start.0), Errno::ESRCH, "FLUSH_VA unknown handle");
    reporter.expect_errno(op(space_cmd::FLUSH_ALL, 1000, 0), Errno::ESRCH, "FLUSH_ALL unknown handle");
    if let Some(other) = reporter.expect_ok(memory::create_space(), "create") {
        reporter.expect_eq(HYPERVISOR.flush_all(other), Ok(()), "FLUSH_ALL of a space that is not loaded");
        reporter.expect_eq(memory::destroy_space(other), Ok(()), "destroy");
    }
}
