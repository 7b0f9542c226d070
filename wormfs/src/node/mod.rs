//! What a storage node does, independent of how clients reach it: the file system over
//! the metadata log and the chunk store ([`NodeFs`]). The gRPC service in
//! [`crate::rpc::server`] is a thin translation of it.

mod access;
mod deleter;
mod error;
mod fs;
mod heal;
mod request;
mod stripes;
#[cfg(test)]
mod tests;

pub use access::{Caller, EXEC, READ, WRITE};
pub use error::FsError;
pub use fs::{CreateKind, NodeFs, PolicyView, SetAttrArgs, StatFs};
pub use heal::{FileRisk, RiskReport, StripeView};
pub use request::{applied_before, once, valid_request_id, MAX_REQUEST_ID};
pub use stripes::{StripeLocation, POLICY_XATTR};
