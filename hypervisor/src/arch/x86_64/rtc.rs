//! The CMOS real-time clock (ports 0x70/0x71): the date and time at boot, for the
//! wallclock (`wc_sec`/`wc_nsec`). Decoding (BCD/binary, 12/24 h) is
//! `hypervisor::time::rtc_unix_seconds`, host-tested.

use hypervisor::time::{self, RtcRegisters};
use x86_64::instructions::port::Port;

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
/// Status A: an update is in progress (or starts within 244 µs); the date registers may
/// be mid-change.
const UPDATE_IN_PROGRESS: u8 = 0x80;
/// The PC century register QEMU fills (ACPI FADT `century`).
const CENTURY: u8 = 0x32;
/// An update lasts under 2 ms; this many status reads is far more than that.
const UPDATE_WAIT_READS: u32 = 1_000_000;

fn read(register: u8) -> u8 {
    // SAFETY: selecting a CMOS register (bit 7 clear leaves NMIs as they are) and reading
    // it has no side effect on the clock; nothing else in the hypervisor uses these ports.
    unsafe {
        Port::<u8>::new(INDEX).write(register);
        Port::<u8>::new(DATA).read()
    }
}

fn wait_for_update_to_end() -> bool {
    (0..UPDATE_WAIT_READS).any(|_| read(STATUS_A) & UPDATE_IN_PROGRESS == 0)
}

fn snapshot() -> RtcRegisters {
    RtcRegisters {
        second: read(0x00),
        minute: read(0x02),
        hour: read(0x04),
        day: read(0x07),
        month: read(0x08),
        year: read(0x09),
        century: Some(read(CENTURY)),
    }
}

/// The RTC's time as seconds since 1970 (UTC, as QEMU's RTC runs by default), or `None`
/// without a usable RTC. Reads until two consecutive snapshots taken outside an update
/// agree, so a rollover between fields cannot tear the result.
pub fn read_unix_seconds() -> Option<u64> {
    let mut previous = None;
    for _ in 0..5 {
        if !wait_for_update_to_end() {
            return None;
        }
        let current = snapshot();
        if previous == Some(current) {
            return time::rtc_unix_seconds(current, read(STATUS_B));
        }
        previous = Some(current);
    }
    None
}
