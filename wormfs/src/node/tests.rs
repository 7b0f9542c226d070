//! `NodeFs` over a memory chunk store and a real SQLite file: what the file-system core
//! does around the log.

use super::{CreateKind, NodeFs};
use crate::ids::{DiskId, FileId, NodeId};
use crate::meta::{LocalLog, MetaStore, MetadataLog};
use crate::placement::SpreadPlacement;
use crate::policy::{PolicySet, StoragePolicy};
use crate::store::{ChunkStore, MemoryChunkStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STRIPE: usize = 2 * 16384;

fn node(dir: &std::path::Path) -> (Arc<NodeFs>, Arc<MemoryChunkStore>) {
    let disks: Vec<(DiskId, u64)> = (0..3).map(|i| (DiskId(format!("d{i}")), 1 << 30)).collect();
    let store = Arc::new(MemoryChunkStore::new(&disks));
    let meta = Arc::new(MetaStore::open(&dir.join("meta.sqlite")).unwrap());
    let log: Arc<dyn MetadataLog> = Arc::new(LocalLog::new(meta.clone()).unwrap());
    let policies = PolicySet::single(
        "t",
        StoragePolicy {
            k: 2,
            m: 1,
            stripe_size: STRIPE as u64,
        },
    );
    let fs = Arc::new(NodeFs::new(
        NodeId("n1".into()),
        store.clone() as Arc<dyn ChunkStore>,
        log,
        meta,
        policies,
        Arc::new(SpreadPlacement),
    ));
    (fs, store)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An unlink and an overwrite answer once the metadata is committed: the old chunk files
/// are deleted afterwards, and a node that holds them and does not answer (deletes held
/// here) does not hold up the caller. Before, each removal waited for every delete: about
/// 20 s per stripe with a frozen node (tests/soak.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_answer_without_waiting_for_the_chunk_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, store) = node(dir.path());
    let write = |name: &'static str| {
        let fs = fs.clone();
        async move {
            let a = fs
                .create(FileId::ROOT, name, CreateKind::File, 0o644, 0, 0)
                .await
                .unwrap();
            for s in 0..2u64 {
                let data: Vec<u8> = (0..STRIPE).map(|b| (b as u64 * 3 + s) as u8).collect();
                fs.write_stripe(a.ino, s, data).await.unwrap();
            }
            a.ino
        }
    };
    let gone = write("gone").await;
    let kept = write("kept").await;
    // 2 files x 2 stripes x 3 chunks
    assert_eq!(store.chunk_count(), 12);

    /// Lets the deletes go when the test ends, passed or not (a delete the test made wait
    /// would otherwise keep the runtime from shutting down).
    struct Release(Arc<MemoryChunkStore>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.hold_deletes(false);
        }
    }
    store.hold_deletes(true);
    let release = Release(store.clone());
    tokio::time::timeout(Duration::from_secs(10), fs.unlink(FileId::ROOT, "gone"))
        .await
        .expect("the unlink waited for the chunk deletes")
        .unwrap();
    let new: Vec<u8> = vec![7; STRIPE];
    tokio::time::timeout(
        Duration::from_secs(10),
        fs.write_stripe(kept, 0, new.clone()),
    )
    .await
    .expect("the overwrite waited for the old generation's deletes")
    .unwrap();
    assert!(
        fs.getattr(gone).is_err(),
        "the file is gone from the metadata"
    );
    // the old chunks are still there, queued: 6 of the removed file, 3 of the old stripe
    assert_eq!(store.chunk_count(), 15);
    assert_eq!(fs.garbage_pending(), 9);

    drop(release);
    wait_until("the queued deletes", || fs.garbage_pending() == 0);
    assert_eq!(
        store.chunk_count(),
        6,
        "what `kept` references, nothing else"
    );
}

/// Setting or removing a directory's storage policy as an extended attribute follows the
/// policy's own rule: `/`'s is the admins', another directory's its owner's. Other names
/// and reads are not held to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_attribute_is_changed_only_as_the_policy_rule_allows() {
    use super::access::Caller;
    let dir = tempfile::tempdir().unwrap();
    let (fs, _) = node(dir.path());
    let owned = fs
        .create(FileId::ROOT, "mine", CreateKind::Directory, 0o777, 10, 10)
        .await
        .unwrap();
    let caller = |uid: u32, admin: bool| Caller {
        user: "u".into(),
        uid,
        gid: uid,
        groups: Vec::new(),
        admin,
    };
    let policy = super::POLICY_XATTR;
    let (owner, other, root, admin) = (
        caller(10, false),
        caller(11, false),
        caller(0, false),
        caller(0, true),
    );
    for write in [true, false] {
        let e = fs.check_xattr(&root, FileId::ROOT, policy, write);
        assert_eq!(
            e.is_err(),
            write,
            "root, not an admin, on / (write {write}): {e:?}"
        );
    }
    fs.check_xattr(&admin, FileId::ROOT, policy, true).unwrap();
    fs.check_xattr(&owner, owned.ino, policy, true).unwrap();
    let e = fs.check_xattr(&other, owned.ino, policy, true).unwrap_err();
    assert!(e.to_string().contains("belongs to uid 10"), "{e}");
    // another user attribute on the directory is the mode bits' (0o777: anyone's)
    fs.check_xattr(&other, owned.ino, "user.note", true)
        .unwrap();
}
