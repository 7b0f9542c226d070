//! Repairing one stripe: read `k` good chunks, code the stripe again, and write the chunks
//! to replace (lost ones, and good ones on a crowded node or disk) to disks placement
//! chooses, never one that holds another chunk of the stripe. The caller commits the new
//! locations through the metadata log, and only then deletes the copies they replace: a
//! crash at any point leaves the stripe as it was, plus at most some unreferenced chunks.
//!
//! Blocking, like the store.

use super::assess::{ChunkHealth, Liveness, StripeHealth};
use crate::chunk::ChunkFile;
use crate::engine::{chunk_addr, EngineError};
use crate::ids::{ChunkKey, FileId};
use crate::meta::{ChunkRecord, ChunkState, FileLayout, StripeRecord};
use crate::placement::{ClusterView, DiskRef, More, PlacementError, PlacementPolicy};
use crate::policy::StoragePolicy;
use crate::store::{ChunkStore, StoreError};
use crate::stripe::ErasureCodec;

/// Why a stripe could not be repaired (it stays as it was).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    let codec = ErasureCodec::new(usize::from(s.k), usize::from(s.m)).map_err(|source| {
        EngineError::Decode {
            file,
            stripe: s.index,
            source,
        }
    })?;
    let read = read_shards(store, (file, layout), &readable, &codec)?;
    for index in &read.damaged {
        if !replace.contains(index) {
            replace.push(*index);
        }
    }
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
    let shard_len = read.shards.first().map_or(0, Vec::len) as u64;
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
                read.shards[usize::from(i)].clone(),
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
    let bytes = read.bytes + records.iter().map(|r| r.size).sum::<u64>();
    Ok(Rebuilt {
        chunks: records,
        bytes,
    })
}

/// Every shard of a stripe, rebuilt from `k` good chunks.
struct Shards {
    /// All `k + m` shards.
    shards: Vec<Vec<u8>>,
    /// Chunks found missing or corrupt on the way (whose node answered).
    damaged: Vec<u16>,
    /// Bytes read.
    bytes: u64,
}

/// Reads `k` chunks of `s` (data chunks first, then those on this machine), verified by
/// their checksums, reading more where one fails; computes the missing shards (data and
/// parity alike, only those: cheaper than decoding the stripe and coding it again) and
/// checks the data shards against the stripe checksum.
fn read_shards(
    store: &dyn ChunkStore,
    (file, layout): (FileId, &FileLayout),
    s: &StripeRecord,
    codec: &ErasureCodec,
) -> Result<Shards, EngineError> {
    let (k, width) = (usize::from(s.k), usize::from(s.k) + usize::from(s.m));
    let mut order: Vec<&ChunkRecord> = s
        .chunks
        .iter()
        .filter(|c| usize::from(c.index) < width)
        .collect();
    order.sort_by_key(|c| (usize::from(c.index) >= k, !store.is_local(&c.disk), c.index));
    let read = |c: &ChunkRecord| store.read_chunk(&c.disk, &chunk_addr(file, layout, s, c.index));
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; width];
    let (mut good, mut bytes, mut damaged, mut causes) = (0, 0u64, Vec::new(), Vec::new());
    let mut next = 0;
    while good < k && next < order.len() {
        // as many at once as are still needed, from their disks in parallel
        let want = (k - good).min(order.len() - next);
        let batch = &order[next..next + want];
        next += want;
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch.iter().map(|c| scope.spawn(move || read(c))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("chunk reader panicked"))
                .collect()
        });
        for (c, r) in batch.iter().zip(results) {
            match r {
                Ok(chunk) => {
                    bytes += chunk.data.len() as u64;
                    shards[usize::from(c.index)] = Some(chunk.data);
                    good += 1;
                }
                Err(e) => {
                    if !matches!(e, StoreError::Remote { .. }) {
                        damaged.push(c.index);
                    }
                    causes.push(format!("chunk {} on disk {}: {e}", c.index, c.disk));
                }
            }
        }
    }
    if good < k {
        return Err(EngineError::Unreadable {
            file,
            stripe: s.index,
            present: good,
            needed: k,
            total: width,
            causes: causes.join("; "),
        });
    }
    let decode_err = |source| EngineError::Decode {
        file,
        stripe: s.index,
        source,
    };
    codec.reconstruct_all(&mut shards).map_err(decode_err)?;
    let shards: Vec<Vec<u8>> = shards.into_iter().map(Option::unwrap_or_default).collect();
    let mut left = s.len as usize;
    let actual = crate::checksum::crc32_parts(shards.iter().take(k).map(|d| {
        let take = left.min(d.len());
        left -= take;
        &d[..take]
    }));
    if actual != s.crc || left != 0 {
        return Err(decode_err(crate::stripe::CodecError::StripeChecksum {
            expected: s.crc,
            actual,
        }));
    }
    Ok(Shards {
        shards,
        damaged,
        bytes,
    })
}
