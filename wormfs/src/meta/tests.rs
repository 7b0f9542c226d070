//! Tests of ops applied to a real SQLite file.

use super::*;
use crate::ids::{DiskId, FileId, NodeId};
use crate::store::ChunkFolder;
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    log: LocalLog,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    let log = LocalLog::new(Arc::new(MetaStore::open(&path).unwrap())).unwrap();
    Fixture {
        _dir: dir,
        path,
        log,
    }
}

fn t(n: i64) -> Timestamp {
    Timestamp(n)
}

fn layout(path: &str) -> FileLayout {
    FileLayout {
        policy: "general".into(),
        k: 2,
        m: 1,
        stripe_size: 8192,
        folder: ChunkFolder::for_path(path),
    }
}

impl Fixture {
    fn ok(&self, op: MetadataOp) -> Applied {
        self.log
            .apply(&op)
            .unwrap()
            .unwrap_or_else(|r| panic!("{op:?} refused: {r}"))
    }
    fn refused(&self, op: MetadataOp) -> Refusal {
        self.log.apply(&op).unwrap().expect_err("should be refused")
    }
    fn store(&self) -> &MetaStore {
        self.log.store()
    }
    fn mkdir(&self, parent: FileId, name: &str) -> FileId {
        self.ok(create(parent, name, NewKind::Directory))
            .attr
            .unwrap()
            .ino
    }
    fn mkfile(&self, parent: FileId, name: &str) -> FileId {
        self.ok(create(parent, name, NewKind::File(layout(name))))
            .attr
            .unwrap()
            .ino
    }
}

fn create(parent: FileId, name: &str, kind: NewKind) -> MetadataOp {
    MetadataOp::Create {
        parent,
        name: name.into(),
        kind,
        perm: 0o644,
        uid: 1000,
        gid: 100,
        time: t(5),
    }
}

fn stripe(index: u64, generation: u64, len: u64, disks: [&str; 3]) -> StripeRecord {
    StripeRecord {
        index,
        generation,
        len,
        crc: 0xabc,
        k: 2,
        m: 1,
        chunks: disks
            .iter()
            .enumerate()
            .map(|(i, d)| ChunkRecord {
                index: i as u16,
                node: NodeId("n1".into()),
                disk: DiskId((*d).into()),
                size: len / 2 + 100,
                crc: i as u32,
                state: ChunkState::Ok,
            })
            .collect(),
        inline: None,
    }
}

fn commit(ino: FileId, s: StripeRecord, size: u64) -> MetadataOp {
    MetadataOp::CommitStripe {
        ino,
        stripe: s,
        size,
        time: t(9),
    }
}

#[test]
fn create_lookup_readdir_and_nlink() {
    let f = fixture();
    let docs = f.mkdir(FileId::ROOT, "docs");
    let a = f.mkfile(docs, "a.txt");
    f.ok(create(docs, "link", NewKind::Symlink("a.txt".into())));
    f.ok(create(docs, "pipe", NewKind::Fifo));
    let names: Vec<_> = f
        .store()
        .readdir(docs)
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    assert_eq!(
        names,
        vec![
            ("a.txt".into(), FileKind::File),
            ("link".into(), FileKind::Symlink),
            ("pipe".into(), FileKind::Fifo)
        ]
    );
    assert_eq!(f.store().lookup(docs, "a.txt").unwrap().unwrap().ino, a);
    assert_eq!(
        f.store().lookup_path("/docs/a.txt").unwrap().unwrap().ino,
        a
    );
    assert_eq!(
        f.store()
            .readlink(f.store().lookup(docs, "link").unwrap().unwrap().ino)
            .unwrap()
            .as_deref(),
        Some("a.txt")
    );
    assert_eq!(
        f.store().attr(FileId::ROOT).unwrap().unwrap().nlink,
        3,
        "root has . and docs/.."
    );
    let attr = f.store().attr(a).unwrap().unwrap();
    assert_eq!(
        (attr.perm, attr.uid, attr.gid, attr.size, attr.nlink),
        (0o644, 1000, 100, 0, 1)
    );
    assert_eq!(attr.layout, Some(layout("a.txt")));
    assert_eq!(
        f.store().path_of(a).unwrap().as_deref(),
        Some("/docs/a.txt")
    );
}

#[test]
fn refusals_change_nothing_but_consume_the_sequence_number() {
    let f = fixture();
    let d = f.mkdir(FileId::ROOT, "d");
    f.mkfile(d, "x");
    let before = f.store().last_applied().unwrap();
    assert!(matches!(
        f.refused(create(d, "x", NewKind::Directory)),
        Refusal::Exists(_)
    ));
    assert!(matches!(
        f.refused(MetadataOp::Rmdir {
            parent: FileId::ROOT,
            name: "d".into(),
            time: t(1)
        }),
        Refusal::NotEmpty(_)
    ));
    assert!(matches!(
        f.refused(MetadataOp::Unlink {
            parent: FileId::ROOT,
            name: "d".into(),
            time: t(1)
        }),
        Refusal::IsDir(_)
    ));
    assert!(matches!(
        f.refused(MetadataOp::Rmdir {
            parent: d,
            name: "x".into(),
            time: t(1)
        }),
        Refusal::NotDir(_)
    ));
    assert!(matches!(
        f.refused(MetadataOp::Unlink {
            parent: d,
            name: "nope".into(),
            time: t(1)
        }),
        Refusal::NotFound(_)
    ));
    assert!(matches!(
        f.refused(create(FileId(999), "y", NewKind::Fifo)),
        Refusal::NotFound(_)
    ));
    assert!(matches!(
        f.refused(create(d, "a/b", NewKind::Fifo)),
        Refusal::Invalid(_)
    ));
    assert_eq!(f.refused(create(d, "x", NewKind::Fifo)).errno(), 17);
    assert_eq!(f.store().last_applied().unwrap(), before + 8);
    assert_eq!(f.store().readdir(d).unwrap().len(), 1);
    assert_eq!(
        f.store().attr(d).unwrap().unwrap().mtime,
        t(5),
        "refusals do not touch the directory"
    );
}

#[test]
fn rename_replaces_and_returns_garbage() {
    let f = fixture();
    let a = f.mkfile(FileId::ROOT, "a");
    let b = f.mkfile(FileId::ROOT, "b");
    f.ok(commit(b, stripe(0, 1, 100, ["d1", "d2", "d3"]), 100));
    let applied = f.ok(MetadataOp::Rename {
        parent: FileId::ROOT,
        name: "a".into(),
        new_parent: FileId::ROOT,
        new_name: "b".into(),
        no_replace: false,
        time: t(7),
    });
    assert_eq!(applied.garbage.len(), 3, "b's chunks are garbage");
    assert!(applied
        .garbage
        .iter()
        .all(|g| g.key.file == b && g.folder == ChunkFolder::for_path("b")));
    assert_eq!(f.store().lookup(FileId::ROOT, "b").unwrap().unwrap().ino, a);
    assert!(f.store().attr(b).unwrap().is_none());
    assert!(f.store().stripes(b).unwrap().is_empty());

    let d = f.mkdir(FileId::ROOT, "d");
    let sub = f.mkdir(d, "sub");
    let into_self = MetadataOp::Rename {
        parent: FileId::ROOT,
        name: "d".into(),
        new_parent: sub,
        new_name: "d2".into(),
        no_replace: false,
        time: t(8),
    };
    assert!(matches!(f.refused(into_self), Refusal::Invalid(_)));
    let noreplace = MetadataOp::Rename {
        parent: FileId::ROOT,
        name: "b".into(),
        new_parent: FileId::ROOT,
        new_name: "d".into(),
        no_replace: true,
        time: t(8),
    };
    assert!(matches!(f.refused(noreplace), Refusal::Exists(_)));
    // moving a directory moves its link count between parents
    f.ok(MetadataOp::Rename {
        parent: d,
        name: "sub".into(),
        new_parent: FileId::ROOT,
        new_name: "sub".into(),
        no_replace: false,
        time: t(9),
    });
    assert_eq!(f.store().attr(d).unwrap().unwrap().nlink, 2);
    assert_eq!(f.store().attr(FileId::ROOT).unwrap().unwrap().nlink, 4);
    assert_eq!(f.store().path_of(sub).unwrap().as_deref(), Some("/sub"));
}

#[test]
fn stripes_generations_and_truncate() {
    let f = fixture();
    let ino = f.mkfile(FileId::ROOT, "big");
    f.ok(commit(ino, stripe(0, 1, 8192, ["d1", "d2", "d3"]), 8192));
    f.ok(commit(ino, stripe(1, 1, 8192, ["d2", "d3", "d4"]), 16384));
    let last = f.ok(commit(ino, stripe(2, 1, 100, ["d3", "d4", "d1"]), 16484));
    assert_eq!(last.attr.unwrap().size, 16484);
    assert!(last.garbage.is_empty());

    // rewriting stripe 1 with a new generation frees the old chunks
    let rw = f.ok(commit(ino, stripe(1, 2, 8192, ["d1", "d2", "d3"]), 16484));
    assert_eq!(
        rw.garbage
            .iter()
            .map(|g| (g.key.stripe, g.key.generation))
            .collect::<Vec<_>>(),
        vec![(1, 1); 3]
    );
    assert_eq!(f.store().stripe(ino, 1).unwrap().unwrap().generation, 2);

    // the reverse index: which chunks are on d4?
    let on_d4 = f.store().chunks_on_disk(&DiskId("d4".into())).unwrap();
    assert_eq!(
        on_d4
            .iter()
            .map(|c| (c.key.stripe, c.key.index))
            .collect::<Vec<_>>(),
        vec![(2, 1)]
    );

    // a bad stripe is refused
    let mut bad = stripe(3, 1, 100, ["d1", "d2", "d3"]);
    bad.k = 4;
    assert!(matches!(
        f.refused(commit(ino, bad, 30000)),
        Refusal::Invalid(_)
    ));
    let mut dup = stripe(3, 1, 100, ["d1", "d2", "d3"]);
    dup.chunks[1].index = 0;
    assert!(matches!(
        f.refused(commit(ino, dup, 30000)),
        Refusal::Invalid(_)
    ));

    // truncating into stripe 1 needs the rewritten tail
    let no_tail = MetadataOp::Truncate {
        ino,
        size: 10000,
        tail: None,
        time: t(10),
    };
    assert!(matches!(f.refused(no_tail), Refusal::Invalid(_)));
    let tail = stripe(1, 3, 10000 - 8192, ["d2", "d3", "d4"]);
    let cut = f.ok(MetadataOp::Truncate {
        ino,
        size: 10000,
        tail: Some(tail),
        time: t(10),
    });
    assert_eq!(cut.attr.unwrap().size, 10000);
    // stripe 2 (3 chunks) and stripe 1 generation 2 (3 chunks) are garbage
    assert_eq!(cut.garbage.len(), 6);
    let left: Vec<_> = f
        .store()
        .stripes(ino)
        .unwrap()
        .iter()
        .map(|s| (s.index, s.generation, s.len))
        .collect();
    assert_eq!(left, vec![(0, 1, 8192), (1, 3, 1808)]);
    // growing needs no stripes: the hole reads as zeros
    let grown = f.ok(MetadataOp::Truncate {
        ino,
        size: 1 << 20,
        tail: None,
        time: t(11),
    });
    assert_eq!(grown.attr.unwrap().size, 1 << 20);
    // truncating at a stripe boundary drops whole stripes
    let zero = f.ok(MetadataOp::Truncate {
        ino,
        size: 0,
        tail: None,
        time: t(12),
    });
    assert_eq!(zero.garbage.len(), 6);
    assert!(f.store().stripes(ino).unwrap().is_empty());
}

#[test]
fn hard_links_keep_chunks_until_the_last_goes() {
    let f = fixture();
    let ino = f.mkfile(FileId::ROOT, "one");
    f.ok(commit(ino, stripe(0, 1, 10, ["d1", "d2", "d3"]), 10));
    f.ok(MetadataOp::Link {
        ino,
        new_parent: FileId::ROOT,
        new_name: "two".into(),
        time: t(6),
    });
    assert_eq!(f.store().attr(ino).unwrap().unwrap().nlink, 2);
    let first = f.ok(MetadataOp::Unlink {
        parent: FileId::ROOT,
        name: "one".into(),
        time: t(7),
    });
    assert!(first.garbage.is_empty());
    assert_eq!(f.store().path_of(ino).unwrap().as_deref(), Some("/two"));
    let last = f.ok(MetadataOp::Unlink {
        parent: FileId::ROOT,
        name: "two".into(),
        time: t(8),
    });
    assert_eq!(last.garbage.len(), 3);
}

#[test]
fn xattrs_policies_and_chunk_state() {
    let f = fixture();
    let d = f.mkdir(FileId::ROOT, "media");
    let set = |mode| MetadataOp::SetXattr {
        ino: d,
        name: "user.k".into(),
        value: b"v".to_vec(),
        mode,
        time: t(6),
    };
    assert!(matches!(
        f.refused(set(XattrMode::Replace)),
        Refusal::NoAttr(_)
    ));
    f.ok(set(XattrMode::Create));
    assert!(matches!(
        f.refused(set(XattrMode::Create)),
        Refusal::Exists(_)
    ));
    assert_eq!(
        f.store().xattr(d, "user.k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        f.store().xattr_names(d).unwrap(),
        vec!["user.k".to_string()]
    );
    f.ok(MetadataOp::RemoveXattr {
        ino: d,
        name: "user.k".into(),
        time: t(7),
    });
    assert_eq!(
        f.refused(MetadataOp::RemoveXattr {
            ino: d,
            name: "user.k".into(),
            time: t(7)
        })
        .errno(),
        61
    );

    f.ok(MetadataOp::SetDirPolicy {
        ino: d,
        policy: Some("media".into()),
    });
    assert_eq!(
        f.store().dir_policy_at("/media").unwrap().as_deref(),
        Some("media")
    );
    let file = f.mkfile(d, "x");
    assert!(matches!(
        f.refused(MetadataOp::SetDirPolicy {
            ino: file,
            policy: None
        }),
        Refusal::NotDir(_)
    ));

    f.ok(commit(file, stripe(0, 4, 10, ["d1", "d2", "d3"]), 10));
    let mark = |generation| MetadataOp::SetChunkState {
        ino: file,
        stripe: 0,
        generation,
        chunk: 1,
        state: ChunkState::Corrupt,
    };
    f.ok(mark(3)); // stale generation: ignored
    assert_eq!(
        f.store().stripe(file, 0).unwrap().unwrap().chunks[1].state,
        ChunkState::Ok
    );
    f.ok(mark(4));
    assert_eq!(
        f.store().stripe(file, 0).unwrap().unwrap().chunks[1].state,
        ChunkState::Corrupt
    );
}

#[test]
fn nodes_and_disks() {
    let f = fixture();
    f.ok(MetadataOp::UpsertNode(NodeInfo {
        id: "n1".into(),
        address: "127.0.0.1:1".into(),
    }));
    f.ok(MetadataOp::UpsertDisk(DiskInfo {
        id: "a".into(),
        node: "n1".into(),
        path: "/a".into(),
        total: 10,
        free: 5,
    }));
    f.ok(MetadataOp::UpsertDisk(DiskInfo {
        id: "a".into(),
        node: "n1".into(),
        path: "/a".into(),
        total: 10,
        free: 4,
    }));
    assert_eq!(f.store().disks().unwrap()[0].free, 4);
    f.ok(MetadataOp::RemoveNode("n1".into()));
    assert!(f.store().nodes().unwrap().is_empty());
    assert!(f.store().disks().unwrap().is_empty());
}

#[test]
fn state_and_sequence_survive_reopen() {
    let f = fixture();
    let d = f.mkdir(FileId::ROOT, "keep");
    let seq = f.store().last_applied().unwrap();
    let path = f.path.clone();
    drop(f.log);
    let store = Arc::new(MetaStore::open(&path).unwrap());
    assert_eq!(store.last_applied().unwrap(), seq);
    assert_eq!(store.lookup(FileId::ROOT, "keep").unwrap().unwrap().ino, d);
    let err = store
        .apply(seq, &create(FileId::ROOT, "again", NewKind::Directory))
        .unwrap_err();
    assert!(matches!(err, MetaError::OutOfOrder { .. }), "{err}");
    let log = LocalLog::new(store).unwrap();
    let next = log
        .apply(&create(FileId::ROOT, "next", NewKind::Directory))
        .unwrap()
        .unwrap();
    assert!(
        next.attr.unwrap().ino.0 > d.0,
        "inode numbers are never reused"
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    drop(MetaStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = MetaStore::open(&path).err().unwrap();
    assert!(
        err.to_string()
            .contains("schema version 99, newer than this build's"),
        "{err}"
    );
}

#[test]
fn small_stripes_written_before_migration_4_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        // A database as schema version 3 left it, with one stripe in the metadata and one
        // in chunks.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (i, script) in super::schema::MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(script).unwrap();
            conn.pragma_update(None, "user_version", i + 1).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO stripes (ino, idx, generation, len, crc, k, m, data)
                 VALUES (7, 0, 1, 4, 0, 4, 2, x'74696e79');
             INSERT INTO stripes (ino, idx, generation, len, crc, k, m, data)
                 VALUES (7, 1, 1, 9, 0, 4, 2, NULL);",
        )
        .unwrap();
    }
    let store = MetaStore::open(&path).unwrap();
    let first = store.stripe(FileId(7), 0).unwrap().unwrap();
    assert_eq!(first.inline.as_deref(), Some(&b"tiny"[..]));
    assert_eq!((first.generation, first.len), (1, 4));
    let second = store.stripe(FileId(7), 1).unwrap().unwrap();
    assert_eq!((second.inline, second.len), (None, 9));
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('stripes')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!columns.iter().any(|c| c == "data"), "{columns:?}");
}

#[test]
fn ops_travel_as_json() {
    let op = commit(FileId(3), stripe(0, 1, 10, ["d1", "d2", "d3"]), 10);
    let text = serde_json::to_string(&op).unwrap();
    assert_eq!(serde_json::from_str::<MetadataOp>(&text).unwrap(), op);
}

#[tokio::test]
async fn local_log_through_the_trait() {
    let f = fixture();
    let log: &dyn MetadataLog = &f.log;
    let reply = log
        .submit(create(FileId::ROOT, "async", NewKind::Directory))
        .await
        .unwrap();
    assert!(reply.is_ok());
    assert_eq!(log.last_applied().unwrap(), 1);
}

fn inline(index: u64, generation: u64, data: &[u8]) -> StripeRecord {
    StripeRecord {
        index,
        generation,
        len: data.len() as u64,
        crc: crate::checksum::crc32(data),
        k: 2,
        m: 1,
        chunks: Vec::new(),
        inline: Some(data.to_vec()),
    }
}

#[test]
fn inline_stripes_are_stored_checked_and_replace_chunks() {
    let f = fixture();
    let ino = f.mkfile(FileId::ROOT, "small");
    // chunks first, then the same stripe rewritten small: its chunks become garbage
    f.ok(commit(ino, stripe(0, 1, 8192, ["d1", "d2", "d3"]), 8192));
    let rw = f.ok(commit(ino, inline(0, 2, b"tiny"), 8192));
    assert_eq!(rw.garbage.len(), 3, "the coded stripe's chunks are freed");
    let back = f.store().stripe(ino, 0).unwrap().unwrap();
    assert_eq!(back.inline.as_deref(), Some(&b"tiny"[..]));
    assert!(back.chunks.is_empty());
    // and back to chunks: nothing to free
    let rw = f.ok(commit(ino, stripe(0, 3, 8192, ["d1", "d2", "d3"]), 8192));
    assert!(rw.garbage.is_empty());
    assert_eq!(f.store().stripe(ino, 0).unwrap().unwrap().inline, None);

    // bytes that do not match the record, or an inline stripe with chunks, are refused
    let mut bad = inline(1, 1, b"abcd");
    bad.crc ^= 1;
    let r = f.refused(commit(ino, bad, 8192 * 2));
    assert!(r.to_string().contains("checksum"), "{r}");
    let mut both = stripe(1, 1, 4, ["d1", "d2", "d3"]);
    both.inline = Some(b"abcd".to_vec());
    let r = f.refused(commit(ino, both, 8192 * 2));
    assert!(r.to_string().contains("no chunks"), "{r}");

    // the bytes go with their stripe: truncated away, or with the file
    let rows = |f: &Fixture| -> i64 {
        rusqlite::Connection::open(&f.path)
            .unwrap()
            .query_row("SELECT count(*) FROM stripe_data", [], |r| r.get(0))
            .unwrap()
    };
    f.ok(commit(ino, inline(1, 4, b"more"), 8192 + 4));
    assert_eq!(rows(&f), 1);
    f.ok(commit(ino, inline(0, 5, b"tiny"), 8192 + 4));
    assert_eq!(rows(&f), 2);
    f.ok(MetadataOp::Truncate {
        ino,
        size: 100,
        tail: None,
        time: t(20),
    });
    assert_eq!(rows(&f), 1, "stripe 1 is truncated away");
    assert!(f.store().stripe(ino, 1).unwrap().is_none());
    f.ok(MetadataOp::Unlink {
        parent: FileId::ROOT,
        name: "small".into(),
        time: t(21),
    });
    assert_eq!(rows(&f), 0, "the file's last stripe goes with it");
}

#[test]
fn inline_bytes_travel_as_hex_in_json_and_as_bytes_elsewhere() {
    let op = commit(FileId(3), inline(0, 1, &[0, 1, 0xab, 0xff]), 4);
    let text = serde_json::to_string(&op).unwrap();
    assert!(text.contains("\"inline\":\"0001abff\""), "{text}");
    assert_eq!(serde_json::from_str::<MetadataOp>(&text).unwrap(), op);
    // a record without the field (written before inline stripes existed) still reads
    let old =
        serde_json::to_string(&commit(FileId(3), stripe(0, 1, 10, ["a", "b", "c"]), 10)).unwrap();
    assert!(!old.contains("inline"));
    assert!(serde_json::from_str::<MetadataOp>(&old).is_ok());
    let bad = text.replace("0001abff", "0001abf");
    assert!(serde_json::from_str::<MetadataOp>(&bad).is_err());
}

/// SQLite's count of virtual-machine steps for reading stripe 1 of `ino` (the stripe and
/// its chunks, as a read does; its chunk locations, as a rewrite does), on a connection of
/// its own.
fn steps_to_find_one_stripe(path: &std::path::Path, ino: FileId) -> i32 {
    use rusqlite::StatementStatus::VmStep;
    let conn = rusqlite::Connection::open(path).unwrap();
    let found = super::sqlite::read_stripes(&conn, ino, 1..2).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].chunks.len(), 3);
    let located = super::sqlite::chunk_locations(&conn, ino, 1..2).unwrap();
    assert_eq!(located.len(), 3);
    [
        super::sqlite::STRIPE_RANGE,
        super::sqlite::STRIPE_CHUNKS,
        super::sqlite::STRIPE_CHUNK_LOCATIONS,
    ]
    .iter()
    .map(|q| conn.prepare_cached(q).unwrap().get_status(VmStep))
    .sum()
}

#[test]
fn finding_one_stripe_costs_the_same_in_a_file_of_3_or_300_stripes() {
    let f = fixture();
    let small = f.mkfile(FileId::ROOT, "small");
    let big = f.mkfile(FileId::ROOT, "big");
    for (ino, stripes) in [(small, 3), (big, 300)] {
        for i in 0..stripes {
            f.ok(commit(
                ino,
                stripe(i, 1, 8192, ["d1", "d2", "d3"]),
                (i + 1) * 8192,
            ));
        }
    }
    let (few, many) = (
        steps_to_find_one_stripe(&f.path, small),
        steps_to_find_one_stripe(&f.path, big),
    );
    assert!(few > 0, "no steps counted");
    // Searching the key visits the same rows; a scan of the file's rows would take
    // hundreds of times more steps.
    assert_eq!(
        few, many,
        "steps for one stripe of 3: {few}, of 300: {many}"
    );
}

/// The inode count and regular files' bytes, counted the slow way on a connection of its
/// own.
fn usage_counted(path: &std::path::Path) -> (u64, u64) {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN kind = 1 THEN size ELSE 0 END), 0)
             FROM inodes",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .unwrap()
}

#[test]
fn usage_counters_follow_every_op_that_adds_removes_or_resizes_inodes() {
    let f = fixture();
    let check = |what: &str| {
        assert_eq!(
            f.store().usage().unwrap(),
            usage_counted(&f.path),
            "after {what}"
        );
    };
    check("a fresh database");
    let d = f.mkdir(FileId::ROOT, "d");
    let a = f.mkfile(d, "a");
    let b = f.mkfile(d, "b");
    f.ok(create(d, "link", NewKind::Symlink("a".into())));
    f.ok(create(d, "pipe", NewKind::Fifo));
    check("creates");
    f.ok(commit(a, stripe(0, 1, 8192, ["d1", "d2", "d3"]), 8192));
    f.ok(commit(a, stripe(1, 1, 100, ["d1", "d2", "d3"]), 8292));
    f.ok(commit(b, stripe(0, 1, 5000, ["d1", "d2", "d3"]), 5000));
    check("stripe commits");
    assert_eq!(f.store().usage().unwrap(), (6, 8292 + 5000));
    f.ok(MetadataOp::Truncate {
        ino: a,
        size: 8192,
        tail: None,
        time: t(3),
    });
    f.ok(MetadataOp::Truncate {
        ino: b,
        size: 1 << 30,
        tail: None,
        time: t(3),
    });
    check("truncates down and up");
    f.ok(MetadataOp::Link {
        ino: a,
        new_parent: FileId::ROOT,
        new_name: "a2".into(),
        time: t(4),
    });
    f.ok(MetadataOp::Unlink {
        parent: d,
        name: "a".into(),
        time: t(4),
    });
    check("a link and an unlink of one of two names");
    f.ok(MetadataOp::Rename {
        parent: FileId::ROOT,
        name: "a2".into(),
        new_parent: d,
        new_name: "b".into(),
        no_replace: false,
        time: t(5),
    });
    check("a rename over a file");
    for name in ["b", "link", "pipe"] {
        f.ok(MetadataOp::Unlink {
            parent: d,
            name: name.into(),
            time: t(6),
        });
    }
    f.ok(MetadataOp::Rmdir {
        parent: FileId::ROOT,
        name: "d".into(),
        time: t(6),
    });
    check("removing everything");
    assert_eq!(f.store().usage().unwrap(), (1, 0), "the root alone");
}

#[test]
fn a_database_from_before_the_usage_counters_gets_them_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (i, script) in super::schema::MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(script).unwrap();
            conn.pragma_update(None, "user_version", i + 1).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO inodes (ino, kind, perm, nlink, uid, gid, size, atime, mtime, ctime, crtime)
                 VALUES (2, 1, 420, 1, 0, 0, 1234, 0, 0, 0, 0),
                        (3, 2, 493, 2, 0, 0, 4096, 0, 0, 0, 0);",
        )
        .unwrap();
    }
    let store = MetaStore::open(&path).unwrap();
    assert_eq!(store.usage().unwrap(), (3, 1234));
}

/// `truncate -s 9223372036854775807` twice: the byte counter holds sums past `i64::MAX`
/// exactly, and comes back down exactly when the files go.
#[test]
fn usage_counts_files_of_the_largest_size_exactly() {
    let f = fixture();
    let a = f.mkfile(FileId::ROOT, "a");
    let b = f.mkfile(FileId::ROOT, "b");
    f.ok(commit(b, stripe(0, 1, 5000, ["d1", "d2", "d3"]), 5000));
    for ino in [a, b] {
        f.ok(MetadataOp::Truncate {
            ino,
            size: i64::MAX as u64,
            tail: None,
            time: t(3),
        });
    }
    assert_eq!(f.store().usage().unwrap(), (3, 2 * i64::MAX as u64));
    f.ok(MetadataOp::Truncate {
        ino: b,
        size: 5000,
        tail: None,
        time: t(4),
    });
    assert_eq!(f.store().usage().unwrap(), (3, i64::MAX as u64 + 5000));
    f.ok(MetadataOp::Unlink {
        parent: FileId::ROOT,
        name: "a".into(),
        time: t(5),
    });
    assert_eq!(f.store().usage().unwrap(), (2, 5000));
    assert_eq!(usage_counted(&f.path), (2, 5000));
}

/// A database whose one 64-bit byte counter had overflowed into a REAL (before schema
/// version 10) opens with the counters recounted.
#[test]
fn an_overflowed_byte_counter_is_recounted_by_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (i, script) in super::schema::MIGRATIONS[..9].iter().enumerate() {
            conn.execute_batch(script).unwrap();
            conn.pragma_update(None, "user_version", i + 1).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO inodes (ino, kind, perm, nlink, uid, gid, size, atime, mtime, ctime, crtime)
                 VALUES (2, 1, 420, 1, 0, 0, 9223372036854775807, 0, 0, 0, 0),
                        (3, 1, 420, 1, 0, 0, 100, 0, 0, 0, 0);",
        )
        .unwrap();
        let kind: String = conn
            .query_row(
                "SELECT typeof(value) FROM meta WHERE key = 'file_bytes'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "real", "the old counter overflowed");
    }
    let store = MetaStore::open(&path).unwrap();
    assert_eq!(
        store.usage().unwrap(),
        (3, i64::MAX as u64 + 100),
        "the root and two files"
    );
}

#[test]
fn a_directory_is_read_in_pages_after_a_name() {
    let f = fixture();
    let d = f.mkdir(FileId::ROOT, "d");
    let mut names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    names.push("Ä".into());
    for n in &names {
        f.mkfile(d, n);
    }
    names.sort();
    let all: Vec<String> = f
        .store()
        .readdir(d)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(all, names);
    let mut paged: Vec<String> = Vec::new();
    loop {
        let after = paged.last().cloned().unwrap_or_default();
        let page = f.store().readdir_after(d, &after, 3).unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        paged.extend(page.into_iter().map(|e| e.name));
    }
    assert_eq!(paged, names);
    assert!(f
        .store()
        .readdir_after(d, "n9", 3)
        .unwrap()
        .iter()
        .all(|e| e.name == "Ä"));
}

fn once(request: &str, time: i64, op: MetadataOp) -> MetadataOp {
    MetadataOp::Once {
        request: request.into(),
        time: t(time),
        op: Box::new(op),
    }
}

#[test]
fn an_op_sent_twice_under_one_request_id_is_applied_once() {
    let f = fixture();
    let first = f.ok(once(
        "r1/0",
        10,
        create(FileId::ROOT, "a", NewKind::Directory),
    ));
    let ino = first.attr.as_ref().unwrap().ino;
    // the repeat gets the first reply instead of "already exists", and changes nothing
    let again = f.ok(once(
        "r1/0",
        11,
        create(FileId::ROOT, "a", NewKind::Directory),
    ));
    assert_eq!(again.attr, first.attr);
    // the same op under another id is a new op
    assert!(matches!(
        f.refused(once(
            "r2/0",
            12,
            create(FileId::ROOT, "a", NewKind::Directory)
        )),
        Refusal::Exists(_)
    ));
    // a refusal is not remembered: once "a" is gone, the same id applies
    f.ok(MetadataOp::Rmdir {
        parent: FileId::ROOT,
        name: "a".into(),
        time: t(13),
    });
    let b = f.ok(once(
        "r2/0",
        14,
        create(FileId::ROOT, "a", NewKind::Directory),
    ));
    assert_ne!(b.attr.as_ref().unwrap().ino, ino);
    assert_eq!(
        f.store().lookup(FileId::ROOT, "a").unwrap().unwrap().ino,
        b.attr.unwrap().ino
    );
}

#[test]
fn request_ids_are_forgotten_after_the_kept_time() {
    let f = fixture();
    f.ok(once(
        "old/0",
        0,
        create(FileId::ROOT, "a", NewKind::Directory),
    ));
    // an op an hour and more later forgets the old id
    f.ok(once(
        "new/0",
        REQUEST_IDS_KEPT_NS + 1,
        create(FileId::ROOT, "b", NewKind::Directory),
    ));
    // so a repeat of the old one is applied again: refused, as "a" exists
    assert!(matches!(
        f.refused(once(
            "old/0",
            REQUEST_IDS_KEPT_NS + 2,
            create(FileId::ROOT, "a", NewKind::Directory)
        )),
        Refusal::Exists(_)
    ));
}
