//! The invalidation outbox (Postgres, migration 0007): the cache tags of every write to a cached
//! table, from any client, in sequence order. SQLite has no outbox (no second writer to speak of):
//! every call answers as if it were empty.

use std::time::Duration;

use super::{Db, Store};
use crate::error::StoreError;

/// One outbox row: a statement's distinct cache tags.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    /// Position in the outbox (an identity: increasing, with gaps for rolled-back statements).
    pub seq: i64,
    /// The tags the statement made stale.
    pub tags: Vec<String>,
}

const AFTER: &str =
    "SELECT seq, tags FROM bff_invalidation_outbox WHERE seq > $1 ORDER BY seq LIMIT $2";
const BY_SEQ: &str =
    "SELECT seq, tags FROM bff_invalidation_outbox WHERE seq = ANY($1) ORDER BY seq";
const BOUNDS: &str =
    "SELECT CAST(MIN(seq) AS BIGINT), CAST(MAX(seq) AS BIGINT) FROM bff_invalidation_outbox";
const MISSING: &str = "SELECT g FROM generate_series(GREATEST(1, $1 - 10000), $1) AS g \
     WHERE NOT EXISTS (SELECT 1 FROM bff_invalidation_outbox o WHERE o.seq = g) ORDER BY g";
const HORIZON: &str = "SELECT CAST(CAST(pg_snapshot_xmin(s) AS TEXT) AS BIGINT), \
     CAST(CAST(pg_snapshot_xmax(s) AS TEXT) AS BIGINT) FROM pg_current_snapshot() AS s";
const PRUNE: &str =
    "DELETE FROM bff_invalidation_outbox WHERE created_at < now() - make_interval(secs => $1)";

impl Store {
    /// Up to `limit` rows after `seq`, in order.
    pub async fn outbox_after(&self, seq: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        Ok(self
            .observed(
                AFTER,
                sqlx::query_as(AFTER).bind(seq).bind(limit).fetch_all(pool),
            )
            .await?)
    }

    /// The rows of these sequences that exist now (gaps that have since committed).
    pub async fn outbox_rows(&self, seqs: &[i64]) -> Result<Vec<OutboxRow>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .observed(BY_SEQ, sqlx::query_as(BY_SEQ).bind(seqs).fetch_all(pool))
            .await?)
    }

    /// The first and last sequence held (`None` when empty or on SQLite).
    pub async fn outbox_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(None);
        };
        let (first, last): (Option<i64>, Option<i64>) = self
            .observed(BOUNDS, async {
                sqlx::query_as(BOUNDS).fetch_one(pool).await.map(Some)
            })
            .await?
            .unwrap_or((None, None));
        Ok(first.zip(last))
    }

    /// Sequences among the 10 000 up to `last` with no visible row: rolled back, pruned, or not
    /// committed yet (below the first visible row too: a transaction still open).
    pub async fn outbox_missing(&self, last: i64) -> Result<Vec<i64>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(Vec::new());
        };
        if last <= 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .observed(
                MISSING,
                sqlx::query_scalar(MISSING).bind(last).fetch_all(pool),
            )
            .await?)
    }

    /// The transaction horizon now: (the oldest transaction still running, the next id to be
    /// assigned), from `pg_current_snapshot()`. Every transaction below the first has ended.
    pub async fn outbox_horizon(&self) -> Result<(i64, i64), StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok((0, 0));
        };
        let horizon: Option<(i64, i64)> = self
            .observed(HORIZON, async {
                sqlx::query_as(HORIZON).fetch_one(pool).await.map(Some)
            })
            .await?;
        Ok(horizon.unwrap_or((0, 0)))
    }

    /// Deletes rows older than `retention`; how many.
    pub async fn prune_outbox(&self, retention: Duration) -> Result<u64, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(0);
        };
        let done = self
            .observed(PRUNE, async {
                sqlx::query(PRUNE)
                    .bind(retention.as_secs_f64())
                    .execute(pool)
                    .await
                    .map(|r| Some(r.rows_affected()))
            })
            .await?;
        Ok(done.unwrap_or(0))
    }
}
