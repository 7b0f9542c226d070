//! [`MeteredStore`]: a [`ChunkStore`] that counts what it does, by disk.

use super::Metrics;
use crate::chunk::ChunkFile;
use crate::ids::{DiskId, FileId, NodeId};
use crate::placement::ClusterView;
use crate::store::{
    ChunkAddr, ChunkFolder, ChunkStore, DiskStatus, IndexedChunk, StoreError, StoredChunk,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Wraps a node's own store: every chunk operation is counted in
/// `wormfs_chunk_operations_total`, its bytes in `wormfs_chunk_io_bytes_total`, and a failure
/// in `wormfs_chunk_errors_total` with its kind. Everything else is the inner store's.
pub struct MeteredStore {
    inner: Arc<dyn ChunkStore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeteredStore")
    }
}

impl MeteredStore {
    /// `inner`, counted in `metrics`.
    pub fn new(inner: Arc<dyn ChunkStore>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    fn count<T>(
        &self,
        disk: &DiskId,
        op: &str,
        result: Result<T, StoreError>,
        bytes: impl FnOnce(&T) -> Option<(bool, u64)>,
    ) -> Result<T, StoreError> {
        match &result {
            Ok(v) => self.metrics.chunk_op(&disk.0, op, bytes(v)),
            Err(e) => {
                let kind = if matches!(e, StoreError::NotFound { .. }) {
                    "missing"
                } else if e.is_chunk_damage() {
                    "damaged"
                } else {
                    "failed"
                };
                self.metrics.chunk_op(&disk.0, op, None);
                self.metrics.chunk_error(&disk.0, op, kind);
            }
        }
        result
    }
}

fn read_of(chunk: &ChunkFile) -> Option<(bool, u64)> {
    Some((true, chunk.data.len() as u64))
}

impl ChunkStore for MeteredStore {
    fn disks(&self) -> Result<Vec<DiskStatus>, StoreError> {
        self.inner.disks()
    }

    fn is_local(&self, disk: &DiskId) -> bool {
        self.inner.is_local(disk)
    }

    fn is_responsive(&self, disk: &DiskId) -> bool {
        self.inner.is_responsive(disk)
    }

    fn chunk_file(&self, disk: &DiskId, addr: &ChunkAddr) -> Option<PathBuf> {
        self.inner.chunk_file(disk, addr)
    }

    fn placement_view(&self, node: &NodeId) -> Result<ClusterView, StoreError> {
        self.inner.placement_view(node)
    }

    fn current_view(&self, node: &NodeId) -> Result<ClusterView, StoreError> {
        self.inner.current_view(node)
    }

    fn put_chunk(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, StoreError> {
        let r = self.inner.put_chunk(disk, folder, path, chunk);
        self.count(disk, "put", r, |s| Some((false, s.size)))
    }

    fn put_encoded(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        header: &crate::chunk::ChunkHeader,
        bytes: Vec<u8>,
    ) -> Result<StoredChunk, StoreError> {
        let r = self.inner.put_encoded(disk, folder, path, header, bytes);
        self.count(disk, "put", r, |s| Some((false, s.size)))
    }

    fn read_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError> {
        let r = self.inner.read_chunk(disk, addr);
        self.count(disk, "read", r, read_of)
    }

    fn read_encoded(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Vec<u8>, StoreError> {
        let r = self.inner.read_encoded(disk, addr);
        self.count(disk, "read", r, |b| Some((true, b.len() as u64)))
    }

    fn remote_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Option<crate::store::RangeFuture> {
        // another node's disk: its own store counts the read
        self.inner.remote_range(disk, addr, offset, len)
    }

    fn read_chunk_within(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        patience: Duration,
    ) -> Result<ChunkFile, StoreError> {
        let r = self.inner.read_chunk_within(disk, addr, patience);
        self.count(disk, "read", r, read_of)
    }

    fn read_chunk_into(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        dest: &mut [u8],
    ) -> Result<(), StoreError> {
        let n = dest.len() as u64;
        let r = self.inner.read_chunk_into(disk, addr, dest);
        self.count(disk, "read", r, |_| Some((true, n)))
    }

    fn read_chunk_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let r = self.inner.read_chunk_range(disk, addr, offset, len);
        self.count(disk, "read", r, |b| Some((true, b.len() as u64)))
    }

    fn check_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Option<u64>, StoreError> {
        let r = self.inner.check_chunk(disk, addr);
        self.count(disk, "check", r, |size| size.map(|s| (true, s)))
    }

    fn delete_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<bool, StoreError> {
        let r = self.inner.delete_chunk(disk, addr);
        self.count(disk, "delete", r, |_| None)
    }

    fn rename_file(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), StoreError> {
        let r = self.inner.rename_file(disk, folder, file, path);
        self.count(disk, "rename", r, |_| None)
    }

    fn scan(&self, disk: &DiskId) -> Result<Vec<IndexedChunk>, StoreError> {
        let r = self.inner.scan(disk);
        self.count(disk, "scan", r, |_| None)
    }

    fn compact_index(&self, disk: &DiskId, folder: &ChunkFolder) -> Result<bool, StoreError> {
        self.inner.compact_index(disk, folder)
    }
}
