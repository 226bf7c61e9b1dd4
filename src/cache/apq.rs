//! Automatic persisted queries (Apollo APQ): documents by SHA-256, shared by every replica
//! through Redis. What a registration may hold is bounded everywhere: bytes of text in each
//! process (an LRU of its own, so registrations never push data out of L1), registrations in
//! Redis (a sorted index drops the oldest beyond `cache.persisted_query_max_count`), and a TTL.
//! Only signed-in callers with a valid document register (`pipeline`).

use std::sync::Arc;

use super::Cache;
use crate::config::CacheSettings;

/// Persisted documents by SHA-256: the text, and when it expires on the cache's clock.
pub(super) type LocalStore = moka::sync::Cache<String, (Arc<str>, u64)>;

/// The in-process store of persisted documents, weighed by text length. Moka's TTL bounds what
/// it holds; whether a document is still served is decided on the cache's clock.
pub(super) fn local_store(settings: &CacheSettings) -> LocalStore {
    moka::sync::Cache::builder()
        .max_capacity(settings.persisted_query_l1_max_bytes)
        .weigher(|key: &String, (text, _): &(Arc<str>, u64)| {
            u32::try_from(key.len() + text.len()).unwrap_or(u32::MAX)
        })
        .time_to_live(settings.persisted_query_ttl)
        .build()
}

impl Cache {
    /// The text of a persisted query by its SHA-256 (lowercase hex), from this process or Redis.
    pub async fn persisted_query(&self, sha256: &str) -> Option<String> {
        if let Some((text, until_ms)) = self.inner.persisted.get(sha256) {
            if self.inner.clock.now_ms() < until_ms {
                return Some(text.to_string());
            }
        }
        let text = self.shared()?.persisted_query(sha256).await?;
        self.keep_persisted(sha256, &text);
        Some(text)
    }

    /// Registers a persisted query's text under its SHA-256, here and in Redis (every replica);
    /// returns once Redis has it (or is skipped).
    pub async fn register_persisted_query(&self, sha256: &str, text: &str) {
        self.keep_persisted(sha256, text);
        if let Some(shared) = self.shared() {
            let settings = &self.inner.settings;
            shared
                .register_persisted_query(
                    sha256,
                    text,
                    settings.persisted_query_ttl,
                    settings.persisted_query_max_count,
                )
                .await;
        }
    }

    fn keep_persisted(&self, sha256: &str, text: &str) {
        let ttl_ms = self.inner.settings.persisted_query_ttl.as_millis() as u64;
        let until_ms = self.inner.clock.now_ms().saturating_add(ttl_ms);
        self.inner
            .persisted
            .insert(sha256.to_string(), (Arc::from(text), until_ms));
    }

    /// Persisted documents held in this process, and their weight in bytes.
    pub fn persisted_usage(&self) -> (u64, u64) {
        self.inner.persisted.run_pending_tasks();
        (
            self.inner.persisted.entry_count(),
            self.inner.persisted.weighted_size(),
        )
    }
}
