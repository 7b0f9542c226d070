//! File and chunk metadata: the [`MetadataOp`] values that change it, the [`MetadataLog`]
//! that orders them, and the SQLite [`MetaStore`] (feature `local`) that applies them.
//!
//! Every change is a [`MetadataOp`], applied in one SQLite transaction together with its
//! sequence number. Ops are deterministic: given the same state, every node applying the same
//! op reaches the same state (times and inode layouts travel inside the op). A domain refusal
//! (the name exists, the directory is not empty) is a [`Refusal`] *reply*, not an error: the
//! op is still consumed, and the state is unchanged.

#[cfg(feature = "local")]
mod apply;
#[cfg(feature = "local")]
mod apply_heal;
#[cfg(feature = "local")]
mod database;
#[cfg(feature = "local")]
mod heal_queries;
mod log;
mod op;
#[cfg(feature = "local")]
mod restore;
#[cfg(feature = "local")]
mod schema;
#[cfg(feature = "local")]
mod sqlite;
#[cfg(feature = "local")]
mod tokens;
#[cfg(feature = "local")]
pub use tokens::TokenRecord;
mod types;
#[cfg(feature = "local")]
mod users;

#[cfg(feature = "local")]
pub use heal_queries::{Interner, StripePage, StripeRow, SweptChunk, SweptStripe};
#[cfg(feature = "local")]
pub use log::LocalLog;
pub use log::{LogError, MetadataLog};
pub use op::{Applied, MetadataOp, NewKind, OpReply, Refusal, XattrMode, REQUEST_IDS_KEPT_NS};
#[cfg(feature = "local")]
pub use sqlite::{MetaError, MetaStore};
pub use types::{
    Attr, ChunkLocation, ChunkRecord, ChunkState, DirEntry, DiskInfo, FileKind, FileLayout,
    NodeInfo, StripeRecord, Timestamp, UserRecord,
};

#[cfg(all(test, feature = "local"))]
mod tests;
