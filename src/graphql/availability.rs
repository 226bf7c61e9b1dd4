//! `courtAvailability`: free and taken slots of many courts on a date in one reservations query.

use async_graphql::{Context, Object, SimpleObject, ID};

use super::{
    context::{parse_id, request},
    scalars::{Date, LocalTime},
    types::{Club, Court},
};
use crate::{
    cache::Kind,
    domain::{access::ClubAccess, schedule::time_of, slots::SLOT_MINUTES_RANGE},
    error::{ApiError, ApiResult},
    reads,
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
        let size = u32::try_from(slot_minutes)
            .ok()
            .filter(|m| SLOT_MINUTES_RANGE.contains(m))
            .ok_or_else(|| {
                ApiError::bad_input(format!(
                    "slotMinutes must be between {} and {}",
                    SLOT_MINUTES_RANGE.start(),
                    SLOT_MINUTES_RANGE.end()
                ))
            })?;
        let wanted: Option<Vec<i64>> = court_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| parse_id(id, "court"))
                    .collect::<ApiResult<_>>()
            })
            .transpose()?;
        let (layout, _) = request.club_layout(club_id, ClubAccess::Player).await?;
        request.check_date(&layout.club, date.0)?;
        if let Some(ids) = &wanted {
            if let Some(bad) = ids
                .iter()
                .find(|id| !layout.courts.iter().any(|c| c.id == **id && c.is_active))
            {
                return Err(ApiError::bad_input(format!(
                    "court {bad} is not an active court of this club"
                )));
            }
        }
        let (slots, outcome) = reads::availability(
            &request.cache,
            &request.store,
            &layout,
            date.0,
            wanted.as_deref(),
            size,
        )
        .await?;
        request.trace(Kind::CourtAvailability, outcome);
        let courts = slots
            .into_iter()
            .filter_map(|value| {
                let court = layout
                    .courts
                    .iter()
                    .find(|c| c.id == value.court_id)?
                    .clone();
                Some(CourtSlots {
                    available_count: value.slots.iter().filter(|s| s.available).count() as i32,
                    slots: value
                        .slots
                        .into_iter()
                        .map(|s| Slot {
                            start: LocalTime(time_of(s.start)),
                            end: LocalTime(time_of(s.end)),
                            available: s.available,
                        })
                        .collect(),
                    court: Court(court),
                })
            })
            .collect();
        Ok(CourtAvailability {
            club: Club(layout.club),
            date,
            slot_minutes,
            courts,
        })
    }
}
