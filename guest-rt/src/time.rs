//! Time (SPEC.md §19): system time from the shared-info page's `vcpu_info[0].time` and
//! the TSC with no hypercall, the wallclock, and the one-shot timer.
//!
//! System time is nanoseconds since the hypervisor booted. The hypervisor publishes
//! (`tsc_timestamp`, `system_time`, `tsc_to_system_mul`, `tsc_shift`) under a seqlock
//! (`version` odd while it writes) and the guest extrapolates:
//!
//! ```text
//! ns = system_time + ((((tsc - tsc_timestamp) << shift) * mul) >> 32)   (shift < 0: >> -shift)
//! ```

use core::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, Ordering};

use hypercall_abi::event::virq;
use hypercall_abi::shared_info::{SharedInfo, VcpuInfo, VcpuTimeInfo};
use hypercall_abi::Errno;

use crate::events::{self, Port, SharedInfoPage};
use crate::hypercall::HYPERVISOR;

/// Nanoseconds per second.
pub const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// One consistent copy of the time fields.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeInfo {
    /// The (even) version the copy was taken at.
    pub version: u32,
    /// TSC at the hypervisor's last update.
    pub tsc_timestamp: u64,
    /// System time at `tsc_timestamp`.
    pub system_time: u64,
    /// 32.32 multiplier.
    pub mul: u32,
    /// Shift before the multiply (negative: right).
    pub shift: i8,
}

/// Scales a TSC delta to nanoseconds: `((delta << shift) * mul) >> 32` (right shift for a
/// negative `shift`), in 128 bits so no intermediate overflows; the result is truncated
/// to 64 bits (it exceeds them only for a delta of more than 2^64 ns, see
/// [`TimeInfo::system_time_at`]).
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        (delta as u128) << (shift as u32)
    } else {
        (delta as u128) >> ((-(shift as i16)) as u32)
    };
    ((shifted * mul as u128) >> 32) as u64
}

impl TimeInfo {
    /// System time at TSC value `tsc` (a TSC before `tsc_timestamp` counts as no time).
    /// The sum wraps mod 2^64 where the hypervisor saturates at `u64::MAX` (SPEC.md
    /// §19.2); the two differ only once system time passes 2^64 ns, about 584 years after
    /// boot.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_timestamp);
        self.system_time.wrapping_add(scale_delta(delta, self.mul, self.shift))
    }
}

const TIME_OFFSET: usize = core::mem::offset_of!(VcpuInfo, time);

fn time_field<T>(page: SharedInfoPage, offset: usize) -> *const T {
    (page.address() as usize + TIME_OFFSET + offset) as *const T
}

/// Reads `vcpu_info[0].time` of `page` under its seqlock, then the TSC inside the same
/// critical window, and returns both.
pub fn read_time(page: SharedInfoPage) -> (TimeInfo, u64) {
    let version_pointer = time_field::<u32>(page, core::mem::offset_of!(VcpuTimeInfo, version));
    // SAFETY: the field is inside the page the view names, 4-byte aligned, and written by
    // the hypervisor only (atomically with respect to this vCPU).
    let version_cell = unsafe { AtomicU32::from_ptr(version_pointer as *mut u32) };
    loop {
        let version = version_cell.load(Ordering::Acquire);
        if version & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        compiler_fence(Ordering::SeqCst);
        // SAFETY: all four fields lie inside the page and are naturally aligned; volatile
        // because the hypervisor changes them behind the compiler's back (the version
        // check below throws away a torn copy).
        let info = unsafe {
            TimeInfo {
                version,
                tsc_timestamp: time_field::<u64>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_timestamp))
                    .read_volatile(),
                system_time: time_field::<u64>(page, core::mem::offset_of!(VcpuTimeInfo, system_time))
                    .read_volatile(),
                mul: time_field::<u32>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_to_system_mul))
                    .read_volatile(),
                shift: time_field::<i8>(page, core::mem::offset_of!(VcpuTimeInfo, tsc_shift)).read_volatile(),
            }
        };
        // lfence: the TSC is read after the fields, never speculatively before them (a TSC
        // older than tsc_timestamp would be a negative delta).
        let tsc = rdtsc_ordered();
        compiler_fence(Ordering::SeqCst);
        if version_cell.load(Ordering::Acquire) == version {
            return (info, tsc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn rdtsc_ordered() -> u64 {
    crate::tsc::rdtsc_serialized()
}

#[cfg(not(target_arch = "x86_64"))]
fn rdtsc_ordered() -> u64 {
    0
}

/// System time now: nanoseconds since the hypervisor booted (no hypercall).
pub fn now() -> u64 {
    let (info, tsc) = read_time(events::shared_info());
    info.system_time_at(tsc)
}

/// A wallclock time (seconds and nanoseconds since 1970-01-01 UTC).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WallClock {
    /// Whole seconds.
    pub seconds: u64,
    /// Nanoseconds, below 10⁹.
    pub nanoseconds: u32,
}

impl WallClock {
    /// This time plus `nanoseconds`.
    pub const fn plus(self, nanoseconds: u64) -> Self {
        let total = self.nanoseconds as u64 + nanoseconds;
        Self {
            seconds: self.seconds + total / NANOSECONDS_PER_SECOND,
            nanoseconds: (total % NANOSECONDS_PER_SECOND) as u32,
        }
    }

    /// The civil UTC date and time of day of this wallclock (seconds only).
    pub fn date(self) -> Date {
        Date::from_unix_seconds(self.seconds)
    }
}

/// A UTC date and time of day.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Date {
    /// The year (proleptic Gregorian).
    pub year: i64,
    /// 1 ..= 12.
    pub month: u32,
    /// 1 ..= 31.
    pub day: u32,
    /// 0 ..= 23.
    pub hour: u32,
    /// 0 ..= 59.
    pub minute: u32,
    /// 0 ..= 59 (no leap seconds: Unix time has none).
    pub second: u32,
}

impl Date {
    /// The date `seconds` after 1970-01-01 00:00:00 UTC.
    pub fn from_unix_seconds(seconds: u64) -> Self {
        let days = (seconds / 86_400) as i64;
        let in_day = seconds % 86_400;
        // Days since 1970-01-01 to a date, counting in 400-year eras that start on
        // March 1st, so the leap day is the last day of an era's year.
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (in_day / 3600) as u32,
            minute: (in_day / 60 % 60) as u32,
            second: (in_day % 60) as u32,
        }
    }
}

impl core::fmt::Display for Date {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The wallclock at system time 0 (`wc_sec`, `wc_nsec` under `wc_version`).
pub fn boot_wallclock() -> WallClock {
    read_wallclock(events::shared_info())
}

/// Reads `wc_*` of `page` under the `wc_version` seqlock.
pub fn read_wallclock(page: SharedInfoPage) -> WallClock {
    let base = page.address() as usize;
    let at = |offset: usize| (base + offset) as *mut u32;
    // SAFETY: the three u32 fields lie inside the page, 4-byte aligned; atomics because the
    // hypervisor writes them.
    let (version, seconds, nanoseconds) = unsafe {
        (
            AtomicU32::from_ptr(at(core::mem::offset_of!(SharedInfo, wc_version))),
            AtomicU32::from_ptr(at(core::mem::offset_of!(SharedInfo, wc_sec))),
            AtomicU32::from_ptr(at(core::mem::offset_of!(SharedInfo, wc_nsec))),
        )
    };
    loop {
        let before = version.load(Ordering::Acquire);
        if before & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let clock = WallClock {
            seconds: u64::from(seconds.load(Ordering::Acquire)),
            nanoseconds: nanoseconds.load(Ordering::Acquire),
        };
        if version.load(Ordering::Acquire) == before {
            return clock;
        }
    }
}

/// The wallclock now: [`boot_wallclock`] plus [`now`].
pub fn wallclock() -> WallClock {
    boot_wallclock().plus(now())
}

// ---------------------------------------------------------------------------------------
// The one-shot timer.

/// `set_timer_op(deadline_ns)`: the domain's timer fires at absolute system time
/// `deadline_ns` (at once if that has passed), raising VIRQ_TIMER and waking the domain.
/// Replaces any earlier deadline. A deadline of 0 cancels; use [`cancel_timer`].
pub fn set_timer(deadline_ns: u64) -> Result<(), Errno> {
    HYPERVISOR.set_timer_op(deadline_ns).map(drop)
}

/// Cancels the domain's timer.
pub fn cancel_timer() -> Result<(), Errno> {
    HYPERVISOR.set_timer_op(0).map(drop)
}

/// 0 = not bound yet.
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
static TIMER_FIRINGS: AtomicU64 = AtomicU64::new(0);
static TIMER_FIRED_AT: AtomicU64 = AtomicU64::new(0);

fn on_timer(_: Port) {
    TIMER_FIRED_AT.store(now(), Ordering::Relaxed);
    TIMER_FIRINGS.fetch_add(1, Ordering::Release);
}

/// The VIRQ_TIMER port guest-rt bound (binding it, and its counting handler, on first
/// use). A domain that binds VIRQ_TIMER itself gets `-EEXIST` here.
pub fn timer_port() -> Result<Port, Errno> {
    let bound = TIMER_PORT.load(Ordering::Acquire);
    if bound != 0 {
        return Ok(Port::from_raw(bound));
    }
    let port = Port::bind_virq(virq::TIMER)?;
    events::set_handler(port, on_timer);
    TIMER_PORT.store(port.number(), Ordering::Release);
    Ok(port)
}

/// Timer events guest-rt's VIRQ_TIMER handler has seen, and the system time it saw the
/// last one at.
pub fn timer_firings() -> (u64, u64) {
    (TIMER_FIRINGS.load(Ordering::Acquire), TIMER_FIRED_AT.load(Ordering::Relaxed))
}

/// Sleeps until system time `deadline_ns`: arms the timer, binds VIRQ_TIMER (once) and
/// blocks until the time has come, whatever other events wake the domain meanwhile.
/// Requires [`events::init`] (the upcall entry). The upcall flag is as before on return.
pub fn sleep_until(deadline_ns: u64) -> Result<(), Errno> {
    timer_port()?;
    set_timer(deadline_ns)?;
    let mut armed_firings = TIMER_FIRINGS.load(Ordering::Acquire);
    let mut result = Ok(());
    events::wait_until(|| {
        if now() >= deadline_ns {
            return true;
        }
        // A timer that fired before the deadline (or was replaced by someone else's)
        // would leave us asleep for good: arm it again.
        let firings = TIMER_FIRINGS.load(Ordering::Acquire);
        if firings != armed_firings {
            armed_firings = firings;
            if let Err(errno) = set_timer(deadline_ns) {
                result = Err(errno);
                return true;
            }
        }
        false
    })?;
    result
}

/// Sleeps for `nanoseconds` (see [`sleep_until`]).
pub fn sleep(nanoseconds: u64) -> Result<(), Errno> {
    sleep_until(now().saturating_add(nanoseconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::boxed::Box;
    use zerocopy::FromZeros;

    fn date(seconds: u64) -> (i64, u32, u32, u32, u32, u32) {
        let d = Date::from_unix_seconds(seconds);
        (d.year, d.month, d.day, d.hour, d.minute, d.second)
    }

    #[test]
    fn known_dates() {
        assert_eq!(date(0), (1970, 1, 1, 0, 0, 0));
        // 2000-02-29 12:34:56: a leap day in a century divisible by 400.
        assert_eq!(date(951_827_696), (2000, 2, 29, 12, 34, 56));
        // 2026-11-22 05:10:47.
        assert_eq!(date(1_795_324_247), (2026, 11, 22, 5, 10, 47));
        // 2100-03-01: 2100 is not a leap year.
        assert_eq!(date(4_107_542_400), (2100, 3, 1, 0, 0, 0));
        // The last second of 1999.
        assert_eq!(date(946_684_799), (1999, 12, 31, 23, 59, 59));
    }

    #[test]
    fn scaling_follows_the_formula() {
        // 2 GHz: 0.5 ns per cycle = mul 2^31 with shift 0.
        assert_eq!(scale_delta(2_000_000_000, 1 << 31, 0), 1_000_000_000);
        // 1 GHz: 1 ns per cycle = mul 2^31, shift 1.
        assert_eq!(scale_delta(1_000, 1 << 31, 1), 1_000);
        // 4 GHz: 0.25 ns per cycle = mul 2^31, shift -1.
        assert_eq!(scale_delta(4_000, 1 << 31, -1), 1_000);
        // Large deltas do not overflow: a day at 3 GHz.
        let day = 86_400 * 3_000_000_000u64;
        let mul = ((1u128 << 32) / 3) as u32; // 0.333 ns per cycle
        let nanoseconds = scale_delta(day, mul, 0);
        assert!(nanoseconds.abs_diff(86_400 * 1_000_000_000) < 100_000, "{nanoseconds}");
    }

    #[test]
    fn system_time_extrapolates_from_the_timestamp() {
        let info = TimeInfo { version: 2, tsc_timestamp: 1_000, system_time: 5_000, mul: 1 << 31, shift: 1 };
        assert_eq!(info.system_time_at(1_000), 5_000);
        assert_eq!(info.system_time_at(1_250), 5_250);
        assert_eq!(info.system_time_at(900), 5_000, "a TSC before the timestamp adds nothing");
    }

    #[test]
    fn seqlocked_reads_of_a_page() {
        let mut info = Box::new(SharedInfo::new_zeroed());
        info.vcpu_info[0].time = VcpuTimeInfo {
            version: 4,
            tsc_timestamp: 10,
            system_time: 77,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: -2,
            ..VcpuTimeInfo::default()
        };
        info.wc_version = 2;
        info.wc_sec = 1_700_000_000;
        info.wc_nsec = 999_999_999;
        let info: Box<SharedInfo> = info;
        // SAFETY: the box outlives the view; nothing else touches it.
        let page = unsafe { SharedInfoPage::from_address(&*info as *const SharedInfo as u64) };
        let (time, _) = read_time(page);
        assert_eq!((time.version, time.tsc_timestamp, time.system_time, time.mul, time.shift), (4, 10, 77, 1 << 31, -2));
        let clock = read_wallclock(page);
        assert_eq!(clock, WallClock { seconds: 1_700_000_000, nanoseconds: 999_999_999 });
        assert_eq!(clock.plus(2), WallClock { seconds: 1_700_000_001, nanoseconds: 1 });
    }
}
