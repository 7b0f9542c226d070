//! A node's admin HTTP listener: `/metrics` (Prometheus), `/health` and `/ready` for
//! anyone who reaches it, and the REST API under `/api/v1` ([`api`]) for holders of an
//! admin token.
//!
//! Plain HTTP on loopback (the default `admin_listen`), HTTPS ([`tls`]) elsewhere or when
//! asked. The REST API is served over HTTPS, or over plain HTTP on loopback only: a bearer
//! token never crosses a network in the clear.

pub mod api;
#[cfg(test)]
mod tests;
pub mod tls;

use crate::metrics::Metrics;
use crate::node::NodeFs;
use crate::rpc::server::{ClusterInfo, WormFsService};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;

/// What the endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The node's file system.
    pub fs: Arc<NodeFs>,
    /// The cluster, when the node is in one.
    pub cluster: Option<Arc<dyn ClusterInfo>>,
    /// The node's gRPC service: the REST API answers through it, so both check and
    /// answer alike.
    pub service: Arc<WormFsService>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminState")
    }
}

/// The routes: the probes and metrics, and with `api` the REST API and its OpenAPI
/// document.
pub fn router(state: AdminState, api: bool) -> Router {
    let probes = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready));
    let routes = if api {
        probes
            .merge(api::router())
            .route("/", get(|| asset("text/html; charset=utf-8", UI_HTML)))
            .route(
                "/ui/app.js",
                get(|| asset("text/javascript; charset=utf-8", UI_JS)),
            )
            .route(
                "/ui/style.css",
                get(|| asset("text/css; charset=utf-8", UI_CSS)),
            )
    } else {
        probes
    };
    routes.fallback(not_found).with_state(state)
}

/// The web UI, in the binary: plain HTML, CSS and JavaScript over the REST API, nothing
/// fetched from anywhere else.
const UI_HTML: &str = include_str!("ui/index.html");
const UI_JS: &str = include_str!("ui/app.js");
const UI_CSS: &str = include_str!("ui/style.css");

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || s.metrics.render(&s.fs, s.cluster.as_deref()))
        .await
        .unwrap_or_else(|e| format!("# the metrics could not be read: {e}\n# EOF\n"));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Live: the process answers.
async fn health() -> &'static str {
    "ok\n"
}

/// Ready: a member of a cluster that has a master (a node alone always is).
async fn ready(State(s): State<AdminState>) -> (StatusCode, String) {
    let Some(c) = &s.cluster else {
        return (StatusCode::OK, "ready: a node on its own\n".into());
    };
    let me = s.fs.node().to_string();
    if !c.members().iter().any(|m| m.id == me) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {me} is not a member of the cluster (yet)\n"),
        );
    }
    match c.master() {
        m if m.is_empty() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no master (an election is running, or too few nodes answer)\n".into(),
        ),
        m => (
            StatusCode::OK,
            format!("ready: master {m}, term {}\n", c.term()),
        ),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: this listener serves /metrics, /health, /ready and, on a loopback \
         address, the REST API under /api/v1 (see /api/v1/openapi.json)\n",
    )
}

/// Serves `router` on `listener` until the task is aborted, over TLS with `tls`.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, tls: Option<tls::AdminTls>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("admin listener: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(t) => {
                    let stream = match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        t.acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "admin connection: TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "admin connection: no TLS handshake within 10 s");
                            return;
                        }
                    };
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "admin connection: {e}");
            }
        });
    }
}
