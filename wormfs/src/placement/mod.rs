//! Where the chunks of a stripe go: a pure function of (policy, cluster view).
//!
//! The hard rule: at most one chunk of a stripe per disk. Then chunks spread over nodes (no
//! node holds more than `ceil((k+m) / nodes)` of a stripe when the disks allow it), then the
//! disks that are least full (by fraction) are chosen first, so disks of mixed sizes fill
//! evenly.

mod spread;

pub use spread::SpreadPlacement;

use crate::ids::{DiskId, NodeId};
use crate::policy::StoragePolicy;

/// One disk as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskView {
    /// The node the disk is in.
    pub node: NodeId,
    /// The disk.
    pub disk: DiskId,
    /// Capacity in bytes.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// False when the disk (or its node) must not take new chunks: offline, failing, full.
    pub usable: bool,
}

/// The disks of the cluster, as known to the node placing a stripe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Every disk.
    pub disks: Vec<DiskView>,
}

impl ClusterView {
    /// Makes the disks `closed` says yes to take no new chunks (e.g. disks being drained).
    pub fn close(&mut self, closed: impl Fn(&DiskId) -> bool) {
        for d in &mut self.disks {
            if closed(&d.disk) {
                d.usable = false;
            }
        }
    }
}

/// A disk chosen for one chunk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiskRef {
    /// The node holding the disk.
    pub node: NodeId,
    /// The disk.
    pub disk: DiskId,
}

/// A stripe that cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// Fewer usable disks than chunks in the stripe.
    #[error(
        "policy `{policy}` ({layout}) needs {needed} disks with room for a {chunk_size}-byte chunk, \
         but only {usable} of {total} disks can take one; add disks or choose a narrower policy"
    )]
    NotEnoughDisks {
        /// The policy's name.
        policy: String,
        /// The policy's layout, for the message.
        layout: StoragePolicy,
        /// Chunks to place.
        needed: usize,
        /// Disks that can take one.
        usable: usize,
        /// Disks known.
        total: usize,
        /// Size of each chunk.
        chunk_size: u64,
    },
}

/// What [`PlacementPolicy::place_more`] places: `count` chunks of `chunk_size` bytes beside
/// the chunks on `keep`, on none of the disks of `keep` or `exclude`.
#[derive(Clone, Copy, Debug)]
pub struct More<'a> {
    /// Chunks to place.
    pub count: usize,
    /// Size of each.
    pub chunk_size: u64,
    /// Disks holding the stripe's chunks that stay.
    pub keep: &'a [DiskRef],
    /// Disks not to use either.
    pub exclude: &'a [DiskRef],
}

/// Chooses disks for the chunks of one stripe.
pub trait PlacementPolicy: Send + Sync {
    /// Returns `k + m` distinct disks, one per chunk in shard order, for chunks of
    /// `chunk_size` bytes. Disks in `exclude` (e.g. ones that just failed a write) are not
    /// chosen. `policy_name` is for error messages.
    fn place(
        &self,
        policy_name: &str,
        policy: &StoragePolicy,
        chunk_size: u64,
        view: &ClusterView,
        exclude: &[DiskRef],
    ) -> Result<Vec<DiskRef>, PlacementError>;

    /// Chooses `more.count` more disks for chunks of a stripe whose other chunks stay where
    /// they are (`more.keep`), for repair: never a disk in `keep` or `exclude`, and spread so the stripe's chunks end up on as many nodes as the usable
    /// disks allow (nodes holding fewer of its chunks first).
    fn place_more(
        &self,
        policy_name: &str,
        policy: &StoragePolicy,
        more: More<'_>,
        view: &ClusterView,
    ) -> Result<Vec<DiskRef>, PlacementError> {
        let one = StoragePolicy {
            k: more.count as u16,
            m: 0,
            stripe_size: policy.stripe_size,
        };
        let mut all = more.keep.to_vec();
        all.extend_from_slice(more.exclude);
        self.place(policy_name, &one, more.chunk_size, view, &all)
    }
}
