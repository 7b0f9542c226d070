//! Errors of file-system operations, each with its errno.

use crate::engine::EngineError;
use crate::errno;
use crate::meta::{LogError, MetaError, Refusal};
use crate::policy::PolicyError;
use crate::store::StoreError;

/// Why a file-system operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The metadata refused the change (not found, exists, not empty, …).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A stripe could not be written or read.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The metadata log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The chunk store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A policy problem (unknown name, bad value).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The request makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The operation is not allowed (e.g. setting a policy on a file).
    #[error("{0}")]
    NotPermitted(String),
    /// The caller may not do this (mode bits, ownership): `EACCES`.
    #[error("{0}")]
    Denied(String),
    /// The file system does not do this (e.g. POSIX ACLs): `EOPNOTSUPP`.
    #[error("{0}")]
    Unsupported(String),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl FsError {
    /// True when the change may or may not have been made: the metadata log could not
    /// confirm it (no majority, master unreachable). Nothing it wrote may be undone.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, FsError::Log(LogError::Unavailable(_)))
    }

    /// The errno a POSIX file system returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Refused(r) => r.errno(),
            FsError::Engine(EngineError::Placement(_)) => errno::ENOSPC,
            FsError::Store(StoreError::Full { .. }) => errno::ENOSPC,
            FsError::Log(LogError::NotLeader { .. }) => errno::EAGAIN,
            FsError::Policy(_) | FsError::Invalid(_) => errno::EINVAL,
            FsError::NotPermitted(_) => errno::EPERM,
            FsError::Denied(_) => errno::EACCES,
            FsError::Unsupported(_) => errno::EOPNOTSUPP,
            FsError::Engine(_)
            | FsError::Meta(_)
            | FsError::Log(_)
            | FsError::Store(_)
            | FsError::Internal(_) => errno::EIO,
        }
    }
}
