//! Writing one stripe.

use super::EngineError;
use crate::chunk::ChunkFile;
use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use crate::meta::{ChunkRecord, ChunkState, FileLayout, StripeRecord};
use crate::placement::{ClusterView, DiskRef, PlacementPolicy};
use crate::policy::StoragePolicy;
use crate::store::{ChunkStore, StoreError, StoredChunk};
use crate::stripe::ErasureCodec;

/// One stripe to write.
#[derive(Clone, Copy, Debug)]
pub struct StripeWrite<'a> {
    /// The file.
    pub file: FileId,
    /// The file's path now (recorded in the chunk folder's index).
    pub path: &'a str,
    /// The file's layout.
    pub layout: &'a FileLayout,
    /// The stripe's index.
    pub index: u64,
    /// The generation to write (see [`super::next_generation`]).
    pub generation: u64,
    /// The stripe's bytes (at most the stripe size).
    pub data: &'a [u8],
}

/// A stripe of at most `inline_max` bytes, kept in the metadata instead of in chunks:
/// the record for its commit, or `None` when the stripe is too big for that. Small files
/// then cost no chunk file, folder or index line on any disk, and one commit.
pub fn inline_stripe(
    index: u64,
    generation: u64,
    layout: &FileLayout,
    data: &[u8],
    inline_max: u64,
) -> Option<StripeRecord> {
    (data.len() as u64 <= inline_max).then(|| StripeRecord {
        index,
        generation,
        len: data.len() as u64,
        crc: crate::checksum::crc32(data),
        k: layout.k,
        m: layout.m,
        chunks: Vec::new(),
        inline: Some(data.to_vec()),
    })
}

/// The way from a stripe's bytes to the record that commits it, as a node writes it:
/// in the metadata when it fits in `inline_max` bytes ([`inline_stripe`]), else coded and
/// stored over the disks of `view` ([`write_stripe`]). `view` is asked for only then.
pub fn store_stripe(
    store: &dyn ChunkStore,
    placement: &dyn PlacementPolicy,
    view: impl FnOnce() -> Result<ClusterView, StoreError>,
    inline_max: u64,
    w: StripeWrite<'_>,
) -> Result<StripeRecord, EngineError> {
    if let Some(record) = inline_stripe(w.index, w.generation, w.layout, w.data, inline_max) {
        return Ok(record);
    }
    let view = view().map_err(EngineError::Store)?;
    write_stripe(store, placement, &view, w)
}

/// The disks placement chose for a stripe, those on this node first, in their order, then
/// the others in theirs: the chunks are assigned in shard order, so the data chunks land on
/// this node's disks as far as it holds any. Which disks hold the stripe does not change,
/// only which chunk each holds; a reader through this node (the writer's, as a rule) then
/// reads those data chunks from its own disks instead of over the network, and parity,
/// read only when a data chunk is lost, is what lies elsewhere.
fn local_first(mut targets: Vec<DiskRef>, is_local: impl Fn(&DiskId) -> bool) -> Vec<DiskRef> {
    // a stable sort: local (false) before remote (true)
    targets.sort_by_key(|t| !is_local(&t.disk));
    targets
}

/// Codes `w.data`, places its chunks over the disks of `view` (which `store` reaches),
/// stores each durably and returns the stripe's record, ready to commit. A chunk that
/// fails to store is placed on another disk; the write fails only when no disk is left for
/// it. On failure, the chunks already stored are removed again.
pub fn write_stripe(
    store: &dyn ChunkStore,
    placement: &dyn PlacementPolicy,
    view: &ClusterView,
    w: StripeWrite<'_>,
) -> Result<StripeRecord, EngineError> {
    let l = w.layout;
    let codec = ErasureCodec::new(usize::from(l.k), usize::from(l.m)).map_err(|source| {
        EngineError::Decode {
            file: w.file,
            stripe: w.index,
            source,
        }
    })?;
    let policy = StoragePolicy {
        k: l.k,
        m: l.m,
        stripe_size: l.stripe_size,
    };
    let enc = codec.encode(w.data);
    let shard_len = enc.shards.first().map_or(0, Vec::len) as u64;
    let chunk_size = shard_len + 4096; // the header, generously
    let placed = placement.place(&l.policy, &policy, chunk_size, view, &[])?;
    let targets = local_first(placed, |d| store.is_local(d));
    let start = w.index * l.stripe_size;
    let end = start + w.data.len() as u64;

    let chunks: Vec<ChunkFile> = enc
        .shards
        .into_iter()
        .enumerate()
        .map(|(i, shard)| {
            let key = ChunkKey {
                file: w.file,
                stripe: w.index,
                generation: w.generation,
                index: i as u16,
            };
            ChunkFile::new(key, start, end, l.k, l.m, enc.stripe_crc, shard)
        })
        .collect();
    // First attempt: every chunk to its disk at once, so the disks' fsyncs overlap.
    let first: Vec<Result<StoredChunk, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .zip(&targets)
            .map(|(chunk, target)| {
                scope.spawn(move || store.put_chunk(&target.disk, &l.folder, w.path, chunk))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("chunk writer panicked"))
            .collect()
    });
    let record = |stored: StoredChunk, index: u16, on: &NodeId| ChunkRecord {
        index,
        node: on.clone(),
        disk: stored.disk,
        size: stored.size,
        crc: stored.checksum,
        state: ChunkState::Ok,
    };
    let mut records: Vec<ChunkRecord> = Vec::with_capacity(targets.len());
    let mut retry: Vec<(usize, StoreError)> = Vec::new();
    for (i, r) in first.into_iter().enumerate() {
        match r {
            Ok(stored) => records.push(record(stored, i as u16, &targets[i].node)),
            Err(e) => retry.push((i, e)),
        }
    }
    // Then each failed chunk, one at a time, on another disk: not one that failed, not one
    // holding (or meant for) a chunk of this stripe.
    let mut failed: Vec<DiskRef> = retry.iter().map(|(i, _)| targets[*i].clone()).collect();
    let result = (|| {
        for (i, mut last) in retry {
            loop {
                let mut exclude = failed.clone();
                exclude.extend(targets.iter().cloned());
                exclude.extend(records.iter().map(|r| DiskRef {
                    node: r.node.clone(),
                    disk: r.disk.clone(),
                }));
                let one = StoragePolicy {
                    k: 1,
                    m: 0,
                    stripe_size: policy.stripe_size,
                };
                let Ok(mut t) = placement.place(&l.policy, &one, chunk_size, view, &exclude) else {
                    return Err(EngineError::ChunkWrite {
                        file: w.file,
                        stripe: w.index,
                        chunk: i as u16,
                        last,
                    });
                };
                let target = t.remove(0);
                match store.put_chunk(&target.disk, &l.folder, w.path, &chunks[i]) {
                    Ok(stored) => {
                        records.push(record(stored, i as u16, &target.node));
                        break;
                    }
                    Err(e) => {
                        failed.push(target);
                        last = e;
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for r in &records {
            let addr = crate::store::ChunkAddr {
                folder: l.folder.clone(),
                key: ChunkKey {
                    file: w.file,
                    stripe: w.index,
                    generation: w.generation,
                    index: r.index,
                },
            };
            let _ = store.delete_chunk(&r.disk, &addr);
        }
        return Err(e);
    }
    records.sort_by_key(|r| r.index);
    Ok(StripeRecord {
        index: w.index,
        generation: w.generation,
        len: w.data.len() as u64,
        crc: enc.stripe_crc,
        k: l.k,
        m: l.m,
        chunks: records,
        inline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &str, disk: &str) -> DiskRef {
        DiskRef {
            node: node.into(),
            disk: disk.into(),
        }
    }

    #[test]
    fn this_nodes_disks_take_the_first_chunks_and_the_set_stays() {
        let placed = vec![
            at("n1", "a"),
            at("n2", "b"),
            at("n3", "c"),
            at("n2", "d"),
            at("n1", "e"),
            at("n3", "f"),
        ];
        let on_n2 = |d: &DiskId| d.0 == "b" || d.0 == "d";
        let ordered = local_first(placed.clone(), on_n2);
        assert_eq!(
            ordered,
            vec![
                at("n2", "b"),
                at("n2", "d"),
                at("n1", "a"),
                at("n3", "c"),
                at("n1", "e"),
                at("n3", "f"),
            ]
        );
        // nothing local, or all local: placement's order as it was
        assert_eq!(local_first(placed.clone(), |_| false), placed);
        assert_eq!(local_first(placed.clone(), |_| true), placed);
    }
}
