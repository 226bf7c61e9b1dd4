//! All SQL lives here. One [`Store`] runs on PostgreSQL (production) or embedded SQLite (the
//! zero-setup default); most statements are shared text, the rest differ by dialect only.
//! Every statement is reported to the request's [`StatementObserver`] (which counts it, so
//! budgets can be tested, and flags repeated shapes as suspected N+1), inside a span and timed.
//!
//! Overlapping bookings are refused by the database: `reservations_no_overlap`, an exclusion
//! constraint (Postgres) or triggers (SQLite) in `migrations/*/0001_schema.sql`. The insert maps
//! it via `StoreError::from_sqlx` (src/error.rs) to [`StoreError::Overlap`], answered `CONFLICT`.

mod models;
mod queries;
pub mod seed;

use std::{str::FromStr, sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use futures_util::TryFutureExt;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, SqlitePool,
};
use tracing::{field::Empty, Instrument};

pub use models::*;

use crate::{
    config::Settings,
    domain::{
        dashboard::{Aggregate, Tally},
        period::DateRange,
        Period, ReservationStatus,
    },
    error::StoreError,
    telemetry::metrics::Instruments,
};

/// Who counts a request's statements (the request's facts, above the store).
pub trait StatementObserver: Send + Sync {
    /// One statement ran (`in_batch`: inside a DataLoader batch). Returns the field path when
    /// this statement makes its shape a suspected N+1.
    fn statement(&self, sql: &'static str, in_batch: bool) -> Option<String>;
}

/// Which database engine a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// Embedded SQLite.
    Sqlite,
}

#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Handle to the database; cheap to clone. A request gets its own copy that counts statements.
#[derive(Clone)]
pub struct Store {
    db: Db,
    observer: Option<Arc<dyn StatementObserver>>,
    instruments: Option<Arc<Instruments>>,
    in_batch: bool,
}

/// Runs one statement: `$body` with `$pool` bound to whichever pool the store has, counted in the
/// request, inside a `db` span, timed into `db.client.operation.duration`.
macro_rules! on_pool {
    ($store:expr, $sql:expr, |$pool:ident| $body:expr) => {{
        let sql: &'static str = $sql;
        $store
            .observed(sql, async {
                match &$store.db {
                    Db::Postgres($pool) => $body,
                    Db::Sqlite($pool) => $body,
                }
            })
            .await
    }};
}

/// Rows a statement returned, for the span's `db.response.returned_rows`.
trait RowCount {
    fn rows(&self) -> Option<u64>;
}

impl<T> RowCount for Vec<T> {
    fn rows(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

impl<T> RowCount for Option<T> {
    fn rows(&self) -> Option<u64> {
        Some(u64::from(self.is_some()))
    }
}

impl RowCount for () {
    fn rows(&self) -> Option<u64> {
        None
    }
}

impl RowCount for i64 {
    fn rows(&self) -> Option<u64> {
        Some(1)
    }
}

impl RowCount for ReservationRow {
    fn rows(&self) -> Option<u64> {
        Some(1)
    }
}

/// Picks the statement text of the store's dialect.
macro_rules! dialect {
    ($store:expr, $pg:expr, $sqlite:expr) => {
        match &$store.db {
            Db::Postgres(_) => $pg,
            Db::Sqlite(_) => $sqlite,
        }
    };
}

impl Store {
    /// Connects to the configured database (creating the embedded SQLite file when needed).
    pub async fn connect(settings: &Settings) -> Result<Store, StoreError> {
        Self::connect_url(&settings.database_url(), settings).await
    }

    /// Connects to `url` with the pool settings of `settings`.
    pub async fn connect_url(url: &str, settings: &Settings) -> Result<Store, StoreError> {
        let db = &settings.database;
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(parent) = options.get_filename().parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                }
            }
            Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(db.max_connections)
                    .acquire_timeout(db.acquire_timeout)
                    .connect_with(options)
                    .await?,
            )
        } else {
            let timeout_ms = db.statement_timeout.as_millis().to_string();
            // No parallel workers: the gateway's statements read a few hundred rows, and starting
            // workers (~2–5 ms each) cost more than they save. Postgres chose a Parallel Append for
            // the dashboard's five groupings: 9 ms against 2 ms without (docs/performance.md).
            let options = PgConnectOptions::from_str(url)?
                .application_name("padel-bff")
                .options([
                    ("statement_timeout", timeout_ms.as_str()),
                    ("max_parallel_workers_per_gather", "0"),
                ]);
            Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(db.max_connections)
                    .acquire_timeout(db.acquire_timeout)
                    .connect_with(options)
                    .await?,
            )
        };
        Ok(Store {
            db,
            observer: None,
            instruments: None,
            in_batch: false,
        })
    }

    /// A copy whose statements are counted by `observer`.
    pub fn for_request(&self, observer: Arc<dyn StatementObserver>) -> Store {
        Store {
            observer: Some(observer),
            ..self.clone()
        }
    }

    /// A copy that records statement durations into `instruments`.
    pub fn with_instruments(&self, instruments: Arc<Instruments>) -> Store {
        Store {
            instruments: Some(instruments),
            ..self.clone()
        }
    }

    /// A copy for a DataLoader batch: its statements are the batching, not an N+1.
    pub fn in_batch(&self) -> Store {
        Store {
            in_batch: true,
            ..self.clone()
        }
    }

    /// Records the size of a DataLoader batch.
    pub fn record_batch(&self, entity: &'static str, keys: usize) {
        if let Some(instruments) = &self.instruments {
            instruments.dataloader_batch.record(
                keys as u64,
                &[opentelemetry::KeyValue::new(
                    "graphql.dataloader.entity",
                    entity,
                )],
            );
        }
    }

    /// Connections in the pool: (open, idle).
    pub fn pool_usage(&self) -> (u64, u64) {
        match &self.db {
            Db::Postgres(pool) => (u64::from(pool.size()), pool.num_idle() as u64),
            Db::Sqlite(pool) => (u64::from(pool.size()), pool.num_idle() as u64),
        }
    }

    fn system(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => "postgresql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Counts a statement (and checks it for N+1) and opens its span.
    fn statement(&self, sql: &'static str) -> tracing::Span {
        if let Some(observer) = &self.observer {
            if let Some(path) = observer.statement(sql, self.in_batch) {
                tracing::warn!(graphql.field.path = %path, db.query.text = sql, "suspected N+1: one statement repeated within a request outside a DataLoader batch");
                if let Some(instruments) = &self.instruments {
                    instruments.n_plus_one.add(
                        1,
                        &[opentelemetry::KeyValue::new("graphql.field.path", path)],
                    );
                }
            }
        }
        let operation = operation_name(sql);
        tracing::debug_span!(
            "db.statement",
            otel.name = operation,
            otel.kind = "client",
            db.system.name = self.system(),
            db.operation.name = operation,
            db.query.text = sql,
            db.response.returned_rows = Empty,
            otel.status_code = Empty,
        )
    }

    /// Runs one statement observed: its span, the request's SQL counter, its duration.
    async fn observed<T: RowCount, E>(
        &self,
        sql: &'static str,
        run: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = self.statement(sql);
        let started = std::time::Instant::now();
        let result = run.instrument(span.clone()).await;
        self.finish_statement(
            sql,
            &span,
            started,
            result.as_ref().ok().map(RowCount::rows),
            result.is_ok(),
        );
        result
    }

    fn finish_statement(
        &self,
        sql: &'static str,
        span: &tracing::Span,
        started: std::time::Instant,
        rows: Option<Option<u64>>,
        ok: bool,
    ) {
        if let Some(rows) = rows.flatten() {
            span.record("db.response.returned_rows", rows);
        }
        if !ok {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(instruments) = &self.instruments {
            instruments.sql_duration.record(
                started.elapsed().as_secs_f64(),
                &[
                    opentelemetry::KeyValue::new("db.system.name", self.system()),
                    opentelemetry::KeyValue::new("db.operation.name", operation_name(sql)),
                ],
            );
        }
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending migrations of the backend's migration set.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                // On a connection of its own without the request statement_timeout: a backfill
                // (migration 0004 sums 1.9 M reservations in ~25 s) must not be cancelled. The
                // connection is closed afterwards, never returned to the pool.
                use sqlx::Connection;
                let mut conn = pool.acquire().await?.detach();
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut conn)
                    .await?;
                let result = sqlx::migrate!("migrations/postgres").run(&mut conn).await;
                let _ = conn.close().await;
                result?
            }
            Db::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    /// On Postgres, a listener on the channel the invalidation triggers publish cache tags on
    /// (migration 0003); `None` on SQLite.
    pub async fn invalidation_listener(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen("bff_invalidate").await?;
                Ok(Some(listener))
            }
            Db::Sqlite(_) => Ok(None),
        }
    }

    /// Whether the pool was closed (the application is stopping).
    pub fn is_closed(&self) -> bool {
        match &self.db {
            Db::Postgres(pool) => pool.is_closed(),
            Db::Sqlite(pool) => pool.is_closed(),
        }
    }

    /// Cheap round trip for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, "SELECT 1", |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    /// Whether no organization exists yet (a fresh database).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM organizations";
        let count: i64 = on_pool!(self, SQL, |pool| sqlx::query_scalar(SQL)
            .fetch_one(pool)
            .await)?;
        Ok(count == 0)
    }

    /// Ids of active clubs of active organizations (for the cache warm-up).
    pub async fn active_club_ids(&self) -> Result<Vec<i64>, StoreError> {
        const SQL: &str =
            "SELECT c.id FROM clubs c JOIN organizations o ON o.id = c.organization_id WHERE c.is_active AND o.is_active ORDER BY c.id";
        Ok(on_pool!(self, SQL, |pool| sqlx::query_scalar(SQL)
            .fetch_all(pool)
            .await)?)
    }

    /// A user with all active memberships, or `None` for an unknown id.
    pub async fn principal(&self, user_id: i64) -> Result<Option<PrincipalRecord>, StoreError> {
        let rows: Vec<PrincipalRow> = on_pool!(self, queries::PRINCIPAL, |pool| sqlx::query_as(
            queries::PRINCIPAL
        )
        .bind(user_id)
        .fetch_all(pool)
        .await)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut record = PrincipalRecord {
            user: first.user.clone(),
            organizations: Vec::new(),
            clubs: Vec::new(),
        };
        for row in rows {
            match (row.m_kind.as_deref(), row.m_org_id, row.m_role) {
                (Some("org"), Some(org_id), Some(role)) => record.organizations.push((
                    OrganizationRow {
                        id: org_id,
                        name: row.o_name.unwrap_or_default(),
                        slug: row.o_slug.unwrap_or_default(),
                        is_active: true,
                    },
                    role,
                )),
                (Some("club"), Some(org_id), Some(role)) => {
                    if let Some(club_id) = row.m_club_id {
                        record.clubs.push((club_id, org_id, role));
                    }
                }
                _ => {}
            }
        }
        record
            .organizations
            .sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.id.cmp(&b.0.id)));
        Ok(Some(record))
    }

    /// Users by id (missing ids are simply absent).
    pub async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<UserRow>, StoreError> {
        self.by_ids(
            dialect!(self, queries::USERS_BY_IDS.0, queries::USERS_BY_IDS.1),
            ids,
        )
        .await
    }

    /// A user by email.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(on_pool!(self, queries::USER_BY_EMAIL, |pool| {
            sqlx::query_as(queries::USER_BY_EMAIL)
                .bind(email)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// Organizations by id.
    pub async fn organizations_by_ids(
        &self,
        ids: &[i64],
    ) -> Result<Vec<OrganizationRow>, StoreError> {
        self.by_ids(
            dialect!(
                self,
                queries::ORGANIZATIONS_BY_IDS.0,
                queries::ORGANIZATIONS_BY_IDS.1
            ),
            ids,
        )
        .await
    }

    /// Clubs (with their organization) by id.
    pub async fn clubs_by_ids(&self, ids: &[i64]) -> Result<Vec<ClubRow>, StoreError> {
        self.by_ids(
            dialect!(self, queries::CLUBS_BY_IDS.0, queries::CLUBS_BY_IDS.1),
            ids,
        )
        .await
    }

    /// Active clubs of organizations.
    pub async fn clubs_by_organizations(&self, ids: &[i64]) -> Result<Vec<ClubRow>, StoreError> {
        self.by_ids(
            dialect!(
                self,
                queries::CLUBS_BY_ORGANIZATIONS.0,
                queries::CLUBS_BY_ORGANIZATIONS.1
            ),
            ids,
        )
        .await
    }

    /// Courts by id.
    pub async fn courts_by_ids(&self, ids: &[i64]) -> Result<Vec<CourtRow>, StoreError> {
        self.by_ids(
            dialect!(self, queries::COURTS_BY_IDS.0, queries::COURTS_BY_IDS.1),
            ids,
        )
        .await
    }

    /// All courts of clubs.
    pub async fn courts_by_clubs(&self, ids: &[i64]) -> Result<Vec<CourtRow>, StoreError> {
        self.by_ids(
            dialect!(self, queries::COURTS_BY_CLUBS.0, queries::COURTS_BY_CLUBS.1),
            ids,
        )
        .await
    }

    async fn by_ids<T>(&self, sql: &'static str, ids: &[i64]) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + Send
            + Unpin,
    {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let span = self.statement(sql);
        let started = std::time::Instant::now();
        let rows: Result<Vec<T>, sqlx::Error> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(ids)
                    .fetch_all(pool)
                    .instrument(span.clone())
                    .await
            }
            Db::Sqlite(pool) => {
                let json = serde_json::to_string(ids).expect("integers serialize");
                sqlx::query_as(sql)
                    .bind(json)
                    .fetch_all(pool)
                    .instrument(span.clone())
                    .await
            }
        };
        self.finish_statement(
            sql,
            &span,
            started,
            rows.as_ref().ok().map(|r| RowCount::rows(r)),
            rows.is_ok(),
        );
        Ok(rows?)
    }

    /// A club with every court and its active schedule, in one statement.
    pub async fn club_layout(&self, club_id: i64) -> Result<Option<ClubLayout>, StoreError> {
        let rows: Vec<LayoutRow> = on_pool!(self, queries::CLUB_LAYOUT, |pool| sqlx::query_as(
            queries::CLUB_LAYOUT
        )
        .bind(club_id)
        .fetch_all(pool)
        .await)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut layout = ClubLayout {
            club: first.club.clone(),
            courts: Vec::new(),
            schedule: Vec::new(),
        };
        for row in rows {
            match row.part.as_deref() {
                Some("court") => layout.courts.push(CourtRow {
                    id: row.court_id.unwrap_or_default(),
                    club_id,
                    name: row.court_name.unwrap_or_default(),
                    surface: row.surface.unwrap_or_default(),
                    is_indoor: row.is_indoor.unwrap_or_default(),
                    is_active: row.court_active.unwrap_or_default(),
                    is_maintenance: row.is_maintenance.unwrap_or_default(),
                    price_per_hour_cents: row.court_price_cents.unwrap_or_default(),
                }),
                Some("schedule") => {
                    if let (Some(weekday), Some(opens), Some(closes)) =
                        (row.weekday, row.opens_at, row.closes_at)
                    {
                        layout.schedule.push((weekday, opens, closes));
                    }
                }
                _ => {}
            }
        }
        Ok(Some(layout))
    }

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

    /// Puts a court in or out of maintenance.
    pub async fn set_court_maintenance(
        &self,
        court_id: i64,
        in_maintenance: bool,
    ) -> Result<Option<CourtRow>, StoreError> {
        Ok(on_pool!(self, queries::SET_COURT_MAINTENANCE, |pool| {
            sqlx::query_as(queries::SET_COURT_MAINTENANCE)
                .bind(court_id)
                .bind(in_maintenance)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// Changes the organization a user works in.
    pub async fn set_current_organization(
        &self,
        user_id: i64,
        organization_id: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, queries::SET_CURRENT_ORGANIZATION, |pool| sqlx::query(
            queries::SET_CURRENT_ORGANIZATION
        )
        .bind(user_id)
        .bind(organization_id)
        .execute(pool)
        .await
        .map(drop))?;
        Ok(())
    }

    /// The whole `role_permissions` table as (role, permission) pairs.
    pub async fn role_permissions(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_pool!(self, queries::ROLE_PERMISSIONS, |pool| {
            sqlx::query_as(queries::ROLE_PERMISSIONS)
                .fetch_all(pool)
                .await
        })?)
    }

    /// Grouped reservation counts for a dashboard: `previous.from ..= current.to`, the two
    /// periods of kind `period` (Postgres reads its players rollup by period).
    pub async fn dashboard_aggregates(
        &self,
        club_id: i64,
        period: Period,
        current: DateRange,
        previous: DateRange,
    ) -> Result<Vec<Aggregate>, StoreError> {
        let sql = dialect!(self, queries::DASHBOARD_PG, queries::DASHBOARD_SQLITE);
        let postgres = matches!(self.db, Db::Postgres(_));
        let rows: Vec<DashboardRow> = on_pool!(self, sql, |pool| {
            let query = sqlx::query_as(sql)
                .bind(club_id)
                .bind(previous.from)
                .bind(current.from)
                .bind(current.to);
            // Only the rollups need the period kind; SQLite's scan has four parameters.
            let query = if postgres {
                query.bind(period_code(period))
            } else {
                query
            };
            query.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().filter_map(to_aggregate).collect())
    }
}

/// The `period` column of `dashboard_period_players`.
fn period_code(period: Period) -> &'static str {
    match period {
        Period::Day => "D",
        Period::Week => "W",
        Period::Month => "M",
        Period::Year => "Y",
    }
}

/// `db.operation.name` of a statement: its first keyword (a CTE counts as SELECT).
fn operation_name(sql: &str) -> &'static str {
    let first = sql
        .trim_start()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "SELECT" | "WITH" => "SELECT",
        "INSERT" => "INSERT",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

fn to_aggregate(row: DashboardRow) -> Option<Aggregate> {
    let status = row.status.as_deref().and_then(ReservationStatus::parse);
    let tally = Tally {
        count: row.n,
        cents: row.cents.unwrap_or(0),
        minutes: row.minutes.unwrap_or(0),
    };
    Some(match row.part.as_str() {
        "period" => Aggregate::Period {
            current: row.key_int? == 1,
            status: status?,
            tally,
        },
        "court" => Aggregate::Court {
            court_id: row.key_int?,
            status: status?,
            tally,
        },
        "day" => Aggregate::Day {
            date: row.day?,
            status: status?,
            tally,
        },
        "court_day" => Aggregate::CourtDay {
            court_id: row.key_int?,
            date: row.day?,
            status: status?,
            tally,
        },
        "hour" => Aggregate::Hour {
            hour: row.key_int?,
            count: row.n,
        },
        "players" => Aggregate::Players {
            current: row.key_int? == 1,
            count: row.n,
        },
        _ => return None,
    })
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
