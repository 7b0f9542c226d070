//! The [`MetadataLog`]: the one door through which metadata changes.
//!
//! A log orders ops, makes each durable, applies it to the local [`super::MetaStore`] and
//! returns the reply. The single-node [`LocalLog`] does that with a counter; the replicated
//! log (Raft) assigns the sequence number as the log index and applies on every node.

use super::op::{MetadataOp, OpReply};
use crate::ids::NodeId;
use async_trait::async_trait;

/// Why an op could not be put through the log (it may or may not have been applied when
/// the error is [`LogError::Unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// This node cannot order writes; the leader is named when known.
    #[error("this node is not the metadata master{}", .leader.as_ref().map(|l| format!("; the master is {l}")).unwrap_or_default())]
    NotLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// The log cannot commit now (no quorum, shutting down); the outcome is unknown.
    #[error("metadata log unavailable: {0}")]
    Unavailable(String),
    /// The local store failed; the node must stop serving writes.
    #[error("metadata store failed: {0}")]
    Store(String),
}

/// Orders and applies metadata changes.
#[async_trait]
pub trait MetadataLog: Send + Sync {
    /// Puts `op` through the log: when this returns `Ok`, the op is durable (on a majority,
    /// for a replicated log) and applied locally; the reply says what it changed or why it
    /// was refused.
    async fn submit(&self, op: MetadataOp) -> Result<OpReply, LogError>;

    /// The sequence number of the last op applied on this node.
    fn last_applied(&self) -> Result<u64, LogError>;
}

#[cfg(feature = "local")]
pub use local::LocalLog;

#[cfg(feature = "local")]
mod local {
    use super::*;
    use crate::meta::MetaStore;
    use std::sync::{Arc, Mutex};

    debug_by_name!(LocalLog);

    /// The single-node log: ops are numbered by a counter and applied to one SQLite store.
    pub struct LocalLog {
        store: Arc<MetaStore>,
        next: Mutex<u64>,
    }

    impl LocalLog {
        /// A log over `store`, continuing after its last applied op.
        pub fn new(store: Arc<MetaStore>) -> Result<LocalLog, LogError> {
            let last = store
                .last_applied()
                .map_err(|e| LogError::Store(e.to_string()))?;
            Ok(LocalLog {
                store,
                next: Mutex::new(last + 1),
            })
        }

        /// The store ops are applied to; read metadata from it.
        pub fn store(&self) -> &Arc<MetaStore> {
            &self.store
        }

        /// [`MetadataLog::submit`] without a runtime: applies `op` now.
        pub fn apply(&self, op: &MetadataOp) -> Result<OpReply, LogError> {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let reply = self
                .store
                .apply(*next, op)
                .map_err(|e| LogError::Store(e.to_string()))?;
            *next += 1;
            Ok(reply)
        }
    }

    #[async_trait]
    impl MetadataLog for LocalLog {
        async fn submit(&self, op: MetadataOp) -> Result<OpReply, LogError> {
            self.apply(&op)
        }

        fn last_applied(&self) -> Result<u64, LogError> {
            self.store
                .last_applied()
                .map_err(|e| LogError::Store(e.to_string()))
        }
    }
}
