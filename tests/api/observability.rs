//! Observability end to end: the real binary exporting to a real OTLP receiver (gRPC and
//! HTTP/protobuf, built from the official protobuf definitions), `/metrics`, the monitoring API,
//! request ids, the N+1 detector, and the one-version rule for OpenTelemetry crates.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{common::v1::any_value::Value as AnyValue, trace::v1::Span};
use serde_json::json;

use crate::helpers::{eventually, grpc_receiver, http_receiver, Gateway, Received};
use crate::on_both_backends;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
const SECRET_DATE: &str = "2031-07-09";

async fn traced_request(gateway: &Gateway, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/graphql", gateway.address))
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .header("x-request-id", "req-otel-1")
        .json(&json!({
            "operationName": "OwnerScreen",
            "query": "query OwnerScreen($club: ID!, $date: Date!) { courtAvailability(clubId: $club, date: $date) { courts { court { name club { name } } availableCount } } }",
            "variables": {"club": "1", "date": SECRET_DATE},
        }))
        .send()
        .await
        .unwrap()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            AnyValue::BoolValue(b) => b.to_string(),
            AnyValue::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether every span [`check_trace`] looks for has arrived: the request's HTTP, operation,
/// root field, SQL and cache lookup spans.
fn trace_arrived(spans: &[Span]) -> bool {
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let find = |found: &dyn Fn(&Span) -> bool| ours.iter().copied().find(|s| found(s));
    let by_id: HashMap<String, &Span> = ours.iter().map(|s| (hex(&s.span_id), *s)).collect();
    let (Some(http), Some(sql)) = (
        find(&|s| attribute(s, "http.request.method").is_some()),
        find(&|s| attribute(s, "db.query.text").is_some_and(|q| q.contains("reservations"))),
    ) else {
        return false;
    };
    // The parent chain from the SQL span up to the HTTP span is complete.
    let mut current = sql;
    while current.span_id != http.span_id {
        match by_id.get(&hex(&current.parent_span_id)) {
            Some(parent) => current = parent,
            None => return false,
        }
    }
    find(&|s| s.name == "query OwnerScreen").is_some()
        && find(&|s| attribute(s, "graphql.field.path").as_deref() == Some("courtAvailability"))
            .is_some()
        && find(&|s| {
            attribute(s, "cache.kind").is_some() && attribute(s, "cache.outcome").is_some()
        })
        .is_some()
}

/// The checks shared by both protocols.
fn check_trace(received: &Received, token: &str) {
    let spans = received.spans();
    assert!(!spans.is_empty(), "no spans exported");
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    assert!(
        ours.len() >= 4,
        "expected the request's spans in the caller's trace, got {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let by_id: HashMap<String, &Span> = ours.iter().map(|s| (hex(&s.span_id), *s)).collect();
    let http = ours
        .iter()
        .find(|s| attribute(s, "http.request.method").is_some())
        .expect("an HTTP server span");
    assert_eq!(
        hex(&http.parent_span_id),
        PARENT_SPAN,
        "the HTTP span continues the caller's span"
    );
    assert_eq!(attribute(http, "http.route").as_deref(), Some("/graphql"));
    assert_eq!(
        attribute(http, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attribute(http, "request_id").as_deref(), Some("req-otel-1"));
    let operation = ours
        .iter()
        .find(|s| s.name == "query OwnerScreen")
        .expect("an operation span");
    assert_eq!(
        attribute(operation, "graphql.operation.name").as_deref(),
        Some("OwnerScreen")
    );
    assert_eq!(
        attribute(operation, "graphql.operation.type").as_deref(),
        Some("query")
    );
    let field = ours
        .iter()
        .find(|s| attribute(s, "graphql.field.path").as_deref() == Some("courtAvailability"))
        .expect("a root field span");
    assert_eq!(
        attribute(field, "graphql.field.name").as_deref(),
        Some("courtAvailability")
    );
    assert!(attribute(field, "graphql.field.parent_type").is_some());
    let sql = ours
        .iter()
        .find(|s| attribute(s, "db.query.text").is_some_and(|q| q.contains("reservations")))
        .expect("a SQL span");
    assert_eq!(attribute(sql, "db.system.name").as_deref(), Some("sqlite"));
    assert_eq!(
        attribute(sql, "db.operation.name").as_deref(),
        Some("SELECT")
    );
    assert!(
        ours.iter().any(
            |s| attribute(s, "cache.kind").is_some() && attribute(s, "cache.outcome").is_some()
        ),
        "a cache lookup span"
    );
    // SQL → … → field → operation → HTTP.
    let mut chain = vec![sql.name.clone()];
    let mut current = *sql;
    while let Some(parent) = by_id.get(&hex(&current.parent_span_id)) {
        chain.push(parent.name.clone());
        current = parent;
    }
    let position = |name: &str| {
        chain
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} missing from the parent chain {chain:?}"))
    };
    let (f, o, h) = (
        position(&field.name),
        position("query OwnerScreen"),
        position(&http.name),
    );
    assert!(f < o && o < h, "parent chain out of order: {chain:?}");
    // Nothing of the variables or the token leaves the process.
    let raw = received.raw();
    assert!(!raw.contains(SECRET_DATE), "a variable value was exported");
    assert!(!raw.contains(token), "the bearer token was exported");
    assert!(
        !raw.contains(&token[token.len() - 20..]),
        "part of the bearer token was exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_continues_the_callers_trace_and_flushes_on_shutdown() {
    let (endpoint, received) = grpc_receiver().await;
    // A long export interval: only the shutdown flush can deliver the spans.
    let mut gateway = Gateway::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "padel-bff-test"),
        ("BFF__TELEMETRY__EXPORT_INTERVAL", "60s"),
    ])
    .await;
    let token = gateway.owner_token();
    let response = traced_request(&gateway, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-trace-id"], TRACE_ID);
    assert_eq!(response.headers()["x-request-id"], "req-otel-1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    gateway.terminate();
    check_trace(&received, &token);
    assert!(
        received.raw().contains("padel-bff-test"),
        "OTEL_SERVICE_NAME is the service.name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_carries_the_same_trace() {
    let (endpoint, received) = http_receiver().await;
    let gateway = Gateway::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ])
    .await;
    let token = gateway.owner_token();
    assert_eq!(traced_request(&gateway, &token).await.status(), 200);
    // Exports run on their own schedule: wait until every span the checks look for is in.
    eventually(
        Duration::from_secs(20),
        "the request's spans did not all arrive over OTLP/HTTP",
        || async {
            let spans = received.spans();
            if trace_arrived(&spans) {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    spans.iter().map(|s| &s.name).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    check_trace(&received, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_export_nothing_but_errors_and_slow_ones_are_kept() {
    let (endpoint, received) = http_receiver().await;
    let gateway = Gateway::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // No new trace is sampled; a caller's sampled traceparent still is.
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ("BFF__TELEMETRY__EXPORT_INTERVAL", "100ms"),
        // Every dashboard is "slow".
        ("BFF__TELEMETRY__SLOW_DASHBOARD", "0s"),
    ])
    .await;
    let token = gateway.owner_token();
    let client = reqwest::Client::new();
    let send = |query: &'static str| {
        let request = client
            .post(format!("{}/graphql", gateway.address))
            .bearer_auth(&token)
            .json(&json!({ "query": query }));
        async move {
            let response = request.send().await.unwrap();
            let trace_id = response.headers()["x-trace-id"]
                .to_str()
                .unwrap()
                .to_string();
            let body: serde_json::Value = response.json().await.unwrap();
            (trace_id, body)
        }
    };
    // Start-up (migrations, the demo seed) runs outside any request and is traced as before.
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut fine = Vec::new();
    for _ in 0..20 {
        let (trace_id, body) = send("query Fine { club(id: 1) { name courts { name } } }").await;
        assert!(body.get("errors").is_none(), "{body}");
        fine.push(trace_id);
    }
    let (failed, body) = send("query Missing { club(id: 9999) { name } }").await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
    let (slow, body) = send("query Board { dashboard(clubId: 1) { from } }").await;
    assert!(body.get("errors").is_none(), "{body}");
    // A sampled caller still gets the whole trace.
    assert_eq!(traced_request(&gateway, &token).await.status(), 200);
    let spans = eventually(
        Duration::from_secs(20),
        "the kept requests' spans did not arrive",
        || async {
            let spans = received.spans();
            let has = |id: &str| spans.iter().any(|s| hex(&s.trace_id) == id);
            if has(&failed) && has(&slow) && trace_arrived(&spans) {
                Ok(spans)
            } else {
                Err(format!("{} spans", spans.len()))
            }
        },
    )
    .await;
    // Exported in the order they ended: the fine requests' spans would be in by now, under
    // their announced trace ids or any other.
    assert!(!fine.contains(&failed) && !fine.contains(&slow));
    let others: Vec<&str> = spans
        .iter()
        .filter(|s| s.start_time_unix_nano >= began)
        .filter(|s| {
            ![failed.as_str(), slow.as_str(), TRACE_ID].contains(&hex(&s.trace_id).as_str())
        })
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        others.is_empty(),
        "unsampled requests that went fine were exported: {others:?}"
    );
    for (id, reason, operation) in [(&failed, "NOT_FOUND", "Missing"), (&slow, "slow", "Board")] {
        let kept: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == *id).collect();
        assert_eq!(kept.len(), 1, "one span for a kept request: {kept:?}");
        assert_eq!(kept[0].name, "POST /graphql");
        assert_eq!(attribute(kept[0], "sampling.kept").as_deref(), Some(reason));
        assert_eq!(
            attribute(kept[0], "graphql.operation.name").as_deref(),
            Some(operation)
        );
        let failed_status = kept[0].status.as_ref().is_some_and(|s| s.code == 2);
        assert_eq!(failed_status, reason != "slow", "{:?}", kept[0].status);
    }
    check_trace(&received, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_fails_a_request() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = Gateway::start(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        &format!("http://127.0.0.1:{closed}"),
    )])
    .await;
    let token = gateway.owner_token();
    for _ in 0..20 {
        let response = traced_request(&gateway, &token).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body.get("errors").is_none(), "{body}");
    }
}

#[test]
fn cargo_lock_holds_one_version_of_each_opentelemetry_crate() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let mut versions: HashMap<String, Vec<String>> = HashMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if n.starts_with("opentelemetry") || n == "tracing-opentelemetry" {
                versions
                    .entry(n)
                    .or_default()
                    .push(v.trim_matches('"').to_string());
            }
        }
    }
    assert!(versions.contains_key("opentelemetry"));
    for (crate_name, found) in &versions {
        assert_eq!(found.len(), 1, "{crate_name} appears in versions {found:?}");
    }
}

fn metric_value(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

on_both_backends!(
    metrics_parse_as_prometheus_text_and_move_with_requests,
    |app| {
        let token = app.token("owner@demo.padel").await;
        let get_metrics = || app.metrics_text();
        let query = "query Screen { authContext { user { email } } }";
        app.graphql(Some(&token), query, json!({})).await.ok();
        let before = get_metrics().await;
        for _ in 0..3 {
            app.graphql(Some(&token), query, json!({})).await.ok();
        }
        app.graphql(None, query, json!({})).await;
        let after = get_metrics().await;
        for line in after
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line}"));
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            let name_end = series.find('{').unwrap_or(series.len());
            assert!(
                series[..name_end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line}"
            );
        }
        let ops = |t: &str| {
            metric_value(
                t,
                "graphql_server_operation_duration_seconds_count",
                "graphql_operation_name=\"Screen\"",
            )
        };
        assert_eq!(ops(&after) - ops(&before), 4.0);
        let unauthenticated = |t: &str| {
            metric_value(
                t,
                "graphql_server_errors_total",
                "error_code=\"UNAUTHENTICATED\"",
            )
        };
        assert_eq!(unauthenticated(&after) - unauthenticated(&before), 1.0);
        // Whole-response cache: a mutation is no response miss; a new query is one.
        let response_misses = |t: &str| -> f64 {
            t.lines()
                .filter(|l| l.starts_with("bff_cache_requests_total"))
                .filter(|l| {
                    l.contains("cache_kind=\"response\"") && l.contains("cache_outcome=\"miss\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let switch =
            "mutation { switchOrganization(organizationId: 1) { currentOrganization { id } } }";
        let mutated = app.graphql(Some(&token), switch, json!({})).await;
        assert_eq!(mutated.code(), "", "{}", mutated.body);
        let after_mutation = get_metrics().await;
        assert_eq!(response_misses(&after_mutation), response_misses(&after));
        app.graphql(Some(&token), "{ authContext { permissions } }", json!({}))
            .await;
        assert_eq!(
            response_misses(&get_metrics().await),
            response_misses(&after) + 1.0
        );
        for family in [
            "http_server_request_duration_seconds_bucket",
            "graphql_server_field_duration_seconds_bucket",
            "db_client_operation_duration_seconds_count",
            "graphql_server_operation_db_statements",
            "bff_cache_requests_total",
            "db_client_connection_count",
        ] {
            assert!(after.contains(family), "{family} missing from /metrics");
        }
    }
);

on_both_backends!(monitoring_numbers_equal_the_requests_made, |app| {
    let admin = app.token("admin@demo.padel").await;
    let owner = app.token("owner@demo.padel").await;
    let monitoring = |path: &'static str| {
        let (client, address, admin) = (app.client.clone(), app.address.clone(), admin.clone());
        async move {
            let response = client
                .get(format!("{address}{path}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let mut slowest_client_ms: f64 = 0.0;
    for i in 0..12 {
        let started = Instant::now();
        let club = if i % 4 == 0 { "424242" } else { "1" };
        app.graphql(
            Some(&owner),
            "query Counted($c: ID!) { club(id: $c) { name } }",
            json!({"c": club}),
        )
        .await;
        slowest_client_ms = slowest_client_ms.max(started.elapsed().as_secs_f64() * 1000.0);
    }
    let stats = monitoring("/api/bff/monitoring/stats?operation=Counted").await;
    let op = &stats["operations"][0];
    assert_eq!(op["operation"], "Counted");
    assert_eq!(op["count"], 12);
    assert_eq!(op["errors"], 3);
    assert!((op["errorRate"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    let (p50, p95, p99, max) = (
        op["medianMs"].as_f64().unwrap(),
        op["p95Ms"].as_f64().unwrap(),
        op["p99Ms"].as_f64().unwrap(),
        op["maxMs"].as_f64().unwrap(),
    );
    assert!(
        op["minMs"].as_f64().unwrap() <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
        "{op}"
    );
    assert!(
        max <= slowest_client_ms,
        "server-side max {max} ms above what the client saw ({slowest_client_ms} ms)"
    );
    let summary = monitoring("/api/bff/monitoring/summary").await;
    assert!(summary["requests"].as_u64().unwrap() >= 12);
    let health = app
        .client
        .get(format!("{}/api/bff/monitoring/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let performance = monitoring("/api/management/performance").await;
    let score = performance["score"].as_i64().unwrap();
    assert!((0..=100).contains(&score));
    assert!(
        performance["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "error_rate"),
        "25 % errors must be reported: {performance}"
    );
    // Superusers only.
    let denied = app
        .client
        .get(format!("{}/api/bff/monitoring/stats", app.address))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let reset = app
        .client
        .post(format!("{}/api/bff/monitoring/reset", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(
        monitoring("/api/bff/monitoring/stats").await["operations"],
        json!([])
    );
});

on_both_backends!(every_response_carries_a_request_id, |app| {
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 32);
});

/// `telemetry.field_timing = "root"`: no engine extension. The same answers as the default, the
/// same refusals (parse, validation, limits, rate limit), root fields still timed, fields below
/// them not; the default times both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_field_timing_answers_the_same_and_times_root_fields_only() {
    use crate::helpers::{spawn_app_with, Backend};
    let full = spawn_app_with(Backend::Sqlite, &[]).await;
    let lean = spawn_app_with(
        Backend::Sqlite,
        &[
            ("BFF__TELEMETRY__FIELD_TIMING", "root"),
            ("BFF__RATE_LIMIT__MUTATION_BURST", "2"),
            ("BFF__RATE_LIMIT__MUTATION_PER_SECOND", "0.1"),
        ],
    )
    .await;
    let query = "query Lean($c: ID!) { dashboard(clubId: $c, period: MONTH) { current { reservations revenue } courts { court { name } occupancyRate } } courtAvailability(clubId: $c, date: \"2030-01-07\") { courts { court { name } slots { start available } } } }";
    let mut bodies = Vec::new();
    for app in [&full, &lean] {
        let token = app.token("owner@demo.padel").await;
        for _ in 0..2 {
            let reply = app.graphql(Some(&token), query, json!({"c": "1"})).await;
            assert_eq!(reply.code(), "", "{}", reply.body);
            bodies.push(reply.body["data"].clone());
        }
    }
    assert!(bodies[0]["dashboard"]["courts"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");

    let token = lean.token("owner@demo.padel").await;
    for (query, code) in [
        ("{ authContext { user { email } ", "GRAPHQL_PARSE_FAILED"),
        ("{ authContext { noSuchField } }", "GRAPHQL_VALIDATION_FAILED"),
        (
            "{ authContext { clubs { club { organization { clubs { courts { club { courts { name } } } } } } } } }",
            "QUERY_TOO_COMPLEX",
        ),
    ] {
        for _ in 0..2 {
            let reply = lean.graphql(Some(&token), query, json!({})).await;
            assert_eq!(reply.code(), code, "{query}: {}", reply.body);
        }
    }
    let switch =
        "mutation { switchOrganization(organizationId: 1) { currentOrganization { id } } }";
    for _ in 0..2 {
        let reply = lean.graphql(Some(&token), switch, json!({})).await;
        assert_eq!(reply.code(), "", "{}", reply.body);
    }
    let limited = lean.graphql(Some(&token), switch, json!({})).await;
    assert_eq!(limited.code(), "RATE_LIMITED", "{}", limited.body);

    let scrape = |app: &crate::helpers::TestApp| {
        let (client, address) = (app.client.clone(), app.address.clone());
        async move {
            let response = client.get(format!("{address}/metrics")).send().await;
            response.unwrap().text().await.unwrap()
        }
    };
    let (lean_metrics, full_metrics) = (scrape(&lean).await, scrape(&full).await);
    let timed = |text: &str, field: &str| {
        metric_value(
            text,
            "graphql_server_field_duration_seconds_count",
            &format!("graphql_field_name=\"{field}\""),
        )
    };
    // Each app executed the query once (the repeat was a whole-response hit: no resolver ran).
    assert_eq!(timed(&lean_metrics, "dashboard"), 1.0);
    assert_eq!(timed(&lean_metrics, "courtAvailability"), 1.0);
    assert_eq!(timed(&lean_metrics, "courts"), 0.0);
    assert_eq!(timed(&full_metrics, "dashboard"), 1.0);
    assert!(timed(&full_metrics, "courts") >= 2.0);
    let operations = metric_value(
        &lean_metrics,
        "graphql_server_operation_duration_seconds_count",
        "graphql_operation_name=\"Lean\"",
    );
    assert_eq!(operations, 2.0);
}
