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
