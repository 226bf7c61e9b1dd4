//! The schema: applying the backend's migrations, and listening to the channel its invalidation
//! triggers publish on.

use super::{Db, Store};
use crate::error::StoreError;

impl Store {
    /// Applies pending migrations of the backend's migration set.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                // On a connection of its own without the request statement_timeout: a backfill
                // (migration 0004 sums 1.9 M reservations in ~25 s) must not be cancelled. The
                // connection is closed afterwards, never returned to the pool.
                use sqlx::Connection;
                let mut conn = pool.acquire().await?.detach();
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut conn)
                    .await?;
                let result = sqlx::migrate!("migrations/postgres").run(&mut conn).await;
                let _ = conn.close().await;
                result?
            }
            Db::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    /// On Postgres, a listener on the channel the outbox triggers send their wake-ups on
    /// (migration 0007: a wake-up for the outbox tail, `crate::invalidation`); `None` on SQLite.
    pub async fn invalidation_listener(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen("bff_invalidate").await?;
                Ok(Some(listener))
            }
            Db::Sqlite(_) => Ok(None),
        }
    }
}

/// Which of the embedded migrations the database has applied.
#[derive(Debug, Clone)]
pub struct MigrationStatus {
    /// Migrations this binary carries.
    pub embedded: usize,
    /// Of which applied successfully with the same checksum.
    pub applied: usize,
    /// Versions not applied (or failed), in order.
    pub pending: Vec<i64>,
    /// Versions applied with another checksum than this binary's (edited after they ran).
    pub changed: Vec<i64>,
    /// Versions applied that this binary does not know (a newer binary migrated).
    pub unknown: Vec<i64>,
}

const APPLIED_MIGRATIONS: &str = "SELECT version, success, checksum FROM _sqlx_migrations";

/// A row of `_sqlx_migrations`: version, success, checksum.
type Applied = (i64, bool, Vec<u8>);

impl Store {
    /// Compares the database's applied migrations with the binary's (`padel-bff doctor`).
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let (migrator, rows): (sqlx::migrate::Migrator, Result<Vec<Applied>, sqlx::Error>) =
            match &self.db {
                Db::Postgres(pool) => (
                    sqlx::migrate!("migrations/postgres"),
                    sqlx::query_as(APPLIED_MIGRATIONS).fetch_all(pool).await,
                ),
                Db::Sqlite(pool) => (
                    sqlx::migrate!("migrations/sqlite"),
                    sqlx::query_as(APPLIED_MIGRATIONS).fetch_all(pool).await,
                ),
            };
        // A database never migrated has no table yet: every migration is pending.
        let rows = match rows {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut status = MigrationStatus {
            embedded: 0,
            applied: 0,
            pending: Vec::new(),
            changed: Vec::new(),
            unknown: Vec::new(),
        };
        for migration in migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
        {
            status.embedded += 1;
            match rows.iter().find(|(v, _, _)| *v == migration.version) {
                Some((_, true, checksum)) if checksum[..] == migration.checksum[..] => {
                    status.applied += 1
                }
                Some((_, true, _)) => status.changed.push(migration.version),
                _ => status.pending.push(migration.version),
            }
        }
        status.unknown = rows
            .iter()
            .map(|(v, _, _)| *v)
            .filter(|v| !migrator.iter().any(|m| m.version == *v))
            .collect();
        Ok(status)
    }

    /// The database's clock (`padel-bff doctor` compares it with ours); `None` on SQLite, whose
    /// clock is this process's.
    pub async fn database_now(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => Ok(Some(
                sqlx::query_scalar("SELECT now()").fetch_one(pool).await?,
            )),
            Db::Sqlite(_) => Ok(None),
        }
    }
}
