//! Raft storage for the replicated metadata (feature `cluster`): openraft 0.9's log store
//! and state machine over SQLite.
//!
//! * [`SqliteLogStore`] keeps the Raft log, the vote and the log pointers in their own
//!   database file (`raft-log.db`).
//! * [`SqliteStateMachine`] applies committed [`crate::meta::MetadataOp`]s to the metadata
//!   [`crate::meta::MetaStore`], one transaction per batch together with the last applied log
//!   id and membership; its snapshots are whole copies of that database, kept as files.
//!
//! [`open_storage`] opens both under a node's data directory. The Raft network and the
//! [`crate::meta::MetadataLog`] over Raft are built on top of these.

mod error;
mod log_store;
mod state_machine;
mod types;

pub use error::RaftStoreError;
pub use log_store::SqliteLogStore;
pub use state_machine::{
    SqliteSnapshotBuilder, SqliteStateMachine, LAST_APPLIED_KEY, MEMBERSHIP_KEY,
};
pub use types::{
    Entry, EntryPayload, LogId, LogState, Member, Membership, Raft, RaftNodeId, Snapshot,
    SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

use crate::meta::MetaStore;
use std::path::Path;
use std::sync::Arc;

/// The log database's file name inside a node's data directory.
pub const LOG_FILE: &str = "raft-log.db";
/// The snapshot directory's name inside a node's data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Opens the Raft storage of a node: the log at `<data_dir>/raft-log.db` and a state machine
/// over `store` keeping snapshots in `<data_dir>/snapshots/`.
pub fn open_storage(
    data_dir: &Path,
    store: Arc<MetaStore>,
) -> Result<(SqliteLogStore, SqliteStateMachine), RaftStoreError> {
    let log = SqliteLogStore::open(&data_dir.join(LOG_FILE))?;
    let sm = SqliteStateMachine::open(store, &data_dir.join(SNAPSHOT_DIR))?;
    recover(&log, &sm)?;
    Ok((log, sm))
}

/// Brings a metadata database that fell behind its own Raft storage back in step, before
/// openraft starts (it would otherwise re-apply the log from the database's last applied
/// entry, and fail on entries a compaction removed: "Failed to get log entries"):
///
/// 1. A database behind the local snapshot (lost, or replaced by an older copy) is
///    restored from that snapshot; openraft then re-applies the log after it.
/// 2. A database still behind the purged part of the log (no usable snapshot: the snapshot
///    directory was lost too) cannot be brought forward locally: the log is forgotten,
///    keeping the vote, and the node catches up from the master's snapshot like a new one.
/// 3. A database ahead of the local snapshot, whose log was purged past that snapshot or
///    ends before the database's last applied entry (a snapshot from the master replaced
///    the database, and the node stopped before it recorded that snapshot as its own), gets
///    a snapshot of itself: openraft stops (panics) at start when the log is purged past
///    the snapshot.
fn recover(log: &SqliteLogStore, sm: &SqliteStateMachine) -> Result<(), RaftStoreError> {
    let (mut applied, _) = sm.applied()?;
    if let Some(snapshot) = sm.current_snapshot() {
        if applied < snapshot.last_log_id {
            tracing::warn!(
                applied = ?applied,
                snapshot = ?snapshot.last_log_id,
                "the metadata database is behind this node's last snapshot (lost or replaced): \
                 restoring it from the snapshot"
            );
            applied = sm.restore_current_snapshot()?;
        }
    }
    let (purged, _) = log.purged_and_committed()?;
    if applied < purged {
        tracing::warn!(
            applied = ?applied,
            purged = ?purged,
            "the metadata database is behind the compacted Raft log and no local snapshot \
             covers the gap: forgetting the log (the vote is kept) to catch up from the \
             master's snapshot"
        );
        log.forget_entries()?;
    }
    // openraft starts with the log purged up to the purged id, or up to `applied` when
    // the log ends before it; the snapshot must reach that far
    let (purged, _) = log.purged_and_committed()?;
    let purge_upto = if log.last_log_id()? < applied {
        applied.max(purged)
    } else {
        purged
    };
    let snapshot = sm.current_snapshot().and_then(|s| s.last_log_id);
    if snapshot < purge_upto {
        tracing::warn!(
            applied = ?applied,
            snapshot = ?snapshot,
            "the metadata database is ahead of this node's log and of its last snapshot (a \
             snapshot install was interrupted): taking a snapshot of it"
        );
        sm.snapshot_now()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
