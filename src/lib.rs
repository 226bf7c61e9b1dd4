//! padel-bff: a GraphQL backend-for-frontend for padel-club booking.
//!
//! The layers point one way (docs/architecture.md walks a request through them):
//! `http → pipeline → graphql → reads → cache / store`, and `http → rest → graphql`; `auth`, `ratelimit` and `safelist` serve
//! the pipeline; `domain`, `config`, `error` and `clock` are used by all and use none of those;
//! `telemetry` is a leaf the others feed with numbers. A test (`tests/api/architecture.rs`)
//! fails on an import cycle between these modules.
//!
//! Modules, one line each:
//! - [`cli`]: the command line (`serve`, `migrate`, `seed`, `schema`, `openapi`, `token`, `doctor`,
//!   `healthcheck`).
//! - [`doctor`]: the deployment checklist `padel-bff doctor` runs against the configured set-up.
//! - [`config`]: typed, layered settings (file → profile file → environment).
//! - [`startup`]: builds the [`startup::Application`] (database, cache, schema, listener) and serves it.
//! - [`state`]: the one shared state every handler gets.
//! - [`http`]: thin adapters: `/graphql`, GraphiQL, health, `/metrics`, management and monitoring APIs.
//! - [`pipeline`]: the order of a request, once: authenticate, rate limit, prepare, response cache,
//!   shared answers, execute, observe.
//! - [`rest`]: the platform's BFF URLs as persisted GraphQL operations: route table, query-string
//!   coercion, the generated OpenAPI document.
//! - [`auth`]: bearer-token verification and the one principal loader ([`auth::principal`]).
//! - [`ratelimit`]: token buckets per user and client IP, shared through Redis.
//! - [`clock`]: the gateway's own time (cache freshness, the Redis breaker, local refills, token
//!   expiry, JWKS intervals); tests advance it instead of sleeping.
//! - [`safelist`]: safelist mode, from a persisted-operation manifest.
//! - [`graphql`]: the schema per domain, the request context and facts, DataLoaders, limits, the extension.
//! - [`reads`]: the hot operations' data, read through the cache.
//! - [`cache`]: the two-tier cache (moka in process, Redis between replicas) and invalidation.
//! - [`invalidation`]: tails the Postgres invalidation outbox, so writes made elsewhere reach the cache.
//! - [`store`]: every SQL statement, on PostgreSQL or embedded SQLite, plus demo-data seeding.
//! - [`domain`]: pure rules (periods, slots, dashboards, access, permissions, booking, money); no I/O.
//! - [`telemetry`]: logging, the sampling decision, the OTLP exporters, metrics, bounded labels,
//!   monitoring statistics.
//! - [`error`]: the error types and the stable `extensions.code` clients rely on.
//!
//! Where the most asked things live:
//! - overlapping bookings are refused by the database (`reservations_no_overlap`, see the
//!   migrations), mapped to `CONFLICT` in [`error::StoreError`];
//! - access is re-checked on a response-cache hit in `pipeline::respond` (`hit_allowed`);
//! - the SQL counter: [`store::StatementObserver`], implemented by [`graphql::facts::RequestFacts`];
//! - the rate-limit decision: [`ratelimit::RateLimiter::check`], called only by [`pipeline`];
//! - the OTLP exporters: `telemetry::otel`, started by [`telemetry::init`].
#![warn(unreachable_pub, missing_docs)]

pub mod auth;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod invalidation;
pub mod pipeline;
pub mod ratelimit;
pub mod reads;
pub mod rest;
pub mod safelist;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
