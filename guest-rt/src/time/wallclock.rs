//! The wallclock (SPEC.md §19.3): the time of day at boot, under its own seqlock, plus
//! system time.

use core::sync::atomic::{AtomicU32, Ordering};

use hypercall_abi::shared_info::SharedInfo;

use super::calendar::Date;
use super::system_time::{now, NANOSECONDS_PER_SECOND};
use crate::events::{shared_info, SharedInfoPage};

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

/// The wallclock at system time 0 (`wc_sec`, `wc_nsec` under `wc_version`).
pub fn boot_wallclock() -> WallClock {
    read_wallclock(shared_info())
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use zerocopy::FromZeros;

    #[test]
    fn seqlocked_read_of_a_page() {
        let mut info = Box::new(SharedInfo::new_zeroed());
        info.wc_version = 2;
        info.wc_sec = 1_700_000_000;
        info.wc_nsec = 999_999_999;
        // SAFETY: the box outlives the view; nothing else touches it.
        let page = unsafe { SharedInfoPage::from_address(&*info as *const SharedInfo as u64) };
        let clock = read_wallclock(page);
        assert_eq!(clock, WallClock { seconds: 1_700_000_000, nanoseconds: 999_999_999 });
        assert_eq!(clock.plus(2), WallClock { seconds: 1_700_000_001, nanoseconds: 1 });
    }
}
