//! openraft's storage suite on the SQLite stores, and tests of what WormFS relies on.

use super::*;
use crate::ids::FileId;
use crate::meta::{MetaStore, MetadataOp, NewKind, Refusal, Timestamp};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, RaftLogReader, RaftSnapshotBuilder};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, SqliteLogStore, SqliteStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, SqliteLogStore, SqliteStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = open(&dir);
        Ok((dir, log, sm))
    }
}

fn open(dir: &TempDir) -> (SqliteLogStore, SqliteStateMachine) {
    let store = Arc::new(MetaStore::open(&dir.path().join("meta.sqlite")).expect("meta store"));
    open_storage(dir.path(), store).expect("raft storage")
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn op_entry(term: u64, index: u64, op: MetadataOp) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(op),
    }
}

fn membership_entry(term: u64, index: u64) -> Entry {
    let members: BTreeMap<RaftNodeId, Member> = [(
        1,
        Member {
            name: "node-a".into(),
            p2p_addr: "/ip4/127.0.0.1/tcp/4001".into(),
            rpc_addr: "127.0.0.1:7001".into(),
            peer_id: "12D3KooWexample".into(),
        },
    )]
    .into();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], members)),
    }
}

fn mkdir(name: &str) -> MetadataOp {
    MetadataOp::Create {
        parent: FileId::ROOT,
        name: name.into(),
        kind: NewKind::Directory,
        perm: 0o755,
        uid: 1000,
        gid: 1000,
        time: Timestamp(1_700_000_000_000_000_000),
    }
}

#[tokio::test]
async fn a_refusal_is_a_reply_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(&dir);
    let replies = sm
        .apply([
            membership_entry(1, 0),
            op_entry(1, 1, mkdir("photos")),
            op_entry(1, 2, mkdir("photos")),
        ])
        .await
        .expect("a refusal is not a storage error");
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0], Ok(crate::meta::Applied::default()));
    assert!(replies[1].as_ref().is_ok_and(|a| a.attr.is_some()));
    assert!(
        matches!(&replies[2], Err(Refusal::Exists(_))),
        "{:?}",
        replies[2]
    );

    let replies = sm
        .apply([op_entry(2, 3, mkdir("music"))])
        .await
        .expect("the store goes on after a refusal");
    assert!(replies[0].is_ok());
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2, 3)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 0)));
    assert_eq!(sm.store().last_applied().unwrap(), 3);
    assert!(sm.store().lookup(FileId::ROOT, "music").unwrap().is_some());
}

#[tokio::test]
async fn applying_an_entry_twice_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(&dir);
    sm.apply([op_entry(1, 1, mkdir("a"))]).await.unwrap();
    let err = sm.apply([op_entry(1, 1, mkdir("b"))]).await;
    assert!(err.is_err(), "{err:?}");
    assert!(sm.store().lookup(FileId::ROOT, "b").unwrap().is_none());
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1)));
}

/// Copies the current snapshot of `from` into a receiving file of `to`, as the network does.
async fn transfer(from: &mut SqliteStateMachine, to: &mut SqliteStateMachine) -> SnapshotMeta {
    let mut snap = from
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    let mut incoming = to.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut *snap.snapshot, &mut *incoming)
        .await
        .unwrap();
    to.install_snapshot(&snap.meta, incoming).await.unwrap();
    snap.meta
}

#[tokio::test]
async fn a_snapshot_installed_on_a_fresh_store_gives_the_same_metadata() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = open(&leader_dir);
    leader
        .apply([
            membership_entry(1, 0),
            op_entry(1, 1, mkdir("photos")),
            op_entry(1, 2, mkdir("music")),
        ])
        .await
        .unwrap();
    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 2)));
    // applies after the snapshot do not leak into it
    leader
        .apply([op_entry(1, 3, mkdir("later"))])
        .await
        .unwrap();

    let follower_dir = tempfile::tempdir().unwrap();
    let (_log, mut follower) = open(&follower_dir);
    follower
        .apply([op_entry(1, 1, mkdir("stale"))])
        .await
        .unwrap();
    let meta = transfer(&mut leader, &mut follower).await;
    assert_eq!(meta, built.meta);

    let store = Arc::clone(follower.store());
    assert_eq!(
        store.lookup(FileId::ROOT, "photos").unwrap(),
        leader.store().lookup(FileId::ROOT, "photos").unwrap()
    );
    assert!(store.lookup(FileId::ROOT, "music").unwrap().is_some());
    assert!(store.lookup(FileId::ROOT, "stale").unwrap().is_none());
    assert!(store.lookup(FileId::ROOT, "later").unwrap().is_none());
    assert_eq!(store.last_applied().unwrap(), 2);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        (Some(log_id(1, 2)), built.meta.last_membership.clone())
    );
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);

    // the follower goes on applying after the install
    follower
        .apply([op_entry(1, 3, mkdir("later"))])
        .await
        .unwrap();
    assert_eq!(store.last_applied().unwrap(), 3);
    // the installed database is still in WAL mode (the backup keeps the live journal mode)
    assert!(follower_dir.path().join("meta.sqlite-wal").exists());

    // only the current snapshot's files are left
    let files: Vec<_> = std::fs::read_dir(follower.snapshot_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
}

#[tokio::test]
async fn a_snapshot_whose_data_disagrees_with_its_meta_is_refused() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = open(&leader_dir);
    leader
        .apply([membership_entry(1, 0), op_entry(1, 1, mkdir("photos"))])
        .await
        .unwrap();
    let mut snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (_log, mut follower) = open(&follower_dir);
    follower
        .apply([op_entry(1, 1, mkdir("mine"))])
        .await
        .unwrap();
    let mut incoming = follower.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut *snap.snapshot, &mut *incoming)
        .await
        .unwrap();
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(1, 7));
    assert!(follower.install_snapshot(&meta, incoming).await.is_err());
    assert!(follower
        .store()
        .lookup(FileId::ROOT, "mine")
        .unwrap()
        .is_some());
    assert!(follower
        .store()
        .lookup(FileId::ROOT, "photos")
        .unwrap()
        .is_none());
    assert!(follower.get_current_snapshot().await.unwrap().is_none());
}

#[tokio::test]
async fn reopening_keeps_vote_log_applied_state_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new(3, 1);
    let snapshot_meta;
    {
        let (mut log, mut sm) = open(&dir);
        log.save_vote(&vote).await.unwrap();
        log.blocking_append([
            membership_entry(1, 0),
            op_entry(1, 1, mkdir("a")),
            op_entry(3, 2, mkdir("b")),
        ])
        .await
        .unwrap();
        log.save_committed(Some(log_id(3, 2))).await.unwrap();
        log.purge(log_id(1, 0)).await.unwrap();
        let entries = log.try_get_log_entries(1..3).await.unwrap();
        sm.apply(entries).await.unwrap();
        snapshot_meta = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
            .meta;
    }
    let (mut log, mut sm) = open(&dir);
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3, 2)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 0)));
    assert_eq!(state.last_log_id, Some(log_id(3, 2)));
    let entries = log.try_get_log_entries(0..10).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id).collect::<Vec<_>>(),
        vec![log_id(1, 1), log_id(3, 2)]
    );
    assert!(matches!(&entries[1].payload, EntryPayload::Normal(op) if *op == mkdir("b")));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(3, 2)));
    assert_eq!(sm.store().last_applied().unwrap(), 2);
    assert!(sm.store().lookup(FileId::ROOT, "b").unwrap().is_some());
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot kept");
    assert_eq!(current.meta, snapshot_meta);
}

#[tokio::test]
async fn truncate_removes_the_tail_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(&dir);
    log.blocking_append((1..=5).map(|i| op_entry(1, i, mkdir(&format!("d{i}")))))
        .await
        .unwrap();
    log.truncate(log_id(1, 3)).await.unwrap();
    let entries = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 2))
    );
}

/// A follower stopped after a snapshot from the master replaced its database and before it
/// recorded that snapshot: its database is ahead of its log and of its own older snapshot.
/// Reopened, it must start with a snapshot that reaches the database's last applied entry
/// (openraft purges the log up to there and stops if the snapshot is behind it).
#[tokio::test]
async fn a_database_replaced_by_a_snapshot_that_was_never_recorded_starts_with_a_snapshot_of_itself(
) {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = open(&leader_dir);
    let mut entries = vec![membership_entry(1, 0)];
    entries.extend((1..=5).map(|i| op_entry(1, i, mkdir(&format!("d{i}")))));
    leader.apply(entries.clone()).await.unwrap();

    // openraft may purge the follower's log up to the snapshot before the install is done
    for purged in [false, true] {
        a_replaced_database_starts_with_a_snapshot_of_itself(&leader, &entries, purged).await;
    }
}

async fn a_replaced_database_starts_with_a_snapshot_of_itself(
    leader: &SqliteStateMachine,
    entries: &[Entry],
    purged: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(&dir);
        log.blocking_append(entries[..3].to_vec()).await.unwrap();
        log.save_committed(Some(log_id(1, 2))).await.unwrap();
        sm.apply(entries[..3].to_vec()).await.unwrap();
        let own = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(own.meta.last_log_id, Some(log_id(1, 2)));
        // what `install` does before the crash point: the database only
        let copy = dir.path().join("from-master.sqlite");
        leader.store().copy_into(&copy).unwrap();
        sm.store().replace_from(&copy).unwrap();
        if purged {
            log.purge(log_id(1, 5)).await.unwrap();
        }
    }
    let (mut log, mut sm) = open(&dir);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 5)));
    assert!(sm.store().lookup(FileId::ROOT, "d5").unwrap().is_some());
    let state = openraft::storage::StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(state.committed, Some(log_id(1, 5)));
    assert!(
        state.snapshot_meta.last_log_id >= Some(log_id(1, 5)),
        "the log is purged up to the database's last applied entry, and the snapshot \
         must reach it (purged before the crash: {purged}): {:?}",
        state.snapshot_meta
    );
}

/// The committed log id openraft saves after each commit is kept in memory and written in
/// the next append's transaction (or at close), not in a transaction of its own.
#[tokio::test]
async fn the_committed_id_is_written_with_the_next_append_or_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(&dir);
    log.blocking_append([membership_entry(1, 0), op_entry(1, 1, mkdir("a"))])
        .await
        .unwrap();
    log.save_committed(Some(log_id(1, 1))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1)));
    // another connection to the same file sees what the database holds
    let path = log.path().to_owned();
    let on_disk = || {
        SqliteLogStore::open(&path)
            .unwrap()
            .purged_and_committed()
            .unwrap()
            .1
    };
    assert_eq!(on_disk(), None, "not written on its own");
    log.blocking_append([op_entry(1, 2, mkdir("b"))])
        .await
        .unwrap();
    assert_eq!(on_disk(), Some(log_id(1, 1)), "written with the append");
    log.save_committed(Some(log_id(1, 2))).await.unwrap();
    assert_eq!(on_disk(), Some(log_id(1, 1)));
    drop((log, sm));
    let (mut log, _sm) = open(&dir);
    assert_eq!(
        log.read_committed().await.unwrap(),
        Some(log_id(1, 2)),
        "written at close"
    );
}

#[tokio::test]
async fn applies_lean_on_the_log_for_durability_and_a_snapshot_syncs_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    let store = Arc::new(MetaStore::open(&path).unwrap());
    // alone, a metadata store fsyncs every commit (a node without a cluster relies on it)
    assert!(store.durable_commits().unwrap());
    let (mut log, mut sm) = open_storage(dir.path(), Arc::clone(&store)).unwrap();
    // under Raft the log holds the ops durably before they are applied
    assert!(!store.durable_commits().unwrap());
    log.blocking_append([membership_entry(1, 0), op_entry(1, 1, mkdir("a"))])
        .await
        .unwrap();
    let entries = log.try_get_log_entries(0..2).await.unwrap();
    sm.apply(entries).await.unwrap();
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1)));
    // the database was synced with the snapshot, and syncs again with nothing new
    store.sync().unwrap();
    assert!(store.lookup(FileId::ROOT, "a").unwrap().is_some());
}

/// The log keeps its newest entries in memory for replication's reads; whatever happens to
/// the log (appends, overwrites, gaps, truncations, purges, more entries than it keeps, a
/// reopen), every read answers what the database holds.
#[tokio::test]
async fn reads_answered_from_the_newest_entries_match_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _sm) = open(&dir);
    let path = log.path().to_owned();
    let mut log = log;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below.max(1)
    };
    let (mut first, mut last, mut term) = (0_u64, None::<u64>, 1_u64);
    let (mut from_tail, mut reads) = (0, 0);
    for _ in 0..150 {
        let end = last.map_or(first, |l| l + 1);
        match next(12) {
            0..=5 => {
                let n = 1 + next(40);
                let batch: Vec<Entry> = (end..end + n)
                    .map(|i| op_entry(term, i, mkdir(&format!("d{i}"))))
                    .collect();
                log.blocking_append(batch).await.unwrap();
                last = Some(end + n - 1);
            }
            // rows replaced in place (INSERT OR REPLACE), without a truncation first
            6 if last.is_some() => {
                term += 1;
                let at = first + next(end - first);
                let n = 1 + next(3);
                let batch: Vec<Entry> = (at..at + n)
                    .map(|i| op_entry(term, i, mkdir(&format!("r{i}"))))
                    .collect();
                log.blocking_append(batch).await.unwrap();
                last = Some(last.unwrap().max(at + n - 1));
            }
            // past the end with a gap
            7 => {
                let at = end + 2;
                log.blocking_append([op_entry(term, at, mkdir("gap"))])
                    .await
                    .unwrap();
                last = Some(at);
            }
            8 if last.is_some() => {
                let at = first + next(end - first);
                log.truncate(log_id(term, at)).await.unwrap();
                last = at.checked_sub(1).filter(|&l| l >= first);
            }
            9 if last.is_some() => {
                let at = first + next(end - first);
                log.purge(log_id(term, at)).await.unwrap();
                first = at + 1;
                last = last.filter(|&l| l > at);
            }
            10 => {
                drop(log);
                log = SqliteLogStore::open(&path).unwrap();
            }
            _ => {}
        }
        let top = last.unwrap_or(first) + 3;
        let mut ranges = vec![(first, top), (top.saturating_sub(3), top)];
        for _ in 0..4 {
            let lo = next(top + 1);
            ranges.push((lo, lo + next(top + 2 - lo)));
        }
        for (lo, hi) in ranges {
            let got = log.try_get_log_entries(lo..=hi).await.unwrap();
            let want = log.read_from_database(lo, hi).unwrap();
            assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&want).unwrap(),
                "entries {lo}..={hi}"
            );
            reads += 1;
            from_tail += usize::from(log.tail_answers(lo));
        }
    }
    // both the tail and the database answered many of the reads
    assert!(
        from_tail > reads / 10 && from_tail < reads * 9 / 10,
        "{from_tail} of {reads}"
    );
}
