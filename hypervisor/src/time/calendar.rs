//! The CMOS date arithmetic behind the wallclock.

use crate::time::clock::NANOSECONDS_PER_SECOND;

/// The CMOS clock's date registers as read (before decoding).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RtcRegisters {
    /// Seconds register.
    pub second: u8,
    /// Minutes register.
    pub minute: u8,
    /// Hours register.
    pub hour: u8,
    /// Day-of-month register.
    pub day: u8,
    /// Month register.
    pub month: u8,
    /// Two-digit year.
    pub year: u8,
    /// Century register (0x32, the PC convention); `None` if the machine has none.
    pub century: Option<u8>,
}

/// Status register B: binary (not BCD) values.
pub const RTC_BINARY: u8 = 1 << 2;
/// Status register B: 24-hour clock (else 12-hour with bit 7 of the hour meaning PM).
pub const RTC_24_HOUR: u8 = 1 << 1;

/// Seconds since 1970-01-01 00:00:00 UTC for the CMOS reading, decoded per status
/// register B (BCD or binary, 12- or 24-hour). `None` if a field is out of range (a
/// reading torn by an update, or no RTC at all: every port reads 0xff).
pub fn rtc_unix_seconds(registers: RtcRegisters, status_b: u8) -> Option<u64> {
    let decode = |value: u8| -> Option<u8> {
        if status_b & RTC_BINARY != 0 {
            Some(value)
        } else if value >> 4 <= 9 && value & 0xf <= 9 {
            Some((value >> 4) * 10 + (value & 0xf))
        } else {
            None
        }
    };
    let mut hour = decode(registers.hour & 0x7f)?;
    if status_b & RTC_24_HOUR == 0 {
        // 12-hour clock: 12 AM is hour 0, 12 PM is hour 12.
        let afternoon = registers.hour & 0x80 != 0;
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = (hour % 12) + if afternoon { 12 } else { 0 };
    }
    let two_digit_year = u32::from(decode(registers.year)?);
    let century = match registers.century.and_then(decode) {
        Some(century @ 19..=29) => u32::from(century),
        // No (sane) century register: the two-digit year means 1970–2069.
        _ if two_digit_year >= 70 => 19,
        _ => 20,
    };
    unix_seconds(
        century * 100 + two_digit_year,
        decode(registers.month)?,
        decode(registers.day)?,
        hour,
        decode(registers.minute)?,
        decode(registers.second)?,
    )
}

/// Seconds since the Unix epoch for a proleptic-Gregorian UTC date and time, `None` for
/// out-of-range fields or dates before 1970.
pub fn unix_seconds(year: u32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<u64> {
    let leap = |year: u32| year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    const DAYS: [u8; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let month_days = DAYS[usize::from(month - 1)] + u8::from(month == 2 && leap(year));
    if day == 0 || day > month_days {
        return None;
    }
    let mut days: u64 = (1970..year).map(|year| if leap(year) { 366 } else { 365 }).sum();
    for earlier in 1..month {
        days += u64::from(DAYS[usize::from(earlier - 1)]) + u64::from(earlier == 2 && leap(year));
    }
    days += u64::from(day - 1);
    Some(((days * 24 + u64::from(hour)) * 60 + u64::from(minute)) * 60 + u64::from(second))
}

/// The wallclock at system time 0 (`wc_sec`, `wc_nsec`), given the Unix time
/// `unix_seconds` read from the RTC when system time was `read_at_ns`. The RTC has
/// one-second resolution, so the result is that exact.
pub fn wallclock_base(unix_seconds: u64, read_at_ns: u64) -> (u32, u32) {
    let base_ns =
        (u128::from(unix_seconds) * u128::from(NANOSECONDS_PER_SECOND)).saturating_sub(u128::from(read_at_ns));
    let seconds = base_ns / u128::from(NANOSECONDS_PER_SECOND);
    let nanoseconds = base_ns % u128::from(NANOSECONDS_PER_SECOND);
    (u32::try_from(seconds).unwrap_or(u32::MAX), nanoseconds as u32)
}
