//! Conformance: every number without a hypercall, inside the table or far past it,
//! returns -ENOSYS, and the domain can still make valid hypercalls afterwards.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::raw_result;
use guest_rt::abi::{Errno, Hypercall, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};

guest_rt::entry!(unknown_hypercall);

const NUMBERS: [u64; 10] = [2, 5, 16, 22, 63, Hypercall::TABLE_SIZE, 1000, 1 << 32, 1 << 63, u64::MAX];

fn unknown_hypercall(_start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    for number in NUMBERS {
        if let Some(name) = Hypercall(number).name() {
            reporter.error(format_args!("{number} is hypercall {name} in this ABI; the test list is stale"));
            continue;
        }
        // Arguments a real hypercall would take as pointers and counts: none may matter.
        let arguments = [0, 1, 0x1000, u64::MAX, 0xffff_8000_0000_0000, 42];
        // SAFETY: no hypercall has this number, so nothing is read or written.
        let result = unsafe { raw_result(number, arguments) };
        println!("unknown_hypercall: hypercall {number:#x} = {}", ShowResult(&result));
        reporter.expect_errno(result, Errno::ENOSYS, format_args!("hypercall {number:#x}"));
    }
    reporter.expect_eq(HYPERVISOR.version(), Ok(ABI_VERSION), "version() still works afterwards");
    reporter.finish()
}
