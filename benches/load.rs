//! The load benchmark: drives the real gateway binary over HTTP and reports req/s, p50, p99 and
//! p99.9 per scenario, as a table and as JSON, with every scenario measured in the same run so
//! ratios hold on a noisy machine.
//!
//! ```sh
//! cargo bench --bench load            # Postgres + Redis, seeded at --scale large on first use
//! ```
//!
//! Environment: `BENCH_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/bff_large, seeded
//! with `--scale large` when empty), `BENCH_REDIS_URL` (redis://127.0.0.1:6379), `BENCH_SECONDS`
//! (5 per scenario), `BENCH_CONNECTIONS` (16), `BENCH_ONLY` (comma-separated scenario prefixes),
//! `BENCH_JSON` (target/bench-load.json), `BENCH_PEER=1` (also run PostGraphile 5 over the same
//! database, installed from npm into target/peer on first use), `BENCH_SOAK_MINUTES` (with the
//! `soak` argument: `cargo bench --bench load -- soak`). The server is pinned to CPU 0 and this client to CPU 1
//! when `taskset` exists. Throughput runs are closed-loop over a fixed number of connections; the
//! latency run (`l1-hit@50%`) is open-loop at a fixed rate and measures from each request's
//! intended send time, so a stall is charged to every request it delayed (no coordinated
//! omission). Without `--bench` (as under `cargo test --all-targets`) it only checks its own
//! statistics code.

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use padel_bff::{auth::TokenAuthority, config::Settings};
use serde_json::{json, Value};

#[path = "load/live.rs"]
mod live;
#[path = "load/population.rs"]
mod population;
use population::{Mode, Population};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A day-long token for `user`, signed the way the servers verify it: by a `TokenAuthority` built
/// from the settings they load (this process's environment, which they inherit, and the config
/// directory they are pointed at; no scenario changes `auth`).
fn token(user: i64) -> String {
    static AUTHORITY: std::sync::OnceLock<TokenAuthority> = std::sync::OnceLock::new();
    let authority = AUTHORITY.get_or_init(|| {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let settings = Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            &vars,
        )
        .expect("the gateway's settings load");
        TokenAuthority::new(&settings.auth)
    });
    authority
        .sign(user, Duration::from_secs(86_400))
        .expect("the servers run with an HS256 secret")
}

/// A gateway process for a group of scenarios.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(database: &str, redis: &str, extra: &[(&str, String)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = env!("CARGO_BIN_EXE_padel-bff");
        let pinned = Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", binary]);
            c
        } else {
            Command::new(binary)
        };
        command
            .arg("serve")
            .env(
                "BFF_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("DATABASE_URL", database)
            .env("REDIS_URL", redis)
            .env("BFF_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "BFF__CACHE__KEY_PREFIX",
                format!("bench{}", std::process::id()),
            )
            .env("BFF__DATABASE__MAX_CONNECTIONS", "16")
            // The limiter would answer most of one user's thousands of requests per second with
            // 429; the scenarios measure the pipeline behind it.
            .env("BFF__RATE_LIMIT__ENABLED", "false")
            // Bookings go up to ~130 years ahead (every run books slots of its own).
            .env("BFF__LIMITS__DATE_DAYS_AHEAD", "60000")
            .env("RUST_LOG", "error")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null());
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("start gateway");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "gateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500)); // Redis subscription, L1 on
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mixed run's bookings: every twentieth request (5 %).
fn is_booking(i: u64) -> bool {
    i % 20 == 7
}

/// The mixed run's two kinds of request, each also reported alone.
const MIXED_PARTS: &[Part] = &[("bookings", is_booking), ("reads", |i| !is_booking(i))];

/// The population of this run, for its parts (the split of a run's rows is by plain function).
static POPULATION: std::sync::OnceLock<Arc<Population>> = std::sync::OnceLock::new();

/// The population run's writes (bookings and cancels) and reads, each also reported alone.
const POPULATION_PARTS: &[Part] = &[
    ("writes", |i| {
        POPULATION.get().is_some_and(|p| p.is_write(i))
    }),
    ("reads", |i| {
        !POPULATION.get().is_some_and(|p| p.is_write(i))
    }),
];

/// One request a scenario sends; `i` varies it.
type MakeRequest =
    Arc<dyn Fn(&reqwest::Client, &str, u64) -> reqwest::RequestBuilder + Send + Sync>;

fn graphql(
    query: &'static str,
    token: String,
    variables: impl Fn(u64) -> Value + Send + Sync + 'static,
) -> MakeRequest {
    Arc::new(move |client, base, i| {
        client
            .post(format!("{base}/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": query, "variables": variables(i) }))
    })
}

/// Latency summary of one run.
#[derive(Debug, Clone)]
struct Result {
    scenario: String,
    requests: u64,
    errors: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

fn summarize(scenario: &str, mut latencies_us: Vec<u64>, errors: u64, elapsed: Duration) -> Result {
    latencies_us.sort_unstable();
    Result {
        scenario: scenario.to_string(),
        requests: latencies_us.len() as u64,
        errors,
        rps: latencies_us.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies_us, 0.50),
        p99_ms: percentile(&latencies_us, 0.99),
        p999_ms: percentile(&latencies_us, 0.999),
    }
}

async fn ok(response: reqwest::Result<reqwest::Response>) -> bool {
    match response {
        Ok(r) if r.status().is_success() => match r.bytes().await {
            Ok(body) => !body.windows(9).any(|w| w == b"\"errors\":"),
            Err(_) => false,
        },
        _ => false,
    }
}

/// Closed loop: `connections` workers send back to back for `seconds`.
async fn closed_loop(
    name: &str,
    base: &str,
    make: MakeRequest,
    connections: usize,
    seconds: f64,
) -> Result {
    closed_loop_parts(name, base, make, connections, seconds, &[])
        .await
        .remove(0)
}

/// A share of one run's requests, told apart by request index (the mixed run's bookings).
type Part = (&'static str, fn(u64) -> bool);

/// `closed_loop`, plus a row per part with only that part's requests (same run, same clock), so
/// a mixed run shows which kind of request makes its tail.
async fn closed_loop_parts(
    name: &str,
    base: &str,
    make: MakeRequest,
    connections: usize,
    seconds: f64,
    parts: &[Part],
) -> Vec<Result> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    for i in 0..connections as u64 * 4 {
        let _ = ok(make(&client, base, i).send().await).await; // warm connections and caches
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections as u64 {
        let (client, make, base) = (client.clone(), make.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            // (request index, latency µs, answered without error)
            let mut samples = Vec::new();
            // Past the warm-up's indices, so bookings never reuse a slot.
            let mut i = 1_000_000 + worker;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let good = ok(make(&client, &base, i).send().await).await;
                samples.push((i, sent.elapsed().as_micros() as u64, good));
                i += connections as u64;
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    report(name, &all, started.elapsed(), parts)
}

/// The run's row and one row per part, from (request index, latency µs, answered well) samples.
fn report(
    name: &str,
    samples: &[(u64, u64, bool)],
    elapsed: Duration,
    parts: &[Part],
) -> Vec<Result> {
    if let Ok(dir) = std::env::var("BENCH_SAMPLES_DIR") {
        let text: String = samples
            .iter()
            .map(|(i, us, good)| format!("{i} {us} {}\n", u8::from(*good)))
            .collect();
        let _ = std::fs::write(
            format!("{dir}/{}.txt", name.replace([' ', '/', ','], "_")),
            text,
        );
    }
    let row = |label: String, keep: &dyn Fn(u64) -> bool| {
        let picked: Vec<_> = samples.iter().filter(|(i, _, _)| keep(*i)).collect();
        let errors = picked.iter().filter(|(_, _, good)| !good).count() as u64;
        summarize(
            &label,
            picked.iter().map(|(_, us, _)| *us).collect(),
            errors,
            elapsed,
        )
    };
    let mut rows = vec![row(name.to_string(), &|_| true)];
    for (part, keep) in parts {
        rows.push(row(format!("{name}: {part}"), keep));
    }
    rows
}

/// Open loop at `rate` req/s: latency runs from each request's intended send time.
async fn fixed_rate(name: &str, base: &str, make: MakeRequest, rate: f64, seconds: f64) -> Result {
    fixed_rate_parts(name, base, make, rate, seconds, &[])
        .await
        .remove(0)
}

/// Kept-alive connections of an open-loop run (as wrk2 keeps a fixed set): enough for 64
/// requests in flight, far above the ~20 that half the maximum needs. A request due while
/// all are busy waits in the generator, and that wait counts, since latency runs from the
/// intended send time.
const OPEN_LOOP_CONNECTIONS: usize = 64;

/// `fixed_rate`, plus a row per part (see `closed_loop_parts`).
///
/// Until run 16 every request was a task of its own on whatever connection was idle, and a
/// new connection when none was: one stall opened dozens, each costing both sides a connect,
/// and the generator (its core shared with Postgres and Redis) ran at 100 % while the server
/// idled at 66-80 % (`top`, 1 s samples): the run measured the generator's collapse.
async fn fixed_rate_parts(
    name: &str,
    base: &str,
    make: MakeRequest,
    rate: f64,
    seconds: f64,
    parts: &[Part],
) -> Vec<Result> {
    let base = base.to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(OPEN_LOOP_CONNECTIONS)
        .build()
        .unwrap();
    // Open every connection before the clock starts (`/healthz`: no side effects).
    let warm: Vec<_> = (0..OPEN_LOOP_CONNECTIONS)
        .map(|_| client.get(format!("{base}/healthz")).send())
        .collect();
    for response in futures_util::future::join_all(warm).await {
        let _ = response.map(|r| r.status());
    }
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (due, queue) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let workers: Vec<_> = (0..OPEN_LOOP_CONNECTIONS)
        .map(|_| {
            let (client, make, base, queue) =
                (client.clone(), make.clone(), base.clone(), queue.clone());
            tokio::spawn(async move {
                let (mut samples, mut late) = (Vec::new(), Vec::new());
                loop {
                    let next = queue.lock().await.recv().await;
                    let Some((index, intended)) = next else {
                        return (samples, late);
                    };
                    late.push(intended.elapsed().as_micros() as u64);
                    let good = ok(make(&client, &base, index).send().await).await;
                    samples.push((index, intended.elapsed().as_micros() as u64, good));
                }
            })
        })
        .collect();
    // The pacing runs on a thread of its own with the OS's sleep (~0.1 ms precise), not on the
    // runtime: tokio's timer fires on whole milliseconds (requests would leave up to 1 ms late,
    // counted as server latency), and a yield-spin on the runtime's one worker delays the I/O
    // driver instead (responses read late). Latency still runs from each intended send time.
    let started = Instant::now();
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let intended = started + interval * i as u32;
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            // Measured indices, as in `closed_loop`: bookings never reuse a warm-up slot.
            let _ = due.send((1_000_000 + i, intended));
        }
    });
    tokio::task::spawn_blocking(move || pacer.join())
        .await
        .unwrap()
        .unwrap();
    let (mut samples, mut late) = (Vec::with_capacity(total as usize), Vec::new());
    for worker in workers {
        let (some, their_late) = worker.await.unwrap();
        samples.extend(some);
        late.extend(their_late);
    }
    // What of the latency is the generator's own: how late requests left (pacing, or every
    // connection busy). The rest is the round trip.
    late.sort_unstable();
    let at = |q: f64| {
        late.get(((late.len() as f64 * q) as usize).min(late.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    println!(
        "{name}: requests left {:.3} ms (p50) / {:.3} ms (p99) after their intended time",
        at(0.5),
        at(0.99)
    );
    report(name, &samples, started.elapsed(), parts)
}

fn pin_client_to_cpu1() {
    let _ = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
}

/// Postgres and Redis of this machine, moved to CPU 1 (the load generator's) for the run, so the
/// server's core is its own: left to the scheduler, their backends ran on CPU 0 beside the server
/// (CPU 0 100 % busy, CPU 1 half idle in the miss runs). Put back on every CPU when dropped (also
/// on a panic); after an interrupted run: `taskset -a -p -c 0-1 <pid>` for each of them.
struct ServicesOnCpu1(bool);

impl ServicesOnCpu1 {
    fn pin(database: &str, redis: &str) -> ServicesOnCpu1 {
        let local = |url: &str| {
            url.contains("@127.0.0.1")
                || url.contains("@localhost")
                || url.contains("//127.0.0.1")
                || url.contains("//localhost")
        };
        let wanted = env("BENCH_PIN_SERVICES", "true") != "false";
        let on = wanted && local(database) && local(redis) && set_service_affinity("1");
        if on {
            println!("postgres and redis-server pinned to CPU 1 for this run");
        }
        ServicesOnCpu1(on)
    }
}

impl Drop for ServicesOnCpu1 {
    fn drop(&mut self) {
        if self.0 {
            // Every online CPU (this process's own affinity is CPU 1 by now, so
            // `available_parallelism` would answer 1).
            let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "0-1".to_string());
            set_service_affinity(&online);
        }
    }
}

/// Sets the CPU affinity of every thread of every `postgres` and `redis-server` process (new
/// Postgres backends inherit the postmaster's); true if at least one was set.
fn set_service_affinity(cpus: &str) -> bool {
    let mut any = false;
    for name in ["postgres", "redis-server"] {
        let Ok(out) = Command::new("pgrep").args(["-x", name]).output() else {
            continue;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            any |= Command::new("taskset")
                .args(["-a", "-p", "-c", cpus, pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        }
    }
    any
}

fn ensure_seeded(database: &str) {
    let binary = env!("CARGO_BIN_EXE_padel-bff");
    let base = [
        (
            "BFF_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        ),
        ("DATABASE_URL", database),
    ];
    let status = Command::new(binary)
        .arg("migrate")
        .envs(base)
        .stdout(Stdio::null())
        .status()
        .expect("migrate");
    assert!(
        status.success(),
        "migrating {database} failed (does the database exist?)"
    );
    let seeded = Command::new(binary)
        .args(["seed", "--scale", "large"])
        .envs(base)
        .output()
        .expect("seed");
    let stderr = String::from_utf8_lossy(&seeded.stderr);
    if seeded.status.success() {
        println!("{}", String::from_utf8_lossy(&seeded.stdout).trim());
    } else if !stderr.contains("already holds data") {
        panic!("seeding failed: {stderr}");
    }
    // The benchmark's bookings lie years ahead: open the clubs' horizon to them.
    let opened = Command::new("psql")
        .args([
            database,
            "-q",
            "-c",
            "UPDATE clubs SET booking_horizon_days = 60000, max_active_bookings = 1000000",
        ])
        .status()
        .expect("psql");
    assert!(opened.success(), "opening the booking horizon failed");
    // Earlier runs' far-future bookings go: every run then books free slots.
    let cleared = Command::new("psql")
        .args([
            database,
            "-q",
            "-c",
            "DELETE FROM reservations WHERE date > current_date + 300",
        ])
        .status()
        .expect("psql");
    assert!(cleared.success(), "clearing earlier bench bookings failed");
}

/// Waits until a peer process answers `{ __typename }` (its first run installs from npm).
async fn wait_for_peer(base: &str, peer: &mut Child, name: &str) {
    let probe = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let up = probe
            .post(format!("{base}/graphql"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await;
        if matches!(&up, Ok(r) if r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} did not start");
        assert!(peer.try_wait().unwrap().is_none(), "{name} exited");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Fills a server's caches as production has them before a population run (not measured).
async fn warm(base: &str, population: &Arc<Population>) {
    let (make, count) = population.warm_up();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, make, base) = (client.clone(), make.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while i < count {
                let _ = ok(make(&client, &base, i).send().await).await;
                i += 8;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "warm-up: {count} requests in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The gateway's own counters: per cache kind (hits, misses), and SQL statements and GraphQL
/// requests from the statements-per-request histogram.
#[derive(Debug, Default, Clone)]
struct Counters {
    kinds: Vec<(String, u64, u64)>,
    sql: f64,
    requests: f64,
    /// `http_server_request_duration_seconds` of `/graphql`, cumulative per bucket bound.
    durations: std::collections::BTreeMap<String, f64>,
}

async fn counters(base: &str) -> Counters {
    let client = reqwest::Client::new();
    let status: Value = client
        .get(format!("{base}/api/management/cache/status"))
        .bearer_auth(token(1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds = status["kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            let stat = |name: &str| k["stats"][name].as_u64().unwrap_or(0);
            let hits = stat("l1Hits")
                + stat("l2Hits")
                + stat("staleWhileRevalidate")
                + stat("staleIfError");
            (
                k["kind"].as_str().unwrap_or("").to_string(),
                hits,
                stat("misses"),
            )
        })
        .collect();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut counters = Counters {
        kinds,
        ..Default::default()
    };
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("graphql_server_operation_db_statements"))
    {
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if line.contains("_sum") {
            counters.sql += value;
        } else if line.contains("_count") {
            counters.requests += value;
        }
    }
    for line in metrics.lines().filter(|l| {
        l.starts_with("http_server_request_duration_seconds_bucket") && l.contains("/graphql")
    }) {
        let bound = line.split("le=\"").nth(1).and_then(|r| r.split('"').next());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(bound), Some(value)) = (bound, value) {
            *counters.durations.entry(bound.to_string()).or_default() += value;
        }
    }
    counters
}

/// The server's own view of a run's `/graphql` latency (its duration histogram between two
/// readings): the share answered within 1 and 2.5 ms, and the bucket holding the p99. What the
/// client measures beyond it is the connection, the kernel and the generator.
fn server_side(before: &Counters, after: &Counters) -> Value {
    let mut bounds: Vec<(f64, f64)> = after
        .durations
        .iter()
        .map(|(bound, n)| {
            let seen = n - before.durations.get(bound).copied().unwrap_or(0.0);
            (bound.parse().unwrap_or(f64::INFINITY), seen)
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last().map_or(0.0, |b| b.1);
    let within = |limit: f64| {
        bounds
            .iter()
            .find(|b| b.0 >= limit)
            .map_or(0.0, |b| b.1 / total.max(1.0))
    };
    let p99 = bounds
        .iter()
        .find(|b| b.1 >= total * 0.99)
        .map_or(f64::INFINITY, |b| b.0);
    json!({"requests": total, "within_1ms": within(0.001), "within_2_5ms": within(0.0025), "p99_at_most_ms": p99 * 1000.0})
}

/// What the gateway counted between two readings: each kind's hit rate, SQL per request.
fn counted(before: &Counters, after: &Counters) -> Value {
    let mut kinds = serde_json::Map::new();
    for (kind, hits, misses) in &after.kinds {
        let (h0, m0) = before
            .kinds
            .iter()
            .find(|(k, _, _)| k == kind)
            .map(|(_, h, m)| (*h, *m))
            .unwrap_or((0, 0));
        let (hits, misses) = (hits - h0, misses - m0);
        if hits + misses > 0 {
            kinds.insert(kind.clone(), json!({"hits": hits, "misses": misses, "hit_rate": hits as f64 / (hits + misses) as f64}));
        }
    }
    let requests = after.requests - before.requests;
    json!({
        "server_side": server_side(before, after),
        "kinds": kinds,
        "graphql_requests": requests,
        "sql_per_request": if requests > 0.0 { (after.sql - before.sql) / requests } else { 0.0 },
    })
}

fn print_counted(name: &str, counted: &Value) {
    let rates: Vec<String> = counted["kinds"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(kind, v)| {
            format!(
                "{kind} {:.1} %",
                v["hit_rate"].as_f64().unwrap_or(0.0) * 100.0
            )
        })
        .collect();
    let server = &counted["server_side"];
    println!(
        "{name}: SQL/request {:.3}; hit rates: {}; the server's own latency: {:.1} % within 1 ms, {:.1} % within 2.5 ms, p99 ≤ {} ms",
        counted["sql_per_request"].as_f64().unwrap_or(0.0),
        rates.join(", "),
        server["within_1ms"].as_f64().unwrap_or(0.0) * 100.0,
        server["within_2_5ms"].as_f64().unwrap_or(0.0) * 100.0,
        server["p99_at_most_ms"]
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        let r = summarize(
            "self-check",
            vec![3000, 1000, 2000, 4000],
            0,
            Duration::from_secs(1),
        );
        assert_eq!((r.p50_ms, r.p99_ms, r.rps), (2.0, 4.0, 4.0));
        println!(
            "load bench: statistics self-check ok (run `cargo bench --bench load` to measure)"
        );
        return;
    }
    let database = env(
        "BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/bff_large",
    );
    let redis = env("BENCH_REDIS_URL", "redis://127.0.0.1:6379");
    let seconds: f64 = env("BENCH_SECONDS", "5").parse().unwrap();
    let connections: usize = env("BENCH_CONNECTIONS", "16").parse().unwrap();
    let only: Vec<String> = env("BENCH_ONLY", "")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let explicitly = |name: &str| only.iter().any(|o| name.starts_with(o.as_str()));
    let wanted = |name: &str| only.is_empty() || explicitly(name);
    ensure_seeded(&database);
    pin_client_to_cpu1();
    let _services = ServicesOnCpu1::pin(&database, &redis);
    if std::env::args().any(|a| a == "soak") {
        let minutes: f64 = env("BENCH_SOAK_MINUTES", "10").parse().unwrap();
        soak(&database, &redis, connections, minutes);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (results, extra) = runtime.block_on(async move {
        let admin = token(1);
        let today = chrono::Utc::now().date_naive();
        let dashboard = move |fixed: bool| {
            graphql(
                "query($c: ID!) { dashboard(clubId: $c, period: MONTH) { current { reservations revenue occupancyRate } courts { court { name } occupancyRate } daily { date reservations } peakHours { hour reservations } } }",
                token(1),
                move |i| json!({ "c": if fixed { 1 } else { i % 40 + 1 } }),
            )
        };
        let auth_as = |user: i64| {
            graphql(
                "{ authContext { user { email } currentOrganization { name } organizations { role organization { name } } clubs { role club { name } } permissions } }",
                token(user),
                |_| json!({}),
            )
        };
        let auth = move |_fixed: bool| auth_as(2);
        let availability = move |fixed: bool| {
            graphql(
                "query($c: ID!, $d: Date!) { courtAvailability(clubId: $c, date: $d) { courts { court { name } availableCount slots { start available } } } }",
                token(1),
                move |i| {
                    let (club, day) = if fixed { (1, 0) } else { (i % 40 + 1, (i / 40) % 14) };
                    json!({ "c": club, "d": (today + chrono::Days::new(day)).to_string() })
                },
            )
        };
        // Reads of the three operations over 40 clubs and 14 days, and 5 % bookings, each on a
        // distinct free slot (court, day, hour) far past the seeded calendar; `run` picks the day
        // so that the mixed runs (and two bench runs ten seconds apart) never book the same slot.
        // Ten-second ticks (a bench run takes longer), wrapping after 11 hours (4 000 ticks of
        // twelve days: the latest booking lies ~130 years ahead).
        let tick = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 10 % 4_000;
        let mixed = move |run: u64| -> MakeRequest {
            let reads = [dashboard(false), auth(false), availability(false)];
            let admin = admin.clone();
            Arc::new(move |c, b, i| {
                if is_booking(i) {
                    // Warm-up indices count from 0, measured ones from 1 000 000: each phase of
                    // each of the three runs (closed loop without and with the response cache,
                    // open loop) has two days of its own (3 900 slots a day), each ten-second
                    // tick twelve.
                    let (phase, n) = (i / 1_000_000, (i % 1_000_000) / 20);
                    let court = n % 300 + 1;
                    let hour = 9 + (n / 300) % 13;
                    let day = today
                        + chrono::Days::new(400 + tick * 12 + run * 4 + phase.min(1) * 2 + (n / (300 * 13)).min(1));
                    c.post(format!("{b}/graphql")).bearer_auth(&admin).json(&json!({
                        "query": "mutation($i: CreateReservationInput!) { createReservation(input: $i) { id } }",
                        "variables": {"i": {"courtId": court, "date": day.to_string(), "start": format!("{hour:02}:00"), "end": format!("{:02}:00", hour + 1)}},
                    }))
                } else {
                    reads[(i % 3) as usize](c, b, i)
                }
            })
        };
        let mut results = Vec::new();
        let mut extra = serde_json::Map::new();

        // The population workload (the default mix): thousands of users, sessions as real ones
        // open the app (benches/load/population.rs), every cache at its default.
        if wanted("population") || wanted("population (rate limiter on)") || wanted("first look") {
            let population = Arc::new(Population::load(&database, token));
            let (players, staff, leads) = population.mix;
            println!(
                "population: {} users in {} sessions ({:.1} % players, {:.1} % staff and managers, {:.1} % owners and admins), {:.2} % writes",
                population.users, population::SESSIONS, players * 100.0, staff * 100.0, leads * 100.0, population.write_share() * 100.0
            );
            extra.insert("population users".into(), json!(population.users));
            let _ = POPULATION.set(population.clone());
            if wanted("population") {
                let server = Server::start(&database, &redis, &[]);
                warm(&server.base, &population).await;
                let before = counters(&server.base).await;
                let cpu = CpuPerRequest::start(&server);
                let rows = closed_loop_parts("population", &server.base, population.requests(0, Mode::All), connections, seconds, POPULATION_PARTS).await;
                cpu.print("population", &rows[0]);
                let after = counters(&server.base).await;
                let max = rows[0].rps;
                results.extend(rows);
                let seen = counted(&before, &after);
                print_counted("population", &seen);
                extra.insert("population".into(), seen);
                let before = counters(&server.base).await;
                results.extend(fixed_rate_parts("population@50%", &server.base, population.requests(1, Mode::All), max * 0.5, seconds, POPULATION_PARTS).await);
                let seen = counted(&before, &counters(&server.base).await);
                print_counted("population@50%", &seen);
                extra.insert("population@50%".into(), seen);
                // The harness's own floor at the same rate: `/healthz`, open loop.
                let healthz: MakeRequest = Arc::new(|c, b, _| c.get(format!("{b}/healthz")));
                results.push(fixed_rate("floor-http@population@50%'s rate", &server.base, healthz, max * 0.5, seconds).await);
            }
            if wanted("population (rate limiter on)") {
                // As production runs it: every request takes its user's and its address's tokens
                // in Redis. The address's budget is raised, since every bench user is 127.0.0.1.
                let server = Server::start(
                    &database,
                    &redis,
                    &[
                        ("BFF__CACHE__KEY_PREFIX", format!("bench{}-limited", std::process::id())),
                        ("BFF__RATE_LIMIT__ENABLED", "true".into()),
                        ("BFF__RATE_LIMIT__IP_FACTOR", "100000".into()),
                    ],
                );
                warm(&server.base, &population).await;
                let before = counters(&server.base).await;
                let cpu = CpuPerRequest::start(&server);
                let rows = closed_loop_parts("population (rate limiter on)", &server.base, population.requests(5, Mode::All), connections, seconds, POPULATION_PARTS).await;
                cpu.print("population (rate limiter on)", &rows[0]);
                results.extend(rows);
                let seen = counted(&before, &counters(&server.base).await);
                print_counted("population (rate limiter on)", &seen);
                extra.insert("population (rate limiter on)".into(), seen);
            }
            if wanted("population") {
                // The same sessions, reads only, without shared answers and then with every
                // answer cache off: what sharing and the response cache each buy.
                for (name, env) in [
                    ("population reads", vec![]),
                    ("population reads, shared answers off", vec![("BFF__CACHE__SHARED_ANSWERS", "false".to_string())]),
                    ("population reads, response cache off", vec![("BFF__CACHE__RESPONSE_CACHE", "false".to_string())]),
                ] {
                    // A shared tier of its own: the population run's answers in Redis would
                    // make these first looks hits the population run never had.
                    let mut env = env;
                    env.push(("BFF__CACHE__KEY_PREFIX", format!("bench{}-{}", std::process::id(), name.replace([' ', ','], "-"))));
                    let server = Server::start(&database, &redis, &env);
                    warm(&server.base, &population).await;
                    let before = counters(&server.base).await;
                    let cpu = CpuPerRequest::start(&server);
                    let row = closed_loop(name, &server.base, population.requests(2, Mode::Reads), connections, seconds).await;
                    cpu.print(name, &row);
                    let max = row.rps;
                    results.push(row);
                    let seen = counted(&before, &counters(&server.base).await);
                    print_counted(name, &seen);
                    extra.insert(name.into(), seen);
                    if env.len() == 1 {
                        // The open loop without the writes: what of population@50%'s tail the
                        // writes and their invalidations make.
                        let before = counters(&server.base).await;
                        results.push(fixed_rate("population reads@50%", &server.base, population.requests(4, Mode::Reads), max * 0.5, seconds).await);
                        let seen = counted(&before, &counters(&server.base).await);
                        print_counted("population reads@50%", &seen);
                        extra.insert("population reads@50%".into(), seen);
                    }
                }
            }
            // The Node peer: GraphQL Yoga with its Redis response cache (benches/peer/yoga.sh),
            // against padel-bff on the same stream (reads, no dashboards). Opt-in: BENCH_PEER=1.
            if env("BENCH_PEER", "") == "1" && wanted("population") {
                let server = Server::start(&database, &redis, &[]);
                warm(&server.base, &population).await;
                results.push(closed_loop("population peer reads: padel-bff", &server.base, population.requests(3, Mode::PeerReads), connections, seconds).await);
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/yoga.sh");
                let secret = {
                    let vars: Vec<(String, String)> = std::env::vars().collect();
                    Settings::load_from(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")), &vars).unwrap().auth.jwt_secret
                };
                let mut peer = Command::new("taskset")
                    .args(["-c", "0", "bash", script, &database])
                    .env("PEER_PORT", port.to_string())
                    .env("PEER_JWT_SECRET", secret)
                    .env("REDIS_URL", &redis)
                    .env("PEER_CACHE_PREFIX", format!("yoga{}:", std::process::id()))
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start Yoga");
                let base = format!("http://127.0.0.1:{port}");
                let probe = reqwest::Client::new();
                wait_for_peer(&base, &mut peer, "Yoga").await;
                warm(&base, &population).await;
                // Same shape, same data: one grid and one authContext from both.
                let make = population.requests(3, Mode::PeerReads);
                for i in 0..8u64 {
                    let ours: Value = make(&probe, &server.base, i).send().await.unwrap().json().await.unwrap();
                    let theirs: Value = make(&probe, &base, i).send().await.unwrap().json().await.unwrap();
                    if ours["data"] != theirs["data"] {
                        println!("peer answer differs for request {i}:\n ours   {ours}\n theirs {theirs}");
                    }
                }
                results.push(closed_loop("population peer reads: Yoga + response cache", &base, population.requests(3, Mode::PeerReads), connections, seconds).await);
                let _ = peer.kill();
                let _ = peer.wait();
            }
            // PostGraphile 5 on the same stream, each request its raw-row equivalent (the user with
            // memberships and the role-permission table; a club's courts with a day's
            // reservations), against padel-bff with every cache off: the same statements' worth of
            // work without a cache on either side. Opt-in: BENCH_PEER=1.
            if env("BENCH_PEER", "") == "1" && wanted("population") {
                let server = Server::start(&database, &redis, &[("BFF__CACHE__ENABLED", "false".into())]);
                let cpu = CpuPerRequest::start(&server);
                let row = closed_loop("population peer reads: padel-bff, every cache off", &server.base, population.requests(4, Mode::PeerReads), connections, seconds).await;
                cpu.print("population peer reads: padel-bff, every cache off", &row);
                results.push(row);
                drop(server);
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/postgraphile.sh");
                let mut peer = Command::new("taskset")
                    .args(["-c", "0", "bash", script, &database])
                    .env("PEER_PORT", port.to_string())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start PostGraphile");
                let base = format!("http://127.0.0.1:{port}");
                wait_for_peer(&base, &mut peer, "PostGraphile").await;
                results.push(closed_loop("population peer reads: PostGraphile 5 (raw rows)", &base, population.requests(4, Mode::PostGraphile), connections, seconds).await);
                let _ = peer.kill();
                let _ = peer.wait();
            }
            if wanted("first look") {
                // Each player's first look at a grid another player already loaded: the response
                // cache keeps nothing (ttl 0), so no request is a repeat of its own user's; the
                // shared answer serves all of them.
                let server = Server::start(&database, &redis, &[("BFF__CACHE__RESPONSE__TTL", "0s".into())]);
                let (club, players) = population::busiest_club(&population);
                println!("first look: {} users of club {club}", players.len());
                let players = Arc::new(players);
                let date = today.to_string();
                let make: MakeRequest = Arc::new(move |c, b, i| {
                    c.post(format!("{b}/graphql"))
                        .bearer_auth(&players[(i % players.len() as u64) as usize])
                        .json(&json!({"query": population::GRID, "variables": {"club": club.to_string(), "date": date}}))
                });
                let before = counters(&server.base).await;
                results.push(closed_loop("first look courtAvailability (cached by another player)", &server.base, make, connections, seconds).await);
                let seen = counted(&before, &counters(&server.base).await);
                print_counted("first look", &seen);
                extra.insert("first look".into(), seen);
            }
        }

        // Floors, L1 hits, the fixed-rate latency run and the mixed workload, with the
        // whole-response cache off so that `l1-hit` measures the value cache under the whole
        // GraphQL pipeline.
        {
            let server = Server::start(&database, &redis, &[("BFF__CACHE__RESPONSE_CACHE", "false".into())]);
            let base = server.base.clone();
            if wanted("floor-http") {
                let healthz: MakeRequest = Arc::new(|c, b, _| c.get(format!("{b}/healthz")));
                let cpu = CpuPerRequest::start(&server);
                let row = closed_loop("floor-http", &base, healthz, connections, seconds).await;
                cpu.print("floor-http", &row);
                results.push(row);
            }
            if wanted("floor-graphql") {
                let trivial: MakeRequest = Arc::new(|c, b, _| c.post(format!("{b}/graphql")).json(&json!({"query": "{ __typename }"})));
                results.push(closed_loop("floor-graphql", &base, trivial, connections, seconds).await);
            }
            let mut l1_availability_rps = None;
            for (name, make) in [("l1-hit dashboard", dashboard(true)), ("l1-hit authContext", auth(true)), ("l1-hit courtAvailability", availability(true))] {
                if wanted(name) {
                    let r = closed_loop(name, &base, make, connections, seconds).await;
                    if name.ends_with("courtAvailability") {
                        l1_availability_rps = Some(r.rps);
                    }
                    results.push(r);
                }
            }
            if let Some(max) = l1_availability_rps.filter(|_| wanted("l1-hit@50%")) {
                results.push(fixed_rate("l1-hit@50% courtAvailability", &base, availability(true), max * 0.5, seconds).await);
            }
            if explicitly("mixed") {
                results.extend(closed_loop_parts("mixed (5% bookings)", &base, mixed(0), connections, seconds, MIXED_PARTS).await);
            }
        }
        // The same L1 hits with `telemetry.field_timing = "root"`: no engine extension, root
        // fields timed only. The gap to `l1-hit` is what per-field observability costs.
        if wanted("l1-hit") {
            let server = Server::start(&database, &redis, &[("BFF__CACHE__RESPONSE_CACHE", "false".into()), ("BFF__TELEMETRY__FIELD_TIMING", "root".into())]);
            for (name, make) in [("l1-hit root timing dashboard", dashboard(true)), ("l1-hit root timing authContext", auth(true)), ("l1-hit root timing courtAvailability", availability(true))] {
                results.push(closed_loop(name, &server.base, make, connections, seconds).await);
            }
        }
        // The whole-response cache on (the default): repeated identical operations.
        if wanted("response-hit") {
            let server = Server::start(&database, &redis, &[]);
            // Users 4 and 6 of the seed: a club manager and a player with two clubs.
            for (name, make) in [("response-hit dashboard", dashboard(true)), ("response-hit authContext", auth(true)), ("response-hit authContext (a manager)", auth_as(4)), ("response-hit authContext (a player)", auth_as(6)), ("response-hit courtAvailability", availability(true))] {
                results.push(closed_loop(name, &server.base, make, connections, seconds).await);
            }
            if explicitly("mixed") {
                let closed = closed_loop_parts("mixed (5% bookings), response cache on", &server.base, mixed(1), connections, seconds, MIXED_PARTS).await;
                let max = closed[0].rps;
                results.extend(closed);
                // The same mix open loop at a quarter of that throughput: the latency a user
                // sees below saturation (the closed loop's tail is queueing). Not half: this
                // open-loop client, sharing CPU 1 with Postgres and Redis, cannot pace ~7 000
                // req/s of this mix (docs/performance.md, run 10).
                results.extend(fixed_rate_parts("mixed@25% (5% bookings), response cache on", &server.base, mixed(2), max * 0.25, seconds, MIXED_PARTS).await);
            }
        }
        // L1 disabled: every hit is an L2 hit.
        if wanted("l2-hit") {
            let server = Server::start(&database, &redis, &[("BFF__CACHE__L1_ENABLED", "false".into())]);
            for (name, make) in [("l2-hit dashboard", dashboard(true)), ("l2-hit authContext", auth(true)), ("l2-hit courtAvailability", availability(true))] {
                results.push(closed_loop(name, &server.base, make, connections, seconds).await);
            }
        }
        // Cache disabled: every request reads the large database.
        if wanted("miss") {
            let server = Server::start(&database, &redis, &[("BFF__CACHE__ENABLED", "false".into())]);
            for (name, make) in [("miss dashboard", dashboard(false)), ("miss authContext", auth(false)), ("miss courtAvailability", availability(false))] {
                results.push(closed_loop(name, &server.base, make, connections, seconds).await);
            }
        }
        // Availability uncached while the caller and the club layout stay cached, as in
        // production (their entries rarely change): the one statement PostGraphile also runs.
        if wanted("miss courtAvailability (only the slots uncached)") {
            let server = Server::start(&database, &redis, &[("BFF__CACHE__COURT_AVAILABILITY__TTL", "0s".into()), ("BFF__CACHE__COURT_AVAILABILITY__STALE_IF_ERROR", "0s".into())]);
            results.push(closed_loop("miss courtAvailability (only the slots uncached)", &server.base, availability(false), connections, seconds).await);
        }
        // The same for the dashboard: its aggregate statement on every request, the caller and
        // the club from the cache (what a dashboard miss costs in production).
        if wanted("miss dashboard (only the aggregates uncached)") {
            let server = Server::start(
                &database,
                &redis,
                &[
                    ("BFF__CACHE__DASHBOARD__TTL", "0s".into()),
                    ("BFF__CACHE__DASHBOARD__STALE_WHILE_REVALIDATE", "0s".into()),
                    ("BFF__CACHE__DASHBOARD__STALE_IF_ERROR", "0s".into()),
                ],
            );
            results.push(closed_loop("miss dashboard (only the aggregates uncached)", &server.base, dashboard(false), connections, seconds).await);
        }
        // Writes made outside the gateway (issue 16): an INSERT through a plain connection, then
        // replica B polled until its cached grid shows the court taken. The latency is from the
        // INSERT's commit to the first answer of B that shows it (outbox, NOTIFY, tail, Redis
        // generations; B's value was cached before each write). 200 writes on slots of their
        // own, far past the calendar and every other scenario's bookings; removed afterwards.
        if wanted("outside") {
            let far = [("BFF__LIMITS__DATE_DAYS_AHEAD", "90000".to_string())];
            let _a = Server::start(&database, &redis, &far);
            let b = Server::start(&database, &redis, &far);
            let pool = sqlx::PgPool::connect(&database).await.expect("bench database");
            let courts: Vec<i64> = sqlx::query_scalar("SELECT id FROM courts WHERE club_id = 1 AND is_active AND NOT is_maintenance ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
            let client = reqwest::Client::new();
            let admin = token(1);
            let query = "query($d: Date!) { courtAvailability(clubId: 1, date: $d) { courts { court { id } availableCount } } }";
            let count = |body: &Value, court: i64| {
                body["data"]["courtAvailability"]["courts"].as_array().and_then(|cs| {
                    cs.iter().find(|c| c["court"]["id"] == court.to_string()).and_then(|c| c["availableCount"].as_i64())
                })
            };
            let first_day = today + chrono::Days::new(62_000 + tick * 4);
            let n = courts.len() as u64;
            let mut seen = Vec::new();
            for k in 0..200u64 {
                // One 90-minute slot of the grid each (08:00 + 90 j), so every write takes a free slot.
                let (court, start) = (courts[(k % n) as usize], 480 + 90 * ((k / n) % 10) as i32);
                // The (k / 10n)-th weekday from first_day: weekends open later, off the grid.
                let date = {
                    use chrono::Datelike;
                    let mut weekdays = (0u64..).map(|d| first_day + chrono::Days::new(d)).filter(|d| d.weekday().number_from_monday() <= 5);
                    weekdays.nth((k / (n * 10)) as usize).unwrap().to_string()
                };
                let ask = || async {
                    let reply = client.post(format!("{}/graphql", b.base)).bearer_auth(&admin).json(&json!({"query": query, "variables": {"d": date}})).send().await.unwrap();
                    reply.json::<Value>().await.unwrap()
                };
                ask().await;
                let before = count(&ask().await, court);
                sqlx::query("INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price) VALUES (1, $1, 1, CAST($2 AS DATE), TIME '00:00' + make_interval(mins => $3), TIME '00:00' + make_interval(mins => $3 + 90), 'confirmed', 20)")
                    .bind(court)
                    .bind(&date)
                    .bind(start)
                    .execute(&pool)
                    .await
                    .unwrap();
                let committed = Instant::now();
                loop {
                    if count(&ask().await, court) != before {
                        break;
                    }
                    assert!(committed.elapsed() < Duration::from_secs(30), "outside write never visible on replica B");
                }
                seen.push(committed.elapsed().as_secs_f64() * 1000.0);
            }
            sqlx::query("DELETE FROM reservations WHERE club_id = 1 AND date >= CAST($1 AS DATE) AND date < CAST($1 AS DATE) + 60")
                .bind(first_day.to_string())
                .execute(&pool)
                .await
                .unwrap();
            seen.sort_by(f64::total_cmp);
            let at = |q: f64| seen[((seen.len() as f64 * q).ceil() as usize).clamp(1, seen.len()) - 1];
            println!("outside write -> visible on replica B: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} writes", at(0.5), at(0.99), at(1.0), seen.len());
            extra.insert("outside write visible on B".into(), json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0), "writes": seen.len()}));
        }
        // Live availability: 1 000 and 10 000 subscribers of one grid over two replicas, bookings
        // through A; booking -> delivery per subscriber, and gateway CPU per delivered event.
        if wanted("live") {
            let first_day = today + chrono::Days::new(55_000 + (tick % 1_000) * 4);
            extra.insert("live".into(), live::run(&database, &redis, first_day).await);
        }
        // The peer: PostGraphile 5 over the same database (installed from npm into target/peer by
        // benches/peer/postgraphile.sh), driven with the equivalent raw-data query (a club's
        // courts with their reservations on a date) over the same clubs and dates as
        // `miss courtAvailability`. Opt-in: BENCH_PEER=1.
        if env("BENCH_PEER", "") == "1" && wanted("peer") {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/postgraphile.sh");
            let mut command = Command::new("taskset");
            command.args(["-c", "0", "bash", script, &database]).env("PEER_PORT", port.to_string());
            let mut peer = command.stdout(Stdio::null()).spawn().expect("start PostGraphile");
            let base = format!("http://127.0.0.1:{port}");
            wait_for_peer(&base, &mut peer, "PostGraphile").await;
            let query = "query($clubId: BigInt!, $date: Date!) { clubByRowId(rowId: $clubId) { rowId name timezone courtsByClubId(orderBy: PRIMARY_KEY_ASC) { nodes { rowId name isActive isMaintenance reservationsByCourtId(condition: {clubId: $clubId, date: $date}, orderBy: PRIMARY_KEY_ASC) { nodes { rowId date startTime endTime status } } } } } }";
            let make: MakeRequest = Arc::new(move |c, b, i| {
                let (club, day) = (i % 40 + 1, (i / 40) % 14);
                c.post(format!("{b}/graphql")).json(&json!({
                    "query": query,
                    "variables": {"clubId": club.to_string(), "date": (today + chrono::Days::new(day)).to_string()},
                }))
            });
            results.push(closed_loop("peer PostGraphile 5 (club courts + reservations of a date)", &base, make, connections, seconds).await);
            let _ = peer.kill();
            let _ = peer.wait();
        }
        // Refused work: hostile documents (anonymous, as a stranger sends them) against one
        // server, each row closed loop; the server's CPU time over the row (from /proc, in
        // USER_HZ ticks) divided by the requests is the cost of one refusal. Every answer is an
        // error by design, so `errors` equals the requests.
        if wanted("hostile") {
            let server = Server::start(&database, &redis, &[]);
            let mut fan_out = String::from("query Bomb { ...F0 }");
            for i in 0..40 {
                fan_out.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
            }
            fan_out.push_str(" fragment F40 on Query { __typename }");
            let aliases: String = (0..40).map(|i| format!("a{i}: __typename ")).collect();
            let nested = "[".repeat(10_000) + "1" + &"]".repeat(10_000);
            let documents: Vec<(&str, String)> = vec![
                ("hostile fan-out 2^40", json!({"query": fan_out}).to_string()),
                ("hostile aliases x fragments", json!({"query": format!("query A {{ ...X ...X ...X ...X }} fragment X on Query {{ ...Y ...Y ...Y ...Y }} fragment Y on Query {{ {aliases} }}")}).to_string()),
                ("hostile 10 000 brackets", json!({"query": "{".repeat(10_000)}).to_string()),
                ("hostile directive bomb", json!({"query": format!("{{ __typename {} }}", "@include(if: true) ".repeat(600))}).to_string()),
                ("hostile nested variables", format!(r#"{{"query": "query($c: [ID!]) {{ __typename }}", "variables": {{"c": {nested}}}}}"#)),
            ];
            // Each document repeated (a remembered refusal) and made unique per request by a
            // leading comment (parsed every time).
            for (name, body) in documents {
                for unique in [false, true] {
                    let body = Arc::new(body.clone());
                    let make: MakeRequest = Arc::new(move |c, b, i| {
                        let body = if unique {
                            body.replacen("{\"query\":\"", &format!("{{\"query\":\"#{i}\\n"), 1)
                        } else {
                            body.as_str().to_string()
                        };
                        c.post(format!("{b}/graphql"))
                            .header("content-type", "application/json")
                            .body(body)
                    });
                    let before = cpu_ticks(server.child.id());
                    let mut row = closed_loop(name, &server.base, make, connections, seconds).await;
                    let ticks = cpu_ticks(server.child.id()) - before;
                    let per_request_us = ticks as f64 * 10_000.0 / row.requests.max(1) as f64;
                    let kind = if unique { "unique" } else { "repeated" };
                    row.scenario = format!("{name}, {kind} ({per_request_us:.0} us CPU)");
                    results.push(row);
                }
            }
        }
        // Tracing cost: spans exported to a live receiver (default field spans, then every field)
        // and to a closed port, against the same L1-hit workload with tracing off.
        if wanted("tracing") {
            let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let sink_port = sink.local_addr().unwrap().port();
            std::thread::spawn(move || {
                // A minimal OTLP/HTTP sink: accept, read, answer 200.
                use std::io::{Read, Write};
                for stream in sink.incoming().flatten() {
                    std::thread::spawn(move || {
                        let mut stream = stream;
                        let mut buffer = vec![0u8; 1 << 20];
                        while let Ok(n) = stream.read(&mut buffer) {
                            if n == 0 || stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let off = ("BFF__CACHE__RESPONSE_CACHE", "false".to_string());
            let mut extra_cpu = serde_json::Map::new();
            let sink = format!("http://127.0.0.1:{sink_port}");
            let to_sink = |sampler: &str| {
                let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", sink.clone()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string())];
                if !sampler.is_empty() {
                    env.push(("OTEL_TRACES_SAMPLER", sampler.to_string()));
                }
                env
            };
            let mut all_fields = to_sink("always_on");
            all_fields.push(("BFF__TELEMETRY__FIELD_SPANS", "all".into()));
            for (name, mut extra) in [
                ("tracing off", vec![]),
                ("tracing 100% (io spans)", to_sink("always_on")),
                ("tracing production default (10%)", { let mut env = to_sink(""); env.push(("BFF__TELEMETRY__SAMPLER_RATIO", "0.1".into())); env }),
                ("tracing unsampled (always_off)", to_sink("always_off")),
                ("tracing 100% (all fields)", all_fields),
                ("tracing to a closed port", vec![("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{closed}"))]),
            ] {
                extra.push(off.clone());
                let server = Server::start(&database, &redis, &extra);
                // The server's CPU per request too: on a host with steal time, throughput alone
                // moves 30 % between identical runs, CPU time far less.
                let before = cpu_ticks(server.child.id());
                let mut row = closed_loop(name, &server.base, availability(true), connections, seconds).await;
                let per_request_us = (cpu_ticks(server.child.id()) - before) as f64 * 10_000.0 / row.requests.max(1) as f64;
                extra_cpu.insert(name.to_string(), json!(per_request_us));
                row.scenario = format!("{name} ({per_request_us:.0} us CPU)");
                results.push(row);
            }
            if let Some(off) = extra_cpu.get("tracing off").and_then(Value::as_f64) {
                for (name, cpu) in &extra_cpu {
                    if let Some(cpu) = cpu.as_f64().filter(|_| name != "tracing off") {
                        println!("{name}: {:+.1} % CPU per request against tracing off", (cpu / off - 1.0) * 100.0);
                    }
                }
            }
            extra.insert("tracing CPU per request (us)".into(), Value::Object(extra_cpu));
        }
        (results, extra)
    });
    print_results(&results, extra, connections, seconds);
}

/// The CPU time the server and the generator (this process) spent over one row, per request:
/// which side a closed loop's throughput was bound by.
struct CpuPerRequest {
    server: u32,
    ticks: (u64, u64),
}

impl CpuPerRequest {
    fn start(server: &Server) -> CpuPerRequest {
        let server = server.child.id();
        CpuPerRequest {
            server,
            ticks: (cpu_ticks(server), cpu_ticks(std::process::id())),
        }
    }

    fn print(&self, name: &str, row: &Result) {
        let requests = (row.requests as f64).max(1.0);
        let per = |ticks: u64| ticks as f64 * 10_000.0 / requests;
        println!(
            "{name}: CPU per request: server {:.1} µs, generator {:.1} µs",
            per(cpu_ticks(self.server) - self.ticks.0),
            per(cpu_ticks(std::process::id()) - self.ticks.1)
        );
    }
}

/// User plus system CPU time of a process in USER_HZ ticks (10 ms on Linux; `/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line; after the name, field 3 is index 0.
    field(11) + field(12)
}

/// Resident memory of a process in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The soak run: a steady mixed load over ever new cache keys (40 clubs x 60 days x 4 slot
/// sizes, dashboards of every club and period, every user's authContext) for `minutes`, with a
/// deliberately small L1 (8 MiB) so eviction runs all along. Every 30 s it prints throughput,
/// errors, the server's resident memory and the L1's weighted size; at the end, memory at start
/// and end. A leak shows as RSS still climbing in the second half.
fn soak(database: &str, redis: &str, connections: usize, minutes: f64) {
    let server = Server::start(
        database,
        redis,
        &[("BFF__CACHE__L1_MAX_BYTES", (8u64 << 20).to_string())],
    );
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let today = chrono::Utc::now().date_naive();
        let admin = token(1);
        let tokens: Arc<Vec<String>> = Arc::new((1..=200).map(token).collect());
        let signer = admin.clone();
        let make: MakeRequest = Arc::new(move |c, b, i| {
            let club = i % 40 + 1;
            let body = match i % 10 {
                0..=4 => json!({
                    "query": "query($c: ID!, $d: Date!, $s: Int) { courtAvailability(clubId: $c, date: $d, slotMinutes: $s) { courts { availableCount slots { start available } } } }",
                    "variables": {"c": club, "d": (today + chrono::Days::new((i / 40) % 60)).to_string(), "s": ([60, 90, 120, 30][((i / 2400) % 4) as usize])},
                }),
                5..=7 => json!({
                    "query": "query($c: ID!, $p: Period!) { dashboard(clubId: $c, period: $p) { current { reservations revenue } daily { date reservations } } }",
                    "variables": {"c": club, "p": (["DAY", "WEEK", "MONTH", "YEAR"][((i / 40) % 4) as usize])},
                }),
                _ => json!({"query": "{ authContext { user { email } clubs { role club { name } } permissions } }"}),
            };
            let token = if i % 10 >= 8 { &tokens[(i % 200) as usize] } else { &signer };
            c.post(format!("{b}/graphql")).bearer_auth(token).json(&body)
        });
        let client = reqwest::Client::new();
        let status = |client: reqwest::Client, base: String, admin: String| async move {
            let body: Value = client
                .get(format!("{base}/api/management/cache/status"))
                .bearer_auth(admin)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(body)
        };
        let start_rss = rss_kib(pid);
        println!("soak: {minutes} min, {connections} connections, L1 bound 8 MiB; RSS at start {:.1} MiB", start_rss as f64 / 1024.0);
        println!("{:>6} {:>9} {:>7} {:>10} {:>14}", "minute", "req/s", "errors", "RSS MiB", "L1 status");
        let rounds = (minutes * 2.0).ceil() as u64;
        let mut samples = Vec::new();
        for round in 0..rounds {
            let r = closed_loop("soak", &server.base, make.clone(), connections, 30.0).await;
            let rss = rss_kib(pid);
            let l1 = status(client.clone(), server.base.clone(), admin.clone())
                .await
                .map(|s| s["l1"].to_string())
                .unwrap_or_default();
            println!("{:>6.1} {:>9.0} {:>7} {:>10.1} {}", (round + 1) as f64 / 2.0, r.rps, r.errors, rss as f64 / 1024.0, l1);
            samples.push(rss);
        }
        let end = *samples.last().unwrap_or(&start_rss);
        let half = samples.get(samples.len() / 2).copied().unwrap_or(start_rss);
        println!(
            "soak: RSS start {:.1} MiB, middle {:.1} MiB, end {:.1} MiB (second half {:+.1} %)",
            start_rss as f64 / 1024.0,
            half as f64 / 1024.0,
            end as f64 / 1024.0,
            (end as f64 / half.max(1) as f64 - 1.0) * 100.0
        );
    });
}

fn print_results(
    results: &[Result],
    extra: serde_json::Map<String, Value>,
    connections: usize,
    seconds: f64,
) {
    println!(
        "\n{:<34} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "scenario", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for r in results {
        println!(
            "{:<34} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            r.scenario, r.rps, r.p50_ms, r.p99_ms, r.p999_ms, r.errors
        );
    }
    let rps = |name: &str| {
        results
            .iter()
            .find(|r| r.scenario == name || r.scenario.starts_with(&format!("{name} (")))
            .map(|r| r.rps)
    };
    let mut ratios = serde_json::Map::new();
    if let Some(floor) = rps("floor-http") {
        for op in ["dashboard", "authContext", "courtAvailability"] {
            if let Some(hit) = rps(&format!("response-hit {op}")) {
                println!("response-hit {op} / floor-http = {:.2}", hit / floor);
                ratios.insert(
                    format!("response-hit {op} / floor-http"),
                    json!(hit / floor),
                );
            }
        }
    }
    if let Some(floor) = rps("floor-graphql") {
        for op in ["dashboard", "authContext", "courtAvailability"] {
            for scenario in [format!("l1-hit {op}"), format!("l1-hit root timing {op}")] {
                if let Some(hit) = rps(&scenario) {
                    println!("{scenario} / floor-graphql = {:.2}", hit / floor);
                    ratios.insert(format!("{scenario} / floor-graphql"), json!(hit / floor));
                }
            }
        }
    }
    if let (Some(ours), Some(peer)) = (
        rps("miss courtAvailability"),
        rps("peer PostGraphile 5 (club courts + reservations of a date)"),
    ) {
        println!(
            "miss courtAvailability / PostGraphile 5 = {:.2}",
            ours / peer
        );
        ratios.insert("miss courtAvailability / peer".into(), json!(ours / peer));
        if let Some(slots_only) = rps("miss courtAvailability (only the slots uncached)") {
            println!(
                "miss courtAvailability (only the slots uncached) / PostGraphile 5 = {:.2}",
                slots_only / peer
            );
            ratios.insert(
                "miss courtAvailability slots only / peer".into(),
                json!(slots_only / peer),
            );
        }
    }
    if let (Some(ours), Some(peer)) = (
        rps("population peer reads: padel-bff"),
        rps("population peer reads: Yoga + response cache"),
    ) {
        println!("population reads / Yoga peer = {:.2}", ours / peer);
        ratios.insert("population reads / Yoga peer".into(), json!(ours / peer));
    }
    if let Some(off) = rps("tracing off") {
        for scenario in [
            "tracing 100% (io spans)",
            "tracing production default (10%)",
            "tracing unsampled (always_off)",
            "tracing 100% (all fields)",
        ] {
            if let Some(on) = rps(scenario) {
                println!(
                    "{scenario}: costs {:.1} % of throughput",
                    (1.0 - on / off) * 100.0
                );
                ratios.insert(format!("{scenario} cost"), json!(1.0 - on / off));
            }
        }
    }
    if let Some(floor) = rps("floor-http") {
        for scenario in [
            "population",
            "population reads",
            "population reads, shared answers off",
            "population reads, response cache off",
            "first look courtAvailability (cached by another player)",
            "population peer reads: padel-bff",
            "population peer reads: Yoga + response cache",
        ] {
            if let Some(r) = rps(scenario) {
                println!("{scenario} / floor-http = {:.2}", r / floor);
                ratios.insert(format!("{scenario} / floor-http"), json!(r / floor));
            }
        }
    }
    let json = json!({
        "connections": connections,
        "seconds_per_scenario": seconds,
        "results": results.iter().map(|r| json!({"scenario": r.scenario, "requests": r.requests, "errors": r.errors, "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "p999_ms": r.p999_ms})).collect::<Vec<_>>(),
        "ratios": ratios,
        "gateway_counters": extra,
    });
    let path = env(
        "BENCH_JSON",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-load.json"),
    );
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("JSON: {path}");
}
