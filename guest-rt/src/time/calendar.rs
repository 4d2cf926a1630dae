//! The civil calendar: a Unix time as a UTC date and time of day.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
