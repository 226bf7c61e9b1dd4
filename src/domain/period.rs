//! Analytics periods: which dates a DAY, WEEK (ISO), MONTH or YEAR holds, and the one before.

use chrono::{Datelike, Days, NaiveDate};

use super::Period;

/// How far from a club's today a query or booking may name a date (`limits.date_days_back`,
/// `limits.date_days_ahead`): every date is a cache tag and entry of its own, so a client
/// walking years 0000 to 9999 would otherwise grow every replica's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    /// Days before today.
    pub days_back: u32,
    /// Days after today.
    pub days_ahead: u32,
}

impl Default for DateWindow {
    fn default() -> Self {
        DateWindow {
            days_back: 730,
            days_ahead: 365,
        }
    }
}

impl DateWindow {
    /// `Err` with a message naming the window when `date` lies outside it.
    pub fn check(&self, date: NaiveDate, today: NaiveDate) -> Result<(), String> {
        let first = today.checked_sub_days(Days::new(self.days_back.into()));
        let last = today.checked_add_days(Days::new(self.days_ahead.into()));
        let inside = first.is_none_or(|f| date >= f) && last.is_none_or(|l| date <= l);
        if inside {
            Ok(())
        } else {
            Err(format!(
                "date {date} is outside the window of {} days back and {} days ahead of the club's today ({today})",
                self.days_back, self.days_ahead
            ))
        }
    }
}

/// An inclusive range of dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First date.
    pub from: NaiveDate,
    /// Last date (inclusive).
    pub to: NaiveDate,
}

impl DateRange {
    /// Every date of the range, in order.
    pub fn dates(self) -> impl Iterator<Item = NaiveDate> {
        self.from.iter_days().take_while(move |d| *d <= self.to)
    }
}

/// The period of kind `period` that holds `anchor`.
pub fn period_range(period: Period, anchor: NaiveDate) -> DateRange {
    match period {
        Period::Day => DateRange {
            from: anchor,
            to: anchor,
        },
        Period::Week => {
            let from = anchor - Days::new(u64::from(anchor.weekday().num_days_from_monday()));
            DateRange {
                from,
                to: from + Days::new(6),
            }
        }
        Period::Month => {
            let from = anchor.with_day(1).expect("day 1 exists");
            let next = if from.month() == 12 {
                NaiveDate::from_ymd_opt(from.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(from.year(), from.month() + 1, 1)
            }
            .expect("first of next month exists");
            DateRange {
                from,
                to: next - Days::new(1),
            }
        }
        Period::Year => DateRange {
            from: NaiveDate::from_ymd_opt(anchor.year(), 1, 1).expect("Jan 1 exists"),
            to: NaiveDate::from_ymd_opt(anchor.year(), 12, 31).expect("Dec 31 exists"),
        },
    }
}

/// The period of the same kind just before the one holding `anchor`.
pub fn previous_range(period: Period, anchor: NaiveDate) -> DateRange {
    let current = period_range(period, anchor);
    period_range(period, current.from - Days::new(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_outside_the_window_are_refused() {
        let window = super::DateWindow::default();
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert!(window.check(today, today).is_ok());
        assert!(window
            .check(NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(), today)
            .is_ok());
        assert!(window
            .check(NaiveDate::from_ymd_opt(2024, 11, 30).unwrap(), today)
            .is_err());
        assert!(window
            .check(NaiveDate::from_ymd_opt(2027, 12, 1).unwrap(), today)
            .is_ok());
        assert!(window
            .check(NaiveDate::from_ymd_opt(2027, 12, 2).unwrap(), today)
            .is_err());
        assert!(window.check(NaiveDate::MIN, today).is_err());
        assert!(window.check(NaiveDate::MAX, today).is_err());
    }

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn week_is_iso_monday_to_sunday() {
        // 2026-11-21 is a Saturday.
        let r = period_range(Period::Week, d(2026, 11, 21));
        assert_eq!((r.from, r.to), (d(2026, 11, 16), d(2026, 11, 22)));
        let p = previous_range(Period::Week, d(2026, 11, 21));
        assert_eq!((p.from, p.to), (d(2026, 11, 9), d(2026, 11, 15)));
    }

    #[test]
    fn month_and_year_are_calendar_ones() {
        let r = period_range(Period::Month, d(2024, 2, 10));
        assert_eq!((r.from, r.to), (d(2024, 2, 1), d(2024, 2, 29)));
        let p = previous_range(Period::Month, d(2026, 1, 15));
        assert_eq!((p.from, p.to), (d(2025, 12, 1), d(2025, 12, 31)));
        let y = previous_range(Period::Year, d(2026, 6, 1));
        assert_eq!((y.from, y.to), (d(2025, 1, 1), d(2025, 12, 31)));
    }

    #[test]
    fn day_previous_is_yesterday() {
        let p = previous_range(Period::Day, d(2026, 3, 1));
        assert_eq!((p.from, p.to), (d(2026, 2, 28), d(2026, 2, 28)));
        assert_eq!(period_range(Period::Day, d(2026, 3, 1)).dates().count(), 1);
    }
}
