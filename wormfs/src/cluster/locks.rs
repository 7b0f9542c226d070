//! The lock service's view of the cluster: the master is the Raft leader, confirmed with a
//! majority before each grant, and reached over the node-to-node transport.

use super::{serve_json, Cluster};
use crate::ids::NodeId;
use crate::locks::{LockAnswer, LockAuthority, LockCall, LockService};
use crate::net::{P2pTransport, Transport};
use crate::raft::{Raft, RaftNodeId};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Protocol on which lock calls are forwarded to the master.
pub const LOCKS: &str = "locks/call";

/// The [`LockAuthority`] of a cluster node.
pub struct ClusterLocks {
    raft: Raft,
    raft_id: RaftNodeId,
    node: NodeId,
    transport: P2pTransport,
    confirm_timeout: Duration,
}

#[async_trait]
impl LockAuthority for ClusterLocks {
    fn master_term(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        (m.current_leader == Some(self.raft_id) && m.state.is_leader()).then_some(m.current_term)
    }

    async fn confirm(&self) -> bool {
        matches!(
            tokio::time::timeout(self.confirm_timeout, self.raft.ensure_linearizable()).await,
            Ok(Ok(_))
        )
    }

    async fn forward(&self, call: &LockCall) -> Result<LockAnswer, String> {
        let leader = {
            let m = self.raft.metrics().borrow().clone();
            m.current_leader
                .and_then(|id| m.membership_config.membership().get_node(&id).cloned())
        };
        let Some(leader) = leader else {
            return Err("no master is elected".into());
        };
        if leader.name == self.node.0 {
            return Ok(LockAnswer::NotMaster); // this node is becoming (or ceasing to be) master
        }
        let master = NodeId(leader.name.clone());
        if !self.transport.is_connected(&master) {
            return Err(format!("not connected to the master {master}"));
        }
        let body = serde_json::to_vec(call).map_err(|e| e.to_string())?;
        let answer = self
            .transport
            .request(&master, LOCKS, body)
            .await
            .map_err(|e| format!("the master {master} did not answer: {e}"))?;
        serde_json::from_slice(&answer).map_err(|e| format!("malformed answer from {master}: {e}"))
    }
}

impl Cluster {
    /// The lock service's authority on this node.
    pub fn lock_authority(&self) -> Arc<ClusterLocks> {
        Arc::new(ClusterLocks {
            raft: self.raft.clone(),
            raft_id: self.raft_id,
            node: self.node.clone(),
            transport: self.transport.clone(),
            confirm_timeout: self.settings.election_timeout.max(Duration::from_secs(1)),
        })
    }

    /// Answers lock calls forwarded from other nodes with `service`.
    pub fn serve_locks(&self, service: Arc<LockService>) {
        serve_json(
            &self.transport,
            LOCKS,
            "lock call",
            move |call: LockCall| {
                let s = service.clone();
                async move { s.serve(call).await }
            },
        );
    }
}
