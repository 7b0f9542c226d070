//! Repairing one stripe: read `k` good chunks, code the stripe again, and write the chunks
//! to replace (lost ones, and good ones on a crowded node or disk) to disks placement
//! chooses, never one that holds another chunk of the stripe. The caller commits the new
//! locations through the metadata log, and only then deletes the copies they replace: a
//! crash at any point leaves the stripe as it was, plus at most some unreferenced chunks.
//!
//! Blocking, like the store.

use super::assess::{ChunkHealth, Liveness, StripeHealth};
use crate::chunk::ChunkFile;
use crate::engine::{self, chunk_addr, EngineError};
use crate::ids::{ChunkKey, FileId};
use crate::meta::{ChunkRecord, ChunkState, FileLayout, StripeRecord};
use crate::placement::{ClusterView, DiskRef, More, PlacementError, PlacementPolicy};
use crate::policy::StoragePolicy;
use crate::store::{ChunkStore, StoreError};
use crate::stripe::ErasureCodec;

/// Why a stripe could not be repaired (it stays as it was).
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Fewer than `k` chunks could be read.
    #[error(transparent)]
    Read(#[from] EngineError),
    /// No disks to put the new chunks on.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A new chunk could not be stored.
    #[error("store rebuilt chunk {index}: {source}")]
    Write {
        /// The shard index.
        index: u16,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// The new chunks of a repaired stripe, to commit with `MetadataOp::ReplaceChunks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// One record per chunk written, on its new disk.
    pub chunks: Vec<ChunkRecord>,
    /// Bytes read and written.
    pub bytes: u64,
}

/// Rebuilds the chunks `health` says to rebuild or move, for stripe `s` of `file` (at
/// `path`, recorded in the new chunks' folder index). On failure, chunks already written
/// are deleted again.
pub fn repair_stripe(
    store: &dyn ChunkStore,
    placement: &dyn PlacementPolicy,
    view: &ClusterView,
    live: &Liveness,
    (file, path, layout): (FileId, &str, &FileLayout),
    s: &StripeRecord,
    health: &StripeHealth,
) -> Result<Rebuilt, RepairError> {
    let mut replace: Vec<u16> = health.rebuild.clone();
    replace.extend(&health.crowded);
    replace.sort_unstable();
    replace.dedup();
    if replace.is_empty() {
        return Ok(Rebuilt {
            chunks: Vec::new(),
            bytes: 0,
        });
    }
    // Read from the good chunks only.
    let readable = StripeRecord {
        chunks: s
            .chunks
            .iter()
            .filter(|c| live.chunk(c) == ChunkHealth::Ok)
            .cloned()
            .collect(),
        ..s.clone()
    };
    let read = engine::read_stripe(store, file, layout, &readable)?;
    for d in read.damaged.iter().filter(|d| d.recordable) {
        if !replace.contains(&d.chunk.index) {
            replace.push(d.chunk.index);
        }
    }
    let codec = ErasureCodec::new(usize::from(s.k), usize::from(s.m)).map_err(|source| {
        EngineError::Decode {
            file,
            stripe: s.index,
            source,
        }
    })?;
    let enc = codec.encode(&read.data);
    let disk_of = |c: &ChunkRecord| DiskRef {
        node: c.node.clone(),
        disk: c.disk.clone(),
    };
    // Chunks that stay hold their place. A good chunk being moved (crowded) must land
    // elsewhere: its disk is excluded. A missing or corrupt chunk's disk still works, so the
    // chunk may be written there again (the same key replaces the bad file in place, and a
    // copy elsewhere makes the bad one garbage, deleted after the commit).
    let keep: Vec<DiskRef> = s
        .chunks
        .iter()
        .filter(|c| !replace.contains(&c.index))
        .map(disk_of)
        .collect();
    let exclude: Vec<DiskRef> = s
        .chunks
        .iter()
        .filter(|c| replace.contains(&c.index))
        .filter(|c| {
            health.crowded.contains(&c.index)
                || !matches!(
                    live.chunk(c),
                    ChunkHealth::Ok | ChunkHealth::Missing | ChunkHealth::Corrupt
                )
        })
        .map(disk_of)
        .collect();
    let policy = StoragePolicy {
        k: s.k,
        m: s.m,
        stripe_size: layout.stripe_size,
    };
    let shard_len = enc.shards.first().map_or(0, Vec::len) as u64;
    let more = More {
        count: replace.len(),
        chunk_size: shard_len + 4096,
        keep: &keep,
        exclude: &exclude,
    };
    let targets = placement.place_more(&layout.policy, &policy, more, view)?;
    let start = s.index * layout.stripe_size;
    let chunks: Vec<ChunkFile> = replace
        .iter()
        .map(|&i| {
            let key = ChunkKey {
                file,
                stripe: s.index,
                generation: s.generation,
                index: i,
            };
            ChunkFile::new(
                key,
                start,
                start + s.len,
                s.k,
                s.m,
                s.crc,
                enc.shards[usize::from(i)].clone(),
            )
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .zip(&targets)
            .map(|(chunk, t)| {
                scope.spawn(move || store.put_chunk(&t.disk, &layout.folder, path, chunk))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("chunk writer panicked"))
            .collect()
    });
    let mut records = Vec::new();
    let mut failure = None;
    for ((r, t), &index) in results.into_iter().zip(&targets).zip(&replace) {
        match r {
            Ok(stored) => records.push(ChunkRecord {
                index,
                node: t.node.clone(),
                disk: stored.disk,
                size: stored.size,
                crc: stored.checksum,
                state: ChunkState::Ok,
            }),
            Err(source) => failure = Some(RepairError::Write { index, source }),
        }
    }
    if let Some(e) = failure {
        for r in &records {
            let _ = store.delete_chunk(&r.disk, &chunk_addr(file, layout, s, r.index));
        }
        return Err(e);
    }
    let bytes = read.data.len() as u64 + records.iter().map(|r| r.size).sum::<u64>();
    Ok(Rebuilt {
        chunks: records,
        bytes,
    })
}
