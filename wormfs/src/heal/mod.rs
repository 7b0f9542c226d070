//! Self-healing: how healthy each stripe is ([`assess`]), checking chunks ([`shallow_check`],
//! [`deep_check`]), rebuilding and re-spreading them ([`repair_stripe`]), and (feature
//! `node`) the scrub and repair workers a master runs over every stripe
//! ([`HealService`]).
//!
//! The rules: a chunk on an offline node is not rebuilt (the node may come back; an operator
//! removes it first), but it is never counted as good either. A chunk that is missing,
//! corrupt, on a removed node or on a failed or removed disk is rebuilt, the riskiest
//! stripes first. A stripe whose chunks crowd on one node (written while nodes were
//! missing) is re-spread once the cluster has room. New locations are committed through the
//! metadata log before the copies they replace are deleted.

/// The directory at the root where a mount keeps files unlinked while it has them open
/// (POSIX keeps such a file until its last close); the mount removes each at its last
/// close, and the garbage worker removes those a crashed mount left, once idle for
/// `heal.orphan_grace`.
pub const ORPHAN_DIR: &str = ".wormfs-orphans";

mod assess;
#[cfg(feature = "local")]
mod backup;
mod check;
#[cfg(feature = "node")]
mod garbage;
#[cfg(feature = "local")]
mod recover;
mod repair;
#[cfg(feature = "node")]
mod service;
#[cfg(all(test, feature = "node"))]
mod tests;
#[cfg(feature = "node")]
mod workers;

#[cfg(feature = "local")]
pub use assess::Sweeper;
pub use assess::{assess, ChunkHealth, Liveness, StripeHealth, SweptHealth};
#[cfg(feature = "local")]
pub use backup::{back_up, newest_backup, Backup, BACKUP_COPIES, BACKUP_FILE_NAME};
pub use check::{deep_check, shallow_check, Finding, StripeCheck};
#[cfg(feature = "node")]
pub use garbage::{garbage_worker_name, sweep_disk, GarbageWorker, Swept};
#[cfg(feature = "local")]
pub use recover::{recover, RecoverReport, RECOVERED_DIR};
pub use repair::{repair_stripe, Rebuilt, RepairError};
#[cfg(feature = "node")]
pub use service::{
    observe, ClusterLiveness, HealContext, HealService, HealSettings, OpenFiles, SoloNode,
};
#[cfg(feature = "node")]
pub use workers::{RepairWorker, ScrubWorker};
