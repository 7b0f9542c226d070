//! The errors of the Raft storage layer, and their conversion to openraft's.

use super::types::StorageError;
use crate::meta::MetaError;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use std::path::PathBuf;

/// A Raft storage failure. Any of them stops the Raft node: a domain refusal of an op is a
/// reply of the state machine, never one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftStoreError {
    /// The Raft log database failed.
    #[error("raft log database: {action}: {source}")]
    Sqlite {
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The metadata database (the state machine) failed.
    #[error("raft state machine: {action}: {source}")]
    Meta {
        /// What was being done.
        action: &'static str,
        /// The metadata store's error.
        #[source]
        source: MetaError,
    },
    /// A stored value could not be encoded or decoded.
    #[error("raft storage: {what}: {source}")]
    Json {
        /// Which value.
        what: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file operation failed.
    #[error("raft storage: {action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking storage task panicked or was cancelled.
    #[error("raft storage: {action}: the storage task failed: {message}")]
    Task {
        /// What was being done.
        action: &'static str,
        /// The task's failure.
        message: String,
    },
    /// The Raft log database was written by a newer build.
    #[error("raft log database has schema version {found}, newer than this build's {supported}; run a newer wormfs")]
    LogSchema {
        /// The version found.
        found: u32,
        /// The version this build writes.
        supported: u32,
    },
    /// A received snapshot's data does not hold the state its meta announces.
    #[error("snapshot {snapshot_id} announces last log id {announced} but its data holds {found}")]
    SnapshotMismatch {
        /// The snapshot id.
        snapshot_id: String,
        /// The last log id in the meta.
        announced: String,
        /// The last log id inside the database copy.
        found: String,
    },
}

impl RaftStoreError {
    /// This error as openraft's storage error about `subject`, raised while doing `verb`.
    pub fn into_storage(self, subject: ErrorSubject<u64>, verb: ErrorVerb) -> StorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// A closure turning a SQLite error into [`RaftStoreError::Sqlite`].
pub(crate) fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> RaftStoreError {
    move |source| RaftStoreError::Sqlite { action, source }
}

/// A closure turning a metadata error into [`RaftStoreError::Meta`].
pub(crate) fn meta(action: &'static str) -> impl FnOnce(MetaError) -> RaftStoreError {
    move |source| RaftStoreError::Meta { action, source }
}

/// A closure turning a JSON error into [`RaftStoreError::Json`].
pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> RaftStoreError {
    move |source| RaftStoreError::Json { what, source }
}

/// A closure turning an I/O error on `path` into [`RaftStoreError::Io`].
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RaftStoreError {
    let path = path.into();
    move |source| RaftStoreError::Io {
        action,
        path,
        source,
    }
}

/// Runs blocking storage work (SQLite, fsync) off the async workers.
pub(crate) async fn blocking<T, F>(action: &'static str, f: F) -> Result<T, RaftStoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RaftStoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RaftStoreError::Task {
            action,
            message: e.to_string(),
        })?
}
