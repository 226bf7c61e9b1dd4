//! The in-process gateway: a real gateway on a free port over a fresh database (Postgres or
//! SQLite) seeded with demo data, a real HTTP client, and raw SQL access for independent checks.

use std::time::Duration;

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

use super::{
    create_postgres_database, drop_postgres_database, eventually, postgres::base_postgres_url,
    unique_database_name,
};

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

/// Every demo user (`seed --scale demo`): every role, both organizations.
pub const DEMO_USERS: [&str; 10] = [
    "admin@demo.padel",
    "owner@demo.padel",
    "orgadmin@demo.padel",
    "manager@demo.padel",
    "staff@demo.padel",
    "player@demo.padel",
    "member@demo.padel",
    "owner2@demo.padel",
    "manager2@demo.padel",
    "player2@demo.padel",
];

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
    /// The gateway's clock (cache freshness, the Redis breaker, local rate-limit refills):
    /// advance it instead of sleeping through a TTL.
    pub clock: padel_bff::clock::Clock,
    tokens: TokenAuthority,
    /// The HS256 secret the gateway verifies with (for tests that forge tokens on purpose).
    jwt_secret: String,
    database: String,
    cleanup: Option<String>,
    owns_database: bool,
    env: Vec<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The gateway's run, which ends once it has shut down.
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The booking quota every test club starts with: none to speak of (see `spawn_app_with`).
pub const OPEN_QUOTA: i64 = 1_000_000;
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
    // Before the gateway starts: a write made after it would reach its cache through the
    // outbox a moment later, and could invalidate what a test's first request cached.
    let open_rules =
        format!("UPDATE clubs SET booking_horizon_days = 3650, max_active_bookings = {OPEN_QUOTA}");
    match backend {
        Backend::Postgres => {
            let pool = PgPool::connect(&url).await.unwrap();
            sqlx::query(&open_rules).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = SqlitePool::connect(&url).await.unwrap();
            sqlx::query(&open_rules).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let mut app = start(backend, &url, settings, store, env).await;
    app.cleanup = cleanup;
    app.owns_database = true;
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
    let jwt_secret = settings.auth.jwt_secret.clone();
    let app = Application::build_with_store(settings, store)
        .await
        .expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let clock = app.state().cache.clock().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = app.run_until_stopped(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        let _ = run.await;
    });
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
        clock,
        tokens,
        jwt_secret,
        database: url.to_string(),
        cleanup: None,
        owns_database: false,
        env,
        stop: Some(stop),
        server: Some(server),
    }
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

    /// Stops the gateway (as SIGTERM does) and waits up to `within` for it to have shut down;
    /// whether it did.
    pub async fn stop_and_wait(&mut self, within: Duration) -> bool {
        self.stop();
        match self.server.take() {
            Some(server) => tokio::time::timeout(within, server).await.is_ok(),
            None => true,
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

    /// The gateway's `GET /metrics` text (asserting it answered 200).
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/metrics");
        response.text().await.unwrap()
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

    /// One counter of a cache kind's statistics (`/api/management/cache/status`), e.g.
    /// `("response", "l1Hits")` or `("courtAvailability", "misses")`.
    pub async fn cache_stat(&self, kind: &str, stat: &str) -> u64 {
        let status = self.management("/api/management/cache/status").await;
        status["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == kind)
            .and_then(|k| k["stats"][stat].as_u64())
            .unwrap_or_else(|| panic!("no {kind}.{stat} in {status}"))
    }

    /// A user's id by email.
    pub async fn user_id(&self, email: &str) -> i64 {
        self.scalar_i64(&format!("SELECT id FROM users WHERE email = '{email}'"))
            .await
    }

    /// The HS256 secret this gateway verifies with: only for tokens a test forges on purpose
    /// (expired, an exact claim set); every other token comes from [`TestApp::token`].
    pub fn jwt_secret(&self) -> &str {
        &self.jwt_secret
    }

    /// A user's token that expires after `ttl` (for expiry tests).
    pub async fn token_for(&self, email: &str, ttl: Duration) -> String {
        let id = self.user_id(email).await;
        self.tokens
            .sign(id, ttl)
            .expect("tests run with the HS256 secret")
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

/// Polls until the gateway's L1 is serving (it waits for the invalidation channel).
pub async fn wait_for_l1(app: &TestApp) {
    eventually(
        Duration::from_secs(15),
        "L1 never became active",
        || async {
            let status = app.management("/api/management/cache/status").await;
            if status["l1"]["active"] == true {
                Ok(())
            } else {
                Err(status["l1"].clone())
            }
        },
    )
    .await
}

/// Whether a `courtAvailability` reply lists `start` on `court` as available.
pub fn slot_free(reply: &Reply, court: &str, start: &str) -> bool {
    reply.data()["courtAvailability"]["courts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["court"]["id"] == court)
        .and_then(|c| {
            c["slots"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["start"] == start)
        })
        .map(|s| s["available"] == true)
        .expect("slot listed")
}
