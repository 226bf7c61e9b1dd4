//! Deterministic demo and load-test data: the same `--seed` and anchor date give the same rows.
//!
//! `demo`: 2 organizations, 4 clubs, 20 courts, members of every role, ±60 days of reservations.
//! `large`: 8 organizations, 40 clubs, 300 courts, 2 000 players, per club two managers and two
//! staff, per organization an owner and two admins (the load bench's population), about two
//! years of reservations (≈2 million), loaded with multi-row INSERTs, one transaction per table (and per 20 000 reservations).

mod plan;

use chrono::{Days, NaiveDate, NaiveTime, Utc};
use rand::{rngs::StdRng, SeedableRng};
use sqlx::QueryBuilder;

use super::{Db, Store};
use crate::{domain::money::Cents, error::StoreError};
use plan::{plan, players_by_club, reservations_for_day};

/// How much data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// A small, realistic data set for trying the API.
    Demo,
    /// A large data set for load tests and query plans.
    Large,
}

/// Seeding options.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    /// Size of the data set.
    pub scale: Scale,
    /// Random seed.
    pub seed: u64,
    /// "Today" for the generated calendar (reservations are placed around it).
    pub today: NaiveDate,
}

/// The fixed demo accounts, documented in the README: (email, full name).
pub const DEMO_USERS: &[(&str, &str)] = &[
    ("admin@demo.padel", "Ada Admin"),
    ("owner@demo.padel", "Olivia Owner"),
    ("orgadmin@demo.padel", "Oscar Orgadmin"),
    ("manager@demo.padel", "Marta Manager"),
    ("staff@demo.padel", "Sergio Staff"),
    ("player@demo.padel", "Paula Player"),
    ("member@demo.padel", "Mario Member"),
    ("owner2@demo.padel", "Olga Owner"),
    ("manager2@demo.padel", "Miguel Manager"),
    ("player2@demo.padel", "Pedro Player"),
];

/// The demo organization owner whose token GraphiQL is pre-filled with.
pub const DEMO_OWNER_EMAIL: &str = "owner@demo.padel";

/// What was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedSummary {
    /// Organizations.
    pub organizations: usize,
    /// Clubs.
    pub clubs: usize,
    /// Courts.
    pub courts: usize,
    /// Users.
    pub users: usize,
    /// Reservations.
    pub reservations: usize,
}

/// A value of a seeded row; one enum so one row writer serves both engines.
enum Value {
    Int(i64),
    Text(String),
    Bool(bool),
    Date(NaiveDate),
    Time(NaiveTime),
    OptInt(Option<i64>),
    OptText(Option<String>),
    OptTimestamp(Option<chrono::DateTime<Utc>>),
    Timestamp(chrono::DateTime<Utc>),
    Money(Cents),
}

/// Appends one row's values to a multi-row INSERT of either engine.
macro_rules! push_row {
    ($sep:expr, $row:expr, $is_pg:expr) => {
        for value in $row {
            match value {
                Value::Int(v) => $sep.push_bind(*v),
                Value::Text(v) => $sep.push_bind(v.clone()),
                Value::Bool(v) => $sep.push_bind(*v),
                Value::Date(v) => $sep.push_bind(*v),
                Value::Time(v) => $sep.push_bind(*v),
                Value::OptInt(v) => $sep.push_bind(*v),
                Value::OptText(v) => $sep.push_bind(v.clone()),
                Value::OptTimestamp(v) => $sep.push_bind(*v),
                Value::Timestamp(v) => $sep.push_bind(*v),
                // Decimal text: Postgres casts it to NUMERIC, SQLite stores it as is.
                Value::Money(v) if $is_pg => $sep
                    .push("CAST(")
                    .push_bind_unseparated(v.to_string())
                    .push_unseparated(" AS NUMERIC)"),
                Value::Money(v) => $sep.push_bind(v.to_string()),
            };
        }
    };
}

impl Store {
    /// Deletes every row but `role_permissions` (which migrations own).
    pub async fn reset_data(&self) -> Result<(), StoreError> {
        const TABLES: [&str; 8] = [
            "reservations",
            "club_schedules",
            "courts",
            "club_memberships",
            "organization_memberships",
            "clubs",
            "users",
            "organizations",
        ];
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(&format!(
                    "TRUNCATE {} RESTART IDENTITY CASCADE",
                    TABLES.join(", ")
                ))
                .execute(pool)
                .await?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for table in TABLES {
                    sqlx::query(&format!("DELETE FROM {table}"))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Writes a generated data set into an empty database.
    pub async fn seed(&self, options: SeedOptions) -> Result<SeedSummary, StoreError> {
        let p = plan(options.scale);
        let mut rng = StdRng::seed_from_u64(options.seed);
        let (back, ahead) = match options.scale {
            Scale::Demo => (60, 60),
            Scale::Large => (800, 30),
        };
        let players = players_by_club(&p);
        let now = Utc::now();
        let login = now - chrono::Duration::hours(3);
        use Value::*;

        let rows = p.organizations.iter().map(|(id, name, slug)| {
            vec![Int(*id), Text(name.clone()), Text(slug.clone()), Bool(true)]
        });
        self.insert_rows("organizations (id, name, slug, is_active)", rows)
            .await?;
        let rows = p.users.iter().map(|(id, email, name, superuser, org)| {
            vec![
                Int(*id),
                Text(email.clone()),
                Text(name.clone()),
                OptText(Some(format!("https://avatars.demo.padel/{id}.png"))),
                Bool(true),
                Bool(*superuser),
                OptInt(*org),
                OptTimestamp(Some(login)),
            ]
        });
        self.insert_rows(
            "users (id, email, full_name, avatar_url, is_active, is_superuser, current_organization_id, last_login_at)",
            rows,
        )
        .await?;
        let rows = p
            .org_memberships
            .iter()
            .map(|(u, o, r)| vec![Int(*u), Int(*o), Text(r.to_string()), Bool(true)]);
        self.insert_rows(
            "organization_memberships (user_id, organization_id, role, is_active)",
            rows,
        )
        .await?;
        let rows = p.clubs.iter().map(|(id, org, name, slug, tz)| {
            vec![
                Int(*id),
                Int(*org),
                Text(name.clone()),
                Text(slug.clone()),
                Text(tz.to_string()),
                Bool(true),
            ]
        });
        self.insert_rows(
            "clubs (id, organization_id, name, slug, timezone, is_active)",
            rows,
        )
        .await?;
        let rows = p
            .club_memberships
            .iter()
            .map(|(u, c, r)| vec![Int(*u), Int(*c), Text(r.to_string()), Bool(true)]);
        self.insert_rows("club_memberships (user_id, club_id, role, is_active)", rows)
            .await?;
        let rows = p
            .courts
            .iter()
            .map(|(id, club, name, surface, indoor, price)| {
                vec![
                    Int(*id),
                    Int(*club),
                    Text(name.clone()),
                    Text(surface.to_string()),
                    Bool(*indoor),
                    Bool(true),
                    Bool(false),
                    Money(*price),
                ]
            });
        self.insert_rows(
            "courts (id, club_id, name, surface, is_indoor, is_active, is_maintenance, price_per_hour)",
            rows,
        )
        .await?;
        let rows = p.schedules.iter().map(|(club, day, o, c)| {
            vec![
                Int(*club),
                Int(i64::from(*day)),
                Time(*o),
                Time(*c),
                Bool(true),
            ]
        });
        self.insert_rows(
            "club_schedules (club_id, weekday, opens_at, closes_at, is_active)",
            rows,
        )
        .await?;

        let mut total = 0;
        let mut batch = Vec::new();
        let mut date = options.today - Days::new(back);
        let last = options.today + Days::new(ahead);
        while date <= last {
            reservations_for_day(&mut rng, &p, &players, options.today, date, &mut batch);
            if batch.len() >= 20_000 || date == last {
                total += batch.len();
                let rows = batch.drain(..).map(
                    |(court, club, creator, date, start, end, status, price)| {
                        vec![
                            Int(club),
                            Int(court),
                            Int(creator),
                            Date(date),
                            Time(start),
                            Time(end),
                            Text(status.as_str().to_string()),
                            Money(price),
                            Timestamp(now),
                            Timestamp(now),
                        ]
                    },
                );
                self.insert_rows(
                    "reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price, created_at, updated_at)",
                    rows,
                )
                .await?;
            }
            date = date + Days::new(1);
        }

        match &self.db {
            Db::Postgres(pool) => {
                for table in ["organizations", "users", "clubs", "courts"] {
                    sqlx::query(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
                    ))
                    .execute(pool)
                    .await?;
                }
                // VACUUM sets the visibility map, so the dashboard's index-only scans of the
                // rollups skip the heap as they do once autovacuum has passed; right after a
                // bulk load they visited every heap page (bench: 841 against 1 176 req/s).
                // The simple protocol: VACUUM cannot run in the extended protocol's implicit
                // transaction.
                sqlx::raw_sql(
                    "VACUUM (ANALYZE) reservations, dashboard_day_totals, dashboard_day_club_totals, \
                     dashboard_hour_starts, dashboard_period_players",
                )
                .execute(pool)
                .await?;
                sqlx::query("ANALYZE").execute(pool).await?;
            }
            Db::Sqlite(pool) => {
                sqlx::query("ANALYZE").execute(pool).await?;
            }
        }
        Ok(SeedSummary {
            organizations: p.organizations.len(),
            clubs: p.clubs.len(),
            courts: p.courts.len(),
            users: p.users.len(),
            reservations: total,
        })
    }

    /// Multi-row INSERTs in one transaction, in chunks under both engines' bind limits.
    async fn insert_rows(
        &self,
        target: &str,
        rows: impl Iterator<Item = Vec<Value>>,
    ) -> Result<(), StoreError> {
        let rows: Vec<Vec<Value>> = rows.collect();
        let Some(width) = rows.first().map(Vec::len) else {
            return Ok(());
        };
        let chunk = 30_000 / width;
        match &self.db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for part in rows.chunks(chunk) {
                    let mut b: QueryBuilder<sqlx::Postgres> =
                        QueryBuilder::new(format!("INSERT INTO {target} "));
                    b.push_values(part, |mut sep, row| push_row!(sep, row, true));
                    b.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for part in rows.chunks(chunk) {
                    let mut b: QueryBuilder<sqlx::Sqlite> =
                        QueryBuilder::new(format!("INSERT INTO {target} "));
                    b.push_values(part, |mut sep, row| push_row!(sep, row, false));
                    b.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
