//! Chunk storage on one node: the [`ChunkStore`] trait, its disk implementation
//! ([`DiskChunkStore`], feature `local`) and an in-memory one ([`MemoryChunkStore`]) for tests.
//!
//! On disk, the chunks of one file sit together in its *chunk folder*
//! `<disk>/<1..1000>/<folder>/`, where `folder` is a 10-character hash of the file's path at
//! creation. Each chunk folder has an index file from which the disk's chunk metadata can
//! be rebuilt without SQLite.

mod chunk_file;
#[cfg(feature = "local")]
mod disk;
#[cfg(feature = "local")]
mod durable;
mod folder;
mod index;
#[cfg(feature = "local")]
mod lock;
mod memory;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use chunk_file::{
    read_chunk_file_into, read_chunk_file_range, read_chunk_file_whole, WholeChunk,
};
#[cfg(feature = "local")]
pub use disk::{DiskChunkStore, MARKER_FILE_NAME};
pub use folder::ChunkFolder;
pub use index::{IndexRecord, INDEX_FILE_NAME};
#[cfg(feature = "local")]
pub use lock::{DirLock, LOCK_FILE_NAME};
pub use memory::MemoryChunkStore;

use crate::chunk::{ChunkFile, ChunkFormatError};
use crate::ids::{ChunkKey, DiskId, FileId};
use std::path::PathBuf;

/// Where a chunk lives on its disk: its chunk folder and its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChunkAddr {
    /// The chunk folder of the chunk's file.
    pub folder: ChunkFolder,
    /// The chunk.
    pub key: ChunkKey,
}

/// A disk's identity, place and space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskStatus {
    /// The disk.
    pub disk: DiskId,
    /// Its directory, for disk stores.
    pub path: Option<PathBuf>,
    /// Capacity in bytes.
    pub total: u64,
    /// Bytes available for new chunks.
    pub free: u64,
    /// False when the disk could not be inspected (its error is logged by the caller).
    pub healthy: bool,
}

/// A chunk as an index file records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedChunk {
    /// The disk it is on.
    pub disk: DiskId,
    /// Its chunk folder.
    pub folder: ChunkFolder,
    /// The file's path, as last recorded in the index (renames update it).
    pub path: String,
    /// The chunk.
    pub key: ChunkKey,
    /// Size of the chunk file in bytes.
    pub size: u64,
    /// The chunk's whole-file checksum.
    pub checksum: u32,
    /// The stripe's byte range in the file.
    pub stripe_start: u64,
    /// End of that range.
    pub stripe_end: u64,
    /// Data shards.
    pub k: u16,
    /// Parity shards.
    pub m: u16,
}

/// What a store says about a chunk after storing it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredChunk {
    /// The disk it went to.
    pub disk: DiskId,
    /// Where on it.
    pub addr: ChunkAddr,
    /// Size of the chunk file in bytes.
    pub size: u64,
    /// Its whole-file checksum.
    pub checksum: u32,
}

/// Why a chunk store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store has no disk with this id.
    #[error("no disk `{0}` on this node")]
    UnknownDisk(DiskId),
    /// The chunk is not on the disk.
    #[error("chunk ({key}) is not on disk `{disk}`")]
    NotFound {
        /// The disk asked.
        disk: DiskId,
        /// The chunk asked for.
        key: ChunkKey,
    },
    /// The chunk is there but fails verification.
    #[error("chunk ({key}) on disk `{disk}` is corrupt: {source}")]
    Corrupt {
        /// The disk.
        disk: DiskId,
        /// The chunk.
        key: ChunkKey,
        /// What verification found.
        #[source]
        source: ChunkFormatError,
    },
    /// The disk does not have room for the chunk.
    #[error("disk `{disk}` has {free} bytes free, too few for a {needed}-byte chunk")]
    Full {
        /// The disk.
        disk: DiskId,
        /// Free bytes.
        free: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// A disk directory that is not the disk the config says.
    #[error("{0}")]
    DiskSetup(String),
    /// The disk is on another node that could not be reached or failed the call.
    #[error("disk `{disk}` on node {node}: {reason}")]
    Remote {
        /// The node holding the disk.
        node: crate::ids::NodeId,
        /// The disk.
        disk: DiskId,
        /// What went wrong.
        reason: String,
    },
    /// An I/O error, with what was being done and where.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What was being done, e.g. "write chunk".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when the chunk is missing or corrupt (the stripe can be decoded without it and
    /// the chunk should be repaired), as opposed to the store failing.
    pub fn is_chunk_damage(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound { .. } | StoreError::Corrupt { .. }
        )
    }
}

/// Copies the first `dest.len()` data bytes of `chunk` into `dest`, for
/// [`ChunkStore::read_chunk_into`]; a chunk with fewer is corrupt.
/// `len` bytes of `chunk`'s data from data offset `offset`, clipped to the data.
pub(crate) fn data_range(chunk: &ChunkFile, offset: u64, len: u64) -> Vec<u8> {
    let start = (offset as usize).min(chunk.data.len());
    let end = (offset.saturating_add(len) as usize).min(chunk.data.len());
    chunk.data[start..end].to_vec()
}

pub(crate) fn copy_data_into(
    chunk: &ChunkFile,
    disk: &DiskId,
    addr: &ChunkAddr,
    dest: &mut [u8],
) -> Result<(), StoreError> {
    if chunk.data.len() < dest.len() {
        return Err(short_chunk(disk, addr, chunk.data.len() as u64, dest.len()));
    }
    dest.copy_from_slice(&chunk.data[..dest.len()]);
    Ok(())
}

/// A chunk holding fewer data bytes than its stripe needs from it.
pub(crate) fn short_chunk(disk: &DiskId, addr: &ChunkAddr, has: u64, needed: usize) -> StoreError {
    StoreError::Corrupt {
        disk: disk.clone(),
        key: addr.key,
        source: short_data(has, needed),
    }
}

/// A chunk with fewer data bytes than a stripe needs from it.
pub(crate) fn short_data(has: u64, needed: usize) -> ChunkFormatError {
    ChunkFormatError::BadField {
        field: "data_len",
        reason: format!("{has} data bytes, but the stripe needs {needed} from this chunk"),
    }
}

/// The bytes of a [`ChunkStore::remote_range`] read, when they arrive.
pub type RangeFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<u8>, StoreError>> + Send + 'static>,
>;

/// The chunks on one node's disks.
///
/// Every method is blocking (disk I/O), but [`ChunkStore::remote_range`]'s future; async
/// callers run them on a blocking thread. Implementations must be safe to call from many
/// threads at once.
pub trait ChunkStore: Send + Sync {
    /// Every disk with its space.
    fn disks(&self) -> Result<Vec<DiskStatus>, StoreError>;

    /// True when `disk` is on this machine (reading it costs no network). A store of one
    /// node's disks is all local.
    fn is_local(&self, disk: &DiskId) -> bool {
        let _ = disk;
        true
    }

    /// False when `disk`'s node is offline, or stopped answering a read in time and has not
    /// been heard from since: a reader asks for its chunks last, after the others (parity
    /// included), instead of waiting on it stripe after stripe. A store of one node's disks
    /// always answers.
    fn is_responsive(&self, disk: &DiskId) -> bool {
        let _ = disk;
        true
    }

    /// The path of a chunk's file on this machine, when the store keeps chunks as files
    /// and `disk` is one of this machine's (for clients that read chunk files themselves;
    /// see `rpc::local`). Whether the file exists is not checked.
    fn chunk_file(&self, disk: &DiskId, addr: &ChunkAddr) -> Option<PathBuf> {
        let _ = (disk, addr);
        None
    }

    /// The disks placement may use, each with the node holding it. A store of one node's
    /// disks puts them all on `node`; a store spanning the cluster names each disk's node,
    /// and may first wait (briefly, after a start) to hear from nodes it knows of.
    fn placement_view(
        &self,
        node: &crate::ids::NodeId,
    ) -> Result<crate::placement::ClusterView, StoreError> {
        self.current_view(node)
    }

    /// [`ChunkStore::placement_view`] as known now, without waiting: for what reports on
    /// the disks rather than places chunks on them.
    fn current_view(
        &self,
        node: &crate::ids::NodeId,
    ) -> Result<crate::placement::ClusterView, StoreError> {
        Ok(crate::engine::view_of(node, self.disks()?))
    }

    /// Stores `chunk` durably in chunk folder `folder` of `disk` and records it in the
    /// folder's index under the file path `path`. Returns only when the chunk file and its
    /// directory entry are on stable storage.
    fn put_chunk(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, StoreError>;

    /// Stores a chunk that arrived as its encoded bytes (from another node), already
    /// verified: `header` is what [`crate::chunk::verify_chunk`] returned for `bytes`. As
    /// [`ChunkStore::put_chunk`]; a store of chunk files writes the bytes as they are, a
    /// store in memory keeps them, where this default decodes them again.
    fn put_encoded(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        header: &crate::chunk::ChunkHeader,
        mut bytes: Vec<u8>,
    ) -> Result<StoredChunk, StoreError> {
        bytes.drain(..header.encoded_len());
        let chunk = ChunkFile::from_parts(header.clone(), bytes);
        self.put_chunk(disk, folder, path, &chunk)
    }

    /// Reads a chunk and verifies every checksum in it.
    fn read_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError>;

    /// A chunk file's bytes as stored, header and data, after verifying every checksum in
    /// them as [`ChunkStore::read_chunk`] does: what a node sends a peer that reads the
    /// chunk. A store of chunk files returns the file's bytes, where this default decodes
    /// the chunk and encodes it again.
    fn read_encoded(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Vec<u8>, StoreError> {
        Ok(self.read_chunk(disk, addr)?.encode())
    }

    /// [`ChunkStore::read_chunk`], given up after `patience` where the chunk is on a node
    /// that may be slow to answer (a hedged read: the caller has other chunks to read
    /// instead). The store may then hold the node as not responsive. Stores whose reads
    /// cannot hang read as usual.
    fn read_chunk_within(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        patience: std::time::Duration,
    ) -> Result<ChunkFile, StoreError> {
        let _ = patience;
        self.read_chunk(disk, addr)
    }

    /// Reads a chunk, verifies every checksum in it and copies the first `dest.len()`
    /// bytes of its data into `dest` (the chunk's place in a stripe buffer). A chunk with
    /// fewer data bytes is corrupt. Stores that can read straight into `dest` do, saving
    /// a copy of the chunk.
    fn read_chunk_into(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        dest: &mut [u8],
    ) -> Result<(), StoreError> {
        copy_data_into(&self.read_chunk(disk, addr)?, disk, addr, dest)
    }

    /// Reads `len` bytes of a chunk's data from data offset `offset` (clipped to the data),
    /// verified by the header checksum and the checksums of the blocks they lie in, without
    /// reading the rest of the chunk where the store can avoid it.
    fn read_chunk_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        Ok(data_range(&self.read_chunk(disk, addr)?, offset, len))
    }

    /// [`ChunkStore::read_chunk_range`] of a chunk on another node as a future that holds
    /// no thread while the bytes travel, for callers on an async runtime; `None` when
    /// `disk` is local, its node does not answer (see [`ChunkStore::is_responsive`]), or
    /// the store has no such path (the caller then reads on a blocking thread). A read
    /// whose node does not answer within the store's patience fails, and the store holds
    /// the node as not responsive, as [`ChunkStore::read_chunk_within`] does.
    fn remote_range(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Option<RangeFuture> {
        let _ = (disk, addr, offset, len);
        None
    }

    /// A cheap presence check (a stat): the chunk file's size, or `None` when it is missing.
    fn check_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Option<u64>, StoreError>;

    /// Removes a chunk; `Ok(false)` when it was not there.
    fn delete_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<bool, StoreError>;

    /// Records in the folder's index that `file` is now at `path` (after a rename). The
    /// chunks stay where they are.
    fn rename_file(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), StoreError>;

    /// Every chunk a disk's index files list: the disk's chunk metadata rebuilt from the
    /// disk alone.
    fn scan(&self, disk: &DiskId) -> Result<Vec<IndexedChunk>, StoreError>;

    /// Rewrites the index file of `folder` on `disk` with only its live records when most
    /// of its lines are records of chunks since deleted (the file only grows otherwise).
    /// Returns whether it did. Stores without index files do nothing.
    fn compact_index(&self, disk: &DiskId, folder: &ChunkFolder) -> Result<bool, StoreError> {
        let _ = (disk, folder);
        Ok(false)
    }
}
