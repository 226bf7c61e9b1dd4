//! Packaging (issue 18), checked with what runs on this machine (container images cannot be
//! pulled here): compose.yaml parses and names a build or an image for every service; the
//! collector config receives OTLP on 4317 and 4318; promtool checks the Prometheus config and the
//! alert rules, and its rule tests prove each alert; every metric the Grafana dashboard and the
//! rules use is in a real scrape of the gateway; and a real Prometheus scrapes a running gateway
//! and answers every dashboard query.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::{json, Value};

use crate::helpers::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml(path: &str) -> serde_norway::Value {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    let mut value: serde_norway::Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // One pass per level of nesting: a merged mapping's own `<<` is merged by the next pass.
    for _ in 0..4 {
        value.apply_merge().unwrap();
    }
    value
}

fn as_str(value: &serde_norway::Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[test]
fn compose_names_a_build_or_an_image_for_every_service() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(as_str).collect();
    for wanted in [
        "proxy",
        "gateway-a",
        "gateway-b",
        "postgres",
        "migrate",
        "seed",
        "redis",
        "otel-collector",
        "jaeger",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(wanted), "no {wanted} service: {names:?}");
    }
    for (name, service) in services {
        let name = as_str(name);
        assert!(
            service.get("build").is_some() || service.get("image").is_some(),
            "{name} has neither build nor image"
        );
        // Every service it waits for exists.
        if let Some(depends) = service.get("depends_on") {
            let on: Vec<&str> = match depends.as_mapping() {
                Some(map) => map.keys().map(as_str).collect(),
                None => depends.as_sequence().unwrap().iter().map(as_str).collect(),
            };
            for other in on {
                assert!(names.contains(other), "{name} depends on a missing {other}");
            }
        }
        // Every file or folder it mounts from the repository exists.
        for volume in service
            .get("volumes")
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
        {
            let source = match volume.as_str() {
                Some(short) => short.split(':').next().unwrap().to_string(),
                None => as_str(&volume["source"]).to_string(),
            };
            if let Some(local) = source.strip_prefix("./") {
                assert!(repo(local).exists(), "{name} mounts a missing {source}");
            }
        }
    }
    let command = |name: &str| -> Vec<String> {
        services[name]["command"]
            .as_sequence()
            .map(|c| c.iter().map(|s| as_str(s).to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(command("migrate"), ["migrate"]);
    assert_eq!(command("seed")[0], "seed");
    for gateway in ["gateway-a", "gateway-b"] {
        let env = &services[gateway]["environment"];
        assert_eq!(as_str(&env["BFF_PROFILE"]), "production");
        assert!(
            env.get("BFF__RATE_LIMIT__TRUST_FORWARDED_FOR").is_some(),
            "{gateway}"
        );
        assert!(
            env.get("BFF__RATE_LIMIT__TRUSTED_PROXIES").is_some(),
            "{gateway}"
        );
    }
    assert!(std::fs::read_to_string(repo("deploy/nginx.conf"))
        .unwrap()
        .contains("X-Forwarded-For"));
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    for needed in [
        "cargo chef cook",
        "HEALTHCHECK",
        "USER ",
        "/etc/padel-bff",
        "BFF_PROFILE=production",
        "--release",
    ] {
        assert!(dockerfile.contains(needed), "the Dockerfile lacks {needed}");
    }
}

#[test]
fn the_collector_receives_otlp_on_4317_and_4318_and_sends_traces_to_jaeger() {
    let collector = yaml("deploy/otel-collector.yaml");
    let protocols = &collector["receivers"]["otlp"]["protocols"];
    assert!(as_str(&protocols["grpc"]["endpoint"]).ends_with(":4317"));
    assert!(as_str(&protocols["http"]["endpoint"]).ends_with(":4318"));
    let traces = &collector["service"]["pipelines"]["traces"];
    let receivers: Vec<&str> = traces["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(as_str)
        .collect();
    assert!(receivers.contains(&"otlp"));
    let exporters: Vec<&str> = traces["exporters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(as_str)
        .collect();
    for exporter in &exporters {
        assert!(
            collector["exporters"].get(*exporter).is_some(),
            "{exporter} is not defined"
        );
    }
    assert!(exporters
        .iter()
        .any(|e| as_str(&collector["exporters"][*e]["endpoint"]).contains("jaeger")));
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(repo("deploy"))
        .output()
        .expect("promtool (scripts/test.sh installs Debian's prometheus)")
}

#[test]
fn promtool_checks_the_config_and_the_rules_and_its_tests_prove_each_alert() {
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "prometheus-rules.yml"],
        &["test", "rules", "prometheus-rules.test.yml"],
    ] {
        let out = promtool(args);
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a test in which it fires, and the operators' alerts are all there.
    let rules = yaml("deploy/prometheus-rules.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r.get("alert").map(|a| as_str(a).to_string()))
        .collect();
    for wanted in [
        "PadelBffHighErrorRate",
        "PadelBffSlowP95",
        "PadelBffLowCacheHitRate",
        "PadelBffRedisDegraded",
        "PadelBffSqlPerRequestHigh",
    ] {
        assert!(alerts.contains(wanted), "no {wanted}: {alerts:?}");
    }
    let tests = yaml("deploy/prometheus-rules.test.yml");
    let fired: BTreeSet<String> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()))
        .map(|c| as_str(&c["alertname"]).to_string())
        .collect();
    assert_eq!(fired, alerts, "alerts without a test that makes them fire");
}

/// Every PromQL expression of the Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/padel-bff.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(out.len() >= 6, "{out:?}");
    out
}

fn rule_queries() -> Vec<String> {
    let rules = yaml("deploy/prometheus-rules.yml");
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| as_str(&r["expr"]).to_string())
        .collect()
}

/// The metric names and the label names a PromQL expression uses.
fn names_in(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1 + usize::from(chars[i] == '\\');
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c == '{' || (c == '(' && grouping) {
            // Label matchers, or the labels of by/without/on/ignoring: label names only.
            let close = if c == '{' { '}' } else { ')' };
            let start = i;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            let inner: String = chars[start + 1..i].iter().collect();
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    labels.insert(name);
                }
            }
            grouping = false;
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                grouping = true;
            } else if chars.get(j) == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                // A function or an aggregation.
            } else if !(start > 0 && chars[start - 1].is_ascii_digit()) {
                metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    (metrics, labels)
}

#[test]
fn promql_names_are_read_as_metrics_and_labels() {
    let (metrics, labels) = names_in(
        r#"sum by (le, graphql_operation_name) (rate(x_bucket{a!="b c",d=~"e"}[5m])) / on(instance) max(y) > 0.5 and up{job="j"} == 0"#,
    );
    assert_eq!(metrics, ["up", "x_bucket", "y"].map(String::from).into());
    assert_eq!(
        labels,
        ["a", "d", "graphql_operation_name", "instance", "job", "le"]
            .map(String::from)
            .into()
    );
}

/// A short workload that makes every metric appear: answers, errors, cache hits and misses, SQL.
async fn workload(app: &TestApp) {
    let owner = app.token("owner@demo.padel").await;
    let player = app.token("player@demo.padel").await;
    let date = app.today.to_string();
    for _ in 0..3 {
        app.graphql(
            Some(&owner),
            "query Dash { dashboard(clubId: \"1\") { from } }",
            json!({}),
        )
        .await;
        app.graphql(
            Some(&player),
            "query Grid($d: Date!) { courtAvailability(clubId: \"1\", date: $d) { date } }",
            json!({"d": date}),
        )
        .await;
        app.graphql(
            Some(&player),
            "query Me { authContext { user { email } } }",
            json!({}),
        )
        .await;
        app.graphql(
            Some(&player),
            "query Nope { club(id: \"987654\") { name } }",
            json!({}),
        )
        .await;
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_use_is_in_a_real_scrape() {
    let prefix = unique_prefix();
    let redis = shared_redis_url();
    let app = spawn_app_with(
        Backend::Postgres,
        &[("REDIS_URL", &redis), ("BFF__CACHE__KEY_PREFIX", &prefix)],
    )
    .await;
    workload(&app).await;
    let scrape = app.metrics_text().await;
    let scraped: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let scraped_labels = |label: &str| scrape.contains(&format!("{label}=\""));
    // Added by Prometheus itself, not by the gateway.
    let from_prometheus = ["up", "instance", "job"];
    let mut used = BTreeSet::new();
    for expr in dashboard_queries().iter().chain(&rule_queries()) {
        let (metrics, labels) = names_in(expr);
        for metric in metrics {
            if !from_prometheus.contains(&metric.as_str()) {
                assert!(
                    scraped.contains(metric.as_str()),
                    "{metric} (in {expr}) is not in the scrape:\n{scraped:?}"
                );
                used.insert(metric);
            }
        }
        for label in labels {
            if !from_prometheus.contains(&label.as_str()) {
                assert!(
                    scraped_labels(&label),
                    "label {label} (in {expr}) is not in the scrape"
                );
            }
        }
    }
    // The dashboard covers what the issue lists.
    for wanted in [
        "http_server_request_duration_seconds_count",
        "graphql_server_operation_duration_seconds_bucket",
        "graphql_server_errors_total",
        "bff_cache_requests_total",
        "graphql_server_operation_db_statements_sum",
        "bff_cache_redis_breaker_open",
    ] {
        assert!(used.contains(wanted), "nothing uses {wanted}: {used:?}");
    }
}

/// A Prometheus server of the test's own (Debian's package), killed on drop.
struct Prometheus {
    child: std::process::Child,
    address: String,
    _dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let port = free_port();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // deploy/prometheus.yml's job, with a 1 s interval and this test's gateway as target.
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: padel-bff\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("prometheus (scripts/test.sh installs Debian's prometheus)");
        Prometheus {
            child,
            address: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_gateway_and_answers_every_dashboard_query() {
    let app = spawn_app(Backend::Sqlite).await;
    let target = app.address.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&target);
    let client = reqwest::Client::new();
    let queries = dashboard_queries();
    // Traffic while Prometheus scrapes, until every dashboard query has a series (rates need two
    // scrapes that saw the counters move).
    let mut last_empty = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        workload(&app).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        last_empty.clear();
        for query in &queries {
            let answer = client
                .get(format!("{}/api/v1/query", prometheus.address))
                .query(&[("query", query.as_str())])
                .send()
                .await;
            let body: Value = match answer {
                Ok(response) => response.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            assert_ne!(body["status"], "error", "{query}: {body}");
            if body["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                last_empty.push(query.clone());
            }
        }
        if last_empty.is_empty() {
            break;
        }
    }
    assert!(
        last_empty.is_empty(),
        "dashboard queries with no result after 90 s of scraping: {last_empty:#?}\n{}",
        std::fs::read_to_string(prometheus._dir.join("log")).unwrap_or_default()
    );
    // The target is up, under the job name the dashboard and the rules use.
    let up: Value = client
        .get(format!("{}/api/v1/query", prometheus.address))
        .query(&[("query", "up{job=\"padel-bff\"}")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
}
