//! The admin calls of the gRPC service that report durability: file layouts with each
//! chunk's health, the workers, and files at risk (now or after a hypothetical loss).

use super::convert::attr_to_proto;
use super::proto;
use crate::ids::{DiskId, NodeId};
use crate::node::{FsError, NodeFs};
use crate::worker::{WorkerControl, WorkerStatus};
use std::sync::Arc;

/// Blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FsError::Internal(e.to_string()))?
}

/// `GetFileLayout`: every stripe with its margin, every chunk with its health.
pub(super) async fn file_layout(
    fs: &Arc<NodeFs>,
    path: String,
) -> Result<proto::FileLayoutReply, FsError> {
    let f = fs.clone();
    let p = path.clone();
    let (attr, views) = blocking(move || f.file_health(&p)).await?;
    let stripe_size = attr.layout.as_ref().map_or(0, |l| l.stripe_size);
    let stripes = views
        .into_iter()
        .map(|v| {
            let s = &v.stripe;
            let chunks = s
                .chunks
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let path = attr
                        .layout
                        .as_ref()
                        .and_then(|l| {
                            let addr = crate::engine::chunk_addr(attr.ino, l, s, c.index);
                            fs.chunk_path(&c.disk, &addr)
                        })
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    let state = v
                        .health
                        .as_ref()
                        .and_then(|h| h.chunks.get(i))
                        .map_or("unknown", |(_, h)| h.as_str());
                    proto::ChunkLayout {
                        index: u32::from(c.index),
                        node: c.node.to_string(),
                        disk: c.disk.to_string(),
                        path,
                        size: c.size,
                        state: state.into(),
                        verified: v
                            .verified
                            .iter()
                            .find(|(i, _)| *i == c.index)
                            .map_or(0, |(_, t)| *t),
                    }
                })
                .collect();
            proto::StripeLayout {
                index: s.index,
                generation: s.generation,
                start: s.index * stripe_size,
                len: s.len,
                crc: s.crc,
                inline: s.inline.is_some(),
                margin: v.health.as_ref().map_or(i64::from(s.m), |h| h.margin),
                chunks,
            }
        })
        .collect();
    Ok(proto::FileLayoutReply {
        path,
        attr: Some(attr_to_proto(&attr)),
        stripes,
    })
}

/// One worker on the wire.
pub(super) fn worker_info(name: &str, c: &WorkerControl, s: &WorkerStatus) -> proto::WorkerInfo {
    proto::WorkerInfo {
        name: name.to_owned(),
        state: s.state.as_str().to_owned(),
        node: s.node.clone(),
        passes: s.passes,
        deep: s.deep,
        done: s.done,
        total: s.total,
        bytes: s.bytes,
        found: s.found,
        repaired: s.repaired,
        failed: s.failed,
        skipped: s.skipped,
        degraded: s.degraded,
        at_risk: s.at_risk,
        unreadable: s.unreadable,
        queued: s.queued,
        started: s.started.0,
        updated: s.updated.0,
        finished: s.finished.0,
        message: s.message.clone(),
        paused: c.paused,
        request: s.request,
        requested: c.request,
        bytes_per_sec: c.bytes_per_sec,
        ops_per_sec: c.ops_per_sec,
        rate: s.rate(),
        eta_secs: s.eta_secs().map_or(-1, |e| e as i64),
        counted: s.counted.0,
        removed: s.removed,
    }
}

/// `ListWorkers`.
pub(super) fn workers(fs: &NodeFs) -> Result<proto::WorkersReply, FsError> {
    Ok(proto::WorkersReply {
        workers: fs
            .workers()?
            .iter()
            .map(|(n, c, s)| worker_info(n, c, s))
            .collect(),
    })
}

/// `GetRisk`: now, or with the named nodes and disks lost.
pub(super) async fn risk(
    fs: &Arc<NodeFs>,
    r: proto::RiskRequest,
) -> Result<proto::RiskReply, FsError> {
    let nodes: Vec<NodeId> = r.nodes.into_iter().map(NodeId).collect();
    let disks: Vec<DiskId> = r.disks.into_iter().map(DiskId).collect();
    let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
    let f = fs.clone();
    let report = blocking(move || f.risk(&nodes, &disks, r.max_margin, limit)).await?;
    Ok(proto::RiskReply {
        stripes: report.stripes,
        degraded: report.degraded,
        at_risk: report.at_risk,
        unreadable: report.unreadable,
        rebuild_bytes: report.rebuild_bytes,
        files_at_risk: report.files_at_risk,
        files_unreadable: report.files_unreadable,
        truncated: report.truncated,
        files: report
            .files
            .into_iter()
            .map(|f| proto::FileRisk {
                path: f.path,
                ino: f.ino.0,
                margin: f.margin,
                stripes_at_risk: f.stripes_at_risk,
                unreadable_stripes: f.unreadable_stripes,
                size: f.size,
            })
            .collect(),
    })
}
