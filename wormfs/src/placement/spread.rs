//! The default placement: one chunk per disk, spread over nodes, least-full disks first.

use super::{ClusterView, DiskRef, DiskView, More, PlacementError, PlacementPolicy};
use crate::ids::NodeId;
use crate::policy::StoragePolicy;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

/// The default [`PlacementPolicy`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SpreadPlacement;

/// Orders disks so that the one that should be filled next comes first: the lowest used
/// fraction, then the most free bytes. Disks this leaves equal are tied.
fn fill_order(a: &DiskView, b: &DiskView) -> Ordering {
    // used_a / total_a vs used_b / total_b, compared exactly in u128.
    let used = |d: &DiskView| u128::from(d.total.saturating_sub(d.free));
    let total = |d: &DiskView| u128::from(d.total.max(1));
    (used(a) * total(b))
        .cmp(&(used(b) * total(a)))
        .then(b.free.cmp(&a.free))
}

/// [`fill_order`], then by id: a total order.
fn fuller(a: &DiskView, b: &DiskView) -> Ordering {
    fill_order(a, b).then_with(|| (&a.node, &a.disk).cmp(&(&b.node, &b.disk)))
}

/// Placements made so far in this process, which turn the order of tied disks.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// Sorts the candidates least full first, and turns each run of tied disks (directories
/// of one file system report the same space) by one more place per placement, so that
/// tied disks take chunks in turn. By id alone the first disks took every chunk: a 2+1
/// policy over six directories of one file system left 1048, 1048, 1050, 419, 417 and
/// 416 chunk files on them.
fn order(candidates: &mut [&DiskView]) {
    candidates.sort_by(|a, b| fuller(a, b));
    let turn = TURN.fetch_add(1, AtomicOrdering::Relaxed);
    let mut start = 0;
    while start < candidates.len() {
        let end = (start + 1..candidates.len())
            .find(|&j| fill_order(candidates[start], candidates[j]) != Ordering::Equal)
            .unwrap_or(candidates.len());
        let tied = &mut candidates[start..end];
        let n = tied.len();
        tied.rotate_left(turn % n);
        start = end;
    }
}

impl PlacementPolicy for SpreadPlacement {
    fn place(
        &self,
        policy_name: &str,
        policy: &StoragePolicy,
        chunk_size: u64,
        view: &ClusterView,
        exclude: &[DiskRef],
    ) -> Result<Vec<DiskRef>, PlacementError> {
        let needed = policy.width();
        let mut candidates: Vec<&DiskView> = view
            .disks
            .iter()
            .filter(|d| d.usable && d.free >= chunk_size)
            .filter(|d| !exclude.iter().any(|x| x.node == d.node && x.disk == d.disk))
            .collect();
        // The same disk listed twice counts once.
        candidates.sort_by(|a, b| (&a.node, &a.disk).cmp(&(&b.node, &b.disk)));
        candidates.dedup_by(|a, b| a.node == b.node && a.disk == b.disk);
        if candidates.len() < needed {
            return Err(PlacementError::NotEnoughDisks {
                policy: policy_name.to_owned(),
                layout: *policy,
                needed,
                usable: candidates.len(),
                total: view.disks.len(),
                chunk_size,
            });
        }
        order(&mut candidates);

        let nodes = candidates
            .iter()
            .map(|d| &d.node)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let cap = needed.div_ceil(nodes);
        let mut per_node: BTreeMap<&NodeId, usize> = BTreeMap::new();
        let mut taken = vec![false; candidates.len()];
        let mut chosen = Vec::with_capacity(needed);
        while chosen.len() < needed {
            // The least-full free disk on a node below the cap; when no node below the cap
            // has a free disk, the least-full one on the least-loaded nodes.
            let count = |d: &DiskView| per_node.get(&d.node).copied().unwrap_or(0);
            let pick = (0..candidates.len())
                .filter(|&i| !taken[i])
                .find(|&i| count(candidates[i]) < cap)
                .or_else(|| {
                    let low = (0..candidates.len())
                        .filter(|&i| !taken[i])
                        .map(|i| count(candidates[i]))
                        .min()?;
                    (0..candidates.len()).find(|&i| !taken[i] && count(candidates[i]) == low)
                })
                .expect("at least `needed` candidates exist");
            taken[pick] = true;
            let d = candidates[pick];
            *per_node.entry(&d.node).or_default() += 1;
            chosen.push(DiskRef {
                node: d.node.clone(),
                disk: d.disk.clone(),
            });
        }
        Ok(chosen)
    }

    fn place_more(
        &self,
        policy_name: &str,
        policy: &StoragePolicy,
        more: More<'_>,
        view: &ClusterView,
    ) -> Result<Vec<DiskRef>, PlacementError> {
        let More {
            count,
            chunk_size,
            keep,
            exclude,
        } = more;
        let taken = |d: &DiskView| {
            keep.iter()
                .chain(exclude)
                .any(|x| x.node == d.node && x.disk == d.disk)
        };
        let mut candidates: Vec<&DiskView> = view
            .disks
            .iter()
            .filter(|d| d.usable && d.free >= chunk_size && !taken(d))
            .collect();
        candidates.sort_by(|a, b| (&a.node, &a.disk).cmp(&(&b.node, &b.disk)));
        candidates.dedup_by(|a, b| a.node == b.node && a.disk == b.disk);
        if candidates.len() < count {
            return Err(PlacementError::NotEnoughDisks {
                policy: policy_name.to_owned(),
                layout: *policy,
                needed: count,
                usable: candidates.len(),
                total: view.disks.len(),
                chunk_size,
            });
        }
        order(&mut candidates);
        let mut per_node: BTreeMap<&NodeId, usize> = BTreeMap::new();
        for k in keep {
            *per_node.entry(&k.node).or_default() += 1;
        }
        let mut taken_now = vec![false; candidates.len()];
        let mut chosen = Vec::with_capacity(count);
        while chosen.len() < count {
            // the least-full free disk on the node holding the fewest chunks of the stripe
            let count_of = |d: &DiskView| per_node.get(&d.node).copied().unwrap_or(0);
            let pick = (0..candidates.len())
                .filter(|&i| !taken_now[i])
                .min_by_key(|&i| (count_of(candidates[i]), i))
                .expect("at least `count` candidates exist");
            taken_now[pick] = true;
            let d = candidates[pick];
            *per_node.entry(&d.node).or_default() += 1;
            chosen.push(DiskRef {
                node: d.node.clone(),
                disk: d.disk.clone(),
            });
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DiskId;
    use std::collections::BTreeSet;

    const TB: u64 = 1 << 40;

    fn disk(node: &str, disk: &str, total: u64, free: u64) -> DiskView {
        DiskView {
            node: node.into(),
            disk: disk.into(),
            total,
            free,
            usable: true,
        }
    }

    fn policy(k: u16, m: u16) -> StoragePolicy {
        StoragePolicy {
            k,
            m,
            stripe_size: u64::from(k) << 20,
        }
    }

    fn per_node(chosen: &[DiskRef]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in chosen {
            *out.entry(c.node.0.clone()).or_default() += 1;
        }
        out
    }

    fn cluster(nodes: usize, disks: usize) -> ClusterView {
        let mut v = ClusterView::default();
        for n in 0..nodes {
            for d in 0..disks {
                v.disks
                    .push(disk(&format!("n{n}"), &format!("n{n}d{d}"), TB, TB));
            }
        }
        v
    }

    #[test]
    fn more_chunks_go_to_the_nodes_holding_fewest_and_never_to_kept_or_excluded_disks() {
        let v = cluster(3, 2);
        let keep = vec![
            DiskRef {
                node: "n0".into(),
                disk: "n0d0".into(),
            },
            DiskRef {
                node: "n1".into(),
                disk: "n1d0".into(),
            },
        ];
        let exclude = vec![DiskRef {
            node: "n2".into(),
            disk: "n2d0".into(),
        }];
        let more = |count| More {
            count,
            chunk_size: 1,
            keep: &keep,
            exclude: &exclude,
        };
        let got = SpreadPlacement
            .place_more("t", &policy(2, 1), more(1), &v)
            .unwrap();
        assert_eq!(
            got,
            vec![DiskRef {
                node: "n2".into(),
                disk: "n2d1".into()
            }]
        );
        let err = SpreadPlacement
            .place_more("t", &policy(2, 1), more(4), &v)
            .unwrap_err();
        assert!(
            matches!(err, PlacementError::NotEnoughDisks { usable: 3, .. }),
            "{err}"
        );
    }

    /// Directories of one file system report the same space: they take chunks in turn,
    /// not the first ones by id all of them.
    #[test]
    fn tied_disks_take_chunks_in_turn() {
        let view = cluster(1, 6);
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..600 {
            let chosen = SpreadPlacement
                .place("t", &policy(2, 1), 1 << 20, &view, &[])
                .unwrap();
            let disks: std::collections::BTreeSet<_> = chosen.iter().map(|c| &c.disk).collect();
            assert_eq!(disks.len(), 3, "never two chunks of a stripe on one disk");
            for c in chosen {
                *count.entry(c.disk.0).or_default() += 1;
            }
        }
        // 1,800 chunks over six disks: 300 each when they take turns (other tests placing
        // at the same time move the turn a little)
        assert_eq!(count.len(), 6, "{count:?}");
        assert!(count.values().all(|n| (200..=400).contains(n)), "{count:?}");
    }

    #[test]
    fn table() {
        // (nodes, disks per node, k, m, expected max chunks on one node)
        let cases = [
            (3, 2, 2, 1, 1),
            (3, 2, 4, 2, 2),
            (3, 2, 3, 3, 2),
            (5, 1, 3, 2, 1),
            (1, 6, 4, 2, 6),
            (2, 4, 5, 3, 4),
            (4, 3, 8, 4, 3),
        ];
        for (nodes, disks, k, m, max) in cases {
            let view = cluster(nodes, disks);
            let chosen = SpreadPlacement
                .place("t", &policy(k, m), 1 << 20, &view, &[])
                .unwrap();
            assert_eq!(chosen.len(), usize::from(k + m));
            let distinct: BTreeSet<_> = chosen.iter().map(|c| &c.disk).collect();
            assert_eq!(
                distinct.len(),
                chosen.len(),
                "one chunk per disk: {chosen:?}"
            );
            let worst = per_node(&chosen).values().copied().max().unwrap();
            assert_eq!(worst, max, "{nodes}x{disks} {k}+{m}: {chosen:?}");
        }
    }

    #[test]
    fn uneven_nodes_still_obey_the_disk_rule() {
        // node a has 1 disk, b has 5; 4 chunks cannot be 2+2, so b takes 3.
        let mut view = ClusterView::default();
        view.disks.push(disk("a", "a0", TB, TB));
        for d in 0..5 {
            view.disks.push(disk("b", &format!("b{d}"), TB, TB));
        }
        let chosen = SpreadPlacement
            .place("t", &policy(2, 2), 1 << 20, &view, &[])
            .unwrap();
        assert_eq!(
            per_node(&chosen),
            BTreeMap::from([("a".into(), 1), ("b".into(), 3)])
        );
    }

    #[test]
    fn too_few_disks_names_policy_and_count() {
        let mut view = cluster(2, 2);
        view.disks[0].usable = false;
        view.disks[1].free = 10; // too small for the chunk
        let err = SpreadPlacement
            .place("media", &policy(4, 2), 1 << 20, &view, &[])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("policy `media`"), "{text}");
        assert!(text.contains("needs 6 disks"), "{text}");
        assert!(text.contains("only 2 of 4 disks"), "{text}");
    }

    #[test]
    fn excluded_disks_are_avoided() {
        let view = cluster(3, 2);
        let exclude = [DiskRef {
            node: "n0".into(),
            disk: DiskId("n0d0".into()),
        }];
        let chosen = SpreadPlacement
            .place("t", &policy(4, 1), 1, &view, &exclude)
            .unwrap();
        assert!(!chosen.contains(&exclude[0]));
        assert!(SpreadPlacement
            .place("t", &policy(4, 2), 1, &view, &exclude)
            .is_err());
    }

    #[test]
    fn mixed_sizes_fill_to_the_same_fraction() {
        // Three nodes, each with disks of 1, 2, 4 and 8 TB; place many 2+1 stripes, apply
        // each placement to the view, and check every disk is filled to the same fraction.
        let sizes = [1, 2, 4, 8];
        let mut view = ClusterView::default();
        for n in 0..3 {
            for (i, s) in sizes.iter().enumerate() {
                view.disks
                    .push(disk(&format!("n{n}"), &format!("n{n}d{i}"), s * TB, s * TB));
            }
        }
        let chunk = 8u64 << 30; // 8 GiB chunks: 1 TB holds 128
        let p = policy(2, 1);
        let mut stripes = 0;
        while let Ok(chosen) = SpreadPlacement.place("t", &p, chunk, &view, &[]) {
            assert_eq!(
                per_node(&chosen).len(),
                3,
                "2+1 over 3 nodes puts one chunk per node"
            );
            for c in chosen {
                let d = view.disks.iter_mut().find(|d| d.disk == c.disk).unwrap();
                d.free -= chunk;
            }
            stripes += 1;
            if stripes == 500 {
                let fractions: Vec<f64> = view
                    .disks
                    .iter()
                    .map(|d| 1.0 - d.free as f64 / d.total as f64)
                    .collect();
                let (lo, hi) = fractions
                    .iter()
                    .fold((1.0f64, 0.0f64), |(lo, hi), f| (lo.min(*f), hi.max(*f)));
                assert!(
                    hi - lo < 0.03,
                    "fill fractions spread {lo:.3}..{hi:.3}: {fractions:?}"
                );
            }
        }
        // Everything is used: what is left on any disk is less than one chunk per disk.
        let left: u64 = view.disks.iter().map(|d| d.free).sum();
        assert!(
            left < chunk * view.disks.len() as u64,
            "{left} bytes left unused"
        );
        assert!(stripes > 500);
    }
}
