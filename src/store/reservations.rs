//! Reservations: reading a club's day, inserting one (with the booker's quota), cancelling.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use futures_util::TryFutureExt;

use super::{queries, BookingRules, BusyRow, Db, NewReservation, Quota, ReservationRow, Store};
use crate::{domain::ReservationStatus, error::StoreError};

impl Store {
    /// Non-cancelled intervals of a club's courts on a date.
    pub async fn busy_intervals(
        &self,
        club_id: i64,
        date: NaiveDate,
    ) -> Result<Vec<BusyRow>, StoreError> {
        Ok(on_pool!(self, queries::BUSY_INTERVALS, |pool| {
            sqlx::query_as(queries::BUSY_INTERVALS)
                .bind(club_id)
                .bind(date)
                .fetch_all(pool)
                .await
        })?)
    }

    /// Reservations of a club on a date (every status), optionally only one creator's, filtered
    /// to `statuses` when given.
    pub async fn reservations_on(
        &self,
        club_id: i64,
        date: NaiveDate,
        created_by: Option<i64>,
        statuses: Option<&[ReservationStatus]>,
    ) -> Result<Vec<ReservationRow>, StoreError> {
        let rows: Vec<ReservationRow> =
            on_pool!(self, queries::RESERVATIONS_ON, |pool| sqlx::query_as(
                queries::RESERVATIONS_ON
            )
            .bind(club_id)
            .bind(date)
            .bind(created_by)
            .fetch_all(pool)
            .await)?;
        Ok(match statuses {
            Some(statuses) => rows
                .into_iter()
                .filter(|r| statuses.contains(&r.status()))
                .collect(),
            None => rows,
        })
    }

    /// A reservation by id.
    pub async fn reservation(&self, id: i64) -> Result<Option<ReservationRow>, StoreError> {
        Ok(on_pool!(self, queries::RESERVATION_BY_ID, |pool| {
            sqlx::query_as(queries::RESERVATION_BY_ID)
                .bind(id)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// The reservation a user created with an idempotency key.
    pub async fn reservation_by_idempotency_key(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<ReservationRow>, StoreError> {
        Ok(on_pool!(
            self,
            queries::RESERVATION_BY_IDEMPOTENCY_KEY,
            |pool| sqlx::query_as(queries::RESERVATION_BY_IDEMPOTENCY_KEY)
                .bind(user_id)
                .bind(key)
                .fetch_optional(pool)
                .await
        )?)
    }

    /// Inserts a reservation; the database refuses overlaps and reused keys atomically.
    pub async fn insert_reservation(
        &self,
        new: &NewReservation,
        now: DateTime<Utc>,
        quota: Option<Quota>,
    ) -> Result<ReservationRow, StoreError> {
        let sql = dialect!(
            self,
            queries::INSERT_RESERVATION.0,
            queries::INSERT_RESERVATION.1
        );
        // No quota (staff and above): a bound no count reaches.
        let (max_active, today, time) = match quota {
            Some(q) => (q.max_active, q.today, q.now),
            None => (i64::MAX, new.date, new.start_time),
        };
        let row: Option<ReservationRow> = match (&self.db, quota) {
            // Two statements in one transaction, each observed (and counted) as itself.
            (Db::Postgres(pool), Some(_)) => {
                async {
                    let mut transaction = pool.begin().await?;
                    self.observed(
                        queries::LOCK_BOOKER,
                        sqlx::query(queries::LOCK_BOOKER)
                            .bind(new.created_by_id)
                            .execute(&mut *transaction)
                            .map_ok(drop),
                    )
                    .await?;
                    let row = self
                        .observed(
                            sql,
                            bind_reservation(
                                sqlx::query_as(sql),
                                new,
                                now,
                                today,
                                time,
                                max_active,
                            )
                            .fetch_optional(&mut *transaction),
                        )
                        .await?;
                    transaction.commit().await?;
                    Ok::<_, sqlx::Error>(row)
                }
                .await
            }
            _ => on_pool!(self, sql, |pool| bind_reservation(
                sqlx::query_as(sql),
                new,
                now,
                today,
                time,
                max_active
            )
            .fetch_optional(pool)
            .await),
        }
        .map_err(StoreError::from_sqlx)?;
        row.ok_or(StoreError::QuotaExceeded)
    }

    /// A club's booking rules.
    pub async fn booking_rules(&self, club_id: i64) -> Result<Option<BookingRules>, StoreError> {
        Ok(on_pool!(self, queries::BOOKING_RULES, |pool| {
            sqlx::query_as(queries::BOOKING_RULES)
                .bind(club_id)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// Marks a pending or confirmed reservation cancelled (releasing its court); `None` when it
    /// is not (any more) pending or confirmed.
    pub async fn cancel_reservation(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<ReservationRow>, StoreError> {
        Ok(on_pool!(self, queries::CANCEL_RESERVATION, |pool| {
            sqlx::query_as(queries::CANCEL_RESERVATION)
                .bind(id)
                .bind(now)
                .fetch_optional(pool)
                .await
        })?)
    }
}

/// Binds a new reservation and its quota to [`queries::INSERT_RESERVATION`].
fn bind_reservation<'q, DB, O>(
    query: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    new: &'q NewReservation,
    now: DateTime<Utc>,
    today: NaiveDate,
    time: NaiveTime,
    max_active: i64,
) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    NaiveDate: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    NaiveTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(new.club_id)
        .bind(new.court_id)
        .bind(new.created_by_id)
        .bind(new.date)
        .bind(new.start_time)
        .bind(new.end_time)
        .bind(new.status.as_str())
        .bind(new.price.to_string())
        .bind(new.idempotency_key.as_deref())
        .bind(now)
        .bind(today)
        .bind(time)
        .bind(max_active)
}
