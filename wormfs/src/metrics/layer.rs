//! [`GrpcMetricsLayer`]: counts and times the gRPC calls a node serves.

use super::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::http;

/// A tower layer for the node's gRPC server: each call is counted in
/// `wormfs_grpc_requests_total{method, code}` and timed in
/// `wormfs_grpc_request_duration_seconds{method}`, up to its answer's headers. The code is
/// the `grpc-status` of a call that failed before answering (tonic sends those in the
/// headers), `0` (OK) otherwise.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer(Arc<Metrics>);

impl GrpcMetricsLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> GrpcMetricsLayer {
        GrpcMetricsLayer(metrics)
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC server.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The method of a gRPC path (`/wormfs.v1.WormFs/Create` is `Create`).
fn method_of(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some((_, m)) if !m.is_empty() => m,
        _ => "unknown",
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_of(req.uri().path()).to_owned();
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            metrics.grpc_call(&method, &code, start.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_method_is_the_last_part_of_its_path() {
        assert_eq!(super::method_of("/wormfs.v1.WormFs/Create"), "Create");
        assert_eq!(super::method_of("/"), "unknown");
        assert_eq!(super::method_of(""), "unknown");
    }
}
