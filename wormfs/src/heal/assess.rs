//! How healthy a stripe is: a pure function of its record and of what is known about the
//! nodes and disks holding its chunks. No I/O: status, `file info`, `at-risk`, `what-if`
//! and the repair queue all read it.

use crate::ids::{DiskId, NodeId};
use crate::meta::{ChunkRecord, ChunkState, StripeRecord};
use std::collections::{BTreeMap, BTreeSet};

/// What is known about the places chunks live: the recorded nodes and disks, and which are
/// online or failed. A node or disk that is not recorded has been removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Every recorded node, and whether it is online now.
    pub nodes: BTreeMap<NodeId, bool>,
    /// Every recorded disk: its node, and whether it has failed.
    pub disks: BTreeMap<DiskId, (NodeId, bool)>,
    /// Nodes that can take new chunks now (online with a usable disk): how far a stripe
    /// can be spread.
    pub usable_nodes: usize,
    /// Disks being drained: their chunks are good, and moved elsewhere.
    pub draining: BTreeSet<DiskId>,
}

impl Liveness {
    /// `view` with the disks being drained made unusable for new chunks.
    pub fn placeable(
        &self,
        mut view: crate::placement::ClusterView,
    ) -> crate::placement::ClusterView {
        view.close(|d| self.draining.contains(d));
        view
    }

    /// The same knowledge with `nodes` and `disks` gone, for `what-if`: their chunks count
    /// as lost.
    pub fn without(&self, nodes: &[NodeId], disks: &[DiskId]) -> Liveness {
        let mut out = self.clone();
        for n in nodes {
            out.nodes.remove(n);
            out.disks.retain(|_, (node, _)| node != n);
        }
        for d in disks {
            out.disks.remove(d);
        }
        let gone: BTreeSet<&NodeId> = nodes.iter().collect();
        let usable: BTreeSet<&NodeId> = out
            .disks
            .iter()
            .filter(|(id, (node, failed))| {
                !failed && !out.draining.contains(*id) && out.nodes.get(node) == Some(&true)
            })
            .map(|(_, (node, _))| node)
            .filter(|n| !gone.contains(n))
            .collect();
        out.usable_nodes = usable.len();
        out
    }

    /// The health of one chunk record.
    pub fn chunk(&self, c: &ChunkRecord) -> ChunkHealth {
        let Some(online) = self.nodes.get(&c.node) else {
            return ChunkHealth::NodeRemoved;
        };
        let Some((_, failed)) = self.disks.get(&c.disk) else {
            return ChunkHealth::DiskRemoved;
        };
        if !online {
            return ChunkHealth::NodeOffline;
        }
        if *failed {
            return ChunkHealth::DiskFailed;
        }
        match c.state {
            ChunkState::Ok => ChunkHealth::Ok,
            ChunkState::Missing => ChunkHealth::Missing,
            ChunkState::Corrupt => ChunkHealth::Corrupt,
        }
    }
}

/// One chunk's health, as far as WormFS knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChunkHealth {
    /// Written, on an online node and a working disk, and not found damaged.
    Ok,
    /// Found missing by a read or a scrub.
    Missing,
    /// Found failing its checks by a read or a scrub.
    Corrupt,
    /// On a node that is offline now: may come back, not rebuilt until it is removed.
    NodeOffline,
    /// On a node removed from the cluster: lost, rebuilt elsewhere.
    NodeRemoved,
    /// On a disk that failed: lost, rebuilt elsewhere.
    DiskFailed,
    /// On a disk removed from the cluster: lost, rebuilt elsewhere.
    DiskRemoved,
}

impl ChunkHealth {
    /// The name the CLI prints (never "ok" for a chunk that cannot be read now).
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkHealth::Ok => "ok",
            ChunkHealth::Missing => "missing",
            ChunkHealth::Corrupt => "corrupt",
            ChunkHealth::NodeOffline => "node offline",
            ChunkHealth::NodeRemoved => "node removed",
            ChunkHealth::DiskFailed => "disk failed",
            ChunkHealth::DiskRemoved => "disk removed",
        }
    }

    /// True when the chunk is known lost, so repair writes it again elsewhere. A chunk on
    /// an offline node is not: the node may come back (an operator removes it first).
    pub fn is_lost(self) -> bool {
        !matches!(self, ChunkHealth::Ok | ChunkHealth::NodeOffline)
    }
}

/// A stripe's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeHealth {
    /// Data chunks needed to read it.
    pub k: usize,
    /// Chunks it was written with (`k + m`).
    pub width: usize,
    /// Each chunk record's index and health, in record order.
    pub chunks: Vec<(u16, ChunkHealth)>,
    /// Chunks readable now.
    pub good: usize,
    /// Further losses it survives: disks, and in a cluster of several nodes also whole
    /// nodes (a stripe with two chunks on one node survives no loss of that node). Negative
    /// when it cannot be read now.
    pub margin: i64,
    /// Shard indices to write again: lost chunks, and indices without any record.
    pub rebuild: Vec<u16>,
    /// Shard indices of good chunks to move to another node or disk, because their node
    /// holds more chunks of the stripe than the cluster now allows (written while nodes
    /// were missing), their disk holds two, or their disk is being drained.
    pub crowded: Vec<u16>,
}

impl StripeHealth {
    /// True when repair has work here (a rebuild or a move).
    pub fn needs_repair(&self) -> bool {
        !self.rebuild.is_empty() || !self.crowded.is_empty()
    }

    /// True when a chunk is not readable now (lost, damaged or offline).
    pub fn is_degraded(&self) -> bool {
        self.good < self.width
    }
}

/// Assesses a stripe stored as chunks (`s.chunks` non-empty). `cluster_nodes` is how many
/// nodes the cluster has; with more than one, a whole node is a unit of loss.
pub fn assess(s: &StripeRecord, live: &Liveness) -> StripeHealth {
    let k = usize::from(s.k);
    let width = usize::from(s.k) + usize::from(s.m);
    let chunks: Vec<(u16, ChunkHealth)> =
        s.chunks.iter().map(|c| (c.index, live.chunk(c))).collect();
    let mut rebuild: BTreeSet<u16> = chunks
        .iter()
        .filter(|(_, h)| h.is_lost())
        .map(|(i, _)| *i)
        .collect();
    let present: BTreeSet<u16> = chunks.iter().map(|(i, _)| *i).collect();
    rebuild.extend((0..width as u16).filter(|i| !present.contains(i)));
    let good_chunks: Vec<&ChunkRecord> = s
        .chunks
        .iter()
        .zip(&chunks)
        .filter(|(_, (_, h))| *h == ChunkHealth::Ok)
        .map(|(c, _)| c)
        .collect();
    let good = good_chunks.len();

    let mut per_node: BTreeMap<&NodeId, usize> = BTreeMap::new();
    let mut per_disk: BTreeMap<&DiskId, usize> = BTreeMap::new();
    for c in &good_chunks {
        *per_node.entry(&c.node).or_default() += 1;
        *per_disk.entry(&c.disk).or_default() += 1;
    }
    let mut node_counts: Vec<usize> = per_node.values().copied().collect();
    let mut disk_counts: Vec<usize> = per_disk.values().copied().collect();
    let margin = margin_of(
        (k, good),
        &mut node_counts,
        &mut disk_counts,
        |n| *n,
        live.nodes.len() > 1,
    );

    // Crowding: more chunks on a node than an even spread over the usable nodes allows, or
    // two chunks on one disk. Chunks on offline nodes still hold their place.
    let mut crowded = Vec::new();
    let cap = width.div_ceil(live.usable_nodes.max(1));
    let mut seen_node: BTreeMap<&NodeId, usize> = BTreeMap::new();
    let mut seen_disk: BTreeSet<&DiskId> = BTreeSet::new();
    let mut ordered: Vec<&ChunkRecord> = good_chunks.clone();
    ordered.sort_by_key(|c| c.index);
    for c in ordered {
        let n = seen_node.entry(&c.node).or_default();
        *n += 1;
        let disk_again = !seen_disk.insert(&c.disk);
        if *n > cap || disk_again || live.draining.contains(&c.disk) {
            crowded.push(c.index);
        }
    }
    StripeHealth {
        k,
        width,
        chunks,
        good,
        margin,
        rebuild: rebuild.into_iter().collect(),
        crowded,
    }
}

/// Further losses a stripe with `good` readable chunks (counted per node and per disk)
/// survives: disks, and whole nodes when the cluster has several; -1 when it cannot be
/// read now.
/// `count` gives the chunks of one domain of `per_node` and `per_disk` (sorted in place).
fn margin_of<T>(
    (k, good): (usize, usize),
    per_node: &mut [T],
    per_disk: &mut [T],
    count: impl Fn(&T) -> usize + Copy,
    several_nodes: bool,
) -> i64 {
    if good < k {
        return -1;
    }
    let by_disk = survivable(per_disk, count, good, k);
    if several_nodes {
        by_disk.min(survivable(per_node, count, good, k))
    } else {
        by_disk
    }
}

/// What a sweep needs of a stripe's health (see `Sweeper`, feature `local`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweptHealth {
    /// Chunks readable now.
    pub good: usize,
    /// Chunks the stripe was written with.
    pub width: usize,
    /// As [`StripeHealth::margin`].
    pub margin: i64,
    /// Bytes of its chunks known lost (to rebuild).
    pub lost_bytes: u64,
}

/// [`assess`] for sweeps over every stripe (`MetaStore::sweep_chunks`, feature `local`):
/// disks are numbers, each looked up once, and a chunk's node is its disk's node (a chunk
/// on a disk no longer recorded is lost, as is one whose node was removed).
#[cfg(feature = "local")]
#[derive(Debug)]
pub struct Sweeper<'a> {
    live: &'a Liveness,
    /// By disk number: `None` when the disk or its node was removed, else its node's
    /// number, whether the node is online and whether the disk failed.
    disks: Vec<Option<(u32, bool, bool)>>,
    node_ids: Vec<NodeId>,
    per_node: Vec<(u32, usize)>,
    per_disk: Vec<(u32, usize)>,
}

#[cfg(feature = "local")]
impl<'a> Sweeper<'a> {
    /// A sweeper over what `live` knows.
    pub fn new(live: &'a Liveness) -> Sweeper<'a> {
        Sweeper {
            live,
            disks: Vec::new(),
            node_ids: Vec::new(),
            per_node: Vec::with_capacity(16),
            per_disk: Vec::with_capacity(16),
        }
    }

    fn learn(&mut self, disks: &crate::meta::Interner) {
        while self.disks.len() < disks.len() {
            let name = DiskId(disks.name(self.disks.len() as u32).to_owned());
            let state = self.live.disks.get(&name).and_then(|(node, failed)| {
                let online = *self.live.nodes.get(node)?;
                let id = match self.node_ids.iter().position(|n| n == node) {
                    Some(i) => i,
                    None => {
                        self.node_ids.push(node.clone());
                        self.node_ids.len() - 1
                    }
                };
                Some((id as u32, online, *failed))
            });
            self.disks.push(state);
        }
    }

    /// The health of one swept stripe; `disks` names its chunks' disk numbers.
    pub fn assess(
        &mut self,
        s: &crate::meta::SweptStripe<'_>,
        disks: &crate::meta::Interner,
    ) -> SweptHealth {
        self.learn(disks);
        let k = usize::from(s.k);
        let mut good = 0;
        let mut lost_bytes = 0;
        self.per_node.clear();
        self.per_disk.clear();
        for c in s.chunks {
            match self.disks[c.disk as usize] {
                None => lost_bytes += c.size,
                Some((_, false, _)) => {}
                Some((_, true, true)) => lost_bytes += c.size,
                Some((node, true, false)) if c.state == ChunkState::Ok => {
                    good += 1;
                    for (list, id) in [(&mut self.per_node, node), (&mut self.per_disk, c.disk)] {
                        match list.iter_mut().find(|(x, _)| *x == id) {
                            Some((_, n)) => *n += 1,
                            None => list.push((id, 1)),
                        }
                    }
                }
                Some(_) => lost_bytes += c.size,
            }
        }
        let margin = margin_of(
            (k, good),
            &mut self.per_node,
            &mut self.per_disk,
            |p| p.1,
            self.live.nodes.len() > 1,
        );
        SweptHealth {
            good,
            width: k + usize::from(s.m),
            margin,
            lost_bytes,
        }
    }
}

/// How many of the failure domains in `domains` (each holding `count` chunks) can be lost,
/// the fullest first, with `k` of `good` chunks left. Sorts `domains`.
fn survivable<T>(domains: &mut [T], count: impl Fn(&T) -> usize, good: usize, k: usize) -> i64 {
    domains.sort_unstable_by_key(|d| std::cmp::Reverse(count(d)));
    let mut left = good;
    let mut lost = 0;
    for c in domains.iter().map(count) {
        if left - c < k {
            break;
        }
        left -= c;
        lost += 1;
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(nodes: &[(&str, bool)], disks: &[(&str, &str, bool)]) -> Liveness {
        let l = Liveness {
            nodes: nodes.iter().map(|(n, o)| ((*n).into(), *o)).collect(),
            disks: disks
                .iter()
                .map(|(d, n, f)| ((*d).into(), ((*n).into(), *f)))
                .collect(),
            usable_nodes: 0,
            draining: BTreeSet::new(),
        };
        l.without(&[], &[])
    }

    fn stripe(k: u16, m: u16, chunks: &[(&str, &str)]) -> StripeRecord {
        StripeRecord {
            index: 0,
            generation: 1,
            len: 100,
            crc: 0,
            k,
            m,
            chunks: chunks
                .iter()
                .enumerate()
                .map(|(i, (n, d))| ChunkRecord {
                    index: i as u16,
                    node: (*n).into(),
                    disk: (*d).into(),
                    size: 10,
                    crc: 0,
                    state: ChunkState::Ok,
                })
                .collect(),
            inline: None,
        }
    }

    fn three_nodes() -> Liveness {
        live(
            &[("a", true), ("b", true), ("c", true)],
            &[
                ("a1", "a", false),
                ("a2", "a", false),
                ("b1", "b", false),
                ("c1", "c", false),
            ],
        )
    }

    #[test]
    fn a_spread_stripe_survives_one_node_and_is_not_crowded() {
        let h = assess(
            &stripe(2, 1, &[("a", "a1"), ("b", "b1"), ("c", "c1")]),
            &three_nodes(),
        );
        assert_eq!((h.good, h.margin), (3, 1));
        assert!(!h.needs_repair() && !h.is_degraded());
    }

    #[test]
    fn two_chunks_on_one_node_leave_no_margin_and_one_is_moved_when_a_third_node_is_up() {
        let s = stripe(2, 1, &[("a", "a1"), ("a", "a2"), ("b", "b1")]);
        let h = assess(&s, &three_nodes());
        assert_eq!(h.margin, 0, "losing node a loses two of three chunks");
        assert_eq!(h.crowded, vec![1]);
        assert!(h.rebuild.is_empty());
        // with c offline there is nowhere better: not crowded
        let mut l = three_nodes();
        l.nodes.insert("c".into(), false);
        let l = l.without(&[], &[]);
        assert!(assess(&s, &l).crowded.is_empty());
    }

    #[test]
    fn offline_is_degraded_but_not_rebuilt_removed_and_failed_are_rebuilt() {
        let s = stripe(2, 1, &[("a", "a1"), ("b", "b1"), ("c", "c1")]);
        let mut l = three_nodes();
        l.nodes.insert("c".into(), false);
        let h = assess(&s, &l);
        assert_eq!(h.chunks[2].1, ChunkHealth::NodeOffline);
        assert_eq!((h.good, h.margin), (2, 0));
        assert!(h.is_degraded() && !h.needs_repair());

        let removed = three_nodes().without(&["c".into()], &[]);
        let h = assess(&s, &removed);
        assert_eq!(h.chunks[2].1, ChunkHealth::NodeRemoved);
        assert_eq!(h.rebuild, vec![2]);

        let mut failed = three_nodes();
        failed.disks.insert("b1".into(), ("b".into(), true));
        let h = assess(&s, &failed);
        assert_eq!(h.chunks[1].1, ChunkHealth::DiskFailed);
        assert_eq!(h.rebuild, vec![1]);
    }

    #[test]
    fn margins_count_damage_and_go_negative_when_unreadable() {
        let mut s = stripe(4, 2, &[("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1")]);
        // only four records of six: two indices have no chunk at all
        let l = live(
            &[("a", true)],
            &[
                ("a1", "a", false),
                ("a2", "a", false),
                ("b1", "a", false),
                ("c1", "a", false),
            ],
        );
        for c in &mut s.chunks {
            c.node = "a".into();
        }
        let h = assess(&s, &l);
        assert_eq!((h.good, h.margin), (4, 0));
        assert_eq!(h.rebuild, vec![4, 5]);
        s.chunks[0].state = ChunkState::Corrupt;
        let h = assess(&s, &l);
        assert_eq!((h.good, h.margin), (3, -1));
        assert_eq!(h.rebuild, vec![0, 4, 5]);
    }

    #[test]
    fn what_if_removes_the_named_nodes_and_disks() {
        let s = stripe(2, 1, &[("a", "a1"), ("b", "b1"), ("c", "c1")]);
        let l = three_nodes();
        assert_eq!(assess(&s, &l.without(&["a".into()], &[])).margin, 0);
        assert_eq!(
            assess(&s, &l.without(&["a".into()], &["b1".into()])).margin,
            -1
        );
    }
}
