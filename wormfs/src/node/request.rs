//! Client request ids: a metadata change a client may send twice (again to another node,
//! after the first one stopped answering) is applied once.
//!
//! The client names such a call with a random id ([`crate::rpc::REQUEST_ID_HEADER`]); the
//! node runs the call inside [`once`], and each op the call submits goes through the log
//! wrapped in [`MetadataOp::Once`] with the id and the op's number within the call. Applying
//! a `Once` op whose id was already applied returns the first reply and changes nothing
//! (see `meta::apply`), so a repeated call finds the ops the first one committed already
//! done, and does the rest.

use crate::meta::{MetadataOp, Timestamp};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

/// The longest request id a node takes.
pub const MAX_REQUEST_ID: usize = 64;

tokio::task_local! {
    static REQUEST: Request;
}

struct Request {
    id: String,
    next: AtomicU32,
}

/// Runs `f` with every op it submits applied at most once under `id` (no id: as is).
pub async fn once<F: Future>(id: Option<String>, f: F) -> F::Output {
    match id {
        Some(id) => {
            REQUEST
                .scope(
                    Request {
                        id,
                        next: AtomicU32::new(0),
                    },
                    f,
                )
                .await
        }
        None => f.await,
    }
}

/// What the first op of the call under request id `id` gave, when this node's copy of the
/// metadata has already applied it: the call ran before (through a node that stopped
/// answering), and a repeat whose checks now fail (the file it removed is gone) answers as
/// the first one did. A repeat whose checks pass is answered the same way by the log
/// ([`MetadataOp::Once`]).
pub fn applied_before(
    meta: &crate::meta::MetaStore,
    id: Option<&str>,
) -> Option<crate::meta::Applied> {
    let id = id?;
    meta.request_reply(&format!("{id}/0")).ok().flatten()
}

/// `op` wrapped for the request this task runs, if any.
pub(super) fn wrap(op: MetadataOp) -> MetadataOp {
    let request = REQUEST
        .try_with(|r| format!("{}/{}", r.id, r.next.fetch_add(1, Ordering::Relaxed)))
        .ok();
    match request {
        Some(request) => MetadataOp::Once {
            request,
            time: Timestamp::now(),
            op: Box::new(op),
        },
        None => op,
    }
}

/// Whether `id` is a request id a node takes: 1 to [`MAX_REQUEST_ID`] ASCII letters, digits
/// and `-`.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
