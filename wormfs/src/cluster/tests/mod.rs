//! A cluster in one process: N nodes over an [`InProcessHub`], each with a memory chunk
//! store, its own temporary SQLite files and the real Raft, elections, heartbeats,
//! forwarding and [`ClusterStore`] — only the network is the hub, whose fault hooks
//! partition, cut, delay, lose and duplicate messages, and whose `leave`/`join` crash and
//! restart a node. Randomized fault schedules run from a seed printed on failure
//! (`WORMFS_FAULT_SEED=N` replays one).

use super::*;
use crate::ids::{DiskId, FileId};
use crate::meta::{DiskInfo, MetadataOp, NodeInfo};
use crate::net::InProcessHub;
use crate::node::{CreateKind, NodeFs};
use crate::placement::SpreadPlacement;
use crate::policy::{PolicySet, StoragePolicy};
use crate::store::MemoryChunkStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// Bytes in a stripe of the fixture's policy (2+1): large enough not to be kept inline.
const STRIPE: usize = 2 * 16384;

/// How long the fixture waits for a condition before the test fails.
const PATIENCE: Duration = Duration::from_secs(40);

fn settings() -> ClusterSettings {
    ClusterSettings {
        // not used: the nodes talk over the hub
        p2p_listen: "127.0.0.1:0".parse().unwrap(),
        data_listen: None,
        peers: Vec::new(),
        bootstrap: false,
        heartbeat_interval: Duration::from_millis(100),
        offline_after: 4,
        election_timeout: Duration::from_millis(500),
        snapshot_after: 64,
        keep_log_entries: 16,
    }
}

/// One node of the fixture: what survives a crash (its directory and its disks), and the
/// running parts when it is up.
struct TestNode {
    name: NodeId,
    raft_id: RaftNodeId,
    dir: PathBuf,
    disks: Arc<MemoryChunkStore>,
    up: Option<Running>,
}

struct Running {
    cluster: Arc<Cluster>,
    fs: Arc<NodeFs>,
}

impl TestNode {
    fn member(&self) -> Member {
        Member {
            name: self.name.0.clone(),
            p2p_addr: format!("in-process:{}", self.name),
            rpc_addr: format!("in-process:{}", self.name),
            peer_id: String::new(),
        }
    }

    fn fs(&self) -> &Arc<NodeFs> {
        &self.up.as_ref().expect("node is up").fs
    }

    fn cluster(&self) -> &Arc<Cluster> {
        &self.up.as_ref().expect("node is up").cluster
    }
}

/// The nodes that campaigned, by term.
type Campaigns = Arc<Mutex<BTreeMap<u64, BTreeSet<NodeId>>>>;

struct Fixture {
    hub: InProcessHub,
    _tmp: tempfile::TempDir,
    nodes: Vec<TestNode>,
    /// The terms in which each node campaigned.
    campaigns: Campaigns,
}

impl Fixture {
    /// Starts `n` nodes with two memory disks each and forms the cluster from all of them.
    async fn start(n: usize) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let hub = InProcessHub::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = NodeId(format!("n{i}"));
            let dir = tmp.path().join(&name.0);
            std::fs::create_dir(&dir).unwrap();
            let disks = Arc::new(MemoryChunkStore::new(&[
                (DiskId(format!("{name}-d0")), 1 << 30),
                (DiskId(format!("{name}-d1")), 1 << 30),
            ]));
            nodes.push(TestNode {
                name,
                raft_id: i as u64 + 1,
                dir,
                disks,
                up: None,
            });
        }
        let mut f = Fixture {
            hub,
            _tmp: tmp,
            nodes,
            campaigns: Arc::default(),
        };
        for i in 0..n {
            f.boot(i).await;
        }
        let members: BTreeMap<RaftNodeId, Member> =
            f.nodes.iter().map(|t| (t.raft_id, t.member())).collect();
        f.nodes[0]
            .cluster()
            .raft
            .initialize(members)
            .await
            .expect("form the cluster");
        f.wait_for_master(&f.names()).await;
        // every node records itself and its disks, as a node process does at start
        for i in 0..n {
            let t = &f.nodes[i];
            let log = t.fs().log().clone();
            log.submit(MetadataOp::UpsertNode(NodeInfo {
                id: t.name.clone(),
                address: t.member().rpc_addr,
            }))
            .await
            .unwrap()
            .unwrap();
            for d in t.disks.disks().unwrap() {
                log.submit(MetadataOp::UpsertDisk(DiskInfo {
                    id: d.disk,
                    node: t.name.clone(),
                    path: String::new(),
                    total: d.total,
                    free: d.free,
                }))
                .await
                .unwrap()
                .unwrap();
            }
        }
        // placement needs every node's disks, which it learns from heartbeats
        f.wait_until("every node hears every other", |f| {
            f.nodes.iter().all(|t| {
                f.nodes.iter().filter(|o| o.name != t.name).all(|o| {
                    t.cluster()
                        .heartbeats
                        .get(&o.name)
                        .is_some_and(|p| p.online)
                })
            })
        })
        .await;
        f
    }

    /// Starts node `i` from what it has on disk, as a restarted process does.
    async fn boot(&mut self, i: usize) {
        let t = &self.nodes[i];
        let local: Arc<dyn ChunkStore> = t.disks.clone();
        let transport: Arc<dyn Transport> = Arc::new(self.hub.join(t.name.clone(), local.clone()));
        let meta = Arc::new(MetaStore::open(&t.dir.join("meta.sqlite")).unwrap());
        let cluster = Cluster::start_on(
            ClusterNet {
                transport: transport.clone(),
                p2p: None,
                raft_id: t.raft_id,
                me: t.member(),
            },
            &t.dir,
            meta.clone(),
            local.clone(),
            settings(),
        )
        .await
        .expect("start the node");
        let cluster = Arc::new(cluster);
        let store = Arc::new(
            ClusterStore::new(
                t.name.clone(),
                local,
                transport,
                cluster.heartbeats.clone(),
                meta.clone(),
            )
            .with_membership(cluster.raft.clone()),
        );
        let policies = PolicySet::single(
            "t",
            StoragePolicy {
                k: 2,
                m: 1,
                stripe_size: STRIPE as u64,
            },
        );
        let fs = Arc::new(
            NodeFs::new(
                t.name.clone(),
                store,
                Arc::new(cluster.log()),
                meta,
                policies,
                Arc::new(SpreadPlacement),
            )
            .with_liveness(cluster.clone()),
        );
        // each node reports the terms in which it campaigned
        let (campaigns, name) = (self.campaigns.clone(), t.name.clone());
        let mut metrics = cluster.raft.metrics();
        tokio::spawn(async move {
            loop {
                let (term, candidate) = {
                    let m = metrics.borrow();
                    (m.current_term, m.state.is_candidate())
                };
                if candidate {
                    campaigns
                        .lock()
                        .unwrap()
                        .entry(term)
                        .or_default()
                        .insert(name.clone());
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        self.nodes[i].up = Some(Running { cluster, fs });
    }

    /// Crashes node `i`: it leaves the hub (calls to it fail, its handlers go) and its
    /// Raft and tasks stop; its SQLite files and disks stay for [`Fixture::boot`].
    async fn crash(&mut self, i: usize) {
        let name = self.nodes[i].name.clone();
        self.hub.leave(&name);
        if let Some(r) = self.nodes[i].up.take() {
            r.cluster.shutdown().await;
        }
    }

    /// Boots every node that is down.
    async fn restart_crashed(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].up.is_none() {
                self.boot(i).await;
            }
        }
    }

    fn names(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|t| t.name.clone()).collect()
    }

    fn up(&self) -> impl Iterator<Item = (usize, &TestNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, t)| t.up.is_some())
    }

    /// Polls `cond` until it holds, failing the test after [`PATIENCE`].
    async fn wait_until(&self, what: &str, cond: impl Fn(&Fixture) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until one of `among` leads and every node of `among` that is up knows it.
    async fn wait_for_master(&self, among: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen: BTreeSet<Option<String>> = self
                .up()
                .filter(|(_, t)| among.contains(&t.name))
                .map(|(_, t)| t.cluster().leader().map(|m| m.name))
                .collect();
            if let [Some(name)] = seen.iter().collect::<Vec<_>>()[..] {
                if among.iter().any(|n| n.0 == *name) {
                    return NodeId(name.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "no master known to all of {among:?} (they see {seen:?}): {}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Each node's Raft state, for a failure message.
    fn describe(&self) -> String {
        self.up()
            .map(|(_, t)| {
                let m = t.cluster().raft.metrics().borrow().clone();
                let c = t.cluster();
                format!(
                    "{}: {:?} term {} vote {} last log {:?} applied {:?} leader {:?} \
                     quorum ack {:?} ms ago, quiet {:?}, abstains {}, tasks running {}",
                    t.name,
                    m.state,
                    m.current_term,
                    m.vote,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.current_leader,
                    m.millis_since_quorum_ack,
                    c.contact.quiet(),
                    c.contact.abstains(m.last_applied.map(|l| l.index)),
                    c.tasks.iter().filter(|t| !t.is_finished()).count()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn index_of(&self, name: &NodeId) -> usize {
        self.nodes.iter().position(|t| t.name == *name).unwrap()
    }

    /// Writes `/name` through node `i`: `Ok` only when every stripe was acknowledged.
    async fn write(&self, i: usize, name: &str, data: &[u8]) -> Result<(), String> {
        let fs = self.nodes[i].fs();
        let a = fs
            .create(FileId::ROOT, name, CreateKind::File, 0o644, 0, 0)
            .await
            .map_err(|e| format!("create {name} on {}: {e}", self.nodes[i].name))?;
        for (s, piece) in data.chunks(STRIPE).enumerate() {
            fs.write_stripe(a.ino, s as u64, piece.to_vec())
                .await
                .map_err(|e| format!("stripe {s} of {name} on {}: {e}", self.nodes[i].name))?;
        }
        Ok(())
    }

    /// Reads `/name` whole through node `i`.
    async fn read(&self, i: usize, name: &str) -> Result<Vec<u8>, String> {
        let fs = self.nodes[i].fs();
        let a = fs
            .lookup(FileId::ROOT, name)
            .map_err(|e| format!("lookup {name} on {}: {e}", self.nodes[i].name))?;
        let mut out = Vec::new();
        for s in 0..a.size.div_ceil(STRIPE as u64) {
            let bytes = fs
                .read_stripe(a.ino, s)
                .await
                .map_err(|e| format!("stripe {s} of {name} on {}: {e}", self.nodes[i].name))?
                .unwrap_or_else(|| vec![0; STRIPE]);
            out.extend(bytes);
        }
        out.truncate(a.size as usize);
        Ok(out)
    }

    /// What a node's metadata says about the files of `/`: names, sizes and stripes.
    fn state_of(&self, i: usize) -> Vec<(String, u64, Vec<crate::meta::StripeRecord>)> {
        let meta = self.nodes[i].fs().meta();
        let mut out: Vec<_> = meta
            .readdir(FileId::ROOT)
            .unwrap()
            .into_iter()
            .map(|e| {
                let attr = meta.attr(e.ino).unwrap().unwrap();
                (e.name, attr.size, meta.stripes(e.ino).unwrap())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Waits until every node that is up has applied the same log and holds the same files.
    async fn wait_converged(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let applied: BTreeSet<u64> = self
                .up()
                .map(|(_, t)| t.fs().meta().last_applied().unwrap())
                .collect();
            let states: Vec<_> = self.up().map(|(i, _)| self.state_of(i)).collect();
            if applied.len() == 1 && states.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes' metadata did not converge: applied {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every chunk the metadata of node `i` references is on the disk it names.
    fn check_no_referenced_chunk_is_gone(&self, i: usize) {
        let fs = self.nodes[i].fs();
        let meta = fs.meta();
        for e in meta.readdir(FileId::ROOT).unwrap() {
            let attr = meta.attr(e.ino).unwrap().unwrap();
            let Some(layout) = attr.layout.clone() else {
                continue;
            };
            for s in meta.stripes(e.ino).unwrap() {
                for c in &s.chunks {
                    let addr = crate::engine::chunk_addr(e.ino, &layout, &s, c.index);
                    let holder = &self.nodes[self.index_of(&c.node)];
                    assert!(
                        holder.disks.check_chunk(&c.disk, &addr).unwrap().is_some(),
                        "{}: chunk {} of stripe {} is referenced but gone from {}/{}",
                        e.name,
                        c.index,
                        s.index,
                        c.node,
                        c.disk
                    );
                }
            }
        }
    }

    /// Every node that is up holds the same entry (the same log id) at each index it has
    /// committed. (openraft's default mode orders the masters of one term by node id, so
    /// one term may see two masters one after the other: what must hold is that they never
    /// commit different entries at one index.)
    fn check_committed_logs_agree(&self) {
        let logs: Vec<(NodeId, Vec<crate::raft::LogId>)> = self
            .up()
            .map(|(_, t)| {
                let log =
                    crate::raft::SqliteLogStore::open(&t.dir.join(crate::raft::LOG_FILE)).unwrap();
                (t.name.clone(), log.committed_log_ids().unwrap())
            })
            .collect();
        let mut at: BTreeMap<u64, (NodeId, crate::raft::LogId)> = BTreeMap::new();
        for (node, ids) in &logs {
            for id in ids {
                match at.get(&id.index) {
                    Some((other, seen)) => assert_eq!(
                        seen, id,
                        "index {} committed as {seen} on {other} and as {id} on {node}",
                        id.index
                    ),
                    None => {
                        at.insert(id.index, (node.clone(), *id));
                    }
                }
            }
        }
    }

    async fn stop(mut self) {
        for i in 0..self.nodes.len() {
            self.crash(i).await;
        }
    }
}

/// Patterned bytes that differ per file and per position.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|b| ((b as u64).wrapping_mul(31) ^ seed.wrapping_mul(0x9e37_79b9)) as u8)
        .collect()
}

mod scenes;
mod schedules;
