//! Dashboard arithmetic: turns grouped reservation counts into period, court, day and hour stats.
//!
//! The store returns a handful of grouped rows ([`Aggregate`]); everything derived (occupancy,
//! change against the previous period, zero-filled days) is computed here, without I/O.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{money::Cents, period::DateRange, schedule::WeeklySchedule, ReservationStatus};

/// Count, revenue base and duration of a group of reservations of one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Reservations in the group.
    pub count: i64,
    /// Sum of their prices.
    pub cents: i64,
    /// Sum of their durations.
    pub minutes: i64,
}

/// One grouped row from the store. Field names say what they hold: `current` is true for the
/// current period, false for the previous one.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    /// Per period (current or previous) and status.
    Period {
        current: bool,
        status: ReservationStatus,
        tally: Tally,
    },
    /// Per court and status, current period.
    Court {
        court_id: i64,
        status: ReservationStatus,
        tally: Tally,
    },
    /// Per date and status, current period.
    Day {
        date: NaiveDate,
        status: ReservationStatus,
        tally: Tally,
    },
    /// Non-cancelled reservations starting in an hour, current period.
    Hour { hour: i64, count: i64 },
    /// Distinct creators of non-cancelled reservations per period.
    Players { current: bool, count: i64 },
}

/// Totals of one period.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PeriodStats {
    /// Non-cancelled reservations.
    pub reservations: i64,
    /// Per-status counts (all statuses).
    pub pending: i64,
    /// Confirmed.
    pub confirmed: i64,
    /// Completed.
    pub completed: i64,
    /// Cancelled.
    pub cancelled: i64,
    /// No-shows.
    pub no_show: i64,
    /// Sum of CONFIRMED, COMPLETED and NO_SHOW prices.
    pub revenue: Cents,
    /// Sum of non-cancelled durations.
    pub booked_minutes: i64,
    /// Opening minutes × active courts over the period.
    pub open_minutes: i64,
    /// booked / open, 0 when open is 0.
    pub occupancy_rate: f64,
    /// Distinct creators of non-cancelled reservations.
    pub unique_players: i64,
}

/// Percentage change from the previous period; `None` when the previous value is 0.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PeriodChange {
    /// Change in non-cancelled reservations.
    pub reservations_pct: Option<f64>,
    /// Change in revenue.
    pub revenue_pct: Option<f64>,
    /// Change in occupancy rate.
    pub occupancy_pct: Option<f64>,
}

/// Stats of one active court over the current period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CourtStats {
    /// The court.
    pub court_id: i64,
    /// Non-cancelled reservations.
    pub reservations: i64,
    /// Non-cancelled minutes.
    pub booked_minutes: i64,
    /// booked / this court's opening minutes.
    pub occupancy_rate: f64,
    /// Revenue.
    pub revenue: Cents,
}

/// Stats of one date of the current period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DayStats {
    /// The date.
    pub date: NaiveDate,
    /// Non-cancelled reservations.
    pub reservations: i64,
    /// Revenue.
    pub revenue: Cents,
    /// booked / (opening minutes × active courts) that day.
    pub occupancy_rate: f64,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DashboardStats {
    /// Current period.
    pub current: PeriodStats,
    /// The period before.
    pub previous: PeriodStats,
    /// Current against previous.
    pub change: PeriodChange,
    /// One entry per active court, in the given order.
    pub courts: Vec<CourtStats>,
    /// One entry per date of the current period.
    pub daily: Vec<DayStats>,
    /// (hour, non-cancelled reservations starting then), hours with reservations, ascending.
    pub peak_hours: Vec<(i64, i64)>,
}

/// What the arithmetic needs besides the grouped rows.
#[derive(Debug, Clone)]
pub struct DashboardInput<'a> {
    /// The club's opening hours.
    pub schedule: &'a WeeklySchedule,
    /// Active courts (in maintenance or not), in display order.
    pub active_court_ids: &'a [i64],
    /// The current period.
    pub current: DateRange,
    /// The period before it.
    pub previous: DateRange,
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn change(current: f64, previous: f64) -> Option<f64> {
    (previous != 0.0).then(|| (current - previous) / previous * 100.0)
}

fn add(stats: &mut PeriodStats, status: ReservationStatus, tally: Tally) {
    match status {
        ReservationStatus::Pending => stats.pending += tally.count,
        ReservationStatus::Confirmed => stats.confirmed += tally.count,
        ReservationStatus::Completed => stats.completed += tally.count,
        ReservationStatus::Cancelled => stats.cancelled += tally.count,
        ReservationStatus::NoShow => stats.no_show += tally.count,
    }
    if status.holds_court() {
        stats.reservations += tally.count;
        stats.booked_minutes += tally.minutes;
    }
    if status.earns_revenue() {
        stats.revenue.0 += tally.cents;
    }
}

/// Opening minutes of one court over a range.
fn court_open_minutes(schedule: &WeeklySchedule, range: DateRange) -> i64 {
    range.dates().map(|d| schedule.open_minutes(d)).sum()
}

/// Computes the dashboard from grouped rows.
pub fn compute(input: &DashboardInput<'_>, rows: &[Aggregate]) -> DashboardStats {
    let courts_n = input.active_court_ids.len() as i64;
    let mut current = PeriodStats::default();
    let mut previous = PeriodStats::default();
    let mut per_court: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut per_day: BTreeMap<NaiveDate, (i64, i64, i64)> = BTreeMap::new();
    let mut peak_hours = Vec::new();
    for row in rows {
        match *row {
            Aggregate::Period {
                current: is_current,
                status,
                tally,
            } => add(
                if is_current {
                    &mut current
                } else {
                    &mut previous
                },
                status,
                tally,
            ),
            Aggregate::Court {
                court_id,
                status,
                tally,
            } => {
                let entry = per_court.entry(court_id).or_default();
                accumulate(entry, status, tally);
            }
            Aggregate::Day {
                date,
                status,
                tally,
            } => {
                let entry = per_day.entry(date).or_default();
                accumulate(entry, status, tally);
            }
            Aggregate::Hour { hour, count } => {
                if count > 0 {
                    peak_hours.push((hour, count))
                }
            }
            Aggregate::Players {
                current: is_current,
                count,
            } => {
                if is_current {
                    current.unique_players = count
                } else {
                    previous.unique_players = count
                }
            }
        }
    }
    peak_hours.sort_unstable();
    for (stats, range) in [
        (&mut current, input.current),
        (&mut previous, input.previous),
    ] {
        stats.open_minutes = court_open_minutes(input.schedule, range) * courts_n;
        stats.occupancy_rate = ratio(stats.booked_minutes, stats.open_minutes);
    }
    let court_open = court_open_minutes(input.schedule, input.current);
    let courts = input
        .active_court_ids
        .iter()
        .map(|&court_id| {
            let (reservations, minutes, cents) =
                per_court.get(&court_id).copied().unwrap_or_default();
            CourtStats {
                court_id,
                reservations,
                booked_minutes: minutes,
                occupancy_rate: ratio(minutes, court_open),
                revenue: Cents(cents),
            }
        })
        .collect();
    let daily = input
        .current
        .dates()
        .map(|date| {
            let (reservations, minutes, cents) = per_day.get(&date).copied().unwrap_or_default();
            DayStats {
                date,
                reservations,
                revenue: Cents(cents),
                occupancy_rate: ratio(minutes, input.schedule.open_minutes(date) * courts_n),
            }
        })
        .collect();
    let change = PeriodChange {
        reservations_pct: change(current.reservations as f64, previous.reservations as f64),
        revenue_pct: change(current.revenue.0 as f64, previous.revenue.0 as f64),
        occupancy_pct: change(current.occupancy_rate, previous.occupancy_rate),
    };
    DashboardStats {
        current,
        previous,
        change,
        courts,
        daily,
        peak_hours,
    }
}

/// Adds a status tally to a (reservations, booked minutes, revenue cents) triple.
fn accumulate(entry: &mut (i64, i64, i64), status: ReservationStatus, tally: Tally) {
    if status.holds_court() {
        entry.0 += tally.count;
        entry.1 += tally.minutes;
    }
    if status.earns_revenue() {
        entry.2 += tally.cents;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{period::period_range, Period};

    #[test]
    fn totals_occupancy_and_change_follow_the_rules() {
        let schedule = WeeklySchedule::from_rows((1..=7).map(|d| (d, 600, 1200))); // 600 min/day
        let day = NaiveDate::from_ymd_opt(2026, 11, 18).unwrap();
        let input = DashboardInput {
            schedule: &schedule,
            active_court_ids: &[1, 2],
            current: period_range(Period::Day, day),
            previous: period_range(Period::Day, day.pred_opt().unwrap()),
        };
        let t = |count, cents, minutes| Tally {
            count,
            cents,
            minutes,
        };
        let rows = vec![
            Aggregate::Period {
                current: true,
                status: ReservationStatus::Confirmed,
                tally: t(2, 6000, 180),
            },
            Aggregate::Period {
                current: true,
                status: ReservationStatus::Pending,
                tally: t(1, 3000, 90),
            },
            Aggregate::Period {
                current: true,
                status: ReservationStatus::Cancelled,
                tally: t(1, 3000, 90),
            },
            Aggregate::Period {
                current: false,
                status: ReservationStatus::Completed,
                tally: t(1, 3000, 60),
            },
            Aggregate::Court {
                court_id: 1,
                status: ReservationStatus::Confirmed,
                tally: t(2, 6000, 180),
            },
            Aggregate::Court {
                court_id: 1,
                status: ReservationStatus::Cancelled,
                tally: t(1, 3000, 90),
            },
            Aggregate::Hour { hour: 18, count: 2 },
            Aggregate::Hour { hour: 9, count: 1 },
            Aggregate::Players {
                current: true,
                count: 2,
            },
        ];
        let stats = compute(&input, &rows);
        assert_eq!(stats.current.reservations, 3);
        assert_eq!(stats.current.cancelled, 1);
        assert_eq!(stats.current.revenue, Cents(6000));
        assert_eq!(stats.current.booked_minutes, 270);
        assert_eq!(stats.current.open_minutes, 1200);
        assert!((stats.current.occupancy_rate - 270.0 / 1200.0).abs() < 1e-12);
        assert_eq!(stats.change.reservations_pct, Some(200.0));
        assert_eq!(stats.change.revenue_pct, Some(100.0));
        assert_eq!(stats.courts.len(), 2);
        assert_eq!(stats.courts[1].reservations, 0);
        assert!((stats.courts[0].occupancy_rate - 180.0 / 600.0).abs() < 1e-12);
        assert_eq!(stats.peak_hours, vec![(9, 1), (18, 2)]);
        assert_eq!(stats.daily.len(), 1);
        assert_eq!(stats.current.unique_players, 2);
    }

    #[test]
    fn change_is_null_when_the_previous_period_is_empty() {
        let schedule = WeeklySchedule::default();
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let input = DashboardInput {
            schedule: &schedule,
            active_court_ids: &[],
            current: period_range(Period::Month, day),
            previous: period_range(Period::Month, day.pred_opt().unwrap()),
        };
        let stats = compute(&input, &[]);
        assert_eq!(stats.change, PeriodChange::default());
        assert_eq!(stats.current.occupancy_rate, 0.0);
        assert_eq!(stats.daily.len(), 31);
    }
}
