//! Checking one stripe's chunks: the shallow check (a stat of each chunk: present, the
//! recorded size) and the deep check (read and verify every chunk, decode the stripe,
//! verify its checksum, and code its parity again to compare with the parity chunks, so
//! parity rot is found before a second loss needs that parity).
//!
//! Blocking, like the store: a worker runs them on blocking threads.

use super::assess::{ChunkHealth, Liveness};
use crate::chunk::ChunkFile;
use crate::engine::chunk_addr;
use crate::ids::FileId;
use crate::meta::{ChunkRecord, ChunkState, FileLayout, StripeRecord};
use crate::store::{ChunkStore, StoreError};
use crate::stripe::ErasureCodec;

/// A chunk found damaged by a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The chunk's shard index.
    pub index: u16,
    /// [`ChunkState::Missing`] or [`ChunkState::Corrupt`].
    pub state: ChunkState,
    /// What was found, for the log.
    pub reason: String,
}

/// What checking one stripe found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StripeCheck {
    /// Chunks found damaged (not already recorded as damaged).
    pub findings: Vec<Finding>,
    /// Chunks checked.
    pub checked: u64,
    /// Chunks not checked: their node did not answer, or the store failed.
    pub skipped: u64,
    /// Bytes read (deep check).
    pub bytes: u64,
    /// The deep check verified the whole stripe: every chunk it could reach was read and
    /// matched the stripe and its parity.
    pub verified: bool,
}

/// The chunks worth checking: recorded as good, on an online node and a working disk.
fn checkable<'a>(s: &'a StripeRecord, live: &Liveness) -> Vec<&'a ChunkRecord> {
    s.chunks
        .iter()
        .filter(|c| live.chunk(c) == ChunkHealth::Ok)
        .collect()
}

/// Stats every checkable chunk of `s`: a missing file or one of another size than recorded
/// is a finding.
pub fn shallow_check(
    store: &dyn ChunkStore,
    file: FileId,
    layout: &FileLayout,
    s: &StripeRecord,
    live: &Liveness,
) -> StripeCheck {
    let mut out = StripeCheck::default();
    for c in checkable(s, live) {
        let addr = chunk_addr(file, layout, s, c.index);
        match store.check_chunk(&c.disk, &addr) {
            Ok(Some(size)) if size == c.size => out.checked += 1,
            Ok(Some(size)) => {
                out.checked += 1;
                out.findings.push(Finding {
                    index: c.index,
                    state: ChunkState::Corrupt,
                    reason: format!("chunk file has {size} bytes, {} recorded", c.size),
                });
            }
            Ok(None) => {
                out.checked += 1;
                out.findings.push(Finding {
                    index: c.index,
                    state: ChunkState::Missing,
                    reason: format!("chunk file is missing from disk {}", c.disk),
                });
            }
            Err(e) if e.is_chunk_damage() => {
                out.checked += 1;
                out.findings.push(finding(c.index, &e));
            }
            Err(_) => out.skipped += 1,
        }
    }
    out
}

fn finding(index: u16, e: &StoreError) -> Finding {
    Finding {
        index,
        state: match e {
            StoreError::Corrupt { .. } => ChunkState::Corrupt,
            _ => ChunkState::Missing,
        },
        reason: e.to_string(),
    }
}

/// Reads and verifies every checkable chunk of `s` (header, block and chunk checksums, and
/// that it belongs to this stripe), decodes the stripe and checks its checksum, then codes
/// the stripe again and compares every chunk read with what it should hold: a data or
/// parity chunk that passes its own checksums but does not match the stripe is corrupt.
pub fn deep_check(
    store: &dyn ChunkStore,
    file: FileId,
    layout: &FileLayout,
    s: &StripeRecord,
    live: &Liveness,
) -> StripeCheck {
    let mut out = StripeCheck::default();
    let k = usize::from(s.k);
    let width = k + usize::from(s.m);
    let Ok(codec) = ErasureCodec::new(k, usize::from(s.m)) else {
        out.skipped = s.chunks.len() as u64;
        return out;
    };
    let shard_len = codec.shard_len(s.len as usize);
    let targets = checkable(s, live);
    let reads: Vec<Result<ChunkFile, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|c| {
                let addr = chunk_addr(file, layout, s, c.index);
                scope.spawn(move || store.read_chunk(&c.disk, &addr))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("chunk reader panicked"))
            .collect()
    });
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; width];
    for (c, r) in targets.iter().zip(reads) {
        match r {
            Ok(chunk) => {
                out.checked += 1;
                out.bytes += chunk.data.len() as u64;
                let h = &chunk.header;
                let wrong = if usize::from(c.index) >= width {
                    Some(format!(
                        "shard index {} is outside a {width}-wide code",
                        c.index
                    ))
                } else if (h.k, h.m) != (s.k, s.m) || h.stripe_crc != s.crc {
                    Some(format!(
                        "header says {}+{} with stripe checksum {:08x}; the stripe is {}+{} with {:08x}",
                        h.k, h.m, h.stripe_crc, s.k, s.m, s.crc
                    ))
                } else if chunk.data.len() != shard_len {
                    Some(format!(
                        "{} data bytes where the stripe's shards have {shard_len}",
                        chunk.data.len()
                    ))
                } else {
                    None
                };
                match wrong {
                    Some(reason) => out.findings.push(Finding {
                        index: c.index,
                        state: ChunkState::Corrupt,
                        reason,
                    }),
                    None => shards[usize::from(c.index)] = Some(chunk.data),
                }
            }
            Err(e) if e.is_chunk_damage() => {
                out.checked += 1;
                out.findings.push(finding(c.index, &e));
            }
            Err(_) => out.skipped += 1,
        }
    }
    let Some((data, culprit)) = decode_trusting(&codec, &shards, s) else {
        // fewer than k chunks agree with the stripe's checksum: nothing to compare with
        return out;
    };
    if let Some(i) = culprit {
        out.findings.push(Finding {
            index: i as u16,
            state: ChunkState::Corrupt,
            reason: "passes its own checksums but does not decode to the stripe".into(),
        });
        shards[i] = None;
    }
    let expected = codec.encode(&data);
    for (i, shard) in shards.iter().enumerate() {
        if let Some(shard) = shard {
            if *shard != expected.shards[i] {
                let what = if i < k { "data" } else { "parity" };
                out.findings.push(Finding {
                    index: i as u16,
                    state: ChunkState::Corrupt,
                    reason: format!(
                        "{what} chunk passes its own checksums but does not match the stripe coded again"
                    ),
                });
            }
        }
    }
    out.findings.sort_by_key(|f| f.index);
    out.findings.dedup_by_key(|f| f.index);
    // verified: every chunk of the stripe was read (none offline, failed or unreachable)
    out.verified = out.skipped == 0 && targets.len() == s.chunks.len();
    out
}

/// Decodes the stripe from `shards`, checked against its checksum. When all of them
/// together do not give the stripe, tries leaving each one out, and names the one whose
/// absence makes it decode (a chunk that passes its own checks but holds other bytes).
fn decode_trusting(
    codec: &ErasureCodec,
    shards: &[Option<Vec<u8>>],
    s: &StripeRecord,
) -> Option<(Vec<u8>, Option<usize>)> {
    let k = codec.data_shards();
    let present = shards.iter().filter(|x| x.is_some()).count();
    if present < k {
        return None;
    }
    if let Ok(d) = codec.decode(shards.to_vec(), s.len as usize, s.crc) {
        return Some((d, None));
    }
    if present == k {
        return None;
    }
    for i in (0..shards.len()).filter(|&i| shards[i].is_some()) {
        let mut without = shards.to_vec();
        without[i] = None;
        if let Ok(d) = codec.decode(without, s.len as usize, s.crc) {
            return Some((d, Some(i)));
        }
    }
    None
}
