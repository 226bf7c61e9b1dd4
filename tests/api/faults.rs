//! Faults during a mixed load, against the real binary: Redis killed and restarted, PostgreSQL
//! stopped and restarted, the OTLP collector gone. Reads and bookings run from several
//! connections throughout; afterwards no acknowledged booking is lost or duplicated, no panic was
//! logged, and the same process serves again without a restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};

use crate::helpers::{
    eventually, grpc_receiver_with_handle, seed_demo, Gateway, PrivatePostgres, PrivateRedis,
};

/// Which fault is in force while a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Healthy,
    RedisDown,
    PostgresDown,
    CollectorGone,
    /// The request started in one phase and ended in another.
    Transition,
}

/// The phase a request ran in: the same at its start and end, or a transition.
fn phase_of(start: Phase, end: Phase) -> Phase {
    if start == end {
        start
    } else {
        Phase::Transition
    }
}

/// One answer of the load: phase, operation, and `ok` or the error code / HTTP status.
type Log = Arc<Mutex<Vec<(Phase, &'static str, String)>>>;

async fn post(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    body: &Value,
) -> (String, Value) {
    match client
        .post(format!("{gateway}/graphql"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
    {
        Err(error) => (format!("transport: {error}"), Value::Null),
        Ok(response) => {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let outcome = match body["errors"][0]["extensions"]["code"].as_str() {
                Some(code) => code.to_string(),
                None if status.is_success() && !body["data"].is_null() => "ok".to_string(),
                None => format!("HTTP {status}"),
            };
            (outcome, body)
        }
    }
}

fn booking(court: i64, date: chrono::NaiveDate, hour: u32, key: &str) -> Value {
    json!({
        "query": "mutation Book($input: CreateReservationInput!) { createReservation(input: $input) { id } }",
        "variables": { "input": {
            "courtId": court.to_string(),
            "date": date.to_string(),
            "start": format!("{hour:02}:00"),
            "end": format!("{:02}:00", hour + 1),
            "idempotencyKey": key,
        }}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_mixed_load_lose_nothing_and_recover_without_a_restart() {
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let mut postgres = postgres;
    let admin = sqlx::PgPool::connect(&postgres.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE bff")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = postgres.url("bff");
    seed_demo(&url);
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    // The bookings lie 100+ days ahead, clear of the seeded ones.
    sqlx::query("UPDATE clubs SET booking_horizon_days = 3650")
        .execute(&db)
        .await
        .unwrap();
    let owner: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'owner@demo.padel'")
        .fetch_one(&db)
        .await
        .unwrap();
    let courts: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM courts WHERE club_id = 1 AND is_active ORDER BY id LIMIT 2",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;

    let mut redis = PrivateRedis::start();
    let (collector, received, collector_task) = grpc_receiver_with_handle().await;
    let collector_address = collector.clone();
    let mut gateway = Gateway::start(&[
        ("DATABASE_URL", &url),
        ("REDIS_URL", &redis.url()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("BFF__TELEMETRY__EXPORT_INTERVAL", "200ms"),
        ("BFF__DATABASE__ACQUIRE_TIMEOUT", "1s"),
        ("BFF__RATE_LIMIT__ENABLED", "false"),
    ])
    .await;
    let address = gateway.address.clone();
    let token = gateway.token_for_id(owner);
    let today = chrono::Utc::now().date_naive();
    // Readers look at club 2; bookings go to club 1 (so they never invalidate what is read).
    let reads: Vec<(&'static str, Value)> = vec![
        (
            "authContext",
            json!({"query": "{ authContext { user { email } clubs { role club { id } } permissions } }"}),
        ),
        (
            "courtAvailability",
            json!({"query": format!("{{ courtAvailability(clubId: 2, date: \"{}\") {{ courts {{ court {{ id }} availableCount }} }} }}", today + chrono::Duration::days(1))}),
        ),
        (
            "dashboard",
            json!({"query": "{ dashboard(clubId: 2) { current { reservations revenue } } }"}),
        ),
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    // Warm the cache.
    for (_, body) in &reads {
        let (outcome, answer) = post(&client, &address, &token, body).await;
        assert_eq!(outcome, "ok", "{answer}");
    }

    let phase = Arc::new(Mutex::new(Phase::Healthy));
    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    // Every booking a client was told succeeded: idempotency key -> reservation id; and every
    // key a client sent at least once.
    let acknowledged: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let attempted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for reader in 0..3 {
        let (client, address, token, reads) = (
            client.clone(),
            address.clone(),
            token.clone(),
            reads.clone(),
        );
        let (phase, stop, log) = (phase.clone(), stop.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = reader;
            while !stop.load(Ordering::Relaxed) {
                let (name, body) = &reads[i % reads.len()];
                let at = *phase.lock().unwrap();
                let (outcome, _) = post(&client, &address, &token, body).await;
                let at = phase_of(at, *phase.lock().unwrap());
                log.lock().unwrap().push((at, name, outcome));
                i += 1;
                // Pacing of the load (a read every 10 ms), not a wait for the gateway.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // Two booking clients, each on its own court, one-hour slots far from the seeded days. A
    // client that gets no answer (or SERVICE_UNAVAILABLE) retries the same key later.
    let slots: Vec<(i64, chrono::NaiveDate, u32, String)> = (0..courts.len())
        .flat_map(|c| {
            let court = courts[c];
            (0..60).flat_map(move |day| {
                (9..21).map(move |hour| {
                    let date = today + chrono::Duration::days(100 + day);
                    (court, date, hour, format!("fault-{court}-{date}-{hour}"))
                })
            })
        })
        .collect();
    let per_booker: Vec<Vec<_>> = courts
        .iter()
        .map(|court| slots.iter().filter(|s| s.0 == *court).cloned().collect())
        .collect();
    for mine in per_booker {
        let (client, address, token) = (client.clone(), address.clone(), token.clone());
        let (phase, stop, log, acknowledged, attempted) = (
            phase.clone(),
            stop.clone(),
            log.clone(),
            acknowledged.clone(),
            attempted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut pending: std::collections::VecDeque<_> = mine.into();
            while !stop.load(Ordering::Relaxed) {
                let Some((court, date, hour, key)) = pending.pop_front() else {
                    break;
                };
                attempted.lock().unwrap().insert(key.clone());
                let at = *phase.lock().unwrap();
                let (outcome, answer) =
                    post(&client, &address, &token, &booking(court, date, hour, &key)).await;
                if outcome == "ok" {
                    let id = answer["data"]["createReservation"]["id"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    acknowledged.lock().unwrap().insert(key, id);
                } else {
                    pending.push_back((court, date, hour, key));
                }
                let at = phase_of(at, *phase.lock().unwrap());
                log.lock().unwrap().push((at, "createReservation", outcome));
                // Pacing of the load (a booking every 60 ms), not a wait for the gateway.
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }));
    }

    let set_phase = |p: Phase| *phase.lock().unwrap() = p;
    let ready = |client: reqwest::Client, address: String| async move {
        let what = "the gateway did not become ready again";
        eventually(Duration::from_secs(20), what, || async {
            // "ready", not "degraded": the database answers and Redis is back.
            let status = match client.get(format!("{address}/readyz")).send().await {
                Ok(response) => {
                    response.json::<Value>().await.unwrap_or_default()["status"].clone()
                }
                Err(_) => Value::Null,
            };
            if status == "ready" {
                Ok(())
            } else {
                Err(status)
            }
        })
        .await
    };
    // Each phase is a stretch of real traffic while an outside process (Redis, PostgreSQL, the
    // collector) is up or down: its length is the experiment, not a wait for the gateway.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Redis killed, then restarted on the same port.
    set_phase(Phase::RedisDown);
    redis.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.spawn();
    ready(client.clone(), address.clone()).await;
    set_phase(Phase::Healthy);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // PostgreSQL stopped (fast shutdown cuts every session), then restarted.
    set_phase(Phase::PostgresDown);
    tokio::task::block_in_place(|| postgres.stop());
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| postgres.spawn());
    ready(client.clone(), address.clone()).await;
    set_phase(Phase::Healthy);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The collector goes away for good.
    let spans_before = received.span_count();
    collector_task.stop().await;
    set_phase(Phase::CollectorGone);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Really gone: nothing listens on its address any more, and nothing more arrived.
    let port = collector_address
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let spans_after = received.span_count();
    // A window in which nothing may arrive: an absence can only be watched for a while.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        received.span_count(),
        spans_after,
        "the stopped collector still receives"
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    // What happened, by phase.
    let log = log.lock().unwrap().clone();
    let mut summary: BTreeMap<(Phase, &str, String), usize> = BTreeMap::new();
    for (p, op, outcome) in &log {
        *summary.entry((*p, op, outcome.clone())).or_default() += 1;
    }
    let count = |p: Phase, op: Option<&str>, outcome: &str| -> usize {
        summary
            .iter()
            .filter(|((q, o, r), _)| *q == p && op.is_none_or(|op| op == *o) && r == outcome)
            .map(|(_, n)| n)
            .sum()
    };
    let table = format!("{summary:#?}");
    assert!(
        spans_before > 0,
        "the collector received spans while it was up"
    );
    for ((p, op, outcome), _) in &summary {
        // Only the clean code for a missing database; never an internal error, a 5xx or a hang.
        assert!(
            outcome == "ok" || outcome == "SERVICE_UNAVAILABLE",
            "{p:?} {op}: {outcome}\n{table}"
        );
    }
    for p in [Phase::Healthy, Phase::RedisDown, Phase::CollectorGone] {
        assert!(
            count(p, None, "ok") > 0,
            "{p:?}: nothing succeeded\n{table}"
        );
        assert_eq!(count(p, None, "SERVICE_UNAVAILABLE"), 0, "{p:?}\n{table}");
    }
    assert!(
        count(Phase::CollectorGone, Some("createReservation"), "ok") > 0,
        "{table}"
    );
    assert!(
        count(Phase::RedisDown, Some("createReservation"), "ok") > 0,
        "{table}"
    );
    // Postgres down: reads of cached kinds keep answering; bookings fail cleanly.
    assert!(
        count(Phase::PostgresDown, Some("courtAvailability"), "ok") > 0,
        "{table}"
    );
    assert!(
        count(Phase::PostgresDown, Some("dashboard"), "ok") > 0,
        "{table}"
    );
    assert!(
        count(
            Phase::PostgresDown,
            Some("createReservation"),
            "SERVICE_UNAVAILABLE"
        ) > 0,
        "{table}"
    );

    // Retries after the storm: every key sent is acknowledged exactly once, with one id (the
    // unacknowledged ones now, and a sample of the acknowledged ones again).
    let mut acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    let mut sample = 0;
    for (court, date, hour, key) in slots.iter().filter(|s| attempted.contains(&s.3)) {
        if acknowledged.contains_key(key) {
            sample += 1;
            if sample % 10 != 0 {
                continue;
            }
        }
        let (outcome, answer) = post(
            &client,
            &address,
            &token,
            &booking(*court, *date, *hour, key),
        )
        .await;
        assert_eq!(outcome, "ok", "{key}: {answer}");
        let id = answer["data"]["createReservation"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        if let Some(first) = acknowledged.get(key) {
            assert_eq!(first, &id, "{key}: a retry booked again");
        }
        acknowledged.insert(key.clone(), id);
    }
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, idempotency_key FROM reservations WHERE idempotency_key LIKE 'fault-%' AND created_by_id = $1",
    )
    .bind(owner)
    .fetch_all(&db)
    .await
    .unwrap();
    let keys: BTreeSet<&String> = rows.iter().map(|(_, k)| k).collect();
    assert_eq!(
        rows.len(),
        attempted.len(),
        "one reservation per key, none lost, none doubled"
    );
    assert_eq!(keys.len(), attempted.len());
    for (id, key) in &rows {
        assert_eq!(acknowledged.get(key), Some(&id.to_string()), "{key}");
    }
    db.close().await;

    // The same process recovered: no panic, still running, ready.
    assert!(gateway.is_running(), "the gateway exited");
    ready(client.clone(), address.clone()).await;
    let stderr = gateway.stderr();
    assert!(
        !stderr.contains("panicked"),
        "a panic was logged:\n{stderr}"
    );
    println!(
        "fault run: {} requests, {} bookings acknowledged\n{table}",
        log.len(),
        acknowledged.len()
    );
}

/// A pooled connection the database closed while it sat idle is replaced before a request gets
/// it. The pool pings only connections idle for a second or more (src/store/mod.rs), not every
/// one it hands out; this is the case that ping is for (a database restart, a proxy's idle
/// timeout), with every connection of the pool cut at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_database_closed_while_idle_are_replaced_before_a_request_gets_them() {
    let app = crate::helpers::spawn_app_with(
        crate::helpers::Backend::Postgres,
        // The outbox tail polls rarely here, so no background statement meets the cut connections
        // before the requests do.
        &[
            ("BFF__CACHE__ENABLED", "false"),
            ("BFF__DATABASE__OUTBOX_POLL_INTERVAL", "1h"),
        ],
    )
    .await;
    let token = app.token("player@demo.padel").await;
    let query = "{ authContext { user { email } clubs { role club { name } } permissions } }";
    // Concurrent requests open several pooled connections.
    let round = || {
        futures_util::future::join_all((0..12).map(|_| app.graphql(Some(&token), query, json!({}))))
    };
    for reply in round().await {
        reply.ok();
    }
    // Cut every session of the gateway in its database, and wait until each is gone.
    let cut = app
        .scalar_i64(&format!(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid, 5000) AS gone \
             FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'padel-bff' \
             AND query NOT ILIKE 'LISTEN%') s WHERE gone",
            app.database_name()
        ))
        .await;
    assert!(cut >= 4, "only {cut} pooled sessions to cut");
    // A second later every connection the cut left in the pool has sat idle for that second (a
    // background task that took one meanwhile met the cut and dropped it), so each is pinged and
    // replaced. Within that second one is taken unpinged (docs/operations.md).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for reply in round().await {
        assert!(
            reply.body.get("errors").is_none(),
            "a request got a connection the database had closed: {}",
            reply.body
        );
    }
}
