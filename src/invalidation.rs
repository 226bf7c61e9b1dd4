//! Writes made outside the gateway: tails the Postgres invalidation outbox (migration 0007) and
//! applies its tags to the cache, on every replica.
//!
//! NOTIFY on `bff_invalidate` only wakes the tail; the outbox is the record. So a dropped listener,
//! a restart or a Postgres outage costs latency, never an invalidation: the tail resumes from the
//! position it had applied ([`Cursor`]), which is also kept in Redis for the next start. Only when
//! the outbox has been pruned past that position does the gateway flush everything.
//!
//! Sequences are assigned when a statement runs, rows become visible when it commits: a row may
//! appear after a higher one. The cursor remembers such gaps and reads them again until they fill
//! or [`GAP_TIMEOUT`] passes (a rolled-back statement leaves a gap for good).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{
    cache::Cache,
    config::Settings,
    store::{OutboxRow, Store},
};

/// How long a missing sequence is waited for before it counts as rolled back.
pub const GAP_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows read per statement.
const BATCH: i64 = 1_000;

/// An outbox row holding more tags than this is applied per club instead (`club:ID`, which every
/// club-derived value carries): a bulk load of months of bookings is a few dozen bumps, not
/// tens of thousands.
const MAX_PRECISE_TAGS: usize = 1_000;

/// Where the tail stands: every sequence up to `floor` is applied, and so is everything up to
/// `last` except the `gaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    floor: i64,
    last: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl Cursor {
    /// A cursor that has applied everything up to `seq`.
    pub fn at(seq: i64) -> Cursor {
        Cursor {
            floor: seq,
            last: seq,
            gaps: BTreeMap::new(),
        }
    }

    /// Everything up to here is applied.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// The highest sequence seen.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Sequences below `last` not seen yet, to read again.
    pub fn gaps(&self) -> Vec<i64> {
        self.gaps.keys().copied().collect()
    }

    /// Takes rows read after `last` or for the gaps; returns those not applied yet.
    pub fn take<'a>(&mut self, rows: &'a [OutboxRow], now: Instant) -> Vec<&'a OutboxRow> {
        let mut fresh = Vec::new();
        for row in rows {
            if row.seq > self.last {
                // Bounded by BATCH rows a read and by the identity's step of 1: a gap is a
                // statement that has not committed (or never will).
                for missing in self.last + 1..row.seq {
                    self.gaps.insert(missing, now);
                }
                self.last = row.seq;
                fresh.push(row);
            } else if self.gaps.remove(&row.seq).is_some() {
                fresh.push(row);
            }
        }
        self.settle(now);
        fresh
    }

    /// Gives up gaps older than [`GAP_TIMEOUT`] and moves the floor up to the first gap left.
    pub fn settle(&mut self, now: Instant) {
        self.gaps
            .retain(|_, since| now.duration_since(*since) < GAP_TIMEOUT);
        self.floor = match self.gaps.keys().next() {
            Some(first) => first - 1,
            None => self.last,
        };
    }
}

/// The tags to bump for one outbox row (see [`MAX_PRECISE_TAGS`]).
pub fn tags_to_apply(tags: &[String]) -> Vec<String> {
    if tags.len() <= MAX_PRECISE_TAGS {
        return tags.to_vec();
    }
    let mut coarse: Vec<String> = tags
        .iter()
        .map(|tag| match tag.strip_prefix("club:") {
            Some(rest) => format!("club:{}", rest.split(':').next().unwrap_or(rest)),
            None => tag.clone(),
        })
        .collect();
    coarse.sort_unstable();
    coarse.dedup();
    coarse
}

/// Starts the tail on Postgres (nothing on SQLite). Its position and its listener are taken
/// before this returns when the database answers, so a write made once the gateway is up is
/// never older than the position and its wake-up is never lost; otherwise the tail keeps trying.
pub async fn spawn(store: &Store, cache: &Cache, settings: &Settings) {
    if store.backend() != crate::store::Backend::Postgres {
        return;
    }
    let (store, cache) = (store.clone(), cache.clone());
    let poll = settings.database.outbox_poll_interval;
    let retention = settings.database.outbox_retention;
    let cursor = start_position(&store, &cache).await;
    let listener = match cursor {
        Some(_) => store.invalidation_listener().await.ok().flatten(),
        None => None,
    };
    tokio::spawn(async move { tail(store, cache, cursor, listener, poll, retention).await });
}

async fn tail(
    store: Store,
    cache: Cache,
    cursor: Option<Cursor>,
    mut listener: Option<sqlx::postgres::PgListener>,
    poll: Duration,
    retention: Duration,
) {
    let mut cursor = match cursor {
        Some(cursor) => cursor,
        None => loop {
            tokio::time::sleep(poll).await;
            match start_position(&store, &cache).await {
                Some(cursor) => break cursor,
                None if store.is_closed() => return,
                None => {}
            }
        },
    };
    let mut pruned_at = Instant::now();
    while !store.is_closed() {
        if listener.is_none() {
            listener = match store.invalidation_listener().await {
                Ok(found) => found,
                Err(error) => {
                    tracing::debug!(error = %error, "invalidation listener down; polling the outbox");
                    None
                }
            };
        }
        if let Err(error) = catch_up(&store, &cache, &mut cursor).await {
            tracing::warn!(error = %error, "cannot read the invalidation outbox; retrying");
        }
        if pruned_at.elapsed() >= retention.min(Duration::from_secs(60)) {
            pruned_at = Instant::now();
            match store.prune_outbox(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "pruned the invalidation outbox"),
                Err(error) => {
                    tracing::warn!(error = %error, "cannot prune the invalidation outbox")
                }
            }
        }
        // Woken by a notification, or polled: a lost wake-up only delays.
        match listener.as_mut() {
            Some(l) => match tokio::time::timeout(poll, l.try_recv()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None)) | Ok(Err(_)) => {
                    tracing::warn!("database invalidation channel down; reconnecting, the outbox keeps every change");
                    listener = None;
                }
            },
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// Where to start: the position Redis recorded (so a restart catches up), else the outbox's end
/// (nothing was cached before this process, Redis included). `None` while Postgres is down.
async fn start_position(store: &Store, cache: &Cache) -> Option<Cursor> {
    let bounds = match store.outbox_bounds().await {
        Ok(bounds) => bounds,
        Err(error) => {
            tracing::warn!(error = %error, "cannot read the invalidation outbox yet; retrying");
            return None;
        }
    };
    let Some(recorded) = cache.outbox_position().await else {
        return Some(Cursor::at(bounds.map_or(0, |(_, last)| last)));
    };
    if let Some((first, _)) = bounds {
        if first > recorded + 1 {
            tracing::warn!(
                position = recorded,
                first,
                "the invalidation outbox was pruned past this position: invalidating everything"
            );
            cache.flush_all().await;
            return Some(Cursor::at(first - 1));
        }
    }
    Some(Cursor::at(recorded))
}

/// Applies every row after the cursor and every gap that has committed since.
async fn catch_up(
    store: &Store,
    cache: &Cache,
    cursor: &mut Cursor,
) -> Result<(), crate::error::StoreError> {
    let before = cursor.floor();
    loop {
        let rows = store.outbox_after(cursor.last(), BATCH).await?;
        let full = rows.len() as i64 == BATCH;
        apply(cache, cursor.take(&rows, Instant::now())).await;
        if !full {
            break;
        }
    }
    let gaps = cursor.gaps();
    if !gaps.is_empty() {
        let rows = store.outbox_rows(&gaps).await?;
        apply(cache, cursor.take(&rows, Instant::now())).await;
    }
    cursor.settle(Instant::now());
    if cursor.floor() > before {
        cache.advance_outbox_position(cursor.floor()).await;
    }
    Ok(())
}

async fn apply(cache: &Cache, rows: Vec<&OutboxRow>) {
    for row in rows {
        cache.invalidate(&tags_to_apply(&row.tags)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> OutboxRow {
        OutboxRow {
            seq,
            tags: vec![format!("club:1:slots:{seq}")],
        }
    }

    #[test]
    fn rows_apply_once_and_the_floor_waits_for_a_gap() {
        let now = Instant::now();
        let mut cursor = Cursor::at(10);
        let rows = [row(11), row(13)];
        let fresh: Vec<i64> = cursor.take(&rows, now).iter().map(|r| r.seq).collect();
        assert_eq!(fresh, vec![11, 13]);
        assert_eq!(
            (cursor.floor(), cursor.last(), cursor.gaps()),
            (11, 13, vec![12])
        );
        // Read again (the same rows after a reconnect): nothing twice.
        assert!(cursor.take(&rows, now).is_empty());
        // The gap commits.
        let late = [row(12)];
        assert_eq!(cursor.take(&late, now).len(), 1);
        assert_eq!((cursor.floor(), cursor.gaps()), (13, vec![]));
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up() {
        let now = Instant::now();
        let mut cursor = Cursor::at(0);
        cursor.take(&[row(3)], now);
        assert_eq!(cursor.floor(), 0);
        cursor.settle(now + GAP_TIMEOUT);
        assert_eq!((cursor.floor(), cursor.gaps()), (3, vec![]));
    }

    #[test]
    fn huge_tag_sets_fall_back_to_their_clubs() {
        let tags: Vec<String> = (0..1_500)
            .map(|d| format!("club:{}:slots:{d}", d % 3))
            .chain(["user:7".to_string()])
            .collect();
        assert_eq!(
            tags_to_apply(&tags),
            vec!["club:0", "club:1", "club:2", "user:7"]
        );
        let few = vec!["club:1:day:2026-12-01".to_string()];
        assert_eq!(tags_to_apply(&few), few);
    }
}
