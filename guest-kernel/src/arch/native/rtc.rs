//! The CMOS real-time clock (ports 0x70/0x71), read once at boot for the wallclock.
//! Decoding is [`super::calendar`]'s.

use super::calendar::{self, ClockRegisters};
use x86_64::instructions::port::Port;

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
/// Status A: an update is in progress or starts within 244 µs.
const UPDATE_IN_PROGRESS: u8 = 0x80;
/// The PC century register, which QEMU fills.
const CENTURY: u8 = 0x32;
/// Status reads to wait for an update (under 2 ms) to end; far more than enough.
const UPDATE_WAIT_READS: u32 = 1_000_000;

fn read(register: u8) -> u8 {
    // SAFETY: selecting a CMOS register (bit 7 clear keeps NMIs enabled) and reading it
    // has no effect on the clock; nothing else in the kernel uses these ports.
    unsafe {
        Port::<u8>::new(INDEX).write(register);
        Port::<u8>::new(DATA).read()
    }
}

fn snapshot() -> Option<ClockRegisters> {
    (0..UPDATE_WAIT_READS).find(|_| read(STATUS_A) & UPDATE_IN_PROGRESS == 0)?;
    Some(ClockRegisters {
        second: read(0x00),
        minute: read(0x02),
        hour: read(0x04),
        day: read(0x07),
        month: read(0x08),
        year: read(0x09),
        century: read(CENTURY),
    })
}

/// The clock's time in seconds since 1970 (UTC), or `None` without a usable clock. Reads
/// until two snapshots agree, so a second ticking over between fields cannot tear it.
pub fn unix_seconds() -> Option<u64> {
    let mut previous = snapshot()?;
    for _ in 0..5 {
        let current = snapshot()?;
        if current == previous {
            return calendar::unix_seconds(current, read(STATUS_B));
        }
        previous = current;
    }
    None
}
