//! A node's Prometheus metrics: what it serves, what its disks do, where its cluster and
//! its workers stand.
//!
//! - Counters and histograms are counted as things happen: gRPC calls by method and status
//!   ([`GrpcMetricsLayer`]), chunk operations, errors and bytes by disk ([`MeteredStore`]),
//!   stripe bytes read and written for clients ([`Metrics::client_bytes`]).
//! - Gauges are read when `/metrics` is scraped ([`Metrics::render`]): disk space, the
//!   cluster's members and term, the metadata's applied index, files and bytes stored, and
//!   the workers' progress and the stripes their last pass found degraded or at risk.
//!
//! Names and units follow Prometheus' conventions (`wormfs_` prefix, base units, `_total`
//! on counters). docs/metrics.md lists every series.

mod layer;
mod store;

pub use layer::{GrpcMetrics, GrpcMetricsLayer};
pub use store::MeteredStore;

use crate::node::NodeFs;
use crate::rpc::server::ClusterInfo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The labels of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

/// A gRPC method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// A chunk operation on a disk.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChunkOpLabels {
    disk: String,
    op: String,
}

/// A failed chunk operation on a disk, and how it failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChunkErrorLabels {
    disk: String,
    op: String,
    kind: String,
}

/// Bytes one way.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: String,
}

/// Bytes of a disk one way.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskDirectionLabels {
    disk: String,
    direction: String,
}

/// A disk.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskLabels {
    disk: String,
}

/// Members in one state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// A background worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

/// A worker in a state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerStateLabels {
    worker: String,
    state: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A node's metrics. Cheap to share ([`Arc`]); every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    grpc_requests: Family<CallLabels, Counter>,
    grpc_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    client_bytes: Family<DirectionLabels, Counter>,
    chunk_ops: Family<ChunkOpLabels, Counter>,
    chunk_errors: Family<ChunkErrorLabels, Counter>,
    chunk_bytes: Family<DiskDirectionLabels, Counter>,
    disk_capacity: Family<DiskLabels, Gauge>,
    disk_free: Family<DiskLabels, Gauge>,
    disk_healthy: Family<DiskLabels, Gauge>,
    members: Family<StateLabels, Gauge>,
    is_master: Gauge,
    term: Gauge,
    applied: Gauge,
    files: Gauge,
    bytes: Gauge,
    worker_state: Family<WorkerStateLabels, Gauge>,
    worker_done: Family<WorkerLabels, Gauge>,
    worker_todo: Family<WorkerLabels, Gauge>,
    worker_progress: Family<WorkerLabels, FloatGauge>,
    worker_rate: Family<WorkerLabels, Gauge>,
    stripes_degraded: Gauge,
    stripes_at_risk: Gauge,
    stripes_unreadable: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The states a worker can be in, as the `state` label of `wormfs_worker_state`.
const WORKER_STATES: [&str; 5] = ["active", "idle", "paused", "done", "error"];

impl Metrics {
    /// Every series, registered and at zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("wormfs");
        let m = Metrics {
            grpc_requests: Family::default(),
            grpc_seconds: Family::new_with_constructor(latency_histogram),
            client_bytes: Family::default(),
            chunk_ops: Family::default(),
            chunk_errors: Family::default(),
            chunk_bytes: Family::default(),
            disk_capacity: Family::default(),
            disk_free: Family::default(),
            disk_healthy: Family::default(),
            members: Family::default(),
            is_master: Gauge::default(),
            term: Gauge::default(),
            applied: Gauge::default(),
            files: Gauge::default(),
            bytes: Gauge::default(),
            worker_state: Family::default(),
            worker_done: Family::default(),
            worker_todo: Family::default(),
            worker_progress: Family::default(),
            worker_rate: Family::default(),
            stripes_degraded: Gauge::default(),
            stripes_at_risk: Gauge::default(),
            stripes_unreadable: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "grpc_requests",
            "gRPC calls answered, by method and status code (a stream's status after its \
             first message is not seen)",
            m.grpc_requests.clone(),
        );
        r.register_with_unit(
            "grpc_request_duration",
            "Time from a gRPC call's arrival to its answer's headers (for a stream, its first \
             message)",
            Unit::Seconds,
            m.grpc_seconds.clone(),
        );
        r.register_with_unit(
            "client",
            "Stripe bytes read and written for clients",
            Unit::Bytes,
            m.client_bytes.clone(),
        );
        r.register(
            "chunk_operations",
            "Chunk operations on this node's disks, by disk and operation",
            m.chunk_ops.clone(),
        );
        r.register(
            "chunk_errors",
            "Failed chunk operations on this node's disks, by disk, operation and kind \
             (missing, damaged, failed)",
            m.chunk_errors.clone(),
        );
        r.register_with_unit(
            "chunk_io",
            "Chunk file bytes read from and written to this node's disks",
            Unit::Bytes,
            m.chunk_bytes.clone(),
        );
        r.register_with_unit(
            "disk_capacity",
            "Capacity of each of this node's disks",
            Unit::Bytes,
            m.disk_capacity.clone(),
        );
        r.register_with_unit(
            "disk_free",
            "Bytes available for new chunks on each of this node's disks",
            Unit::Bytes,
            m.disk_free.clone(),
        );
        r.register(
            "disk_healthy",
            "1 when the disk could be inspected, 0 when it failed",
            m.disk_healthy.clone(),
        );
        r.register(
            "cluster_members",
            "Members of the cluster by state (online, offline), as this node sees them",
            m.members.clone(),
        );
        r.register(
            "cluster_is_master",
            "1 when this node is the master",
            m.is_master.clone(),
        );
        r.register(
            "raft_term",
            "The Raft term this node is in (each election raises it)",
            m.term.clone(),
        );
        r.register(
            "metadata_applied_index",
            "The last metadata log entry applied on this node",
            m.applied.clone(),
        );
        r.register(
            "inodes",
            "Files, directories and other inodes in the file system, the root included",
            m.files.clone(),
        );
        r.register_with_unit(
            "stored",
            "Bytes of file data in the file system (before coding)",
            Unit::Bytes,
            m.bytes.clone(),
        );
        r.register(
            "worker_state",
            "1 for the state each background worker is in (active, idle, paused, done, error)",
            m.worker_state.clone(),
        );
        r.register(
            "worker_done",
            "Items (stripes, chunks) the worker's current or last run has done",
            m.worker_done.clone(),
        );
        r.register(
            "worker_todo",
            "Items the worker's current or last run counted to do",
            m.worker_todo.clone(),
        );
        r.register(
            "worker_progress_ratio",
            "done / total of the worker's current or last run (1 when there was nothing to do)",
            m.worker_progress.clone(),
        );
        r.register_with_unit(
            "worker_rate",
            "Bytes per second over the worker's current run",
            Unit::Other("bytes_per_second".into()),
            m.worker_rate.clone(),
        );
        r.register(
            "stripes_degraded",
            "Stripes the last repair sweep found missing a chunk but readable",
            m.stripes_degraded.clone(),
        );
        r.register(
            "stripes_at_risk",
            "Stripes the last repair sweep found one more loss away from unreadable",
            m.stripes_at_risk.clone(),
        );
        r.register(
            "stripes_unreadable",
            "Stripes the last repair sweep found with fewer than k chunks",
            m.stripes_unreadable.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts `n` stripe bytes `read` (else written) for a client.
    pub fn client_bytes(&self, read: bool, n: u64) {
        let direction = if read { "read" } else { "written" };
        self.client_bytes
            .get_or_create(&DirectionLabels {
                direction: direction.into(),
            })
            .inc_by(n);
    }

    fn grpc_call(&self, method: &str, code: &str, seconds: f64) {
        self.grpc_requests
            .get_or_create(&CallLabels {
                method: method.into(),
                code: code.into(),
            })
            .inc();
        self.grpc_seconds
            .get_or_create(&MethodLabels {
                method: method.into(),
            })
            .observe(seconds);
    }

    fn chunk_op(&self, disk: &str, op: &str, io: Option<(bool, u64)>) {
        self.chunk_ops
            .get_or_create(&ChunkOpLabels {
                disk: disk.into(),
                op: op.into(),
            })
            .inc();
        if let Some((read, n)) = io {
            let direction = if read { "read" } else { "written" };
            self.chunk_bytes
                .get_or_create(&DiskDirectionLabels {
                    disk: disk.into(),
                    direction: direction.into(),
                })
                .inc_by(n);
        }
    }

    fn chunk_error(&self, disk: &str, op: &str, kind: &str) {
        self.chunk_errors
            .get_or_create(&ChunkErrorLabels {
                disk: disk.into(),
                op: op.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Reads the gauges from `fs` (its disks, metadata and workers) and `cluster`, then
    /// encodes every series in Prometheus' text format. What cannot be read now keeps its
    /// last value, and is named in the log.
    pub fn render(&self, fs: &NodeFs, cluster: Option<&dyn ClusterInfo>) -> String {
        self.sample(fs, cluster);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding the metrics failed: {e}");
        }
        out
    }

    fn sample(&self, fs: &NodeFs, cluster: Option<&dyn ClusterInfo>) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match fs.store().disks() {
            Ok(disks) => {
                for d in disks.iter().filter(|d| fs.store().is_local(&d.disk)) {
                    let l = DiskLabels {
                        disk: d.disk.0.clone(),
                    };
                    self.disk_capacity.get_or_create(&l).set(gauge(d.total));
                    self.disk_free.get_or_create(&l).set(gauge(d.free));
                    self.disk_healthy
                        .get_or_create(&l)
                        .set(i64::from(d.healthy));
                }
            }
            Err(e) => tracing::warn!("metrics: cannot read the disks: {e}"),
        }
        match cluster {
            Some(c) => {
                let rows = c.members();
                let online = rows.iter().filter(|r| r.state == "online").count();
                for (state, n) in [("online", online), ("offline", rows.len() - online)] {
                    self.members
                        .get_or_create(&StateLabels {
                            state: state.into(),
                        })
                        .set(n as i64);
                }
                self.is_master
                    .set(i64::from(c.master() == fs.node().to_string()));
                self.term.set(gauge(c.term()));
            }
            None => {
                self.is_master.set(1);
                self.members
                    .get_or_create(&StateLabels {
                        state: "online".into(),
                    })
                    .set(1);
            }
        }
        match fs.meta().last_applied() {
            Ok(a) => {
                self.applied.set(gauge(a));
            }
            Err(e) => tracing::warn!("metrics: cannot read the applied index: {e}"),
        }
        match fs.meta().usage() {
            Ok((files, bytes)) => {
                self.files.set(gauge(files));
                self.bytes.set(gauge(bytes));
            }
            Err(e) => tracing::warn!("metrics: cannot read the usage: {e}"),
        }
        match fs.workers() {
            Ok(workers) => {
                for (name, _control, s) in workers {
                    let l = WorkerLabels {
                        worker: name.clone(),
                    };
                    let now = s.state.as_str();
                    for state in WORKER_STATES {
                        self.worker_state
                            .get_or_create(&WorkerStateLabels {
                                worker: name.clone(),
                                state: state.into(),
                            })
                            .set(i64::from(now == state));
                    }
                    self.worker_done.get_or_create(&l).set(gauge(s.done));
                    self.worker_todo.get_or_create(&l).set(gauge(s.total));
                    let ratio = if s.total == 0 {
                        1.0
                    } else {
                        (s.done as f64 / s.total as f64).min(1.0)
                    };
                    self.worker_progress.get_or_create(&l).set(ratio);
                    self.worker_rate.get_or_create(&l).set(gauge(s.rate()));
                    if name == crate::worker::names::REPAIR {
                        self.stripes_degraded.set(gauge(s.degraded));
                        self.stripes_at_risk.set(gauge(s.at_risk));
                        self.stripes_unreadable.set(gauge(s.unreadable));
                    }
                }
            }
            Err(e) => tracing::warn!("metrics: cannot read the workers: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
