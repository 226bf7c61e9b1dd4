//! The test harness: a real gateway on a free port over a fresh database (Postgres or SQLite)
//! seeded with demo data, a real HTTP client, and raw SQL access for independent checks.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use padel_bff::{
    auth::TokenAuthority,
    config::Settings,
    startup::Application,
    store::{
        seed::{Scale, SeedOptions},
        Store,
    },
};
use serde_json::{json, Value};
use sqlx::{PgPool, SqlitePool};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates one test per backend from an async body taking a `TestApp`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $app = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await;
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                $body
            }
        }
    };
}

/// Raw access to the test database, for arranging state and recomputing expectations.
pub enum RawDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// One reservation as the raw database holds it (dates and times as text).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RawReservation {
    pub court_id: i64,
    pub created_by_id: i64,
    pub date: String,
    pub start_time: String,
    pub end_time: String,
    pub status: String,
    pub cents: i64,
}

/// A running gateway.
pub struct TestApp {
    pub backend: Backend,
    pub address: String,
    pub client: reqwest::Client,
    pub raw: RawDb,
    pub today: chrono::NaiveDate,
    tokens: TokenAuthority,
    database: String,
    cleanup: Option<String>,
    owns_database: bool,
    env: Vec<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The booking quota every test club starts with: none to speak of (see `spawn_app_with`).
pub const OPEN_QUOTA: i64 = 1_000_000;

fn base_postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn settings_for(url: &str, env: &[(String, String)]) -> Settings {
    let mut vars = vec![
        ("DATABASE_URL".to_string(), url.to_string()),
        ("BFF_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "BFF__DATABASE__SEED_DEMO_ON_EMPTY".to_string(),
            "false".to_string(),
        ),
        // Tests book years ahead (clear of the seeded reservations); the window, the horizon
        // and the quota have tests of their own (hostile.rs) that set them back.
        (
            "BFF__LIMITS__DATE_DAYS_AHEAD".to_string(),
            "3650".to_string(),
        ),
    ];
    vars.extend(env.iter().cloned());
    Settings::load_from(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &vars,
    )
    .expect("test settings")
}

/// A database name no other test uses.
pub fn unique_database_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bff_test_{}_{}_{}", std::process::id(), n, rand_suffix())
}

/// A fresh, empty database of the test's own on the shared Postgres; its URL.
pub async fn create_postgres_database(name: &str) -> String {
    let admin = PgPool::connect(&base_postgres_url())
        .await
        .expect("Postgres reachable (TEST_DATABASE_URL)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let base = base_postgres_url();
    format!(
        "{}/{name}",
        &base[..base.rfind('/').expect("url has a database")]
    )
}

/// Drops a test database, on a thread of its own: callers include `Drop`, which cannot await,
/// while the test's runtime may be shutting down.
pub fn drop_postgres_database(name: String) {
    let base = base_postgres_url();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(admin) = PgPool::connect(&base).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
            }
        });
    })
    .join();
}

/// The shared Redis of the machine (tests use their own key prefix on it).
pub fn shared_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!(
        "bfftest{}x{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    )
}

/// Starts a gateway over a fresh, migrated, demo-seeded database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Like [`spawn_app`] with extra environment (e.g. `REDIS_URL`, `BFF__CACHE__…`).
pub async fn spawn_app_with(backend: Backend, env: &[(&str, &str)]) -> TestApp {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if std::env::var("TEST_LOG").is_ok() {
        padel_bff::telemetry::init_logging(&padel_bff::config::LogSettings {
            level: "info".into(),
            format: padel_bff::config::LogFormat::Text,
        });
    } else {
        // The gateway's errors (an internal error's cause: the SQLSTATE and message) go to the
        // test's captured output, which libtest prints only when that test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("padel_bff=error"))
            .with_test_writer()
            .try_init();
    }
    let name = unique_database_name();
    let (url, cleanup) = match backend {
        Backend::Postgres => (create_postgres_database(&name).await, Some(name.clone())),
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("padel-bff-tests");
            std::fs::create_dir_all(&dir).unwrap();
            (
                format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
                None,
            )
        }
    };
    let settings = settings_for(&url, &env);
    let store = Store::connect(&settings).await.expect("connect");
    store.migrate().await.expect("migrate");
    let today = chrono::Utc::now().date_naive();
    store
        .seed(SeedOptions {
            scale: Scale::Demo,
            seed: 7,
            today,
        })
        .await
        .expect("seed");
    let mut app = start(backend, &url, settings, store, env).await;
    app.cleanup = cleanup;
    app.owns_database = true;
    app.execute(&format!(
        "UPDATE clubs SET booking_horizon_days = 3650, max_active_bookings = {OPEN_QUOTA}"
    ))
    .await;
    app
}

async fn start(
    backend: Backend,
    url: &str,
    settings: Settings,
    store: Store,
    env: Vec<(String, String)>,
) -> TestApp {
    let tokens = TokenAuthority::new(&settings.auth);
    let app = Application::build_with_store(settings, store)
        .await
        .expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let raw = match backend {
        Backend::Postgres => RawDb::Postgres(PgPool::connect(url).await.unwrap()),
        Backend::Sqlite => RawDb::Sqlite(SqlitePool::connect(url).await.unwrap()),
    };
    TestApp {
        backend,
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        raw,
        today: chrono::Utc::now().date_naive(),
        tokens,
        database: url.to_string(),
        cleanup: None,
        owns_database: false,
        env,
        stop: Some(stop),
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A response: HTTP status, headers and JSON body.
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `data` of the body.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    /// The first error's `extensions.code`, or "" without errors.
    pub fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
    }
    /// The cache outcome of the first entry of `kind` in `extensions.cache`.
    pub fn cache_outcome(&self, kind: &str) -> String {
        self.body["extensions"]["cache"]
            .as_array()
            .and_then(|entries| entries.iter().find(|e| e["kind"] == kind))
            .and_then(|e| e["outcome"].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// SQL statements the request ran.
    pub fn sql_statements(&self) -> u32 {
        self.headers["x-sql-statements"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
    /// Panics with the body when the response has errors.
    pub fn ok(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        self.data()
    }
}

impl TestApp {
    /// Another gateway over the same database (a second replica), with extra environment.
    pub async fn replica(&self, env: &[(&str, &str)]) -> TestApp {
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = settings_for(&self.database, &all);
        let store = Store::connect(&settings).await.expect("connect replica");
        start(self.backend, &self.database, settings, store, all).await
    }

    /// Stops this gateway (its in-flight requests finish).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Flushes every cache entry through the management API (after raw SQL changes).
    pub async fn flush_cache(&self) {
        let token = self.token("admin@demo.padel").await;
        let response = self
            .client
            .post(format!("{}/api/management/cache/flush", self.address))
            .bearer_auth(token)
            .json(&json!({"all": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// GET of a management endpoint as the superuser.
    pub async fn management(&self, path: &str) -> Value {
        let token = self.token("admin@demo.padel").await;
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// The database URL of this app.
    pub fn database_url(&self) -> String {
        self.database.clone()
    }

    /// The Postgres database name of this app.
    pub fn database_name(&self) -> String {
        self.database.rsplit('/').next().unwrap().to_string()
    }

    /// Runs a statement as the Postgres administrator (outside the app's database).
    pub async fn admin(&self, sql: &str) {
        let admin = PgPool::connect(&base_postgres_url()).await.unwrap();
        sqlx::query(sql).execute(&admin).await.expect(sql);
        admin.close().await;
    }

    /// A fresh token for a seeded user.
    pub async fn token(&self, email: &str) -> String {
        let id = self.user_id(email).await;
        self.tokens
            .sign(id, Duration::from_secs(600))
            .expect("tests run with the HS256 secret")
    }

    /// The first weekday at least `days` after today (clubs open on weekdays), as `YYYY-MM-DD`.
    pub fn weekday_after(&self, days: i64) -> String {
        use chrono::Datelike;
        let mut date = self.today + chrono::Duration::days(days);
        while date.weekday().number_from_monday() > 5 {
            date = date.succ_opt().unwrap();
        }
        date.to_string()
    }

    /// A user's id by email.
    pub async fn user_id(&self, email: &str) -> i64 {
        self.scalar_i64(&format!("SELECT id FROM users WHERE email = '{email}'"))
            .await
    }

    /// Signs a token for any subject id (for unknown-user tests).
    pub fn token_for_id(&self, id: i64) -> String {
        self.tokens
            .sign(id, Duration::from_secs(600))
            .expect("tests run with the HS256 secret")
    }

    /// POSTs a GraphQL operation with an optional bearer token.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Runs a statement on the raw database.
    pub async fn execute(&self, sql: &str) {
        match &self.raw {
            RawDb::Postgres(p) => sqlx::query(sql).execute(p).await.map(drop),
            RawDb::Sqlite(p) => sqlx::query(sql).execute(p).await.map(drop),
        }
        .expect(sql);
    }

    /// One integer from the raw database.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        match &self.raw {
            RawDb::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            RawDb::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        }
        .expect(sql)
    }

    /// Text rows (every column cast to text) from the raw database.
    pub async fn text_rows(&self, sql: &str) -> Vec<Vec<String>> {
        use sqlx::Row;
        match &self.raw {
            RawDb::Postgres(p) => sqlx::query(sql).fetch_all(p).await.map(|rows| {
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<String, _>(i)).collect())
                    .collect()
            }),
            RawDb::Sqlite(p) => sqlx::query(sql).fetch_all(p).await.map(|rows| {
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<String, _>(i)).collect())
                    .collect()
            }),
        }
        .expect(sql)
    }

    /// Every reservation of a club, straight from the table.
    pub async fn raw_reservations(&self, club_id: i64) -> Vec<RawReservation> {
        let sql = format!(
            "SELECT id, club_id, court_id, created_by_id, CAST(date AS TEXT) AS date, \
             CAST(start_time AS TEXT) AS start_time, CAST(end_time AS TEXT) AS end_time, status, \
             CAST(ROUND(price * 100) AS BIGINT) AS cents FROM reservations WHERE club_id = {club_id}"
        );
        match &self.raw {
            RawDb::Postgres(p) => sqlx::query_as(&sql).fetch_all(p).await,
            RawDb::Sqlite(p) => sqlx::query_as(&sql).fetch_all(p).await,
        }
        .expect("raw reservations")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
        if !self.owns_database {
            return;
        }
        if let Some(name) = self.cleanup.take() {
            drop_postgres_database(name);
        } else if let Some(path) = self.database.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), so a test
/// can stop and restart it without touching the shared one. Uses the binaries of the installed
/// server (`/usr/lib/postgresql/<version>/bin`, or `pg_config --bindir`); as root, it runs them
/// as the `postgres` user, since PostgreSQL refuses to run as root.
pub struct PrivatePostgres {
    pub port: u16,
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    user: Option<(u32, u32)>,
    child: Option<std::process::Child>,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        use std::os::unix::process::CommandExt;
        let bin = postgres_bindir();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("padel-bff-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = if is_root() {
            let id = |flag: &str| -> u32 {
                let out = std::process::Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id postgres");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("postgres user exists")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            Some((uid, gid))
        } else {
            None
        };
        let mut initdb = std::process::Command::new(bin.join("initdb"));
        initdb
            .args([
                "-D",
                "data",
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        assert!(
            initdb.status().expect("initdb runs").success(),
            "initdb failed"
        );
        let mut server = PrivatePostgres {
            port,
            bin,
            dir,
            user,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join(format!("log-{}", self.port))).ok();
        let mut command = std::process::Command::new(self.bin.join("postgres"));
        command
            .args(["-D", "data", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ])
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null());
        if let Some(log) = log {
            command.stderr(log);
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        self.child = Some(command.spawn().expect("postgres starts"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ready = std::process::Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private postgres did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT): sessions are cut, as when a managed database fails over.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// A URL for `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory of the installed PostgreSQL server binaries (the newest version).
fn postgres_bindir() -> std::path::PathBuf {
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL server binaries (scripts/test.sh installs them)");
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A free port for a server a test stops and starts again on the same port (private Redis or
/// Postgres). Taken below Linux's ephemeral range (32768–60999): a port from there (bind to port
/// 0) can be handed, while its server is down, to a listener another test binds on port 0 (a
/// gateway), which then answers in its place. Never the same port twice in this process, so two
/// tests starting servers at once cannot pick the same one either.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut candidate = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    loop {
        candidate = candidate.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let port = 20_000 + (candidate >> 8) as u16 % 12_000;
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
}
