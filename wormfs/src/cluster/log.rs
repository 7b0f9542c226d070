//! The [`MetadataLog`] over Raft, and the master's side of it: followers forward each op
//! to the master on [`SUBMIT`].

use super::{serve_json, SUBMIT};
use crate::ids::NodeId;
use crate::meta::{LogError, MetaStore, MetadataLog, MetadataOp, OpReply};
use crate::net::Transport;
use crate::raft::Raft;
use async_trait::async_trait;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Serialize, Deserialize)]
pub(super) enum SubmitAnswer {
    /// The reply and the op's log index.
    Done(OpReply, u64),
    NotLeader,
    Unavailable(String),
}

/// The [`MetadataLog`] over Raft: writes through Raft on the master, forwards to the master
/// elsewhere, and reads nothing itself (reads go to the local [`MetaStore`]).
#[derive(Clone)]
pub struct RaftLog {
    pub(super) raft: Raft,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) meta: Arc<MetaStore>,
    pub(super) node: NodeId,
    pub(super) write_timeout: Duration,
}

#[async_trait]
impl MetadataLog for RaftLog {
    async fn submit(&self, op: MetadataOp) -> Result<OpReply, LogError> {
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        let unavailable = |why: String| LogError::Unavailable(why);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "no master confirmed the change within {:?}",
                    self.write_timeout
                )));
            }
            let leader = match tokio::time::timeout(left, self.raft.client_write(op.clone())).await
            {
                Ok(Ok(resp)) => return Ok(resp.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_node,
                Ok(Err(RaftError::Fatal(e))) => return Err(LogError::Store(e.to_string())),
                Ok(Err(e)) => return Err(unavailable(e.to_string())),
                Err(_) => {
                    return Err(unavailable(format!(
                        "no majority confirmed the change within {:?}",
                        self.write_timeout
                    )))
                }
            };
            let Some(leader) = leader.filter(|l| l.name != self.node.0) else {
                // an election is running: wait for its outcome
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let master = NodeId(leader.name.clone());
            if !self.transport.is_connected(&master) {
                // nothing was sent: safe to wait and try again
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let body = serde_json::to_vec(&op).map_err(|e| unavailable(e.to_string()))?;
            let answer = self
                .transport
                .request(&master, SUBMIT, body)
                .await
                .map_err(|e| {
                    unavailable(format!(
                        "the master {master} did not confirm the change (it may or may not be applied): {e}"
                    ))
                })?;
            match serde_json::from_slice::<SubmitAnswer>(&answer) {
                Ok(SubmitAnswer::Done(reply, index)) => {
                    self.wait_applied(index).await;
                    return Ok(reply);
                }
                Ok(SubmitAnswer::NotLeader) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(SubmitAnswer::Unavailable(why)) => return Err(unavailable(why)),
                Err(e) => return Err(unavailable(format!("malformed answer from {master}: {e}"))),
            }
        }
    }

    fn last_applied(&self) -> Result<u64, LogError> {
        self.meta
            .last_applied()
            .map_err(|e| LogError::Store(e.to_string()))
    }
}

impl RaftLog {
    /// After the master applied a forwarded op, waits (briefly) until this node applied it
    /// too, so the caller reads its own write from the local copy.
    async fn wait_applied(&self, index: u64) {
        let mut metrics = self.raft.data_metrics();
        let _ = tokio::time::timeout(self.write_timeout, async {
            loop {
                if metrics.borrow().last_applied.map_or(0, |l| l.index) >= index {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

/// Serves [`SUBMIT`] on `transport`: an op forwarded by a follower is written through
/// `raft` if this node is the master, within `write_timeout`.
pub(super) fn serve_submit(transport: &dyn Transport, raft: Raft, write_timeout: Duration) {
    let r = raft;
    serve_json(transport, SUBMIT, "metadata op", move |op: MetadataOp| {
        let r = r.clone();
        async move {
            match tokio::time::timeout(write_timeout, r.client_write(op)).await {
                Ok(Ok(resp)) => SubmitAnswer::Done(resp.data, resp.log_id.index),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    SubmitAnswer::NotLeader
                }
                Ok(Err(e)) => SubmitAnswer::Unavailable(e.to_string()),
                Err(_) => SubmitAnswer::Unavailable(format!(
                    "no majority confirmed the change within {write_timeout:?}"
                )),
            }
        }
    });
}

debug_by_name!(RaftLog);
