//! Measurement helper (not a conformance case): where the time of one demand-paging
//! fault goes on this host. Prints TSC cycles per operation for a null hypercall, a
//! map + unmap pair, a map + touch + unmap, and a fault whose handler only skips the
//! faulting instruction (no mapping).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[path = "memory_support/mod.rs"]
mod support;

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::StartInfo;
use guest_rt::memory::{self, Space};
use guest_rt::println;
use guest_rt::tsc::rdtsc_serialized;
use support::{heap_page, poke};

guest_rt::entry!(cost);

const WINDOW: u64 = 0x0000_2100_0000_0000;
const ROUNDS: u64 = 200;

fn measure(what: &str, mut work: impl FnMut(u64)) {
    let begin = rdtsc_serialized();
    for round in 0..ROUNDS {
        work(round);
    }
    let cycles = rdtsc_serialized().wrapping_sub(begin);
    println!("cost: {what}: {} cycles each", cycles / ROUNDS);
}

fn cost(start: &'static StartInfo) -> u32 {
    let (_, gfn) = heap_page(start);
    let rw = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    measure("null hypercall", |_| {
        let _ = guest_rt::hypercall::version();
    });
    measure("map + unmap (same page)", |_| {
        memory::map_page(Space::INITIAL, WINDOW, gfn, rw).unwrap();
        memory::unmap_page(Space::INITIAL, WINDOW).unwrap();
    });
    measure("map + write + unmap (same page)", |_| {
        memory::map_page(Space::INITIAL, WINDOW, gfn, rw).unwrap();
        poke(WINDOW, 1);
        memory::unmap_page(Space::INITIAL, WINDOW).unwrap();
    });
    measure("map + write + unmap (64 pages round robin)", |round| {
        let address = WINDOW + (round % 64) * PAGE_SIZE;
        memory::map_page(Space::INITIAL, address, gfn, rw).unwrap();
        poke(address, 1);
        memory::unmap_page(Space::INITIAL, address).unwrap();
    });
    support::install_fault_probe().unwrap();
    measure("#PF bounce + iret (probe read of an unmapped page)", |_| {
        let _ = support::probe_read(WINDOW + 0x1000_0000);
    });
    0
}
