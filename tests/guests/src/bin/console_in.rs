//! Conformance: console input (SPEC.md §6.2, §19.4). Two domains, `peer=<id>`, each with
//! `expect=<word>`: the runner feeds QEMU's serial input `<word of d1>\n`, then the focus
//! escape Ctrl-] `2`, then `<word of d2>\n`. Each domain binds VIRQ_CONSOLE, reads with
//! `console_io(READ)` until it has a whole line, and checks it is exactly its own word;
//! then the two meet over an event channel and each checks that no other byte arrived
//! (so input went to the focused domain only).
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::words;
use events_support::{argument, connect, count, count_on, wait_count};
use guest_rt::abi::event::virq;
use guest_rt::abi::StartInfo;
use guest_rt::events::{self, Port};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;
use guest_rt::time;

guest_rt::entry!(console_in);

const SECOND: u64 = 1_000_000_000;

fn expected_word(start: &StartInfo) -> Option<&str> {
    words(start).find_map(|word| word.strip_prefix("expect="))
}

fn console_in(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    if !events_support::init(&mut reporter) {
        reporter.finish()
    }
    let (Some(peer), Some(expected)) = (argument(start, "peer"), expected_word(start)) else {
        reporter.error("need peer=<id> expect=<word>");
        reporter.finish()
    };
    let watchdog = time::now() + 120 * SECOND;
    reporter.expect_ok(time::set_timer(watchdog), "watchdog timer");
    let Some(console) = reporter.expect_ok(Port::bind_virq(virq::CONSOLE), "bind VIRQ_CONSOLE") else {
        reporter.finish()
    };
    count_on(console);
    events::irq_enable();
    let mut line = [0u8; 256];
    let mut length = 0usize;
    let mut reads = 0u32;
    let waited = events::wait_until(|| {
        while length < line.len() {
            match HYPERVISOR.console_read(&mut line[length..]) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    length += count;
                    reads += 1;
                }
            }
        }
        line[..length].contains(&b'\n') || time::now() >= watchdog
    });
    reporter.expect_ok(waited, "wait for input");
    let text = core::str::from_utf8(&line[..length]).unwrap_or("<not UTF-8>");
    println!("console_in: received {:?} in {reads} reads, {} VIRQ_CONSOLE events", text, count(console));
    reporter.expect_eq(text.trim_end_matches('\n'), expected, "the line this domain received");
    reporter.check(text.ends_with('\n'), "the line is complete");
    reporter.check(count(console) >= 1, "VIRQ_CONSOLE was raised");

    // Meet the peer, then nothing more may have arrived here.
    let port = match connect(start, peer, 1) {
        Ok(port) => port,
        Err(why) => {
            reporter.fail(why);
            reporter.finish()
        }
    };
    count_on(port);
    reporter.expect_ok(port.send(), "done");
    reporter.check(wait_count(port, 1, watchdog), "the peer's done");
    let mut extra = [0u8; 64];
    reporter.expect_eq(HYPERVISOR.console_read(&mut extra), Ok(0), "bytes after the line (input for the other domain?)");
    let _ = time::cancel_timer();
    // The leader closes last so the peer's done cannot find a closed port.
    reporter.expect_ok(HYPERVISOR.yield_now(), "yield");
    reporter.finish()
}
