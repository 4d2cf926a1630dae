//! Conformance: what mappings allow, seen through page faults (SPEC.md §11.4, §12.4).
//! Sub-cases: `readonly` (a write to a read-only mapping is #PF PRESENT|WRITE at that
//! address; PROTECT to writable lets it through), `unmapped` (after UNMAP a read is #PF
//! with error 0 and a write #PF WRITE, at that address), `no_execute` (a fetch from a NO_EXECUTE
//! mapping is #PF PRESENT|FETCH at the target; the same gfn mapped executable runs).
//! Every fault's address is also checked in `shared_info.vcpu_info[0].cr2`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::trap::{page_fault, vector};
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::memory::{self, Space};
use guest_rt::println;
use guest_rt::test::Reporter;
use support::{heap_page, peek_byte, poke_byte, probe_exec, probe_read, probe_write, Case, Fault};

guest_rt::entry!(map_fault);

const CASES: &[(&str, Case)] = &[("readonly", readonly), ("unmapped", unmapped), ("no_execute", no_execute)];

fn map_fault(start: &'static StartInfo) -> u32 {
    if let Err(errno) = support::install_fault_probe() {
        let mut reporter = Reporter::new();
        reporter.error(format_args!("installing the #PF handler: -{errno}"));
        reporter.finish();
    }
    support::run("map_fault", start, CASES)
}

const fn window(index: u64) -> u64 {
    0x0000_5000_0000_0000 + index * 0x1_0000_0000
}

/// Expects `outcome` to be a #PF at `address` with exactly `error_code`, and cr2 in the
/// shared-info page to say the same address.
fn expect_fault<T: core::fmt::Debug>(
    reporter: &mut Reporter,
    start: &StartInfo,
    outcome: Result<T, Fault>,
    address: u64,
    error_code: u64,
    what: &str,
) {
    match outcome {
        Ok(value) => reporter.fail(format_args!("{what}: no fault (got {value:?}), expected #PF at {address:#x}")),
        Err(fault) => {
            println!("{what}: #PF error {:#x} address {:#x} rip {:#x}", fault.error_code, fault.address, fault.rip);
            reporter.expect_eq(fault.vector, u64::from(vector::PAGE_FAULT), format_args!("{what}: vector"));
            reporter.expect_eq(fault.address, address, format_args!("{what}: fault address"));
            reporter.expect_eq(fault.error_code, error_code, format_args!("{what}: error code"));
            reporter.expect_eq(support::shared_cr2(start), address, format_args!("{what}: shared-info cr2"));
        }
    }
}

fn readonly(reporter: &mut Reporter, start: &'static StartInfo) {
    let (page, gfn) = heap_page(start);
    poke_byte(page + 5, 0x42);
    let address = window(0);
    reporter.expect_eq(memory::map_page(Space::INITIAL, address, gfn, map_flags::NO_EXECUTE), Ok(()), "map read-only");
    reporter.expect_eq(probe_read(address + 5), Ok(0x42), "read through the read-only mapping");
    expect_fault(
        reporter,
        start,
        probe_write(address + 5, 0x43),
        address + 5,
        page_fault::PRESENT | page_fault::WRITE,
        "write to read-only",
    );
    reporter.expect_eq(peek_byte(page + 5), 0x42, "the refused write changed nothing");
    let before = support::fault_count();
    reporter.expect_eq(
        guest_rt::hypercall::HYPERVISOR.protect_page(
            Space::INITIAL,
            address,
            map_flags::WRITABLE | map_flags::NO_EXECUTE,
        ),
        Ok(()),
        "protect to writable",
    );
    reporter.expect_eq(probe_write(address + 5, 0x43), Ok(()), "write after protect");
    reporter.expect_eq(support::fault_count(), before, "no fault after protect");
    reporter.expect_eq(peek_byte(page + 5), 0x43, "the write reached the gfn");
    reporter.expect_eq(
        guest_rt::hypercall::HYPERVISOR.protect_page(Space::INITIAL, address, map_flags::NO_EXECUTE),
        Ok(()),
        "protect back to read-only",
    );
    expect_fault(
        reporter,
        start,
        probe_write(address + PAGE_SIZE - 1, 1),
        address + PAGE_SIZE - 1,
        page_fault::PRESENT | page_fault::WRITE,
        "write after protect back",
    );
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, address), Ok(()), "unmap");
}

fn unmapped(reporter: &mut Reporter, start: &'static StartInfo) {
    let (page, gfn) = heap_page(start);
    let address = window(1);
    reporter.expect_eq(memory::map_page(Space::INITIAL, address, gfn, map_flags::WRITABLE), Ok(()), "map");
    reporter.expect_eq(probe_write(address + 0x10, 7), Ok(()), "write while mapped");
    reporter.expect_eq(peek_byte(page + 0x10), 7, "the write reached the gfn");
    reporter.expect_eq(memory::unmap_page(Space::INITIAL, address), Ok(()), "unmap");
    reporter.expect_errno(memory::query(Space::INITIAL, address), Errno::ENOENT, "query after unmap");
    expect_fault(reporter, start, probe_read(address + 0x10), address + 0x10, 0, "read after unmap");
    expect_fault(
        reporter,
        start,
        probe_write(address + 0x18, 1),
        address + 0x18,
        page_fault::WRITE,
        "write after unmap",
    );
    // An address that was never mapped, in a page-table range never populated.
    let never = window(2) + 0x3000;
    expect_fault(reporter, start, probe_read(never), never, 0, "read of a never-mapped address");
    reporter.expect_eq(peek_byte(page + 0x10), 7, "the gfn keeps its data after the unmap");
}

fn no_execute(reporter: &mut Reporter, start: &'static StartInfo) {
    const RET: u8 = 0xc3;
    let (page, gfn) = heap_page(start);
    poke_byte(page, RET);
    poke_byte(page + 0x40, RET);
    let executable = window(3);
    let not_executable = window(3) + 0x10 * PAGE_SIZE;
    reporter.expect_eq(memory::map_page(Space::INITIAL, executable, gfn, 0), Ok(()), "map executable (read-only)");
    reporter.expect_eq(
        memory::map_page(Space::INITIAL, not_executable, gfn, map_flags::NO_EXECUTE),
        Ok(()),
        "map no-execute",
    );
    reporter.expect_eq(probe_exec(executable + 0x40), Ok(()), "call a ret in the executable mapping");
    expect_fault(
        reporter,
        start,
        probe_exec(not_executable + 0x40),
        not_executable + 0x40,
        page_fault::PRESENT | page_fault::FETCH,
        "call into the no-execute mapping",
    );
    let unmapped = window(3) + 0x20 * PAGE_SIZE;
    expect_fault(reporter, start, probe_exec(unmapped), unmapped, page_fault::FETCH, "call into an unmapped address");
    let mut undo = memory::MapBatch::new();
    undo.unmap(executable).unmap(not_executable);
    reporter.expect_eq(undo.apply(Space::INITIAL).result, Ok(()), "unmap");
}
