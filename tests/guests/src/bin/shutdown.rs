//! Conformance: `sched_op(SHUTDOWN, reason, code)` and bad `sched_op` arguments.
//!
//! Arguments: `poweroff <code>` | `crash <code>` (print SUCCESS, then shut down that way:
//! the runner checks the hypervisor's exit line) | `badreason` | `badcode` | `badcmd`
//! (each bad call must return -EINVAL; then SUCCESS and poweroff 0).
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::{parse_number, words};
use guest_rt::abi::hypercall::{shutdown_reason, SHUTDOWN_CODE_MAX};
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::{Reporter, ShowResult};

guest_rt::entry!(shutdown);

fn shutdown(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let mut arguments = words(start);
    let mode = arguments.next().unwrap_or("");
    let code = arguments.next().map(parse_number);
    match (mode, code) {
        ("poweroff" | "crash", Some(Some(code))) if code <= SHUTDOWN_CODE_MAX => {
            let reason = if mode == "poweroff" { shutdown_reason::POWEROFF } else { shutdown_reason::CRASH };
            println!("shutdown: {mode} with code {code}");
            println!("Test result: SUCCESS");
            let result = HYPERVISOR.shutdown(reason, code);
            // Only reached if the hypervisor refused a valid shutdown.
            println!("FAIL: shutdown({reason}, {code}) returned {}", ShowResult(&result));
            HYPERVISOR.crash(u32::MAX)
        }
        ("poweroff" | "crash", _) => reporter.error(format_args!("'{mode}' needs a code 0..={SHUTDOWN_CODE_MAX}")),
        ("badreason", None) => {
            for reason in [1, 2, 5, u64::MAX] {
                shutdown_expecting_einval(&mut reporter, reason, 0);
            }
        }
        ("badcode", None) => {
            for reason in [shutdown_reason::POWEROFF, shutdown_reason::CRASH] {
                shutdown_expecting_einval(&mut reporter, reason, SHUTDOWN_CODE_MAX + 1);
                shutdown_expecting_einval(&mut reporter, reason, u64::MAX);
            }
        }
        ("badcmd", None) => {
            // BLOCK (1) sleeps; POLL (3) is given 129 ports, one over its limit.
            for (command, count) in [(3, 129), (4, 0), (99, 0), (u64::MAX, 0)] {
                println!("shutdown: about to call sched_op({command}, 0, {count})");
                // SAFETY: the pointer argument is 0: a sub-command that took a pointer
                // would see null and refuse it.
                let result = unsafe { HYPERVISOR.sched_op(command, 0, count) };
                println!("shutdown: sched_op({command}) = {}", ShowResult(&result));
                reporter.expect_errno(result, Errno::EINVAL, format_args!("sched_op sub-command {command}"));
            }
        }
        _ => reporter.error(format_args!(
            "unknown arguments '{}': expected poweroff <code>, crash <code>, badreason, badcode or badcmd",
            start.cmd_line()
        )),
    }
    reporter.finish()
}

/// Announces and makes a shutdown call that must be refused (if the hypervisor accepts
/// it, the announcement is the last line the domain printed).
fn shutdown_expecting_einval(reporter: &mut Reporter, reason: u64, code: u64) {
    println!("shutdown: about to call shutdown(reason {reason:#x}, code {code:#x})");
    let result = HYPERVISOR.shutdown(reason, code);
    println!("shutdown: shutdown(reason {reason:#x}, code {code:#x}) = {}", ShowResult(&result));
    reporter.expect_errno(result, Errno::EINVAL, format_args!("shutdown(reason {reason:#x}, code {code:#x})"));
}
