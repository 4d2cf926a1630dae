//! Time: Instant is monotonic, sleeps last at least what was asked (and not much longer,
//! with loose bounds for slow emulation), an absolute clock_nanosleep, the wall clock
//! advancing with the monotonic one, and a sleeper waking on time beside a process that
//! never yields (preemption).

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};
use crate::process::{errno_name, fork, wait_for, Fork, Status};

/// How much later than asked a sleep may end: generous, for emulation without
/// acceleration on a loaded host.
const SLACK: Duration = Duration::from_millis(1500);

fn within(what: &str, measured: Duration, asked: Duration) -> Outcome {
    ensure(measured >= asked && measured <= asked + SLACK, || {
        format!("{what}: took {measured:?}, asked {asked:?} (allowed up to {:?})", asked + SLACK)
    })
}

fn instant_is_monotonic() -> Outcome {
    let mut previous = Instant::now();
    for _ in 0..10_000 {
        let now = Instant::now();
        ensure(now >= previous, || format!("Instant went back from {previous:?} to {now:?}"))?;
        previous = now;
    }
    Ok(())
}

fn sleeps_last_what_was_asked() -> Outcome {
    for milliseconds in [1, 20, 150] {
        let asked = Duration::from_millis(milliseconds);
        let start = Instant::now();
        std::thread::sleep(asked);
        within("thread::sleep", start.elapsed(), asked)?;
    }
    let start = Instant::now();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(10));
    }
    within("ten 10 ms sleeps", start.elapsed(), Duration::from_millis(100))
}

fn monotonic_now() -> Result<libc::timespec, String> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the kernel to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } == -1 {
        return Err(format!("clock_gettime: {}", errno_name(crate::process::errno())));
    }
    Ok(now)
}

fn nanoseconds(time: &libc::timespec) -> i128 {
    i128::from(time.tv_sec) * 1_000_000_000 + i128::from(time.tv_nsec)
}

fn absolute_sleep() -> Outcome {
    let start = monotonic_now()?;
    let target_ns = nanoseconds(&start) + 80_000_000;
    let target = libc::timespec { tv_sec: (target_ns / 1_000_000_000) as _, tv_nsec: (target_ns % 1_000_000_000) as _ };
    // SAFETY: a valid request, no remainder asked for.
    let result =
        unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &target, std::ptr::null_mut()) };
    expect_eq("clock_nanosleep's result", result, 0)?;
    let woke = nanoseconds(&monotonic_now()?);
    ensure(woke >= target_ns, || format!("woke {} ns before the target", target_ns - woke))?;
    within("absolute sleep", Duration::from_nanos((woke - nanoseconds(&start)) as u64), Duration::from_millis(80))
}

fn wall_clock_advances_with_the_monotonic_clock() -> Outcome {
    let (wall, steady) = (SystemTime::now(), Instant::now());
    std::thread::sleep(Duration::from_millis(200));
    let wall_elapsed = wall.elapsed().map_err(|error| format!("the wall clock went back: {error}"))?;
    let steady_elapsed = steady.elapsed();
    let difference = wall_elapsed.abs_diff(steady_elapsed);
    ensure(difference <= Duration::from_millis(100), || {
        format!("over one sleep the wall clock moved {wall_elapsed:?}, the monotonic clock {steady_elapsed:?}")
    })
}

fn a_busy_process_cannot_starve_a_sleeper() -> Outcome {
    let spinner = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => loop {
            std::hint::spin_loop();
        },
        Ok(Fork::Parent(pid)) => pid,
    };
    let asked = Duration::from_millis(100);
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let start = Instant::now();
        std::thread::sleep(asked);
        worst = worst.max(start.elapsed());
    }
    // SAFETY: kill takes no memory arguments; the spinner is this process's child.
    unsafe { libc::kill(spinner, libc::SIGKILL) };
    expect_eq("the spinner", wait_for(spinner)?, Status::Signaled(libc::SIGKILL))?;
    within("the longest of five 100 ms sleeps beside a spinning process", worst, asked)
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("time");
    suite.case("instant_monotonic", instant_is_monotonic);
    suite.case("sleep_durations", sleeps_last_what_was_asked);
    suite.case("clock_nanosleep_absolute", absolute_sleep);
    suite.case("wall_clock_advances", wall_clock_advances_with_the_monotonic_clock);
    suite.case("preemption", a_busy_process_cannot_starve_a_sleeper);
    suite.finish()
}
