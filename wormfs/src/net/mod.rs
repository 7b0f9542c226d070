//! Node-to-node transport: the [`Transport`] trait (chunk operations on a peer's disks and
//! request/response calls for protocols such as Raft) and its in-process implementation
//! ([`InProcessHub`]) for tests. The libp2p implementation comes with the cluster.

mod local;
#[cfg(feature = "cluster")]
pub mod p2p;

pub use local::{InProcessHub, InProcessTransport};
#[cfg(feature = "cluster")]
pub use p2p::{P2pConfig, P2pTransport};

use crate::chunk::ChunkFile;
use crate::ids::{ChunkKey, DiskId, NodeId};
use crate::store::{ChunkAddr, ChunkFolder, StoreError, StoredChunk};
use async_trait::async_trait;

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (down, partitioned, refused); the call may be retried
    /// elsewhere.
    #[error("node {node} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The chunk is missing or corrupt on the peer: decode without it and repair it.
    #[error("chunk ({key}) on node {node} is damaged: {reason}")]
    ChunkDamaged {
        /// The peer.
        node: NodeId,
        /// The chunk.
        key: ChunkKey,
        /// What the peer found.
        reason: String,
    },
    /// The peer failed the operation for another reason (full disk, I/O error).
    #[error("node {node} failed: {reason}")]
    Remote {
        /// The peer.
        node: NodeId,
        /// What it said.
        reason: String,
    },
    /// The peer does not serve this protocol.
    #[error("node {node} does not serve protocol {protocol}")]
    NoHandler {
        /// The peer.
        node: NodeId,
        /// The protocol asked for.
        protocol: String,
    },
}

impl TransportError {
    /// Converts a store error on `node` into the error a remote caller sees.
    pub fn from_store(node: &NodeId, e: StoreError) -> TransportError {
        match e {
            StoreError::NotFound { key, .. } | StoreError::Corrupt { key, .. } => {
                TransportError::ChunkDamaged {
                    node: node.clone(),
                    key,
                    reason: e.to_string(),
                }
            }
            other => TransportError::Remote {
                node: node.clone(),
                reason: other.to_string(),
            },
        }
    }
}

/// Calls to other storage nodes.
#[async_trait]
pub trait Transport: Send + Sync {
    /// This node's id.
    fn local_node(&self) -> &NodeId;

    /// Stores a chunk durably on `node`'s `disk` (see [`crate::store::ChunkStore::put_chunk`]).
    async fn put_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: ChunkFile,
    ) -> Result<StoredChunk, TransportError>;

    /// Reads and verifies a chunk on `node`.
    async fn read_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<ChunkFile, TransportError>;

    /// Checks a chunk's presence on `node` (a stat).
    async fn check_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<Option<u64>, TransportError>;

    /// Deletes a chunk on `node`.
    async fn delete_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<bool, TransportError>;

    /// Sends `body` to `node`'s handler for `protocol` and returns its answer.
    async fn request(
        &self,
        node: &NodeId,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError>;
}
