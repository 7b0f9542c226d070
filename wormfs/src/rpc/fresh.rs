//! Session consistency across nodes: a client never reads metadata older than what it has
//! already seen, and a node that has fallen behind its master does not serve.
//!
//! Every node answers clients from its own copy of the metadata, which a follower applies a
//! little after the master commits. Two things could then go wrong:
//!
//! - A client writes through one node and reads through another (a mount's FUSE threads
//!   each hold a connection, and after a failover they may sit on different nodes): the
//!   second node may not have applied the write yet, and answers `ENOENT` for a file the
//!   client just created.
//! - A node that cannot catch up (a snapshot install that keeps failing, a slow disk) goes
//!   on answering from old metadata: old bytes, with no error.
//!
//! So each answer carries the index of the last metadata op the node applied
//! ([`APPLIED_HEADER`]); the client keeps the highest it has seen and sends it with every
//! call ([`AFTER_HEADER`]). A node that has not applied that far refuses the call at once
//! with [`BEHIND_METADATA`] (nothing of it ran); the client asks the same node again for
//! [`BEHIND_PATIENCE`] (a follower is normally milliseconds behind), then moves to another
//! node. A node also refuses every call while it has long known of a commit of its master
//! that it has not applied (`Progress::behind`; in a cluster, 2 s: see
//! `cluster::lag`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::codegen::http;

/// The response header with the index of the last metadata op the answering node applied.
pub const APPLIED_HEADER: &str = "x-wormfs-applied";
/// The request header with the highest [`APPLIED_HEADER`] the client has seen.
pub const AFTER_HEADER: &str = "x-wormfs-after";
/// The status metadata entry of a call refused because the node is behind (the call did
/// not run: it is safe to send again, to this node or another).
pub const BEHIND_METADATA: &str = "x-wormfs-behind";
/// How long a client asks a node that is behind again before it moves to another node.
pub const BEHIND_PATIENCE: Duration = Duration::from_secs(2);

/// The highest applied index a client (and its forks) has seen. Cheap to clone; clones
/// share it.
#[derive(Clone, Debug, Default)]
pub struct Seen(Arc<AtomicU64>);

impl Seen {
    /// The highest index seen.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records that a node has applied `index`.
    pub fn saw(&self, index: u64) {
        self.0.fetch_max(index, Ordering::Relaxed);
    }
}

/// Whether `status` is a refusal of a node that is behind (see the module documentation).
pub fn is_behind(status: &tonic::Status) -> bool {
    status.metadata().get(BEHIND_METADATA).is_some()
}

/// A client channel that records, from each answer, the index its node applied.
#[derive(Clone, Debug)]
pub struct RecordApplied<S> {
    inner: S,
    seen: Seen,
}

impl<S> RecordApplied<S> {
    /// `inner`, recording into `seen`.
    pub fn new(inner: S, seen: Seen) -> RecordApplied<S> {
        RecordApplied { inner, seen }
    }
}

/// A boxed future of a wrapped service's answer.
pub type BoxFuture<T, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RecordApplied<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let seen = self.seen.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            if let Some(i) = header_u64(resp.headers(), APPLIED_HEADER) {
                seen.saw(i);
            }
            Ok(resp)
        })
    }
}

fn header_u64(h: &http::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

#[cfg(feature = "node")]
pub use server::{Fresh, FreshLayer, Progress};

#[cfg(feature = "node")]
mod server {
    use super::*;

    /// How far a node's metadata has come (implemented by the cluster; a single node has no
    /// master to fall behind and needs no check).
    pub trait Progress: Send + Sync {
        /// The index of the last metadata op this node applied.
        fn applied(&self) -> u64;
        /// Why this node must not serve now because it is behind its master, if it is.
        fn behind(&self) -> Option<String>;
    }

    debug_by_name!(FreshLayer);

    impl<S> std::fmt::Debug for Fresh<S> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Fresh")
        }
    }

    /// The server layer of session consistency: refuses a call the node is not fresh enough
    /// for, and puts [`APPLIED_HEADER`] on every answer.
    #[derive(Clone)]
    pub struct FreshLayer {
        progress: Arc<dyn Progress>,
    }

    impl FreshLayer {
        /// The layer over `progress`.
        pub fn new(progress: Arc<dyn Progress>) -> FreshLayer {
            FreshLayer { progress }
        }
    }

    impl<S> tower::Layer<S> for FreshLayer {
        type Service = Fresh<S>;

        fn layer(&self, inner: S) -> Fresh<S> {
            Fresh {
                inner,
                progress: self.progress.clone(),
            }
        }
    }

    /// A service behind [`FreshLayer`].
    #[derive(Clone)]
    pub struct Fresh<S> {
        inner: S,
        progress: Arc<dyn Progress>,
    }

    impl<S> Fresh<S> {
        /// Why a call that saw `after` must not run here now, if so.
        fn refusal(&self, after: Option<u64>) -> Option<String> {
            let applied = self.progress.applied();
            if let Some(after) = after.filter(|a| *a > applied) {
                return Some(format!(
                    "this node has applied the metadata up to {applied}, and the client has seen \
                 {after}: ask again shortly or ask another node"
                ));
            }
            self.progress.behind()
        }
    }

    impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Fresh<S>
    where
        S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
        S::Future: Send + 'static,
        ResBody: Default + Send + 'static,
        S::Error: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = BoxFuture<S::Response, S::Error>;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
            let applied_value = |p: &dyn Progress| http::HeaderValue::from(p.applied());
            if let Some(why) = self.refusal(header_u64(req.headers(), AFTER_HEADER)) {
                tracing::debug!("call refused: {why}");
                let mut status = tonic::Status::unavailable(why);
                status
                    .metadata_mut()
                    .insert(BEHIND_METADATA, tonic::metadata::MetadataValue::from(1u32));
                let mut resp: http::Response<ResBody> = status.into_http();
                resp.headers_mut()
                    .insert(APPLIED_HEADER, applied_value(self.progress.as_ref()));
                return Box::pin(std::future::ready(Ok(resp)));
            }
            let progress = self.progress.clone();
            let answer = self.inner.call(req);
            Box::pin(async move {
                let mut resp = answer.await?;
                resp.headers_mut()
                    .insert(APPLIED_HEADER, applied_value(progress.as_ref()));
                Ok(resp)
            })
        }
    }
}
