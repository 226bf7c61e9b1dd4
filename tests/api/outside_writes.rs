//! Writes made outside the gateway (psql, the platform's backend, COPY) reach every replica's
//! cache through the invalidation outbox (migration 0007, `padel_bff::invalidation`), also when a
//! gateway's listener is cut or the gateway was down while they happened.
//!
//! Every cached value here lives for an hour: only an invalidation can change what a replica
//! answers, so each poll below fails if the write never reached that replica.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::PgPoolCopyExt;

use crate::helpers::{
    eventually, shared_redis_url, slot_free, spawn_app_with, unique_prefix, Backend, TestApp,
};

const GRID: &str = "query($club: ID!, $date: Date!) { courtAvailability(clubId: $club, date: $date) { courts { court { id } slots { start end available } } } }";
const CLUBS: &str = "{ authContext { clubs { club { id } } } }";
/// Generous: the bound is 1 s at the p99 (measured in the load bench), polled with slack.
const SLACK: Duration = Duration::from_secs(20);

const LONG_LIVED: [(&str, &str); 6] = [
    ("BFF__CACHE__COURT_AVAILABILITY__TTL", "1h"),
    ("BFF__CACHE__AUTH_CONTEXT__TTL", "1h"),
    ("BFF__CACHE__CLUB__TTL", "1h"),
    ("BFF__CACHE__RESPONSE__TTL", "1h"),
    ("BFF__CACHE__SHARED__TTL", "1h"),
    ("BFF__CACHE__TTL_JITTER", "0"),
];

async fn gateway(prefix: &str, extra: &[(&str, &str)]) -> TestApp {
    let redis = shared_redis_url();
    let mut env: Vec<(&str, &str)> =
        vec![("REDIS_URL", &redis), ("BFF__CACHE__KEY_PREFIX", prefix)];
    env.extend(LONG_LIVED);
    env.extend(extra);
    spawn_app_with(Backend::Postgres, &env).await
}

async fn grid(app: &TestApp, token: &str, date: &str) -> crate::helpers::Reply {
    let reply = app
        .graphql(Some(token), GRID, json!({"club": "1", "date": date}))
        .await;
    reply.ok();
    reply
}

/// The first court of club 1 and its first slot on `date`: (court id, start, end).
fn first_slot(reply: &crate::helpers::Reply) -> (String, String, String) {
    let court = &reply.data()["courtAvailability"]["courts"][0];
    let slot = &court["slots"][0];
    let text = |v: &Value| v.as_str().unwrap().to_string();
    (
        text(&court["court"]["id"]),
        text(&slot["start"]),
        text(&slot["end"]),
    )
}

/// Polls both replicas until the slot is taken (`free == false`) or free again.
async fn both_see(
    a: &TestApp,
    b: &TestApp,
    token: &str,
    date: &str,
    slot: &(String, String, String),
    free: bool,
    what: &str,
) {
    for (name, app) in [("A", a), ("B", b)] {
        eventually(SLACK, &format!("replica {name}: {what}"), || async {
            let reply = grid(app, token, date).await;
            (slot_free(&reply, &slot.0, &slot.1) == free).then_some(())
        })
        .await;
    }
}

/// A booking of club 1 written as the platform's backend writes it: plain SQL, not the gateway.
async fn book_by_sql(app: &TestApp, court: &str, date: &str, start: &str, end: &str, status: &str) {
    app.execute(&format!(
        "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price) \
         VALUES (1, {court}, 1, '{date}', '{start}', '{end}', '{status}', 20)"
    ))
    .await;
}

fn outbox_rows(app: &TestApp) -> impl std::future::Future<Output = i64> + '_ {
    app.scalar_i64("SELECT COUNT(*) FROM bff_invalidation_outbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_writes_of_every_kind_reach_both_replicas() {
    let prefix = unique_prefix();
    let a = gateway(&prefix, &[]).await;
    let b = a.replica(&[]).await;
    let token = a.token("player@demo.padel").await;
    let date = a.weekday_after(200);
    let before = grid(&a, &token, &date).await;
    grid(&b, &token, &date).await;
    let again = grid(&b, &token, &date).await;
    assert_eq!(
        again.sql_statements(),
        0,
        "B serves the grid from its cache: {}",
        again.body
    );
    let slot = first_slot(&before);
    assert!(slot_free(&before, &slot.0, &slot.1));
    let (court, start, end) = slot.clone();

    // An INSERT through a second connection, as the platform's backend books.
    book_by_sql(&a, &court, &date, &start, &end, "confirmed").await;
    both_see(
        &a,
        &b,
        &token,
        &date,
        &slot,
        false,
        "an INSERT takes the slot",
    )
    .await;

    // A cancel via UPDATE.
    a.execute(&format!(
        "UPDATE reservations SET status = 'cancelled' WHERE court_id = {court} AND date = '{date}' AND start_time = '{start}'"
    ))
    .await;
    both_see(
        &a,
        &b,
        &token,
        &date,
        &slot,
        true,
        "a cancelling UPDATE frees it",
    )
    .await;

    // A DELETE of a live booking.
    book_by_sql(&a, &court, &date, &start, &end, "pending").await;
    both_see(
        &a,
        &b,
        &token,
        &date,
        &slot,
        false,
        "a second INSERT takes it",
    )
    .await;
    a.execute(&format!(
        "DELETE FROM reservations WHERE court_id = {court} AND date = '{date}' AND status <> 'cancelled'"
    ))
    .await;
    both_see(&a, &b, &token, &date, &slot, true, "a DELETE frees it").await;

    // A COPY of 10 000 rows over 30 dates: one outbox row, one tag set per (club, date).
    let first_day = a.today + chrono::Duration::days(300);
    let probe = first_day.to_string();
    let probe_before = grid(&a, &token, &probe).await;
    grid(&b, &token, &probe).await;
    let probe_slot = first_slot(&probe_before);
    let courts = a
        .scalar_i64("SELECT COUNT(*) FROM courts WHERE club_id = 1")
        .await;
    assert!(courts >= 1);
    let mut csv = String::new();
    let mut rows = 0;
    'fill: for day in 0..30 {
        let date = first_day + chrono::Duration::days(day);
        for court_row in 0..courts {
            for slot in 0..96 {
                if rows == 10_000 {
                    break 'fill;
                }
                let (from, to) = (slot * 15, slot * 15 + 15);
                let end = if to == 24 * 60 {
                    "23:59:59".to_string()
                } else {
                    format!("{:02}:{:02}", to / 60, to % 60)
                };
                csv.push_str(&format!(
                    "1,{court_row},1,{date},{:02}:{:02},{end},confirmed,10\n",
                    from / 60,
                    from % 60
                ));
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 10_000, "30 days hold 10 000 quarter hours");
    // Court ids by position: the CSV above names the club's courts 0..n, mapped here.
    let ids: Vec<i64> = {
        let crate::helpers::RawDb::Postgres(pool) = &a.raw else {
            unreachable!()
        };
        sqlx::query_scalar("SELECT id FROM courts WHERE club_id = 1 ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    let csv: String = csv
        .lines()
        .map(|line| {
            let mut parts: Vec<String> = line.split(',').map(String::from).collect();
            parts[1] = ids[parts[1].parse::<usize>().unwrap()].to_string();
            parts.join(",") + "\n"
        })
        .collect();
    let outbox_before = outbox_rows(&a).await;
    {
        let crate::helpers::RawDb::Postgres(pool) = &a.raw else {
            unreachable!()
        };
        let mut copy = pool
            .copy_in_raw("COPY reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price) FROM STDIN WITH (FORMAT csv)")
            .await
            .unwrap();
        copy.send(csv.as_bytes()).await.unwrap();
        assert_eq!(copy.finish().await.unwrap(), 10_000);
    }
    assert_eq!(
        outbox_rows(&a).await,
        outbox_before + 1,
        "one outbox row for the whole COPY"
    );
    let tags = a
        .scalar_i64("SELECT CAST(cardinality(tags) AS BIGINT) FROM bff_invalidation_outbox ORDER BY seq DESC LIMIT 1")
        .await;
    assert!(tags <= 30 * 5, "tags per (club, date), not per row: {tags}");
    both_see(
        &a,
        &b,
        &token,
        &probe,
        &probe_slot,
        false,
        "the COPY takes the probed day",
    )
    .await;

    // A new club membership (an INSERT the old row triggers never saw).
    let member = a.token("member@demo.padel").await;
    let member_id = a.user_id("member@demo.padel").await;
    let clubs = |reply: &crate::helpers::Reply| {
        reply.data()["authContext"]["clubs"]
            .as_array()
            .unwrap()
            .len()
    };
    let seen_a = a.graphql(Some(&member), CLUBS, json!({})).await;
    let seen_b = b.graphql(Some(&member), CLUBS, json!({})).await;
    let (count_a, count_b) = (clubs(&seen_a), clubs(&seen_b));
    assert_eq!(count_a, count_b);
    a.execute(&format!(
        "INSERT INTO club_memberships (user_id, club_id, role) VALUES ({member_id}, 1, 'player') ON CONFLICT DO NOTHING"
    ))
    .await;
    for (name, app) in [("A", &a), ("B", &b)] {
        eventually(
            SLACK,
            &format!("replica {name}: the new membership shows"),
            || async {
                let reply = app.graphql(Some(&member), CLUBS, json!({})).await;
                (clubs(&reply) == count_a + 1).then_some(())
            },
        )
        .await;
    }
}

/// The listener's connection is killed while writes happen (their NOTIFYs are lost): the outbox
/// still brings them. Then the gateway is stopped, a write lands while no gateway runs, and the
/// next one to start catches up from the position Redis kept (the shared tier would otherwise
/// serve the stale entry). Then the outbox is pruned past that position: a full flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_listener_and_a_restart_catch_up_from_the_outbox() {
    let prefix = unique_prefix();
    // Polling every minute: within the slack only a wake-up or a reconnect's catch-up can apply.
    let slow_poll = [("BFF__DATABASE__OUTBOX_POLL_INTERVAL", "60s")];
    let mut a = gateway(&prefix, &slow_poll).await;
    let b = a.replica(&[]).await;
    let token = a.token("player@demo.padel").await;
    let dates: Vec<String> = (0..3).map(|i| a.weekday_after(210 + 7 * i)).collect();
    let mut slots = Vec::new();
    for date in &dates {
        let reply = grid(&a, &token, date).await;
        grid(&b, &token, date).await;
        slots.push(first_slot(&reply));
    }
    let database = a.database_name();
    let cut = format!(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()) t"
    );
    for (date, (court, start, end)) in dates.iter().zip(&slots).take(2) {
        let cut_now = || async { (a.scalar_i64(&cut).await >= 1).then_some(()) };
        eventually(SLACK, "a listener connection to cut", cut_now).await;
        book_by_sql(&a, court, date, start, end, "confirmed").await;
    }
    for (date, slot) in dates.iter().zip(&slots).take(2) {
        both_see(
            &a,
            &b,
            &token,
            date,
            slot,
            false,
            "a write made while the listener was cut",
        )
        .await;
    }

    // Every gateway down; a write; a new gateway on the same Redis.
    a.stop();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await; // the stopped tails' last reads finish
    let (date, slot) = (&dates[2], &slots[2]);
    let (court, start, end) = slot;
    book_by_sql(&a, court, date, start, end, "confirmed").await;
    let c = a.replica(&[]).await;
    eventually(
        SLACK,
        "a gateway started after the write serves it",
        || async {
            let reply = grid(&c, &token, date).await;
            (!slot_free(&reply, court, start)).then_some(())
        },
    )
    .await;

    // Pruned past the recorded position: the next start flushes everything. A value cached in
    // Redis, then a write no gateway applied whose outbox row is gone.
    let probe = a.weekday_after(250);
    let cached = grid(&c, &token, &probe).await;
    let (court, start, end) = first_slot(&cached);
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    book_by_sql(&a, &court, &probe, &start, &end, "confirmed").await;
    a.execute("DELETE FROM bff_invalidation_outbox").await;
    a.execute("INSERT INTO club_memberships (user_id, club_id, role) VALUES (1, 1, 'player') ON CONFLICT DO NOTHING")
        .await;
    let d = a.replica(&[]).await;
    eventually(
        SLACK,
        "a gateway behind the pruned outbox flushes",
        || async {
            let reply = grid(&d, &token, &probe).await;
            (!slot_free(&reply, &court, &start)).then_some(())
        },
    )
    .await;
}

/// The outbox is bounded: rows older than the retention are pruned by the gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_pruned_after_its_retention() {
    let prefix = unique_prefix();
    let a = gateway(&prefix, &[("BFF__DATABASE__OUTBOX_RETENTION", "1s")]).await;
    a.execute("UPDATE clubs SET name = name WHERE id = 1").await;
    assert!(outbox_rows(&a).await >= 1);
    eventually(SLACK, "old outbox rows pruned", || async {
        let n = outbox_rows(&a).await;
        (n == 0).then_some(()).ok_or(format!("{n} rows"))
    })
    .await;
}

/// A transaction that wrote first but commits last: its outbox sequence is lower than one already
/// applied. The tail waits for it (by transaction horizon, not by a timeout) and applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_commits_after_a_later_one_is_still_applied() {
    let prefix = unique_prefix();
    let a = gateway(&prefix, &[]).await;
    let b = a.replica(&[]).await;
    let token = a.token("player@demo.padel").await;
    // Two dates, never one: `weekday_after(n)` is at most n + 2 (a Saturday moves to Monday), so
    // n and n + 1 can both land on the same Monday (they did on 2026-12-04, and the later write
    // then waited forever for the open transaction's slot).
    let (early, late) = (a.weekday_after(260), a.weekday_after(263));
    let slot_early = first_slot(&grid(&a, &token, &early).await);
    let slot_late = first_slot(&grid(&a, &token, &late).await);
    grid(&b, &token, &early).await;
    grid(&b, &token, &late).await;
    let crate::helpers::RawDb::Postgres(pool) = &a.raw else {
        unreachable!()
    };
    // Another booker than the later write's (user 2, not 1): the two share no rollup row, so the
    // later write does not wait for this transaction's locks.
    let mut open = pool.begin().await.unwrap();
    let (court, start, end) = &slot_early;
    sqlx::query(&format!(
        "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price) \
         VALUES (1, {court}, 2, '{early}', '{start}', '{end}', 'confirmed', 20)"
    ))
    .execute(&mut *open)
    .await
    .unwrap();
    let (court, start, end) = &slot_late;
    book_by_sql(&a, court, &late, start, end, "confirmed").await;
    both_see(&a, &b, &token, &late, &slot_late, false, "the later write").await;
    // Past several polls with the gap open, then the early transaction commits.
    tokio::time::sleep(Duration::from_secs(3)).await; // the tail polls every second meanwhile
    open.commit().await.unwrap();
    both_see(
        &a,
        &b,
        &token,
        &early,
        &slot_early,
        false,
        "the write that committed last",
    )
    .await;
}

/// A club deactivated and reactivated by SQL: its members' principals (who may use which club,
/// cached per user) follow on both replicas, not only the club's own values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_club_deactivated_and_reactivated_elsewhere_reaches_its_members() {
    let prefix = unique_prefix();
    let a = gateway(&prefix, &[]).await;
    let b = a.replica(&[]).await;
    let player = a.token("player@demo.padel").await;
    let has_club_2 = |reply: &crate::helpers::Reply| {
        reply.data()["authContext"]["clubs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["club"]["id"] == "2")
    };
    let date = a.weekday_after(20);
    let grid_2 = "query($date: Date!) { courtAvailability(clubId: 2, date: $date) { date } }";
    for app in [&a, &b] {
        assert!(has_club_2(
            &app.graphql(Some(&player), CLUBS, json!({})).await
        ));
        app.graphql(Some(&player), grid_2, json!({"date": date}))
            .await
            .ok();
    }
    a.execute("UPDATE clubs SET is_active = false WHERE id = 2")
        .await;
    for (name, app) in [("A", &a), ("B", &b)] {
        eventually(
            SLACK,
            &format!("replica {name}: club 2 is gone"),
            || async {
                let clubs = app.graphql(Some(&player), CLUBS, json!({})).await;
                let grid = app
                    .graphql(Some(&player), grid_2, json!({"date": date}))
                    .await;
                (!has_club_2(&clubs) && grid.code() == "NOT_FOUND").then_some(())
            },
        )
        .await;
    }
    a.execute("UPDATE clubs SET is_active = true WHERE id = 2")
        .await;
    for (name, app) in [("A", &a), ("B", &b)] {
        eventually(
            SLACK,
            &format!("replica {name}: club 2 is back"),
            || async {
                let clubs = app.graphql(Some(&player), CLUBS, json!({})).await;
                let grid = app
                    .graphql(Some(&player), grid_2, json!({"date": date}))
                    .await;
                (has_club_2(&clubs) && grid.code().is_empty()).then_some(())
            },
        )
        .await;
    }
}
