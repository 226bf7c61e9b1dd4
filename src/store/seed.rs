//! Deterministic demo and load-test data: the same `--seed` and anchor date give the same rows.
//!
//! `demo`: 2 organizations, 4 clubs, 20 courts, members of every role, ±60 days of reservations.
//! `large`: 8 organizations, 40 clubs, 300 courts, about two years of reservations (≈2 million),
//! loaded with multi-row inserts (SQLite) or `COPY` (Postgres).

use chrono::{Datelike, Days, NaiveDate, NaiveTime, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use sqlx::QueryBuilder;

use super::{Db, Store};
use crate::{
    domain::{money::Cents, ReservationStatus},
    error::StoreError,
};

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

struct Plan {
    organizations: Vec<(i64, String, String)>,
    users: Vec<(i64, String, String, bool, Option<i64>)>,
    org_memberships: Vec<(i64, i64, &'static str)>,
    clubs: Vec<(i64, i64, String, String, &'static str)>,
    club_memberships: Vec<(i64, i64, &'static str)>,
    courts: Vec<(i64, i64, String, &'static str, bool, Cents)>,
    schedules: Vec<(i64, i32, NaiveTime, NaiveTime)>,
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time")
}

const TIMEZONES: &[&str] = &[
    "Europe/Madrid",
    "Europe/Lisbon",
    "Europe/Madrid",
    "Atlantic/Canary",
];

fn plan(scale: Scale) -> Plan {
    let (orgs, clubs_per_org, players) = match scale {
        Scale::Demo => (2, 2, 40),
        Scale::Large => (8, 5, 2000),
    };
    let mut p = Plan {
        organizations: Vec::new(),
        users: Vec::new(),
        org_memberships: Vec::new(),
        clubs: Vec::new(),
        club_memberships: Vec::new(),
        courts: Vec::new(),
        schedules: Vec::new(),
    };
    let org_names = [
        "Padel Norte",
        "Costa Padel",
        "Urban Padel",
        "Padel Sierra",
        "Isla Padel",
        "Padel Centro",
        "Valle Padel",
        "Padel Sur",
    ];
    for o in 0..orgs {
        let id = o as i64 + 1;
        let name = org_names[o % org_names.len()].to_string();
        p.organizations
            .push((id, name.clone(), name.to_lowercase().replace(' ', "-")));
    }
    let mut court_id = 0;
    for org in 0..orgs {
        for c in 0..clubs_per_org {
            let club_id = (org * clubs_per_org + c) as i64 + 1;
            let name = format!("{} Club {}", p.organizations[org].1, c + 1);
            let slug = format!("club-{}", c + 1);
            p.clubs.push((
                club_id,
                org as i64 + 1,
                name,
                slug,
                TIMEZONES[(club_id as usize - 1) % TIMEZONES.len()],
            ));
            // Demo: 5 courts per club (20); large: 7 or 8 alternately (300 over 40 clubs).
            let courts = match scale {
                Scale::Demo => 5,
                Scale::Large => 7 + (club_id % 2) as usize,
            };
            for n in 0..courts {
                court_id += 1;
                let indoor = n % 3 == 0;
                let price = Cents(if indoor { 3200 } else { 2400 } + (n as i64 % 2) * 400);
                let surface = if n % 2 == 0 {
                    "artificial_grass"
                } else {
                    "acrylic"
                };
                p.courts.push((
                    court_id,
                    club_id,
                    format!("Court {}", n + 1),
                    surface,
                    indoor,
                    price,
                ));
            }
            for weekday in 1..=7 {
                let (opens, closes) = if weekday <= 5 {
                    (hm(8, 0), hm(23, 0))
                } else {
                    (hm(9, 0), hm(22, 0))
                };
                p.schedules.push((club_id, weekday, opens, closes));
            }
        }
    }
    // Fixed demo accounts (ids 1..=10), then generated players.
    let club_of = |org: usize, n: usize| (org * clubs_per_org + n) as i64 + 1;
    for (i, (email, name)) in DEMO_USERS.iter().enumerate() {
        let id = i as i64 + 1;
        let org = if email.ends_with("2@demo.padel") {
            2
        } else {
            1
        };
        let superuser = *email == "admin@demo.padel";
        p.users.push((
            id,
            email.to_string(),
            name.to_string(),
            superuser,
            (!superuser).then_some(org),
        ));
    }
    let user = |email: &str| {
        DEMO_USERS
            .iter()
            .position(|(e, _)| *e == email)
            .expect("demo user") as i64
            + 1
    };
    p.org_memberships.extend([
        (user("owner@demo.padel"), 1, "owner"),
        (user("orgadmin@demo.padel"), 1, "admin"),
        (user("manager@demo.padel"), 1, "member"),
        (user("staff@demo.padel"), 1, "member"),
        (user("player@demo.padel"), 1, "member"),
        (user("member@demo.padel"), 1, "member"),
        (user("owner2@demo.padel"), 2, "owner"),
        (user("manager2@demo.padel"), 2, "member"),
        (user("player2@demo.padel"), 2, "member"),
    ]);
    p.club_memberships.extend([
        (user("manager@demo.padel"), club_of(0, 0), "manager"),
        (user("staff@demo.padel"), club_of(0, 0), "staff"),
        (user("player@demo.padel"), club_of(0, 0), "player"),
        (user("player@demo.padel"), club_of(0, 1), "player"),
        (user("manager2@demo.padel"), club_of(1, 0), "manager"),
        (user("player2@demo.padel"), club_of(1, 0), "player"),
    ]);
    let first_player = DEMO_USERS.len() as i64 + 1;
    let clubs_n = p.clubs.len();
    for i in 0..players {
        let id = first_player + i as i64;
        let club = p.clubs[i % clubs_n].clone();
        p.users.push((
            id,
            format!("player{:04}@demo.padel", i + 1),
            format!("Player {}", i + 1),
            false,
            Some(club.1),
        ));
        p.org_memberships.push((id, club.1, "member"));
        p.club_memberships.push((id, club.0, "player"));
    }
    p
}

/// Players of each club, for choosing who books.
fn players_by_club(p: &Plan) -> std::collections::HashMap<i64, Vec<i64>> {
    let mut map: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for (user, club, role) in &p.club_memberships {
        if *role == "player" {
            map.entry(*club).or_default().push(*user);
        }
    }
    map
}

/// One generated reservation: court, club, creator, date, start, end, status, price.
type GeneratedReservation = (
    i64,
    i64,
    i64,
    NaiveDate,
    NaiveTime,
    NaiveTime,
    ReservationStatus,
    Cents,
);

/// Walks every court and day, booking 60/90-minute games back to back with evening and weekend
/// peaks; never overlapping by construction.
fn reservations_for_day(
    rng: &mut StdRng,
    p: &Plan,
    players: &std::collections::HashMap<i64, Vec<i64>>,
    today: NaiveDate,
    date: NaiveDate,
    out: &mut Vec<GeneratedReservation>,
) {
    let weekend = date.weekday().number_from_monday() >= 6;
    for &(court_id, club_id, _, _, _, price) in &p.courts {
        let Some(&(_, _, opens, closes)) = p
            .schedules
            .iter()
            .find(|s| s.0 == club_id && s.1 == date.weekday().number_from_monday() as i32)
        else {
            continue;
        };
        let bookers = &players[&club_id];
        let mut start = crate::domain::schedule::minute_of(opens);
        let close = crate::domain::schedule::minute_of(closes);
        loop {
            let length = if rng.random_bool(0.8) { 90 } else { 60 };
            if start + length > close {
                break;
            }
            let hour = start / 60;
            let demand = match (weekend, hour) {
                (true, 9..=13) => 0.9,
                (true, _) => 0.7,
                (false, 18..=21) => 0.95,
                (false, 8..=9) => 0.45,
                (false, _) => 0.35,
            };
            if rng.random_bool(demand) {
                let roll: f64 = rng.random();
                let status = if date < today {
                    if roll < 0.82 {
                        ReservationStatus::Completed
                    } else if roll < 0.92 {
                        ReservationStatus::Cancelled
                    } else {
                        ReservationStatus::NoShow
                    }
                } else if roll < 0.85 {
                    ReservationStatus::Confirmed
                } else if roll < 0.93 {
                    ReservationStatus::Pending
                } else {
                    ReservationStatus::Cancelled
                };
                let creator = bookers[rng.random_range(0..bookers.len())];
                out.push((
                    court_id,
                    club_id,
                    creator,
                    date,
                    crate::domain::schedule::time_of(start),
                    crate::domain::schedule::time_of(start + length),
                    status,
                    Cents::for_minutes(price, i64::from(length)),
                ));
                start += length;
            } else {
                start += 30;
            }
        }
    }
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
