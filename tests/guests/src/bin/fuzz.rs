//! Conformance: 100 000 hypercalls with pseudo-random numbers and edge-value arguments
//! (seeded xorshift; argument `seed=<n>`, default 1). The hypervisor must answer every one
//! with a value or an errno of the ABI and keep working. Event-channel and timer calls
//! (integers only) are fuzzed too; the exit summary must show every port freed. Never issues a valid shutdown;
//! console writes only name buffers this guest owns (a few bytes) or garbage addresses.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::{parse_number, raw_result, words, Landmarks, XorShift};
use guest_rt::abi::event::DOMAIN_SELF;
use guest_rt::abi::hypercall::{console_cmd, sched_cmd, shutdown_reason, version_cmd, SHUTDOWN_CODE_MAX};
use guest_rt::abi::layout::HYPERVISOR_START;
use guest_rt::abi::{Errno, Hypercall, StartInfo, ABI_VERSION};
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(fuzz);

const CALLS: u32 = 100_000;
/// Console writes from a real buffer that may print something; the rest use count 0.
const PRINTING_WRITES: u32 = 16;

const FUZZ_TEXT: &[u8] = b"fuzz:console\n";

#[derive(Default)]
struct Counts {
    ok: u32,
    einval: u32,
    efault: u32,
    enosys: u32,
    event_errors: u32,
    other: u32,
    skipped: u32,
}

fn fuzz(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    let seed = words(start).find_map(|word| word.strip_prefix("seed=")).and_then(parse_number).unwrap_or(1);
    println!("fuzz: {CALLS} hypercalls, seed {seed}");
    let mut random = XorShift::new(seed);
    let landmarks = Landmarks::of(start);
    let mut counts = Counts::default();
    let mut printing_writes = 0;
    let stack_buffer = [0x2eu8; 64];

    for _ in 0..CALLS {
        let number = if random.below(16) == 0 {
            let huge = [64, 65, 255, 1 << 16, 1 << 32, 1 << 63, u64::MAX, random.next_u64()];
            random.pick(&huge)
        } else {
            random.below(80)
        };
        let mut arguments = [0u64; 6];
        for argument in arguments.iter_mut() {
            *argument = edge_value(&mut random, &landmarks, &stack_buffer);
        }
        let call = Hypercall(number);
        if call == Hypercall::SCHED_OP {
            if random.below(2) == 0 {
                arguments[0] = random.pick(&[sched_cmd::YIELD, sched_cmd::SHUTDOWN, 4, 99]);
            }
            // BLOCK and POLL may sleep for good (nothing here sends events); the events
            // cases cover them.
            if arguments[0] == sched_cmd::BLOCK || arguments[0] == sched_cmd::POLL {
                counts.skipped += 1;
                continue;
            }
            let valid_reason = arguments[1] == shutdown_reason::POWEROFF || arguments[1] == shutdown_reason::CRASH;
            if arguments[0] == sched_cmd::SHUTDOWN && valid_reason && arguments[2] <= SHUTDOWN_CODE_MAX {
                counts.skipped += 1;
                continue;
            }
        } else if call == Hypercall::CONSOLE_IO {
            if random.below(2) == 0 {
                arguments[0] = console_cmd::WRITE;
            }
            // Pointer: our text or garbage that is surely unmapped, whatever the
            // sub-command (a later ABI's console read must not scribble on our stack).
            let offset = random.below(1 << 30);
            let pointers = [
                FUZZ_TEXT.as_ptr() as u64,
                0x1000,
                HYPERVISOR_START + offset,
                0x0000_8000_0000_0000 + offset,
                landmarks.guard_above_stack + offset % 0x1000,
                u64::MAX - offset % 64,
            ];
            arguments[2] = random.pick(&pointers);
            if arguments[0] == console_cmd::WRITE
                && arguments[2] == FUZZ_TEXT.as_ptr() as u64
                && arguments[1] <= console_cmd::WRITE_MAX
            {
                // Our text, so the count must stay inside it; only a few writes print.
                arguments[1] = if printing_writes < PRINTING_WRITES { FUZZ_TEXT.len() as u64 } else { 0 };
                printing_writes += 1;
            }
        } else if call == Hypercall::EVENT_CHANNEL_OP {
            // Integers only (sub-command, domain, port, virq): all of it is fair game.
            // Domain 1 is this one, so mostly pick small sub-commands and ports.
            if random.below(2) == 0 {
                arguments[0] = random.below(10);
                let (domain, port) = (random.below(1100), random.below(1100));
                arguments[1] = random.pick(&[0, 1, 2, DOMAIN_SELF, domain, u64::MAX]);
                arguments[2] = random.pick(&[0, 1, 2, 3, port, u64::MAX]);
            }
        } else if call == Hypercall::SET_TIMER_OP {
            // An integer deadline; when it fires with VIRQ_TIMER unbound nothing is raised.
        } else if call.name().is_some() {
            // A hypercall this guest does not know the semantics of (a newer ABI): its
            // pointers might be written through, so leave it alone.
            if call != Hypercall::VERSION {
                counts.skipped += 1;
                continue;
            }
        }

        // SAFETY: version and unknown numbers touch no memory; sched_op takes no pointers
        // (and shutdowns that could succeed were skipped above); console_io only reads, and
        // a write names our own text or an unmapped address.
        let result = unsafe { raw_result(number, arguments) };
        match result {
            Ok(_) => counts.ok += 1,
            Err(Errno::EINVAL) => counts.einval += 1,
            Err(Errno::EFAULT) => counts.efault += 1,
            Err(Errno::ENOSYS) => counts.enosys += 1,
            // Event channels also answer with these (SPEC.md §17); nothing else does.
            Err(Errno::ESRCH | Errno::EPERM | Errno::ENOSPC | Errno::EEXIST) if call == Hypercall::EVENT_CHANNEL_OP => {
                counts.event_errors += 1
            }
            Err(errno) => {
                counts.other += 1;
                if counts.other <= 8 {
                    reporter.fail(format_args!("hypercall {number:#x} {arguments:x?} returned unexpected -{errno}"));
                }
            }
        }
        if call.name().is_none() && result != Err(Errno::ENOSYS) {
            reporter.fail(format_args!("undefined hypercall {number:#x} returned {result:?}, expected -ENOSYS"));
        }
        if call == Hypercall::VERSION && arguments[0] == version_cmd::ABI_VERSION {
            reporter.expect_eq(result, Ok(u64::from(ABI_VERSION.packed())), "fuzzed version(ABI_VERSION)");
        }
    }

    println!(
        "fuzz: counts ok {} EINVAL {} EFAULT {} ENOSYS {} event-channel errors {} other {} skipped {}",
        counts.ok, counts.einval, counts.efault, counts.enosys, counts.event_errors, counts.other, counts.skipped
    );
    reporter.expect_eq(HYPERVISOR.version(), Ok(ABI_VERSION), "version() after fuzzing");
    reporter.expect_eq(counts.other, 0, "no errno outside EINVAL/EFAULT/ENOSYS");
    reporter.finish()
}

/// One argument: a mix of edge values, addresses in every interesting range, and
/// pointers into this guest's own stack.
fn edge_value(random: &mut XorShift, landmarks: &Landmarks, stack_buffer: &[u8; 64]) -> u64 {
    match random.below(10) {
        0 => 0,
        1 => random.below(16),
        2 => u64::MAX,
        3 => HYPERVISOR_START + random.below(1 << 39),
        4 => 0x0000_8000_0000_0000 + random.below(1 << 46),
        5 => stack_buffer.as_ptr() as u64 + random.below(stack_buffer.len() as u64),
        6 => landmarks.guard_above_stack + random.below(0x1000),
        7 => random.pick(&[1 << 12, 4096, 4097, u64::from(u32::MAX), u64::from(u32::MAX) + 1, i64::MAX as u64]),
        _ => random.next_u64(),
    }
}
