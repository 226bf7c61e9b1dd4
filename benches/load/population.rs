//! The population workload: what thousands of real users send, not one token repeated.
//!
//! - **Who**: every active member of the large seed (2 000 players, 160 club managers and staff,
//!   24 organization owners and admins, the demo accounts), drawn per session like a real club:
//!   90 % players, 8 % staff and managers, 2 % owners and admins.
//! - **Where**: the session's club is drawn Zipf-like (weight 1/rank over the 40 clubs in a
//!   fixed shuffled order), then a user of the drawn role at that club (owners and admins: any
//!   club of their organization).
//! - **What**: each session opens the app (`authContext`), looks at the club's availability for
//!   each of the next 7 days, books (2 % of sessions) or cancels one of their upcoming bookings
//!   (0.5 %); managers, owners and admins also load the DAY, WEEK and MONTH dashboards.
//! - **Order**: 16 000 sessions drawn once (seeded), flattened; request `i` of a run is step
//!   `i mod len`, so the closed loop's workers interleave sessions the way concurrent users do.
//!
//! Bookings go far ahead (from 400 days out, one slot of their own per request index: court,
//! hour and day are a bijection of it), so they never conflict; they still invalidate their
//! club's tags like any booking. Cancels hit the seeded bookings of the next week, the dates
//! the sessions look at.

use std::{collections::HashMap, process::Command, sync::Arc};

use serde_json::json;

use super::MakeRequest;

/// Which of the sessions' requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// All of them.
    All,
    /// Reads only.
    Reads,
    /// Reads the peer serves (no dashboards).
    PeerReads,
    /// `PeerReads` as PostGraphile's raw-row equivalents ([`PG_AUTH`], [`PG_GRID`]), sent
    /// without a token (PostGraphile runs as the database owner here).
    PostGraphile,
}

/// A member's standing at a club, as the session weights see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Player,
    Staff,
    Manager,
    /// An organization owner or admin (manages every club of it).
    Lead,
}

#[derive(Debug, Clone)]
enum Step {
    Auth(i64),
    Grid {
        user: i64,
        club: i64,
        day: u64,
    },
    Dashboard {
        user: i64,
        club: i64,
        period: &'static str,
    },
    Book {
        user: i64,
        club: i64,
    },
    Cancel {
        user: i64,
        reservation: i64,
    },
}

/// The club whose grid the most distinct users of the sessions look at, and their tokens (the
/// "first look" row: each of them opening a grid someone else already loaded).
pub fn busiest_club(population: &Population) -> (i64, Vec<String>) {
    let mut lookers: HashMap<i64, std::collections::BTreeSet<i64>> = HashMap::new();
    for step in &population.steps {
        if let Step::Grid { user, club, .. } = step {
            lookers.entry(*club).or_default().insert(*user);
        }
    }
    let (club, users) = lookers
        .into_iter()
        .max_by_key(|(club, users)| (users.len(), -club))
        .expect("sessions look at grids");
    let tokens = users.iter().map(|u| population.tokens[u].clone()).collect();
    (club, tokens)
}

/// Sessions drawn: enough that nearly every member is someone's session (≥ 2 000 users).
pub const SESSIONS: usize = 16_000;

/// The drawn sessions, flattened, and what the requests need.
pub struct Population {
    steps: Vec<Step>,
    tokens: HashMap<i64, String>,
    courts: HashMap<i64, Vec<i64>>,
    /// Distinct users in the sessions.
    pub users: usize,
    /// Share of each role among the sessions (players, staff and managers, owners and admins).
    pub mix: (f64, f64, f64),
}

/// The app-opening query the sessions send.
pub const AUTH: &str = "query AuthContext { authContext { user { id email fullName } currentOrganization { id name } organizations { role organization { id name } } clubs { role club { id name } } permissions } }";
/// The availability query the sessions send.
pub const GRID: &str = "query Availability($club: ID!, $date: Date!) { courtAvailability(clubId: $club, date: $date) { club { id name } date courts { court { id name } availableCount slots { start end available } } } }";
const DASHBOARD: &str = "query Dashboard($club: ID!, $period: Period!) { dashboard(clubId: $club, period: $period) { period from to current { reservations revenue occupancyRate } previous { reservations revenue } change { reservationsPct revenuePct } courts { court { name } occupancyRate } daily { date reservations } peakHours { hour reservations } } }";
/// `authContext`'s data from PostGraphile 5 (amber naming): the user, their organization and club
/// memberships with names, and the role-permission table it derives `permissions` from.
pub const PG_AUTH: &str = "query($u: BigInt!) { userByRowId(rowId: $u) { rowId email fullName organizationByCurrentOrganizationId { rowId name } organizationMembershipsByUserId { nodes { role isActive organizationByOrganizationId { rowId name } } } clubMembershipsByUserId { nodes { role isActive clubByClubId { rowId name } } } } allRolePermissions { nodes { role permission } } }";
/// The grid's data from PostGraphile: a club's courts with their reservations of a date (the
/// query of `miss courtAvailability`'s peer row, benches/peer/postgraphile.sh).
pub const PG_GRID: &str = "query($clubId: BigInt!, $date: Date!) { clubByRowId(rowId: $clubId) { rowId name timezone courtsByClubId(orderBy: PRIMARY_KEY_ASC) { nodes { rowId name isActive isMaintenance reservationsByCourtId(condition: {clubId: $clubId, date: $date}, orderBy: PRIMARY_KEY_ASC) { nodes { rowId date startTime endTime status } } } } } }";
const BOOK: &str =
    "mutation Book($i: CreateReservationInput!) { createReservation(input: $i) { id status } }";
const CANCEL: &str = "mutation Cancel($id: ID!) { cancelReservation(id: $id) { id status } }";

fn psql(database: &str, sql: &str) -> Vec<Vec<String>> {
    let out = Command::new("psql")
        .args([database, "-At", "-F", "\t", "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// A small seeded generator: the same sessions every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

impl Population {
    /// Reads the members, courts and upcoming bookings of the seeded database and draws the
    /// sessions.
    pub fn load(database: &str, sign: impl Fn(i64) -> String) -> Population {
        let mut members: HashMap<(i64, Role), Vec<i64>> = HashMap::new();
        let rows = psql(
            database,
            "SELECT cm.user_id, cm.role, cm.club_id FROM club_memberships cm JOIN users u ON u.id = cm.user_id \
             JOIN clubs c ON c.id = cm.club_id \
             WHERE cm.is_active AND u.is_active AND NOT u.is_superuser AND c.is_active \
             UNION ALL \
             SELECT om.user_id, 'lead', c.id FROM organization_memberships om JOIN users u ON u.id = om.user_id \
             JOIN clubs c ON c.organization_id = om.organization_id \
             WHERE om.is_active AND u.is_active AND c.is_active AND om.role IN ('owner', 'admin')",
        );
        for row in rows {
            let role = match row[1].as_str() {
                "player" => Role::Player,
                "staff" => Role::Staff,
                "manager" => Role::Manager,
                _ => Role::Lead,
            };
            members
                .entry((row[2].parse().unwrap(), role))
                .or_default()
                .push(row[0].parse().unwrap());
        }
        let mut courts: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in psql(
            database,
            "SELECT id, club_id FROM courts WHERE is_active AND NOT is_maintenance ORDER BY id",
        ) {
            courts
                .entry(row[1].parse().unwrap())
                .or_default()
                .push(row[0].parse().unwrap());
        }
        let mut upcoming: HashMap<i64, Vec<i64>> = HashMap::new();
        for row in psql(
            database,
            "SELECT id, created_by_id FROM reservations WHERE date BETWEEN current_date + 2 AND current_date + 7 \
             AND status IN ('pending', 'confirmed') ORDER BY id",
        ) {
            upcoming
                .entry(row[1].parse().unwrap())
                .or_default()
                .push(row[0].parse().unwrap());
        }
        let mut clubs: Vec<i64> = courts.keys().copied().collect();
        clubs.sort_unstable();
        let mut rng = Lcg(0x9e37_79b9_7f4a_7c15);
        // Zipf: a fixed shuffled order, weight 1/rank.
        for i in (1..clubs.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            clubs.swap(i, j);
        }
        let weights: Vec<f64> = (1..=clubs.len()).map(|rank| 1.0 / rank as f64).collect();
        let total: f64 = weights.iter().sum();
        let mut steps = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut roles = [0u32; 3];
        let cancellable: Vec<(i64, i64)> = upcoming
            .iter()
            .flat_map(|(user, ids)| ids.iter().map(move |id| (*user, *id)))
            .collect();
        for _ in 0..SESSIONS {
            let mut point = rng.unit() * total;
            let mut club = clubs[0];
            for (c, w) in clubs.iter().zip(&weights) {
                if point < *w {
                    club = *c;
                    break;
                }
                point -= w;
            }
            let draw = rng.unit();
            let wanted: &[Role] = if draw < 0.90 {
                &[Role::Player]
            } else if draw < 0.98 {
                &[Role::Staff, Role::Manager]
            } else {
                &[Role::Lead]
            };
            let role = *rng.pick(wanted);
            let (role, user) = match members.get(&(club, role)) {
                Some(users) if !users.is_empty() => (role, *rng.pick(users)),
                _ => (Role::Player, *rng.pick(&members[&(club, Role::Player)])),
            };
            seen.insert(user);
            roles[match role {
                Role::Player => 0,
                Role::Staff | Role::Manager => 1,
                Role::Lead => 2,
            }] += 1;
            steps.push(Step::Auth(user));
            for day in 0..7 {
                steps.push(Step::Grid { user, club, day });
            }
            if matches!(role, Role::Manager | Role::Lead) {
                for period in ["DAY", "WEEK", "MONTH"] {
                    steps.push(Step::Dashboard { user, club, period });
                }
            }
            let act = rng.unit();
            if act < 0.02 {
                steps.push(Step::Book { user, club });
            } else if act < 0.025 && !cancellable.is_empty() {
                // Their own upcoming booking, or (when they hold none) another player's, by them.
                let (owner, reservation) = match upcoming.get(&user) {
                    Some(ids) => (user, *rng.pick(ids)),
                    None => *rng.pick(&cancellable),
                };
                seen.insert(owner);
                steps.push(Step::Cancel {
                    user: owner,
                    reservation,
                });
            }
        }
        let sessions = f64::from(roles.iter().sum::<u32>());
        let tokens = seen.iter().map(|user| (*user, sign(*user))).collect();
        Population {
            steps,
            tokens,
            courts,
            users: seen.len(),
            mix: (
                f64::from(roles[0]) / sessions,
                f64::from(roles[1]) / sessions,
                f64::from(roles[2]) / sessions,
            ),
        }
    }

    /// What a warm production cache holds before the run: one request per distinct user
    /// (`authContext`), per (club, day) grid and per (club, period) dashboard of the sessions,
    /// each by a user who may read it. The first looks of everyone else stay in the run.
    pub fn warm_up(self: &Arc<Self>) -> (MakeRequest, u64) {
        let mut seen = std::collections::HashSet::new();
        let mut steps = Vec::new();
        for step in &self.steps {
            let key = match step {
                Step::Auth(user) => format!("a{user}"),
                Step::Grid { club, day, .. } => format!("g{club}/{day}"),
                Step::Dashboard { club, period, .. } => format!("d{club}/{period}"),
                _ => continue,
            };
            if seen.insert(key) {
                steps.push(step.clone());
            }
        }
        let count = steps.len() as u64;
        let warm = Arc::new(Population {
            steps,
            tokens: self.tokens.clone(),
            courts: self.courts.clone(),
            users: self.users,
            mix: self.mix,
        });
        (warm.requests(0, Mode::Reads), count)
    }

    /// Share of the steps that write (bookings and cancels).
    pub fn write_share(&self) -> f64 {
        let writes = self
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Book { .. } | Step::Cancel { .. }))
            .count();
        writes as f64 / self.steps.len() as f64
    }

    /// Whether request `i` is a write.
    pub fn is_write(&self, i: u64) -> bool {
        matches!(
            self.steps[(i % self.steps.len() as u64) as usize],
            Step::Book { .. } | Step::Cancel { .. }
        )
    }

    /// The requests of run `run` (each run books days of its own). `Mode::Reads` replaces the
    /// writes by the session's user opening the app again; `Mode::PeerReads` the dashboards
    /// too (the Yoga peer serves `authContext` and `courtAvailability` only).
    pub fn requests(self: &Arc<Self>, run: u64, mode: Mode) -> MakeRequest {
        let population = self.clone();
        let today = chrono::Utc::now().date_naive();
        // `BENCH_POPULATION_WRITES=bookings` (or `cancels`) sends only that kind of write, the
        // other's steps opening the app instead: which writes cost the reads their throughput.
        let only = std::env::var("BENCH_POPULATION_WRITES").unwrap_or_default();
        let (skip_cancel, skip_book) = (only == "bookings", only == "cancels");
        Arc::new(move |client, base, i| {
            let step = &population.steps[(i % population.steps.len() as u64) as usize];
            let send = |user: &i64, query: &str, variables: serde_json::Value| {
                client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(&population.tokens[user])
                    .json(&json!({ "query": query, "variables": variables }))
            };
            let date = |day: u64| (today + chrono::Days::new(day)).to_string();
            if mode == Mode::PostGraphile {
                let (query, variables) = match step {
                    Step::Grid { club, day, .. } => (
                        PG_GRID,
                        json!({"clubId": club.to_string(), "date": date(*day)}),
                    ),
                    Step::Auth(user)
                    | Step::Dashboard { user, .. }
                    | Step::Book { user, .. }
                    | Step::Cancel { user, .. } => (PG_AUTH, json!({"u": user.to_string()})),
                };
                return client
                    .post(format!("{base}/graphql"))
                    .json(&json!({ "query": query, "variables": variables }));
            }
            match (mode, step) {
                (Mode::All, Step::Cancel { user, .. }) if skip_cancel => {
                    return send(user, AUTH, json!({}))
                }
                (Mode::All, Step::Book { user, .. }) if skip_book => {
                    return send(user, AUTH, json!({}))
                }
                (
                    Mode::Reads | Mode::PeerReads,
                    Step::Book { user, .. } | Step::Cancel { user, .. },
                )
                | (Mode::PeerReads, Step::Dashboard { user, .. }) => {
                    return send(user, AUTH, json!({}));
                }
                _ => {}
            }
            match step {
                Step::Auth(user) => send(user, AUTH, json!({})),
                Step::Grid { user, club, day } => send(
                    user,
                    GRID,
                    json!({"club": club.to_string(), "date": date(*day)}),
                ),
                Step::Dashboard { user, club, period } => send(
                    user,
                    DASHBOARD,
                    json!({"club": club.to_string(), "period": period}),
                ),
                Step::Book { user, club } => {
                    let courts = &population.courts[club];
                    let n = courts.len() as u64;
                    // Warm-up indices count from 0, measured ones from 1 000 000: phases and
                    // runs get days of their own; within one, (court, hour, day) is a
                    // bijection of the index.
                    let (phase, k) = (i / 1_000_000, i % 1_000_000);
                    let court = courts[(k % n) as usize];
                    let hour = 9 + (k / n) % 12;
                    let day = 400 + run * 8_000 + phase.min(1) * 4_000 + k / (n * 12);
                    send(
                        user,
                        BOOK,
                        json!({"i": {"courtId": court.to_string(), "date": date(day), "start": format!("{hour:02}:00"), "end": format!("{:02}:00", hour + 1)}}),
                    )
                }
                Step::Cancel { user, reservation } => {
                    send(user, CANCEL, json!({"id": reservation.to_string()}))
                }
            }
        })
    }
}
