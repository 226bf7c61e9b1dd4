//! `dashboard`: a club's analytics for a period in two statements (layout + one aggregate).

use async_graphql::{Context, Object, SimpleObject, ID};

use super::{
    context::{parse_id, request},
    leaves::{leaves, LeafList},
    scalars::{Date, Decimal},
    types::{Club, Court, Period},
};
use crate::{
    cache::Kind,
    domain::{access::ClubAccess, dashboard, period::period_range},
    error::ApiResult,
    reads,
};

/// Totals of one period.
#[derive(SimpleObject)]
pub struct PeriodStats {
    reservations: i32,
    pending: i32,
    confirmed: i32,
    completed: i32,
    cancelled: i32,
    no_show: i32,
    revenue: Decimal,
    booked_minutes: i32,
    open_minutes: i32,
    occupancy_rate: f64,
    unique_players: i32,
}

/// Percentage change against the previous period; null when the previous value is 0.
#[derive(SimpleObject)]
pub struct PeriodChange {
    reservations_pct: Option<f64>,
    revenue_pct: Option<f64>,
    occupancy_pct: Option<f64>,
}

/// One active court over the period.
#[derive(SimpleObject)]
pub struct CourtStats {
    court: Court,
    reservations: i32,
    booked_minutes: i32,
    occupancy_rate: f64,
    revenue: Decimal,
}

/// One date of the period.
#[derive(SimpleObject)]
pub struct DayStats {
    date: Date,
    reservations: i32,
    revenue: Decimal,
    occupancy_rate: f64,
}

leaves!(DayStats { "date" => date, "reservations" => reservations, "revenue" => revenue, "occupancyRate" => occupancy_rate });

/// Reservations starting in one hour of the day.
#[derive(SimpleObject)]
pub struct HourStats {
    hour: i32,
    reservations: i32,
}

leaves!(HourStats { "hour" => hour, "reservations" => reservations });

/// A club's analytics for a period.
#[derive(SimpleObject)]
pub struct ClubDashboard {
    club: Club,
    period: Period,
    from: Date,
    to: Date,
    current: PeriodStats,
    previous: PeriodStats,
    change: PeriodChange,
    courts: Vec<CourtStats>,
    daily: LeafList<DayStats>,
    peak_hours: LeafList<HourStats>,
}

/// Saturating conversion for GraphQL `Int` (32-bit).
fn int(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

fn period_stats(s: &dashboard::PeriodStats) -> PeriodStats {
    PeriodStats {
        reservations: int(s.reservations),
        pending: int(s.pending),
        confirmed: int(s.confirmed),
        completed: int(s.completed),
        cancelled: int(s.cancelled),
        no_show: int(s.no_show),
        revenue: Decimal(s.revenue),
        booked_minutes: int(s.booked_minutes),
        open_minutes: int(s.open_minutes),
        occupancy_rate: s.occupancy_rate,
        unique_players: int(s.unique_players),
    }
}

/// Queries of the analytics domain.
#[derive(Default)]
pub struct DashboardQuery;

#[Object]
impl DashboardQuery {
    /// A club's analytics for the period holding `date` (today in the club's time zone by
    /// default). Needs MANAGER, organization OWNER/ADMIN or superuser.
    async fn dashboard(
        &self,
        ctx: &Context<'_>,
        club_id: ID,
        #[graphql(default_with = "Period::Month")] period: Period,
        date: Option<Date>,
    ) -> ApiResult<ClubDashboard> {
        let request = request(ctx);
        let club_id = parse_id(&club_id, "club")?;
        let (layout, _) = request.club_layout(club_id, ClubAccess::Manager).await?;
        if let Some(date) = date {
            request.check_date(&layout.club, date.0)?;
        }
        let anchor = date
            .map(|d| d.0)
            .unwrap_or_else(|| request.today_at(&layout.club));
        let current = period_range(period.into(), anchor);
        let (stats, outcome) = reads::dashboard(
            &request.cache,
            &request.store,
            &layout,
            period.into(),
            anchor,
        )
        .await?;
        request.trace(Kind::Dashboard, outcome);
        Ok(ClubDashboard {
            period,
            from: Date(current.from),
            to: Date(current.to),
            current: period_stats(&stats.current),
            previous: period_stats(&stats.previous),
            change: PeriodChange {
                reservations_pct: stats.change.reservations_pct,
                revenue_pct: stats.change.revenue_pct,
                occupancy_pct: stats.change.occupancy_pct,
            },
            courts: stats
                .courts
                .iter()
                .filter_map(|s| Some((s, layout.courts.iter().find(|c| c.id == s.court_id)?)))
                .map(|(s, court)| CourtStats {
                    court: Court(court.clone()),
                    reservations: int(s.reservations),
                    booked_minutes: int(s.booked_minutes),
                    occupancy_rate: s.occupancy_rate,
                    revenue: Decimal(s.revenue),
                })
                .collect(),
            daily: stats
                .daily
                .iter()
                .map(|d| DayStats {
                    date: Date(d.date),
                    reservations: int(d.reservations),
                    revenue: Decimal(d.revenue),
                    occupancy_rate: d.occupancy_rate,
                })
                .collect(),
            peak_hours: stats
                .peak_hours
                .iter()
                .map(|(h, n)| HourStats {
                    hour: int(*h),
                    reservations: int(*n),
                })
                .collect(),
            club: Club(layout.club),
        })
    }
}
