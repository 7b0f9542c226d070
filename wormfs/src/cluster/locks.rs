//! The lock service's view of the cluster: the master is the Raft leader, confirmed with a
//! majority before each grant (one confirmation serves the grants of a short while after
//! it: see [`ClusterLocks`]), and reached over the node-to-node transport.

use super::{serve_json, Cluster};
use crate::ids::NodeId;
use crate::locks::{LockAnswer, LockAuthority, LockCall, LockService};
use crate::net::Transport;
use crate::raft::{Raft, RaftNodeId};
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Protocol on which lock calls are forwarded to the master.
pub const LOCKS: &str = "locks/call";

/// The [`LockAuthority`] of a cluster node.
///
/// A confirmation (a heartbeat a majority acknowledged) stays good for half the election
/// timeout after it began. Each follower that acknowledged it refuses to vote for anyone
/// else until its leader lease runs out ([`super::ElectionTiming::lease`], 0.9 × the
/// election timeout, counted from that heartbeat), and a new master needs a vote from at least one
/// of them; so no other master can exist, let alone grant locks, within that time. A
/// sequence of opens then costs one Raft round per half election timeout, not one each.
pub struct ClusterLocks {
    raft: Raft,
    raft_id: RaftNodeId,
    node: NodeId,
    transport: Arc<dyn Transport>,
    confirm_timeout: Duration,
    /// How long a confirmation serves.
    confirm_serves: Duration,
    /// The last confirmation: its term and when it began.
    confirmed: Mutex<Option<(u64, Instant)>>,
}

#[async_trait]
impl LockAuthority for ClusterLocks {
    fn master_term(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        (m.current_leader == Some(self.raft_id) && m.state.is_leader()).then_some(m.current_term)
    }

    async fn confirm(&self) -> bool {
        let Some(term) = self.master_term() else {
            return false;
        };
        let began = Instant::now();
        let last = *self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, at)) = last {
            if t == term && began.saturating_duration_since(at) < self.confirm_serves {
                return true;
            }
        }
        let confirmed = matches!(
            tokio::time::timeout(self.confirm_timeout, self.raft.ensure_linearizable()).await,
            Ok(Ok(_))
        );
        // still master of the same term: the majority acknowledged a heartbeat of this term
        if confirmed && self.master_term() == Some(term) {
            *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = Some((term, began));
        }
        confirmed
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
            // well inside the lease (0.9 × the election timeout)
            confirm_serves: self.settings.election_timeout / 2,
            confirmed: Mutex::new(None),
        })
    }

    /// Answers lock calls forwarded from other nodes with `service`.
    pub fn serve_locks(&self, service: Arc<LockService>) {
        serve_json(
            self.transport.as_ref(),
            LOCKS,
            "lock call",
            move |call: LockCall| {
                let s = service.clone();
                async move { s.serve(call).await }
            },
        );
    }
}

debug_by_name!(ClusterLocks);
