//! The custom scalars of the contract: `Date`, `LocalTime`, `DateTime`, `Decimal`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{NaiveDate, NaiveTime, SecondsFormat, Utc};

use crate::domain::money::Cents;

/// A calendar date in the club's wall clock, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) if s.len() == 10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("`{s}` is not a date (YYYY-MM-DD)"))),
            Value::String(s) => Err(InputValueError::custom(format!(
                "`{s}` is not a date (YYYY-MM-DD)"
            ))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(format_date(self.0))
    }
}

/// `YYYY-MM-DD` without chrono's format-string interpreter (a dashboard serializes one per
/// day; the interpreter was ~1 k instructions each).
pub fn format_date(date: NaiveDate) -> String {
    use chrono::Datelike;
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return date.format("%Y-%m-%d").to_string();
    }
    let mut out = String::with_capacity(10);
    push_digits(&mut out, year as u32, 4);
    out.push('-');
    push_digits(&mut out, date.month(), 2);
    out.push('-');
    push_digits(&mut out, date.day(), 2);
    out
}

/// `HH:MM`, likewise (availability serializes two per slot).
pub fn format_time(time: NaiveTime) -> String {
    use chrono::Timelike;
    let mut out = String::with_capacity(5);
    push_digits(&mut out, time.hour(), 2);
    out.push(':');
    push_digits(&mut out, time.minute(), 2);
    out
}

fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
    }
}

/// A wall-clock time, `HH:MM` (seconds are accepted on input when zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime(pub NaiveTime);

#[Scalar(name = "LocalTime")]
impl ScalarType for LocalTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => {
                let parsed = match s.len() {
                    5 => NaiveTime::parse_from_str(s, "%H:%M").ok(),
                    8 => NaiveTime::parse_from_str(s, "%H:%M:%S").ok(),
                    _ => None,
                };
                parsed
                    .map(LocalTime)
                    .ok_or_else(|| InputValueError::custom(format!("`{s}` is not a time (HH:MM)")))
            }
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(format_time(self.0))
    }
}

/// An instant, RFC 3339 in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| DateTime(d.with_timezone(&Utc)))
                .map_err(|_| {
                    InputValueError::custom(format!("`{s}` is not an RFC 3339 date-time"))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// An exact amount of money as a string with two decimals, e.g. `"24.00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal(pub Cents);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Cents::parse(s).map(Decimal).ok_or_else(|| {
                InputValueError::custom(format!(
                    "`{s}` is not a decimal with at most 2 fraction digits"
                ))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_format_like_chrono() {
        for (y, m, d) in [(2026, 1, 9), (1, 12, 31), (9999, 2, 28), (2024, 2, 29)] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(format_date(date), date.format("%Y-%m-%d").to_string());
        }
        let far = NaiveDate::from_ymd_opt(12345, 1, 1).unwrap();
        assert_eq!(format_date(far), far.format("%Y-%m-%d").to_string());
        for minutes in [0, 59, 60, 90, 23 * 60 + 59] {
            let time = NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).unwrap();
            assert_eq!(format_time(time), time.format("%H:%M").to_string());
        }
    }
}
