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
    /// The date lies beyond the club's booking horizon.
    #[error(
        "booking_horizon_days: this club takes bookings at most {days} days ahead (until {last})"
    )]
    BeyondHorizon {
        /// The club's horizon.
        days: u32,
        /// The last bookable date.
        last: NaiveDate,
    },
    /// A player cancels too close to the start (or after it).
    #[error("cancellation window: players may cancel up to {minutes} minutes before the start")]
    TooLateToCancel {
        /// The club's cut-off.
        minutes: u32,
    },
}

/// A booking on `date` lies within `horizon_days` of the club's today.
pub fn check_horizon(
    today: NaiveDate,
    date: NaiveDate,
    horizon_days: u32,
) -> Result<(), BookingRuleError> {
    let last = today
        .checked_add_days(chrono::Days::new(horizon_days.into()))
        .unwrap_or(NaiveDate::MAX);
    if date > last {
        return Err(BookingRuleError::BeyondHorizon {
            days: horizon_days,
            last,
        });
    }
    Ok(())
}

/// A player may cancel a reservation starting at `date` `start` until `cutoff_minutes` before
/// it, by the club's wall clock `now` (staff and above any time: the caller decides that).
pub fn check_cancellation(
    now: chrono::NaiveDateTime,
    date: NaiveDate,
    start: NaiveTime,
    cutoff_minutes: u32,
) -> Result<(), BookingRuleError> {
    let latest = date.and_time(start) - chrono::Duration::minutes(cutoff_minutes.into());
    if now > latest {
        return Err(BookingRuleError::TooLateToCancel {
            minutes: cutoff_minutes,
        });
    }
    Ok(())
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

    #[test]
    fn the_horizon_and_the_cancellation_window_hold() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        assert!(check_horizon(today, day(31), 30).is_ok());
        assert!(matches!(
            check_horizon(today, NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(), 30),
            Err(BookingRuleError::BeyondHorizon { days: 30, .. })
        ));
        assert!(check_horizon(today, NaiveDate::MAX, 30).is_err());
        let at = |h: u32, m: u32| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        let now = day(1).and_time(at(16, 0));
        assert!(check_cancellation(now, day(1), at(18, 0), 120).is_ok());
        assert!(check_cancellation(now, day(1), at(17, 59), 120).is_err());
        assert!(check_cancellation(now, day(1), at(15, 0), 0).is_err());
        assert!(check_cancellation(now, day(2), at(9, 0), 120).is_ok());
    }

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
