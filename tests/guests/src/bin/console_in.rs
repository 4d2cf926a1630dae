//! Conformance: console input (SPEC.md §21). Two domains, `peer=<id>`, each with
//! `expect=<word>`. Each binds VIRQ_CONSOLE (port 1), then the two meet over an event
//! channel (rendezvous port 2) and d2 prints `console_in: ready`, at which point the runner
//! types `<word of d1>\n`, the focus escape Ctrl-] `2`, then `<word of d2>\n`. Each domain
//! reads with `console_io(READ)` until it has a whole line and checks it is exactly its
//! own word, raised by VIRQ_CONSOLE; then the two meet again and each checks that no
//! other byte arrived (so input went to the focused domain only).
#![cfg_attr(target_os = "none", no_std, no_main)]

mod events_support;

use conformance_guests::argument;
use conformance_guests::words;
use events_support::{connect, count, count_on, wait_count};
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
    // Meet the peer: once both are here, both have bound VIRQ_CONSOLE and input may come.
    let port = match connect(start, peer, 2) {
        Ok(port) => port,
        Err(why) => {
            reporter.fail(why);
            reporter.finish()
        }
    };
    count_on(port);
    events::irq_enable();
    if u64::from(start.domain_id) > peer {
        println!("console_in: ready");
    }
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

    // Meet again, then nothing more may have arrived here.
    reporter.expect_ok(port.send(), "done");
    reporter.check(wait_count(port, 1, watchdog), "the peer's done");
    let mut extra = [0u8; 64];
    reporter.expect_eq(
        HYPERVISOR.console_read(&mut extra),
        Ok(0),
        "bytes after the line (input for the other domain?)",
    );
    let _ = time::cancel_timer();
    reporter.finish()
}
