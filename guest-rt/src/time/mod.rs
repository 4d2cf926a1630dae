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

mod calendar;
mod system_time;
mod timer;
mod wallclock;

pub use calendar::Date;
pub use system_time::{now, read_time, scale_delta, TimeInfo, NANOSECONDS_PER_SECOND};
pub use timer::{cancel_timer, set_timer, sleep, sleep_until, timer_firings, timer_port};
pub use wallclock::{boot_wallclock, read_wallclock, wallclock, WallClock};
