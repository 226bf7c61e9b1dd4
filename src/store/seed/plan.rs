//! The generated data set: organizations, clubs, courts and their schedules, the demo accounts
//! and players, and the reservations of each day (one seeded random walk, never overlapping).

use chrono::{Datelike, NaiveDate, NaiveTime};
use rand::{rngs::StdRng, Rng};

use super::{Scale, DEMO_USERS};
use crate::domain::{money::Cents, ReservationStatus};

/// Every row but the reservations (those are generated day by day, in batches).
pub(super) struct Plan {
    pub(super) organizations: Vec<(i64, String, String)>,
    pub(super) users: Vec<(i64, String, String, bool, Option<i64>)>,
    pub(super) org_memberships: Vec<(i64, i64, &'static str)>,
    pub(super) clubs: Vec<(i64, i64, String, String, &'static str)>,
    pub(super) club_memberships: Vec<(i64, i64, &'static str)>,
    pub(super) courts: Vec<(i64, i64, String, &'static str, bool, Cents)>,
    pub(super) schedules: Vec<(i64, i32, NaiveTime, NaiveTime)>,
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

pub(super) fn plan(scale: Scale) -> Plan {
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
    if scale == Scale::Large {
        add_large_staff(&mut p, first_player + players as i64);
    }
    p
}

/// The large seed's club staff and organization leads, after the players (the reservations'
/// random walk draws players only, so adding these changes none of them): per club two
/// managers and two staff, per organization one owner and two admins. The load bench's
/// population draws its managers, staff, owners and admins from them.
fn add_large_staff(p: &mut Plan, first_id: i64) {
    let mut id = first_id;
    let mut add = |p: &mut Plan, email: String, org: i64| {
        p.users.push((
            id,
            email.clone(),
            email.replace('@', " at "),
            false,
            Some(org),
        ));
        id += 1;
        id - 1
    };
    for (club_id, org, ..) in p.clubs.clone() {
        for (role, n) in [("manager", 1), ("manager", 2), ("staff", 1), ("staff", 2)] {
            let user = add(p, format!("{role}-c{club_id}-{n}@demo.padel"), org);
            p.org_memberships.push((user, org, "member"));
            p.club_memberships.push((user, club_id, role));
        }
    }
    for (org, ..) in p.organizations.clone() {
        for (role, n) in [("owner", 1), ("admin", 1), ("admin", 2)] {
            let user = add(p, format!("{role}-o{org}-{n}@demo.padel"), org);
            p.org_memberships.push((user, org, role));
        }
    }
}

/// Players of each club, for choosing who books.
pub(super) fn players_by_club(p: &Plan) -> std::collections::HashMap<i64, Vec<i64>> {
    let mut map: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for (user, club, role) in &p.club_memberships {
        if *role == "player" {
            map.entry(*club).or_default().push(*user);
        }
    }
    map
}

/// One generated reservation: court, club, creator, date, start, end, status, price.
pub(super) type GeneratedReservation = (
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
pub(super) fn reservations_for_day(
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
