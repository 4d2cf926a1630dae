//! Time system calls: the clocks, sleeping, and CPU-time accounting. Monotonic clocks
//! are the machine's clock since boot; `CLOCK_REALTIME` adds the wallclock at boot.

use guest_kernel_core::linux::layouts::Timespec;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::user_memory::{read_value, write_value};
use linux_raw_sys::general as uapi;

use super::{error, Call, Flow};
use crate::arch::machine::Machine;
use crate::kernel::process::Sleep;
use crate::kernel::Kernel;

/// Clock ticks per second that `times` counts in (`AT_CLKTCK`).
const TICKS: u64 = guest_kernel_core::files::CLOCK_TICKS_PER_SECOND;
const NS_PER_TICK: u64 = 1_000_000_000 / TICKS;

/// The time on `clock` now, in ns.
fn read_clock<M: Machine>(kernel: &Kernel<M>, pid: u32, clock: u64) -> Result<u64, Errno> {
    let now = kernel.machine.now_ns();
    match u32::try_from(clock).map_err(|_| Errno::EINVAL)? {
        uapi::CLOCK_REALTIME | uapi::CLOCK_REALTIME_COARSE => Ok(kernel.boot_wallclock_ns.saturating_add(now)),
        uapi::CLOCK_MONOTONIC | uapi::CLOCK_MONOTONIC_RAW | uapi::CLOCK_MONOTONIC_COARSE | uapi::CLOCK_BOOTTIME => {
            Ok(now)
        }
        uapi::CLOCK_PROCESS_CPUTIME_ID | uapi::CLOCK_THREAD_CPUTIME_ID => {
            let usage = kernel.processes.get(&pid).map(|process| process.usage).unwrap_or_default();
            Ok(usage.user_ns + usage.system_ns)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `clock_gettime(clock, tp)`.
pub fn clock_gettime<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [clock, address, ..] = call.arguments;
    let result = read_clock(kernel, call.pid, clock).and_then(|ns| {
        kernel.with_memory(call.pid, |memory| write_value(memory, address, &Timespec::from_nanoseconds(ns)))
    });
    result.map(|()| 0).into()
}

/// `clock_getres(clock, res)`: one nanosecond (coarse clocks: a tick).
pub fn clock_getres<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [clock, address, ..] = call.arguments;
    let result = read_clock(kernel, call.pid, clock).and_then(|_| {
        if address == 0 {
            return Ok(());
        }
        let coarse = matches!(u32::try_from(clock), Ok(uapi::CLOCK_REALTIME_COARSE | uapi::CLOCK_MONOTONIC_COARSE));
        let resolution = Timespec::from_nanoseconds(if coarse { NS_PER_TICK } else { 1 });
        kernel.with_memory(call.pid, |memory| write_value(memory, address, &resolution))
    });
    result.map(|()| 0).into()
}

/// `gettimeofday(tv, tz)`.
pub fn gettimeofday<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, zone, ..] = call.arguments;
    let now = kernel.wallclock_ns();
    let result = kernel.with_memory(call.pid, |memory| {
        if address != 0 {
            let value: [i64; 2] = [(now / 1_000_000_000) as i64, ((now % 1_000_000_000) / 1000) as i64];
            write_value(memory, address, &value)?;
        }
        if zone != 0 {
            write_value(memory, zone, &[0u32; 2])?;
        }
        Ok(())
    });
    result.map(|()| 0).into()
}

/// `time(tloc)`.
pub fn time<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let seconds = kernel.wallclock_ns() / 1_000_000_000;
    if call.arguments[0] != 0 {
        if let Err(errno) = kernel.with_memory(call.pid, |memory| write_value(memory, call.arguments[0], &seconds)) {
            return Flow::Return(error(errno));
        }
    }
    Flow::Return(seconds)
}

/// Sleeps until `deadline` (ns since boot). A signal ends the sleep with EINTR (the time
/// left is not written back: see the run loop's `resume_call`).
fn sleep_until<M: Machine>(kernel: &mut Kernel<M>, call: &Call, deadline: u64) -> Flow {
    let now = kernel.machine.now_ns();
    if now >= deadline || call.timed_out() {
        return Flow::Return(0);
    }
    let since = call.restart.map_or(now, |restart| restart.since_ns);
    Flow::Block { sleep: Sleep::Time, timeout_ns: Some(deadline.saturating_sub(since)), mask: None }
}

/// `nanosleep(req, rem)`.
pub fn nanosleep<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [request, ..] = call.arguments;
    let duration = match kernel.with_memory(call.pid, |memory| read_value::<Timespec>(memory, request)) {
        Ok(duration) => duration,
        Err(errno) => return Flow::Return(error(errno)),
    };
    let Some(duration) = duration.to_nanoseconds() else { return Flow::Return(error(Errno::EINVAL)) };
    let since = call.restart.map_or(kernel.machine.now_ns(), |restart| restart.since_ns);
    sleep_until(kernel, call, since.saturating_add(duration))
}

/// `clock_nanosleep(clock, flags, req, rem)`.
pub fn clock_nanosleep<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [clock, flags, request, ..] = call.arguments;
    let Ok(clock_id) = u32::try_from(clock) else { return Flow::Return(error(Errno::EINVAL)) };
    if matches!(clock_id, uapi::CLOCK_THREAD_CPUTIME_ID) {
        return Flow::Return(error(Errno::EINVAL));
    }
    let value = match kernel.with_memory(call.pid, |memory| read_value::<Timespec>(memory, request)) {
        Ok(value) => value,
        Err(errno) => return Flow::Return(error(errno)),
    };
    let Some(value) = value.to_nanoseconds() else { return Flow::Return(error(Errno::EINVAL)) };
    let now_on_clock = match read_clock(kernel, call.pid, clock) {
        Ok(now) => now,
        Err(errno) => return Flow::Return(error(errno)),
    };
    let now = kernel.machine.now_ns();
    let deadline = if flags & u64::from(uapi::TIMER_ABSTIME) != 0 {
        now.saturating_add(value.saturating_sub(now_on_clock))
    } else {
        call.restart.map_or(now, |restart| restart.since_ns).saturating_add(value)
    };
    sleep_until(kernel, call, deadline)
}

/// `getitimer`: no interval timers are running.
pub fn getitimer<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [which, address, ..] = call.arguments;
    if which > 2 {
        return Flow::Return(error(Errno::EINVAL));
    }
    kernel.with_memory(call.pid, |memory| write_value(memory, address, &[0u64; 4])).map(|()| 0).into()
}

/// `struct rusage` as 18 words: user and system time as timevals, then the counters
/// (maximum resident set, ..., minor faults at index 6 of the counters).
pub fn rusage_words(user_ns: u64, system_ns: u64, minor_faults: u64) -> [u64; 18] {
    let mut words = [0u64; 18];
    words[0] = user_ns / 1_000_000_000;
    words[1] = (user_ns % 1_000_000_000) / 1000;
    words[2] = system_ns / 1_000_000_000;
    words[3] = (system_ns % 1_000_000_000) / 1000;
    words[4 + 6] = minor_faults;
    words
}

/// `getrusage(who, usage)`: RUSAGE_SELF (0), RUSAGE_CHILDREN (-1), RUSAGE_THREAD (1).
pub fn getrusage<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [who, address, ..] = call.arguments;
    let usage = kernel.processes.get(&call.pid).map(|process| process.usage).unwrap_or_default();
    let words = match who as i32 {
        0 | 1 => rusage_words(usage.user_ns, usage.system_ns, usage.minor_faults),
        -1 => rusage_words(usage.children_user_ns, usage.children_system_ns, 0),
        _ => return Flow::Return(error(Errno::EINVAL)),
    };
    kernel.with_memory(call.pid, |memory| write_value(memory, address, &words)).map(|()| 0).into()
}

/// `times(buf)`: CPU times in clock ticks; returns ticks since boot.
pub fn times<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let usage = kernel.processes.get(&call.pid).map(|process| process.usage).unwrap_or_default();
    let ticks = |ns: u64| ns / NS_PER_TICK;
    let words =
        [ticks(usage.user_ns), ticks(usage.system_ns), ticks(usage.children_user_ns), ticks(usage.children_system_ns)];
    if call.arguments[0] != 0 {
        if let Err(errno) = kernel.with_memory(call.pid, |memory| write_value(memory, call.arguments[0], &words)) {
            return Flow::Return(error(errno));
        }
    }
    Flow::Return(ticks(kernel.machine.now_ns()))
}
