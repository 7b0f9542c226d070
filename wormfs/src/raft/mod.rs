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
    Ok((log, sm))
}

#[cfg(test)]
mod tests;
