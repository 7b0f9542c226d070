//! An in-process [`Transport`]: nodes in one process reach each other's stores and
//! handlers directly. Peers can be cut off to test failures.

use super::{Transport, TransportError};
use crate::chunk::ChunkFile;
use crate::ids::{DiskId, NodeId};
use crate::store::{ChunkAddr, ChunkFolder, ChunkStore, StoredChunk};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// A request handler for one protocol: bytes in, bytes out.
pub type Handler = Arc<dyn Fn(Vec<u8>) -> Result<Vec<u8>, String> + Send + Sync>;

#[derive(Default)]
struct Endpoint {
    store: Option<Arc<dyn ChunkStore>>,
    handlers: BTreeMap<String, Handler>,
}

#[derive(Default)]
struct HubState {
    nodes: BTreeMap<NodeId, Endpoint>,
    unreachable: BTreeSet<NodeId>,
}

/// The switchboard of an in-process cluster.
#[derive(Clone, Default)]
pub struct InProcessHub {
    state: Arc<RwLock<HubState>>,
}

impl InProcessHub {
    /// An empty hub.
    pub fn new() -> InProcessHub {
        InProcessHub::default()
    }

    /// Registers `node` with its chunk store and returns its transport.
    pub fn join(&self, node: NodeId, store: Arc<dyn ChunkStore>) -> InProcessTransport {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.nodes.entry(node.clone()).or_default().store = Some(store);
        InProcessTransport {
            hub: self.clone(),
            me: node,
        }
    }

    /// Serves `protocol` on `node` with `handler`.
    pub fn serve(&self, node: &NodeId, protocol: &str, handler: Handler) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.nodes
            .entry(node.clone())
            .or_default()
            .handlers
            .insert(protocol.to_owned(), handler);
    }

    /// Cuts `node` off (`true`) or reconnects it (`false`): calls to it fail as unreachable.
    pub fn set_unreachable(&self, node: &NodeId, unreachable: bool) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        if unreachable {
            s.unreachable.insert(node.clone());
        } else {
            s.unreachable.remove(node);
        }
    }

    fn store(&self, node: &NodeId) -> Result<Arc<dyn ChunkStore>, TransportError> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let unreachable = |reason: &str| TransportError::Unreachable {
            node: node.clone(),
            reason: reason.into(),
        };
        if s.unreachable.contains(node) {
            return Err(unreachable("cut off by the test"));
        }
        s.nodes
            .get(node)
            .and_then(|e| e.store.clone())
            .ok_or_else(|| unreachable("not in this hub"))
    }
}

/// One node's view of an [`InProcessHub`].
#[derive(Clone)]
pub struct InProcessTransport {
    hub: InProcessHub,
    me: NodeId,
}

#[async_trait]
impl Transport for InProcessTransport {
    fn local_node(&self) -> &NodeId {
        &self.me
    }

    async fn put_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: ChunkFile,
    ) -> Result<StoredChunk, TransportError> {
        let store = self.hub.store(node)?;
        store
            .put_chunk(disk, folder, path, &chunk)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn read_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<ChunkFile, TransportError> {
        let store = self.hub.store(node)?;
        store
            .read_chunk(disk, addr)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn check_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<Option<u64>, TransportError> {
        let store = self.hub.store(node)?;
        store
            .check_chunk(disk, addr)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn delete_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<bool, TransportError> {
        let store = self.hub.store(node)?;
        store
            .delete_chunk(disk, addr)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn request(
        &self,
        node: &NodeId,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let handler =
            {
                let s = self.hub.state.read().unwrap_or_else(|e| e.into_inner());
                if s.unreachable.contains(node) {
                    return Err(TransportError::Unreachable {
                        node: node.clone(),
                        reason: "cut off by the test".into(),
                    });
                }
                let endpoint = s
                    .nodes
                    .get(node)
                    .ok_or_else(|| TransportError::Unreachable {
                        node: node.clone(),
                        reason: "not in this hub".into(),
                    })?;
                endpoint.handlers.get(protocol).cloned().ok_or_else(|| {
                    TransportError::NoHandler {
                        node: node.clone(),
                        protocol: protocol.to_owned(),
                    }
                })?
            };
        handler(body).map_err(|reason| TransportError::Remote {
            node: node.clone(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChunkKey, FileId};
    use crate::store::MemoryChunkStore;

    #[tokio::test]
    async fn chunks_and_requests_reach_peers_until_cut_off() {
        let hub = InProcessHub::new();
        let (a, b): (NodeId, NodeId) = ("a".into(), "b".into());
        let disk = DiskId("b0".into());
        let ta = hub.join(
            a.clone(),
            Arc::new(MemoryChunkStore::new(&[(DiskId("a0".into()), 1 << 20)])),
        );
        hub.join(
            b.clone(),
            Arc::new(MemoryChunkStore::new(&[(disk.clone(), 1 << 20)])),
        );
        hub.serve(
            &b,
            "echo",
            Arc::new(|body: Vec<u8>| Ok(body.into_iter().rev().collect())),
        );

        let key = ChunkKey {
            file: FileId(1),
            stripe: 0,
            generation: 1,
            index: 0,
        };
        let chunk = ChunkFile::new(
            key,
            0,
            3,
            1,
            0,
            crate::checksum::crc32(b"abc"),
            b"abc".to_vec(),
        );
        let folder = ChunkFolder::for_path("/x");
        let stored = ta
            .put_chunk(&b, &disk, &folder, "/x", chunk.clone())
            .await
            .unwrap();
        assert_eq!(ta.read_chunk(&b, &disk, &stored.addr).await.unwrap(), chunk);
        assert_eq!(
            ta.request(&b, "echo", vec![1, 2, 3]).await.unwrap(),
            vec![3, 2, 1]
        );
        assert!(matches!(
            ta.request(&b, "raft", vec![]).await,
            Err(TransportError::NoHandler { .. })
        ));

        assert!(ta.delete_chunk(&b, &disk, &stored.addr).await.unwrap());
        assert!(matches!(
            ta.read_chunk(&b, &disk, &stored.addr).await,
            Err(TransportError::ChunkDamaged { .. })
        ));

        hub.set_unreachable(&b, true);
        assert!(matches!(
            ta.check_chunk(&b, &disk, &stored.addr).await,
            Err(TransportError::Unreachable { .. })
        ));
        hub.set_unreachable(&b, false);
        assert_eq!(ta.check_chunk(&b, &disk, &stored.addr).await.unwrap(), None);
        assert_eq!(ta.local_node(), &a);
    }
}
