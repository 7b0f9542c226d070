//! The stripe engine over a [`ChunkStore`]: code a stripe, place its chunks, store them
//! durably and describe them as a [`crate::meta::StripeRecord`]; and the way back, reading `k` chunks,
//! verifying them and decoding the stripe.
//!
//! Blocking, like the store it drives. A node runs it on blocking threads; the cluster
//! drives remote disks through [`crate::net::Transport`] with the same steps.

mod read;
mod write;

pub use read::{
    chunk_addr, read_stripe, read_stripe_range, remote_stripe_range, DamagedChunk, StripeRead,
};
pub use write::{inline_stripe, store_stripe, write_stripe, StripeWrite};

use crate::ids::{FileId, NodeId};
use crate::placement::{ClusterView, DiskView, PlacementError};
use crate::store::{ChunkStore, StoreError};
use crate::stripe::CodecError;

/// Why a stripe could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A stripe kept in the metadata does not match its own length or checksum.
    #[error("stripe {stripe} of file {file}, kept in the metadata, is damaged: {reason}")]
    InlineDamaged {
        /// The file.
        file: FileId,
        /// The stripe.
        stripe: u64,
        /// What does not match.
        reason: String,
    },
    /// The store failed in a way that is not about one chunk.
    #[error(transparent)]
    Store(StoreError),
}

/// The disks of `store` as placement sees them (see [`ChunkStore::placement_view`]).
pub fn local_view(node: &NodeId, store: &dyn ChunkStore) -> Result<ClusterView, StoreError> {
    store.placement_view(node)
}

/// Disks that all sit on `node`, as placement sees them.
pub fn view_of(node: &NodeId, disks: Vec<crate::store::DiskStatus>) -> ClusterView {
    ClusterView {
        disks: disks
            .into_iter()
            .map(|d| DiskView {
                node: node.clone(),
                disk: d.disk,
                total: d.total,
                free: d.free,
                usable: d.healthy,
            })
            .collect(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DiskId;
    use crate::meta::FileLayout;
    use crate::placement::SpreadPlacement;
    use crate::store::{ChunkFolder, MemoryChunkStore};

    fn layout() -> FileLayout {
        FileLayout {
            policy: "t".into(),
            k: 2,
            m: 1,
            stripe_size: 8192,
            folder: ChunkFolder::for_path("/f"),
        }
    }

    fn store(n: usize) -> MemoryChunkStore {
        MemoryChunkStore::new(
            &(0..n)
                .map(|i| (DiskId(format!("d{i}")), 1 << 20))
                .collect::<Vec<_>>(),
        )
    }

    fn write(
        s: &MemoryChunkStore,
        view: &ClusterView,
        l: &FileLayout,
        data: &[u8],
    ) -> Result<crate::meta::StripeRecord, EngineError> {
        let w = StripeWrite {
            file: FileId(7),
            path: "/f",
            layout: l,
            index: 0,
            generation: 1,
            data,
        };
        write_stripe(s, &SpreadPlacement, view, w)
    }

    #[test]
    fn a_failing_disk_gets_its_chunk_moved_elsewhere() {
        let s = store(4);
        let node = NodeId("n".into());
        let view = local_view(&node, &s).unwrap(); // taken before the disk dies
        s.fail_disk(&DiskId("d0".into()));
        let l = layout();
        let data = vec![5u8; 5000];
        let rec = write(&s, &view, &l, &data).unwrap();
        let disks: Vec<_> = rec.chunks.iter().map(|c| c.disk.0.as_str()).collect();
        assert!(!disks.contains(&"d0"), "{disks:?}");
        let mut sorted = disks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "still one chunk per disk: {disks:?}");
        assert_eq!(read_stripe(&s, FileId(7), &l, &rec).unwrap().data, data);
    }

    /// A chunk on a slow disk (a frozen node) is given up on after the hedge and the stripe
    /// is decoded from the others, without waiting for it; with too few others, the slow
    /// chunk is waited for rather than the read failing.
    #[test]
    fn a_slow_chunk_is_read_around_and_waited_for_only_when_needed() {
        let s = store(3);
        let node = NodeId("n".into());
        let view = local_view(&node, &s).unwrap();
        let l = layout();
        let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
        let rec = write(&s, &view, &l, &data).unwrap();
        let disk_of = |index: u16| {
            rec.chunks
                .iter()
                .find(|c| c.index == index)
                .unwrap()
                .disk
                .clone()
        };
        let (d0, d1) = (disk_of(0), disk_of(1));
        s.slow_disk(&d0);
        let read = read_stripe(&s, FileId(7), &l, &rec).unwrap();
        assert_eq!(read.data, data);
        assert!(
            read.damaged.is_empty(),
            "a slow chunk is not damaged: {:?}",
            read.damaged
        );
        assert_eq!(s.slow_reads(&d0), 0, "the slow data chunk was waited for");
        // two of three slow: one of them must be waited for
        s.slow_disk(&d1);
        assert_eq!(read_stripe(&s, FileId(7), &l, &rec).unwrap().data, data);
        assert!(s.slow_reads(&d0) + s.slow_reads(&d1) >= 1);
    }

    #[test]
    fn no_disk_left_fails_and_leaves_nothing_behind() {
        let s = store(3);
        let node = NodeId("n".into());
        let view = local_view(&node, &s).unwrap();
        s.fail_disk(&DiskId("d1".into()));
        let err = write(&s, &view, &layout(), &[1u8; 100]).unwrap_err();
        assert!(
            matches!(err, EngineError::ChunkWrite { chunk: 1, .. }),
            "{err}"
        );
        for d in ["d0", "d2"] {
            assert!(
                s.scan(&DiskId(d.into())).unwrap().is_empty(),
                "chunks left on {d}"
            );
        }
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;
    use crate::ids::DiskId;
    use crate::meta::FileLayout;
    use crate::placement::SpreadPlacement;
    use crate::store::{ChunkFolder, MemoryChunkStore};

    /// Six disks in memory and stripe 0 of `file` at `path` (4+2, 1 MiB stripes) written
    /// with `len` patterned bytes.
    fn written(
        file: FileId,
        path: &str,
        len: u32,
    ) -> (
        MemoryChunkStore,
        FileLayout,
        Vec<u8>,
        crate::meta::StripeRecord,
    ) {
        let s = MemoryChunkStore::new(
            &(0..6)
                .map(|i| (DiskId(format!("d{i}")), 1 << 24))
                .collect::<Vec<_>>(),
        );
        let view = local_view(&NodeId("n".into()), &s).unwrap();
        let l = FileLayout {
            policy: "t".into(),
            k: 4,
            m: 2,
            stripe_size: 1 << 20,
            folder: ChunkFolder::for_path(path),
        };
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let w = StripeWrite {
            file,
            path,
            layout: &l,
            index: 0,
            generation: 1,
            data: &data,
        };
        let rec = write_stripe(&s, &SpreadPlacement, &view, w).unwrap();
        (s, l, data, rec)
    }

    #[test]
    fn ranges_match_the_whole_stripe() {
        let (s, l, data, rec) = written(FileId(3), "/r", 1_000_003);
        for (off, len) in [
            (0u64, 4096u64),
            (250_000, 10),
            (249_990, 30),
            (999_999, 100),
            (0, 1_000_003),
            (1_000_003, 5),
        ] {
            let got = read_stripe_range(&s, FileId(3), &l, &rec, off, len).unwrap();
            let lo = (off as usize).min(data.len());
            let hi = ((off + len) as usize).min(data.len());
            assert_eq!(got, &data[lo..hi], "{off}+{len}");
        }
        s.fail_disk(&rec.chunks[1].disk);
        assert!(
            read_stripe_range(&s, FileId(3), &l, &rec, 250_001, 10).is_err(),
            "a lost data chunk is an error, for the caller to decode"
        );
    }

    #[test]
    fn a_bad_data_chunk_leaves_the_direct_path_for_decoding_and_is_reported() {
        let (s, l, data, rec) = written(FileId(4), "/d", 777_777);
        let clean = read_stripe(&s, FileId(4), &l, &rec).unwrap();
        assert!(clean.data == data && clean.damaged.is_empty());
        // rot in data chunk 2: the stripe still reads exact, decoded from parity
        let bad = rec.chunks.iter().find(|c| c.index == 2).unwrap();
        let addr = crate::store::ChunkAddr {
            folder: l.folder.clone(),
            key: crate::ids::ChunkKey {
                file: FileId(4),
                stripe: 0,
                generation: 1,
                index: 2,
            },
        };
        assert!(s.corrupt(&bad.disk, &addr, 500));
        let read = read_stripe(&s, FileId(4), &l, &rec).unwrap();
        assert!(read.data == data);
        assert_eq!(
            read.damaged
                .iter()
                .map(|d| (d.chunk.index, d.state))
                .collect::<Vec<_>>(),
            vec![(2, crate::meta::ChunkState::Corrupt)]
        );
    }
}
