//! Conformance: demand paging through the #PF bounce (SPEC.md §11.4, §12.4). A loop
//! touches pages of an unmapped window; the #PF handler maps a gfn at the faulting page
//! and resumes the faulting write, which then completes; every 64 pages one batch unmaps
//! them all. Checks: exactly one fault per touch (the argument, default 100 000), every
//! write landed, nothing left mapped, CURRENT_RESERVATION unchanged. The runner checks
//! that the hypervisor got every frame back (`frames free A at start, B at end`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use conformance_guests::parse_number;
use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::{map_flags, MapEntry};
use guest_rt::abi::trap::{page_fault, vector};
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::memory::{self, unmap_entry, Space};
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};
use guest_rt::trap::{self, TrapAction, TrapContext};
use support::{heap_page, peek, poke};

guest_rt::entry!(fault_loop);

/// Faults the loop asks for unless the argument says otherwise.
const DEFAULT_FAULTS: u64 = 100_000;
/// Pages touched before one batch unmaps them.
const PAGES: u64 = 64;
const WINDOW: u64 = 0x0000_2000_0000_0000;

static GFN: AtomicU64 = AtomicU64::new(u64::MAX);
static FAULTS: AtomicU64 = AtomicU64::new(0);
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Maps the gfn at the faulting page of the window and resumes the faulting write.
fn demand_map(context: &mut TrapContext) -> TrapAction {
    let address = context.fault_address();
    let expected_error = page_fault::WRITE;
    if !(WINDOW..WINDOW + PAGES * PAGE_SIZE).contains(&address) || context.error_code() != expected_error {
        UNEXPECTED.fetch_add(1, SeqCst);
        println!("fault_loop: unexpected {}", trap::ShowFrame(&context.frame));
        guest_rt::hypercall::crash(5);
    }
    let page = address & !(PAGE_SIZE - 1);
    if let Err(errno) =
        memory::map_page(Space::INITIAL, page, GFN.load(SeqCst), map_flags::WRITABLE | map_flags::NO_EXECUTE)
    {
        println!("fault_loop: map {page:#x} in the #PF handler: -{errno}");
        guest_rt::hypercall::crash(6);
    }
    FAULTS.fetch_add(1, SeqCst);
    TrapAction::Resume
}

fn fault_loop(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let total =
        start.cmd_line().split_ascii_whitespace().next().and_then(parse_number).unwrap_or(DEFAULT_FAULTS).max(1);
    let before = memory::current_reservation();
    let (page, gfn) = heap_page(start);
    GFN.store(gfn, SeqCst);
    if let Err(errno) = trap::install().and_then(|()| trap::set_handler(vector::PAGE_FAULT, demand_map)) {
        reporter.error(format_args!("installing the #PF handler: -{errno}"));
        reporter.finish();
    }
    let unmaps: [MapEntry; PAGES as usize] =
        core::array::from_fn(|index| unmap_entry(WINDOW + index as u64 * PAGE_SIZE, 0));
    println!("fault_loop: {total} faults in a window of {PAGES} pages, gfn {gfn}");
    let begin = guest_rt::tsc::rdtsc_serialized();
    let mut wrong = 0u64;
    let mut touched_in_batch = 0usize;
    for index in 0..total {
        let slot = index % PAGES;
        let address = WINDOW + slot * PAGE_SIZE + (index % 8) * 8 * 64;
        poke(address, index);
        if peek(address) != index {
            wrong += 1;
        }
        touched_in_batch += 1;
        if slot == PAGES - 1 || index == total - 1 {
            let batch = memory::mmu_update(Space::INITIAL, &unmaps[..touched_in_batch]);
            if batch.result.is_err() || batch.done != touched_in_batch {
                reporter.fail(format_args!("unmap after fault {index}: done {} result {:?}", batch.done, batch.result));
                break;
            }
            touched_in_batch = 0;
        }
        if (index + 1) % 10_000 == 0 {
            println!("fault_loop: {} faults", index + 1);
        }
    }
    let cycles = guest_rt::tsc::rdtsc_serialized().wrapping_sub(begin);
    let faults = FAULTS.load(SeqCst);
    println!("fault_loop: {faults} faults handled in {cycles} TSC cycles ({} per fault)", cycles / faults.max(1));
    reporter.expect_eq(faults, total, "faults handled = pages touched");
    reporter.expect_eq(wrong, 0, "writes not read back after their fault");
    reporter.expect_eq(UNEXPECTED.load(SeqCst), 0, "unexpected faults");
    reporter.expect_eq(peek(page + ((total - 1) % 8) * 8 * 64), total - 1, "the gfn holds the last write");
    for slot in [0, PAGES - 1] {
        let query = memory::query(Space::INITIAL, WINDOW + slot * PAGE_SIZE);
        reporter.expect_errno(query, Errno::ENOENT, format_args!("window page {slot} unmapped at the end"));
    }
    let after = memory::current_reservation();
    println!("fault_loop: CURRENT_RESERVATION {} before, {} after", ShowResult(&before), ShowResult(&after));
    reporter.expect_eq(after, before, "CURRENT_RESERVATION unchanged");
    reporter.finish()
}
