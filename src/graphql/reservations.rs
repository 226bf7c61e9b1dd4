//! Clubs, reservations and courts: the `club`, `reservation` and `reservations` queries and the
//! booking mutations.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::Utc;

use super::{
    context::{parse_id, request, Granted, RequestContext},
    loaders::{CourtId, UserId},
    scalars::{Date, LocalTime},
    types::{Club, Court, Reservation, ReservationStatus},
};
use crate::{
    cache::tags,
    domain::{
        access::ClubAccess,
        booking::{check_booking, check_cancellation, check_horizon},
        money::Cents,
        schedule::minute_of,
        ReservationStatus as Status,
    },
    error::{ApiError, ApiResult, StoreError},
    reads::schedule_of,
    store::{CourtRow, NewReservation, Quota, ReservationRow},
};

/// The club's wall clock now (UTC when its zone is unknown).
fn club_now(timezone: &str) -> chrono::NaiveDateTime {
    let now = Utc::now();
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(zone) => now.with_timezone(&zone).naive_local(),
        Err(_) => now.naive_utc(),
    }
}

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A booking request.
#[derive(InputObject)]
pub struct CreateReservationInput {
    court_id: ID,
    date: Date,
    start: LocalTime,
    end: LocalTime,
    /// Retrying with the same key returns the first reservation instead of booking again.
    idempotency_key: Option<String>,
}

/// Queries of the booking domain.
#[derive(Default)]
pub struct ReservationQuery;

/// A reservation the caller may see: its club must be visible, and players see only their own.
/// Anything else is NOT_FOUND, exactly like an id that does not exist.
async fn visible_reservation(
    request: &RequestContext,
    id: i64,
) -> ApiResult<(ReservationRow, Granted)> {
    let principal = request.principal().await?;
    let row = request
        .store
        .reservation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("reservation"))?;
    let (_, access) = request
        .club(row.club_id, ClubAccess::Player)
        .await
        .map_err(|e| {
            if matches!(e, ApiError::NotFound(_)) {
                ApiError::not_found("reservation")
            } else {
                e
            }
        })?;
    if !access.at_least(ClubAccess::Staff) && row.created_by_id != principal.user.id {
        return Err(ApiError::not_found("reservation"));
    }
    Ok((row, access))
}

#[Object]
impl ReservationQuery {
    /// A club the caller can see (NOT_FOUND otherwise).
    async fn club(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Club>> {
        let id = parse_id(&id, "club")?;
        let (club, _) = request(ctx).club(id, ClubAccess::Player).await?;
        Ok(Some(Club(club)))
    }

    /// A reservation the caller can see (NOT_FOUND otherwise).
    async fn reservation(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Reservation>> {
        let id = parse_id(&id, "reservation")?;
        let (row, _) = visible_reservation(request(ctx), id).await?;
        Ok(Some(Reservation(row)))
    }

    /// A club's reservations on a date, every status unless `status` narrows them. STAFF and
    /// above see all; players see their own.
    #[graphql(complexity = "50 * child_complexity")]
    async fn reservations(
        &self,
        ctx: &Context<'_>,
        club_id: ID,
        date: Date,
        status: Option<Vec<ReservationStatus>>,
    ) -> ApiResult<Vec<Reservation>> {
        let request = request(ctx);
        let club_id = parse_id(&club_id, "club")?;
        // The layout brings the club's courts into the DataLoader with the access check.
        let (layout, access) = request.club_layout(club_id, ClubAccess::Player).await?;
        request.check_date(&layout.club, date.0)?;
        let created_by = if !access.at_least(ClubAccess::Staff) {
            Some(request.principal().await?.user.id)
        } else {
            None
        };
        let statuses: Option<Vec<Status>> = status.map(|s| s.into_iter().map(Into::into).collect());
        let rows = request
            .store
            .reservations_on(club_id, date.0, created_by, statuses.as_deref())
            .await?;
        // Every creator in one statement, handed to the loader that `createdBy` reads from: the
        // keys are all known here, so the loader's batching delay (1 ms) would buy nothing.
        if ctx.look_ahead().field("createdBy").exists() {
            let mut ids: Vec<i64> = rows.iter().map(|r| r.created_by_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let users = request.loaders.loader().users_now(&ids).await?;
            request
                .loaders
                .feed_many(users.into_iter().map(|u| (UserId(u.id), u)))
                .await;
        }
        Ok(rows.into_iter().map(Reservation).collect())
    }
}

/// Mutations of the booking domain.
#[derive(Default)]
pub struct ReservationMutation;

/// Whether an existing reservation is the one a retried request asks for.
fn same_booking(row: &ReservationRow, court_id: i64, input: &CreateReservationInput) -> bool {
    row.court_id == court_id
        && row.date == input.date.0
        && row.start_time == input.start.0
        && row.end_time == input.end.0
}

/// The answer to a request whose idempotency key was used before.
fn replay(
    row: ReservationRow,
    court_id: i64,
    input: &CreateReservationInput,
) -> ApiResult<Reservation> {
    if same_booking(&row, court_id, input) {
        Ok(Reservation(row))
    } else {
        Err(ApiError::bad_input(
            "this idempotencyKey was already used for a different reservation",
        ))
    }
}

#[Object]
impl ReservationMutation {
    /// Books a court. CONFLICT when the time overlaps a live reservation of the court; the same
    /// `idempotencyKey` from the same user returns the first reservation.
    async fn create_reservation(
        &self,
        ctx: &Context<'_>,
        input: CreateReservationInput,
    ) -> ApiResult<Reservation> {
        let request = request(ctx);
        let user_id = request.principal().await?.user.id;
        let court_id = parse_id(&input.court_id, "court")?;
        let key = input.idempotency_key.as_deref();
        if let Some(key) = key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
                return Err(ApiError::bad_input(format!(
                    "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
                )));
            }
            if let Some(row) = request
                .store
                .reservation_by_idempotency_key(user_id, key)
                .await?
            {
                return replay(row, court_id, &input);
            }
        }
        let court = court_by_id(request, court_id).await?;
        let (layout, access) = request
            .club_layout(court.club_id, ClubAccess::Player)
            .await
            .map_err(court_not_found)?;
        let court = layout
            .courts
            .iter()
            .find(|c| c.id == court_id)
            .ok_or_else(|| ApiError::not_found("court"))?;
        if !court.is_active || court.is_maintenance {
            return Err(ApiError::bad_input(
                "the court is not bookable (inactive or in maintenance)",
            ));
        }
        let today = request.today_at(&layout.club);
        check_booking(
            &schedule_of(&layout),
            today,
            input.date.0,
            input.start.0,
            input.end.0,
        )
        .map_err(|e| ApiError::bad_input(e.to_string()))?;
        let rules = request
            .store
            .booking_rules(layout.club.id)
            .await?
            .ok_or_else(|| ApiError::not_found("court"))?;
        check_horizon(
            today,
            input.date.0,
            u32::try_from(rules.booking_horizon_days).unwrap_or(0),
        )
        .map_err(|e| ApiError::bad_input(e.to_string()))?;
        // Players have a quota of live bookings at the club; staff and above book for others.
        let quota = (!access.at_least(ClubAccess::Staff)).then(|| {
            let now = club_now(&layout.club.timezone);
            Quota {
                max_active: i64::from(rules.max_active_bookings),
                today: now.date(),
                now: now.time(),
            }
        });
        let minutes = i64::from(minute_of(input.end.0) - minute_of(input.start.0));
        let new = NewReservation {
            club_id: layout.club.id,
            court_id,
            created_by_id: user_id,
            date: input.date.0,
            start_time: input.start.0,
            end_time: input.end.0,
            status: Status::Confirmed,
            price: Cents::for_minutes(court.price_per_hour(), minutes),
            idempotency_key: key.map(str::to_string),
        };
        match request
            .store
            .insert_reservation(&new, Utc::now(), quota)
            .await
        {
            Ok(row) => {
                // Before answering: once the client sees the booking, no replica serves the old slots.
                request
                    .cache
                    .invalidate(&tags::booking_change(row.club_id, row.date))
                    .await;
                Ok(Reservation(row))
            }
            // A concurrent request with the same key may have won the race: answer with its row.
            Err(error @ (StoreError::Overlap | StoreError::IdempotencyKeyTaken)) => match key {
                Some(key) => match request
                    .store
                    .reservation_by_idempotency_key(user_id, key)
                    .await?
                {
                    Some(row) => replay(row, court_id, &input),
                    None => Err(error.into()),
                },
                None => Err(error.into()),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// Cancels a pending or confirmed reservation (its creator, club STAFF/MANAGER, or an
    /// organization OWNER/ADMIN). Cancelling a cancelled reservation returns it unchanged.
    async fn cancel_reservation(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Reservation> {
        let request = request(ctx);
        let id = parse_id(&id, "reservation")?;
        let (row, access) = visible_reservation(request, id).await?;
        match row.status() {
            Status::Cancelled => return Ok(Reservation(row)),
            Status::Completed | Status::NoShow => {
                return Err(ApiError::bad_input(
                    "only pending or confirmed reservations can be cancelled",
                ))
            }
            Status::Pending | Status::Confirmed => {}
        }
        if !access.at_least(ClubAccess::Staff) {
            let (club, _) = request.club(row.club_id, ClubAccess::Player).await?;
            let cutoff = request
                .store
                .booking_rules(row.club_id)
                .await?
                .map_or(0, |r| r.cancellation_cutoff_minutes);
            check_cancellation(
                club_now(&club.timezone),
                row.date,
                row.start_time,
                u32::try_from(cutoff).unwrap_or(0),
            )
            .map_err(|e| ApiError::bad_input(e.to_string()))?;
        }
        // Conditional: a racing cancellation that got there first leaves nothing to change, and
        // this one answers with the row as that one left it (invalidating nothing twice).
        let Some(row) = request.store.cancel_reservation(id, Utc::now()).await? else {
            let row = request
                .store
                .reservation(id)
                .await?
                .ok_or_else(|| ApiError::not_found("reservation"))?;
            return match row.status() {
                Status::Cancelled => Ok(Reservation(row)),
                _ => Err(ApiError::bad_input(
                    "only pending or confirmed reservations can be cancelled",
                )),
            };
        };
        request
            .cache
            .invalidate(&tags::booking_change(row.club_id, row.date))
            .await;
        Ok(Reservation(row))
    }

    /// Puts a court in or out of maintenance (MANAGER or organization OWNER/ADMIN).
    async fn set_court_maintenance(
        &self,
        ctx: &Context<'_>,
        court_id: ID,
        in_maintenance: bool,
    ) -> ApiResult<Court> {
        let request = request(ctx);
        let court_id = parse_id(&court_id, "court")?;
        let court = court_by_id(request, court_id).await?;
        request
            .club(court.club_id, ClubAccess::Manager)
            .await
            .map_err(court_not_found)?;
        let court = request
            .store
            .set_court_maintenance(court_id, in_maintenance)
            .await?
            .ok_or_else(|| ApiError::not_found("court"))?;
        request.cache.invalidate(&[tags::club(court.club_id)]).await;
        Ok(Court(court))
    }
}

/// The court a mutation names, read at once (as a batch of one) and handed to the loader for the
/// answer's `court` fields: mutations run one after another, so the loader would have nothing to
/// batch with and would only add its delay (1 ms).
async fn court_by_id(request: &RequestContext, court_id: i64) -> ApiResult<CourtRow> {
    let court = request
        .loaders
        .loader()
        .courts_now(&[court_id])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("court"))?;
    request
        .loaders
        .feed_one(CourtId(court.id), court.clone())
        .await;
    Ok(court)
}

/// A court of an invisible club is reported as a missing court.
fn court_not_found(error: ApiError) -> ApiError {
    match error {
        ApiError::NotFound(_) => ApiError::not_found("court"),
        other => other,
    }
}
