//! Rules a new reservation must satisfy before it reaches the database.

use chrono::{NaiveDate, NaiveTime, Timelike};

use super::schedule::{minute_of, WeeklySchedule};

/// Reservations start and end on these boundaries.
pub const BOOKING_GRANULARITY_MINUTES: u32 = 15;

/// Why a booking request is refused before touching the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingRuleError {
    /// The date lies before today in the club's time zone.
    #[error("the date {date} is in the past for this club (today is {today})")]
    InThePast {
        /// Requested date.
        date: NaiveDate,
        /// Today, club time.
        today: NaiveDate,
    },
    /// `start` is not before `end`.
    #[error("start must be before end")]
    EmptyInterval,
    /// A time is not on a 15-minute boundary.
    #[error("start and end must be on 15-minute boundaries")]
    OffGrid,
    /// The interval is not inside one opening interval of that day.
    #[error("the club is not open for the whole of that time")]
    OutsideOpeningHours,
}

/// Checks date, interval and opening hours for a booking of `[start, end)` on `date`.
pub fn check_booking(
    schedule: &WeeklySchedule,
    today: NaiveDate,
    date: NaiveDate,
    start: NaiveTime,
    end: NaiveTime,
) -> Result<(), BookingRuleError> {
    if date < today {
        return Err(BookingRuleError::InThePast { date, today });
    }
    let on_grid = |t: NaiveTime| {
        t.second() == 0 && t.nanosecond() == 0 && t.minute() % BOOKING_GRANULARITY_MINUTES == 0
    };
    if !on_grid(start) || !on_grid(end) {
        return Err(BookingRuleError::OffGrid);
    }
    if start >= end {
        return Err(BookingRuleError::EmptyInterval);
    }
    if !schedule.covers(date, minute_of(start), minute_of(end)) {
        return Err(BookingRuleError::OutsideOpeningHours);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn accepts_a_future_slot_inside_opening_hours_and_refuses_the_rest() {
        // Every day 08:00-22:00.
        let schedule = WeeklySchedule::from_rows((1..=7).map(|d| (d, 480, 1320)));
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let tomorrow = today.succ_opt().unwrap();
        assert_eq!(
            check_booking(&schedule, today, today, t(18, 0), t(19, 30)),
            Ok(())
        );
        assert!(matches!(
            check_booking(
                &schedule,
                today,
                today.pred_opt().unwrap(),
                t(18, 0),
                t(19, 0)
            ),
            Err(BookingRuleError::InThePast { .. })
        ));
        assert_eq!(
            check_booking(&schedule, today, tomorrow, t(18, 10), t(19, 0)),
            Err(BookingRuleError::OffGrid)
        );
        assert_eq!(
            check_booking(&schedule, today, tomorrow, t(19, 0), t(19, 0)),
            Err(BookingRuleError::EmptyInterval)
        );
        assert_eq!(
            check_booking(&schedule, today, tomorrow, t(21, 0), t(22, 30)),
            Err(BookingRuleError::OutsideOpeningHours)
        );
        assert_eq!(
            check_booking(&schedule, today, tomorrow, t(7, 45), t(9, 0)),
            Err(BookingRuleError::OutsideOpeningHours)
        );
    }
}
