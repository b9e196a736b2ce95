//! UTC timestamps at microsecond precision, in the WTC text format `YYYY-MM-DD HH:MM:SS[.ffffff]`.
//!
//! Parsing and formatting are hand-written: they sit on the per-record hot path, and the format is
//! fixed, so a general date library would only add cost. Timestamps without a zone are UTC (DESIGN §3).

use std::fmt;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// A UTC instant, in microseconds since 1970-01-01 00:00:00 (serialised as that number).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// Why a timestamp text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("expected `YYYY-MM-DD HH:MM:SS[.ffffff]`, found {0:?}")]
    Format(String),
    #[error("{field} {value} is out of range in {text:?}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        text: String,
    },
}

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses `YYYY-MM-DD HH:MM:SS` with an optional fraction of 1 to 6 digits.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        Self::parse_bytes(text.as_bytes())
    }

    pub fn parse_bytes(b: &[u8]) -> Result<Self, TimestampError> {
        let format_error = || TimestampError::Format(String::from_utf8_lossy(b).into_owned());
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b' '
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(format_error());
        }
        let year = digits(&b[0..4]).ok_or_else(format_error)?;
        let month = digits(&b[5..7]).ok_or_else(format_error)?;
        let day = digits(&b[8..10]).ok_or_else(format_error)?;
        let hour = digits(&b[11..13]).ok_or_else(format_error)?;
        let minute = digits(&b[14..16]).ok_or_else(format_error)?;
        let second = digits(&b[17..19]).ok_or_else(format_error)?;
        let micro = match &b[19..] {
            [] => 0,
            [b'.', frac @ ..] if (1..=6).contains(&frac.len()) => {
                let value = digits(frac).ok_or_else(format_error)?;
                value * 10u32.pow(6 - frac.len() as u32)
            }
            _ => return Err(format_error()),
        };
        let out_of_range = |field, value| TimestampError::OutOfRange {
            field,
            value,
            text: String::from_utf8_lossy(b).into_owned(),
        };
        if !(1..=12).contains(&month) {
            return Err(out_of_range("month", month));
        }
        if day == 0 || day > days_in_month(year as i32, month) {
            return Err(out_of_range("day", day));
        }
        if hour > 23 {
            return Err(out_of_range("hour", hour));
        }
        if minute > 59 {
            return Err(out_of_range("minute", minute));
        }
        if second > 59 {
            return Err(out_of_range("second", second));
        }
        // Every field is in range now: compute directly rather than check again.
        let days = days_from_civil(year as i32, month, day);
        let secs = days * 86_400 + i64::from(hour * 3_600 + minute * 60 + second);
        Ok(Self(secs * MICROS_PER_SECOND + i64::from(micro)))
    }

    /// The start of the UTC hour this instant falls in.
    pub const fn hour_start(self) -> Self {
        Self(self.0.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR)
    }

    /// Calendar fields: (year, month, day, hour, minute, second, microsecond).
    pub fn civil(self) -> (i32, u32, u32, u32, u32, u32, u32) {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let in_day = self.0.rem_euclid(MICROS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = in_day / MICROS_PER_SECOND;
        (
            year,
            month,
            day,
            (secs / 3_600) as u32,
            (secs / 60 % 60) as u32,
            (secs % 60) as u32,
            (in_day % MICROS_PER_SECOND) as u32,
        )
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff`: sorts as text in time order, so it serves as a sort key.
    pub fn to_wtc_string(self) -> String {
        self.to_string()
    }

    /// RFC 3339 in UTC: `2024-01-01T00:00:00Z`, with microseconds when there are any
    /// (`2024-01-01T00:00:00.570000Z`), as market-data APIs write times.
    pub fn to_rfc3339(self) -> String {
        let (y, mo, d, h, mi, s, us) = self.civil();
        if us == 0 {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        } else {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z")
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` (no fraction), the API's and the hourly items' form.
    pub fn to_seconds_string(self) -> String {
        let (y, mo, d, h, mi, s, _) = self.civil();
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// Serde as WTC text (`2024-01-01 00:00:00.570000`) rather than as a number: for record fields,
/// `#[serde(with = "wtc_core::time::wtc_text")]`.
pub mod wtc_text {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&text).map_err(D::Error::custom)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, mo, d, h, mi, s, us) = self.civil();
        write!(f, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(c - b'0');
    }
    Some(value)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_generator_format() {
        let t = Timestamp::parse("2024-01-01 00:00:00.570000").unwrap();
        assert_eq!(t.micros(), 1_704_067_200_570_000);
        assert_eq!(t.to_string(), "2024-01-01 00:00:00.570000");
    }

    #[test]
    fn rfc3339_carries_microseconds_only_when_there_are_some() {
        let t = Timestamp::from_micros(1_704_067_200_570_000);
        assert_eq!(t.to_rfc3339(), "2024-01-01T00:00:00.570000Z");
        assert_eq!(
            Timestamp::from_micros(1_704_067_200_000_000).to_rfc3339(),
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn fraction_is_optional_and_may_be_short() {
        assert_eq!(
            Timestamp::parse("2024-01-01 01:01:15").unwrap().micros(),
            1_704_070_875_000_000
        );
        assert_eq!(
            Timestamp::parse("2024-01-01 01:01:15.5").unwrap().micros(),
            1_704_070_875_500_000
        );
    }

    #[test]
    fn rejects_impossible_dates_with_the_field_named() {
        let err = Timestamp::parse("2023-02-29 00:00:00.000000").unwrap_err();
        assert_eq!(
            err.to_string(),
            "day 29 is out of range in \"2023-02-29 00:00:00.000000\""
        );
        assert!(Timestamp::parse("2024-02-29 23:59:59.999999").is_ok());
        assert!(matches!(
            Timestamp::parse("2024-01-01 24:00:00"),
            Err(TimestampError::OutOfRange { field: "hour", .. })
        ));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:00.1234567",
            "2024-01-01 00:00:00Z",
            "2024-1-01 00:00:00",
            "2024-01-01 0a:00:00",
        ] {
            assert!(
                matches!(Timestamp::parse(bad), Err(TimestampError::Format(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn hour_start_truncates() {
        let t = Timestamp::parse("2024-01-01 13:59:59.999999").unwrap();
        assert_eq!(t.hour_start().to_seconds_string(), "2024-01-01 13:00:00");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(micros in -62_135_596_800_000_000i64..253_402_300_800_000_000i64) {
            let t = Timestamp::from_micros(micros);
            prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
    }
}
