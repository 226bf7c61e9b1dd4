//! The stored entry: its format version, its encoding (postcard, the same bytes in L1 and
//! Redis), its weight in L1, and when it is fresh, stale or gone.

use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::response::StoredResponse;

/// Bump when the encoded shape of any cached value changes: new code then never reads old bytes.
pub const CACHE_FORMAT: u32 = 1;

/// A stored value with its freshness and the generations of the tags it was derived from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) fresh_until_ms: u64,
    pub(super) stale_until_ms: u64,
    pub(super) tags: Vec<String>,
    pub(super) generations: Vec<u64>,
    pub(super) value: Vec<u8>,
    /// A whole response, kept decoded (in-process only, never encoded): a hit shares it instead
    /// of decoding kilobytes of JSON bytes again.
    #[serde(skip)]
    pub(super) response: Option<Arc<StoredResponse>>,
}

impl Entry {
    /// Bytes it holds in L1, as moka weighs it.
    pub(super) fn weight(&self, key: &str) -> u32 {
        let tags: usize = self.tags.iter().map(String::len).sum();
        let response = self.response.as_ref().map_or(0, |r| {
            r.body.len() + r.operation.len() + r.text.len() + 64 * r.requirements.len()
        });
        u32::try_from(
            key.len() + self.value.len() + response + tags + 8 * self.generations.len() + 64,
        )
        .unwrap_or(u32::MAX)
    }

    /// Still within its TTL at `now_ms`.
    pub(super) fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }

    /// Past every window (TTL and both stale windows) at `now_ms`: never served again.
    pub(super) fn is_gone(&self, now_ms: u64) -> bool {
        now_ms >= self.stale_until_ms
    }

    /// Within `window` past its TTL at `now_ms` (a stale window; 0 is off).
    pub(super) fn within(&self, window_ms: u64, now_ms: u64) -> bool {
        window_ms > 0 && now_ms < self.fresh_until_ms + window_ms
    }

    /// The entry as Redis stores it.
    pub(super) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("entries serialize")
    }

    /// An entry read from Redis; `None` when the bytes are not one.
    pub(super) fn decode(bytes: &[u8]) -> Option<Entry> {
        postcard::from_bytes(bytes).ok()
    }
}

/// Encodes a value compactly (postcard: serde, varint integers, no field names).
pub(super) fn encode<V: Serialize>(value: &V) -> Vec<u8> {
    postcard::to_allocvec(value).expect("cache values serialize")
}

/// Decodes a value [`encode`] wrote; `None` when the bytes hold something else.
pub(super) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Option<V> {
    postcard::from_bytes(bytes).ok()
}
