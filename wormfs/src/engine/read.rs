//! Reading one stripe.

use super::EngineError;
use crate::ids::{ChunkKey, FileId};
use crate::meta::{ChunkRecord, ChunkState, FileLayout, StripeRecord};
use crate::store::StoreError;
use crate::store::{ChunkAddr, ChunkStore};
use crate::stripe::ErasureCodec;
use std::time::Duration;

/// A stripe read back, with the chunks found damaged on the way (to report for repair).
#[derive(Debug)]
pub struct StripeRead {
    /// The stripe's bytes.
    pub data: Vec<u8>,
    /// Chunks that were missing or corrupt.
    pub damaged: Vec<DamagedChunk>,
}

/// A chunk found missing or corrupt while reading.
#[derive(Clone, Debug)]
pub struct DamagedChunk {
    /// The chunk as metadata records it.
    pub chunk: ChunkRecord,
    /// [`ChunkState::Missing`] or [`ChunkState::Corrupt`].
    pub state: ChunkState,
    /// What the store said.
    pub reason: String,
    /// False when the chunk could not be asked for (its node unreachable): it may be fine,
    /// so it is not recorded as damaged.
    pub recordable: bool,
}

/// How long the first read of a chunk may take, when the stripe has other chunks to turn
/// to, before the reader reads those instead (a hedge against a slow or frozen node: the
/// store's own patience, for a node that may be only busy, is longer). A chunk given up on
/// this way is asked again, with the store's full patience, only when the other chunks do
/// not make `k`. Stores with no slow path (local disks) ignore it.
pub const HEDGE_AFTER: Duration = Duration::from_millis(500);

/// Reads `k` good chunks of stripe `s` of `file` (data chunks first, then local ones), verifies each chunk's
/// checksums, decodes when a data chunk is missing or bad, and checks the stripe checksum.
pub fn read_stripe(
    store: &dyn ChunkStore,
    file: FileId,
    layout: &FileLayout,
    s: &StripeRecord,
) -> Result<StripeRead, EngineError> {
    if let Some(data) = &s.inline {
        return Ok(StripeRead {
            data: inline_bytes(file, s, data)?.to_vec(),
            damaged: Vec::new(),
        });
    }
    let (k, m) = (usize::from(s.k), usize::from(s.m));
    let codec = ErasureCodec::new(k, m).map_err(|source| EngineError::Decode {
        file,
        stripe: s.index,
        source,
    })?;
    if let Some(data) = read_data_chunks(store, file, layout, s, &codec) {
        return Ok(StripeRead {
            data,
            damaged: Vec::new(),
        });
    }
    let mut order: Vec<&ChunkRecord> = s.chunks.iter().collect();
    // chunks of nodes that answer first (a hung node's chunk is read last, not waited for
    // stripe after stripe); among them data shards (0..k) first, then parity chunks on this
    // node's own disks
    order.sort_by_key(|c| {
        (
            !store.is_responsive(&c.disk),
            usize::from(c.index) >= k,
            !store.is_local(&c.disk),
            c.index,
        )
    });
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; k + m];
    let mut damaged = Vec::new();
    let mut good = 0;
    let read = |c: &ChunkRecord, patience: Option<Duration>| {
        let addr = chunk_addr(file, layout, s, c.index);
        match patience {
            Some(p) => store.read_chunk_within(&c.disk, &addr, p),
            None => store.read_chunk(&c.disk, &addr),
        }
    };
    // The first k chunks (the data chunks when all are there) are read at once, from their
    // disks in parallel, each given HEDGE_AFTER when the code has other chunks to turn to;
    // each missing, bad or late one is replaced by the next chunk in order.
    let hedge = (m > 0).then_some(HEDGE_AFTER);
    let (first, rest) = order.split_at(k.min(order.len()));
    let first_reads: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = first
            .iter()
            .map(|c| scope.spawn(move || read(c, hedge)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("chunk reader panicked"))
            .collect()
    });
    let mut results: Vec<(&ChunkRecord, Result<crate::chunk::ChunkFile, StoreError>)> =
        first.iter().copied().zip(first_reads).collect();
    let mut rest = rest.iter();
    // chunks whose node did not answer within the hedge: asked again, with the store's
    // full patience, only if the other chunks do not make k
    let mut late: Vec<&ChunkRecord> = Vec::new();
    let mut late_asked = false;
    while let Some((c, r)) = results.pop() {
        match r {
            Ok(chunk) if usize::from(c.index) < k + m => {
                shards[usize::from(c.index)] = Some(chunk.data);
                good += 1;
            }
            Ok(_) => damaged.push(DamagedChunk {
                chunk: c.clone(),
                state: ChunkState::Corrupt,
                reason: format!("chunk index {} is outside the code", c.index),
                recordable: true,
            }),
            Err(StoreError::Remote { .. }) if !late_asked && hedge.is_some() => late.push(c),
            Err(e) => {
                let state = match e {
                    StoreError::Corrupt { .. } => ChunkState::Corrupt,
                    _ => ChunkState::Missing,
                };
                damaged.push(DamagedChunk {
                    chunk: c.clone(),
                    state,
                    recordable: !matches!(e, StoreError::Remote { .. }),
                    reason: e.to_string(),
                })
            }
        }
        if good + results.len() < k {
            if let Some(next) = rest.next() {
                results.push((next, read(next, None)));
            } else if !late_asked {
                late_asked = true;
                for c in late.drain(..) {
                    results.push((c, read(c, None)));
                }
            }
        }
    }
    if good < k {
        let causes = damaged
            .iter()
            .map(|d| {
                format!(
                    "chunk {} on disk {}: {}",
                    d.chunk.index, d.chunk.disk, d.reason
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(EngineError::Unreadable {
            file,
            stripe: s.index,
            present: good,
            needed: k,
            total: k + m,
            causes,
        });
    }
    let data = codec
        .decode(shards, s.len as usize, s.crc)
        .map_err(|source| EngineError::Decode {
            file,
            stripe: s.index,
            source,
        })?;
    Ok(StripeRead { data, damaged })
}

/// Where chunk `index` of stripe `s` of `file` lives on its disk.
pub fn chunk_addr(file: FileId, layout: &FileLayout, s: &StripeRecord, index: u16) -> ChunkAddr {
    ChunkAddr {
        folder: layout.folder.clone(),
        key: ChunkKey {
            file,
            stripe: s.index,
            generation: s.generation,
            index,
        },
    }
}

/// The common case: every data chunk is there, sound and on this node. Each is read straight into its
/// place in the stripe buffer (no shard buffers, no decoding), the k reads in parallel.
/// `None` when any data chunk is missing, marked damaged or fails its checks, or the
/// stripe fails its checksum: the caller then takes the general path, which decodes
/// around the bad chunks and reports them.
fn read_data_chunks(
    store: &dyn ChunkStore,
    file: FileId,
    layout: &FileLayout,
    s: &StripeRecord,
    codec: &ErasureCodec,
) -> Option<Vec<u8>> {
    let k = usize::from(s.k);
    let mut data_chunks: Vec<&ChunkRecord> = s
        .chunks
        .iter()
        .filter(|c| usize::from(c.index) < k && c.state == ChunkState::Ok)
        .collect();
    // Only local chunks: a failed one costs nothing to read again on the general path,
    // where an unreachable node's timeout would be paid twice.
    if data_chunks.iter().any(|c| !store.is_local(&c.disk)) {
        return None;
    }
    data_chunks.sort_by_key(|c| c.index);
    data_chunks.dedup_by_key(|c| c.index);
    if data_chunks.len() != k {
        return None;
    }
    let len = usize::try_from(s.len).ok()?;
    let shard_len = codec.shard_len(len).max(1);
    let mut out = vec![0u8; len];
    let ok = std::thread::scope(|scope| {
        let handles: Vec<_> = out
            .chunks_mut(shard_len)
            .zip(&data_chunks)
            .map(|(dest, c)| {
                let addr = chunk_addr(file, layout, s, c.index);
                scope.spawn(move || store.read_chunk_into(&c.disk, &addr, dest).is_ok())
            })
            .collect();
        handles
            .into_iter()
            .all(|h| h.join().expect("chunk reader panicked"))
    });
    (ok && crate::checksum::crc32(&out) == s.crc).then_some(out)
}

/// The bytes of a stripe kept in the metadata, checked against its length and checksum.
fn inline_bytes<'a>(
    file: FileId,
    s: &StripeRecord,
    data: &'a [u8],
) -> Result<&'a [u8], EngineError> {
    if data.len() as u64 != s.len || crate::checksum::crc32(data) != s.crc {
        return Err(EngineError::InlineDamaged {
            file,
            stripe: s.index,
            reason: format!(
                "{} bytes where the record says {} bytes with checksum {:08x}",
                data.len(),
                s.len,
                s.crc
            ),
        });
    }
    Ok(data)
}

/// The pieces of stripe `s`'s data chunks that hold bytes `offset..offset + len` of it.
fn data_pieces(
    s: &StripeRecord,
    offset: u64,
    len: u64,
) -> impl Iterator<Item = crate::stripe::ShardPiece> {
    let shard_len = s.len.div_ceil(u64::from(s.k.max(1))).max(1);
    crate::stripe::shard_pieces(s.len, shard_len, offset, len)
}

/// [`read_stripe_range`] as a future that holds no thread, when one data chunk on another
/// node holds the whole range (most small reads) and the store can read it so (see
/// [`ChunkStore::remote_range`]); `None` otherwise, and the caller reads on a blocking
/// thread. The future fails, as [`read_stripe_range`] does, when the chunk is missing,
/// damaged, short or its node does not answer: the caller then reads the whole stripe.
pub fn remote_stripe_range(
    store: &dyn ChunkStore,
    file: FileId,
    layout: &FileLayout,
    s: &StripeRecord,
    offset: u64,
    len: u64,
) -> Option<crate::store::RangeFuture> {
    if s.inline.is_some() {
        return None;
    }
    let mut pieces = data_pieces(s, offset, len);
    let (piece, None) = (pieces.next()?, pieces.next()) else {
        return None;
    };
    let index = piece.shard as u16;
    let chunk = s.chunks.iter().find(|c| c.index == index)?;
    let addr = chunk_addr(file, layout, s, index);
    let read = store.remote_range(&chunk.disk, &addr, piece.offset, piece.len)?;
    let disk = chunk.disk.clone();
    Some(Box::pin(async move {
        let bytes = read.await?;
        if bytes.len() as u64 != piece.len {
            return Err(StoreError::NotFound {
                disk,
                key: addr.key,
            });
        }
        Ok(bytes)
    }))
}

/// Reads bytes `offset..offset + len` of stripe `s` (clipped to the stripe) from the data
/// chunks that hold them, verifying only the blocks read. Any missing or damaged chunk is an
/// error: the caller then reads the whole stripe with [`read_stripe`], which decodes around
/// it and reports it.
pub fn read_stripe_range(
    store: &dyn ChunkStore,
    file: FileId,
    layout: &FileLayout,
    s: &StripeRecord,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, crate::store::StoreError> {
    if let Some(data) = &s.inline {
        // Bytes that fail their checks are an error here: the caller falls back to
        // `read_stripe`, which reports them as damaged.
        let Ok(data) = inline_bytes(file, s, data) else {
            return Err(StoreError::NotFound {
                disk: crate::ids::DiskId(String::new()),
                key: chunk_addr(file, layout, s, 0).key,
            });
        };
        let lo = offset.min(s.len) as usize;
        let hi = offset.saturating_add(len).min(s.len) as usize;
        return Ok(data[lo..hi].to_vec());
    }
    let mut out = Vec::with_capacity(len.min(s.len.saturating_sub(offset)) as usize);
    for piece in data_pieces(s, offset, len) {
        let (index, within, take) = (piece.shard as u16, piece.offset, piece.len);
        let chunk = s.chunks.iter().find(|c| c.index == index);
        let addr = chunk_addr(file, layout, s, index);
        let Some(chunk) = chunk else {
            return Err(StoreError::NotFound {
                disk: crate::ids::DiskId(String::new()),
                key: addr.key,
            });
        };
        if !store.is_responsive(&chunk.disk) {
            // the whole-stripe read decodes around it instead of waiting for it
            return Err(StoreError::Remote {
                node: crate::ids::NodeId(String::new()),
                disk: chunk.disk.clone(),
                reason: "its node does not answer".into(),
            });
        }
        let bytes = store.read_chunk_range(&chunk.disk, &addr, within, take)?;
        if bytes.len() as u64 != take {
            return Err(StoreError::NotFound {
                disk: chunk.disk.clone(),
                key: addr.key,
            });
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}
