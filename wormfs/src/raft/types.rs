//! The openraft type configuration of WormFS and aliases that spell its generics once.

use crate::meta::{MetadataOp, OpReply};
use serde::{Deserialize, Serialize};

/// A member of the metadata Raft group: how to name and reach one storage node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The WormFS node name (the string of [`crate::ids::NodeId`]).
    pub name: String,
    /// The libp2p multiaddress other nodes dial for Raft and chunk traffic.
    pub p2p_addr: String,
    /// The gRPC address clients use.
    pub rpc_addr: String,
    /// The libp2p peer id the node must present.
    pub peer_id: String,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of WormFS: the log carries [`MetadataOp`]s, the state
    /// machine answers [`OpReply`]s, Raft node ids are `u64`, members are [`Member`]s and
    /// snapshots are SQLite database files.
    pub TypeConfig:
        D = MetadataOp,
        R = OpReply,
        NodeId = RaftNodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft node id (distinct from the WormFS node name kept in [`Member::name`]).
pub type RaftNodeId = u64;
/// A Raft node of WormFS.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry's identity: the leader's term and node, and the index.
pub type LogId = openraft::LogId<RaftNodeId>;
/// A vote: term, candidate, and whether it is committed.
pub type Vote = openraft::Vote<RaftNodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// What a log entry carries: nothing, a membership change, or a [`MetadataOp`].
pub type EntryPayload = openraft::EntryPayload<TypeConfig>;
/// A membership configuration.
pub type Membership = openraft::Membership<RaftNodeId, Member>;
/// A membership with the log id it was written at.
pub type StoredMembership = openraft::StoredMembership<RaftNodeId, Member>;
/// What a snapshot contains up to, and its id.
pub type SnapshotMeta = openraft::SnapshotMeta<RaftNodeId, Member>;
/// A snapshot: its meta and an open file of its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// What openraft's storage traits return on failure.
pub type StorageError = openraft::StorageError<RaftNodeId>;
/// The log's first and last ids, as the log store reports them.
pub type LogState = openraft::LogState<TypeConfig>;
