//! A chunk store of your own, plugged into WormFS: a small in-memory `ChunkStore`, checked
//! by the conformance suite every store passes, then used by the stripe engine directly
//! (write a 4+2 stripe, lose two chunks, read it back) and by an archive.
//!
//! ```sh
//! cargo run -p wormfs --example custom_store --features conformance
//! ```
//!
//! A real store would keep chunks in an object store, a database or a device; what it
//! must do is what the conformance suite checks: keep the encoded chunk bytes exactly,
//! report damage through `ChunkFile::decode`, list what it holds, and report space.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use wormfs::archive::LocalArchive;
use wormfs::chunk::{ChunkFile, ChunkHeader};
use wormfs::engine::{self, StripeWrite};
use wormfs::ids::{ChunkKey, DiskId, FileId, NodeId};
use wormfs::meta::FileLayout;
use wormfs::placement::SpreadPlacement;
use wormfs::policy::{PolicySet, StoragePolicy};
use wormfs::store::{
    ChunkAddr, ChunkFolder, ChunkStore, DiskStatus, IndexedChunk, StoreError, StoredChunk,
};

/// One "disk": encoded chunks (with their whole-chunk checksum) by folder and key, and
/// each file's last known path.
#[derive(Default)]
struct Shelf {
    chunks: BTreeMap<(ChunkFolder, ChunkKey), (Vec<u8>, u32)>,
    paths: BTreeMap<FileId, String>,
}

/// Chunks in memory, on shelves of a fixed capacity.
struct ShelfStore {
    capacity: u64,
    shelves: Mutex<BTreeMap<DiskId, Shelf>>,
}

impl ShelfStore {
    fn new(shelves: usize, capacity: u64) -> ShelfStore {
        let shelves = (0..shelves)
            .map(|i| (DiskId(format!("shelf{i}")), Shelf::default()))
            .collect();
        ShelfStore {
            capacity,
            shelves: Mutex::new(shelves),
        }
    }

    fn ids(&self) -> Vec<DiskId> {
        self.shelves.lock().unwrap().keys().cloned().collect()
    }

    fn on<T>(&self, disk: &DiskId, f: impl FnOnce(&mut Shelf) -> T) -> Result<T, StoreError> {
        let mut shelves = self.shelves.lock().unwrap();
        let shelf = shelves
            .get_mut(disk)
            .ok_or_else(|| StoreError::UnknownDisk(disk.clone()))?;
        Ok(f(shelf))
    }

    /// Bit rot, for the conformance suite: flips a byte inside the chunk's data.
    fn rot(&self, disk: &DiskId, addr: &ChunkAddr) {
        self.on(disk, |s| {
            let (bytes, _) = s.chunks.get_mut(&(addr.folder.clone(), addr.key)).unwrap();
            let at = bytes.len() - 1;
            bytes[at] ^= 0x55;
        })
        .unwrap();
    }
}

fn not_found(disk: &DiskId, addr: &ChunkAddr) -> StoreError {
    StoreError::NotFound {
        disk: disk.clone(),
        key: addr.key,
    }
}

impl ChunkStore for ShelfStore {
    fn disks(&self) -> Result<Vec<DiskStatus>, StoreError> {
        let shelves = self.shelves.lock().unwrap();
        Ok(shelves
            .iter()
            .map(|(id, s)| {
                let used: u64 = s.chunks.values().map(|(b, _)| b.len() as u64).sum();
                DiskStatus {
                    disk: id.clone(),
                    path: None,
                    total: self.capacity,
                    free: self.capacity.saturating_sub(used),
                    healthy: true,
                }
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
        let bytes = chunk.encode();
        let size = bytes.len() as u64;
        let checksum = chunk.checksum();
        self.on(disk, |s| {
            let key = (folder.clone(), chunk.header.key);
            s.chunks.insert(key, (bytes, checksum));
            s.paths.insert(chunk.header.key.file, path.to_owned());
        })?;
        Ok(StoredChunk {
            disk: disk.clone(),
            addr: ChunkAddr {
                folder: folder.clone(),
                key: chunk.header.key,
            },
            size,
            checksum,
        })
    }

    fn read_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<ChunkFile, StoreError> {
        let bytes = self
            .on(disk, |s| {
                let found = s.chunks.get(&(addr.folder.clone(), addr.key));
                found.map(|(bytes, _)| bytes.clone())
            })?
            .ok_or_else(|| not_found(disk, addr))?;
        // decoding verifies the header, block and whole-chunk checksums
        ChunkFile::decode(&bytes).map_err(|source| StoreError::Corrupt {
            disk: disk.clone(),
            key: addr.key,
            source,
        })
    }

    fn check_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<Option<u64>, StoreError> {
        self.on(disk, |s| {
            let bytes = s.chunks.get(&(addr.folder.clone(), addr.key));
            bytes.map(|(b, _)| b.len() as u64)
        })
    }

    fn delete_chunk(&self, disk: &DiskId, addr: &ChunkAddr) -> Result<bool, StoreError> {
        self.on(disk, |s| {
            s.chunks.remove(&(addr.folder.clone(), addr.key)).is_some()
        })
    }

    fn rename_file(
        &self,
        disk: &DiskId,
        _folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), StoreError> {
        self.on(disk, |s| {
            s.paths.insert(file, path.to_owned());
        })
    }

    fn scan(&self, disk: &DiskId) -> Result<Vec<IndexedChunk>, StoreError> {
        self.on(disk, |s| {
            s.chunks
                .iter()
                .map(|((folder, key), (bytes, checksum))| {
                    // the header alone: a chunk whose data rotted is still listed
                    let h = ChunkHeader::parse(bytes, bytes.len() as u64).map_err(|source| {
                        StoreError::Corrupt {
                            disk: disk.clone(),
                            key: *key,
                            source,
                        }
                    })?;
                    Ok(IndexedChunk {
                        disk: disk.clone(),
                        folder: folder.clone(),
                        path: s.paths.get(&key.file).cloned().unwrap_or_default(),
                        key: *key,
                        size: bytes.len() as u64,
                        checksum: *checksum,
                        stripe_start: h.stripe_start,
                        stripe_end: h.stripe_end,
                        k: h.k,
                        m: h.m,
                    })
                })
                .collect()
        })?
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // 1. The conformance suite: it panics, naming the broken expectation, if the store
    //    falls short of what WormFS relies on.
    let checked = ShelfStore::new(4, 1 << 30);
    wormfs::store::conformance::run(&wormfs::store::conformance::Subject {
        store: &checked,
        disks: checked.ids(),
        corrupt: &|disk, addr| checked.rot(disk, addr),
    });
    println!("the shelf store passes the ChunkStore conformance suite");

    // 2. The stripe engine over it: one 4+2 stripe of 1 MiB, two chunks lost, read back.
    let store = Arc::new(ShelfStore::new(6, 1 << 30));
    let layout = FileLayout {
        policy: "media".into(),
        k: 4,
        m: 2,
        stripe_size: 1 << 20,
        folder: ChunkFolder::for_path("/films/a.mkv"),
    };
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let view = store.placement_view(&NodeId("here".into()))?;
    let write = StripeWrite {
        file: FileId(42),
        path: "/films/a.mkv",
        layout: &layout,
        index: 0,
        generation: engine::next_generation(),
        data: &data,
    };
    let record = engine::write_stripe(store.as_ref(), &SpreadPlacement, &view, write)?;
    for c in &record.chunks {
        println!("  chunk {} on {} ({} bytes)", c.index, c.disk, c.size);
    }
    for lost in [1u16, 4] {
        let c = &record.chunks[usize::from(lost)];
        let addr = engine::chunk_addr(FileId(42), &layout, &record, lost);
        store.delete_chunk(&c.disk, &addr)?;
    }
    let read = engine::read_stripe(store.as_ref(), FileId(42), &layout, &record)?;
    if read.data != data {
        return Err("the stripe read back differs from what was written".into());
    }
    println!(
        "stripe read back identical with chunks 1 and 4 gone ({} reported damaged)",
        read.damaged.len()
    );

    // 3. A whole archive over it: files, directories and policies, chunks on the shelves.
    let meta = tempfile::tempdir()?;
    let policies = PolicySet::single(
        "small",
        StoragePolicy {
            k: 4,
            m: 2,
            stripe_size: 64 * 1024,
        },
    );
    let shelves = Arc::new(ShelfStore::new(6, 1 << 30));
    let archive = LocalArchive::builder(meta.path())
        .store(shelves.clone())
        .policies(policies)
        .open()?;
    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
    archive.write_file("/docs/report.pdf", &file[..])?;
    if archive.read_to_vec("/docs/report.pdf")? != file {
        return Err("the archived file read back differs".into());
    }
    let held: usize = shelves
        .ids()
        .iter()
        .map(|d| shelves.scan(d).map(|c| c.len()))
        .sum::<Result<_, _>>()?;
    println!("archived /docs/report.pdf: 300000 bytes, {held} chunks on the shelves");
    Ok(())
}
