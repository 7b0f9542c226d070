//! The gRPC API between clients and storage nodes (feature `rpc`): the generated wire types
//! in [`proto`], their checked conversion to domain types, the [`client::Client`], and the
//! server (feature `node`).
//!
//! Errors travel as gRPC statuses with the POSIX errno in the [`ERRNO_METADATA`] entry, so
//! a FUSE client returns exactly the errno the node decided.

#[cfg(feature = "node")]
mod admin;
pub mod client;
pub mod client_config;
pub mod convert;
pub mod fresh;
pub mod identity;
pub mod local;
pub mod locks;
pub mod nodes;
#[cfg(feature = "node")]
pub mod server;
#[cfg(feature = "node")]
pub mod session;
pub mod tls;
pub mod token;
#[cfg(feature = "node")]
mod users;

/// The generated protobuf and gRPC code of `proto/wormfs.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("wormfs.v1");
}

/// The byte buffers stripe pieces travel in.
pub use prost::bytes as proto_bytes;

/// The status metadata entry holding the errno of a failed call.
pub const ERRNO_METADATA: &str = "x-errno";

/// The largest piece of a stripe in one message from a client. 1 MiB pieces cost twice the
/// CPU per GiB written when this size was chosen (2026-11-25); measured again on
/// 2026-12-07 they cost the same (docs/BENCHMARKS.md), so the size stays.
pub const PIECE_SIZE: usize = 64 << 10;

/// The largest piece of a stripe a node sends back on a read: the kernel's read size, so a
/// mount answers an aligned read from one piece without copying it. A mount raises its
/// read-ahead to 1 MiB, so a sequential reader's reads come as 1 MiB requests; with
/// 128 KiB pieces each one was copied together from eight.
pub const READ_PIECE_SIZE: usize = 1 << 20;

/// The largest HTTP/2 frame each side accepts: sixteen times HTTP/2's default (16 KiB), so
/// a read piece travels in about four frames instead of sixty-four.
pub const MAX_FRAME_SIZE: u32 = 256 << 10;

/// The HTTP/2 flow-control window of each stream (the connection's is four times it): room
/// for a few pieces in flight.
pub const WINDOW_SIZE: u32 = 8 << 20;

/// The largest gRPC message either side accepts (a piece plus its envelope, or a large
/// directory listing).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The most stripes one `LocateStripes` call may ask for.
pub const MAX_LOCATE: u32 = 64;

/// The most directory entries in one `ReadDir` reply. Even with names of 255 bytes a page
/// stays far below [`MAX_MESSAGE_SIZE`], so a directory of any size can be listed.
pub const READDIR_PAGE: u32 = 4096;

const _: () = assert!(READDIR_PAGE as usize * (255 + 32) < MAX_MESSAGE_SIZE / 4);

/// A status with `errno` attached.
pub fn status_with_errno(errno: i32, message: impl Into<String>) -> tonic::Status {
    use crate::errno as e;
    let code = match errno {
        e::ENOENT | e::ENODATA => tonic::Code::NotFound,
        e::EEXIST => tonic::Code::AlreadyExists,
        e::EINVAL | e::ENAMETOOLONG | e::ERANGE => tonic::Code::InvalidArgument,
        e::ENOSPC | e::EFBIG => tonic::Code::ResourceExhausted,
        e::EPERM | e::EACCES => tonic::Code::PermissionDenied,
        e::ENOTEMPTY | e::ENOTDIR | e::EISDIR => tonic::Code::FailedPrecondition,
        e::EAGAIN => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    };
    let mut status = tonic::Status::new(code, message);
    if let Ok(v) = errno.to_string().parse() {
        status.metadata_mut().insert(ERRNO_METADATA, v);
    }
    status
}

/// The request header a trusted host (`--host` identity) or an admin sets to act as its
/// caller's uid.
pub const ACT_UID_HEADER: &str = "x-act-uid";
/// The header with the caller's primary gid (see [`ACT_UID_HEADER`]).
pub const ACT_GID_HEADER: &str = "x-act-gid";
/// The header with the caller's supplementary groups, comma-separated.
pub const ACT_GROUPS_HEADER: &str = "x-act-groups";

/// The request header naming a metadata change a client may send again to another node
/// (when the first stopped answering during the call): a node applies each id once and
/// returns the first reply to a repeat. 1 to 64 ASCII letters, digits and `-`.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The errno a failed call carries (`EIO` when the status has none: the node was
/// unreachable, or the call failed on the way).
pub fn errno_of(status: &tonic::Status) -> i32 {
    status
        .metadata()
        .get(ERRNO_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::errno::EIO)
}
