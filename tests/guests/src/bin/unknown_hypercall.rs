//! Conformance: every number without a hypercall (each number below `TABLE_SIZE` that
//! `Hypercall::ALL` does not list, and some far past the table) returns -ENOSYS, and the
//! domain can still make valid hypercalls afterwards.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::raw_result;
use guest_rt::abi::{Errno, Hypercall, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(unknown_hypercall);

/// Numbers past the table: none is a hypercall (SPEC.md §5.3).
const PAST_THE_TABLE: [u64; 5] = [Hypercall::TABLE_SIZE, 1000, 1 << 32, 1 << 63, u64::MAX];

fn try_unknown(reporter: &mut Reporter, number: u64) {
    // Arguments a real hypercall would take as pointers and counts: none may matter.
    let arguments = [0, 1, 0x1000, u64::MAX, 0xffff_8000_0000_0000, 42];
    // SAFETY: no hypercall has this number, so nothing is read or written.
    let result = unsafe { raw_result(number, arguments) };
    reporter.expect_errno(result, Errno::ENOSYS, format_args!("hypercall {number:#x}"));
}

fn unknown_hypercall(_start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    // Every number of the table that `Hypercall::ALL` does not list, then the ones past it.
    let unlisted = (0..Hypercall::TABLE_SIZE).filter(|&number| Hypercall(number).name().is_none());
    let mut below_the_table = 0;
    for number in unlisted {
        try_unknown(&mut reporter, number);
        below_the_table += 1;
    }
    for number in PAST_THE_TABLE {
        try_unknown(&mut reporter, number);
    }
    println!(
        "unknown_hypercall: {below_the_table} numbers below {} and {} past the table tried",
        Hypercall::TABLE_SIZE,
        PAST_THE_TABLE.len()
    );
    reporter.expect_eq(HYPERVISOR.version(), Ok(ABI_VERSION), "version() still works afterwards");
    reporter.finish()
}
