//! Tests of the disk store beyond the conformance suite.

use super::*;
use crate::ids::{ChunkKey, FileId};

#[test]
fn an_index_mostly_of_deleted_chunks_is_compacted_to_the_live_ones() {
    let root = tempfile::tempdir().unwrap();
    let d = disks(root.path(), 1);
    let store = DiskChunkStore::open(&d).unwrap();
    let folder = ChunkFolder::for_path("/c");
    let key = |stripe| ChunkKey {
        file: FileId(4),
        stripe,
        generation: 1,
        index: 0,
    };
    for stripe in 0..20 {
        let chunk = ChunkFile::new(key(stripe), 0, 10, 1, 0, 0, vec![stripe as u8; 10]);
        store.put_chunk(&d[0].0, &folder, "/c", &chunk).unwrap();
    }
    store
        .rename_file(&d[0].0, &folder, FileId(4), "/renamed")
        .unwrap();
    assert!(
        !store.compact_index(&d[0].0, &folder).unwrap(),
        "nothing dead yet"
    );
    for stripe in 2..20 {
        let addr = ChunkAddr {
            folder: folder.clone(),
            key: key(stripe),
        };
        store.delete_chunk(&d[0].0, &addr).unwrap();
    }
    let before = store.scan(&d[0].0).unwrap();
    assert!(store.compact_index(&d[0].0, &folder).unwrap());
    let index = d[0].1.join(folder.relative_path()).join(INDEX_FILE_NAME);
    assert_eq!(fs::read_to_string(&index).unwrap().lines().count(), 2);
    let after = store.scan(&d[0].0).unwrap();
    assert_eq!(after, before);
    assert!(after.iter().all(|c| c.path == "/renamed"));
    assert!(!store.compact_index(&d[0].0, &folder).unwrap());
}

#[test]
fn a_disk_failing_io_three_times_in_a_row_is_failed() {
    let root = tempfile::tempdir().unwrap();
    let d = disks(root.path(), 2);
    let store = DiskChunkStore::open(&d).unwrap();
    let folder = ChunkFolder::for_path("/x");
    // the chunk folder's top folder is a file: every write there fails with ENOTDIR
    fs::write(d[0].1.join(folder.top().to_string()), b"not a directory").unwrap();
    let key = ChunkKey {
        file: FileId(9),
        stripe: 0,
        generation: 1,
        index: 0,
    };
    let chunk = ChunkFile::new(key, 0, 10, 1, 0, 0, vec![1; 10]);
    let healthy = |s: &DiskChunkStore| s.disks().unwrap()[0].healthy;
    for _ in 0..IO_ERRORS_TO_FAIL - 1 {
        let e = store.put_chunk(&d[0].0, &folder, "/x", &chunk).unwrap_err();
        assert!(matches!(e, StoreError::Io { .. }), "{e}");
    }
    assert!(
        healthy(&store),
        "not failed before {IO_ERRORS_TO_FAIL} errors in a row"
    );
    store.put_chunk(&d[0].0, &folder, "/x", &chunk).unwrap_err();
    assert!(!healthy(&store));
    let failed = store.failed();
    assert!(failed[0].1.contains("3 I/O errors in a row"), "{failed:?}");
    let e = store.put_chunk(&d[0].0, &folder, "/x", &chunk).unwrap_err();
    assert!(matches!(e, StoreError::DiskSetup(_)), "{e}");
    // a missing chunk is the chunk's damage, not the disk's: the other disk stays well
    for _ in 0..5 {
        let addr = ChunkAddr {
            folder: folder.clone(),
            key,
        };
        assert!(store
            .read_chunk(&d[1].0, &addr)
            .unwrap_err()
            .is_chunk_damage());
    }
    assert!(store.disks().unwrap()[1].healthy);
}

fn disks(root: &Path, n: usize) -> Vec<(DiskId, PathBuf)> {
    (0..n)
        .map(|i| {
            let p = root.join(format!("disk{i}"));
            fs::create_dir_all(&p).unwrap();
            (DiskId(format!("d{i}")), p)
        })
        .collect()
}

fn setup_error(disks: &[(DiskId, PathBuf)]) -> String {
    match DiskChunkStore::open(disks) {
        Err(StoreError::DiskSetup(msg)) => msg,
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn marker_catches_a_disk_in_the_wrong_place() {
    let tmp = tempfile::tempdir().unwrap();
    let d = disks(tmp.path(), 2);
    DiskChunkStore::open(&d).unwrap();
    DiskChunkStore::open(&d).unwrap(); // reopening is fine
    let swapped = vec![
        (d[0].0.clone(), d[1].1.clone()),
        (d[1].0.clone(), d[0].1.clone()),
    ];
    let msg = setup_error(&swapped);
    assert!(
        msg.contains("holds disk `d1`, but the config says disk `d0`"),
        "{msg}"
    );
}

#[test]
fn refuses_foreign_missing_and_duplicate_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let d = disks(tmp.path(), 1);
    fs::write(d[0].1.join("holiday.jpg"), b"not ours").unwrap();
    assert!(setup_error(&d).contains("is not empty and has no wormfs-disk.toml"));

    let missing = vec![(DiskId("x".into()), tmp.path().join("nope"))];
    assert!(setup_error(&missing).contains("create it or fix the path"));

    let d = disks(&tmp.path().join("b"), 1);
    let twice = vec![d[0].clone(), (DiskId("other".into()), d[0].1.join("."))];
    assert!(setup_error(&twice).contains("are the same directory"));
}

/// A chunk written from its parts and one written as the bytes it arrived in make the
/// file [`ChunkFile::encode`] makes, and read back as the chunk.
#[test]
fn chunk_files_hold_the_encoded_bytes_however_they_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let d = disks(tmp.path(), 1);
    let store = DiskChunkStore::open(&d).unwrap();
    let folder = ChunkFolder::for_path("/a");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
    for (stripe, encoded) in [(0, false), (1, true)] {
        let key = ChunkKey {
            file: FileId(5),
            stripe,
            generation: 1,
            index: 0,
        };
        let (crc, end) = (crate::checksum::crc32(&data), data.len() as u64);
        let chunk = ChunkFile::new(key, 0, end, 1, 0, crc, data.clone());
        let bytes = chunk.encode();
        let stored = if encoded {
            let header = crate::chunk::verify_chunk(&bytes).unwrap();
            store.put_encoded(&d[0].0, &folder, "/a", &header, bytes.clone())
        } else {
            store.put_chunk(&d[0].0, &folder, "/a", &chunk)
        }
        .unwrap();
        assert_eq!(stored.size, bytes.len() as u64);
        assert_eq!(stored.checksum, chunk.checksum());
        let path = store.chunk_path(&d[0].0, &stored.addr).unwrap();
        assert_eq!(fs::read(path).unwrap(), bytes);
        assert_eq!(store.read_chunk(&d[0].0, &stored.addr).unwrap(), chunk);
    }
}

/// A chunk whose header does not describe its data is refused, naming the field,
/// and leaves no file behind (it would read back as a damaged chunk).
#[test]
fn a_chunk_whose_header_lies_about_its_data_is_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = disks(tmp.path(), 1);
    let store = DiskChunkStore::open(&d).unwrap();
    let folder = ChunkFolder::for_path("/a");
    let key = ChunkKey {
        file: FileId(6),
        stripe: 0,
        generation: 1,
        index: 0,
    };
    let data = vec![7u8; 100_000];
    let good = ChunkFile::new(key, 0, 100_000, 1, 0, crate::checksum::crc32(&data), data);
    let mut short = good.clone();
    short.data.truncate(99_000);
    let mut blocks = good.clone();
    blocks.header.block_crcs.pop();
    for (bad, field) in [(short, "data_len"), (blocks, "block_count")] {
        let e = store
            .put_chunk(&d[0].0, &folder, "/a", &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
        let addr = ChunkAddr {
            folder: folder.clone(),
            key,
        };
        assert_eq!(store.check_chunk(&d[0].0, &addr).unwrap(), None, "{field}");
    }
    let stored = store.put_chunk(&d[0].0, &folder, "/a", &good).unwrap();
    assert_eq!(store.read_chunk(&d[0].0, &stored.addr).unwrap(), good);
}

#[test]
fn layout_on_disk_and_index_survive_reopen_and_torn_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let d = disks(tmp.path(), 1);
    let folder = ChunkFolder::for_path("/movies/a.mkv");
    let key = ChunkKey {
        file: FileId(77),
        stripe: 0,
        generation: 5,
        index: 0,
    };
    {
        let store = DiskChunkStore::open(&d).unwrap();
        let chunk = ChunkFile::new(
            key,
            0,
            10,
            1,
            0,
            crate::checksum::crc32(b"0123456789"),
            b"0123456789".to_vec(),
        );
        store
            .put_chunk(&d[0].0, &folder, "/movies/a.mkv", &chunk)
            .unwrap();
    }
    let dir = d[0].1.join(folder.top().to_string()).join(folder.as_str());
    assert!(dir.join("f77_s0_g5_c0.chunk").is_file());
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only the chunk and the index: {leftovers:?}"
    );
    // a crash in the middle of an append leaves a torn line
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join(INDEX_FILE_NAME))
        .unwrap();
    f.write_all(b"1234abcd {\"t\":\"del").unwrap();
    let store = DiskChunkStore::open(&d).unwrap();
    // the next append starts on a fresh line, so it is not lost
    store
        .rename_file(&d[0].0, &folder, FileId(77), "/movies/b.mkv")
        .unwrap();
    let listed = store.scan(&d[0].0).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].key, listed[0].path.as_str(), listed[0].size),
        (key, "/movies/b.mkv", 82 + 8 + 10)
    );
}
