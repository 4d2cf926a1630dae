//! The CMOS clock's registers as a Unix time: BCD or binary, 12- or 24-hour (status
//! register B says which), the century from its own register when it holds one.
//!
//! Pure arithmetic (no unsafe, no hardware): host-tested in `tests/native.rs`.

/// Status register B: the registers hold binary values, not BCD.
pub const STATUS_B_BINARY: u8 = 1 << 2;
/// Status register B: the hour runs 0–23, not 1–12 with a PM flag.
pub const STATUS_B_24_HOUR: u8 = 1 << 1;
/// In 12-hour mode, the hour register's PM flag.
const PM: u8 = 0x80;

/// The clock's date and time registers as read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClockRegisters {
    /// Register 0x00.
    pub second: u8,
    /// Register 0x02.
    pub minute: u8,
    /// Register 0x04 (with the PM flag in 12-hour mode).
    pub hour: u8,
    /// Register 0x07, day of the month.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09, the year of the century.
    pub year: u8,
    /// Register 0x32, the century (QEMU and PC firmware fill it).
    pub century: u8,
}

fn decode(value: u8, binary: bool) -> Option<u64> {
    if binary {
        return Some(u64::from(value));
    }
    let (high, low) = (value >> 4, value & 0x0f);
    (high <= 9 && low <= 9).then(|| u64::from(high) * 10 + u64::from(low))
}

/// Days from 1970-01-01 to `year`-`month`-`day` (proleptic Gregorian calendar).
pub fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    // Counted from 0000-03-01, so that the leap day ends a year.
    let (year, month) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = year / 400;
    let year_of_era = year % 400;
    let day_of_year = (153 * month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468: days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since 1970-01-01 00:00:00 UTC (the clock runs in UTC, as QEMU's does by
/// default), or `None` if the registers do not hold a date from 1970 on.
pub fn unix_seconds(registers: ClockRegisters, status_b: u8) -> Option<u64> {
    let binary = status_b & STATUS_B_BINARY != 0;
    let second = decode(registers.second, binary)?;
    let minute = decode(registers.minute, binary)?;
    let hour = if status_b & STATUS_B_24_HOUR != 0 {
        decode(registers.hour, binary)?
    } else {
        // 12 is midnight (AM) or noon (PM).
        let twelve_hour = decode(registers.hour & !PM, binary)?;
        if !(1..=12).contains(&twelve_hour) {
            return None;
        }
        twelve_hour % 12 + if registers.hour & PM != 0 { 12 } else { 0 }
    };
    let day = decode(registers.day, binary)?;
    let month = decode(registers.month, binary)?;
    let year_of_century = decode(registers.year, binary)?;
    let century = decode(registers.century, binary).filter(|century| (19..=99).contains(century)).unwrap_or(20);
    let year = century * 100 + year_of_century;
    let valid = second < 60
        && minute < 60
        && hour < 24
        && (1..=12).contains(&month)
        && day >= 1
        && year_of_century < 100
        && year >= 1970
        && day <= days_in_month(year, month);
    valid.then(|| days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bcd(value: u8) -> u8 {
        ((value / 10) << 4) | (value % 10)
    }

    fn registers(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> ClockRegisters {
        ClockRegisters {
            second: bcd(second),
            minute: bcd(minute),
            hour: bcd(hour),
            day: bcd(day),
            month: bcd(month),
            year: bcd((year % 100) as u8),
            century: bcd((year / 100) as u8),
        }
    }

    #[test]
    fn days_match_known_dates() {
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(days_since_epoch(2024, 2, 29), 19_782);
        assert_eq!(days_since_epoch(2038, 1, 19), 24_855);
    }

    #[test]
    fn bcd_24_hour_registers_decode() {
        let time = registers(2024, 2, 29, 13, 45, 30);
        assert_eq!(unix_seconds(time, STATUS_B_24_HOUR), Some(1_709_214_330));
        assert_eq!(unix_seconds(registers(1970, 1, 1, 0, 0, 0), STATUS_B_24_HOUR), Some(0));
    }

    #[test]
    fn binary_and_12_hour_registers_decode() {
        let binary = ClockRegisters { second: 30, minute: 45, hour: 13, day: 29, month: 2, year: 24, century: 20 };
        assert_eq!(unix_seconds(binary, STATUS_B_BINARY | STATUS_B_24_HOUR), Some(1_709_214_330));
        let pm = ClockRegisters { hour: bcd(1) | PM, ..registers(2024, 2, 29, 0, 45, 30) };
        assert_eq!(unix_seconds(pm, 0), Some(1_709_214_330));
        let midnight = ClockRegisters { hour: bcd(12), ..registers(1970, 1, 1, 0, 0, 5) };
        assert_eq!(unix_seconds(midnight, 0), Some(5));
        let noon = ClockRegisters { hour: bcd(12) | PM, ..registers(1970, 1, 1, 0, 0, 0) };
        assert_eq!(unix_seconds(noon, 0), Some(12 * 3600));
    }

    #[test]
    fn a_missing_century_means_the_twenty_first() {
        let time = ClockRegisters { century: 0, ..registers(2024, 2, 29, 13, 45, 30) };
        assert_eq!(unix_seconds(time, STATUS_B_24_HOUR), Some(1_709_214_330));
    }

    #[test]
    fn impossible_registers_are_refused() {
        let good = registers(2023, 6, 15, 12, 0, 0);
        for bad in [
            ClockRegisters { second: 0x60, ..good },
            ClockRegisters { minute: 0x5a, ..good },
            ClockRegisters { hour: 0x24, ..good },
            ClockRegisters { month: 0x13, ..good },
            ClockRegisters { month: 0, ..good },
            ClockRegisters { day: 0, ..good },
            ClockRegisters { day: 0x31, month: 0x06, ..good },
            ClockRegisters { day: 0x29, month: 0x02, ..good },
            ClockRegisters { century: 0x19, year: 0x69, ..good },
        ] {
            assert_eq!(unix_seconds(bad, STATUS_B_24_HOUR), None, "{bad:?}");
        }
        assert_eq!(unix_seconds(ClockRegisters { hour: 0x13, ..good }, 0), None, "hour 13 in 12-hour mode");
    }
}
