//! Metadata changes as values: what a log carries and a state machine applies.

use super::types::{
    Attr, ChunkLocation, ChunkRecord, ChunkState, DiskInfo, FileLayout, NodeInfo, StripeRecord,
    Timestamp, UserRecord,
};
use crate::ids::{DiskId, FileId, NodeId};
use serde::{Deserialize, Serialize};

/// What kind of object [`MetadataOp::Create`] makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NewKind {
    /// A regular file with this layout.
    File(FileLayout),
    /// A directory.
    Directory,
    /// A symbolic link to this target.
    Symlink(String),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device with this device number.
    CharDevice(u32),
    /// A block device with this device number.
    BlockDevice(u32),
}

/// How [`MetadataOp::SetXattr`] treats an existing attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrMode {
    /// Create or replace.
    Any,
    /// Refuse if it exists (`XATTR_CREATE`).
    Create,
    /// Refuse if it does not exist (`XATTR_REPLACE`).
    Replace,
}

/// One metadata change. Carries everything it needs (times, layouts), so applying it is a
/// pure function of the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataOp {
    /// Creates `name` in directory `parent`.
    Create {
        /// The directory.
        parent: FileId,
        /// The new entry's name.
        name: String,
        /// What to create.
        kind: NewKind,
        /// Permission bits.
        perm: u16,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Creation time.
        time: Timestamp,
    },
    /// Adds a hard link `new_parent/new_name` to `ino`.
    Link {
        /// The inode (not a directory).
        ino: FileId,
        /// The directory of the new name.
        new_parent: FileId,
        /// The new name.
        new_name: String,
        /// Change time.
        time: Timestamp,
    },
    /// Removes a non-directory entry; its inode goes with its last link.
    Unlink {
        /// The directory.
        parent: FileId,
        /// The entry.
        name: String,
        /// Change time.
        time: Timestamp,
    },
    /// Removes an empty directory.
    Rmdir {
        /// The directory holding it.
        parent: FileId,
        /// Its name.
        name: String,
        /// Change time.
        time: Timestamp,
    },
    /// Moves an entry, replacing the destination as `rename(2)` does.
    Rename {
        /// Source directory.
        parent: FileId,
        /// Source name.
        name: String,
        /// Destination directory.
        new_parent: FileId,
        /// Destination name.
        new_name: String,
        /// Refuse when the destination exists (`RENAME_NOREPLACE`).
        no_replace: bool,
        /// Change time.
        time: Timestamp,
    },
    /// Changes attributes other than size.
    SetAttr {
        /// The inode.
        ino: FileId,
        /// New permission bits.
        perm: Option<u16>,
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
        /// New access time.
        atime: Option<Timestamp>,
        /// New modification time.
        mtime: Option<Timestamp>,
        /// Change time.
        time: Timestamp,
    },
    /// Sets a file's size. Stripes wholly past the new size are dropped; a stripe that
    /// straddles it must come rewritten as `tail` (its bytes cut at the new size), so no
    /// stale bytes reappear when the file grows again.
    Truncate {
        /// The file.
        ino: FileId,
        /// The new size.
        size: u64,
        /// The rewritten stripe holding the new last byte, if one straddles the new size.
        tail: Option<StripeRecord>,
        /// Modification time.
        time: Timestamp,
    },
    /// Records a written stripe (replacing an older generation of it) and grows the file to
    /// at least `size`.
    CommitStripe {
        /// The file.
        ino: FileId,
        /// The stripe, with all its chunks durable.
        stripe: StripeRecord,
        /// The file size after this write.
        size: u64,
        /// Modification time.
        time: Timestamp,
    },
    /// Sets an extended attribute.
    SetXattr {
        /// The inode.
        ino: FileId,
        /// Attribute name.
        name: String,
        /// Attribute value.
        value: Vec<u8>,
        /// Create/replace semantics.
        mode: XattrMode,
        /// Change time.
        time: Timestamp,
    },
    /// Removes an extended attribute.
    RemoveXattr {
        /// The inode.
        ino: FileId,
        /// Attribute name.
        name: String,
        /// Change time.
        time: Timestamp,
    },
    /// Sets or clears a directory's policy override (by name).
    SetDirPolicy {
        /// The directory.
        ino: FileId,
        /// The policy name, or `None` to inherit again.
        policy: Option<String>,
    },
    /// Marks a chunk's health (from a read or a scrub).
    SetChunkState {
        /// The file.
        ino: FileId,
        /// Stripe index.
        stripe: u64,
        /// The stripe generation the report is about (stale reports are ignored).
        generation: u64,
        /// Shard index.
        chunk: u16,
        /// New state.
        state: ChunkState,
    },
    /// Puts rebuilt or moved chunks of a stripe in place of the records with the same
    /// shard indices (repair). Refused when the stripe was rewritten since (another
    /// generation): the new chunks then belong to nothing. The replaced copies are garbage.
    ReplaceChunks {
        /// The file.
        ino: FileId,
        /// Stripe index.
        stripe: u64,
        /// The generation the chunks were rebuilt from.
        generation: u64,
        /// The new chunk records.
        chunks: Vec<ChunkRecord>,
    },
    /// Records that a deep scrub verified these stripes' good chunks at `time`.
    MarkVerified {
        /// `(file, stripe index, generation)` of each stripe verified.
        stripes: Vec<(FileId, u64, u64)>,
        /// When.
        time: Timestamp,
    },
    /// Sets an operator's control of a background worker (pause, resume, a new run, rate).
    SetWorkerControl {
        /// The worker's name.
        name: String,
        /// The control.
        control: crate::worker::WorkerControl,
    },
    /// Records a background worker's status and cursor (written by the master running it,
    /// read by a new master to resume it).
    SetWorkerStatus {
        /// The worker's name.
        name: String,
        /// The status.
        status: crate::worker::WorkerStatus,
    },
    /// Adds or updates a storage node.
    UpsertNode(NodeInfo),
    /// Removes a storage node and its disks from the cluster view.
    RemoveNode(NodeId),
    /// Adds or updates a disk.
    UpsertDisk(DiskInfo),
    /// Removes a disk from the cluster view.
    RemoveDisk(DiskId),
    /// Starts (or stops) draining a disk: it takes no new chunks, and repair moves its
    /// chunks to other disks.
    SetDiskDraining {
        /// The disk.
        disk: DiskId,
        /// Draining or not.
        draining: bool,
    },
    /// Adds a user (`replace` false: refused when the name exists) or replaces it (`replace`
    /// true: refused when it does not; a key rotation).
    PutUser {
        /// The user.
        user: UserRecord,
        /// Replace an existing user rather than add one.
        replace: bool,
    },
    /// Removes a user: its identity is refused from then on.
    RemoveUser(String),
    /// Adds an admin API token (refused when the name exists): its name and the SHA-256
    /// of its text, in hex. The token itself never reaches the metadata.
    PutToken {
        /// The token's name, to list and revoke it by.
        name: String,
        /// `sha256(token)` in lowercase hex.
        hash: String,
        /// When it was made.
        created: Timestamp,
    },
    /// Revokes an admin API token.
    RemoveToken(String),
    /// Records a client's lock session before the master grants it any lock, so that a
    /// new master knows whom to wait for (see [`crate::locks`]).
    OpenLockSession {
        /// The session (user-qualified).
        id: String,
        /// The client's name, for messages.
        client: String,
        /// When it opened.
        opened: Timestamp,
    },
    /// Forgets lock sessions that ended or expired.
    CloseLockSessions(Vec<String>),
    /// `op`, applied at most once under `request`: when an op with this request id was
    /// applied already, its reply is returned and nothing changes (a client's call sent
    /// again to another node after the first stopped answering; see `node::once`). Ids are
    /// kept for [`REQUEST_IDS_KEPT_NS`] of op time.
    Once {
        /// The client's request id and the op's number within the call.
        request: String,
        /// When the op was submitted (ids older than the kept time are forgotten).
        time: Timestamp,
        /// The op.
        op: Box<MetadataOp>,
    },
}

/// How long, in nanoseconds of op time, a [`MetadataOp::Once`] request id is remembered:
/// one hour, far longer than a client retries.
pub const REQUEST_IDS_KEPT_NS: i64 = 3_600_000_000_000;

impl MetadataOp {
    /// True for ops that change the users (their cached copies must be read again).
    pub fn changes_users(&self) -> bool {
        match self {
            MetadataOp::PutUser { .. } | MetadataOp::RemoveUser(_) => true,
            MetadataOp::Once { op, .. } => op.changes_users(),
            _ => false,
        }
    }
}

/// What an applied op changed, for the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The affected inode's attributes after the op (create, link, setattr, truncate,
    /// commit stripe, set xattr).
    pub attr: Option<Attr>,
    /// Chunks no metadata refers to any more; the caller deletes their files.
    pub garbage: Vec<ChunkLocation>,
}

/// Why an op was refused. The state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// An inode or name does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The name exists.
    #[error("already exists: {0}")]
    Exists(String),
    /// A directory is not empty.
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    /// A directory was needed.
    #[error("not a directory: {0}")]
    NotDir(String),
    /// A non-directory was needed.
    #[error("is a directory: {0}")]
    IsDir(String),
    /// The extended attribute does not exist.
    #[error("no such attribute: {0}")]
    NoAttr(String),
    /// The op does not make sense (e.g. moving a directory into itself).
    #[error("invalid: {0}")]
    Invalid(String),
}

impl Refusal {
    /// The `errno` a POSIX file system returns for this refusal.
    pub fn errno(&self) -> i32 {
        match self {
            Refusal::NotFound(_) => 2,  // ENOENT
            Refusal::Exists(_) => 17,   // EEXIST
            Refusal::NotEmpty(_) => 39, // ENOTEMPTY
            Refusal::NotDir(_) => 20,   // ENOTDIR
            Refusal::IsDir(_) => 21,    // EISDIR
            Refusal::NoAttr(_) => 61,   // ENODATA
            Refusal::Invalid(_) => 22,  // EINVAL
        }
    }
}

/// The result of applying an op: what it changed, or why it was refused.
pub type OpReply = Result<Applied, Refusal>;
