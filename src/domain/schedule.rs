//! A club's weekly opening hours, in minutes since local midnight.

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

/// Minutes since local midnight.
pub type Minute = u32;

/// Converts a wall-clock time to minutes since midnight (seconds are dropped).
pub fn minute_of(time: NaiveTime) -> Minute {
    time.hour() * 60 + time.minute()
}

/// Converts minutes since midnight back to a wall-clock time.
pub fn time_of(minute: Minute) -> NaiveTime {
    NaiveTime::from_hms_opt(minute / 60, minute % 60, 0).expect("minute within a day")
}

/// Opening intervals per ISO weekday (index 0 = Monday … 6 = Sunday), sorted by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklySchedule {
    days: [Vec<(Minute, Minute)>; 7],
}

impl WeeklySchedule {
    /// Builds a schedule from `(weekday 1=Mon..7=Sun, opens, closes)` rows; rows with an invalid
    /// weekday or a non-positive length are ignored.
    pub fn from_rows(rows: impl IntoIterator<Item = (i32, Minute, Minute)>) -> Self {
        let mut schedule = WeeklySchedule::default();
        for (weekday, opens, closes) in rows {
            if (1..=7).contains(&weekday) && opens < closes {
                schedule.days[(weekday - 1) as usize].push((opens, closes));
            }
        }
        for day in &mut schedule.days {
            day.sort_unstable();
        }
        schedule
    }

    /// Opening intervals of the weekday of `date`.
    pub fn intervals(&self, date: NaiveDate) -> &[(Minute, Minute)] {
        &self.days[date.weekday().num_days_from_monday() as usize]
    }

    /// Minutes the club is open on `date`.
    pub fn open_minutes(&self, date: NaiveDate) -> i64 {
        self.intervals(date)
            .iter()
            .map(|(o, c)| i64::from(c - o))
            .sum()
    }

    /// Whether `[start, end)` lies inside one opening interval of `date`.
    pub fn covers(&self, date: NaiveDate, start: Minute, end: Minute) -> bool {
        self.intervals(date)
            .iter()
            .any(|(o, c)| *o <= start && end <= *c)
    }
}
