//! `courtAvailability`: free and taken slots of many courts on a date in one reservations query;
//! and `courtAvailabilityChanged`, the same answer again on every change the cache hears of.

use async_graphql::{Context, Object, SimpleObject, Subscription, ID};
use futures_util::Stream;

use super::{
    context::{parse_id, request, RequestContext},
    leaves::{leaves, LeafList},
    scalars::{Date, LocalTime},
    types::{Club, Court},
};
use crate::{
    cache::{keys::tags, Change, Kind},
    domain::{access::ClubAccess, schedule::time_of, slots::SLOT_MINUTES_RANGE},
    error::{ApiError, ApiResult},
    reads,
};

/// One slot.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct Slot {
    start: LocalTime,
    end: LocalTime,
    available: bool,
}

leaves!(Slot { "start" => start, "end" => end, "available" => available });

/// One court's slots.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct CourtSlots {
    court: Court,
    available_count: i32,
    slots: LeafList<Slot>,
}

/// Slots of a club's courts on a date.
#[derive(SimpleObject, Clone, PartialEq)]
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
        let wanted = Wanted::parse(&club_id, date, court_ids.as_deref(), slot_minutes)?;
        read(request(ctx), &wanted).await
    }
}

/// Subscriptions of the availability domain.
#[derive(Default)]
pub struct AvailabilitySubscription;

#[Subscription]
impl AvailabilitySubscription {
    /// The club's availability on a date: the current value at once, then again on every change.
    async fn court_availability_changed(
        &self,
        ctx: &Context<'_>,
        club_id: ID,
        date: Date,
        court_ids: Option<Vec<ID>>,
        #[graphql(default = 90)] slot_minutes: Option<i32>,
    ) -> Result<impl Stream<Item = ApiResult<CourtAvailability>>, ApiError> {
        let wanted = Wanted::parse(
            &club_id,
            date,
            court_ids.as_deref(),
            slot_minutes.unwrap_or(90),
        )?;
        let request = request(ctx);
        // Listening before the first read: a change between the two is not lost.
        let changes = request.cache.changes();
        let first = read(request, &wanted).await?;
        let live = Live {
            source: request.for_event(),
            wanted,
            changes,
            last: Some(first.clone()),
            done: false,
        };
        Ok(futures_util::stream::unfold(
            (Some(first), live),
            |(first, mut live)| async move {
                if let Some(first) = first {
                    return Some((Ok(first), (None, live)));
                }
                let next = live.next().await?;
                Some((next, (None, live)))
            },
        ))
    }
}

/// The arguments of both fields, checked.
struct Wanted {
    club_id: i64,
    date: Date,
    court_ids: Option<Vec<i64>>,
    size: u32,
    slot_minutes: i32,
}

impl Wanted {
    fn parse(
        club_id: &ID,
        date: Date,
        court_ids: Option<&[ID]>,
        slot_minutes: i32,
    ) -> ApiResult<Wanted> {
        let club_id = parse_id(club_id, "club")?;
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
        let court_ids = court_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| parse_id(id, "court"))
                    .collect::<ApiResult<_>>()
            })
            .transpose()?;
        Ok(Wanted {
            club_id,
            date,
            court_ids,
            size,
            slot_minutes,
        })
    }

    /// Whether a change makes this answer stale: the club's slots on the date, the club (its
    /// courts, schedule, state), the caller (memberships), or everything.
    fn stale_after(&self, change: &Change, user: Option<&str>) -> bool {
        let Change::Tags(tags) = change else {
            return true;
        };
        let club = tags::club(self.club_id);
        let slots = tags::club_slots(self.club_id, self.date.0);
        tags.iter()
            .any(|t| *t == club || *t == slots || t == tags::ALL || Some(t.as_str()) == user)
    }
}

/// The availability the caller may see (access checked, read through the cache).
async fn read(request: &RequestContext, wanted: &Wanted) -> ApiResult<CourtAvailability> {
    let (layout, _, busy) = request
        .club_layout_for_day(wanted.club_id, ClubAccess::Player, wanted.date.0)
        .await?;
    request.check_date(&layout.club, wanted.date.0)?;
    if let Some(ids) = &wanted.court_ids {
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
        wanted.date.0,
        wanted.court_ids.as_deref(),
        wanted.size,
        busy,
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
                slots: LeafList(
                    value
                        .slots
                        .into_iter()
                        .map(|s| Slot {
                            start: LocalTime(time_of(s.start)),
                            end: LocalTime(time_of(s.end)),
                            available: s.available,
                        })
                        .collect(),
                ),
                court: Court(court),
            })
        })
        .collect();
    Ok(CourtAvailability {
        club: Club(layout.club),
        date: wanted.date,
        slot_minutes: wanted.slot_minutes,
        courts,
    })
}

/// A live subscription between events: what it follows and what it sent last.
struct Live {
    /// Where each event's context comes from (the subscriber's caller).
    source: RequestContext,
    wanted: Wanted,
    changes: tokio::sync::broadcast::Receiver<Change>,
    /// The last value sent (an unchanged value is not sent again).
    last: Option<CourtAvailability>,
    /// An error was sent: the subscription completes.
    done: bool,
}

impl Live {
    /// The next value that differs from the last one sent, or the error that ends it.
    /// Changes that arrive together are read once (a slow subscriber gets the newest value).
    async fn next(&mut self) -> Option<ApiResult<CourtAvailability>> {
        if self.done {
            return None;
        }
        let user = match self.source.credentials() {
            crate::auth::Credentials::User(id) => Some(tags::user(*id)),
            _ => None,
        };
        loop {
            // After the invalidation channel was lost, the current value goes out even when it
            // looks unchanged: what the replica missed meanwhile is unknown.
            let mut resend;
            let mut stale = match self.changes.recv().await {
                Ok(change) => {
                    resend = matches!(change, Change::Resumed);
                    self.wanted.stale_after(&change, user.as_deref())
                }
                // What was dropped may have been a `Resumed`.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    resend = true;
                    true
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            loop {
                match self.changes.try_recv() {
                    Ok(change) => {
                        resend |= matches!(change, Change::Resumed);
                        stale |= self.wanted.stale_after(&change, user.as_deref());
                    }
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                        resend = true;
                        stale = true;
                    }
                    Err(_) => break,
                }
            }
            if !stale {
                continue;
            }
            if let Some(notes) = &self.source.topic {
                notes.woke();
            }
            // A fresh context: the principal and the access decision are read again, so a
            // revoked membership ends the subscription with its error.
            match read(&self.source.for_event(), &self.wanted).await {
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Ok(value) if !resend && self.last.as_ref() == Some(&value) => continue,
                Ok(value) => {
                    self.last = Some(value.clone());
                    return Some(Ok(value));
                }
            }
        }
    }
}
