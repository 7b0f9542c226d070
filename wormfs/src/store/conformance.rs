//! One conformance suite for every [`ChunkStore`]: the disk store, the memory store and
//! the cluster store pass it, and a store of your own can run it too (feature
//! `conformance`):
//!
//! ```ignore
//! use wormfs::store::conformance::{run, Subject};
//! let store = MyStore::new(/* four disks or more */);
//! run(&Subject {
//!     store: &store,
//!     disks: store.disk_ids(),
//!     corrupt: &|disk, addr| store.flip_a_byte(disk, addr),
//! });
//! ```
//!
//! [`run`] panics, naming the broken expectation, at the first check the store fails:
//! call it from a `#[test]`.

use super::*;
use crate::chunk::ChunkFile;
use crate::ids::{ChunkKey, DiskId, FileId};
use crate::stripe::ErasureCodec;

/// A store under test, its disks, and a way to rot one of its chunks.
pub struct Subject<'a> {
    /// The store.
    pub store: &'a dyn ChunkStore,
    /// Its disks (at least three: a stripe's chunks go to distinct disks).
    pub disks: Vec<DiskId>,
    /// Damages the stored chunk at an address on a disk (flips a byte of its data), so
    /// that the suite can check the store notices.
    pub corrupt: &'a dyn Fn(&DiskId, &ChunkAddr),
}

impl std::fmt::Debug for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("disks", &self.disks)
            .finish()
    }
}

fn chunks_of(file: u64, stripe: u64, data: &[u8]) -> Vec<ChunkFile> {
    let codec = ErasureCodec::new(2, 1).unwrap();
    let enc = codec.encode(data);
    enc.shards
        .into_iter()
        .enumerate()
        .map(|(i, shard)| {
            let key = ChunkKey {
                file: FileId(file),
                stripe,
                generation: 1,
                index: i as u16,
            };
            ChunkFile::new(
                key,
                stripe * 4096,
                stripe * 4096 + data.len() as u64,
                2,
                1,
                enc.stripe_crc,
                shard,
            )
        })
        .collect()
}

fn addr(path: &str, c: &ChunkFile) -> ChunkAddr {
    ChunkAddr {
        folder: ChunkFolder::for_path(path),
        key: c.header.key,
    }
}

/// Runs every check on `s`: put, read, check and delete; byte ranges; missing chunks and
/// unknown disks; renames and scans; damage detected; concurrent puts; space reported.
/// Panics at the first failure.
pub fn run(s: &Subject<'_>) {
    put_read_check_delete(s);
    ranges_read_exactly_what_was_asked(s);
    missing_and_unknown(s);
    rename_and_scan(s);
    corruption_is_detected(s);
    concurrent_puts(s);
    space_is_reported(s);
}

fn put_read_check_delete(s: &Subject<'_>) {
    let path = "/conf/a.bin";
    let folder = ChunkFolder::for_path(path);
    let chunks = chunks_of(10, 0, &[42u8; 3000]);
    for (c, disk) in chunks.iter().zip(&s.disks) {
        let stored = s.store.put_chunk(disk, &folder, path, c).unwrap();
        assert_eq!(stored.addr, addr(path, c));
        assert_eq!(stored.size, c.encoded_len());
        assert_eq!(stored.checksum, c.checksum());
        assert_eq!(&s.store.read_chunk(disk, &stored.addr).unwrap(), c);
        // as stored, for a peer: the encoded bytes, which stored elsewhere read the same
        let encoded = s.store.read_encoded(disk, &stored.addr).unwrap();
        assert_eq!(encoded, c.encode());
        let other = &s.disks[(s.disks.iter().position(|d| d == disk).unwrap() + 1) % 3];
        let again = "/conf/a-again.bin";
        let header = crate::chunk::verify_chunk(&encoded).unwrap();
        let copied = s
            .store
            .put_encoded(
                other,
                &ChunkFolder::for_path(again),
                again,
                &header,
                encoded,
            )
            .unwrap();
        assert_eq!(
            (copied.size, copied.checksum),
            (stored.size, stored.checksum)
        );
        assert_eq!(&s.store.read_chunk(other, &copied.addr).unwrap(), c);
        assert!(s.store.delete_chunk(other, &copied.addr).unwrap());
        // into a stripe buffer: all of the data, a prefix of it, never more than it has
        let mut whole = vec![0u8; c.data.len()];
        s.store
            .read_chunk_into(disk, &stored.addr, &mut whole)
            .unwrap();
        assert_eq!(whole, c.data);
        let mut part = vec![0u8; c.data.len() - 7];
        s.store
            .read_chunk_into(disk, &stored.addr, &mut part)
            .unwrap();
        assert_eq!(part, c.data[..part.len()]);
        let mut over = vec![0u8; c.data.len() + 1];
        assert!(matches!(
            s.store.read_chunk_into(disk, &stored.addr, &mut over),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            s.store.check_chunk(disk, &stored.addr).unwrap(),
            Some(c.encoded_len())
        );
    }
    let (c, disk) = (&chunks[0], &s.disks[0]);
    assert!(s.store.delete_chunk(disk, &addr(path, c)).unwrap());
    assert!(
        !s.store.delete_chunk(disk, &addr(path, c)).unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(s.store.check_chunk(disk, &addr(path, c)).unwrap(), None);
    assert!(matches!(
        s.store.read_chunk(disk, &addr(path, c)),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s
        .store
        .scan(disk)
        .unwrap()
        .iter()
        .all(|i| i.key != c.header.key));
    // the other chunks of the stripe are untouched
    assert_eq!(
        &s.store
            .read_chunk(&s.disks[1], &addr(path, &chunks[1]))
            .unwrap(),
        &chunks[1]
    );
}

fn ranges_read_exactly_what_was_asked(s: &Subject<'_>) {
    let path = "/conf/ranges";
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let c = &chunks_of(14, 0, &data)[0]; // a 150 000-byte shard: three 64 KiB blocks
    let disk = &s.disks[3];
    let stored = s
        .store
        .put_chunk(disk, &ChunkFolder::for_path(path), path, c)
        .unwrap();
    for (offset, len) in [
        (0u64, 10u64),
        (65_530, 20),
        (100, 140_000),
        (149_990, 100),
        (0, 150_000),
        (150_000, 5),
        (7, 0),
    ] {
        let got = s
            .store
            .read_chunk_range(disk, &stored.addr, offset, len)
            .unwrap();
        let lo = (offset as usize).min(c.data.len());
        let hi = ((offset + len) as usize).min(c.data.len());
        assert_eq!(got, &c.data[lo..hi], "range {offset}+{len}");
    }
    (s.corrupt)(disk, &stored.addr); // flips a byte near the start of the data
    let err = s
        .store
        .read_chunk_range(disk, &stored.addr, 0, 10)
        .unwrap_err();
    assert!(err.is_chunk_damage(), "{err}");
    let missing = ChunkAddr {
        folder: stored.addr.folder.clone(),
        key: ChunkKey {
            index: 9,
            ..stored.addr.key
        },
    };
    assert!(matches!(
        s.store.read_chunk_range(disk, &missing, 0, 1),
        Err(StoreError::NotFound { .. })
    ));
}

fn missing_and_unknown(s: &Subject<'_>) {
    let c = &chunks_of(11, 0, b"x")[0];
    let a = addr("/conf/never", c);
    assert_eq!(s.store.check_chunk(&s.disks[0], &a).unwrap(), None);
    let err = s.store.read_chunk(&s.disks[0], &a).unwrap_err();
    assert!(err.is_chunk_damage(), "{err}");
    let err = s.store.read_encoded(&s.disks[0], &a).unwrap_err();
    assert!(err.is_chunk_damage(), "{err}");
    let nowhere = DiskId("no-such-disk".into());
    assert!(matches!(
        s.store.read_chunk(&nowhere, &a),
        Err(StoreError::UnknownDisk(_))
    ));
    assert!(matches!(
        s.store.put_chunk(&nowhere, &a.folder, "/x", c),
        Err(StoreError::UnknownDisk(_))
    ));
}

fn rename_and_scan(s: &Subject<'_>) {
    let path = "/conf/before.txt";
    let folder = ChunkFolder::for_path(path);
    let disk = &s.disks[1];
    let mut keys = Vec::new();
    for stripe in 0..3 {
        let c = &chunks_of(12, stripe, &[stripe as u8; 100])[1];
        s.store.put_chunk(disk, &folder, path, c).unwrap();
        keys.push(c.header.key);
    }
    s.store
        .rename_file(disk, &folder, FileId(12), "/conf/after.txt")
        .unwrap();
    let listed: Vec<_> = s
        .store
        .scan(disk)
        .unwrap()
        .into_iter()
        .filter(|i| i.key.file == FileId(12))
        .collect();
    assert_eq!(listed.iter().map(|i| i.key).collect::<Vec<_>>(), keys);
    for (i, item) in listed.iter().enumerate() {
        assert_eq!(item.path, "/conf/after.txt");
        assert_eq!(item.folder, folder, "renaming does not move chunks");
        assert_eq!(
            (item.stripe_start, item.stripe_end, item.k, item.m),
            (i as u64 * 4096, i as u64 * 4096 + 100, 2, 1)
        );
    }
}

fn corruption_is_detected(s: &Subject<'_>) {
    let path = "/conf/rot";
    let c = &chunks_of(13, 0, &[7u8; 5000])[0];
    let disk = &s.disks[2];
    let stored = s
        .store
        .put_chunk(disk, &ChunkFolder::for_path(path), path, c)
        .unwrap();
    (s.corrupt)(disk, &stored.addr);
    match s.store.read_chunk(disk, &stored.addr) {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.is_chunk_damage()),
        other => panic!("corrupt chunk read as {other:?}"),
    }
    match s.store.read_encoded(disk, &stored.addr) {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.is_chunk_damage()),
        other => panic!("corrupt chunk read for a peer as {other:?}"),
    }
    let mut dest = vec![0u8; c.data.len()];
    match s.store.read_chunk_into(disk, &stored.addr, &mut dest) {
        Err(e @ StoreError::Corrupt { .. }) => assert!(e.is_chunk_damage()),
        other => panic!("corrupt chunk read into a buffer as {other:?}"),
    }
    // a stat does not read data: the chunk is still "present"
    assert!(s.store.check_chunk(disk, &stored.addr).unwrap().is_some());
}

fn concurrent_puts(s: &Subject<'_>) {
    let (store, disks) = (s.store, &s.disks);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            scope.spawn(move || {
                for stripe in 0..10 {
                    let path = format!("/conf/par{t}");
                    let folder = ChunkFolder::for_path(&path);
                    for (c, disk) in chunks_of(100 + t, stripe, &[t as u8; 777])
                        .iter()
                        .zip(disks)
                    {
                        store.put_chunk(disk, &folder, &path, c).unwrap();
                    }
                }
            });
        }
    });
    for t in 0..4u64 {
        for disk in &s.disks[..3] {
            let n = s
                .store
                .scan(disk)
                .unwrap()
                .iter()
                .filter(|i| i.key.file == FileId(100 + t))
                .count();
            assert_eq!(n, 10, "disk {disk} file {t}");
        }
    }
}

fn space_is_reported(s: &Subject<'_>) {
    let disks = s.store.disks().unwrap();
    assert_eq!(
        disks.iter().map(|d| d.disk.clone()).collect::<Vec<_>>(),
        s.disks
    );
    for d in disks {
        assert!(d.healthy, "{d:?}");
        assert!(d.total > 0 && d.free <= d.total, "{d:?}");
    }
}

#[test]
fn memory_store_conforms() {
    let disks: Vec<DiskId> = (0..4).map(|i| DiskId(format!("m{i}"))).collect();
    let store = MemoryChunkStore::new(
        &disks
            .iter()
            .map(|d| (d.clone(), 1 << 30))
            .collect::<Vec<_>>(),
    );
    let corrupt = |d: &DiskId, a: &ChunkAddr| assert!(store.corrupt(d, a, 200));
    run(&Subject {
        store: &store,
        disks,
        corrupt: &corrupt,
    });
}

#[cfg(feature = "local")]
#[test]
fn disk_store_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let disks: Vec<(DiskId, std::path::PathBuf)> = (0..4)
        .map(|i| {
            let p = tmp.path().join(format!("d{i}"));
            std::fs::create_dir(&p).unwrap();
            (DiskId(format!("d{i}")), p)
        })
        .collect();
    let store = DiskChunkStore::open(&disks).unwrap();
    let corrupt = |d: &DiskId, a: &ChunkAddr| {
        let p = store.chunk_path(d, a).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[200] ^= 0x55;
        std::fs::write(&p, bytes).unwrap();
    };
    run(&Subject {
        store: &store,
        disks: disks.iter().map(|(d, _)| d.clone()).collect(),
        corrupt: &corrupt,
    });
}
