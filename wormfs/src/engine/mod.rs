//! The stripe engine over a [`ChunkStore`]: code a stripe, place its chunks, store them
//! durably and describe them as a [`crate::meta::StripeRecord`]; and the way back, reading `k` chunks,
//! verifying them and decoding the stripe.
//!
//! Blocking, like the store it drives. A node runs it on blocking threads; the cluster
//! drives remote disks through [`crate::net::Transport`] with the same steps.

mod read;
mod write;

pub use read::{read_stripe, DamagedChunk, StripeRead};
pub use write::{write_stripe, StripeWrite};

use crate::ids::{FileId, NodeId};
use crate::placement::{ClusterView, DiskView, PlacementError};
use crate::store::{ChunkStore, StoreError};
use crate::stripe::CodecError;

/// Why a stripe could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Not enough disks to place the stripe.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The stripe's chunks could not all be stored, even on other disks.
    #[error("stripe {stripe} of file {file}: chunk {chunk} could not be stored on any disk; last error: {last}")]
    ChunkWrite {
        /// The file.
        file: FileId,
        /// The stripe.
        stripe: u64,
        /// The shard index.
        chunk: u16,
        /// The last store error.
        last: StoreError,
    },
    /// Too few good chunks to rebuild the stripe.
    #[error("stripe {stripe} of file {file} is unreadable: {present} good chunks of {total}, {needed} needed; {causes}")]
    Unreadable {
        /// The file.
        file: FileId,
        /// The stripe.
        stripe: u64,
        /// Good chunks found.
        present: usize,
        /// Chunks needed (k).
        needed: usize,
        /// All chunks (k + m).
        total: usize,
        /// What was wrong with the others.
        causes: String,
    },
    /// Decoding failed (a stripe checksum mismatch after decoding).
    #[error("stripe {stripe} of file {file}: {source}")]
    Decode {
        /// The file.
        file: FileId,
        /// The stripe.
        stripe: u64,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The store failed in a way that is not about one chunk.
    #[error(transparent)]
    Store(StoreError),
}

/// The disks of one node's store as placement sees them.
pub fn local_view(node: &NodeId, store: &dyn ChunkStore) -> Result<ClusterView, StoreError> {
    Ok(ClusterView {
        disks: store
            .disks()?
            .into_iter()
            .map(|d| DiskView {
                node: node.clone(),
                disk: d.disk,
                total: d.total,
                free: d.free,
                usable: d.healthy,
            })
            .collect(),
    })
}

/// A new stripe generation: the wall clock in nanoseconds, made strictly increasing within
/// the process, so a rewritten stripe never reuses the chunk keys of the one it replaces.
pub fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = crate::meta::Timestamp::now().0.max(1) as u64;
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}
