//! Who and what exists: users and their memberships, organizations, clubs, courts, schedules and
//! role permissions; by id in batches for the DataLoaders.

use chrono::{NaiveDate, NaiveTime};
use tracing::Instrument;

use super::{
    observed::RowCount, queries, BusyRow, ClubLayout, ClubRow, CourtRow, Db, OrganizationRow,
    PrincipalRecord, PrincipalRow, Store, UserRow,
};
use crate::error::StoreError;

impl Store {
    /// Whether no organization exists yet (a fresh database).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        // Users too: a database holding users but no organization is not empty (seeding it would
        // add a demo superuser beside them).
        const SQL: &str =
            "SELECT (SELECT COUNT(*) FROM organizations) + (SELECT COUNT(*) FROM users)";
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
            rows.as_ref().ok().map(RowCount::rows),
            rows.is_ok(),
        );
        Ok(rows?)
    }

    /// A club with every court and its active schedule, in one statement.
    pub async fn club_layout(&self, club_id: i64) -> Result<Option<ClubLayout>, StoreError> {
        let folded = on_pool!(self, queries::CLUB_LAYOUT, |pool| sqlx::query(
            queries::CLUB_LAYOUT
        )
        .bind(club_id)
        .fetch_all(pool)
        .await
        .and_then(|rows| fold_layout(club_id, &rows)))?;
        Ok(folded.layout.map(|(layout, _)| layout))
    }

    /// [`Store::club_layout`] and the club's busy intervals on `date` ([`Store::busy_intervals`]),
    /// in one statement.
    pub async fn club_day(
        &self,
        club_id: i64,
        date: NaiveDate,
    ) -> Result<Option<(ClubLayout, Vec<BusyRow>)>, StoreError> {
        let folded = on_pool!(self, queries::CLUB_DAY, |pool| sqlx::query(
            queries::CLUB_DAY
        )
        .bind(club_id)
        .bind(date)
        .fetch_all(pool)
        .await
        .and_then(|rows| fold_layout(club_id, &rows)))?;
        Ok(folded.layout)
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
}

/// A layout statement's rows folded into the club's layout and its `busy` parts, and how many
/// rows there were.
struct Folded {
    layout: Option<(ClubLayout, Vec<BusyRow>)>,
    rows: u64,
}

impl RowCount for Folded {
    fn rows(&self) -> Option<u64> {
        Some(self.rows)
    }
}

/// Folds the rows of [`queries::CLUB_LAYOUT`] or [`queries::CLUB_DAY`] by column position: the
/// club from its `club` row (none: no such club), then each part, sorted here (the statement has
/// no `ORDER BY`): courts by id, the schedule by weekday and hours, busy intervals by court and
/// time. The derived by-name decoder looked up every column's name and decoded the club again on
/// each of a grid's ~30 rows: 11 % of the gateway's CPU with every cache off (docs/performance.md,
/// run 17). Each column's type is the table's (the club row casts its NULLs to it); the layout
/// tests run on both engines.
fn fold_layout<'r, R>(club_id: i64, rows: &'r [R]) -> Result<Folded, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database>,
    bool: sqlx::Decode<'r, R::Database>,
    String: sqlx::Decode<'r, R::Database>,
    Option<&'r str>: sqlx::Decode<'r, R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database>,
    Option<i32>: sqlx::Decode<'r, R::Database>,
    Option<bool>: sqlx::Decode<'r, R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database>,
    Option<NaiveTime>: sqlx::Decode<'r, R::Database>,
{
    let count = rows.len() as u64;
    let (mut club, mut courts, mut schedule) = (None, Vec::new(), Vec::new());
    let mut busy = Vec::new();
    for row in rows {
        // Columns 9..: part, court_id, court_name, surface, is_indoor, court_active,
        // is_maintenance, court_price_cents, weekday, opens_at, closes_at.
        let part: Option<&str> = row.try_get_unchecked(9)?;
        match part {
            Some("club") => {
                club = Some(ClubRow {
                    id: row.try_get_unchecked(0)?,
                    organization_id: row.try_get_unchecked(1)?,
                    name: row.try_get_unchecked(2)?,
                    slug: row.try_get_unchecked(3)?,
                    timezone: row.try_get_unchecked(4)?,
                    is_active: row.try_get_unchecked(5)?,
                    org_name: row.try_get_unchecked(6)?,
                    org_slug: row.try_get_unchecked(7)?,
                    org_is_active: row.try_get_unchecked(8)?,
                });
            }
            Some("court") => {
                let name: Option<String> = row.try_get_unchecked(11)?;
                let surface: Option<String> = row.try_get_unchecked(12)?;
                let is_indoor: Option<bool> = row.try_get_unchecked(13)?;
                let is_active: Option<bool> = row.try_get_unchecked(14)?;
                let is_maintenance: Option<bool> = row.try_get_unchecked(15)?;
                let cents: Option<i64> = row.try_get_unchecked(16)?;
                let id: Option<i64> = row.try_get_unchecked(10)?;
                courts.push(CourtRow {
                    id: id.unwrap_or_default(),
                    club_id,
                    name: name.unwrap_or_default(),
                    surface: surface.unwrap_or_default(),
                    is_indoor: is_indoor.unwrap_or_default(),
                    is_active: is_active.unwrap_or_default(),
                    is_maintenance: is_maintenance.unwrap_or_default(),
                    price_per_hour_cents: cents.unwrap_or_default(),
                });
            }
            Some("schedule") => {
                let weekday: Option<i32> = row.try_get_unchecked(17)?;
                let opens: Option<NaiveTime> = row.try_get_unchecked(18)?;
                let closes: Option<NaiveTime> = row.try_get_unchecked(19)?;
                if let (Some(weekday), Some(opens), Some(closes)) = (weekday, opens, closes) {
                    schedule.push((weekday, opens, closes));
                }
            }
            Some("busy") => {
                let court_id: Option<i64> = row.try_get_unchecked(10)?;
                let start: Option<NaiveTime> = row.try_get_unchecked(18)?;
                let end: Option<NaiveTime> = row.try_get_unchecked(19)?;
                if let (Some(court_id), Some(start_time), Some(end_time)) = (court_id, start, end) {
                    busy.push(BusyRow {
                        court_id,
                        start_time,
                        end_time,
                    });
                }
            }
            _ => {}
        }
    }
    let Some(club) = club else {
        return Ok(Folded {
            layout: None,
            rows: count,
        });
    };
    courts.sort_by_key(|c: &CourtRow| c.id);
    schedule.sort();
    busy.sort_by_key(|b: &BusyRow| (b.court_id, b.start_time, b.end_time));
    let layout = ClubLayout {
        club,
        courts,
        schedule,
    };
    Ok(Folded {
        layout: Some((layout, busy)),
        rows: count,
    })
}
