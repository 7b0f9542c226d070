//! The daemon-less archive: erasure coding over real directories.

use std::path::PathBuf;
use wormfs::archive::{ArchiveError, LocalArchive};
use wormfs::engine::EngineError;
use wormfs::meta::ChunkState;
use wormfs::policy::{PolicySet, StoragePolicy};

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub disks: Vec<PathBuf>,
}

pub fn setup(n: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let disks = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("disk{i}"));
            std::fs::create_dir(&p).unwrap();
            p
        })
        .collect();
    Setup { dir, disks }
}

impl Setup {
    pub fn open(&self, policies: PolicySet) -> LocalArchive {
        LocalArchive::open(self.dir.path().join("meta"), &self.disks, policies).unwrap()
    }
}

/// Deterministic, incompressible-looking bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small_policy(k: u16, m: u16) -> PolicySet {
    PolicySet::single(
        "t",
        StoragePolicy {
            k,
            m,
            stripe_size: u64::from(k) * 4096,
        },
    )
}

#[test]
fn files_of_many_sizes_round_trip() {
    let s = setup(6);
    let a = s.open(small_policy(4, 2));
    let stripe = 4 * 4096;
    for (i, len) in [
        0,
        1,
        4095,
        4096,
        stripe - 1,
        stripe,
        stripe + 1,
        5 * stripe + 123,
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/sizes/f{i}");
        let data = bytes(len, i as u64);
        let attr = a.write_file(&path, &data[..]).unwrap();
        assert_eq!(attr.size, len as u64);
        assert_eq!(a.read_to_vec(&path).unwrap(), data, "{len} bytes");
        let stripes = a.meta().stripes(attr.ino).unwrap();
        assert_eq!(stripes.len(), len.div_ceil(stripe), "{len}");
        for st in &stripes {
            if st.len <= 4096 {
                // as a node does: a stripe within `inline_max` stays in the metadata
                assert!(st.chunks.is_empty() && st.inline.is_some(), "{len}: {st:?}");
                continue;
            }
            let disks: std::collections::BTreeSet<_> = st.chunks.iter().map(|c| &c.disk).collect();
            assert_eq!(disks.len(), 6, "one chunk per disk");
        }
    }
    let names: Vec<_> = a
        .list("/sizes")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 8);
    assert!(names.iter().all(|n| !n.contains("wormfs-tmp")), "{names:?}");
}

#[test]
fn losing_m_chunks_reads_exact_losing_more_names_the_stripe() {
    let s = setup(6);
    let a = s.open(small_policy(4, 2));
    let data = bytes(3 * 4 * 4096 + 5000, 7);
    a.write_file("/f", &data[..]).unwrap();
    let chunks = a.chunk_files("/f").unwrap();
    assert_eq!(chunks.len(), 4 * 6);
    let of_stripe = |n: u64| chunks.iter().filter(move |c| c.stripe == n);

    // lose a data chunk and a parity chunk of stripe 1, a data chunk of stripe 3
    for c in of_stripe(1).filter(|c| c.index == 0 || c.index == 5) {
        std::fs::remove_file(c.path.as_ref().unwrap()).unwrap();
    }
    let path = of_stripe(3).find(|c| c.index == 2).unwrap().path.clone();
    std::fs::remove_file(path.unwrap()).unwrap();
    assert_eq!(a.read_to_vec("/f").unwrap(), data);
    let ino = a.stat("/f").unwrap().ino;
    let states: Vec<_> = a
        .meta()
        .stripe(ino, 1)
        .unwrap()
        .unwrap()
        .chunks
        .iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(
        states[0],
        ChunkState::Missing,
        "the read reports what it found missing: {states:?}"
    );

    // a third loss in stripe 1 is one too many
    for c in of_stripe(1).filter(|c| c.index == 1) {
        std::fs::remove_file(c.path.as_ref().unwrap()).unwrap();
    }
    match a.read_to_vec("/f") {
        Err(ArchiveError::Engine(
            e @ EngineError::Unreadable {
                stripe: 1,
                present: 3,
                needed: 4,
                total: 6,
                ..
            },
        )) => {
            assert_eq!(ArchiveError::Engine(e).errno(), 5);
        }
        other => panic!("expected stripe 1 unreadable, got {other:?}"),
    }
}

#[test]
fn corrupt_chunks_are_detected_and_decoded_around() {
    let s = setup(3);
    let a = s.open(small_policy(2, 1));
    let data = bytes(20_000, 3);
    a.write_file("/c", &data[..]).unwrap();
    let victim = a
        .chunk_files("/c")
        .unwrap()
        .into_iter()
        .find(|c| c.stripe == 0 && c.index == 1)
        .unwrap();
    let victim = victim.path.unwrap();
    let mut raw = std::fs::read(&victim).unwrap();
    let last = raw.len() - 10;
    raw[last] ^= 0xff; // bit rot in the data
    std::fs::write(&victim, raw).unwrap();
    assert_eq!(a.read_to_vec("/c").unwrap(), data);
    let ino = a.stat("/c").unwrap().ino;
    assert_eq!(
        a.meta().stripe(ino, 0).unwrap().unwrap().chunks[1].state,
        ChunkState::Corrupt
    );
}

#[test]
fn rewrite_replaces_atomically_and_frees_old_chunks() {
    let s = setup(3);
    let a = s.open(small_policy(2, 1));
    a.write_file("/r", &bytes(50_000, 1)[..]).unwrap();
    let old = a.chunk_files("/r").unwrap();
    let new = bytes(9_000, 2);
    a.write_file("/r", &new[..]).unwrap();
    assert_eq!(a.read_to_vec("/r").unwrap(), new);
    assert!(
        old.iter().all(|c| !c.path.as_ref().unwrap().exists()),
        "old chunk files are deleted"
    );
    assert_eq!(a.list("/").unwrap().len(), 1);

    // a failed write leaves the old file in place
    struct Broken(usize);
    impl std::io::Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("source went away"));
            }
            self.0 -= 1;
            buf.fill(9);
            Ok(buf.len())
        }
    }
    let err = a.write_file("/r", Broken(3)).unwrap_err();
    assert!(err.to_string().contains("source went away"), "{err}");
    assert_eq!(a.read_to_vec("/r").unwrap(), new);
    assert_eq!(a.list("/").unwrap().len(), 1, "the temporary file is gone");
    let all_chunks: usize = s.disks.iter().map(|d| count_chunk_files(d)).sum();
    assert_eq!(
        all_chunks,
        a.chunk_files("/r").unwrap().len(),
        "only the current file's chunks remain on disk"
    );
}

fn count_chunk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                count_chunk_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|e| e == "chunk"))
            }
        })
        .sum()
}

#[test]
fn directory_policies_apply_to_new_files() {
    let s = setup(6);
    let a = s.open(PolicySet::defaults());
    a.mkdir_all("/media/films").unwrap();
    a.set_policy("/media", Some("media")).unwrap();
    let f = a
        .write_file("/media/films/a.mkv", &bytes(10, 1)[..])
        .unwrap();
    let g = a.write_file("/notes.txt", &bytes(10, 1)[..]).unwrap();
    assert_eq!(f.layout.unwrap().policy, "media");
    assert_eq!(g.layout.unwrap().policy, "general");
    let err = a.set_policy("/media", Some("nope")).unwrap_err();
    assert!(
        err.to_string().contains("no policy is named `nope`"),
        "{err}"
    );
}

#[test]
fn too_few_disks_is_a_clear_error() {
    let s = setup(2);
    let a = s.open(PolicySet::defaults());
    // bigger than `inline_max`, so it needs chunks
    let err = a.write_file("/x", &bytes(10_000, 1)[..]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("policy `general`")
            && text.contains("needs 3 disks")
            && text.contains("only 2 of 2"),
        "{text}"
    );
    assert_eq!(err.errno(), 28);
    assert!(
        a.list("/").unwrap().is_empty(),
        "nothing half-written stays behind"
    );
}

#[test]
fn archive_survives_reopen_and_refuses_swapped_disks() {
    let s = setup(3);
    let data = bytes(100_000, 5);
    {
        let a = s.open(small_policy(2, 1));
        a.write_file("/keep/me", &data[..]).unwrap();
    }
    let a = s.open(small_policy(2, 1));
    assert_eq!(a.read_to_vec("/keep/me").unwrap(), data);
    drop(a);
    let mut swapped = s.disks.clone();
    swapped.swap(0, 1);
    let err = LocalArchive::open(s.dir.path().join("meta"), &swapped, small_policy(2, 1))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("mounted at the wrong place"),
        "{err}"
    );
}

#[test]
fn deletes_remove_chunks_and_refuse_non_empty_directories() {
    let s = setup(3);
    let a = s.open(small_policy(2, 1));
    a.write_file("/d/x", &bytes(30_000, 1)[..]).unwrap();
    let chunks = a.chunk_files("/d/x").unwrap();
    let err = a.delete("/d").unwrap_err();
    assert_eq!(err.errno(), 39, "{err}");
    a.delete("/d/x").unwrap();
    assert!(chunks.iter().all(|c| !c.path.as_ref().unwrap().exists()));
    a.delete("/d").unwrap();
    assert!(a.list("/").unwrap().is_empty());
    assert_eq!(a.delete("/d").unwrap_err().errno(), 2);
}

#[test]
fn index_files_rebuild_chunk_metadata_without_sqlite() {
    use wormfs::store::{ChunkStore, DiskChunkStore};
    let s = setup(3);
    let data = bytes(40_000, 9);
    let ino = {
        let a = s.open(small_policy(2, 1));
        a.write_file("/old/name", &data[..]).unwrap().ino
    };
    let disks: Vec<_> = s
        .disks
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("disk{i}").as_str().into(), p.clone()))
        .collect();
    let store = DiskChunkStore::open(&disks).unwrap();
    let mut found = Vec::new();
    for (id, _) in &disks {
        found.extend(store.scan(id).unwrap());
    }
    assert_eq!(found.len(), 5 * 3, "5 stripes of 8 KiB × 3 chunks");
    assert!(found
        .iter()
        .all(|c| c.key.file == ino && c.path == "/old/name"));
    let mut stripes: Vec<_> = found
        .iter()
        .map(|c| (c.key.stripe, c.stripe_start, c.stripe_end))
        .collect();
    stripes.sort();
    stripes.dedup();
    let want: Vec<_> = (0..5u64)
        .map(|i| (i, i * 8192, ((i + 1) * 8192).min(40_000)))
        .collect();
    assert_eq!(stripes, want);
}

#[test]
fn a_second_archive_on_the_same_directories_is_refused() {
    let s = setup(3);
    let a = s.open(small_policy(2, 1));
    let err = LocalArchive::open(s.dir.path().join("meta"), &s.disks, small_policy(2, 1))
        .expect_err("a second archive must be refused");
    assert!(
        err.to_string().contains("in use by another WormFS process"),
        "{err}"
    );
    drop(a);
    s.open(small_policy(2, 1)); // free again once the first is closed
}

#[test]
fn the_temporary_file_of_a_write_cut_short_is_removed_at_the_next_open() {
    use wormfs::meta::{FileLayout, LocalLog, MetaStore, MetadataOp, NewKind, Timestamp};
    let s = setup(3);
    let a = s.open(small_policy(2, 1));
    a.write_file("/dir/kept", &bytes(10_000, 1)[..]).unwrap();
    let dir = a.list("/").unwrap();
    let dir_ino = dir.iter().find(|e| e.name == "dir").unwrap().ino;
    drop(a);
    // what a crash in the middle of `write_file` leaves: the temporary entry
    {
        let meta =
            std::sync::Arc::new(MetaStore::open(&s.dir.path().join("meta/meta.sqlite")).unwrap());
        let log = LocalLog::new(meta).unwrap();
        let op = MetadataOp::Create {
            parent: dir_ino,
            name: ".new.wormfs-tmp-42".into(),
            kind: NewKind::File(FileLayout {
                policy: "t".into(),
                k: 2,
                m: 1,
                stripe_size: 8192,
                folder: wormfs::store::ChunkFolder::for_path("/dir/new"),
            }),
            perm: 0o644,
            uid: 0,
            gid: 0,
            time: Timestamp::now(),
        };
        log.apply(&op).unwrap().unwrap();
    }
    let a = s.open(small_policy(2, 1));
    let names: Vec<String> = a
        .list("/dir")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["kept".to_owned()]);
}

#[test]
fn small_files_stay_in_the_metadata_and_cost_no_chunk_files() {
    let s = setup(3);
    let a = s.open(PolicySet::defaults());
    let files: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("/small/f{i}"), bytes(2048, i)))
        .collect();
    for (path, data) in &files {
        a.write_file(path, &data[..]).unwrap();
    }
    let chunk_files: usize = s.disks.iter().map(|d| count_chunk_files(d)).sum();
    assert_eq!(
        chunk_files, 0,
        "2 KiB files are kept inline, as a node does"
    );
    for d in &s.disks {
        let folders = std::fs::read_dir(d)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(folders, 0, "no chunk folder on {}", d.display());
    }
    // a file past `inline_max` is coded over the disks as before
    let big = bytes(5000, 99);
    a.write_file("/small/big", &big[..]).unwrap();
    assert_eq!(a.chunk_files("/small/big").unwrap().len(), 3);
    drop(a);
    let a = s.open(PolicySet::defaults());
    for (path, data) in &files {
        assert_eq!(&a.read_to_vec(path).unwrap(), data, "{path}");
    }
    assert_eq!(a.read_to_vec("/small/big").unwrap(), big);
}

#[test]
fn an_archive_keeps_its_chunks_in_any_chunk_store() {
    use std::sync::Arc;
    use wormfs::ids::DiskId;
    use wormfs::store::MemoryChunkStore;
    let dir = tempfile::tempdir().unwrap();
    let err = LocalArchive::builder(dir.path().join("meta"))
        .open()
        .expect_err("an archive without a store");
    assert!(matches!(err, ArchiveError::NoStore), "{err}");
    assert!(err.to_string().contains("ArchiveBuilder::disks"), "{err}");

    let disks: Vec<(DiskId, u64)> = (0..6)
        .map(|i| (DiskId(format!("mem{i}")), 64 << 20))
        .collect();
    let store = Arc::new(MemoryChunkStore::new(&disks));
    let a = LocalArchive::builder(dir.path().join("meta"))
        .store(store.clone())
        .policies(small_policy(4, 2))
        .open()
        .unwrap();
    let data = bytes(100_000, 4);
    a.write_file("/m/data.bin", &data[..]).unwrap();
    let chunks = a.chunk_files("/m/data.bin").unwrap();
    // 100,000 bytes in 16 KiB stripes: six full ones and a 1,696-byte tail kept inline
    assert_eq!(chunks.len(), 6 * 6);
    assert_eq!(store.chunk_count(), 6 * 6);
    assert!(chunks.iter().all(|c| c.path.is_none()), "no files to name");
    assert_eq!(a.read_to_vec("/m/data.bin").unwrap(), data);
    a.delete("/m/data.bin").unwrap();
    assert_eq!(store.chunk_count(), 0, "a delete frees the store's chunks");
}
