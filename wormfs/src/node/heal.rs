//! The durability half of [`NodeFs`]: the health of a file's stripes, files at risk now or
//! after a hypothetical loss (`what-if`), and the scrub and repair workers' records and
//! controls.

use super::fs::NodeFs;
use super::FsError;
use crate::heal::{assess, Liveness, StripeHealth, Sweeper};
use crate::ids::{DiskId, FileId, NodeId};
use crate::meta::Interner;
use crate::meta::{Attr, MetadataOp, StripeRecord};
use crate::worker::{names, WorkerControl, WorkerStatus};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A file with stripes at risk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileRisk {
    /// The file.
    pub ino: FileId,
    /// A path of it (empty when it has none left, e.g. unlinked but open).
    pub path: String,
    /// The smallest margin of its stripes (-1: a stripe cannot be read).
    pub margin: i64,
    /// Its stripes with margin 0.
    pub stripes_at_risk: u64,
    /// Its stripes that cannot be read.
    pub unreadable_stripes: u64,
    /// Its size.
    pub size: u64,
}

/// The durability of every stripe, now or after a hypothetical loss.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskReport {
    /// Stripes stored as chunks.
    pub stripes: u64,
    /// Stripes with a chunk that cannot be read now.
    pub degraded: u64,
    /// Stripes one more loss away from unreadable.
    pub at_risk: u64,
    /// Stripes that cannot be read.
    pub unreadable: u64,
    /// Bytes of chunks known lost (to rebuild).
    pub rebuild_bytes: u64,
    /// The files whose margin is at most the asked one, riskiest first.
    pub files: Vec<FileRisk>,
    /// Files with a stripe at margin 0.
    pub files_at_risk: u64,
    /// Files with a stripe that cannot be read.
    pub files_unreadable: u64,
    /// More files matched than were listed.
    pub truncated: bool,
}

/// How [`NodeFs::risk`] ranks files: smallest margin, then most unreadable stripes.
type RiskOrder = (i64, Reverse<u64>, FileId);

/// What one thread of [`NodeFs::risk`] found.
pub(crate) struct RiskPart {
    pub(crate) report: RiskReport,
    pub(crate) matched: Vec<(RiskOrder, FileRisk)>,
    pub(crate) matched_count: usize,
}

/// A stripe of `file info`: its record, its health (none for a stripe kept in the
/// metadata) and when each chunk was last verified.
#[derive(Clone, Debug)]
pub struct StripeView {
    /// The stripe.
    pub stripe: StripeRecord,
    /// Its health.
    pub health: Option<StripeHealth>,
    /// `(shard index, Unix nanoseconds)` of the last deep verification of each chunk.
    pub verified: Vec<(u16, i64)>,
}

impl NodeFs {
    /// What is known now of the nodes and disks.
    pub fn observe(&self) -> Result<Liveness, FsError> {
        crate::heal::observe(
            &self.meta,
            self.store.as_ref(),
            &self.node,
            self.liveness.as_ref(),
        )
        .map_err(FsError::Internal)
    }

    /// The file at `path` with each stripe's health, for `wormfs file info`.
    pub fn file_health(&self, path: &str) -> Result<(Attr, Vec<StripeView>), FsError> {
        let (attr, stripes) = self.file_layout(path)?;
        let live = self.observe()?;
        let verified = self.meta.verified_times(attr.ino)?;
        let views = stripes
            .into_iter()
            .map(|s| {
                let health = (!s.chunks.is_empty()).then(|| assess(&s, &live));
                let verified = verified
                    .iter()
                    .filter(|(stripe, _, _)| *stripe == s.index)
                    .map(|(_, chunk, t)| (*chunk, *t))
                    .collect();
                StripeView {
                    stripe: s,
                    health,
                    verified,
                }
            })
            .collect();
        Ok((attr, views))
    }

    /// Every stripe's durability: now, or as it would be if `lose_nodes` and `lose_disks`
    /// were lost. Lists up to `limit` files whose margin is at most `max_margin`. Names
    /// that are no node or disk of the cluster are refused.
    pub fn risk(
        &self,
        lose_nodes: &[NodeId],
        lose_disks: &[DiskId],
        max_margin: i64,
        limit: usize,
    ) -> Result<RiskReport, FsError> {
        let now = self.observe()?;
        let unknown: Vec<String> = lose_nodes
            .iter()
            .filter(|n| !now.nodes.contains_key(*n))
            .map(|n| format!("node `{n}`"))
            .chain(
                lose_disks
                    .iter()
                    .filter(|d| !now.disks.contains_key(*d))
                    .map(|d| format!("disk `{d}`")),
            )
            .collect();
        if !unknown.is_empty() {
            return Err(FsError::Invalid(format!(
                "{} not in the cluster; `wormfs status` lists the nodes and disks",
                unknown.join(", ")
            )));
        }
        let live = now.without(lose_nodes, lose_disks);
        // Two halves of the inode range at once, one per core (a million files take about
        // a second on one).
        let ranges: Vec<std::ops::Range<u64>> = match self.meta.stripe_ino_span()? {
            None => Vec::new(),
            Some((lo, hi)) if hi - lo < 1024 => std::iter::once(lo..hi + 1).collect(),
            Some((lo, hi)) => {
                let mid = lo + (hi - lo) / 2;
                vec![lo..mid, mid..hi + 1]
            }
        };
        let parts: Vec<Result<RiskPart, FsError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .into_iter()
                .map(|r| {
                    let live = &live;
                    scope.spawn(move || self.risk_part(r, live, max_margin, limit))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(FsError::Internal("risk sweep panicked".into())))
                })
                .collect()
        });
        let mut report = RiskReport::default();
        let mut matched: BinaryHeap<(RiskOrder, FileRisk)> = BinaryHeap::new();
        let mut matched_count = 0;
        for part in parts {
            let part = part?;
            let r = part.report;
            report.stripes += r.stripes;
            report.degraded += r.degraded;
            report.at_risk += r.at_risk;
            report.unreadable += r.unreadable;
            report.rebuild_bytes += r.rebuild_bytes;
            report.files_at_risk += r.files_at_risk;
            report.files_unreadable += r.files_unreadable;
            matched_count += part.matched_count;
            for m in part.matched {
                matched.push(m);
                if matched.len() > limit {
                    matched.pop();
                }
            }
        }
        report.truncated = matched_count > limit;
        let mut matched: Vec<FileRisk> = matched
            .into_sorted_vec()
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        for f in &mut matched {
            f.path = self.meta.path_of(f.ino)?.unwrap_or_default();
            f.size = self.meta.attr(f.ino)?.map_or(0, |a| a.size);
        }
        report.files = matched;
        Ok(report)
    }

    /// [`NodeFs::risk`] over the files whose inode numbers are in `inos`.
    pub(crate) fn risk_part(
        &self,
        inos: std::ops::Range<u64>,
        live: &Liveness,
        max_margin: i64,
        limit: usize,
    ) -> Result<RiskPart, FsError> {
        let mut report = RiskReport::default();
        // the `limit` riskiest files, the least risky of them on top
        let mut matched: BinaryHeap<(RiskOrder, FileRisk)> = BinaryHeap::new();
        let mut matched_count = 0usize;
        let mut current: Option<FileRisk> = None;
        let mut flush = |f: Option<FileRisk>, report: &mut RiskReport| {
            let Some(f) = f else { return };
            if f.unreadable_stripes > 0 {
                report.files_unreadable += 1;
            } else if f.stripes_at_risk > 0 {
                report.files_at_risk += 1;
            }
            if f.margin <= max_margin {
                matched_count += 1;
                matched.push(((f.margin, Reverse(f.unreadable_stripes), f.ino), f));
                if matched.len() > limit {
                    matched.pop();
                }
            }
        };
        let mut sweeper = Sweeper::new(live);
        let mut disks = Interner::default();
        self.meta.sweep_chunks(inos, &mut disks, |s, disks| {
            let h = sweeper.assess(s, disks);
            report.stripes += 1;
            if h.good < h.width {
                report.degraded += 1;
            }
            if h.margin >= 0 {
                // an unreadable stripe has nothing to rebuild from
                report.rebuild_bytes += h.lost_bytes;
            }
            if current.as_ref().is_some_and(|f| f.ino != s.ino) {
                flush(current.take(), &mut report);
            }
            let f = current.get_or_insert_with(|| FileRisk {
                ino: s.ino,
                path: String::new(),
                margin: i64::MAX,
                stripes_at_risk: 0,
                unreadable_stripes: 0,
                size: 0,
            });
            f.margin = f.margin.min(h.margin);
            match h.margin {
                m if m < 0 => {
                    report.unreadable += 1;
                    f.unreadable_stripes += 1;
                }
                0 => {
                    report.at_risk += 1;
                    f.stripes_at_risk += 1;
                }
                _ => {}
            }
        })?;
        flush(current.take(), &mut report);
        Ok(RiskPart {
            report,
            matched: matched.into_vec(),
            matched_count,
        })
    }

    /// Starts (`true`) or stops draining `disk`: a draining disk takes no new chunks, and
    /// repair moves its chunks to other disks (`wormfs disk drain`).
    pub async fn drain_disk(&self, disk: &DiskId, draining: bool) -> Result<(), FsError> {
        self.submit(MetadataOp::SetDiskDraining {
            disk: disk.clone(),
            draining,
        })
        .await?;
        Ok(())
    }

    /// Removes the record of `disk` (`wormfs disk remove`): refused while metadata places
    /// chunks on it (drain it first), and while it is still among the disks of its online
    /// node (take it out of the node's config first, or its node records it again).
    pub async fn remove_disk(&self, disk: &DiskId) -> Result<(), FsError> {
        let live = self.observe()?;
        let Some((node, _)) = live.disks.get(disk) else {
            return Err(FsError::Invalid(format!(
                "no disk `{disk}` is recorded; `wormfs status` lists the disks"
            )));
        };
        let chunks = self.meta.chunks_on(disk)?;
        if chunks > 0 {
            return Err(FsError::Invalid(format!(
                "disk `{disk}` still holds {chunks} chunks: drain it first (`wormfs disk drain \
                 {disk}`) and wait until `wormfs repair` shows none queued"
            )));
        }
        let configured = live.nodes.get(node) == Some(&true)
            && self
                .store
                .current_view(&self.node)?
                .disks
                .iter()
                .any(|v| &v.disk == disk);
        if configured {
            return Err(FsError::Invalid(format!(
                "disk `{disk}` is still among node {node}'s disks: take it out of `[[disks]]` \
                 in that node's config and restart the node, then remove it"
            )));
        }
        self.submit(MetadataOp::RemoveDisk(disk.clone())).await?;
        Ok(())
    }

    /// The workers' controls and statuses: scrub, repair, and each node's garbage worker.
    pub fn workers(&self) -> Result<Vec<(String, WorkerControl, WorkerStatus)>, FsError> {
        let garbage_prefix = format!("{}@", names::GARBAGE);
        let mut all: Vec<String> = vec![names::SCRUB.into(), names::REPAIR.into()];
        all.extend(
            self.meta
                .worker_names()?
                .into_iter()
                .filter(|n| n.starts_with(&garbage_prefix)),
        );
        all.into_iter()
            .map(|n| {
                let (c, s) = self.meta.worker(&n)?;
                Ok((n, c, s))
            })
            .collect()
    }

    /// Changes a worker's control: `start` (a new scrub pass, deep or not; for repair, a
    /// sweep for work now), `pause`,
    /// `resume`, or `rate` (its I/O budget). The master running the worker obeys it
    /// within a step.
    pub async fn control_worker(
        &self,
        name: &str,
        action: &str,
        deep: bool,
        bytes_per_sec: u64,
        ops_per_sec: u64,
    ) -> Result<(), FsError> {
        if name != names::SCRUB && name != names::REPAIR {
            return Err(FsError::Invalid(format!(
                "no worker is named `{name}`; the workers are `scrub` and `repair`"
            )));
        }
        let (mut control, _) = self.meta.worker(name)?;
        match action {
            "start" if name == names::SCRUB => {
                control.request += 1;
                control.deep = deep;
                control.paused = false;
            }
            // a repair sweep now: the status's `request` reaches this one when it is done
            "start" => {
                control.request += 1;
                control.paused = false;
            }
            "resume" => control.paused = false,
            "pause" => control.paused = true,
            "rate" => {}
            other => {
                return Err(FsError::Invalid(format!(
                    "`{other}` is not a worker action; use start, pause, resume or rate"
                )))
            }
        }
        if action == "rate" || bytes_per_sec > 0 || ops_per_sec > 0 {
            control.bytes_per_sec = bytes_per_sec;
            control.ops_per_sec = ops_per_sec;
        }
        self.submit(MetadataOp::SetWorkerControl {
            name: name.to_owned(),
            control,
        })
        .await?;
        Ok(())
    }
}
