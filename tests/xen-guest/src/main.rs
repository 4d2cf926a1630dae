//! The hypervisor rows of `cargo xtask bench`, measured on Xen: a 64-bit PV guest booted as
//! dom0 by Debian's Xen under the same QEMU. Same method as tests/guests' bench_support
//! (warm-up of a tenth, each iteration between two `lfence; rdtsc`, nearest-rank median
//! and p99), same `bench <name> median <c> p99 <c> iterations <n>` lines, on Xen's
//! console; each row does the work of the ringfence guest of the same name.
#![no_std]
#![no_main]

mod events;
mod exception;
mod harness;
mod loopback;
mod map_batch;
mod page_fault;
mod paging;
mod timer;
mod traps;
mod xen;

use core::fmt::Write;

/// Called by the entry stub with Xen's start_info.
#[no_mangle]
extern "C" fn xen_main(start: *const xen::StartInfo) -> ! {
    let _ = writeln!(xen::Console, "xen-guest: the ringfence bench rows on Xen");
    // SAFETY: Xen hands a PV guest a mapped start_info page in RSI.
    let start = unsafe { &*start };
    if !harness::configure(&start.command_line) {
        let _ = writeln!(xen::Console, "xen-guest: error: iterations=<n> must be 1..={}", harness::MAX_ITERATIONS);
    }
    let shared = xen::SharedInfo::map(start.shared_info);
    let time = shared.time();
    let paging = paging::Paging::new(start);

    let null = harness::bench(|| {
        core::hint::black_box(xen::version());
    });
    harness::report("null_hypercall", &null);

    let first = time.now();
    let now = harness::bench(|| {
        core::hint::black_box(time.now());
    });
    if time.now() <= first {
        let _ = writeln!(xen::Console, "xen-guest: error: system time did not advance");
    }
    harness::report("time_now", &now);
    let floor = harness::bench(|| {});
    let bare = harness::bench(|| {
        core::hint::black_box(harness::rdtsc_serialized());
    });
    let _ = writeln!(
        xen::Console,
        "bench: time_now harness floor median {} min {}; with one bare TSC read median {} min {}",
        floor.median,
        floor.min,
        bare.median,
        bare.min
    );

    traps::install();
    exception::run();
    page_fault::run(paging);
    map_batch::run(paging);
    loopback::run(shared);
    // Last: it turns event upcalls on.
    timer::run(shared);
    let _ = writeln!(xen::Console, "xen-guest: done");
    xen::finish()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(xen::Console, "xen-guest: panic: {info}");
    xen::finish()
}
