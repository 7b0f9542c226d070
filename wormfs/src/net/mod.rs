//! Node-to-node transport: the [`Transport`] trait (chunk operations on a peer's disks,
//! request/response calls for protocols such as Raft, and serving those protocols) and its
//! two implementations: [`InProcessHub`], a whole cluster in one process with fault hooks
//! for tests, and the libp2p one that comes with the cluster ([`P2pTransport`]).

mod local;
#[cfg(feature = "cluster")]
pub mod p2p;

pub use local::{InProcessHub, InProcessTransport, CHUNK_RANGE};
#[cfg(feature = "cluster")]
pub use p2p::{P2pConfig, P2pTransport};

use crate::chunk::ChunkFile;
use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use crate::store::{ChunkAddr, ChunkFolder, IndexedChunk, StoreError, StoredChunk};
use async_trait::async_trait;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a [`RequestHandler`] returns: the answer's body, or an error text.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// Handles requests for one protocol: gets the caller's node name and the body, answers
/// with a body or an error text.
pub type RequestHandler = Arc<dyn Fn(NodeId, Vec<u8>) -> HandlerFuture + Send + Sync>;

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
        /// True when the peer has no such chunk; false when it has a corrupt one.
        missing: bool,
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
                    missing: matches!(e, StoreError::NotFound { .. }),
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
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, TransportError>;

    /// Reads and verifies a chunk on `node`.
    async fn read_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<ChunkFile, TransportError>;

    /// `len` bytes of a chunk's data on `node` from data offset `offset` (clipped to the
    /// data), verified there by the checksums of the blocks they lie in (see
    /// [`crate::store::ChunkStore::read_chunk_range`]). A transport that cannot ask for a
    /// part reads the whole chunk and cuts it.
    async fn read_chunk_range(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let chunk = self.read_chunk(node, disk, addr).await?;
        Ok(crate::store::data_range(&chunk, offset, len))
    }

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

    /// Lists the chunks on `node`'s `disk`, as its index files record them (see
    /// [`crate::store::ChunkStore::scan`]).
    async fn scan_disk(
        &self,
        node: &NodeId,
        disk: &DiskId,
    ) -> Result<Vec<IndexedChunk>, TransportError>;

    /// Records `file`'s new `path` in the index of `folder` on `node`'s `disk` (see
    /// [`crate::store::ChunkStore::rename_file`]).
    async fn rename_file(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), TransportError>;

    /// Sends `body` to `node`'s handler for `protocol` and returns its answer.
    async fn request(
        &self,
        node: &NodeId,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError>;

    /// Answers requests for `protocol` on this node with `handler` (replacing an earlier
    /// one).
    fn serve(&self, protocol: &str, handler: RequestHandler);

    /// Whether `node` can be sent a request now (a connection is open): when it cannot, a
    /// caller knows nothing was sent.
    fn is_connected(&self, node: &NodeId) -> bool;

    /// The peers this node is connected to, by name.
    fn connected_peers(&self) -> Vec<NodeId>;
}
