//! Conformance: `version(cmd)` returns the ABI version and feature bits, and refuses
//! unknown sub-commands with -EINVAL.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::hypercall::{features, version_cmd};
use guest_rt::abi::{Errno, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};

guest_rt::entry!(version);

fn version(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();

    let packed = HYPERVISOR.version_op(version_cmd::ABI_VERSION);
    match packed {
        Ok(value) => println!(
            "version: version(ABI_VERSION) = {value:#x}; guest built against {ABI_VERSION} ({:#x})",
            ABI_VERSION.packed()
        ),
        Err(errno) => println!("version: version(ABI_VERSION) = -{errno}"),
    }
    reporter.expect_eq(packed, Ok(u64::from(ABI_VERSION.packed())), "version(ABI_VERSION) is the packed ABI version");
    reporter.expect_eq(HYPERVISOR.version(), Ok(ABI_VERSION), "version() wrapper");
    reporter.expect_eq(start.abi_version, ABI_VERSION.packed(), "start info abi_version matches");

    if let Some(bits) = reporter.expect_ok(HYPERVISOR.features(), "version(FEATURES)") {
        println!("version: features {bits:#x} (known {:#x}, unknown {:#x})", features::ALL, bits & !features::ALL);
        let required = features::CONSOLE_WRITE | features::SCHED_YIELD;
        reporter.check(bits & required == required, format_args!("features {bits:#x} lack CONSOLE_WRITE|SCHED_YIELD"));
        reporter.check(bits >> 63 == 0, format_args!("features {bits:#x} have bit 63 set"));
    }

    for command in [2, 3, 0x100, 1 << 32, u64::MAX] {
        let result = HYPERVISOR.version_op(command);
        println!("version: version({command:#x}) = {}", ShowResult(&result));
        reporter.expect_errno(result, Errno::EINVAL, format_args!("version({command:#x})"));
    }

    reporter.finish()
}
