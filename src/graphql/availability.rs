//! `courtAvailability`: free and taken slots of many courts on a date in one reservations query.

use std::collections::HashMap;

use async_graphql::{Context, Object, SimpleObject, ID};

use super::{
    context::{parse_id, request},
    dashboard::schedule_of,
    scalars::{Date, LocalTime},
    types::{Club, Court},
};
use crate::{
    domain::{
        access::ClubAccess,
        schedule::{minute_of, time_of},
        slots::{court_slots, slot_bounds, SLOT_MINUTES_RANGE},
    },
    error::{ApiError, ApiResult},
};

/// One slot.
#[derive(SimpleObject)]
pub struct Slot {
    start: LocalTime,
    end: LocalTime,
    available: bool,
}

/// One court's slots.
#[derive(SimpleObject)]
pub struct CourtSlots {
    court: Court,
    available_count: i32,
    slots: Vec<Slot>,
}

/// Slots of a club's courts on a date.
#[derive(SimpleObject)]
pub struct CourtAvailability {
    club: Club,
    date: Date,
    slot_minutes: i32,
    courts: Vec<CourtSlots>,
}

/// Queries of the availability domain.
#[derive(Default)]
pub struct AvailabilityQuery;

#[Object]
impl AvailabilityQuery {
    /// Slots of `slotMinutes` (15–240) from opening time for the club's active courts (or the
    /// `courtIds` among them); courts in maintenance have every slot taken.
    async fn court_availability(
        &self,
        ctx: &Context<'_>,
        club_id: ID,
        date: Date,
        court_ids: Option<Vec<ID>>,
        #[graphql(default = 90)] slot_minutes: i32,
    ) -> ApiResult<CourtAvailability> {
        let request = request(ctx);
        let club_id = parse_id(&club_id, "club")?;
        let size = u32::try_from(slot_minutes).ok().filter(|m| SLOT_MINUTES_RANGE.contains(m)).ok_or_else(|| {
            ApiError::bad_input(format!(
                "slotMinutes must be between {} and {}",
                SLOT_MINUTES_RANGE.start(),
                SLOT_MINUTES_RANGE.end()
            ))
        })?;
        let wanted: Option<Vec<i64>> =
            court_ids.map(|ids| ids.iter().map(|id| parse_id(id, "court")).collect::<ApiResult<_>>()).transpose()?;
        let (layout, _) = request.club_layout(club_id, ClubAccess::Player).await?;
        let active: Vec<_> = layout.courts.iter().filter(|c| c.is_active).collect();
        let courts: Vec<_> = match &wanted {
            None => active,
            Some(ids) => {
                if let Some(bad) = ids.iter().find(|id| !active.iter().any(|c| c.id == **id)) {
                    return Err(ApiError::bad_input(format!("court {bad} is not an active court of this club")));
                }
                active.into_iter().filter(|c| ids.contains(&c.id)).collect()
            }
        };
        let schedule = schedule_of(&layout);
        let bounds = slot_bounds(schedule.intervals(date.0), size);
        let mut busy: HashMap<i64, Vec<(u32, u32)>> = HashMap::new();
        if !bounds.is_empty() && !courts.is_empty() {
            for row in request.store.busy_intervals(club_id, date.0).await? {
                busy.entry(row.court_id).or_default().push((minute_of(row.start_time), minute_of(row.end_time)));
            }
        }
        let courts = courts
            .into_iter()
            .map(|court| {
                let slots = court_slots(&bounds, busy.get(&court.id).map(Vec::as_slice).unwrap_or(&[]), court.is_maintenance);
                CourtSlots {
                    available_count: slots.iter().filter(|s| s.available).count() as i32,
                    slots: slots
                        .into_iter()
                        .map(|s| Slot { start: LocalTime(time_of(s.start)), end: LocalTime(time_of(s.end)), available: s.available })
                        .collect(),
                    court: Court(court.clone()),
                }
            })
            .collect();
        Ok(CourtAvailability { club: Club(layout.club), date, slot_minutes, courts })
    }
}
