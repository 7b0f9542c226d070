//! The heal service of a node: on the master it runs the scrub and repair workers, and it
//! stops them when the node stops being the master (the next master resumes them from the
//! status recorded in the metadata).

use super::assess::Liveness;
use crate::ids::NodeId;
use crate::meta::{MetaStore, MetadataLog};
use crate::placement::PlacementPolicy;
use crate::store::ChunkStore;
use crate::worker::{run_worker, Budget, Worker, WorkerHost};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// What the heal service needs to know of the cluster.
pub trait ClusterLiveness: Send + Sync {
    /// True while this node is the master (runs the cluster-wide workers).
    fn is_master(&self) -> bool;
    /// True when `node` is online now.
    fn node_online(&self, node: &NodeId) -> bool;
    /// The current members (a node that is neither a member nor recorded in the metadata
    /// has been removed).
    fn members(&self) -> Vec<NodeId>;
}

/// A node on its own: always the master, the only member, always online.
#[derive(Clone, Debug)]
pub struct SoloNode(pub NodeId);

impl ClusterLiveness for SoloNode {
    fn is_master(&self) -> bool {
        true
    }
    fn node_online(&self, node: &NodeId) -> bool {
        *node == self.0
    }
    fn members(&self) -> Vec<NodeId> {
        vec![self.0.clone()]
    }
}

/// How the heal workers behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealSettings {
    /// Runs a shallow scrub this long after the last scrub finished (`None`: only on
    /// command).
    pub scrub_every: Option<Duration>,
    /// Runs a deep scrub this long after the last deep scrub finished (`None`: only on
    /// command).
    pub deep_scrub_every: Option<Duration>,
    /// Looks for stripes to repair this often while there is nothing to repair.
    pub repair_every: Duration,
    /// The I/O budget of each worker when the operator sets none.
    pub budget: Budget,
    /// Runs no worker at all (repair and scrub only on a later start).
    pub enabled: bool,
    /// Writes a copy of the metadata database to the first disks this often (`None`:
    /// never; a node also writes one when it stops). See [`super::back_up`].
    pub meta_backup_every: Option<Duration>,
    /// Sweeps this node's disks for garbage this often (`None`: never).
    pub garbage_every: Option<Duration>,
    /// Garbage younger than this is left alone (writes in flight, replicas behind).
    pub garbage_grace: Duration,
    /// An entry of [`super::ORPHAN_DIR`] unchanged for this long is removed by the master's
    /// garbage worker when it cannot tell whether a client still has it open
    /// ([`HealContext::open_files`]). One no client has open goes after
    /// [`HealSettings::garbage_grace`]; one a live client has open stays.
    pub orphan_grace: Duration,
}

impl Default for HealSettings {
    fn default() -> Self {
        HealSettings {
            scrub_every: Some(Duration::from_secs(3600)),
            deep_scrub_every: Some(Duration::from_secs(30 * 24 * 3600)),
            repair_every: Duration::from_secs(30),
            budget: Budget {
                bytes_per_sec: 0,
                ops_per_sec: 0,
            },
            enabled: true,
            meta_backup_every: Some(Duration::from_secs(600)),
            garbage_every: Some(Duration::from_secs(3600)),
            garbage_grace: Duration::from_secs(3600),
            orphan_grace: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Whether a client has a file open, as the master's lock table knows it: every open of a
/// mount takes an open lock, read locks on or off ([`crate::locks::LockService`]).
#[async_trait::async_trait]
pub trait OpenFiles: Send + Sync {
    /// `Some(true)` when a live client session has inode `ino` open, `Some(false)` when none
    /// has, `None` when this node cannot tell (not the master, or in the grace period after
    /// a master change, when sessions are still taking their locks back).
    async fn is_open(&self, ino: u64) -> Option<bool>;
}

/// Everything the heal workers work with.
pub struct HealContext {
    /// This node.
    pub node: NodeId,
    /// Every chunk the node can reach (the cluster's, in a cluster).
    pub store: Arc<dyn ChunkStore>,
    /// Where findings and repairs are committed.
    pub log: Arc<dyn MetadataLog>,
    /// The local metadata copy, for reads.
    pub meta: Arc<MetaStore>,
    /// Where rebuilt chunks go.
    pub placement: Arc<dyn PlacementPolicy>,
    /// Who is master, who is online.
    pub liveness: Arc<dyn ClusterLiveness>,
    /// Intervals and budget.
    pub settings: HealSettings,
    /// This node's own disk directories (not failed ones), for the garbage worker.
    pub local_disks: Vec<(crate::ids::DiskId, std::path::PathBuf)>,
    /// Which files clients have open (`None`: not known; orphans then wait
    /// [`HealSettings::orphan_grace`]).
    pub open_files: Option<Arc<dyn OpenFiles>>,
}

impl HealContext {
    /// What is known now of the nodes and disks (blocking: reads the metadata and the
    /// store's view).
    pub fn observe(&self) -> Result<Liveness, String> {
        observe(
            &self.meta,
            self.store.as_ref(),
            &self.node,
            self.liveness.as_ref(),
        )
    }
}

/// What is known now of the nodes and disks: the recorded and member nodes (online or not),
/// the recorded disks and the disks the store sees, which of them failed (unusable, or
/// missing from an online node's disks), and how many nodes can take chunks.
pub fn observe(
    meta: &MetaStore,
    store: &dyn ChunkStore,
    me: &NodeId,
    cl: &dyn ClusterLiveness,
) -> Result<Liveness, String> {
    let mut names: BTreeSet<NodeId> = meta
        .nodes()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|n| n.id)
        .collect();
    names.extend(cl.members());
    if names.is_empty() {
        return Err("the metadata records no node yet".into());
    }
    let nodes: BTreeMap<NodeId, bool> = names
        .into_iter()
        .map(|n| {
            let online = cl.node_online(&n);
            (n, online)
        })
        .collect();
    let view = store.current_view(me).map_err(|e| e.to_string())?;
    let mut disks = BTreeMap::new();
    for d in meta.disks().map_err(|e| e.to_string())? {
        disks.insert(d.id, (d.node, false));
    }
    for v in &view.disks {
        disks
            .entry(v.disk.clone())
            .or_insert_with(|| (v.node.clone(), false));
    }
    for (id, (node, failed)) in disks.iter_mut() {
        // An unusable disk of an online node has failed (a disk of an offline node is
        // unusable because its node is).
        if nodes.get(node) == Some(&true) {
            // unusable, or no longer among its node's disks (taken out of its config)
            *failed = view
                .disks
                .iter()
                .find(|v| &v.disk == id)
                .is_none_or(|v| !v.usable);
        }
    }
    let live = Liveness {
        nodes,
        disks,
        usable_nodes: 0,
        draining: meta
            .draining_disks()
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect(),
    };
    Ok(live.without(&[], &[]))
}

/// The scrub and repair workers of a node, run while it is the master.
pub struct HealService {
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    repair_due: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl HealService {
    /// Starts watching for mastership; runs the workers while this node is the master.
    pub fn start(ctx: HealContext) -> HealService {
        let (stop, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        // the first repair sweep comes at once
        let repair_due = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(supervise(
            Arc::new(ctx),
            (wake.clone(), repair_due.clone()),
            stop_rx,
        ));
        HealService {
            stop,
            wake,
            repair_due,
            task,
        }
    }

    /// Makes repair look for work now, not at its next `repair_every` (after a node or
    /// disk was removed, or damage was recorded).
    pub fn wake(&self) {
        self.repair_due
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_waiters();
    }

    /// Stops the workers (recording where they are) and the service.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn supervise(
    ctx: Arc<HealContext>,
    (wake, repair_due): (Arc<Notify>, Arc<AtomicBool>),
    mut stop: watch::Receiver<bool>,
) {
    let host = Arc::new(WorkerHost {
        log: ctx.log.clone(),
        meta: ctx.meta.clone(),
        node: ctx.node.0.clone(),
        budget: ctx.settings.budget,
        wake: wake.clone(),
    });
    // The garbage worker of this node's own disks runs on every node.
    let garbage = match (ctx.settings.enabled, ctx.settings.garbage_every) {
        (true, Some(every)) if !ctx.local_disks.is_empty() => {
            let w = super::garbage::GarbageWorker::new(
                ctx.clone(),
                ctx.local_disks.clone(),
                every,
                ctx.settings.garbage_grace,
            );
            let (tx, rx) = watch::channel(false);
            Some((tx, tokio::spawn(run_worker(Box::new(w), host.clone(), rx))))
        }
        _ => None,
    };
    let mut running: Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)> = None;
    let mut closed = false;
    loop {
        let stopping = closed || *stop.borrow();
        let master = ctx.settings.enabled && !stopping && ctx.liveness.is_master();
        match (&running, master) {
            (None, true) => {
                tracing::info!(node = %ctx.node, "this node is the master: starting scrub and repair");
                let (tx, rx) = watch::channel(false);
                // a new master sweeps at once
                repair_due.store(true, std::sync::atomic::Ordering::Relaxed);
                let workers: Vec<Box<dyn Worker>> = vec![
                    Box::new(super::workers::ScrubWorker::new(
                        ctx.clone(),
                        wake.clone(),
                        repair_due.clone(),
                    )),
                    Box::new(super::workers::RepairWorker::new(
                        ctx.clone(),
                        repair_due.clone(),
                    )),
                ];
                let handles = workers
                    .into_iter()
                    .map(|w| tokio::spawn(run_worker(w, host.clone(), rx.clone())))
                    .collect();
                running = Some((tx, handles));
            }
            (Some(_), false) => {
                let (tx, handles) = running.take().expect("checked");
                tracing::info!(node = %ctx.node, "stopping scrub and repair (no longer the master, or stopping)");
                let _ = tx.send(true);
                for h in handles {
                    let _ = h.await;
                }
            }
            _ => {}
        }
        if stopping && running.is_none() {
            if let Some((tx, h)) = garbage {
                let _ = tx.send(true);
                let _ = h.await;
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            r = stop.changed() => closed |= r.is_err(),
        }
    }
}

debug_by_name!(HealContext, HealService);
