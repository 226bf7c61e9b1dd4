//! All SQL lives here. One [`Store`] runs on PostgreSQL (production) or embedded SQLite (the
//! zero-setup default); most statements are shared text, the rest differ by dialect only.
//! Every statement is reported to the request's [`StatementObserver`] (which counts it, so
//! budgets can be tested, and flags repeated shapes as suspected N+1), inside a span and timed.
//!
//! By concern: `observed` (what every statement goes through), `directory` (users, clubs,
//! courts), `reservations`, `dashboard`, `migrate`, `outbox` (the invalidation outbox), `indexes` (database monitoring), `seed`; `queries` holds the statement text and
//! `models` the rows.
//!
//! Overlapping bookings are refused by the database: `reservations_no_overlap`, an exclusion
//! constraint (Postgres) or triggers (SQLite) in `migrations/*/0001_schema.sql`. The insert maps
//! it via `StoreError::from_sqlx` (src/error.rs) to [`StoreError::Overlap`], answered `CONFLICT`.

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    pool::PoolOptions,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Connection, Database, PgPool, SqlitePool,
};

pub use models::*;
pub use observed::StatementObserver;
pub use outbox::OutboxRow;

use crate::{config::Settings, error::StoreError, telemetry::metrics::Instruments};

/// Which database engine a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// Embedded SQLite.
    Sqlite,
}

#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Handle to the database; cheap to clone. A request gets its own copy that counts statements.
#[derive(Clone)]
pub struct Store {
    db: Db,
    observer: Option<Arc<dyn StatementObserver>>,
    instruments: Option<Arc<Instruments>>,
    in_batch: bool,
}

// The two macros come before the submodules, which use them.

/// Runs one statement: `$body` with `$pool` bound to whichever pool the store has, counted in the
/// request, inside a `db` span, timed into `db.client.operation.duration`.
macro_rules! on_pool {
    ($store:expr, $sql:expr, |$pool:ident| $body:expr) => {{
        let sql: &'static str = $sql;
        $store
            .observed(sql, async {
                match &$store.db {
                    Db::Postgres($pool) => $body,
                    Db::Sqlite($pool) => $body,
                }
            })
            .await
    }};
}

/// Picks the statement text of the store's dialect.
macro_rules! dialect {
    ($store:expr, $pg:expr, $sqlite:expr) => {
        match &$store.db {
            Db::Postgres(_) => $pg,
            Db::Sqlite(_) => $sqlite,
        }
    };
}

mod dashboard;
mod directory;
pub mod indexes;
mod migrate;
pub use migrate::MigrationStatus;
mod models;
mod observed;
mod outbox;
mod queries;
mod reservations;
pub mod seed;

/// A connection idle at least this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Pings a pooled connection before handing it out only when it sat idle for
/// [`PING_IDLE_AFTER`] or more. sqlx pings on every acquire by default, and again on every release
/// (that one cannot be turned off): a hot connection then made three round trips per statement,
/// and the acquire ping sits on the request's path (13 % of the gateway's CPU in a profile of
/// bookings, docs/performance.md "Run 17"). The release ping already proved a connection alive
/// when it went idle; one idle for less than a second is taken as it is, and a statement on a
/// connection that died meanwhile fails as any statement cut by the database does
/// (`SERVICE_UNAVAILABLE`), and the connection is dropped.
fn ping_when_idle<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

impl Store {
    /// Connects to the configured database (creating the embedded SQLite file when needed).
    pub async fn connect(settings: &Settings) -> Result<Store, StoreError> {
        Self::connect_url(&settings.database_url(), settings).await
    }

    /// Connects to `url` with the pool settings of `settings`.
    pub async fn connect_url(url: &str, settings: &Settings) -> Result<Store, StoreError> {
        let db = &settings.database;
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(parent) = options.get_filename().parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                }
            }
            Db::Sqlite(
                ping_when_idle(SqlitePoolOptions::new())
                    .max_connections(db.max_connections)
                    .acquire_timeout(db.acquire_timeout)
                    .connect_with(options)
                    .await?,
            )
        } else {
            let timeout_ms = db.statement_timeout.as_millis().to_string();
            // No parallel workers: the gateway's statements read a few hundred rows, and starting
            // workers (~2–5 ms each) cost more than they save. Postgres chose a Parallel Append for
            // the dashboard's five groupings: 9 ms against 2 ms without (docs/performance.md).
            let options = PgConnectOptions::from_str(url)?
                .application_name("padel-bff")
                .options([
                    ("statement_timeout", timeout_ms.as_str()),
                    ("max_parallel_workers_per_gather", "0"),
                ]);
            Db::Postgres(
                ping_when_idle(PgPoolOptions::new())
                    .max_connections(db.max_connections)
                    .acquire_timeout(db.acquire_timeout)
                    .connect_with(options)
                    .await?,
            )
        };
        Ok(Store {
            db,
            observer: None,
            instruments: None,
            in_batch: false,
        })
    }

    /// A copy whose statements are counted by `observer`.
    pub fn for_request(&self, observer: Arc<dyn StatementObserver>) -> Store {
        Store {
            observer: Some(observer),
            ..self.clone()
        }
    }

    /// A copy that records statement durations into `instruments`.
    pub fn with_instruments(&self, instruments: Arc<Instruments>) -> Store {
        Store {
            instruments: Some(instruments),
            ..self.clone()
        }
    }

    /// A copy for a DataLoader batch: its statements are the batching, not an N+1.
    pub fn in_batch(&self) -> Store {
        Store {
            in_batch: true,
            ..self.clone()
        }
    }
    /// Connections in the pool: (open, idle).
    pub fn pool_usage(&self) -> (u64, u64) {
        match &self.db {
            Db::Postgres(pool) => (u64::from(pool.size()), pool.num_idle() as u64),
            Db::Sqlite(pool) => (u64::from(pool.size()), pool.num_idle() as u64),
        }
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Whether the pool was closed (the application is stopping).
    pub fn is_closed(&self) -> bool {
        match &self.db {
            Db::Postgres(pool) => pool.is_closed(),
            Db::Sqlite(pool) => pool.is_closed(),
        }
    }

    /// Cheap round trip for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, "SELECT 1", |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}
