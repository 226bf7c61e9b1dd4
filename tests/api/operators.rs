//! For operators (issue 18): the monitoring page in a real browser, the monitoring API's trends,
//! alert history and slowest requests, and `padel-bff doctor` against a healthy set-up, a stopped
//! Redis and a missing index.

use std::{collections::HashSet, path::Path, process::Command};

use serde_json::{json, Value};

use crate::helpers::*;

const AUTH: &str = "query Screen { authContext { user { email } } }";
const FOREIGN: &str = "query Foreign($id: ID!) { club(id: $id) { name } }";

/// Sends `n` requests and returns their request ids.
async fn burst(app: &TestApp, token: &str, query: &str, variables: Value, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let reply = app.graphql(Some(token), query, variables.clone()).await;
        ids.push(reply.headers["x-request-id"].to_str().unwrap().to_string());
    }
    ids
}

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn trends_alerts_and_the_slowest_requests_follow_a_known_burst() {
    // Every operation counts as slow (a 1 µs threshold), so the slow-operation rule must fire.
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__TELEMETRY__SLOW_DEFAULT", "1us"),
            ("BFF__TELEMETRY__SLOW_AUTH_CONTEXT", "1us"),
        ],
    )
    .await;
    let admin = app.token("admin@demo.padel").await;
    let outsider = app.token("owner2@demo.padel").await;
    let mut ids = burst(&app, &admin, AUTH, json!({}), 25).await;
    ids.extend(burst(&app, &outsider, FOREIGN, json!({"id": "1"}), 5).await);

    // Superusers only.
    let player = app.token("player@demo.padel").await;
    for path in [
        "/api/bff/monitoring/trends",
        "/api/bff/monitoring/alerts",
        "/api/bff/monitoring/slowest",
    ] {
        assert_eq!(get(&app, None, path).await.0, 401, "{path}");
        assert_eq!(get(&app, Some(&player), path).await.0, 403, "{path}");
    }

    let (_, trends) = get(&app, Some(&admin), "/api/bff/monitoring/trends").await;
    let all = &trends["all"];
    assert_eq!(all["operation"], "all");
    let total = |trend: &Value, field: &str| -> u64 {
        trend["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(all["points"].as_array().unwrap().len(), 60);
    assert_eq!(total(all, "count"), 30);
    assert_eq!(total(all, "errors"), 5);
    let operations = trends["operations"].as_array().unwrap();
    assert_eq!(operations.len(), 2, "{trends}");
    let screen = operations
        .iter()
        .find(|t| t["operation"] == "Screen")
        .unwrap();
    assert_eq!(total(screen, "count"), 25);
    let foreign = operations
        .iter()
        .find(|t| t["operation"] == "Foreign")
        .unwrap();
    let not_found: u64 = foreign["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["errorsByCode"]["NOT_FOUND"].as_u64())
        .sum();
    assert_eq!(not_found, 5);
    let (_, one) = get(
        &app,
        Some(&admin),
        "/api/bff/monitoring/trends?operation=Screen",
    )
    .await;
    assert_eq!(one["operations"].as_array().unwrap().len(), 1);
    assert_eq!(
        total(&one["all"], "count"),
        30,
        "all is there whatever is asked"
    );
    let (_, alerts) = get(&app, Some(&admin), "/api/bff/monitoring/alerts").await;
    let list = alerts["alerts"].as_array().unwrap();
    let find = |rule: &str, subject: &str| {
        list.iter()
            .find(|a| a["rule"] == rule && a["subject"] == subject)
            .unwrap_or_else(|| panic!("no {rule} alert for {subject}: {alerts}"))
            .clone()
    };
    let slow = find("slow_operation", "Screen");
    assert_eq!(slow["active"], true);
    assert!(slow["endedAt"].is_null() && slow["startedAt"].is_string());
    let errors = find("error_rate", "all");
    assert_eq!(errors["threshold"], 0.05);
    assert!(
        (errors["peak"].as_f64().unwrap() - 5.0 / 30.0).abs() < 1e-9,
        "{errors}"
    );
    assert!(
        !list.iter().any(|a| a["rule"] == "redis_degraded"),
        "no Redis is configured, so none is degraded: {alerts}"
    );

    let (_, slowest) = get(&app, Some(&admin), "/api/bff/monitoring/slowest?limit=10").await;
    let slowest = slowest["requests"].as_array().unwrap();
    assert_eq!(slowest.len(), 10);
    let sent: HashSet<&String> = ids.iter().collect();
    let mut last = f64::INFINITY;
    for request in slowest {
        assert!(
            sent.contains(&request["requestId"].as_str().unwrap().to_string()),
            "{request}"
        );
        assert!(["Screen", "Foreign"].contains(&request["operation"].as_str().unwrap()));
        let ms = request["durationMs"].as_f64().unwrap();
        assert!(ms <= last, "slowest first");
        last = ms;
    }

    // The statistics reset: the rules see nothing, and the alerts end (kept, with an end).
    let reset = app
        .client
        .post(format!("{}/api/bff/monitoring/reset", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let (_, after) = get(&app, Some(&admin), "/api/bff/monitoring/alerts").await;
    assert_eq!(after["active"], 0, "{after}");
    let ended = after["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "slow_operation" && a["subject"] == "Screen")
        .unwrap();
    assert!(ended["endedAt"].is_string(), "{ended}");
    assert_eq!(ended["peak"], slow["peak"]);

    // A client's operation named `all` is an operation, not the merged trend.
    app.graphql(Some(&admin), "query all { __typename }", json!({}))
        .await;
    let (_, named) = get(
        &app,
        Some(&admin),
        "/api/bff/monitoring/trends?operation=all",
    )
    .await;
    assert_eq!(total(&named["operations"][0], "count"), 1, "{named}");
    assert_eq!(
        total(&named["all"], "count"),
        1,
        "the statistics were reset"
    );
}

fn browser_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"))
}

/// playwright-core from npm (package-lock.json), installed beside the script when missing;
/// it drives Debian's chromium and never downloads a browser.
fn ensure_playwright() {
    if browser_dir().join("node_modules/playwright-core").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(browser_dir())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .expect("npm (scripts/test.sh installs Node.js)");
    assert!(status.success(), "npm ci in tests/browser failed");
}

#[tokio::test]
async fn the_monitoring_page_shows_what_the_api_says_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    ensure_playwright();
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.token("admin@demo.padel").await;
    let outsider = app.token("owner2@demo.padel").await;
    // A known burst: 12 answers, 3 refusals, 2 documents that do not validate.
    burst(&app, &admin, AUTH, json!({}), 12).await;
    burst(&app, &outsider, FOREIGN, json!({"id": "1"}), 3).await;
    burst(&app, &admin, "query Broken { nope }", json!({}), 2).await;
    let summary = app.management("/api/bff/monitoring/summary").await;
    assert_eq!(summary["requests"], 17);
    assert_eq!(summary["errorsByCode"]["NOT_FOUND"], 3);
    assert_eq!(summary["errorsByCode"]["GRAPHQL_VALIDATION_FAILED"], 2);

    let page = app
        .client
        .get(format!("{}/monitoring", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.len() < 150 * 1024, "{} bytes", html.len());

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitoring.png");
    let _ = std::fs::remove_file(&screenshot);
    let player = app.token("player@demo.padel").await;
    let output = tokio::task::spawn_blocking({
        let (address, screenshot) = (app.address.clone(), screenshot.clone());
        move || {
            Command::new("node")
                .arg("monitoring.mjs")
                .current_dir(browser_dir())
                .env("BASE_URL", address)
                .env("TOKEN", admin)
                .env("PLAYER_TOKEN", player)
                .env("SCREENSHOT", screenshot)
                .env("CHROMIUM", chromium)
                .output()
                .expect("node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from the browser: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(report["failures"], json!([]), "{report}");
    assert!(output.status.success(), "{report}");
    let facts = &report["facts"];
    assert_eq!(facts["requests"], 17);
    assert_eq!(facts["operations"], json!(["Screen", "Foreign", "Broken"]));
    assert_eq!(facts["refused"], "superusers only");
    assert_eq!(facts["dialog"], "Flush every cache?");
    assert!(facts["slowestRows"].as_u64().unwrap() >= 10, "{facts}");
    assert!(facts["chartPaths"].as_u64().unwrap() >= 1, "{facts}");
    assert_eq!(facts["charted"], 17, "{facts}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

/// `padel-bff doctor --json` with `env`: its exit code and checks by name.
fn doctor(env: &[(&str, String)]) -> (i32, Vec<Value>, String) {
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_padel-bff"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "BFF_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("RUST_LOG", "error")
            .args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let json = run(&["doctor", "--json"]);
    let table = run(&["doctor"]);
    assert_eq!(json.status.code(), table.status.code());
    let checks: Vec<Value> = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
    (
        json.status.code().unwrap(),
        checks,
        String::from_utf8_lossy(&table.stdout).into_owned(),
    )
}

fn status_of<'a>(checks: &'a [Value], name: &str) -> (&'a str, &'a str) {
    let check = checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {checks:?}"));
    (
        check["status"].as_str().unwrap(),
        check["detail"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn doctor_passes_a_healthy_set_up_and_fails_a_stopped_redis_or_a_missing_index() {
    let mut redis = PrivateRedis::start();
    let prefix = unique_prefix();
    let redis_url = redis.url();
    let app = spawn_app_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", &redis_url),
            ("BFF__CACHE__KEY_PREFIX", &prefix),
        ],
    )
    .await;
    // The gateway's subscription is up once a request has been served from L1 (it serves L1
    // only while subscribed).
    wait_for_l1(&app).await;
    let env = [
        ("DATABASE_URL", app.database_url()),
        ("REDIS_URL", redis_url.clone()),
        ("BFF__CACHE__KEY_PREFIX", prefix.clone()),
    ];

    let (code, checks, table) = doctor(&env);
    assert_eq!(code, 0, "{table}");
    for name in [
        "database",
        "migrations",
        "indexes",
        "outbox wake-ups",
        "clock skew",
        "redis",
        "invalidation channel",
        "rate limit",
        "cors",
    ] {
        assert_eq!(status_of(&checks, name).0, "ok", "{name}: {table}");
    }
    assert_eq!(status_of(&checks, "otlp endpoint").0, "skip");
    // The development secret is fine for development, and said so.
    assert_eq!(status_of(&checks, "jwt").0, "warn");
    assert!(status_of(&checks, "indexes").1.contains("all 7"), "{table}");
    assert!(
        status_of(&checks, "invalidation channel")
            .1
            .contains("1 other subscriber"),
        "the running gateway is subscribed: {table}"
    );
    assert!(table.starts_with("CHECK"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("indexes") && l.contains(" ok ")),
        "{table}"
    );

    // An unreachable OTLP endpoint fails; --strict turns the JWT warning into a failure.
    let mut with_otlp = env.to_vec();
    with_otlp.push((
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{}", free_port()),
    ));
    let (code, checks, _) = doctor(&with_otlp);
    assert_eq!(code, 1);
    assert_eq!(status_of(&checks, "otlp endpoint").0, "fail");
    let strict = Command::new(env!("CARGO_BIN_EXE_padel-bff"))
        .args(["doctor", "--strict"])
        .env(
            "BFF_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));

    // An allkeys-* eviction policy warns (it can evict generation keys).
    let mut cli = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut cli)
        .await
        .unwrap();
    let (code, checks, table) = doctor(&env);
    assert_eq!(code, 0, "{table}");
    let (status, detail) = status_of(&checks, "redis");
    assert_eq!(status, "warn");
    assert!(detail.contains("allkeys-lru"), "{detail}");

    // Redis stopped.
    redis.kill();
    let (code, checks, table) = doctor(&env);
    assert_eq!(code, 1, "{table}");
    assert_eq!(status_of(&checks, "redis").0, "fail", "{table}");
    assert_eq!(status_of(&checks, "database").0, "ok", "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("redis") && l.contains(" fail ")),
        "{table}"
    );

    // A missing index, Redis back.
    redis.spawn();
    let (code, _, table) = doctor(&env);
    assert_eq!(code, 0, "{table}");
    app.execute("DROP INDEX reservations_court_live_idx").await;
    let (code, checks, table) = doctor(&env);
    assert_eq!(code, 1, "{table}");
    let (status, detail) = status_of(&checks, "indexes");
    assert_eq!(status, "fail");
    assert!(detail.contains("reservations_court_live_idx"), "{detail}");
    assert!(detail.contains("missing 1"), "{detail}");
}

#[tokio::test]
async fn doctor_reports_pending_migrations_and_an_unreachable_database() {
    let name = unique_database_name();
    let url = create_postgres_database(&name).await;
    let (code, checks, table) = doctor(&[("DATABASE_URL", url)]);
    assert_eq!(code, 1, "{table}");
    let (status, detail) = status_of(&checks, "migrations");
    assert_eq!(status, "fail");
    assert!(detail.contains("padel-bff migrate"), "{detail}");
    drop_postgres_database(name);

    let closed = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port());
    let (code, checks, table) = doctor(&[("DATABASE_URL", closed)]);
    assert_eq!(code, 1, "{table}");
    assert_eq!(status_of(&checks, "database").0, "fail");
    assert_eq!(status_of(&checks, "indexes").0, "skip");
    assert!(!table.contains("password"), "{table}");
}
