//! Timestamps as milliseconds since the Unix epoch: what the catalog stores and compares.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z. Serializes as RFC 3339 (UTC, milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    pub fn to_system(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// RFC 3339 with millisecond precision, e.g. `2026-11-23T05:43:35.123Z`.
    pub fn to_rfc3339(self) -> String {
        let mut buf = [0u8; RFC3339_MILLIS_LEN];
        match self.write_rfc3339(&mut buf) {
            Some(text) => text.to_owned(),
            None => humantime::format_rfc3339_millis(self.to_system()).to_string(),
        }
    }

    /// [`Self::to_rfc3339`] into `buf`, without allocating: a listing of 10,000 versions
    /// formats 10,000 of these, and the general formatter was a tenth of its time. `None`
    /// outside years 1970-9999 (the caller falls back to the general formatter).
    pub fn write_rfc3339(self, buf: &mut [u8; RFC3339_MILLIS_LEN]) -> Option<&str> {
        // Year 10000 begins at this many milliseconds.
        const END: i64 = 253_402_300_800_000;
        if !(0..END).contains(&self.0) {
            return None;
        }
        let days = self.0 / 86_400_000;
        let in_day = self.0 % 86_400_000;
        let (year, month, day) = civil_from_days(days);
        let fields = [
            (0, 4, year),
            (5, 2, month),
            (8, 2, day),
            (11, 2, in_day / 3_600_000),
            (14, 2, in_day / 60_000 % 60),
            (17, 2, in_day / 1000 % 60),
            (20, 3, in_day % 1000),
        ];
        *buf = *b"0000-00-00T00:00:00.000Z";
        for (at, width, mut value) in fields {
            for i in (at..at + width).rev() {
                // `value % 10` is a digit: the ranges above keep every field within its width.
                buf[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        std::str::from_utf8(buf).ok()
    }

    /// RFC 3339 with whole seconds, as Go's `.info` files carry it.
    pub fn to_rfc3339_seconds(self) -> String {
        humantime::format_rfc3339_seconds(self.to_system()).to_string()
    }

    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        humantime::parse_rfc3339_weak(s).ok().map(Self::from_system)
    }
}

/// The length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub const RFC3339_MILLIS_LEN: usize = 24;

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01, for days
/// that are not negative (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; RFC3339_MILLIS_LEN];
        match self.write_rfc3339(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&self.to_rfc3339()),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_formatter_agrees_with_the_general_one() {
        let mut ms = 0i64;
        // Every leap-year rule, month ends and the last millisecond of year 9999, then a
        // stride through the range.
        let edges = [
            0,
            86_399_999,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-03-01
            1_700_000_000_123,
            253_402_300_799_999,
        ];
        for t in edges {
            let general = humantime::format_rfc3339_millis(Timestamp(t).to_system()).to_string();
            assert_eq!(Timestamp(t).to_rfc3339(), general, "{t}");
        }
        while ms < 253_402_300_800_000 {
            let general = humantime::format_rfc3339_millis(Timestamp(ms).to_system()).to_string();
            assert_eq!(Timestamp(ms).to_rfc3339(), general, "{ms}");
            ms += 1_234_567_891_237;
        }
        let mut buf = [0u8; RFC3339_MILLIS_LEN];
        assert_eq!(Timestamp(-1).write_rfc3339(&mut buf), None);
        assert_eq!(Timestamp(253_402_300_800_000).write_rfc3339(&mut buf), None);
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp(1_700_000_000_123);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }
}
