//! The Raft state machine: committed [`MetadataOp`]s applied to the SQLite [`MetaStore`],
//! and snapshots that are whole copies of that database.
//!
//! Every `apply` batch is one SQLite transaction holding the ops, the last applied log id and
//! the last membership (table `raft_state`), so the metadata and Raft's view of it can never
//! disagree after a crash. Those commits wait for no fsync (the ops are durable in the Raft
//! log before they are applied): after a power loss the database may be a few applies
//! behind, which Raft applies again from the log at restart. It is synced before a snapshot
//! lets the log forget entries. [`MetaStore::last_applied`] stays the Raft log index of the last
//! applied entry.
//!
//! Replies: a normal entry answers its op's [`OpReply`] (a refusal such as "already exists"
//! is a reply, the node goes on). Blank and membership entries carry no op; they answer
//! `Ok(Applied::default())` (no attributes, no garbage), which nobody waits for.
//!
//! Snapshot files live in the snapshot directory as `snapshot-<id>.db` (a `VACUUM INTO`
//! copy of the database, which holds its own `raft_state`) beside `snapshot-<id>.json` (its
//! [`SnapshotMeta`]). Only the newest is kept; `building-*` and `incoming-*` files are work in
//! progress and are removed when the state machine opens.

use super::error::{blocking, io, json, meta, RaftStoreError};
use super::types::{
    Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::meta::{Applied, MetaStore, MetadataOp, OpReply};
use openraft::storage::RaftStateMachine;
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// `raft_state` key of the last applied log id (JSON of `Option<LogId>`).
pub const LAST_APPLIED_KEY: &str = "last_applied_log_id";
/// `raft_state` key of the last applied membership (JSON of [`StoredMembership`]).
pub const MEMBERSHIP_KEY: &str = "last_membership";

/// The Raft state machine over the metadata database.
pub struct SqliteStateMachine {
    shared: Arc<Shared>,
}

/// Builds snapshots of a [`SqliteStateMachine`] (openraft runs it beside `apply`).
pub struct SqliteSnapshotBuilder {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<MetaStore>,
    dir: PathBuf,
    snapshots: Mutex<Snapshots>,
}

#[derive(Default)]
struct Snapshots {
    /// The newest built or installed snapshot and its database file.
    current: Option<(SnapshotMeta, PathBuf)>,
    /// Files handed out by `begin_receiving_snapshot` and not installed yet.
    incoming: Vec<PathBuf>,
}

impl SqliteStateMachine {
    /// A state machine applying to `store`, keeping snapshot files in `snapshot_dir` (created
    /// if needed). Finds the newest snapshot there and removes everything else.
    pub fn open(
        store: Arc<MetaStore>,
        snapshot_dir: &Path,
    ) -> Result<SqliteStateMachine, RaftStoreError> {
        std::fs::create_dir_all(snapshot_dir)
            .map_err(io("create snapshot directory", snapshot_dir))?;
        let current = scan_snapshots(snapshot_dir)?;
        // Applied ops are durable in the Raft log already: their commits need no fsync of
        // their own. The database is synced before the log may forget them (a snapshot
        // built or installed), so a node that loses its last applies with the power
        // applies them again from the log at restart.
        store
            .set_durable_commits(false)
            .map_err(meta("open the metadata database for Raft"))?;
        Ok(SqliteStateMachine {
            shared: Arc::new(Shared {
                store,
                dir: snapshot_dir.to_owned(),
                snapshots: Mutex::new(Snapshots {
                    current,
                    incoming: Vec::new(),
                }),
            }),
        })
    }

    /// The metadata store ops are applied to; read metadata from it.
    pub fn store(&self) -> &Arc<MetaStore> {
        &self.shared.store
    }

    /// The directory holding the snapshot files.
    pub fn snapshot_dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The last applied log id and membership, as recorded in the metadata database.
    pub fn applied(&self) -> Result<(Option<LogId>, StoredMembership), RaftStoreError> {
        read_applied(&self.shared.store)
    }

    /// The newest snapshot kept in the snapshot directory, if any.
    pub fn current_snapshot(&self) -> Option<SnapshotMeta> {
        self.shared
            .snapshots()
            .current
            .as_ref()
            .map(|(m, _)| m.clone())
    }

    /// Replaces the metadata database with the newest local snapshot (when the database
    /// was lost or is behind it); returns the snapshot's last log id, `None` without one.
    pub fn restore_current_snapshot(&self) -> Result<Option<LogId>, RaftStoreError> {
        let Some((meta_, path)) = self.shared.snapshots().current.clone() else {
            return Ok(None);
        };
        self.shared
            .store
            .replace_from(&path)
            .map_err(meta("restore the local snapshot into the database"))?;
        Ok(meta_.last_log_id)
    }

    /// Takes a snapshot of the database as it is now and makes it the current one (for a
    /// database ahead of every local snapshot, whose own snapshot was never recorded).
    pub fn snapshot_now(&self) -> Result<SnapshotMeta, RaftStoreError> {
        build(&self.shared).map(|(meta, _)| meta)
    }
}

impl Shared {
    fn snapshots(&self) -> MutexGuard<'_, Snapshots> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh, unused file name in the snapshot directory.
    fn work_file(&self, prefix: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{prefix}-{nanos}-{n}.db"))
    }

    /// Makes the database copy at `src` the snapshot described by `meta`: renames it to its
    /// final name, writes the meta beside it, and makes it current (the superseded one is
    /// removed). A built snapshot older than the current one (an install overtook the build)
    /// is dropped instead, unless `always` (an installed snapshot is the state now).
    fn publish(&self, meta: &SnapshotMeta, src: &Path, always: bool) -> Result<(), RaftStoreError> {
        let mut snapshots = self.snapshots();
        let (db, meta_file) = snapshot_files(&self.dir, &meta.snapshot_id);
        let newer = always
            || snapshots
                .current
                .as_ref()
                .is_none_or(|(cur, _)| meta.last_log_id >= cur.last_log_id);
        if !newer {
            remove_file(src)?;
            return Ok(());
        }
        std::fs::rename(src, &db).map_err(io("rename snapshot", src))?;
        let text = serde_json::to_vec(meta).map_err(json("encode snapshot meta"))?;
        let tmp = meta_file.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io("write snapshot meta", &tmp))?;
        sync_file(&tmp)?;
        std::fs::rename(&tmp, &meta_file).map_err(io("rename snapshot meta", &tmp))?;
        sync_file(&self.dir)?;
        if let Some((old, old_db)) = snapshots.current.replace((meta.clone(), db.clone())) {
            if old_db != db {
                let (_, old_meta) = snapshot_files(&self.dir, &old.snapshot_id);
                remove_file(&old_meta)?;
                remove_file(&old_db)?;
            }
        }
        Ok(())
    }
}

/// The database and meta file names of snapshot `id` (characters unfit for a file name are
/// replaced).
fn snapshot_files(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        dir.join(format!("snapshot-{name}.db")),
        dir.join(format!("snapshot-{name}.json")),
    )
}

fn remove_file(path: &Path) -> Result<(), RaftStoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io("remove old snapshot file", path)(e))
        }
        _ => Ok(()),
    }
}

fn sync_file(path: &Path) -> Result<(), RaftStoreError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", path))
}

/// Finds the newest complete snapshot in `dir` and removes every other file there.
fn scan_snapshots(dir: &Path) -> Result<Option<(SnapshotMeta, PathBuf)>, RaftStoreError> {
    let mut found: Vec<(SnapshotMeta, PathBuf)> = Vec::new();
    let mut others = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io("list snapshot directory", dir))? {
        let path = item.map_err(io("list snapshot directory", dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("snapshot-") && name.ends_with(".json") {
            let text = std::fs::read(&path).map_err(io("read snapshot meta", &path))?;
            let meta: SnapshotMeta =
                serde_json::from_slice(&text).map_err(json("decode snapshot meta"))?;
            let (db, _) = snapshot_files(dir, &meta.snapshot_id);
            if db.exists() {
                found.push((meta, db));
                continue;
            }
        }
        if name.starts_with("snapshot-")
            || name.starts_with("building-")
            || name.starts_with("incoming-")
        {
            others.push(path);
        }
    }
    found.sort_by_key(|(meta, _)| meta.last_log_id);
    let current = found.pop();
    for (meta, db) in found {
        let (_, meta_file) = snapshot_files(dir, &meta.snapshot_id);
        others.push(meta_file);
        others.push(db);
    }
    for path in others {
        if current.as_ref().is_none_or(|(_, db)| *db != path) {
            remove_file(&path)?;
        }
    }
    Ok(current)
}

/// The last applied log id and membership in a `raft_state` table.
fn decode_applied(
    last_applied: Option<&str>,
    membership: Option<&str>,
) -> Result<(Option<LogId>, StoredMembership), RaftStoreError> {
    let last_applied = match last_applied {
        Some(text) => serde_json::from_str(text).map_err(json("decode last applied log id"))?,
        None => None,
    };
    let membership = match membership {
        Some(text) => serde_json::from_str(text).map_err(json("decode last membership"))?,
        None => StoredMembership::default(),
    };
    Ok((last_applied, membership))
}

fn read_applied(store: &MetaStore) -> Result<(Option<LogId>, StoredMembership), RaftStoreError> {
    let last = store
        .raft_state(LAST_APPLIED_KEY)
        .map_err(meta("read last applied log id"))?;
    let membership = store
        .raft_state(MEMBERSHIP_KEY)
        .map_err(meta("read last membership"))?;
    decode_applied(last.as_deref(), membership.as_deref())
}

fn applied_of_copy(
    state: &BTreeMap<String, String>,
) -> Result<(Option<LogId>, StoredMembership), RaftStoreError> {
    decode_applied(
        state.get(LAST_APPLIED_KEY).map(String::as_str),
        state.get(MEMBERSHIP_KEY).map(String::as_str),
    )
}

/// Applies `entries` in one transaction; see the module documentation for the replies.
fn apply_entries(store: &MetaStore, entries: &[Entry]) -> Result<Vec<OpReply>, RaftStoreError> {
    let Some(last) = entries.last() else {
        return Ok(Vec::new());
    };
    let batch: Vec<(u64, Option<&MetadataOp>)> = entries
        .iter()
        .map(|e| match &e.payload {
            EntryPayload::Normal(op) => (e.log_id.index, Some(op)),
            EntryPayload::Blank | EntryPayload::Membership(_) => (e.log_id.index, None),
        })
        .collect();
    let membership = entries.iter().rev().find_map(|e| match &e.payload {
        EntryPayload::Membership(m) => Some(StoredMembership::new(Some(e.log_id), m.clone())),
        _ => None,
    });
    let last_json =
        serde_json::to_string(&Some(last.log_id)).map_err(json("encode last applied log id"))?;
    let membership_json = membership
        .map(|m| serde_json::to_string(&m).map_err(json("encode last membership")))
        .transpose()?;
    let mut state = vec![(LAST_APPLIED_KEY, last_json.as_str())];
    if let Some(m) = &membership_json {
        state.push((MEMBERSHIP_KEY, m.as_str()));
    }
    let replies = store
        .apply_batch(&batch, &state)
        .map_err(meta("apply committed entries"))?;
    Ok(replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Ok(Applied::default())))
        .collect())
}

/// Copies the database into the snapshot directory and publishes it; returns its meta and an
/// open handle (valid even if a newer snapshot superseded it meanwhile).
fn build(shared: &Shared) -> Result<(SnapshotMeta, std::fs::File), RaftStoreError> {
    let tmp = shared.work_file("building");
    let result = (|| {
        shared
            .store
            .copy_into(&tmp)
            .map_err(meta("copy the database for a snapshot"))?;
        sync_file(&tmp)?;
        // the log is purged up to the snapshot next: what it held must be on disk here too
        shared
            .store
            .sync()
            .map_err(meta("sync the database before a snapshot"))?;
        // the meta comes from inside the copy: it describes exactly that state
        let state = MetaStore::raft_state_of_copy(&tmp).map_err(meta("read snapshot state"))?;
        let (last_log_id, last_membership) = applied_of_copy(&state)?;
        let unique = tmp
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .trim_start_matches("building-")
                    .to_owned()
            })
            .unwrap_or_default();
        let snapshot_id = match last_log_id {
            Some(l) => format!(
                "{}-{}-{}-{unique}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("empty-{unique}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let file = std::fs::File::open(&tmp).map_err(io("open snapshot", &tmp))?;
        shared.publish(&meta, &tmp, false)?;
        Ok((meta, file))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks the received database copy at `src` against `meta`, replaces the live database
/// with it, and publishes it as the current snapshot.
fn install(shared: &Shared, meta_: &SnapshotMeta, src: &Path) -> Result<(), RaftStoreError> {
    let state = MetaStore::raft_state_of_copy(src).map_err(meta("check received snapshot"))?;
    let (found, _) = applied_of_copy(&state)?;
    if found != meta_.last_log_id {
        return Err(RaftStoreError::SnapshotMismatch {
            snapshot_id: meta_.snapshot_id.clone(),
            announced: format!("{:?}", meta_.last_log_id),
            found: format!("{found:?}"),
        });
    }
    shared
        .store
        .replace_from(src)
        .map_err(meta("install snapshot into the database"))?;
    shared
        .store
        .sync()
        .map_err(meta("sync the database after installing a snapshot"))?;
    crate::crash::point(crate::crash::SNAPSHOT_REPLACED);
    shared.publish(meta_, src, true)
}

fn snapshot_err(
    meta: Option<&SnapshotMeta>,
    verb: ErrorVerb,
) -> impl FnOnce(RaftStoreError) -> StorageError {
    let subject = ErrorSubject::Snapshot(meta.map(SnapshotMeta::signature));
    move |e| e.into_storage(subject, verb)
}

fn sm_err(verb: ErrorVerb) -> impl FnOnce(RaftStoreError) -> StorageError {
    move |e| e.into_storage(ErrorSubject::StateMachine, verb)
}

impl RaftSnapshotBuilder<TypeConfig> for SqliteSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let shared = Arc::clone(&self.shared);
        let (meta, file) = blocking("build snapshot", move || build(&shared))
            .await
            .map_err(snapshot_err(None, ErrorVerb::Write))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SqliteStateMachine {
    type SnapshotBuilder = SqliteSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let shared = Arc::clone(&self.shared);
        blocking("read applied state", move || read_applied(&shared.store))
            .await
            .map_err(sm_err(ErrorVerb::Read))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<OpReply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let shared = Arc::clone(&self.shared);
        blocking("apply committed entries", move || {
            if crate::crash::fails(crate::crash::APPLY_FAILS) {
                return Err(io("apply committed entries", &shared.dir)(
                    std::io::Error::other("injected failure"),
                ));
            }
            apply_entries(&shared.store, &entries)
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Apply(last), ErrorVerb::Write))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SqliteSnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.shared.work_file("incoming");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io("create file for a received snapshot", &path))
            .map_err(snapshot_err(None, ErrorVerb::Write))?;
        self.shared.snapshots().incoming.push(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta_: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let err = || snapshot_err(Some(meta_), ErrorVerb::Write);
        let src = self.received_file(*snapshot).await.map_err(err())?;
        let shared = Arc::clone(&self.shared);
        let meta_owned = meta_.clone();
        let installed = blocking("install snapshot", move || {
            let result = install(&shared, &meta_owned, &src);
            // whatever happened, the other received files are of no use any more
            let stale = std::mem::take(&mut shared.snapshots().incoming);
            for path in stale.iter().chain(result.is_err().then_some(&src)) {
                let _ = std::fs::remove_file(path);
            }
            result
        })
        .await;
        if installed.is_ok() {
            tracing::info!(
                last_log_id = ?meta_.last_log_id,
                snapshot = %meta_.snapshot_id,
                "installed a metadata snapshot from the master"
            );
        }
        installed.map_err(err())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self.shared.snapshots().current.clone();
        let Some((meta, path)) = current else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(io("open snapshot", &path))
            .map_err(snapshot_err(Some(&meta), ErrorVerb::Read))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

impl SqliteStateMachine {
    /// The path of the received snapshot data in `file`, made durable: the file handed out
    /// by `begin_receiving_snapshot` when it is that one, otherwise a copy of its content.
    async fn received_file(&self, mut file: tokio::fs::File) -> Result<PathBuf, RaftStoreError> {
        let dir = self.shared.dir.clone();
        file.flush()
            .await
            .map_err(io("flush received snapshot", &dir))?;
        let identity = file
            .metadata()
            .await
            .map_err(io("inspect received snapshot", &dir))?;
        let incoming = self.shared.snapshots().incoming.clone();
        for path in incoming {
            let same = std::fs::metadata(&path)
                .is_ok_and(|m| m.dev() == identity.dev() && m.ino() == identity.ino());
            if same {
                file.sync_all()
                    .await
                    .map_err(io("sync received snapshot", &path))?;
                return Ok(path);
            }
        }
        let path = self.shared.work_file("incoming");
        self.shared.snapshots().incoming.push(path.clone());
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(io("create file for a received snapshot", &path))?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io("rewind received snapshot", &dir))?;
        tokio::io::copy(&mut file, &mut out)
            .await
            .map_err(io("copy received snapshot", &path))?;
        out.sync_all()
            .await
            .map_err(io("sync received snapshot", &path))?;
        Ok(path)
    }
}

debug_by_name!(SqliteSnapshotBuilder, SqliteStateMachine);
