//! An OTLP receiver for the tests, built from the official OpenTelemetry protobufs: gRPC (which
//! a test may stop: the collector going away) and HTTP/protobuf. It keeps the spans and the debug
//! text of every request (searched for secrets).

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            metrics_service_server::{MetricsService, MetricsServiceServer},
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        },
        trace::v1::{
            trace_service_server::{TraceService, TraceServiceServer},
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        },
    },
    trace::v1::Span,
};

/// What the receiver got: spans, and the debug text of every request (searched for secrets).
#[derive(Clone, Default)]
pub struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    raw: Arc<Mutex<String>>,
}

impl Received {
    /// Spans received so far.
    pub fn span_count(&self) -> usize {
        self.spans.lock().unwrap().len()
    }

    /// A copy of the spans received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The debug text of every export request so far (traces and metrics).
    pub fn raw(&self) -> String {
        self.raw.lock().unwrap().clone()
    }

    fn take_trace_request(&self, request: ExportTraceServiceRequest) {
        self.raw.lock().unwrap().push_str(&format!("{request:?}"));
        let mut spans = self.spans.lock().unwrap();
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take_trace_request(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.raw
            .lock()
            .unwrap()
            .push_str(&format!("{:?}", request.into_inner()));
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// A gRPC receiver serving for the rest of the test.
pub async fn grpc_receiver() -> (String, Received) {
    let (address, received, collector) = grpc_receiver_with_handle().await;
    std::mem::forget(collector.stop); // keep serving for the rest of the test
    (address, received)
}

/// A running gRPC receiver that the test can take away.
pub struct Collector {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// The collector goes away: no new connections, and the open ones are closed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await;
    }
}

/// A gRPC receiver the caller can stop (the collector going away).
pub async fn grpc_receiver_with_handle() -> (String, Received, Collector) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let received = Received::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move {
                let _ = stopped.await;
            },
        );
    let task = tokio::spawn(async move {
        let _ = server.await;
    });
    (address, received, Collector { stop, task })
}

/// An OTLP/HTTP (protobuf) receiver serving for the rest of the test.
pub async fn http_receiver() -> (String, Received) {
    use prost::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let received = Received::default();
    let traces = received.clone();
    let metrics = received.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                traces.take_trace_request(
                    ExportTraceServiceRequest::decode(body).expect("OTLP/HTTP protobuf"),
                );
                axum::http::StatusCode::OK
            }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                metrics.raw.lock().unwrap().push_str(&format!(
                    "{:?}",
                    ExportMetricsServiceRequest::decode(body).expect("protobuf")
                ));
                axum::http::StatusCode::OK
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}
