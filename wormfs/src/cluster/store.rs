//! [`ClusterStore`]: the [`ChunkStore`] of the whole cluster as one node sees it. Local
//! disks are used directly; a disk of another node is reached over the [`Transport`]. The
//! stripe engine runs over it unchanged.

use super::heartbeat::Heartbeats;
use crate::chunk::ChunkFile;
use crate::ids::{DiskId, NodeId};
use crate::net::{Transport, TransportError};
use crate::placement::{ClusterView, DiskView};
use crate::store::{
    ChunkAddr, ChunkFolder, ChunkStore, DiskStatus, IndexedChunk, StoreError, StoredChunk,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a read of a chunk on another node may take before the reader turns to other
/// chunks of the stripe (a chunk is at most a few MiB: tens of milliseconds on a LAN). The
/// node is then suspect, and asked last, until it is heard from again.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Chunks on every node's disks.
pub struct ClusterStore {
    node: NodeId,
    local: Arc<dyn ChunkStore>,
    transport: Arc<dyn Transport>,
    heartbeats: Arc<Heartbeats>,
    meta: Arc<crate::meta::MetaStore>,
    routes: RwLock<HashMap<DiskId, NodeId>>,
    handle: tokio::runtime::Handle,
    membership: Option<crate::raft::Raft>,
    /// This node's disk ids (the config's; they do not change while the node runs).
    local_ids: Vec<DiskId>,
    /// Nodes that did not answer a read in time (see [`ChunkStore::read_chunk_within`]), and
    /// when.
    suspects: Arc<Suspects>,
    /// Members whose first heartbeat (and with it their disks) has not come, and since when
    /// placement has been waiting for it, and whether the end of that wait was logged (see
    /// [`Self::wait_for_members`]).
    unheard: Mutex<HashMap<NodeId, (Instant, bool)>>,
}

impl ClusterStore {
    /// The cluster's chunks for `node`, whose own disks are `local`. Must be created inside
    /// the Tokio runtime; its methods block and must run on blocking threads.
    pub fn new(
        node: NodeId,
        local: Arc<dyn ChunkStore>,
        transport: Arc<dyn Transport>,
        heartbeats: Arc<Heartbeats>,
        meta: Arc<crate::meta::MetaStore>,
    ) -> ClusterStore {
        ClusterStore {
            node,
            local,
            transport,
            heartbeats,
            meta,
            routes: RwLock::new(HashMap::new()),
            handle: tokio::runtime::Handle::current(),
            membership: None,
            local_ids: Vec::new(),
            suspects: Arc::default(),
            unheard: Mutex::new(HashMap::new()),
        }
        .with_local_ids()
    }

    fn with_local_ids(mut self) -> ClusterStore {
        match self.local.disks() {
            Ok(d) => self.local_ids = d.into_iter().map(|d| d.disk).collect(),
            Err(e) => tracing::error!("cannot list this node's disks: {e}"),
        }
        self
    }

    /// Places chunks only on the disks of `raft`'s members (a removed node that still
    /// runs and announces itself gets no new chunks).
    pub fn with_membership(mut self, raft: crate::raft::Raft) -> ClusterStore {
        self.membership = Some(raft);
        self
    }

    /// The disks placement may use: this node's, and those of every peer heard from
    /// recently (a disk is usable when its node is online and it reports healthy).
    pub fn view(&self) -> Result<ClusterView, StoreError> {
        let mut disks = crate::engine::view_of(&self.node, self.local.disks()?).disks;
        let members = self.members();
        for p in self.heartbeats.peers() {
            if p.beat.node == self.node {
                continue;
            }
            if members
                .as_ref()
                .is_some_and(|m| !m.contains(&p.beat.node.0))
            {
                continue;
            }
            for d in &p.beat.disks {
                if disks.iter().any(|x| x.disk == d.id) {
                    tracing::warn!(disk = %d.id, node = %p.beat.node, "disk id is used by two nodes; not placing chunks on the second");
                    continue;
                }
                disks.push(DiskView {
                    node: p.beat.node.clone(),
                    disk: d.id.clone(),
                    total: d.total,
                    free: d.free,
                    usable: d.healthy
                        && self
                            .heartbeats
                            .reachable(&p, self.transport.is_connected(&p.beat.node)),
                });
            }
        }
        Ok(ClusterView { disks })
    }

    /// The names of the Raft members, when this store knows the membership.
    fn members(&self) -> Option<Vec<String>> {
        self.membership.as_ref().map(|r| {
            r.metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(_, m)| m.name.clone())
                .collect()
        })
    }

    /// Waits until every other member has been heard from, or for at most
    /// [`Heartbeats::first_beat_patience`] per member. A node that has just started or
    /// joined knows the members from its log before their first heartbeats bring their
    /// disks; placing a stripe then would see only this node's disks, and fail as out of
    /// space (or crowd them) though the cluster has room. A member still silent after the
    /// wait is left out (and logged once), as an offline one is.
    fn wait_for_members(&self) {
        let patience = self.heartbeats.first_beat_patience();
        loop {
            let silent: Vec<NodeId> = self
                .members()
                .unwrap_or_default()
                .into_iter()
                .map(NodeId)
                .filter(|n| *n != self.node && !self.heartbeats.heard_from(n))
                .collect();
            let waiting = {
                let mut unheard = self.unheard.lock().unwrap_or_else(|e| e.into_inner());
                unheard.retain(|n, _| silent.contains(n));
                let now = Instant::now();
                let mut waiting = false;
                for n in silent {
                    let (since, logged) = unheard.entry(n.clone()).or_insert((now, false));
                    if now.duration_since(*since) < patience {
                        waiting = true;
                    } else if !*logged {
                        *logged = true;
                        tracing::warn!(
                            node = %n,
                            "node {n} is a member but has not been heard from in {patience:?}; \
                             placing chunks without its disks until it is"
                        );
                    }
                }
                waiting
            };
            if !waiting {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn holds_locally(&self, disk: &DiskId) -> bool {
        self.local_ids.contains(disk)
    }

    /// The node holding `disk`: from heartbeats, else from the metadata's disk table.
    fn node_of(&self, disk: &DiskId) -> Result<NodeId, StoreError> {
        if let Some(n) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(disk)
        {
            return Ok(n.clone());
        }
        let from_beats = self
            .heartbeats
            .peers()
            .into_iter()
            .find(|p| p.beat.disks.iter().any(|d| &d.id == disk))
            .map(|p| p.beat.node);
        let node = match from_beats {
            Some(n) => Some(n),
            None => self
                .meta
                .disks()
                .map_err(|e| StoreError::DiskSetup(format!("read the disk table: {e}")))?
                .into_iter()
                .find(|d| &d.id == disk)
                .map(|d| d.node),
        };
        let node = node.ok_or_else(|| StoreError::UnknownDisk(disk.clone()))?;
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(disk.clone(), node.clone());
        Ok(node)
    }

    /// Waits up to `patience` for a read of `addr` from `node` (see [`answer_within`]).
    fn remote_read<T>(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
        patience: Duration,
        read: impl std::future::Future<Output = Result<T, crate::net::TransportError>>,
    ) -> Result<T, StoreError> {
        let asked = Asked {
            node,
            disk,
            addr,
            patience,
            heartbeats: &self.heartbeats,
            suspects: &self.suspects,
        };
        self.handle.block_on(asked.answer_within(read))
    }

    fn remote_err(
        node: &NodeId,
        disk: &DiskId,
        key: Option<crate::ids::ChunkKey>,
        e: TransportError,
    ) -> StoreError {
        match (e, key) {
            (TransportError::ChunkDamaged { missing: true, .. }, Some(key)) => {
                StoreError::NotFound {
                    disk: disk.clone(),
                    key,
                }
            }
            // the holder has it but it fails verification: corrupt, not missing, so the
            // metadata and `wormfs status` say what is true
            (TransportError::ChunkDamaged { reason, .. }, Some(key)) => StoreError::Corrupt {
                disk: disk.clone(),
                key,
                source: crate::chunk::ChunkFormatError::CorruptOnHolder { reason },
            },
            (other, _) => StoreError::Remote {
                node: node.clone(),
                disk: disk.clone(),
                reason: other.to_string(),
            },
        }
    }
}

/// Nodes that did not answer a read in time, with when and the time of their last
/// heartbeat then.
type Suspects = RwLock<HashMap<NodeId, (Instant, u64)>>;

/// A read of `addr` asked of `node`, with what marks the node when it does not answer.
struct Asked<'a> {
    node: &'a NodeId,
    disk: &'a DiskId,
    addr: &'a ChunkAddr,
    patience: Duration,
    heartbeats: &'a Heartbeats,
    suspects: &'a Suspects,
}

impl Asked<'_> {
    /// Waits up to `patience` for `read`; a node that does not answer in time is held as
    /// not responsive (asked last until a heartbeat newer than this comes).
    async fn answer_within<T>(
        self,
        read: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, StoreError> {
        let (node, disk, patience) = (self.node, self.disk, self.patience);
        match tokio::time::timeout(patience, read).await {
            Ok(r) => r.map_err(|e| ClusterStore::remote_err(node, disk, Some(self.addr.key), e)),
            Err(_) => {
                let heard = self.heartbeats.get(node).map_or(0, |p| p.received_ms);
                tracing::warn!(
                    %node,
                    "node {node} did not answer a chunk read within {patience:?}; its chunks \
                     are read last until it is heard from again"
                );
                self.suspects
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node.clone(), (Instant::now(), heard));
                Err(StoreError::Remote {
                    node: node.clone(),
                    disk: disk.clone(),
                    reason: format!("no answer within {patience:?}"),
                })
            }
        }
    }
}

impl ChunkStore for ClusterStore {
    /// [`Self::view`], once every member has been heard from or waited for (this blocks for
    /// up to a few heartbeat intervals after the node starts; see `wait_for_members`).
    fn placement_view(&self, _node: &NodeId) -> Result<ClusterView, StoreError> {
        self.wait_for_members();
        self.view()
    }

    fn current_view(&self, _node: &NodeId) -> Result<ClusterView, StoreError> {
        self.view()
    }

    fn is_responsive(&self, disk: &DiskId) -> bool {
        if self.holds_locally(disk) {
            return true;
        }
        let Ok(node) = self.node_of(disk) else {
            return false;
        };
        let beat = self.heartbeats.get(&node);
        if beat.as_ref().is_some_and(|p| {
            !self
                .heartbeats
                .reachable(p, self.transport.is_connected(&node))
        }) {
            return false;
        }
        let suspected = self
            .suspects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
            .copied();
        match suspected {
            None => true,
            // heard from since it was marked: it answers again
            Some((_, heard)) if beat.is_some_and(|p| p.received_ms > heard) => {
                self.suspects
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&node);
                true
            }
            Some(_) => false,
        }
    }

    fn is_local(&self, disk: &DiskId) -> bool {
        self.holds_locally(disk)
    }

    fn chunk_file(&self, disk: &DiskId, addr: &ChunkAddr) -> Option<PathBuf> {
        if self.holds_locally(disk) {
            self.local.chunk_file(disk, addr)
        } else {
            None
        }
    }

    fn disks(&self) -> Result<Vec<DiskStatus>, StoreError> {
        Ok(self
            .view()?
            .disks
            .into_iter()
            .map(|d| DiskStatus {
                disk: d.disk,
                path: None,
                total: d.total,
                free: d.free,
                healthy: d.usable,
            })
            .collect())
    }

    fn put_chunk(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, StoreError> {
        if self.holds_locally(disk) {
            return self.local.put_chunk(disk, folder, path, chunk);
        }
        let node = self.node_of(disk)?;
        self.handle
            .block_on(self.transport.put_chunk(&node, disk, folder, path, chunk))
            .map_err(|e| Self::remote_err(&node, disk, None, e))
    }

    fn read_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError> {
        self.read_chunk_within(disk, addr, READ_TIMEOUT)
    }

    fn read_chunk_within(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        patience: Duration,
    ) -> Result<ChunkFile, StoreError> {
        if self.holds_locally(disk) {
            return self.local.read_chunk(disk, addr);
        }
        let node = self.node_of(disk)?;
        let read = self.transport.read_chunk(&node, disk, addr);
        self.remote_read(&node, disk, addr, patience.min(READ_TIMEOUT), read)
    }

    fn read_chunk_into(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        dest: &mut [u8],
    ) -> Result<(), StoreError> {
        if self.holds_locally(disk) {
            return self.local.read_chunk_into(disk, addr, dest);
        }
        crate::store::copy_data_into(&self.read_chunk(disk, addr)?, disk, addr, dest)
    }

    fn read_chunk_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        if self.holds_locally(disk) {
            return self.local.read_chunk_range(disk, addr, offset, len);
        }
        // only the bytes asked for cross the network, verified by the holder's block
        // checksums: a 4 KiB read of a 512 KiB chunk moves 4 KiB, not the chunk
        let node = self.node_of(disk)?;
        let read = self
            .transport
            .read_chunk_range(&node, disk, addr, offset, len);
        self.remote_read(&node, disk, addr, READ_TIMEOUT, read)
    }

    fn remote_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Option<crate::store::RangeFuture> {
        if self.holds_locally(disk) || !self.is_responsive(disk) {
            return None;
        }
        let node = self.node_of(disk).ok()?;
        let (transport, heartbeats, suspects) = (
            self.transport.clone(),
            self.heartbeats.clone(),
            self.suspects.clone(),
        );
        let (disk, addr) = (disk.clone(), addr.clone());
        Some(Box::pin(async move {
            let read = transport.read_chunk_range(&node, &disk, &addr, offset, len);
            Asked {
                node: &node,
                disk: &disk,
                addr: &addr,
                patience: READ_TIMEOUT,
                heartbeats: &heartbeats,
                suspects: &suspects,
            }
            .answer_within(read)
            .await
        }))
    }

    fn check_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Option<u64>, StoreError> {
        if self.holds_locally(disk) {
            return self.local.check_chunk(disk, addr);
        }
        let node = self.node_of(disk)?;
        self.handle
            .block_on(self.transport.check_chunk(&node, disk, addr))
            .map_err(|e| Self::remote_err(&node, disk, Some(addr.key), e))
    }

    fn delete_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<bool, StoreError> {
        if self.holds_locally(disk) {
            return self.local.delete_chunk(disk, addr);
        }
        let node = self.node_of(disk)?;
        self.handle
            .block_on(self.transport.delete_chunk(&node, disk, addr))
            .map_err(|e| Self::remote_err(&node, disk, Some(addr.key), e))
    }

    fn rename_file(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        file: crate::ids::FileId,
        path: &str,
    ) -> Result<(), StoreError> {
        if self.holds_locally(disk) {
            return self.local.rename_file(disk, folder, file, path);
        }
        let node = self.node_of(disk)?;
        self.handle
            .block_on(self.transport.rename_file(&node, disk, folder, file, path))
            .map_err(|e| Self::remote_err(&node, disk, None, e))
    }

    fn scan(&self, disk: &DiskId) -> Result<Vec<IndexedChunk>, StoreError> {
        if self.holds_locally(disk) {
            return self.local.scan(disk);
        }
        let node = self.node_of(disk)?;
        self.handle
            .block_on(self.transport.scan_disk(&node, disk))
            .map_err(|e| Self::remote_err(&node, disk, None, e))
    }

    fn compact_index(&self, disk: &DiskId, folder: &ChunkFolder) -> Result<bool, StoreError> {
        if self.holds_locally(disk) {
            self.local.compact_index(disk, folder)
        } else {
            Ok(false)
        }
    }
}

debug_by_name!(ClusterStore);
