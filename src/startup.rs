//! Building and running the application: connect, migrate, seed the embedded database, bind.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    auth::TokenAuthority,
    cache::Cache,
    config::{Profile, Settings},
    graphql::{build_schema, SchemaOptions},
    reads,
    state::AppState,
    store::{
        seed::{Scale, SeedOptions, DEMO_OWNER_EMAIL},
        Backend, Store,
    },
    telemetry::{metrics::Instruments, monitoring::Monitoring},
};

/// A bound, ready-to-run gateway. Tests build it on port 0 and read [`Application::port`].
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects to the database, prepares it as configured, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = Store::connect(&settings).await.with_context(|| {
            format!(
                "connecting to {}",
                crate::config::redact(&settings.database_url())
            )
        })?;
        Self::build_with_store(settings, store).await
    }

    /// Like [`Application::build`] over an existing store.
    pub async fn build_with_store(settings: Settings, store: Store) -> anyhow::Result<Application> {
        if settings.database.migrate_on_start || store.backend() == Backend::Sqlite {
            store.migrate().await.context("applying migrations")?;
        }
        if store.backend() == Backend::Sqlite
            && settings.database.seed_demo_on_empty
            && store.is_empty().await?
        {
            let summary = store
                .seed(SeedOptions {
                    scale: Scale::Demo,
                    seed: 42,
                    today: chrono::Utc::now().date_naive(),
                })
                .await
                .context("seeding demo data")?;
            tracing::info!(
                reservations = summary.reservations,
                "seeded demo data into the embedded database"
            );
        }
        let demo_owner_id = if settings.profile == Profile::Development {
            store.user_by_email(DEMO_OWNER_EMAIL).await?.map(|u| u.id)
        } else {
            None
        };
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let cache = Cache::new(&settings.cache);
        if settings.cache.warmup_on_start {
            let (cache, store, days, concurrency) = (
                cache.clone(),
                store.clone(),
                settings.cache.warmup_days,
                settings.cache.warmup_concurrency,
            );
            tokio::spawn(async move {
                match reads::warm_up(&cache, &store, None, days, concurrency).await {
                    Ok(filled) => tracing::info!(entries = filled, "cache warm-up done"),
                    Err(error) => tracing::warn!(error = %error, "cache warm-up failed"),
                }
            });
        }
        crate::invalidation::spawn(&store, &cache, &settings).await;
        let safelist = match settings.server.safelist_manifest.as_str() {
            "" => None,
            path => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("server.safelist_manifest: reading {path}"))?;
                let list = crate::safelist::Safelist::parse(&text)
                    .map_err(|e| anyhow::anyhow!("server.safelist_manifest: {path}: {e}"))?;
                tracing::info!(
                    operations = list.len(),
                    "safelist mode: only manifest operations run"
                );
                Some(Arc::new(list))
            }
        };
        let registry = prometheus::Registry::new();
        let operation_names = crate::telemetry::labels::OperationNames::new(
            settings.telemetry.max_operation_names,
            // The BFF URLs' operations always have their own label.
            crate::rest::endpoints()
                .iter()
                .map(|e| e.operation_name.clone())
                .chain(safelist.iter().flat_map(|s| s.operation_names())),
        );
        let pool = store.clone();
        let instruments = Instruments::new(
            crate::telemetry::meter_provider(&settings, &registry)?,
            Arc::new(cache.clone()),
            move || {
                let (open, idle) = pool.pool_usage();
                crate::telemetry::metrics::PoolUsage { open, idle }
            },
            operation_names,
        );
        let store = store.with_instruments(instruments.clone());
        let tokens = TokenAuthority::with_clock(&settings.auth, cache.clock().clone());
        if let Some(jwks) = tokens.jwks() {
            jwks.prefetch().await;
        }
        let options = SchemaOptions {
            introspection: settings.server.introspection,
            field_spans: settings.telemetry.field_spans,
            field_timing: settings.telemetry.field_timing,
            suggestions: settings.server.suggestions,
            limits: settings.limits.clone(),
        };
        let state = AppState::new(crate::state::Shared {
            documents: Default::default(),
            instruments,
            registry,
            monitoring: Arc::new(Monitoring::new(
                &crate::error::ErrorCode::ALL.map(|c| c.as_str()),
            )),
            alerts: Arc::new(crate::telemetry::alerts::Alerts::new(
                settings.telemetry.alert_history,
            )),
            safelist,
            rate_limiter: Arc::new(crate::ratelimit::RateLimiter::new(
                &settings.rate_limit,
                &cache,
            )),
            connections: Default::default(),
            topics: Default::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            live_sockets: tokio::sync::watch::channel(0).0,
            cache,
            schema: build_schema(options),
            tokens,
            settings: Arc::new(settings),
            store,
            demo_owner_id,
        });
        Ok(Application { listener, state })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state (for printing demo tokens and for tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (up to the
    /// configured grace period) and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.settings.server.shutdown_grace;
        let store = self.state.store.clone();
        let instruments = self.state.instruments.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let limits = crate::http::serve::ConnectionLimits {
            header_read_timeout: self.state.settings.server.header_read_timeout,
            max_connections: self.state.settings.server.max_connections,
        };
        let live = self.state.clone();
        tokio::spawn(crate::http::evaluate_alerts_every(self.state.clone()));
        let router = crate::http::router(self.state);
        let serve = crate::http::serve::serve(self.listener, router, limits, {
            let stop = stop.clone();
            async move { stop.notified().await }
        });
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            () = &mut serve => {}
            () = shutdown => {
                tracing::info!("shutting down: waiting for in-flight requests");
                // Live subscriptions complete and their sockets close (they left the server
                // loop when they upgraded, so they are waited for apart).
                live.shutdown.send_replace(true);
                stop.notify_one();
                let drained = async {
                    (&mut serve).await;
                    let mut sockets = live.live_sockets.subscribe();
                    let _ = sockets.wait_for(|open| *open == 0).await;
                };
                if tokio::time::timeout(grace, drained).await.is_err() {
                    tracing::warn!(grace_seconds = grace.as_secs(), "shutdown grace period over; dropping open connections");
                }
            }
        };
        store.close().await;
        instruments.shutdown();
        Ok(())
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
