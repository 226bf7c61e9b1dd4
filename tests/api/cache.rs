//! The two-tier cache with real Redis: tiers, replicas, invalidation, single flight, Redis
//! failures (on private redis-server processes), stale-if-error and tenant safety.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    eventually, shared_redis_url, slot_free, spawn_app_with, unique_prefix, wait_for_l1, Backend,
    PrivateRedis, TestApp,
};

const AVAILABILITY: &str = "query($club: ID!, $date: Date!) { courtAvailability(clubId: $club, date: $date, slotMinutes: 60) { courts { court { id } slots { start available } } } }";

async fn with_redis(url: &str, prefix: &str) -> TestApp {
    spawn_app_with(
        Backend::Postgres,
        &[("REDIS_URL", url), ("BFF__CACHE__KEY_PREFIX", prefix)],
    )
    .await
}

/// Two gateways over one database sharing a Redis (under a key prefix of their own), both with
/// L1 serving.
async fn two_replicas(redis_url: &str) -> (TestApp, TestApp) {
    let a = with_redis(redis_url, &unique_prefix()).await;
    let b = a.replica(&[]).await;
    wait_for_l1(&a).await;
    wait_for_l1(&b).await;
    (a, b)
}

fn far_weekday(app: &TestApp) -> String {
    app.weekday_after(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_come_from_l1_then_l2_on_another_replica() {
    let (a, b) = two_replicas(&shared_redis_url()).await;
    let token = a.token("player@demo.padel").await;
    let vars = json!({"club": "1", "date": far_weekday(&a)});
    let first = a.graphql(Some(&token), AVAILABILITY, vars.clone()).await;
    assert_eq!(first.cache_outcome("courtAvailability"), "miss");
    let again = a.graphql(Some(&token), AVAILABILITY, vars.clone()).await;
    assert_eq!(again.cache_outcome("courtAvailability"), "l1Hit");
    assert_eq!(again.sql_statements(), 0, "an L1 hit runs no SQL");
    // The L2 fill is written in the background: poll briefly.
    let on_b = eventually(Duration::from_secs(5), "replica B never hit L2", || async {
        let on_b = b.graphql(Some(&token), AVAILABILITY, vars.clone()).await;
        if on_b.cache_outcome("courtAvailability") == "l2Hit" {
            Ok(on_b)
        } else {
            Err(on_b.body)
        }
    })
    .await;
    assert_eq!(on_b.data(), first.data());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_through_one_replica_is_seen_through_the_other_and_nothing_else_is_evicted() {
    let (a, b) = two_replicas(&shared_redis_url()).await;
    let player = a.token("player@demo.padel").await;
    let date = far_weekday(&a);
    let next_day = (chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap()
        + chrono::Duration::days(1))
    .to_string();
    // Warm B: club 1 on the date and the next day, club 2 on the date.
    for (club, day) in [("1", &date), ("1", &next_day), ("2", &date)] {
        b.graphql(
            Some(&player),
            AVAILABILITY,
            json!({"club": club, "date": day}),
        )
        .await;
        let warm = b
            .graphql(
                Some(&player),
                AVAILABILITY,
                json!({"club": club, "date": day}),
            )
            .await;
        assert_eq!(warm.cache_outcome("courtAvailability"), "l1Hit");
        assert!(slot_free(
            &warm,
            if club == "1" { "1" } else { "6" },
            "18:00"
        ));
    }
    let booked = a
        .graphql(Some(&player), "mutation($d: Date!) { createReservation(input: {courtId: 1, date: $d, start: \"18:00\", end: \"19:00\"}) { id } }", json!({"d": date}))
        .await;
    booked.ok();
    let returned = Instant::now();
    let vars = json!({"club": "1", "date": date});
    eventually(
        Duration::from_secs(5),
        "replica B still serves the old slots",
        || async {
            let on_b = b.graphql(Some(&player), AVAILABILITY, vars.clone()).await;
            !slot_free(&on_b, "1", "18:00")
        },
    )
    .await;
    println!(
        "replica B fresh {:?} after the mutation returned",
        returned.elapsed()
    );
    for (club, day) in [("1", &next_day), ("2", &date)] {
        let unrelated = b
            .graphql(
                Some(&player),
                AVAILABILITY,
                json!({"club": club, "date": day}),
            )
            .await;
        assert_eq!(
            unrelated.cache_outcome("courtAvailability"),
            "l1Hit",
            "club {club} on {day} was evicted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_cold_requests_cause_one_load() {
    let prefix = unique_prefix();
    // Generous Redis timeouts: on a loaded CI machine a 150 ms timeout can open the breaker,
    // whose recovery flushes L1 and would make this test count reloads, not single flight.
    let app = std::sync::Arc::new(
        spawn_app_with(
            Backend::Postgres,
            &[
                ("REDIS_URL", &shared_redis_url()),
                ("BFF__CACHE__KEY_PREFIX", &prefix),
                ("BFF__CACHE__REDIS_READ_TIMEOUT", "3s"),
                ("BFF__CACHE__REDIS_WRITE_TIMEOUT", "3s"),
            ],
        )
        .await,
    );
    wait_for_l1(&app).await;
    let token = app.token("player@demo.padel").await;
    // Sign-in and club layout cached first, so only the availability load is in question.
    app.graphql(Some(&token), "{ club(id: 1) { name } }", json!({}))
        .await
        .ok();
    let date = far_weekday(&app);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (app, token, date) = (app.clone(), token.clone(), date.clone());
        tasks.push(tokio::spawn(async move {
            app.graphql(
                Some(&token),
                AVAILABILITY,
                json!({"club": "1", "date": date}),
            )
            .await
        }));
    }
    let mut statements = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        reply.ok();
        statements += reply.sql_statements();
    }
    assert_eq!(
        statements, 1,
        "100 cold requests ran {statements} SQL statements"
    );
    let status = app.management("/api/management/cache/status").await;
    let kind = status["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "courtAvailability")
        .unwrap()
        .clone();
    assert_eq!(kind["stats"]["misses"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_values_are_never_served_to_another_tenant() {
    let prefix = unique_prefix();
    let app = with_redis(&shared_redis_url(), &prefix).await;
    let owner = app.token("owner@demo.padel").await;
    let outsider = app.token("owner2@demo.padel").await;
    let date = far_weekday(&app);
    for _ in 0..2 {
        app.graphql(
            Some(&owner),
            AVAILABILITY,
            json!({"club": "1", "date": date}),
        )
        .await
        .ok();
        app.graphql(Some(&owner), "{ dashboard(clubId: 1) { from } }", json!({}))
            .await
            .ok();
    }
    let reply = app
        .graphql(
            Some(&outsider),
            AVAILABILITY,
            json!({"club": "1", "date": date}),
        )
        .await;
    assert_eq!(reply.code(), "NOT_FOUND");
    assert!(reply.data().is_null());
    let reply = app
        .graphql(
            Some(&outsider),
            "{ dashboard(clubId: 1) { from } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.code(), "NOT_FOUND");
    // Their own context is theirs, though the owner's is cached.
    let reply = app
        .graphql(
            Some(&outsider),
            "{ authContext { user { email } organizations { organization { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        reply.ok()["authContext"]["user"]["email"],
        "owner2@demo.padel"
    );
    assert_eq!(
        reply.data()["authContext"]["organizations"],
        json!([{"organization": {"id": "2"}}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_frozen_fails_no_request_and_recovers() {
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let app = with_redis(&redis.url(), &prefix).await;
    wait_for_l1(&app).await;
    let token = app.token("player@demo.padel").await;
    let date = far_weekday(&app);
    let ask = |d: String| {
        let token = token.clone();
        let app = &app;
        async move {
            app.graphql(Some(&token), AVAILABILITY, json!({"club": "1", "date": d}))
                .await
        }
    };
    ask(date.clone()).await.ok();
    let ready = |app: &TestApp| {
        let url = format!("{}/readyz", app.address);
        let client = app.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(ready(&app).await["status"], "ready");

    // Killed: every request still answers; readiness says degraded.
    redis.kill();
    for i in 0..30 {
        let reply = ask(
            (chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap()
                + chrono::Duration::days(i % 5))
            .to_string(),
        )
        .await;
        reply.ok();
    }
    eventually(
        Duration::from_secs(10),
        "readyz never said degraded",
        || async {
            let status = ready(&app).await;
            if status["status"] == "degraded" {
                return Ok(());
            }
            ask(date.clone()).await.ok();
            Err(status)
        },
    )
    .await;

    // Back: L2 in use again within 30 s (an L2 hit after an L1 flush).
    redis.spawn();
    eventually(
        Duration::from_secs(30),
        "gateway never recovered Redis",
        || async {
            ask(date.clone()).await.ok();
            let status = ready(&app).await;
            if status["status"] == "ready" {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;

    // Frozen (SIGSTOP: accepts connections, never answers): still no failed request.
    redis.signal("-STOP");
    let started = Instant::now();
    for i in 0..20 {
        let reply = ask(
            (chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap()
                + chrono::Duration::days(10 + i))
            .to_string(),
        )
        .await;
        reply.ok();
    }
    println!(
        "20 requests with a frozen Redis took {:?}",
        started.elapsed()
    );
    assert_eq!(ready(&app).await["status"], "degraded");
    redis.signal("-CONT");
    eventually(
        Duration::from_secs(30),
        "gateway never recovered from the freeze",
        || async {
            let status = ready(&app).await;
            if status["status"] == "ready" {
                return Ok(());
            }
            ask(date.clone()).await.ok();
            Err(status)
        },
    )
    .await;
}

/// Runs one command on a Redis server, as its default user.
async fn redis_command<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command
        .query_async(&mut connection)
        .await
        .expect("redis command")
}

/// Without its invalidation channel a replica cannot know what it missed. While B cannot hear the
/// channel, B reports L1 off and holds nothing in it; a booking through A meanwhile publishes an
/// invalidation B never receives (pub/sub keeps nothing for later); once B hears again, the slots
/// it cached before are gone from its L1, so B answers the booking, not what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_invalidation_channel_flushes_l1_and_keeps_data_fresh() {
    let redis = PrivateRedis::start();
    // B talks to Redis as a user of its own, so the test can take B's pub/sub rights away (and
    // give them back) while every other command of B, and all of A's, keeps working.
    let () = redis_command(
        &redis.url(),
        &[
            "ACL",
            "SETUSER",
            "replica",
            "on",
            ">replica-secret",
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    let a = with_redis(&redis.url(), &unique_prefix()).await;
    let b_url = redis
        .url()
        .replace("redis://", "redis://replica:replica-secret@");
    let b = a.replica(&[("REDIS_URL", &b_url)]).await;
    wait_for_l1(&a).await;
    wait_for_l1(&b).await;
    let player = a.token("player@demo.padel").await;
    let date = far_weekday(&a);
    let booked = json!({"club": "1", "date": date});
    let untouched = json!({"club": "2", "date": date});
    // B holds both in L1; the 18:00 slot of court 1 is free.
    for vars in [&booked, &untouched] {
        b.graphql(Some(&player), AVAILABILITY, vars.clone())
            .await
            .ok();
        let cached = b.graphql(Some(&player), AVAILABILITY, vars.clone()).await;
        assert_eq!(cached.cache_outcome("courtAvailability"), "l1Hit");
    }
    let before = b.graphql(Some(&player), AVAILABILITY, booked.clone()).await;
    assert!(slot_free(&before, "1", "18:00"));

    // B loses its channel: no right to subscribe any more, and its subscription cut.
    let () = redis_command(
        &redis.url(),
        &["ACL", "SETUSER", "replica", "resetchannels"],
    )
    .await;
    let _: i64 = redis_command(
        &redis.url(),
        &["CLIENT", "KILL", "USER", "replica", "TYPE", "pubsub"],
    )
    .await;
    let l1_status = || async { b.management("/api/management/cache/status").await["l1"].clone() };
    eventually(
        Duration::from_secs(10),
        "B reports L1 active without its channel",
        || async {
            let l1 = l1_status().await;
            if l1["active"] == false {
                Ok(())
            } else {
                Err(l1)
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "B's L1 kept its entries after losing its channel",
        || async {
            let l1 = l1_status().await;
            if l1["entries"] == 0 {
                Ok(())
            } else {
                Err(l1)
            }
        },
    )
    .await;
    // Nothing is served from L1 or kept in it meanwhile.
    for _ in 0..2 {
        let reply = b
            .graphql(Some(&player), AVAILABILITY, untouched.clone())
            .await;
        assert_ne!(
            reply.cache_outcome("courtAvailability"),
            "l1Hit",
            "{}",
            reply.body
        );
    }
    // A books the slot: its invalidation is published while B cannot hear it.
    a.graphql(Some(&player), "mutation($d: Date!) { createReservation(input: {courtId: 1, date: $d, start: \"18:00\", end: \"19:00\"}) { id } }", json!({"d": date}))
        .await
        .ok();
    assert_eq!(l1_status().await["active"], false, "B heard its channel");

    // The channel is back: B's L1 serves again, but without what it held before.
    let () = redis_command(&redis.url(), &["ACL", "SETUSER", "replica", "allchannels"]).await;
    wait_for_l1(&b).await;
    let after = b.graphql(Some(&player), AVAILABILITY, booked.clone()).await;
    assert_ne!(
        after.cache_outcome("courtAvailability"),
        "l1Hit",
        "B kept its L1 entry through the channel loss: {}",
        after.body
    );
    assert!(
        !slot_free(&after, "1", "18:00"),
        "B served the slots it cached before losing its channel"
    );
    let again = b.graphql(Some(&player), AVAILABILITY, booked.clone()).await;
    assert_eq!(again.cache_outcome("courtAvailability"), "l1Hit");
    assert_eq!(again.data(), after.data());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_availability_is_served_while_the_database_is_unreachable() {
    let app = spawn_app_with(
        Backend::Postgres,
        &[
            ("BFF__CACHE__COURT_AVAILABILITY__TTL", "1s"),
            ("BFF__CACHE__TTL_JITTER", "0"),
        ],
    )
    .await;
    let token = app.token("player@demo.padel").await;
    let date = far_weekday(&app);
    let fresh = app
        .graphql(
            Some(&token),
            AVAILABILITY,
            json!({"club": "1", "date": date}),
        )
        .await;
    fresh.ok();
    // Make the database refuse this gateway: no new connections, existing ones terminated.
    let database = app.database_name();
    app.admin(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
    ))
    .await;
    app.admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()")).await;
    app.clock.advance(Duration::from_millis(1300));
    let stale = app
        .graphql(
            Some(&token),
            AVAILABILITY,
            json!({"club": "1", "date": date}),
        )
        .await;
    assert_eq!(
        stale.cache_outcome("courtAvailability"),
        "staleIfError",
        "{}",
        stale.body
    );
    assert_eq!(stale.data(), fresh.data());
    // Something never cached fails cleanly instead: a database that refuses this gateway's new
    // sessions is unreachable. A second of real time first, so each cut pooled connection is
    // pinged and dropped and the statement needs a new session (refused: FATAL 55000).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let other = app
        .graphql(
            Some(&token),
            AVAILABILITY,
            json!({"club": "2", "date": date}),
        )
        .await;
    assert_eq!(other.code(), "SERVICE_UNAVAILABLE", "{}", other.body);
    app.admin(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_fills_availability_and_dashboards_before_the_first_request() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let admin = app.token("admin@demo.padel").await;
    let response = app
        .client
        .post(format!("{}/api/management/cache/warmup", app.address))
        .bearer_auth(&admin)
        .json(&json!({"clubIds": [1], "days": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["warmed"],
        1 + 2 + 3,
        "layout, 2 days of availability, 3 dashboards"
    );
    let manager = app.token("manager@demo.padel").await;
    let today = padel_bff::reads::today_at("Europe/Madrid").to_string();
    let reply = app
        .graphql(
            Some(&manager),
            "query($d: Date!) { courtAvailability(clubId: 1, date: $d, slotMinutes: 90) { date } }",
            json!({"d": today}),
        )
        .await;
    assert_eq!(
        reply.cache_outcome("courtAvailability"),
        "l1Hit",
        "{}",
        reply.body
    );
    let reply = app
        .graphql(
            Some(&manager),
            "{ dashboard(clubId: 1, period: WEEK) { from } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.cache_outcome("dashboard"), "l1Hit", "{}", reply.body);
    // Only superusers may warm up.
    let denied = app
        .client
        .post(format!("{}/api/management/cache/warmup", app.address))
        .bearer_auth(&manager)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_dashboard_is_served_while_one_refresh_runs() {
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__CACHE__DASHBOARD__TTL", "1s"),
            ("BFF__CACHE__DASHBOARD__STALE_WHILE_REVALIDATE", "30s"),
            ("BFF__CACHE__TTL_JITTER", "0"),
        ],
    )
    .await;
    let manager = app.token("manager@demo.padel").await;
    let query = "{ dashboard(clubId: 1, period: DAY) { current { reservations } } }";
    assert_eq!(
        app.graphql(Some(&manager), query, json!({}))
            .await
            .cache_outcome("dashboard"),
        "miss"
    );
    app.clock.advance(Duration::from_millis(1200));
    let stale = app.graphql(Some(&manager), query, json!({})).await;
    assert_eq!(
        stale.cache_outcome("dashboard"),
        "staleWhileRevalidate",
        "{}",
        stale.body
    );
    // The background refresh lands; the next read is a fresh hit.
    eventually(
        Duration::from_secs(5),
        "the refresh never landed",
        || async {
            let reply = app.graphql(Some(&manager), query, json!({})).await;
            if reply.cache_outcome("dashboard") == "l1Hit" {
                Ok(())
            } else {
                Err(reply.body)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_responses_go_only_to_whom_they_were_for_and_only_while_true() {
    let (a, b) = two_replicas(&shared_redis_url()).await;
    let manager = a.token("manager@demo.padel").await;
    let date = far_weekday(&a);
    let dashboard = "query Dash($d: Date) { dashboard(clubId: 1, period: MONTH, date: $d) { current { reservations revenue } } }";
    let vars = json!({"d": date});
    let first = a.graphql(Some(&manager), dashboard, vars.clone()).await;
    let before = first.ok()["dashboard"]["current"]["reservations"]
        .as_i64()
        .unwrap();
    // Stored, then served whole: same bytes, no SQL, reported as a response hit.
    let hit = a.graphql(Some(&manager), dashboard, vars.clone()).await;
    assert_eq!(hit.cache_outcome("response"), "l1Hit", "{}", hit.body);
    assert_eq!(hit.data(), first.data());
    assert_eq!(hit.sql_statements(), 0);

    // Never to someone else: the identical request from another organization's owner and from a
    // player of the club (who may not read dashboards) gets their own, correct answer.
    for (email, code) in [
        ("owner2@demo.padel", "NOT_FOUND"),
        ("player@demo.padel", "FORBIDDEN"),
    ] {
        let other = a.token(email).await;
        for _ in 0..2 {
            let reply = a.graphql(Some(&other), dashboard, vars.clone()).await;
            assert_eq!(reply.code(), code, "{email}: {}", reply.body);
            assert_eq!(reply.cache_outcome("response"), "", "{email}");
        }
    }

    // Never after its data changed: a booking through replica B moves replica A's answer.
    let player = a.token("player@demo.padel").await;
    b.graphql(Some(&player), "mutation($d: Date!) { createReservation(input: {courtId: 1, date: $d, start: \"18:00\", end: \"19:00\"}) { id } }", json!({"d": date}))
        .await
        .ok();
    // Changes arrive through invalidation messages.
    let moved = eventually(
        Duration::from_secs(5),
        "replica A kept the old dashboard",
        || async {
            let reply = a.graphql(Some(&manager), dashboard, vars.clone()).await;
            match reply.data()["dashboard"]["current"]["reservations"].as_i64() {
                Some(now) if now == before + 1 => Ok(reply),
                _ => Err(reply.body),
            }
        },
    )
    .await;
    assert_ne!(moved.cache_outcome("response"), "l1Hit");
    // Stored again once the booking's invalidations have all arrived (the mutation's own, then
    // its outbox row a few milliseconds later, which may drop the first re-stored answer).
    let again = eventually(
        Duration::from_secs(5),
        "the new answer is stored",
        || async {
            let reply = a.graphql(Some(&manager), dashboard, vars.clone()).await;
            (reply.cache_outcome("response") == "l1Hit").then_some(reply)
        },
    )
    .await;
    assert_eq!(again.data(), moved.data());

    // Never after access was lost: the manager's membership deactivated behind the gateway's
    // back (SQL; Postgres triggers publish the invalidation).
    let manager_id = a.user_id("manager@demo.padel").await;
    a.execute(&format!(
        "UPDATE club_memberships SET is_active = FALSE WHERE user_id = {manager_id} AND club_id = 1"
    ))
    .await;
    for app in [&a, &b] {
        eventually(
            Duration::from_secs(5),
            "the deactivated manager still reads the dashboard",
            || async {
                let reply = app.graphql(Some(&manager), dashboard, vars.clone()).await;
                if reply.code() == "NOT_FOUND" {
                    Ok(())
                } else {
                    Err(reply.body)
                }
            },
        )
        .await;
    }
}
