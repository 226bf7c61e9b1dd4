//! Writes made outside the gateway: tails the Postgres invalidation outbox (migration 0007) and
//! applies its tags to the cache, on every replica.
//!
//! NOTIFY on `bff_invalidate` only wakes the tail; the outbox is the record. So a dropped listener,
//! a restart or a Postgres outage costs latency, never an invalidation: the tail resumes from the
//! position it had applied ([`Cursor`]), which is also kept in Redis for the next start. Only when
//! the outbox has been pruned past that position does the gateway flush everything.
//!
//! Sequences are assigned when a statement runs, rows become visible when it commits: a row may
//! appear after a higher one. The cursor remembers such gaps with a transaction horizon (the next
//! transaction id of a snapshot taken after the gap was seen; whoever owns the gap started before
//! it) and reads them again until they fill, or until every transaction below the horizon has
//! ended (a rolled-back statement leaves a gap for good). So a transaction open for an hour is
//! waited for, however long it takes.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{
    cache::{Cache, Recorded},
    config::Settings,
    store::{OutboxRow, Store},
};

/// At most this many missing sequences are waited for at once (an identity moved by `setval`, or a
/// job that rolled back thousands of statements); beyond it, missing ones are given up at once.
const MAX_GAPS: usize = 10_000;

/// Rows read per statement.
const BATCH: i64 = 1_000;

/// An outbox row holding more tags than this is applied per club instead (`club:ID`, which every
/// club-derived value carries): a bulk load of months of bookings is a few dozen bumps, not
/// tens of thousands.
const MAX_PRECISE_TAGS: usize = 1_000;

/// Where the tail stands: every sequence up to `floor` is applied, and so is everything up to
/// `last` except the `gaps` (each with its transaction horizon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    floor: i64,
    last: i64,
    gaps: BTreeMap<i64, i64>,
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

    /// A cursor at `last` still waiting for `missing` (sequences below it not visible yet).
    pub fn waiting(last: i64, missing: &[i64], horizon: i64) -> Cursor {
        let mut cursor = Cursor::at(last);
        for seq in missing.iter().take(MAX_GAPS) {
            cursor.gaps.insert(*seq, horizon);
        }
        cursor.settle(i64::MIN);
        cursor
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

    /// Whether taking `rows` (read after `last`, in order) would leave a gap, so that the caller
    /// needs a horizon for it.
    pub fn reveals_gap(&self, rows: &[OutboxRow]) -> bool {
        let mut next = self.last + 1;
        rows.iter().filter(|row| row.seq > self.last).any(|row| {
            let skipped = row.seq != next;
            next = row.seq + 1;
            skipped
        })
    }

    /// Takes rows read after `last` or for the gaps; returns those not applied yet. `horizon` is
    /// the next transaction id of a snapshot taken after the rows were read.
    pub fn take<'a>(&mut self, rows: &'a [OutboxRow], horizon: i64) -> Vec<&'a OutboxRow> {
        let mut fresh = Vec::new();
        for row in rows {
            if row.seq > self.last {
                let room = MAX_GAPS.saturating_sub(self.gaps.len()) as i64;
                let missing = (row.seq - self.last - 1).max(0);
                if missing > room {
                    tracing::warn!(
                        missing,
                        "outbox sequence jumped; not waiting for every missing one"
                    );
                }
                // The nearest ones first: after a jump, ordinary concurrent gaps still fit.
                for seq in (self.last + 1..row.seq).rev().take(room as usize) {
                    self.gaps.insert(seq, horizon);
                }
                self.last = row.seq;
                fresh.push(row);
            } else if self.gaps.remove(&row.seq).is_some() {
                fresh.push(row);
            }
        }
        self.settle(i64::MIN);
        fresh
    }

    /// Gives up the gaps whose horizon `oldest_running` (the oldest transaction still running, of
    /// a snapshot taken before the last read of the gaps) has passed, and moves the floor up to
    /// the first gap left.
    pub fn settle(&mut self, oldest_running: i64) {
        self.gaps.retain(|_, horizon| *horizon > oldest_running);
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

/// Where to start: the position Redis recorded (so a restart catches up), else the outbox's end,
/// still waiting for the sequences below it that are not visible yet (their transactions may
/// commit later). When Redis cannot say, everything is invalidated once (the bump is replayed
/// when Redis is back), since writes may have been made while no gateway ran. `None` while
/// Postgres is down.
async fn start_position(store: &Store, cache: &Cache) -> Option<Cursor> {
    let at_end = || async {
        let last = store.outbox_bounds().await?.map_or(0, |(_, last)| last);
        let missing = store.outbox_missing(last).await?;
        let (_, horizon) = store.outbox_horizon().await?;
        Ok::<_, crate::error::StoreError>(Cursor::waiting(last, &missing, horizon))
    };
    let result = match cache.outbox_position().await {
        Recorded::Unknown => {
            tracing::warn!("the shared cache cannot say which outbox rows were applied: invalidating everything");
            cache.flush_all().await;
            at_end().await
        }
        Recorded::Never => at_end().await,
        Recorded::At(recorded) => match store.outbox_bounds().await {
            Ok(Some((first, _))) if first > recorded + 1 => {
                tracing::warn!(
                    position = recorded,
                    first,
                    "the invalidation outbox was pruned past this position: invalidating everything"
                );
                // Everything committed so far is covered by the flush; what is still open is
                // waited for from the end.
                cache.flush_all().await;
                at_end().await
            }
            Ok(_) => Ok(Cursor::at(recorded)),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(cursor) => Some(cursor),
        Err(error) => {
            tracing::warn!(error = %error, "cannot read the invalidation outbox yet; retrying");
            None
        }
    }
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
        // After the read: whoever owns a gap it shows got its sequence, and so its transaction
        // id, before this snapshot. Contiguous rows (the usual case) need none.
        let horizon = if cursor.reveals_gap(&rows) {
            store.outbox_horizon().await?.1
        } else {
            i64::MAX
        };
        apply(cache, cursor.take(&rows, horizon)).await;
        if !full {
            break;
        }
    }
    let gaps = cursor.gaps();
    if !gaps.is_empty() {
        // Before the read: a gap whose owners had all ended by then is either read now or never.
        let (oldest_running, horizon) = store.outbox_horizon().await?;
        let rows = store.outbox_rows(&gaps).await?;
        apply(cache, cursor.take(&rows, horizon)).await;
        cursor.settle(oldest_running);
    }
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
        let mut cursor = Cursor::at(10);
        let rows = [row(11), row(13)];
        let fresh: Vec<i64> = cursor.take(&rows, 500).iter().map(|r| r.seq).collect();
        assert_eq!(fresh, vec![11, 13]);
        assert_eq!(
            (cursor.floor(), cursor.last(), cursor.gaps()),
            (11, 13, vec![12])
        );
        // Read again (the same rows after a reconnect): nothing twice.
        assert!(cursor.take(&rows, 501).is_empty());
        // Transactions below the horizon still run: the gap is kept.
        cursor.settle(499);
        assert_eq!(cursor.gaps(), vec![12]);
        // The gap commits.
        let late = [row(12)];
        assert_eq!(cursor.take(&late, 502).len(), 1);
        assert_eq!((cursor.floor(), cursor.gaps()), (13, vec![]));
    }

    #[test]
    fn only_rows_that_skip_a_sequence_reveal_a_gap() {
        let cursor = Cursor::at(10);
        assert!(!cursor.reveals_gap(&[]));
        assert!(!cursor.reveals_gap(&[row(9), row(11), row(12)]));
        assert!(cursor.reveals_gap(&[row(12)]));
        assert!(cursor.reveals_gap(&[row(11), row(13)]));
    }

    #[test]
    fn a_gap_is_given_up_only_when_every_transaction_that_could_own_it_has_ended() {
        let mut cursor = Cursor::at(0);
        cursor.take(&[row(3)], 700);
        assert_eq!((cursor.floor(), cursor.gaps()), (0, vec![1, 2]));
        // However long it takes: an hour-long transaction keeps the oldest running id below 700.
        cursor.settle(650);
        assert_eq!(cursor.floor(), 0);
        cursor.settle(700);
        assert_eq!((cursor.floor(), cursor.gaps()), (3, vec![]));
    }

    #[test]
    fn a_start_waits_for_what_is_missing_below_the_end_and_gaps_are_bounded() {
        let cursor = Cursor::waiting(20, &[17, 19], 900);
        assert_eq!(
            (cursor.floor(), cursor.last(), cursor.gaps()),
            (16, 20, vec![17, 19])
        );
        let mut cursor = Cursor::at(0);
        cursor.take(&[row(1_000_000)], 1);
        assert_eq!(cursor.gaps().len(), MAX_GAPS);
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
