//! The dashboard against an independent recomputation from the raw tables.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use crate::{
    helpers::{RawReservation, TestApp},
    on_both_backends,
};

const DASHBOARD: &str = "query($club: ID!, $period: Period!, $date: Date) { dashboard(clubId: $club, period: $period, date: $date) { \
    from to period club { id } \
    current { reservations pending confirmed completed cancelled noShow revenue bookedMinutes openMinutes occupancyRate uniquePlayers } \
    previous { reservations pending confirmed completed cancelled noShow revenue bookedMinutes openMinutes occupancyRate uniquePlayers } \
    change { reservationsPct revenuePct occupancyPct } \
    courts { court { id } reservations bookedMinutes occupancyRate revenue } \
    daily { date reservations revenue occupancyRate } peakHours { hour reservations } } }";

fn minutes(time: &str) -> i64 {
    time[0..2].parse::<i64>().unwrap() * 60 + time[3..5].parse::<i64>().unwrap()
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn close(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {actual}"));
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: got {actual}, expected {expected}"
    );
}

struct Club {
    open_by_weekday: BTreeMap<u32, i64>,
    courts: Vec<i64>,
    reservations: Vec<RawReservation>,
}

async fn load(app: &TestApp, club: i64) -> Club {
    let mut open_by_weekday = BTreeMap::new();
    for row in app.text_rows(&format!("SELECT CAST(weekday AS TEXT), CAST(opens_at AS TEXT), CAST(closes_at AS TEXT) FROM club_schedules WHERE club_id = {club} AND is_active")).await {
        *open_by_weekday.entry(row[0].parse::<u32>().unwrap()).or_insert(0) += minutes(&row[2]) - minutes(&row[1]);
    }
    let courts = app
        .text_rows(&format!(
            "SELECT CAST(id AS TEXT) FROM courts WHERE club_id = {club} AND is_active ORDER BY id"
        ))
        .await
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    Club {
        open_by_weekday,
        courts,
        reservations: app.raw_reservations(club).await,
    }
}

fn dates(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).collect()
}

/// One court's opening minutes on a date.
fn open_on(club: &Club, date: NaiveDate) -> i64 {
    club.open_by_weekday
        .get(&date.weekday().number_from_monday())
        .copied()
        .unwrap_or(0)
}

/// One court's opening minutes over `from..=to`.
fn open_between(club: &Club, from: NaiveDate, to: NaiveDate) -> i64 {
    dates(from, to).into_iter().map(|d| open_on(club, d)).sum()
}

/// Minutes held by the non-cancelled reservations among `rows`.
fn booked<'a>(rows: impl IntoIterator<Item = &'a RawReservation>) -> i64 {
    rows.into_iter()
        .filter(|r| r.status != "cancelled")
        .map(|r| minutes(&r.end_time) - minutes(&r.start_time))
        .sum()
}

/// Revenue of `rows`: prices of CONFIRMED, COMPLETED and NO_SHOW reservations.
fn revenue<'a>(rows: impl IntoIterator<Item = &'a RawReservation>) -> i64 {
    rows.into_iter()
        .filter(|r| ["confirmed", "completed", "no_show"].contains(&r.status.as_str()))
        .map(|r| r.cents)
        .sum()
}

/// part / whole, 0 when whole is 0.
fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The club's reservations dated within `from..=to`.
fn in_range(club: &Club, from: NaiveDate, to: NaiveDate) -> Vec<&RawReservation> {
    club.reservations
        .iter()
        .filter(|r| (from..=to).contains(&r.date.parse::<NaiveDate>().unwrap()))
        .collect()
}

/// Checks one period's totals the slow, obvious way.
fn check_period(
    club: &Club,
    stats: &Value,
    from: NaiveDate,
    to: NaiveDate,
    what: &str,
) -> (i64, i64, f64) {
    let rows = in_range(club, from, to);
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count() as i64;
    let live: Vec<&&RawReservation> = rows.iter().filter(|r| r.status != "cancelled").collect();
    let revenue = revenue(rows.iter().copied());
    let booked = booked(rows.iter().copied());
    let open = open_between(club, from, to) * club.courts.len() as i64;
    let players: BTreeSet<i64> = live.iter().map(|r| r.created_by_id).collect();
    assert_eq!(
        stats["reservations"],
        live.len() as i64,
        "{what} reservations"
    );
    assert_eq!(stats["pending"], count("pending"), "{what} pending");
    assert_eq!(stats["confirmed"], count("confirmed"), "{what} confirmed");
    assert_eq!(stats["completed"], count("completed"), "{what} completed");
    assert_eq!(stats["cancelled"], count("cancelled"), "{what} cancelled");
    assert_eq!(stats["noShow"], count("no_show"), "{what} noShow");
    assert_eq!(stats["revenue"], money(revenue), "{what} revenue");
    assert_eq!(stats["bookedMinutes"], booked, "{what} bookedMinutes");
    assert_eq!(stats["openMinutes"], open, "{what} openMinutes");
    assert_eq!(
        stats["uniquePlayers"],
        players.len() as i64,
        "{what} uniquePlayers"
    );
    let occupancy = ratio(booked, open);
    close(
        &stats["occupancyRate"],
        occupancy,
        &format!("{what} occupancyRate"),
    );
    (live.len() as i64, revenue, occupancy)
}

fn pct(current: f64, previous: f64) -> Value {
    if previous == 0.0 {
        Value::Null
    } else {
        json!((current - previous) / previous * 100.0)
    }
}

async fn check_dashboard(
    app: &TestApp,
    token: &str,
    period: &str,
    anchor: NaiveDate,
    from: NaiveDate,
    to: NaiveDate,
    prev_from: NaiveDate,
    prev_to: NaiveDate,
) {
    let club = load(app, 1).await;
    let reply = app
        .graphql(
            Some(token),
            DASHBOARD,
            json!({"club": "1", "period": period, "date": anchor.to_string()}),
        )
        .await;
    let dashboard = &reply.ok()["dashboard"];
    assert!(
        reply.sql_statements() <= 3,
        "dashboard ran {} statements",
        reply.sql_statements()
    );
    assert_eq!(dashboard["from"], from.to_string());
    assert_eq!(dashboard["to"], to.to_string());
    let (cur_n, cur_rev, cur_occ) = check_period(&club, &dashboard["current"], from, to, "current");
    let (prev_n, prev_rev, prev_occ) = check_period(
        &club,
        &dashboard["previous"],
        prev_from,
        prev_to,
        "previous",
    );
    for (field, expected) in [
        ("reservationsPct", pct(cur_n as f64, prev_n as f64)),
        ("revenuePct", pct(cur_rev as f64, prev_rev as f64)),
        ("occupancyPct", pct(cur_occ, prev_occ)),
    ] {
        match expected {
            Value::Null => assert!(dashboard["change"][field].is_null(), "{field}"),
            v => close(&dashboard["change"][field], v.as_f64().unwrap(), field),
        }
    }
    let in_period = in_range(&club, from, to);
    // Courts: every active court, in order.
    let courts = dashboard["courts"].as_array().unwrap();
    assert_eq!(courts.len(), club.courts.len());
    let court_open = open_between(&club, from, to);
    for (entry, court) in courts.iter().zip(&club.courts) {
        assert_eq!(entry["court"]["id"], court.to_string());
        let on_court: Vec<&RawReservation> = in_period
            .iter()
            .copied()
            .filter(|r| r.court_id == *court)
            .collect();
        let live = on_court.iter().filter(|r| r.status != "cancelled").count();
        let booked = booked(on_court.iter().copied());
        assert_eq!(entry["reservations"], live as i64);
        assert_eq!(entry["bookedMinutes"], booked);
        assert_eq!(entry["revenue"], money(revenue(on_court.iter().copied())));
        close(
            &entry["occupancyRate"],
            ratio(booked, court_open),
            "court occupancy",
        );
    }
    // Daily: every date of the period.
    let daily = dashboard["daily"].as_array().unwrap();
    assert_eq!(daily.len(), dates(from, to).len());
    for (entry, date) in daily.iter().zip(dates(from, to)) {
        assert_eq!(entry["date"], date.to_string());
        let day: Vec<&RawReservation> = in_period
            .iter()
            .copied()
            .filter(|r| r.date == date.to_string())
            .collect();
        let live = day.iter().filter(|r| r.status != "cancelled").count();
        assert_eq!(entry["reservations"], live as i64, "reservations on {date}");
        assert_eq!(entry["revenue"], money(revenue(day.iter().copied())));
        let open = open_on(&club, date) * club.courts.len() as i64;
        close(
            &entry["occupancyRate"],
            ratio(booked(day.iter().copied()), open),
            "daily occupancy",
        );
    }
    // Peak hours: start hours with reservations, ascending.
    let mut hours: BTreeMap<i64, i64> = BTreeMap::new();
    for r in in_period.iter().filter(|r| r.status != "cancelled") {
        *hours
            .entry(r.start_time[0..2].parse().unwrap())
            .or_insert(0) += 1;
    }
    let expected: Vec<Value> = hours
        .into_iter()
        .map(|(hour, n)| json!({"hour": hour, "reservations": n}))
        .collect();
    assert_eq!(dashboard["peakHours"], Value::Array(expected));
}

on_both_backends!(
    dashboard_matches_an_independent_recomputation_for_every_period,
    |app| {
        let token = app.token("manager@demo.padel").await;
        let today = app.today;
        let month_from = today.with_day(1).unwrap();
        let next_month = if today.month() == 12 {
            NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
        }
        .unwrap();
        let prev_to = month_from.pred_opt().unwrap();
        check_dashboard(
            &app,
            &token,
            "MONTH",
            today,
            month_from,
            next_month.pred_opt().unwrap(),
            prev_to.with_day(1).unwrap(),
            prev_to,
        )
        .await;
        let monday = today - chrono::Days::new(u64::from(today.weekday().num_days_from_monday()));
        check_dashboard(
            &app,
            &token,
            "WEEK",
            today,
            monday,
            monday + chrono::Days::new(6),
            monday - chrono::Days::new(7),
            monday - chrono::Days::new(1),
        )
        .await;
        let day = today - chrono::Days::new(3);
        check_dashboard(
            &app,
            &token,
            "DAY",
            day,
            day,
            day,
            day.pred_opt().unwrap(),
            day.pred_opt().unwrap(),
        )
        .await;
        let y = today.year();
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        check_dashboard(
            &app,
            &token,
            "YEAR",
            today,
            ymd(y, 1, 1),
            ymd(y, 12, 31),
            ymd(y - 1, 1, 1),
            ymd(y - 1, 12, 31),
        )
        .await;
    }
);

on_both_backends!(
    dashboard_defaults_to_this_month_and_needs_a_manager,
    |app| {
        let owner = app.token("owner@demo.padel").await;
        let reply = app
            .graphql(
                Some(&owner),
                "{ dashboard(clubId: 2) { period from } }",
                json!({}),
            )
            .await;
        assert_eq!(reply.ok()["dashboard"]["period"], "MONTH");
        assert_eq!(
            reply.data()["dashboard"]["from"],
            app.today.with_day(1).unwrap().to_string()
        );
        for (email, code) in [
            ("staff@demo.padel", "FORBIDDEN"),
            ("player@demo.padel", "FORBIDDEN"),
            ("member@demo.padel", "NOT_FOUND"),
            ("owner2@demo.padel", "NOT_FOUND"),
        ] {
            let token = app.token(email).await;
            assert_eq!(
                app.graphql(Some(&token), "{ dashboard(clubId: 1) { from } }", json!({}))
                    .await
                    .code(),
                code,
                "{email}"
            );
        }
    }
);

/// Rollup rows (non-zero) minus the same groupings recomputed from reservations, both ways.
async fn rollup_drift(app: &TestApp) -> Vec<(&'static str, i64)> {
    const SUMS: &str = "COUNT(*), SUM(CAST(ROUND(price * 100) AS BIGINT)), \
                        SUM(CAST(EXTRACT(EPOCH FROM (end_time - start_time)) / 60 AS BIGINT))";
    let checks = [
        (
            "dashboard_day_totals",
            "SELECT club_id, date, court_id, status, reservations, cents, minutes FROM dashboard_day_totals \
             WHERE reservations <> 0 OR cents <> 0 OR minutes <> 0"
                .to_string(),
            format!("SELECT club_id, date, court_id, status, {SUMS} FROM reservations GROUP BY club_id, date, court_id, status"),
        ),
        (
            "dashboard_day_club_totals",
            "SELECT club_id, date, status, reservations, cents, minutes FROM dashboard_day_club_totals \
             WHERE reservations <> 0 OR cents <> 0 OR minutes <> 0"
                .to_string(),
            format!("SELECT club_id, date, status, {SUMS} FROM reservations GROUP BY club_id, date, status"),
        ),
        (
            "dashboard_hour_starts",
            "SELECT club_id, date, CAST(hour AS INTEGER), reservations FROM dashboard_hour_starts WHERE reservations <> 0"
                .to_string(),
            "SELECT club_id, date, CAST(EXTRACT(HOUR FROM start_time) AS INTEGER), COUNT(*) FROM reservations \
             WHERE status <> 'cancelled' GROUP BY 1, 2, 3"
                .to_string(),
        ),
        (
            "dashboard_period_players",
            "SELECT club_id, CAST(period AS TEXT), period_start, user_id, reservations FROM dashboard_period_players \
             WHERE reservations <> 0"
                .to_string(),
            // Period starts from date_trunc (the migration uses date arithmetic): ISO weeks.
            "SELECT club_id, k.kind, CAST(date_trunc(k.unit, CAST(date AS TIMESTAMP)) AS DATE), created_by_id, COUNT(*) \
             FROM reservations CROSS JOIN (VALUES ('D', 'day'), ('W', 'week'), ('M', 'month'), ('Y', 'year')) AS k (kind, unit) \
             WHERE status <> 'cancelled' GROUP BY 1, 2, 3, 4"
                .to_string(),
        ),
    ];
    let mut drift = Vec::new();
    for (table, rollup, regrouped) in checks {
        let n = app
            .scalar_i64(&format!(
                "SELECT COUNT(*) FROM ((({rollup}) EXCEPT ALL ({regrouped})) UNION ALL \
                 (({regrouped}) EXCEPT ALL ({rollup}))) d"
            ))
            .await;
        drift.push((table, n));
    }
    drift
}

async fn assert_rollups_exact(app: &TestApp, after: &str) {
    let drift = rollup_drift(app).await;
    assert!(
        drift.iter().all(|(_, n)| *n == 0),
        "after {after}: rows differing from a regrouping of reservations: {drift:?}"
    );
}

/// Postgres serves dashboards from rollups kept by triggers (migrations 0004 and 0006). Every kind of change
/// must keep them equal to a regrouping of the reservations: the gateway's bookings and
/// cancellations, SQL inserts, updates of any column, a refused statement, deletes and TRUNCATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dashboard_rollups_follow_every_kind_of_change() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let total = app
        .scalar_i64("SELECT COUNT(*) FROM dashboard_day_totals WHERE reservations > 0")
        .await;
    assert!(total > 0, "the seeded demo (COPY) reached the rollups");
    assert_rollups_exact(&app, "seeding").await;

    // Through the gateway: a booking, then its cancellation.
    let player = app.token("player@demo.padel").await;
    let date = (app.today + chrono::Days::new(20)).to_string();
    app.execute(&format!(
        "DELETE FROM reservations WHERE court_id = 1 AND date = '{date}'"
    ))
    .await;
    assert_rollups_exact(&app, "a delete").await;
    let reply = app
        .graphql(
            Some(&player),
            "mutation($d: Date!) { createReservation(input: {courtId: 1, date: $d, start: \"18:00\", end: \"19:30\"}) { id } }",
            json!({"d": date}),
        )
        .await;
    let id = reply.ok()["createReservation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_rollups_exact(&app, "a booking").await;
    let reply = app
        .graphql(
            Some(&player),
            "mutation($id: ID!) { cancelReservation(id: $id) { status } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(reply.ok()["cancelReservation"]["status"], "CANCELLED");
    assert_rollups_exact(&app, "a cancellation").await;

    // By hand: a multi-row insert, then updates of every column the rollups read.
    app.execute(&format!(
        "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price, created_at, updated_at) \
         SELECT 1, 1, 11 + g % 5, DATE '{date}', TIME '06:00' + make_interval(mins => 20 * g), \
                TIME '06:20' + make_interval(mins => 20 * g), 'pending', 7.25 + g, now(), now() \
         FROM generate_series(0, 8) g"
    ))
    .await;
    assert_rollups_exact(&app, "a multi-row insert").await;
    app.execute(&format!(
        "UPDATE reservations SET status = 'confirmed', price = price * 2, created_by_id = 12 \
         WHERE court_id = 1 AND date = '{date}' AND start_time < TIME '07:00'"
    ))
    .await;
    app.execute(&format!(
        "UPDATE reservations SET status = 'cancelled' WHERE court_id = 1 AND date = '{date}' AND start_time >= TIME '08:00'"
    ))
    .await;
    app.execute(&format!(
        "UPDATE reservations SET court_id = 2, club_id = 1, date = date + 1, start_time = TIME '05:00', end_time = TIME '05:45' \
         WHERE court_id = 1 AND date = '{date}' AND status = 'cancelled'"
    ))
    .await;
    assert_rollups_exact(
        &app,
        "updates of status, price, creator, court, date and times",
    )
    .await;

    // A statement the overlap constraint refuses changes nothing, rollups included.
    let crate::helpers::RawDb::Postgres(pool) = &app.raw else {
        unreachable!()
    };
    let before = app
        .scalar_i64("SELECT CAST(SUM(reservations) AS BIGINT) FROM dashboard_day_club_totals")
        .await;
    let refused = sqlx::query(&format!(
        "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price, created_at, updated_at) \
         VALUES (1, 1, 11, '{date}', '06:00', '06:20', 'confirmed', 5, now(), now())"
    ))
    .execute(pool)
    .await;
    assert!(refused.is_err(), "an overlapping booking was accepted");
    let after = app
        .scalar_i64("SELECT CAST(SUM(reservations) AS BIGINT) FROM dashboard_day_club_totals")
        .await;
    assert_eq!(before, after);
    assert_rollups_exact(&app, "a refused insert").await;

    // The dashboard read from the rollups still matches an independent recomputation.
    let manager = app.token("manager@demo.padel").await;
    let month_from = app.today.with_day(1).unwrap();
    let prev_to = month_from.pred_opt().unwrap();
    let next = (month_from + chrono::Days::new(40)).with_day(1).unwrap();
    check_dashboard(
        &app,
        &manager,
        "MONTH",
        app.today,
        month_from,
        next.pred_opt().unwrap(),
        prev_to.with_day(1).unwrap(),
        prev_to,
    )
    .await;

    app.execute("DELETE FROM reservations WHERE club_id = 2")
        .await;
    assert_rollups_exact(&app, "deleting a club's reservations").await;
    app.execute("TRUNCATE reservations").await;
    assert_eq!(
        app.scalar_i64(
            "SELECT (SELECT COUNT(*) FROM dashboard_day_totals) + (SELECT COUNT(*) FROM dashboard_day_club_totals) \
             + (SELECT COUNT(*) FROM dashboard_hour_starts) + (SELECT COUNT(*) FROM dashboard_period_players)"
        )
        .await,
        0,
        "TRUNCATE reservations empties the rollups"
    );
}
