//! The one shared application state, cloned into every handler.

use std::sync::Arc;

use crate::{
    auth::TokenAuthority,
    cache::Cache,
    config::Settings,
    graphql::BffSchema,
    store::Store,
    telemetry::{alerts::Alerts, metrics::Instruments, monitoring::Monitoring},
};

/// The one shared state, behind one `Arc`: axum clones it for every handler and every
/// `from_fn_with_state` middleware of every request, and a clone of the fields themselves was a
/// dozen reference counts (~4 % of a `{ __typename }` request's CPU in a profile).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Shares `state`.
    pub fn new(state: Shared) -> AppState {
        AppState(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Shared state: settings, the store, the cache, the schema, the token authority, telemetry.
pub struct Shared {
    /// Loaded settings.
    pub settings: Arc<Settings>,
    /// The database.
    pub store: Store,
    /// The two-tier cache.
    pub cache: Cache,
    /// The executable schema.
    pub schema: BffSchema,
    /// Documents already parsed and checked (and refused ones), which the pipeline prepares.
    pub documents: Arc<crate::graphql::documents::DocumentCache>,
    /// Verifies bearer tokens.
    pub tokens: TokenAuthority,
    /// Metric instruments (OTLP and `/metrics`).
    pub instruments: Arc<Instruments>,
    /// The registry `/metrics` renders.
    pub registry: prometheus::Registry,
    /// Safelist mode: the only operations allowed, when configured.
    pub safelist: Option<Arc<crate::safelist::Safelist>>,
    /// Token buckets per user and client IP.
    pub rate_limiter: Arc<crate::ratelimit::RateLimiter>,
    /// Shared live topics: one read and one rendering per change for all their subscribers.
    pub topics: Arc<crate::graphql::live::Topics>,
    /// Turns true when the gateway shuts down: live subscriptions complete, sockets close.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Live sockets open (upgraded connections, which the server loop no longer counts):
    /// shutdown waits for them to close.
    pub live_sockets: tokio::sync::watch::Sender<usize>,
    /// Live sockets per user and client address (`subscriptions.max_connections_per_*`).
    pub connections: Arc<crate::ratelimit::Connections>,
    /// Per-operation statistics for the monitoring API.
    pub monitoring: Arc<Monitoring>,
    /// The alert history of the monitoring page.
    pub alerts: Arc<Alerts>,
    /// The demo owner's id when running on demo data in development (GraphiQL pre-fills a token).
    pub demo_owner_id: Option<i64>,
}
