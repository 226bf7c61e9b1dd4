//! The platform's own URLs (issue 16): its management URLs as aliases of ours, and database
//! monitoring (`/api/management/bff/database/indexes/`).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp};

const GRID: &str = "query($d: Date!) { courtAvailability(clubId: 1, date: $d) { date } }";

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.address);
    let mut request = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_management_urls_answer_as_ours_for_superusers_only() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.token("admin@demo.padel").await;
    let owner = app.token("owner@demo.padel").await;
    let player = app.token("player@demo.padel").await;
    let aliases: [(&str, &str, &str, Option<Value>); 5] = [
        (
            "GET",
            "/api/management/bff/performance/",
            "/api/management/performance",
            None,
        ),
        (
            "GET",
            "/api/management/bff/cache/status/",
            "/api/management/cache/status",
            None,
        ),
        (
            "POST",
            "/api/management/bff/cache/flush/",
            "/api/management/cache/flush",
            Some(json!({"type": "all"})),
        ),
        (
            "POST",
            "/api/management/bff/cache/warmup/",
            "/api/management/cache/warmup",
            Some(json!({"clubIds": [1], "days": 1})),
        ),
        (
            "GET",
            "/api/management/bff/database/indexes/",
            "/api/management/database/indexes",
            None,
        ),
    ];
    for (method, alias, ours, body) in &aliases {
        let (status, refused) = call(&app, method, alias, None, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{alias} without a token: {refused}"
        );
        assert_eq!(refused["error"]["code"], "UNAUTHENTICATED", "{alias}");
        for token in [&owner, &player] {
            let (status, refused) = call(&app, method, alias, Some(token), body.clone()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{alias} as a non-superuser: {refused}"
            );
            assert_eq!(refused["error"]["code"], "FORBIDDEN", "{alias}");
        }
        let (status, theirs) = call(&app, method, alias, Some(&admin), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{alias}: {theirs}");
        // ours as given in the body ({"all": true} for the flush): the same shape of answer.
        let our_body = if alias.contains("flush") {
            Some(json!({"all": true}))
        } else {
            body.clone()
        };
        let (status, mine) = call(&app, method, ours, Some(&admin), our_body).await;
        assert_eq!(status, StatusCode::OK, "{ours}: {mine}");
        let keys = |v: &Value| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(keys(&theirs), keys(&mine), "{alias} answers as {ours}");
        assert!(!keys(&theirs).is_empty(), "{alias}: {theirs}");
    }

    // {"type": "all"} flushes: a cached grid is a miss afterwards.
    let date = app.weekday_after(30);
    let manager = app.token("manager@demo.padel").await;
    let query = |d: &str| json!({"d": d});
    app.graphql(Some(&manager), GRID, query(&date)).await.ok();
    let hit = app.graphql(Some(&manager), GRID, query(&date)).await;
    assert_eq!(
        hit.sql_statements(),
        0,
        "cached before the flush: {}",
        hit.body
    );
    let (status, flushed) = call(
        &app,
        "POST",
        "/api/management/bff/cache/flush/",
        Some(&admin),
        Some(json!({"type": "all"})),
    )
    .await;
    assert_eq!(
        (status, flushed["flushed"].clone()),
        (StatusCode::OK, json!("all"))
    );
    let after = app.graphql(Some(&manager), GRID, query(&date)).await;
    assert!(
        after.sql_statements() > 0,
        "the flush reached the cache: {}",
        after.body
    );
    // The other forms, and a type we do not know.
    let (status, _) = call(
        &app,
        "POST",
        "/api/management/bff/cache/flush/",
        Some(&admin),
        Some(json!({"type": "kind", "kind": "dashboard"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, bad) = call(
        &app,
        "POST",
        "/api/management/bff/cache/flush/",
        Some(&admin),
        Some(json!({"type": "everything"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["error"]["code"], "BAD_USER_INPUT");
    let (status, _) = call(
        &app,
        "POST",
        "/api/management/bff/cache/flush/",
        Some(&admin),
        Some(json!({"type": "all", "all": true})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two forms at once");
}

fn required(report: &Value) -> Vec<(String, bool)> {
    report["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["present"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_report_shows_use_and_the_seven_core_indexes_on_postgres() {
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.token("admin@demo.padel").await;
    // One availability read uses reservations_club_date_idx at least once.
    let player = app.token("player@demo.padel").await;
    app.graphql(Some(&player), GRID, json!({"d": app.weekday_after(3)}))
        .await
        .ok();
    let (status, report) = call(
        &app,
        "GET",
        "/api/management/bff/database/indexes/",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["engine"], "postgres");
    let present = required(&report);
    assert_eq!(present.len(), 7, "{report}");
    assert!(present.iter().all(|(_, p)| *p), "{present:?}");
    let indexes = report["indexes"].as_array().unwrap();
    let club_date = indexes
        .iter()
        .find(|i| i["name"] == "reservations_club_date_idx")
        .expect("listed");
    assert_eq!(club_date["table"], "reservations");
    assert_eq!(
        club_date["columns"],
        json!(["club_id", "date", "status", "court_id"])
    );
    assert!(club_date["sizeBytes"].as_i64().unwrap() > 0, "{club_date}");
    for field in ["scans", "tuplesRead", "tuplesFetched"] {
        assert!(club_date[field].is_i64(), "{field}: {club_date}");
    }
    assert_eq!(club_date["unused"], json!(club_date["scans"] == json!(0)));
    assert!(
        indexes
            .iter()
            .any(|i| i["table"] == "bff_invalidation_outbox"),
        "every table of ours"
    );

    // An operator drops one: it is reported missing, the others stay present.
    app.execute("DROP INDEX courts_club_idx").await;
    let (_, report) = call(
        &app,
        "GET",
        "/api/management/bff/database/indexes/",
        Some(&admin),
        None,
    )
    .await;
    let missing: Vec<String> = required(&report)
        .into_iter()
        .filter(|(_, p)| !p)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(missing, vec!["courts_club_idx".to_string()]);
    // Under another name with the same columns it counts again.
    app.execute("CREATE INDEX my_courts ON courts (club_id, is_active, is_maintenance)")
        .await;
    let (_, report) = call(
        &app,
        "GET",
        "/api/management/bff/database/indexes/",
        Some(&admin),
        None,
    )
    .await;
    let courts = report["required"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "courts_club_idx")
        .unwrap()
        .clone();
    assert_eq!(
        (courts["present"].clone(), courts["providedBy"].clone()),
        (json!(true), json!("my_courts"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_report_on_sqlite_lists_indexes_and_the_hot_plans() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.token("admin@demo.padel").await;
    let (status, report) = call(
        &app,
        "GET",
        "/api/management/bff/database/indexes/",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["engine"], "sqlite");
    assert!(required(&report).iter().all(|(_, p)| *p), "{report}");
    let plans = report["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 3, "{report}");
    let busy = plans[0]["plan"].as_array().unwrap();
    assert!(
        busy.iter().any(|line| line
            .as_str()
            .unwrap()
            .contains("reservations_club_date_idx")),
        "the availability read uses its index: {busy:?}"
    );
}
