//! Time: the clock (TSC to nanoseconds, as guests compute it), which calibration to
//! believe, per-domain timers, and the calendar behind the wallclock.

pub mod calendar;
pub mod calibration;
pub mod clock;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
pub mod timers;

pub use calendar::{rtc_unix_seconds, wallclock_base, RtcRegisters, RTC_24_HOUR, RTC_BINARY};
pub use clock::{guest_ns, Clock, DeadlineCache, TscScale, NANOSECONDS_PER_SECOND};
pub use timers::{Expired, Timers};
