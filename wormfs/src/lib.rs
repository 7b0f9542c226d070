//! # WormFS
//!
//! WormFS is an erasure-coded file system: files are cut into *stripes*, each stripe is
//! Reed-Solomon coded into `k` data and `m` parity *chunks*, and the chunks are placed on
//! distinct disks of distinct storage nodes. Any `k` chunks of a stripe bring it back.
//!
//! This crate is the library everything else is built from. Its layers point one way:
//!
//! * pure cores with no I/O: [`stripe`] (cutting and erasure coding), [`chunk`] (the chunk
//!   file format), [`placement`] (where chunks go), [`policy`] (k, m and stripe size per
//!   directory), [`meta::MetadataOp`] (metadata changes as values a log can carry);
//! * the seams between them, as traits: [`store::ChunkStore`], [`meta::MetadataLog`],
//!   [`net::Transport`], [`placement::PlacementPolicy`];
//! * adapters that own one heavy dependency each (feature `local`): the disk chunk store
//!   [`store::DiskChunkStore`] and the SQLite metadata [`meta::MetaStore`];
//! * a daemon-less [`archive::LocalArchive`] that composes them to write and read files over
//!   a few directories.
//!
//! ## Features
//!
//! | feature | what it adds | what it pulls in |
//! |---|---|---|
//! | `local` (default) | [`store::DiskChunkStore`], [`meta::MetaStore`], [`archive::LocalArchive`] | rusqlite (bundled SQLite), rustix |
//! | `rpc` | the gRPC wire types and `rpc::client::Client`: what a mount or a remote program needs | tonic, prost, tokio, OpenSSL (TLS 1.3 with a user's pre-shared key) |
//! | `node` | everything a storage node runs: the file-system core (`node::NodeFs`), the gRPC server, scrub and repair, metrics and the admin listener (REST API, web UI) | `local`, `rpc`, axum, rustls, prometheus-client |
//! | `cluster` | Raft-replicated metadata (openraft) and the libp2p transport between nodes | `node`, openraft, libp2p |
//! | `vendored-openssl` | `rpc` with OpenSSL built from source, so no `libssl-dev` is needed (the `wormfs` binaries turn it on) | openssl-src (a C compiler, `make`, `perl`) |
//! | `conformance` | `store::conformance`: the suite every `ChunkStore` passes, to run on your own | nothing |
//! | `crash-points` | crash points for tests ([`crash`]); never in a build for use | nothing |
//!
//! A program that writes archives over gRPC needs `rpc` only (`default-features = false`),
//! and does not compile SQLite, libp2p or openraft.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wormfs::archive::LocalArchive;
//! let disks: Vec<std::path::PathBuf> = (0..6).map(|i| format!("/srv/disk{i}").into()).collect();
//! let archive = LocalArchive::create("/srv/meta", &disks, wormfs::policy::PolicySet::defaults())?;
//! archive.write_file("/photos/cat.jpg", &b"meow"[..])?;
//! assert_eq!(archive.read_to_vec("/photos/cat.jpg")?, b"meow");
//! # Ok(())
//! # }
//! ```
//!
//! Examples (each runs in CI, `cargo run -p wormfs --example NAME`):
//!
//! - `archive`: a file over six directories with the `media` policy, two chunks of a
//!   stripe deleted, the file read back identical;
//! - `layout`: a file's policy, stripes and chunks, and what a read records about a lost
//!   and a rotten chunk;
//! - `custom_store` (feature `conformance`): a `ChunkStore` of your own, checked by the
//!   conformance suite and used by the stripe engine and by an archive
//!   ([`archive::LocalArchive::builder`]).
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

/// `Debug` for types whose fields are handles (stores, connections, tasks, trait objects):
/// their name, which is what a log line or a test failure can use of them.
macro_rules! debug_by_name {
    ($($t:ident),+ $(,)?) => {
        $(
            impl std::fmt::Debug for $t {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(stringify!($t))
                }
            }
        )+
    };
}

#[cfg(feature = "node")]
pub mod admin;
#[cfg(feature = "local")]
pub mod archive;
pub mod checksum;
pub mod chunk;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod crash;
pub mod engine;
pub mod errno;
pub mod fuzz;
pub mod heal;
pub mod ids;
pub mod locks;
pub mod meta;
#[cfg(feature = "node")]
pub mod metrics;
pub mod net;
#[cfg(feature = "node")]
pub mod node;
pub mod placement;
pub mod policy;
pub mod process;
#[cfg(feature = "cluster")]
pub mod raft;
#[cfg(feature = "rpc")]
pub mod rpc;
pub mod size;
pub mod store;
pub mod stripe;
pub mod worker;

/// The version of this crate, as written in its manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
