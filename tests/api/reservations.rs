//! Booking rules, the 50-way race, idempotency keys, cancellation and the reservations budget.

use chrono::Datelike;
use serde_json::json;

use crate::on_both_backends;

const CREATE: &str = "mutation($input: CreateReservationInput!) { createReservation(input: $input) { id status price start end date court { id } createdBy { email } } }";

/// A date past the seeded calendar (which covers ±60 days) that falls on a weekday.
fn free_weekday(app: &crate::helpers::TestApp) -> chrono::NaiveDate {
    let mut date = app.today + chrono::Duration::days(90);
    while date.weekday().number_from_monday() > 5 {
        date = date.succ_opt().unwrap();
    }
    date
}

on_both_backends!(
    fifty_concurrent_bookings_of_one_slot_yield_exactly_one,
    |app| {
        let date = free_weekday(&app).to_string();
        let mut tokens = Vec::new();
        for email in [
            "player@demo.padel",
            "staff@demo.padel",
            "manager@demo.padel",
            "owner@demo.padel",
            "orgadmin@demo.padel",
        ] {
            tokens.push(app.token(email).await);
        }
        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let app = app.clone();
            let token = tokens[i % tokens.len()].clone();
            let date = date.clone();
            // Overlapping, not identical, intervals.
            let (start, end) = if i % 2 == 0 {
                ("18:00", "19:30")
            } else {
                ("18:30", "19:30")
            };
            tasks.push(tokio::spawn(async move {
                app.graphql(
                    Some(&token),
                    CREATE,
                    json!({"input": {"courtId": "1", "date": date, "start": start, "end": end}}),
                )
                .await
            }));
        }
        let mut won = 0;
        let mut conflicts = 0;
        for task in tasks {
            let reply = task.await.unwrap();
            assert_eq!(reply.status, 200);
            match reply.code() {
                "" => won += 1,
                "CONFLICT" => conflicts += 1,
                other => panic!("unexpected {other}: {}", reply.body),
            }
        }
        assert_eq!((won, conflicts), (1, 49));
        let stored = app
            .scalar_i64(&format!(
                "SELECT COUNT(*) FROM reservations WHERE court_id = 1 AND date = '{date}'"
            ))
            .await;
        assert_eq!(stored, 1);
    }
);

on_both_backends!(idempotency_keys_return_the_first_reservation, |app| {
    let date = free_weekday(&app).to_string();
    let token = app.token("player@demo.padel").await;
    let input = json!({"courtId": "1", "date": date, "start": "10:00", "end": "11:30", "idempotencyKey": "booking-abc-1"});
    let first = app
        .graphql(Some(&token), CREATE, json!({"input": input}))
        .await;
    let created = first.ok()["createReservation"].clone();
    assert_eq!(created["status"], "CONFIRMED");
    assert_eq!(created["price"], "48.00"); // Court 1 (indoor): 32.00 per hour, 90 minutes
    let again = app
        .graphql(Some(&token), CREATE, json!({"input": input}))
        .await;
    assert_eq!(again.ok()["createReservation"]["id"], created["id"]);
    let count = app
        .scalar_i64("SELECT COUNT(*) FROM reservations WHERE idempotency_key = 'booking-abc-1'")
        .await;
    assert_eq!(count, 1);
    // The same key for another booking is refused.
    let other = json!({"courtId": "1", "date": date, "start": "12:00", "end": "13:00", "idempotencyKey": "booking-abc-1"});
    assert_eq!(
        app.graphql(Some(&token), CREATE, json!({"input": other}))
            .await
            .code(),
        "BAD_USER_INPUT"
    );
    // 50 parallel retries with one key create one reservation.
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        let token = token.clone();
        let input = json!({"courtId": "2", "date": date, "start": "10:00", "end": "11:00", "idempotencyKey": "retry-storm"});
        tasks.push(tokio::spawn(async move {
            app.graphql(Some(&token), CREATE, json!({"input": input}))
                .await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        ids.insert(
            reply.ok()["createReservation"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), 1);
});

on_both_backends!(booking_rules_are_enforced_with_clear_codes, |app| {
    let token = app.token("player@demo.padel").await;
    let date = free_weekday(&app).to_string();
    let yesterday = (app.today - chrono::Duration::days(1)).to_string();
    let cases = [
        (
            json!({"courtId": "1", "date": yesterday, "start": "10:00", "end": "11:00"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": date, "start": "10:10", "end": "11:00"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": date, "start": "11:00", "end": "10:00"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": date, "start": "06:00", "end": "07:30"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": date, "start": "22:30", "end": "23:30"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": date, "start": "25:00", "end": "26:00"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": "2026-02-30", "start": "10:00", "end": "11:00"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "x1", "date": date, "start": "10:00", "end": "11:00"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "1", "date": date, "start": "10:00", "end": "11:00", "idempotencyKey": "k".repeat(256)}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"courtId": "424242", "date": date, "start": "10:00", "end": "11:00"}),
            "NOT_FOUND",
        ),
        (
            json!({"courtId": "11", "date": date, "start": "10:00", "end": "11:00"}),
            "NOT_FOUND",
        ), // a court of organization 2
    ];
    for (input, code) in cases {
        let reply = app
            .graphql(Some(&token), CREATE, json!({"input": input.clone()}))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.code(), code, "{input} -> {}", reply.body);
    }
    app.execute("UPDATE courts SET is_maintenance = TRUE WHERE id = 1")
        .await;
    app.flush_cache().await; // raw SQL bypasses the gateway's invalidation
    let reply = app
        .graphql(
            Some(&token),
            CREATE,
            json!({"input": {"courtId": "1", "date": date, "start": "10:00", "end": "11:00"}}),
        )
        .await;
    assert_eq!(reply.code(), "BAD_USER_INPUT");
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT COUNT(*) FROM reservations WHERE date = '{date}'"
        ))
        .await,
        0
    );
});

on_both_backends!(cancelling_releases_the_court_and_follows_the_roles, |app| {
    let date = free_weekday(&app).to_string();
    let player = app.token("player@demo.padel").await;
    let reply = app
        .graphql(
            Some(&player),
            CREATE,
            json!({"input": {"courtId": "1", "date": date, "start": "09:00", "end": "10:00"}}),
        )
        .await;
    let id = reply.ok()["createReservation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel = "mutation($id: ID!) { cancelReservation(id: $id) { id status } }";
    // Another player of the club may not (and may not even see it); the creator may.
    let other_player = app.scalar_i64("SELECT MIN(user_id) FROM club_memberships WHERE club_id = 1 AND role = 'player' AND user_id > 10").await;
    let other = app.token_for_id(other_player);
    assert_eq!(
        app.graphql(Some(&other), cancel, json!({"id": id}))
            .await
            .code(),
        "NOT_FOUND"
    );
    let reply = app.graphql(Some(&player), cancel, json!({"id": id})).await;
    assert_eq!(reply.ok()["cancelReservation"]["status"], "CANCELLED");
    // The slot is free again.
    let reply = app
        .graphql(
            Some(&other),
            CREATE,
            json!({"input": {"courtId": "1", "date": date, "start": "09:00", "end": "10:00"}}),
        )
        .await;
    let second = reply.ok()["createReservation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Staff cancel anyone's; a completed reservation cannot be cancelled.
    let staff = app.token("staff@demo.padel").await;
    assert_eq!(
        app.graphql(Some(&staff), cancel, json!({"id": second}))
            .await
            .ok()["cancelReservation"]["status"],
        "CANCELLED"
    );
    let completed = app
        .scalar_i64("SELECT MIN(id) FROM reservations WHERE club_id = 1 AND status = 'completed'")
        .await;
    assert_eq!(
        app.graphql(Some(&staff), cancel, json!({"id": completed.to_string()}))
            .await
            .code(),
        "BAD_USER_INPUT"
    );
});

on_both_backends!(
    a_day_of_reservations_with_nested_entities_stays_within_five_statements,
    |app| {
        let date = (app.today + chrono::Duration::days(2)).to_string();
        // Make it a full day: 200 reservations on one club and date (short bookings, many courts).
        let existing = app
            .scalar_i64(&format!(
                "SELECT COUNT(*) FROM reservations WHERE club_id = 1 AND date = '{date}'"
            ))
            .await;
        app.execute(&format!(
            "DELETE FROM reservations WHERE club_id = 1 AND date = '{date}'"
        ))
        .await;
        assert!(existing > 0);
        let price = if app.backend == crate::helpers::Backend::Postgres {
            "12.00"
        } else {
            "'12.00'"
        };
        let mut n = 0;
        'outer: for court in 1..=5 {
            for slot in 0..60 {
                let start = 8 * 60 + slot * 15;
                let (s, e) = (
                    format!("{:02}:{:02}:00", start / 60, start % 60),
                    format!("{:02}:{:02}:00", (start + 15) / 60, (start + 15) % 60),
                );
                let creator = 11 + (n % 10);
                app.execute(&format!(
                "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price, created_at, updated_at) \
                 VALUES (1, {court}, {creator}, '{date}', '{s}', '{e}', 'confirmed', {price}, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
            ))
            .await;
                n += 1;
                if n == 200 {
                    break 'outer;
                }
            }
        }
        let staff = app.token("staff@demo.padel").await;
        let reply = app
        .graphql(Some(&staff), "query($d: Date!) { reservations(clubId: 1, date: $d) { id court { name club { name organization { name } } } createdBy { email } } }", json!({"d": date}))
        .await;
        assert_eq!(reply.ok()["reservations"].as_array().unwrap().len(), 200);
        assert!(
            reply.sql_statements() <= 5,
            "ran {} statements",
            reply.sql_statements()
        );
        // The status filter narrows; without it every status is returned.
        app.execute(&format!("UPDATE reservations SET status = 'cancelled' WHERE club_id = 1 AND date = '{date}' AND court_id = 1")).await;
        let reply = app.graphql(Some(&staff), "query($d: Date!) { reservations(clubId: 1, date: $d, status: [CANCELLED]) { status } }", json!({"d": date})).await;
        assert_eq!(reply.ok()["reservations"].as_array().unwrap().len(), 60);
        let reply = app
            .graphql(
                Some(&staff),
                "query($d: Date!) { reservations(clubId: 1, date: $d) { status } }",
                json!({"d": date}),
            )
            .await;
        assert_eq!(reply.ok()["reservations"].as_array().unwrap().len(), 200);
    }
);
