//! Serving connections: hyper's HTTP/1 with a header-read timeout (a client that connects and
//! sends its headers slowly, or not at all, is closed: slowloris), a cap on open connections
//! (more wait in the listen backlog), and graceful shutdown. `axum::serve` offers neither knob.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};

/// How one connection is served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The request's headers must arrive within this long (also on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Accepts connections until `stop` completes, then asks every connection to finish its
/// current request and close; returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (closing, closing_seen) = watch::channel(());
    // Each connection holds a receiver; the sender's `closed()` resolves when all are gone.
    let (open_tx, open_rx) = watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut closing = closing_seen.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(peer));
                    let mut router = router.clone();
                    async move {
                        Ok::<_, Infallible>(
                            tower_service::Service::call(&mut router, request.map(Body::new))
                                .await
                                .unwrap_or_else(|never| match never {}),
                        )
                    }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                }
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.as_mut().await;
                }
            }
            drop(open);
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(());
    drop(open_rx);
    open_tx.closed().await;
}
