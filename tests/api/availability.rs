//! courtAvailability against a recomputation from the raw tables, and its input rules.

use chrono::Datelike;
use serde_json::json;

use crate::{
    helpers::{spawn_app_with, Backend, TestApp},
    on_both_backends,
};

const AVAILABILITY: &str = "query($club: ID!, $date: Date!, $courts: [ID!], $size: Int!) { courtAvailability(clubId: $club, date: $date, courtIds: $courts, slotMinutes: $size) { \
    date slotMinutes club { id } courts { court { id inMaintenance } availableCount slots { start end available } } } }";

fn minutes(time: &str) -> i64 {
    time[0..2].parse::<i64>().unwrap() * 60 + time[3..5].parse::<i64>().unwrap()
}

fn hhmm(m: i64) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Every court's slots on several dates and sizes against a recomputation from the raw tables,
/// with a court in maintenance; `within` judges each answer's statement count.
async fn slots_match_a_recomputation(app: &TestApp, within: impl Fn(u32) -> bool) {
    let token = app.token("player@demo.padel").await;
    // One court in maintenance: listed, every slot taken.
    app.execute("UPDATE courts SET is_maintenance = TRUE WHERE id = 2")
        .await;
    let raw = app.raw_reservations(1).await;
    for offset in [-5i64, 0, 1, 6] {
        let date = app.today + chrono::Duration::days(offset);
        let weekday = date.weekday().number_from_monday();
        let hours = app.text_rows(&format!("SELECT CAST(opens_at AS TEXT), CAST(closes_at AS TEXT) FROM club_schedules WHERE club_id = 1 AND weekday = {weekday} AND is_active")).await;
        for size in [15i64, 60, 90, 240] {
            let reply = app
                .graphql(
                    Some(&token),
                    AVAILABILITY,
                    json!({"club": "1", "date": date.to_string(), "size": size}),
                )
                .await;
            let availability = &reply.ok()["courtAvailability"];
            assert!(
                within(reply.sql_statements()),
                "availability ran {} statements",
                reply.sql_statements()
            );
            let courts = availability["courts"].as_array().unwrap();
            assert_eq!(courts.len(), 5);
            for court in courts {
                let id: i64 = court["court"]["id"].as_str().unwrap().parse().unwrap();
                let busy: Vec<(i64, i64)> = raw
                    .iter()
                    .filter(|r| {
                        r.court_id == id && r.date == date.to_string() && r.status != "cancelled"
                    })
                    .map(|r| (minutes(&r.start_time), minutes(&r.end_time)))
                    .collect();
                let mut expected = Vec::new();
                for row in &hours {
                    let (mut start, close) = (minutes(&row[0]), minutes(&row[1]));
                    while start + size <= close {
                        let free =
                            id != 2 && !busy.iter().any(|(s, e)| *s < start + size && start < *e);
                        expected.push(json!({"start": hhmm(start), "end": hhmm(start + size), "available": free}));
                        start += size;
                    }
                }
                assert_eq!(
                    court["slots"],
                    serde_json::Value::Array(expected.clone()),
                    "court {id} on {date}, {size} min"
                );
                let free = expected.iter().filter(|s| s["available"] == true).count();
                assert_eq!(court["availableCount"], free as i64);
            }
        }
    }
}

on_both_backends!(
    slots_match_a_recomputation_for_several_dates_and_sizes,
    |app| {
        slots_match_a_recomputation(&app, |n| n <= 3).await;
    }
);

/// With every cache off nothing is kept, so a grid reads the club and its day in one statement
/// (after the caller's): two in all, and the same slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_cache_off_a_grid_reads_the_club_and_its_day_in_one_statement() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = spawn_app_with(backend, &[("BFF__CACHE__ENABLED", "false")]).await;
        slots_match_a_recomputation(&app, |n| n == 2).await;
    }
}

on_both_backends!(court_ids_narrow_and_bad_input_is_refused, |app| {
    let token = app.token("player@demo.padel").await;
    let date = app.today.to_string();
    let reply = app
        .graphql(
            Some(&token),
            AVAILABILITY,
            json!({"club": "1", "date": date, "courts": ["3", "1"], "size": 60}),
        )
        .await;
    let ids: Vec<&str> = reply.ok()["courtAvailability"]["courts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["court"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["1", "3"]);
    for (vars, code) in [
        (
            json!({"club": "1", "date": date, "courts": ["6"], "size": 60}),
            "BAD_USER_INPUT",
        ), // court of club 2
        (
            json!({"club": "1", "date": date, "courts": ["zzz"], "size": 60}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"club": "1", "date": date, "size": 10}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"club": "1", "date": date, "size": 241}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"club": "1", "date": "21-11-2026", "size": 60}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"club": "-4", "date": date, "size": 60}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"club": "999999", "date": date, "size": 60}),
            "NOT_FOUND",
        ),
        (json!({"club": "3", "date": date, "size": 60}), "NOT_FOUND"), // another organization's club
    ] {
        let reply = app.graphql(Some(&token), AVAILABILITY, vars.clone()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.code(), code, "{vars} -> {}", reply.body);
    }
    // A closed weekday has no slots.
    let weekday = app.today.weekday().number_from_monday();
    app.execute(&format!(
        "UPDATE club_schedules SET is_active = FALSE WHERE club_id = 1 AND weekday = {weekday}"
    ))
    .await;
    app.flush_cache().await; // raw SQL bypasses the gateway's invalidation
    let reply = app
        .graphql(
            Some(&token),
            AVAILABILITY,
            json!({"club": "1", "date": date, "size": 60}),
        )
        .await;
    for court in reply.ok()["courtAvailability"]["courts"]
        .as_array()
        .unwrap()
    {
        assert_eq!(court["slots"], json!([]));
        assert_eq!(court["availableCount"], 0);
    }
});
