//! OpenTelemetry instruments, exported through OTLP (when configured) and as Prometheus text on
//! `GET /metrics`. Names and units follow the OpenTelemetry conventions; docs/observability.md
//! lists every one.

use std::sync::Arc;

use opentelemetry::{
    metrics::{Counter, Histogram, Meter, MeterProvider as _},
    KeyValue,
};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// Latency buckets in seconds: 50 µs to 10 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Lookups of one cache kind, as the `bff.cache.requests` counter reports them (and, inside the
/// cache's per-kind statistics, the status endpoint).
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheLookups {
    /// The kind's name.
    pub kind: &'static str,
    /// Fresh hits in process.
    pub l1_hits: u64,
    /// Fresh hits from Redis.
    pub l2_hits: u64,
    /// Loads from the store.
    pub misses: u64,
    /// Stale values served during a background refresh.
    pub stale_while_revalidate: u64,
    /// Stale values served because the store failed.
    pub stale_if_error: u64,
}

/// What the cache gauges and counters read, each at its own collection (the cache implements
/// it; telemetry knows the numbers, not the cache).
pub trait CacheGauges: Send + Sync {
    /// Lookups per kind.
    fn lookups(&self) -> Vec<CacheLookups>;
    /// Redis calls that failed or timed out.
    fn redis_errors(&self) -> u64;
    /// L1 entries evicted for size.
    fn l1_evictions(&self) -> u64;
    /// Bytes held by L1.
    fn l1_bytes(&self) -> u64;
    /// Whether Redis is skipped (breaker open or channel down).
    fn redis_skipped(&self) -> bool;
}

/// Connections in the database pool, read by the `db.client.connection.count` gauge.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    /// Connections open (idle or in use).
    pub open: u64,
    /// Open connections waiting in the pool.
    pub idle: u64,
}

/// Every instrument the gateway records into.
pub struct Instruments {
    /// `http.server.request.duration` (s).
    pub http_duration: Histogram<f64>,
    /// `graphql.server.operation.duration` (s).
    pub operation_duration: Histogram<f64>,
    /// `graphql.server.field.duration` (s), by parent type and field.
    pub field_duration: Histogram<f64>,
    /// `graphql.server.errors` by `error.code`.
    pub errors: Counter<u64>,
    /// `db.client.operation.duration` (s).
    pub sql_duration: Histogram<f64>,
    /// `graphql.server.operation.db_statements` ({statement}) per request.
    pub sql_per_operation: Histogram<u64>,
    /// `graphql.server.dataloader.batch_size` ({key}).
    pub dataloader_batch: Histogram<u64>,
    /// `graphql.server.n_plus_one.suspected` ({request}).
    pub n_plus_one: Counter<u64>,
    /// `graphql.server.subscription.active` ({subscription}), by operation name.
    pub subscriptions_active: opentelemetry::metrics::UpDownCounter<i64>,
    /// `graphql.server.subscription.events` ({event}), by `outcome`: `sent`, `coalesced`.
    pub subscription_events: Counter<u64>,
    /// `graphql.server.subscription.renders` ({render}): events rendered (once per topic).
    pub subscription_renders: Counter<u64>,
    /// `graphql.server.subscription.delivery.duration` (s): change heard → event sent.
    pub subscription_delivery: Histogram<f64>,
    /// The operation names that label metrics and key monitoring (bounded).
    pub operation_names: super::labels::OperationNames,
    provider: SdkMeterProvider,
}

impl Instruments {
    /// Builds the instruments on `provider`, with observable gauges over the cache and the pool
    /// (`cache` and `pool` are read at every collection).
    pub fn new(
        provider: SdkMeterProvider,
        cache: Arc<dyn CacheGauges>,
        pool: impl Fn() -> PoolUsage + Send + Sync + 'static,
        operation_names: super::labels::OperationNames,
    ) -> Arc<Instruments> {
        let meter = provider.meter("padel-bff");
        observe(&meter, cache, pool);
        Arc::new(Instruments {
            http_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            operation_duration: meter
                .f64_histogram("graphql.server.operation.duration")
                .with_unit("s")
                .with_description("Duration of GraphQL operations, by name and type")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            field_duration: meter
                .f64_histogram("graphql.server.field.duration")
                .with_unit("s")
                .with_description(
                    "Duration of resolving GraphQL fields, by parent type and field name",
                )
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            errors: meter
                .u64_counter("graphql.server.errors")
                .with_unit("{error}")
                .with_description("GraphQL errors by code")
                .build(),
            sql_duration: meter
                .f64_histogram("db.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of SQL statements")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            sql_per_operation: meter
                .u64_histogram("graphql.server.operation.db_statements")
                .with_unit("{statement}")
                .with_description("SQL statements run per GraphQL request")
                .with_boundaries(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0, 21.0, 50.0])
                .build(),
            dataloader_batch: meter
                .u64_histogram("graphql.server.dataloader.batch_size")
                .with_unit("{key}")
                .with_description("Keys per DataLoader batch, by entity")
                .with_boundaries(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0])
                .build(),
            n_plus_one: meter
                .u64_counter("graphql.server.n_plus_one.suspected")
                .with_unit("{statement}")
                .with_description(
                    "Statements repeated within one request outside a DataLoader batch",
                )
                .build(),
            subscriptions_active: meter
                .i64_up_down_counter("graphql.server.subscription.active")
                .with_unit("{subscription}")
                .with_description("Subscriptions running, by operation name")
                .build(),
            subscription_events: meter
                .u64_counter("graphql.server.subscription.events")
                .with_unit("{event}")
                .with_description(
                    "Subscription events sent, and skipped for a newer one (coalesced)",
                )
                .build(),
            subscription_renders: meter
                .u64_counter("graphql.server.subscription.renders")
                .with_unit("{render}")
                .with_description(
                    "Subscription events rendered (once per topic, for all its subscribers)",
                )
                .build(),
            subscription_delivery: meter
                .f64_histogram("graphql.server.subscription.delivery.duration")
                .with_unit("s")
                .with_description("From a change heard to its event sent to a subscriber")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            operation_names,
            provider,
        })
    }

    /// Pushes pending metrics (OTLP) before shutdown.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// Observable gauges and counters read from the cache counters and the connection pool.
fn observe(
    meter: &Meter,
    cache: Arc<dyn CacheGauges>,
    pool: impl Fn() -> PoolUsage + Send + Sync + 'static,
) {
    let hits = cache.clone();
    meter
        .u64_observable_counter("bff.cache.requests")
        .with_unit("{request}")
        .with_description("Cache lookups by kind, tier and outcome")
        .with_callback(move |observer| {
            for k in hits.lookups() {
                for (tier, outcome, value) in [
                    ("l1", "hit", k.l1_hits),
                    ("l2", "hit", k.l2_hits),
                    ("store", "miss", k.misses),
                    ("stale", "stale_while_revalidate", k.stale_while_revalidate),
                    ("stale", "stale_if_error", k.stale_if_error),
                ] {
                    observer.observe(
                        value,
                        &[
                            KeyValue::new("cache.kind", k.kind),
                            KeyValue::new("cache.tier", tier),
                            KeyValue::new("cache.outcome", outcome),
                        ],
                    );
                }
            }
        })
        .build();
    let errors = cache.clone();
    meter
        .u64_observable_counter("bff.cache.redis.errors")
        .with_unit("{error}")
        .with_description("Redis calls that failed or timed out")
        .with_callback(move |observer| observer.observe(errors.redis_errors(), &[]))
        .build();
    let evictions = cache.clone();
    meter
        .u64_observable_counter("bff.cache.l1.evictions")
        .with_unit("{entry}")
        .with_description("L1 entries evicted for size")
        .with_callback(move |observer| observer.observe(evictions.l1_evictions(), &[]))
        .build();
    let usage = cache.clone();
    meter
        .u64_observable_gauge("bff.cache.l1.size")
        .with_unit("By")
        .with_description("Bytes held by L1")
        .with_callback(move |observer| observer.observe(usage.l1_bytes(), &[]))
        .build();
    let breaker = cache;
    meter
        .u64_observable_gauge("bff.cache.redis.breaker.open")
        // An annotation, not "1": the Prometheus exporter would add `_ratio` to the name.
        .with_unit("{state}")
        .with_description("1 while Redis is skipped (breaker open or channel down), else 0")
        .with_callback(move |observer| {
            observer.observe(u64::from(breaker.redis_skipped()), &[]);
        })
        .build();
    meter
        .u64_observable_gauge("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Pool connections by state")
        .with_callback(move |observer| {
            let PoolUsage { open, idle } = pool();
            observer.observe(idle, &[KeyValue::new("db.client.connection.state", "idle")]);
            observer.observe(
                open.saturating_sub(idle),
                &[KeyValue::new("db.client.connection.state", "used")],
            );
        })
        .build();
}
