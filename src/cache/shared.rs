//! The seam between the cache and the tier shared by every replica (Redis, `redis_tier`): what
//! the cache asks of that tier ([`SharedTier`]), and what the tier tells the cache
//! ([`TierEvents`]). Neither side reaches into the other's state.

use std::{sync::Arc, time::Duration};

use super::entry::Entry;

/// What the cache needs from the shared tier. Every call may be skipped (a slow, dead or frozen
/// tier answers `None` at once): the cache then serves from L1 and the database.
#[async_trait::async_trait]
pub(crate) trait SharedTier: Send + Sync {
    /// The entry under `key` (if any) and the current generations of `tags`, in one round trip.
    async fn get(&self, key: &str, tags: &[String]) -> Option<(Option<Entry>, Vec<u64>)>;

    /// Stores `entry` until it is gone, without making the caller wait.
    fn put(&self, key: String, entry: Arc<Entry>);

    /// Increments the generations of `tags` and publishes them to every replica; `None` when
    /// skipped, and then the tier replays the bump once it is back.
    async fn bump(&self, tags: &[String]) -> Option<Vec<u64>>;

    /// A persisted document by SHA-256.
    async fn persisted_query(&self, sha256: &str) -> Option<String>;

    /// Stores a persisted document for `ttl`, keeping at most `max_count` of them.
    async fn register_persisted_query(
        &self,
        sha256: &str,
        text: &str,
        ttl: Duration,
        max_count: u64,
    );

    /// The invalidation outbox position every replica has applied up to (issue 16): `Some(None)`
    /// when never recorded, `None` when skipped (the tier did not answer).
    async fn outbox_position(&self) -> Option<Option<i64>>;

    /// Records that every outbox row up to `seq` is applied; never moves the position back.
    async fn advance_outbox_position(&self, seq: i64);

    /// Whether the tier is usable, and why not.
    fn health(&self) -> Result<(), String>;
}

/// What the shared tier tells the cache (implemented by the channel state, `generations`).
pub(crate) trait TierEvents: Send + Sync {
    /// The tier answers again after an outage: invalidations may have been missed.
    fn recovered(&self);
    /// The invalidation channel is (re)subscribed.
    fn channel_up(&self);
    /// The invalidation channel is lost.
    fn channel_down(&self);
    /// Another replica published these generations.
    fn published(&self, tags: &[String], generations: &[u64]);
}
