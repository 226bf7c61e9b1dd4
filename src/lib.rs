//! padel-bff: a GraphQL backend-for-frontend for padel-club booking.
//!
//! Map of the crate, in the order a request meets it:
//! - [`config`]: typed, layered settings (file → profile file → environment).
//! - [`startup`]: builds the [`startup::Application`] (database, router, listener) and serves it.
//! - [`http`]: the axum router: `/graphql`, GraphiQL, health and readiness.
//! - [`auth`]: bearer-token verification and the signed-in principal.
//! - [`cache`]: the two-tier cache (moka in process, Redis between replicas) and invalidation.
//! - [`ratelimit`]: token buckets per user and client IP, shared through Redis.
//! - [`clock`]: the gateway's own time (cache freshness, the Redis breaker, local refills);
//!   tests advance it instead of sleeping.
//! - [`safelist`]: safelist mode, from a persisted-operation manifest.
//! - [`reads`]: the hot operations' data, read through the cache.
//! - [`graphql`]: the schema, one module per domain, DataLoaders, the per-request context.
//! - [`domain`]: pure rules (periods, slots, dashboards, access, permissions, money); no I/O.
//! - [`store`]: every SQL statement, on PostgreSQL or embedded SQLite, plus demo-data seeding.
//! - [`telemetry`]: logging and per-request counters.
//! - [`error`]: the error types and the stable `extensions.code` clients rely on.
#![warn(unreachable_pub, missing_docs)]

pub mod auth;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod ratelimit;
pub mod reads;
pub mod safelist;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
