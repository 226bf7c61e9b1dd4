//! Hostile input and bookings under pressure: every hostile request gets a clean coded error and
//! the gateway stays healthy; racing bookings from two replicas never double-book.

use std::collections::BTreeSet;

use chrono::Datelike;
use serde_json::{json, Value};

use crate::{
    helpers::{spawn_app, spawn_app_with, Backend, TestApp},
    on_both_backends,
};

async fn healthy(app: &TestApp) {
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The code of a reply, or of a raw HTTP answer that is not GraphQL (413, 400).
fn assert_clean(status: reqwest::StatusCode, body: &Value, what: &str) {
    assert_clean_sent(status, body, what, what)
}

/// Like [`assert_clean`], knowing the whole text sent (a bad value may be echoed back).
fn assert_clean_sent(status: reqwest::StatusCode, body: &Value, what: &str, sent: &str) {
    assert!(
        status != 500 && status.as_u16() < 500,
        "{what}: HTTP {status}: {body}"
    );
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        for error in errors {
            let code = error["extensions"]["code"].as_str().unwrap_or("");
            assert!(!code.is_empty(), "{what}: an error without a code: {body}");
            assert_ne!(code, "INTERNAL_SERVER_ERROR", "{what}: {body}");
            let message = error["message"].as_str().unwrap_or("").to_lowercase();
            for leak in ["select ", "insert ", "sqlx", "panicked", "src/", "stack"] {
                // Echoing a (truncated) bad value back is fine; internals are not.
                assert!(
                    !message.contains(leak) || sent.to_lowercase().contains(leak),
                    "{what}: the message leaks internals: {message}"
                );
            }
            assert!(
                message.len() < 500,
                "{what}: the error echoes too much: {} bytes",
                message.len()
            );
        }
    }
}

on_both_backends!(
    a_hostile_corpus_gets_clean_errors_and_the_server_stays_healthy,
    |app| {
        let token = app.token("owner@demo.padel").await;
        let deep = format!("{{ {}__typename{} }}", "authContext { organizations { organization { clubs { courts { club { organization { clubs { ".repeat(2), " } } } } } } } }".repeat(2));
        let alias_bomb: String = (0..200)
            .map(|i| format!("a{i}: authContext {{ user {{ email }} }} "))
            .collect();
        let duplicate_fields = format!(
            "{{ authContext {{ user {{ {} }} }} }}",
            "email ".repeat(5000)
        );
        let circular = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        let huge_string = format!("{{ club(id: \"{}\") {{ name }} }}", "9".repeat(100_000));
        let directives = format!("{{ __typename {} }}", "@include(if: true) ".repeat(60));
        let corpus: Vec<(String, Value, &str)> = vec![
        (deep, json!({}), "QUERY_TOO_COMPLEX"),
        (format!("{{ {alias_bomb} }}"), json!({}), "QUERY_TOO_COMPLEX"),
        (duplicate_fields, json!({}), ""),
        (circular.to_string(), json!({}), ""),
        (huge_string, json!({}), ""),
        (directives, json!({}), "QUERY_TOO_COMPLEX"),
        ("query($d: Date!) { courtAvailability(clubId: 1, date: $d) { date } }".into(), json!({"d": 12}), "BAD_USER_INPUT"),
        ("query($d: Date!) { courtAvailability(clubId: 1, date: $d) { date } }".into(), json!({"d": ["x"]}), "BAD_USER_INPUT"),
        ("query($s: Int!) { courtAvailability(clubId: 1, date: \"2030-01-01\", slotMinutes: $s) { date } }".into(), json!({"s": 99999999999u64}), "BAD_USER_INPUT"),
        ("{ club(id: \"1' OR '1'='1\") { name } }".into(), json!({}), "BAD_USER_INPUT"),
        ("{ club(id: \"1; DROP TABLE reservations; --\") { name } }".into(), json!({}), "BAD_USER_INPUT"),
        ("mutation { createReservation(input: {courtId: \"1\", date: \"2030-01-01'--\", start: \"10:00\", end: \"11:00\", idempotencyKey: \"x' OR 1=1 --\"}) { id } }".into(), json!({}), "BAD_USER_INPUT"),
        ("mutation { switchOrganization(organizationId: \"2 UNION SELECT 1\") { permissions } }".into(), json!({}), "BAD_USER_INPUT"),
        ("{ reservations(clubId: \"1\", date: \"2030-01-01\", status: [CANCELLED, \"x\"]) { id } }".into(), json!({}), ""),
    ];
        for (query, variables, expected) in corpus {
            let reply = app.graphql(Some(&token), &query, variables).await;
            let what = &query[..query.len().min(60)];
            assert_clean_sent(reply.status, &reply.body, what, &query);
            if !expected.is_empty() {
                assert_eq!(reply.code(), expected, "{what}: {}", reply.body);
            }
        }
        // Forged, expired and none-alg tokens.
        for bad in [
            "Bearer x.y.z",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
            "Basic dXNlcjpwYXNz",
            "Bearer ",
        ] {
            let response = app
                .client
                .post(format!("{}/graphql", app.address))
                .header("authorization", bad)
                .json(&json!({"query": "{ authContext { user { email } } }"}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_clean(status, &body, bad);
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{bad}"
            );
        }
        // A header naming a tenant changes nothing: identity comes from the token only.
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(app.token("owner2@demo.padel").await)
            .header("x-tenant-id", "1")
            .header("x-user-id", "1")
            .json(&json!({"query": "{ club(id: 1) { name } }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.json::<Value>().await.unwrap()["errors"][0]["extensions"]["code"],
            "NOT_FOUND"
        );
        // Invalid UTF-8 and not-JSON bodies.
        for body in [vec![0xff, 0xfe, 0x7b, 0x22], b"{\"query\": ".to_vec()] {
            let response = app
                .client
                .post(format!("{}/graphql", app.address))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_client_error(),
                "got {}",
                response.status()
            );
        }
        healthy(&app).await;
    }
);

on_both_backends!(
    a_forced_sql_error_answers_internal_server_error_with_the_request_id_only,
    |app| {
        let token = app.token("owner@demo.padel").await;
        app.execute("ALTER TABLE role_permissions RENAME TO role_permissions_gone")
            .await;
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .header("x-request-id", "forced-sql-error-1")
            .json(&json!({"query": "{ authContext { permissions } }"}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "INTERNAL_SERVER_ERROR");
        assert_eq!(error["extensions"]["requestId"], "forced-sql-error-1");
        assert_eq!(error["message"], "internal server error");
        let text = body.to_string();
        for leak in ["role_permissions", "SELECT", "relation", "sqlx", "src/"] {
            assert!(!text.contains(leak), "the answer leaks {leak}: {text}");
        }
        app.execute("ALTER TABLE role_permissions_gone RENAME TO role_permissions")
            .await;
        healthy(&app).await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_racing_bookings_on_two_replicas_never_overlap() {
    let a = spawn_app(Backend::Postgres).await;
    let b = a.replica(&[]).await;
    let mut date = a.today + chrono::Duration::days(120);
    while date.weekday().number_from_monday() > 5 {
        date = date.succ_opt().unwrap();
    }
    let tokens = vec![
        a.token("player@demo.padel").await,
        a.token("staff@demo.padel").await,
        a.token("manager@demo.padel").await,
        a.token("owner@demo.padel").await,
    ];
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = tokens[i % tokens.len()].clone();
        let court = (i % 4 + 1).to_string();
        // Overlapping intervals on four courts: 60–90 minutes starting every 15 minutes from 18:00.
        let start = 18 * 60 + (i / 4 % 8) * 15;
        let end = start + if i % 3 == 0 { 90 } else { 60 };
        let date = date.to_string();
        tasks.push(tokio::spawn(async move {
            let input = json!({"courtId": court, "date": date, "start": format!("{:02}:{:02}", start / 60, start % 60), "end": format!("{:02}:{:02}", end / 60, end % 60)});
            let reply = app.graphql(Some(&token), "mutation($i: CreateReservationInput!) { createReservation(input: $i) { id court { id } start end } }", json!({"i": input})).await;
            (reply.code().to_string(), reply.body)
        }));
    }
    let mut acknowledged = BTreeSet::new();
    for task in tasks {
        let (code, body) = task.await.unwrap();
        match code.as_str() {
            "" => {
                acknowledged.insert(
                    body["data"]["createReservation"]["id"]
                        .as_str()
                        .unwrap()
                        .parse::<i64>()
                        .unwrap(),
                );
            }
            "CONFLICT" => {}
            other => panic!("a loser must get CONFLICT, got {other}: {body}"),
        }
    }
    assert!(!acknowledged.is_empty());
    let rows = a
        .text_rows(&format!(
            "SELECT CAST(id AS TEXT), CAST(court_id AS TEXT), CAST(start_time AS TEXT), CAST(end_time AS TEXT) FROM reservations WHERE date = '{date}' AND status <> 'cancelled'"
        ))
        .await;
    let stored: BTreeSet<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged booking exists exactly once, nothing else"
    );
    for x in &rows {
        for y in &rows {
            if x[0] < y[0] && x[1] == y[1] {
                assert!(
                    x[3] <= y[2] || y[3] <= x[2],
                    "overlap on court {}: {x:?} {y:?}",
                    x[1]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_user_per_kind_and_shared_by_replicas() {
    let prefix = crate::helpers::unique_prefix();
    let a = crate::helpers::spawn_app_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", &crate::helpers::shared_redis_url()),
            ("BFF__CACHE__KEY_PREFIX", &prefix),
            ("BFF__RATE_LIMIT__MUTATION_BURST", "3"),
            ("BFF__RATE_LIMIT__MUTATION_PER_SECOND", "0.2"),
        ],
    )
    .await;
    let b = a.replica(&[]).await;
    let owner = a.token("owner@demo.padel").await;
    let switch =
        "mutation { switchOrganization(organizationId: 1) { currentOrganization { id } } }";
    // Three mutations pass, alternating replicas: the bucket is shared through Redis.
    for (i, app) in [&a, &b, &a].iter().enumerate() {
        let reply = app.graphql(Some(&owner), switch, json!({})).await;
        assert_eq!(reply.status, 200, "mutation {i}: {}", reply.body);
        reply.ok();
    }
    let limited = b.graphql(Some(&owner), switch, json!({})).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.code(), "RATE_LIMITED");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    // Queries have their own bucket; other users theirs.
    a.graphql(
        Some(&owner),
        "{ authContext { user { email } } }",
        json!({}),
    )
    .await
    .ok();
    let other = a.token("orgadmin@demo.padel").await;
    a.graphql(Some(&other), switch, json!({})).await.ok();
    healthy(&a).await;
}

/// The user's and the address's buckets are taken in one decision: a user over their limit
/// leaves the address's tokens alone, and an address over its limit refuses every user behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_refusal_spares_the_address_bucket_and_an_empty_address_bucket_refuses_everyone() {
    let prefix = crate::helpers::unique_prefix();
    let app = crate::helpers::spawn_app_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", &crate::helpers::shared_redis_url()),
            ("BFF__CACHE__KEY_PREFIX", &prefix),
            ("BFF__RATE_LIMIT__MUTATION_BURST", "3"),
            ("BFF__RATE_LIMIT__MUTATION_PER_SECOND", "0.01"),
            // The address (127.0.0.1 for both users) gets 6.
            ("BFF__RATE_LIMIT__IP_FACTOR", "2"),
        ],
    )
    .await;
    let owner = app.token("owner@demo.padel").await;
    let admin = app.token("orgadmin@demo.padel").await;
    let switch =
        "mutation { switchOrganization(organizationId: 1) { currentOrganization { id } } }";
    let status = |token: String| {
        let app = &app;
        async move { app.graphql(Some(&token), switch, json!({})).await.status }
    };
    for i in 0..3 {
        assert_eq!(status(owner.clone()).await, 200, "owner's mutation {i}");
    }
    // The owner's bucket is empty: refused twice, which must not spend the address's last 3.
    for i in 0..2 {
        assert_eq!(
            status(owner.clone()).await,
            429,
            "owner's extra mutation {i}"
        );
    }
    for i in 0..3 {
        assert_eq!(status(admin.clone()).await, 200, "admin's mutation {i}");
    }
    // The address has given its 6: the next user behind it is refused too.
    let third = app.token("manager@demo.padel").await;
    let limited = app
        .graphql(
            Some(&third),
            "mutation { setCourtMaintenance(courtId: 1, inMaintenance: false) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.code(), "RATE_LIMITED");
    healthy(&app).await;
}

/// Calls of a Redis command since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
fn redis_calls(url: &str, command: &str) -> u64 {
    let mut redis = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The player's app on a private Redis with `settings`, their token, after one query (which
/// verifies the token), and a connection to that Redis with its command counts reset.
async fn counted_player_app(
    settings: &[(&str, &str)],
) -> (
    crate::helpers::PrivateRedis,
    TestApp,
    String,
    redis::Connection,
) {
    let redis = crate::helpers::PrivateRedis::start();
    let url = redis.url();
    let mut env = vec![("REDIS_URL", url.as_str())];
    env.extend_from_slice(settings);
    let app = spawn_app_with(Backend::Sqlite, &env).await;
    let token = app.token("player@demo.padel").await;
    app.graphql(
        Some(&token),
        "{ authContext { user { email } } }",
        json!({}),
    )
    .await
    .ok();
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut admin)
        .unwrap();
    (redis, app, token, admin)
}

/// A signed-in query's two tokens (its address's at the edge, its user's for the operation)
/// are one decision: one script call on Redis per request, where there were two. (Buckets under
/// 200 tokens are charged one token at a time, so every request asks Redis here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_query_takes_its_address_and_user_tokens_in_one_redis_call() {
    let (redis, app, token, _admin) = counted_player_app(&[
        ("BFF__RATE_LIMIT__QUERY_BURST", "150"),
        ("BFF__RATE_LIMIT__IP_FACTOR", "1"),
    ])
    .await;
    let query = "{ authContext { user { email } } }";
    for _ in 0..10 {
        app.graphql(Some(&token), query, json!({})).await.ok();
    }
    assert_eq!(redis_calls(&redis.url(), "eval"), 10);
    // Anonymous requests have only the address's bucket: one call each, as before.
    for _ in 0..5 {
        app.graphql(None, "{ __typename }", json!({})).await.ok();
    }
    assert_eq!(redis_calls(&redis.url(), "eval"), 15);
    // A query asked for as multipart (a subscription transport) pays once too: the
    // subscription's token stands for the query's.
    for _ in 0..5 {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .header(
                "accept",
                "multipart/mixed;subscriptionSpec=1.0, application/json",
            )
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    assert_eq!(redis_calls(&redis.url(), "eval"), 20);
}

/// With the default budgets (1 000 queries a user, 10 000 an address) a replica leases a
/// hundredth of a bucket per Redis call and spends it locally: 40 requests of one user make a
/// handful of calls, not 40. A bucket is still empty when it is: the lease never adds tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_lease_tokens_so_most_requests_make_no_redis_call() {
    // The default bursts; refills too slow to matter over the test.
    let (redis, app, token, mut admin) =
        counted_player_app(&[("BFF__RATE_LIMIT__QUERY_PER_SECOND", "0.001")]).await;
    let query = "{ authContext { user { email } } }";
    for _ in 0..40 {
        app.graphql(Some(&token), query, json!({})).await.ok();
    }
    let calls = redis_calls(&redis.url(), "eval");
    // 40 a token at a time; a lease of 10 user tokens (and 100 address tokens), each call at
    // most a second old, leaves at most a few calls.
    assert!(
        (1..=8).contains(&calls),
        "{calls} script calls for 40 requests"
    );
    // The shared bucket counts what was leased as spent: of its 1 000, the 41 requests took at
    // least 41.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*rl:user:*:query")
        .query(&mut admin)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let tokens: f64 = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("tokens")
        .query(&mut admin)
        .unwrap();
    assert!(tokens < 1_000.0 - 41.0 + 0.5, "{tokens} tokens left");
}

/// The user's token taken at the edge still refuses the operation it was taken for, coded and
/// with its wait, while the address (with a larger budget) keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_out_of_query_tokens_is_refused_while_their_address_still_serves_others() {
    let prefix = crate::helpers::unique_prefix();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("REDIS_URL", &crate::helpers::shared_redis_url()),
            ("BFF__CACHE__KEY_PREFIX", &prefix),
            ("BFF__RATE_LIMIT__QUERY_BURST", "2"),
            ("BFF__RATE_LIMIT__QUERY_PER_SECOND", "0.01"),
        ],
    )
    .await;
    let player = app.token("player@demo.padel").await;
    let query = "{ authContext { user { email } } }";
    for i in 0..2 {
        let reply = app.graphql(Some(&player), query, json!({})).await;
        assert_eq!(reply.status, 200, "query {i}: {}", reply.body);
    }
    let limited = app.graphql(Some(&player), query, json!({})).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.code(), "RATE_LIMITED");
    assert!(limited.headers.contains_key("retry-after"));
    // The same address, another user: served (the address has 20).
    let member = app.token("member@demo.padel").await;
    let reply = app.graphql(Some(&member), query, json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_queries_register_once_and_serve_every_replica_by_hash() {
    let prefix = crate::helpers::unique_prefix();
    let a = crate::helpers::spawn_app_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", &crate::helpers::shared_redis_url()),
            ("BFF__CACHE__KEY_PREFIX", &prefix),
        ],
    )
    .await;
    let b = a.replica(&[]).await;
    let token = a.token("owner@demo.padel").await;
    let query = "query Me { authContext { user { email } } }";
    let hash = sha256_hex(query);
    let persisted = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
    let post = |app: &TestApp, body: Value| {
        let request = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // First use, hash only: not found.
    let first = post(&a, json!({"extensions": persisted})).await;
    assert_eq!(first["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(
        first["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    // A wrong hash is refused.
    let wrong = post(&a, json!({"query": query, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex("other")}}})).await;
    assert_eq!(wrong["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // Registration with the document, then the hash alone works on the other replica, by GET too.
    let registered = post(&a, json!({"query": query, "extensions": persisted})).await;
    assert_eq!(
        registered["data"]["authContext"]["user"]["email"],
        "owner@demo.padel"
    );
    crate::helpers::eventually(
        std::time::Duration::from_secs(5),
        "replica B never learned the hash",
        || async {
            let by_hash = post(&b, json!({"extensions": persisted})).await;
            if by_hash["data"]["authContext"]["user"]["email"] == "owner@demo.padel" {
                Ok(())
            } else {
                Err(by_hash)
            }
        },
    )
    .await;
    let get = b
        .client
        .get(format!("{}/graphql", b.address))
        .query(&[("extensions", persisted.to_string())])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        get["data"]["authContext"]["user"]["email"], "owner@demo.padel",
        "{get}"
    );
    // A persisted document is still subject to the limits.
    let deep = format!(
        "{{ {}__typename{} }}",
        "authContext { organizations { organization { clubs { courts { club { ".repeat(2),
        " } } } } } }".repeat(2)
    );
    let too_deep = post(&a, json!({"query": deep, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(&deep)}}})).await;
    assert_eq!(
        too_deep["errors"][0]["extensions"]["code"],
        "QUERY_TOO_COMPLEX"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safelist_mode_runs_manifest_operations_only() {
    let allowed = "query Me { authContext { user { email } } }";
    let manifest =
        std::env::temp_dir().join(format!("padel-bff-manifest-{}.json", std::process::id()));
    std::fs::write(
        &manifest,
        json!({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id": "me-v1", "name": "Me", "type": "query", "body": allowed}]}).to_string(),
    )
    .unwrap();
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        &[("BFF__SERVER__SAFELIST_MANIFEST", manifest.to_str().unwrap())],
    )
    .await;
    let token = app.token("owner@demo.padel").await;
    // The exact document, or its id, or its hash: allowed.
    assert_eq!(
        app.graphql(Some(&token), allowed, json!({})).await.ok()["authContext"]["user"]["email"],
        "owner@demo.padel"
    );
    for id in ["me-v1".to_string(), sha256_hex(allowed)] {
        let body = json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": id}}});
        let reply: Value = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            reply["data"]["authContext"]["user"]["email"], "owner@demo.padel",
            "{id}: {reply}"
        );
    }
    // Anything else, introspection included: refused with a clear code, before execution.
    for other in [
        "{ authContext { user { email } } }",
        "{ __schema { types { name } } }",
        "query Me { authContext { permissions } }",
    ] {
        let reply = app.graphql(Some(&token), other, json!({})).await;
        assert_eq!(reply.code(), "OPERATION_NOT_IN_SAFELIST", "{other}");
        assert!(reply.data().is_null());
    }
    let _ = std::fs::remove_file(manifest);
}

/// POSTs a raw JSON body (a batch) and returns the status and the parsed answer.
async fn post_json(app: &TestApp, token: &str, body: &Value) -> (reqwest::StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_batches_are_refused_by_default_and_bounded_when_enabled() {
    let ops = |n: usize| -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({ "query": format!("query Op{i} {{ authContext {{ user {{ email }} }} }}") }))
                .collect(),
        )
    };
    let off = spawn_app(Backend::Sqlite).await;
    let token = off.token("owner@demo.padel").await;
    let (status, body) = post_json(&off, &token, &ops(2)).await;
    assert_clean(status, &body, "batch while off");
    assert!(body.is_object(), "one answer, not an array: {body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
    assert!(body["data"].is_null());

    let on = spawn_app_with(Backend::Sqlite, &[("BFF__LIMITS__BATCH_ENABLED", "true")]).await;
    let token = on.token("owner@demo.padel").await;
    // Up to ten run, each answered in order; one operation over a limit fails alone.
    let mut batch = ops(9);
    batch.as_array_mut().unwrap().push(json!({
        "query": format!("{{ {} }}", (0..16).map(|i| format!("a{i}: authContext {{ permissions }}")).collect::<Vec<_>>().join(" "))
    }));
    let (status, body) = post_json(&on, &token, &batch).await;
    assert_eq!(status, 200, "{body}");
    let answers = body.as_array().expect("an array of answers");
    assert_eq!(answers.len(), 10);
    for answer in &answers[..9] {
        assert_eq!(
            answer["data"]["authContext"]["user"]["email"], "owner@demo.padel",
            "{answer}"
        );
    }
    assert_eq!(
        answers[9]["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{}",
        answers[9]
    );
    // Eleven is over the bound: refused whole, nothing runs.
    let (status, body) = post_json(&on, &token, &ops(11)).await;
    assert_clean(status, &body, "batch of eleven");
    assert!(body.is_object(), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX");
    // Single operations are unaffected.
    assert_eq!(
        on.graphql(
            Some(&token),
            "{ authContext { user { email } } }",
            json!({})
        )
        .await
        .ok()["authContext"]["user"]["email"],
        "owner@demo.padel"
    );
}

/// A prepared document (parsed, limit-checked and validated once) skips no check for a request
/// that differs: other variables are validated again, another operation of the same document is
/// validated on its own, and refusals are never remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_documents_skip_no_check_for_other_variables_or_operations() {
    let app = spawn_app(Backend::Sqlite).await;
    let owner = app.token("owner@demo.padel").await;
    let query = "query($c: ID!, $s: Int) { courtAvailability(clubId: $c, date: \"2030-01-07\", slotMinutes: $s) { slotMinutes } }";
    for _ in 0..3 {
        let ok = app
            .graphql(Some(&owner), query, json!({"c": "1", "s": 60}))
            .await;
        assert_eq!(ok.code(), "", "{}", ok.body);
        assert_eq!(ok.body["data"]["courtAvailability"]["slotMinutes"], 60);
    }
    for variables in [
        json!({"c": "1", "s": "sixty"}),
        json!({"s": 60}),
        json!({"c": {"x": 1}, "s": 60}),
    ] {
        let refused = app.graphql(Some(&owner), query, variables.clone()).await;
        assert_eq!(
            refused.code(),
            "BAD_USER_INPUT",
            "{variables}: {}",
            refused.body
        );
        assert!(refused.body["data"]["courtAvailability"].is_null());
    }
    // Two operations in one document: each is checked with its own variables.
    let two =
        "query A { authContext { user { email } } } query B($c: ID!) { club(id: $c) { name } }";
    for _ in 0..2 {
        let (_, a) = post_json(&app, &owner, &json!({"query": two, "operationName": "A"})).await;
        assert_eq!(
            a["data"]["authContext"]["user"]["email"], "owner@demo.padel",
            "{a}"
        );
    }
    let (_, b) = post_json(&app, &owner, &json!({"query": two, "operationName": "B"})).await;
    assert!(
        b["errors"][0]["extensions"]["code"].is_string(),
        "B without $c must fail: {b}"
    );
    let (_, b) = post_json(
        &app,
        &owner,
        &json!({"query": two, "operationName": "B", "variables": {"c": "1"}}),
    )
    .await;
    assert!(b["data"]["club"]["name"].is_string(), "{b}");
    // Refusals are answered again, never remembered as passed.
    let deep = format!(
        "{{ {}name{} }}",
        "authContext { ".repeat(12),
        " }".repeat(12)
    );
    let invalid = "{ authContext { noSuchField } }";
    for _ in 0..2 {
        let reply = app.graphql(Some(&owner), &deep, json!({})).await;
        assert_eq!(reply.code(), "QUERY_TOO_COMPLEX", "{}", reply.body);
        let reply = app.graphql(Some(&owner), invalid, json!({})).await;
        assert_eq!(reply.code(), "GRAPHQL_VALIDATION_FAILED", "{}", reply.body);
    }
}
