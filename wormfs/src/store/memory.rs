//! An in-memory [`ChunkStore`] for tests of logic above the store (placement, archive,
//! cluster fixtures). It keeps encoded chunk bytes, so corruption can be simulated.

use super::{
    ChunkAddr, ChunkFolder, ChunkStore, DiskStatus, IndexedChunk, StoreError, StoredChunk,
};
use crate::chunk::ChunkFile;
use crate::ids::{ChunkKey, DiskId, FileId};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct MemDisk {
    capacity: u64,
    failed: bool,
    /// Answers only reads that wait as long as it takes (see [`MemoryChunkStore::slow_disk`]).
    slow: bool,
    /// Reads of this slow disk that waited.
    slow_reads: usize,
    chunks: BTreeMap<(ChunkFolder, ChunkKey), Vec<u8>>,
    paths: BTreeMap<FileId, String>,
}

impl MemDisk {
    fn used(&self) -> u64 {
        self.chunks.values().map(|b| b.len() as u64).sum()
    }
}

/// Chunks kept in memory, on disks of a given capacity.
pub struct MemoryChunkStore {
    disks: Mutex<BTreeMap<DiskId, MemDisk>>,
    /// While true, deletes wait (see [`MemoryChunkStore::hold_deletes`]).
    deletes_held: (Mutex<bool>, std::sync::Condvar),
}

impl MemoryChunkStore {
    /// A store with the given disks and their capacities in bytes.
    pub fn new(disks: &[(DiskId, u64)]) -> MemoryChunkStore {
        let disks = disks
            .iter()
            .map(|(id, cap)| {
                (
                    id.clone(),
                    MemDisk {
                        capacity: *cap,
                        ..MemDisk::default()
                    },
                )
            })
            .collect();
        MemoryChunkStore {
            disks: Mutex::new(disks),
            deletes_held: (Mutex::new(false), std::sync::Condvar::new()),
        }
    }

    /// Makes every delete wait until `held` is set false again, as deletes of chunks on a
    /// frozen node do.
    pub fn hold_deletes(&self, held: bool) {
        *self
            .deletes_held
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = held;
        self.deletes_held.1.notify_all();
    }

    /// How many chunks the store holds, on every disk.
    pub fn chunk_count(&self) -> usize {
        self.disks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|d| d.chunks.len())
            .sum()
    }

    /// Stores a chunk's encoded bytes on `disk`, if they fit.
    fn insert(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        key: ChunkKey,
        bytes: Vec<u8>,
    ) -> Result<StoredChunk, StoreError> {
        self.with_disk(disk, |d| {
            let at = (folder.clone(), key);
            let replaced = d.chunks.get(&at).map_or(0, |b| b.len() as u64);
            let free = d.capacity.saturating_sub(d.used() - replaced);
            if bytes.len() as u64 > free {
                return Err(StoreError::Full {
                    disk: disk.clone(),
                    free,
                    needed: bytes.len() as u64,
                });
            }
            let checksum = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
            let size = bytes.len() as u64;
            d.chunks.insert(at, bytes);
            d.paths.insert(key.file, path.to_owned());
            Ok(StoredChunk {
                disk: disk.clone(),
                addr: ChunkAddr {
                    folder: folder.clone(),
                    key,
                },
                size,
                checksum,
            })
        })
    }

    /// `read` of a stored chunk's bytes: a missing chunk is `NotFound`, a format error
    /// `Corrupt`; a read from a slow disk is counted.
    fn read_stored<T>(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        read: impl FnOnce(&[u8]) -> Result<T, crate::chunk::ChunkFormatError>,
    ) -> Result<T, StoreError> {
        self.with_disk(disk, |d| {
            if d.slow {
                d.slow_reads += 1;
            }
            let bytes = d
                .chunks
                .get(&(addr.folder.clone(), addr.key))
                .ok_or_else(|| StoreError::NotFound {
                    disk: disk.clone(),
                    key: addr.key,
                })?;
            read(bytes).map_err(|source| StoreError::Corrupt {
                disk: disk.clone(),
                key: addr.key,
                source,
            })
        })
    }

    fn with_disk<T>(
        &self,
        id: &DiskId,
        f: impl FnOnce(&mut MemDisk) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut disks = self.disks.lock().unwrap_or_else(|e| e.into_inner());
        let disk = disks
            .get_mut(id)
            .ok_or_else(|| StoreError::UnknownDisk(id.clone()))?;
        if disk.failed {
            return Err(StoreError::Io {
                action: "use failed disk",
                path: id.0.clone().into(),
                source: std::io::Error::other("disk marked failed"),
            });
        }
        f(disk)
    }

    /// Makes every later operation on `disk` fail with an I/O error (a dead disk).
    pub fn fail_disk(&self, disk: &DiskId) {
        if let Some(d) = self
            .disks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(disk)
        {
            d.failed = true;
        }
    }

    /// Makes `disk` slow, as a disk on a frozen or overloaded node is: a read with a
    /// patience ([`ChunkStore::read_chunk_within`]) gets [`StoreError::Remote`] "no answer
    /// within …", and a read without one is answered (and counted: [`Self::slow_reads`]).
    pub fn slow_disk(&self, disk: &DiskId) {
        if let Some(d) = self
            .disks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(disk)
        {
            d.slow = true;
        }
    }

    /// How many reads of slow `disk` waited for it.
    pub fn slow_reads(&self, disk: &DiskId) -> usize {
        self.disks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(disk)
            .map_or(0, |d| d.slow_reads)
    }

    /// Flips one byte of a stored chunk (bit rot); false when the chunk is not there.
    pub fn corrupt(&self, disk: &DiskId, addr: &ChunkAddr, at: usize) -> bool {
        let mut disks = self.disks.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = disks
            .get_mut(disk)
            .and_then(|d| d.chunks.get_mut(&(addr.folder.clone(), addr.key)));
        match bytes {
            Some(b) if !b.is_empty() => {
                let i = at % b.len();
                b[i] ^= 0x55;
                true
            }
            _ => false,
        }
    }
}

impl ChunkStore for MemoryChunkStore {
    fn disks(&self) -> Result<Vec<DiskStatus>, StoreError> {
        let disks = self.disks.lock().unwrap_or_else(|e| e.into_inner());
        Ok(disks
            .iter()
            .map(|(id, d)| DiskStatus {
                disk: id.clone(),
                path: None,
                total: d.capacity,
                free: d.capacity.saturating_sub(d.used()),
                healthy: !d.failed,
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
        self.insert(disk, folder, path, chunk.header.key, chunk.encode())
    }

    /// Kept as the bytes came, as a disk store writes them.
    fn put_encoded(
        &self,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        header: &crate::chunk::ChunkHeader,
        bytes: Vec<u8>,
    ) -> Result<StoredChunk, StoreError> {
        self.insert(disk, folder, path, header.key, bytes)
    }

    fn read_encoded(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Vec<u8>, StoreError> {
        self.read_stored(disk, addr, |bytes| {
            // the copy is checked, while it is in the CPU's caches
            let bytes = bytes.to_vec();
            crate::chunk::verify_chunk(&bytes)?;
            Ok(bytes)
        })
    }

    /// A slow disk stands for a disk of another node (see [`MemoryChunkStore::slow_disk`]).
    fn is_local(&self, disk: &DiskId) -> bool {
        !self.with_disk(disk, |d| Ok(d.slow)).unwrap_or(false)
    }

    fn read_chunk_within(
        &self,
        disk: &DiskId,
        addr: &ChunkAddr,
        patience: std::time::Duration,
    ) -> Result<ChunkFile, StoreError> {
        if self.with_disk(disk, |d| Ok(d.slow))? {
            return Err(StoreError::Remote {
                node: crate::ids::NodeId("memory".into()),
                disk: disk.clone(),
                reason: format!("no answer within {patience:?}"),
            });
        }
        self.read_chunk(disk, addr)
    }

    fn read_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError> {
        self.read_stored(disk, addr, ChunkFile::decode)
    }

    fn check_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Option<u64>, StoreError> {
        self.with_disk(disk, |d| {
            Ok(d.chunks
                .get(&(addr.folder.clone(), addr.key))
                .map(|b| b.len() as u64))
        })
    }

    fn delete_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<bool, StoreError> {
        let (held, released) = &self.deletes_held;
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        while *h {
            h = released.wait(h).unwrap_or_else(|e| e.into_inner());
        }
        drop(h);
        self.with_disk(disk, |d| {
            Ok(d.chunks.remove(&(addr.folder.clone(), addr.key)).is_some())
        })
    }

    fn rename_file(
        &self,
        disk: &DiskId,
        _folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), StoreError> {
        self.with_disk(disk, |d| {
            if d.paths.contains_key(&file) {
                d.paths.insert(file, path.to_owned());
            }
            Ok(())
        })
    }

    fn scan(&self, disk: &DiskId) -> Result<Vec<IndexedChunk>, StoreError> {
        self.with_disk(disk, |d| {
            let mut out: Vec<IndexedChunk> =
                d.chunks
                    .iter()
                    .map(|((folder, key), bytes)| {
                        let h = crate::chunk::ChunkHeader::parse(bytes, bytes.len() as u64)
                            .map_err(|source| StoreError::Corrupt {
                                disk: disk.clone(),
                                key: *key,
                                source,
                            })?;
                        Ok(IndexedChunk {
                            disk: disk.clone(),
                            folder: folder.clone(),
                            path: d.paths.get(&key.file).cloned().unwrap_or_default(),
                            key: *key,
                            size: bytes.len() as u64,
                            checksum: u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
                            stripe_start: h.stripe_start,
                            stripe_end: h.stripe_end,
                            k: h.k,
                            m: h.m,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
            out.sort_by_key(|c| c.key);
            Ok(out)
        })
    }
}

debug_by_name!(MemoryChunkStore);
