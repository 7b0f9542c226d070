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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_one_process_write_through_any_node_and_agree() {
    let f = Fixture::start(3).await;
    let data = pattern(1, 3 * STRIPE + 100);
    let master = f.wait_for_master(&f.names()).await;
    let follower = (f.index_of(&master) + 1) % 3;
    f.write(follower, "a", &data).await.unwrap();
    f.wait_converged().await;
    for i in 0..3 {
        assert_eq!(f.read(i, "a").await.unwrap(), data, "read on n{i}");
    }
    // chunks went to distinct nodes: a 2+1 stripe on three nodes touches each once; the
    // writing node's own chunk is a data chunk, the first, so a reader through it finds
    // that much on its own disks
    let (_, stripes) = f.nodes[0].fs().file_layout("/a").unwrap();
    for s in stripes.iter().filter(|s| s.inline.is_none()) {
        let nodes: BTreeSet<_> = s.chunks.iter().map(|c| c.node.clone()).collect();
        assert_eq!(nodes.len(), 3, "stripe {} on {nodes:?}", s.index);
        let first = s.chunks.iter().find(|c| c.index == 0).expect("chunk 0");
        assert_eq!(
            first.node, f.nodes[follower].name,
            "stripe {}: {:?}",
            s.index, s.chunks
        );
    }
    f.check_no_referenced_chunk_is_gone(0);
    f.check_committed_logs_agree();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_master_is_replaced_and_its_writes_are_not_acknowledged() {
    let f = Fixture::start(3).await;
    let old = f.wait_for_master(&f.names()).await;
    let o = f.index_of(&old);
    let rest: Vec<NodeId> = f.names().into_iter().filter(|n| *n != old).collect();
    f.hub.partition(&[vec![old.clone()], rest.clone()]);
    let new = f.wait_for_master(&rest).await;
    assert_ne!(new, old);
    // the majority side takes writes; the old master cannot have one acknowledged
    let data = pattern(2, 2 * STRIPE);
    f.write(f.index_of(&new), "majority", &data).await.unwrap();
    let lost = f.write(o, "minority", &pattern(3, STRIPE)).await;
    assert!(
        lost.is_err(),
        "a write on the cut-off master was acknowledged"
    );
    f.hub.heal();
    f.wait_converged().await;
    for i in 0..3 {
        assert_eq!(f.read(i, "majority").await.unwrap(), data, "read on n{i}");
    }
    f.check_no_referenced_chunk_is_gone(0);
    f.check_committed_logs_agree();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_follower_restarts_from_its_files_and_catches_up() {
    a_crashed_follower_catches_up(Duration::ZERO).await;
}

/// openraft's default allowed a snapshot chunk 200 ms: a node behind the compacted log on a
/// slow or busy network (a snapshot chunk of a large database took longer) never caught up,
/// and the master retried for ever. Found by tests/soak.sh after a 4-minute outage. (Only
/// snapshot chunks are delayed: the fixture's appends must answer within its 100 ms
/// heartbeat.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_by_snapshot_when_each_chunk_takes_300_ms() {
    a_crashed_follower_catches_up(Duration::from_millis(300)).await;
}

async fn a_crashed_follower_catches_up(delay: Duration) {
    let mut f = Fixture::start(3).await;
    let master = f.wait_for_master(&f.names()).await;
    let victim = (f.index_of(&master) + 1) % 3;
    let before = pattern(4, STRIPE + 1);
    f.write(victim, "before", &before).await.unwrap();
    f.crash(victim).await;
    // more than a snapshot's worth of log while it is down: it catches up by snapshot
    let m = f.index_of(&master);
    for n in 0..(settings().snapshot_after / 4 + 2) {
        let d = pattern(100 + n, 100);
        let _ = f.nodes[m]
            .fs()
            .create(
                FileId::ROOT,
                &format!("s{n}"),
                CreateKind::File,
                0o644,
                0,
                0,
            )
            .await
            .unwrap();
        f.write(m, &format!("w{n}"), &d).await.unwrap();
    }
    f.hub.set_delay_for(network::SNAPSHOT, delay);
    f.boot(victim).await;
    f.wait_converged().await;
    f.hub.heal();
    assert_eq!(f.read(victim, "before").await.unwrap(), before);
    assert_eq!(f.read(victim, "w0").await.unwrap(), pattern(100, 100));
    f.check_committed_logs_agree();
    f.stop().await;
}

/// A node that has just started knows the cluster's members from its log before it hears
/// their heartbeats, which bring their disks. It used to place a stripe on the disks it
/// knew of at that moment, its own two, and failed the write as out of space (found in CI,
/// on a node just added). Now placement waits a few heartbeat intervals for members not
/// heard from yet. Heartbeats are held back 150 ms here (their timeout is 200), so the restarted node's first
/// write comes before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_waits_for_its_peers_disks_before_placing_a_stripe() {
    let mut f = Fixture::start(3).await;
    let master = f.wait_for_master(&f.names()).await;
    let restarted = (f.index_of(&master) + 1) % 3;
    f.crash(restarted).await;
    f.hub.set_delay_for(HEARTBEAT, Duration::from_millis(150));
    f.boot(restarted).await;
    let data = pattern(9, 2 * STRIPE);
    f.write(restarted, "first", &data).await.unwrap();
    f.hub.heal();
    f.wait_converged().await;
    let (_, stripes) = f.nodes[restarted].fs().file_layout("/first").unwrap();
    for s in &stripes {
        let nodes: BTreeSet<_> = s.chunks.iter().map(|c| c.node.clone()).collect();
        assert_eq!(nodes.len(), 3, "stripe {} on {nodes:?}", s.index);
    }
    assert_eq!(f.read(f.index_of(&master), "first").await.unwrap(), data);
    f.stop().await;
}

/// A small read whose bytes lie in one data chunk on another node is a future on the
/// runtime (no blocking thread waits for the bytes); when that node does not answer within
/// the read timeout, the read still returns the right bytes, decoded from the other chunks,
/// and the node is read last from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_read_of_a_remote_chunk_waits_on_the_runtime_and_survives_a_silent_holder() {
    let f = Fixture::start(3).await;
    let data = pattern(11, 2 * STRIPE);
    f.write(0, "r", &data).await.unwrap();
    f.wait_converged().await;
    let fs = f.nodes[0].fs();
    let a = fs.lookup(FileId::ROOT, "r").unwrap();
    let (_, stripes) = fs.file_layout("/r").unwrap();
    let layout = a.layout.clone().expect("a file has a layout");
    let s = &stripes[1];
    // data chunk 0 is the writer's own; chunk 1 is on another node
    let local = s.chunks.iter().find(|c| c.index == 0).unwrap();
    let remote = s.chunks.iter().find(|c| c.index == 1).unwrap();
    assert_eq!(local.node, f.nodes[0].name);
    assert_ne!(remote.node, f.nodes[0].name);
    let shard = (STRIPE / 2) as u64;
    let (offset, len) = (shard + 100, 4096u64);
    let store = fs.store().as_ref();
    assert!(
        crate::engine::remote_stripe_range(store, a.ino, &layout, s, offset, len).is_some(),
        "a range in one remote chunk is read without a blocking thread"
    );
    assert!(
        crate::engine::remote_stripe_range(store, a.ino, &layout, s, 100, len).is_none(),
        "a range in a local chunk is read from the disk"
    );
    assert!(
        crate::engine::remote_stripe_range(store, a.ino, &layout, s, shard - 10, 20).is_none(),
        "a range across two chunks is read chunk by chunk"
    );
    let want = |o: u64, l: u64| {
        let at = STRIPE + o as usize;
        data[at..at + l as usize].to_vec()
    };
    let got = fs.read_range(a.ino, 1, offset, len).await.unwrap().unwrap();
    assert_eq!(got, want(offset, len));
    assert!(store.is_responsive(&remote.disk));
    // the holder answers range reads only after the timeout: the read decodes around it
    f.hub.set_delay_for(
        crate::net::CHUNK_RANGE,
        store::READ_TIMEOUT + Duration::from_secs(1),
    );
    let got = fs.read_range(a.ino, 1, offset, len).await.unwrap().unwrap();
    assert_eq!(got, want(offset, len));
    assert!(
        !store.is_responsive(&remote.disk),
        "a node that did not answer in time is read last"
    );
    f.hub.heal();
    f.stop().await;
}

/// A follower that missed writes and a master that dies: the follower's pre-vote is refused
/// by the up-to-date node (its log is behind), so it never campaigns, and the up-to-date node
/// is elected. Before the pre-vote compared logs, the lagging node campaigned at every turn
/// and each of its same-term votes made the other candidate give up: no master for 40 s.
///
/// Which node's timeout runs out first is chance, so the scene is played three times: without
/// the fix, the lagging node campaigns in at least one of them nearly always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_is_behind_does_not_campaign_and_the_up_to_date_one_is_elected() {
    for _ in 0..3 {
        a_lagging_node_and_a_dead_master().await;
    }
}

async fn a_lagging_node_and_a_dead_master() {
    let mut f = Fixture::start(3).await;
    let master = f.wait_for_master(&f.names()).await;
    let m = f.index_of(&master);
    // the highest raft id lags: openraft prefers it in a same-term tie
    let lag = (0..3).filter(|i| *i != m).max().unwrap();
    let ahead = 3 - m - lag;
    f.hub.set_unreachable(&f.nodes[lag].name, true);
    // small files, kept in the metadata: what they test is the log, not where chunks go
    // (with one node cut off, a 2+1 stripe would put two chunks on the master, which dies)
    for n in 0..3 {
        f.write(m, &format!("missed{n}"), &pattern(n, 100))
            .await
            .unwrap();
    }
    let started_at = Instant::now();
    f.crash(m).await;
    f.hub.set_unreachable(&f.nodes[lag].name, false);
    let survivors = vec![f.nodes[lag].name.clone(), f.nodes[ahead].name.clone()];
    let term_before = f.nodes[ahead]
        .cluster()
        .raft
        .metrics()
        .borrow()
        .current_term;
    let new = f.wait_for_master(&survivors).await;
    assert_eq!(
        new, f.nodes[ahead].name,
        "the node with the whole log leads"
    );
    eprintln!("a master after {:.1} s", started_at.elapsed().as_secs_f64());
    let lagging_campaigns: Vec<u64> = f
        .campaigns
        .lock()
        .unwrap()
        .iter()
        .filter(|(term, who)| **term > term_before && who.contains(&f.nodes[lag].name))
        .map(|(term, _)| *term)
        .collect();
    assert!(
        lagging_campaigns.is_empty(),
        "the lagging node campaigned in terms {lagging_campaigns:?}"
    );
    // the lagging node catches up from the new master
    f.wait_converged().await;
    assert_eq!(f.read(lag, "missed2").await.unwrap(), pattern(2, 100));
    f.check_committed_logs_agree();
    f.stop().await;
}

/// The ChunkStore conformance suite, run on a node's [`ClusterStore`]: its disks are its
/// own and the other nodes' (those calls cross the hub).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_store_conforms_to_the_chunk_store_suite() {
    let f = Fixture::start(3).await;
    let store = f.nodes[0].fs().store().clone();
    let holders: Vec<(DiskId, Arc<MemoryChunkStore>)> = f
        .nodes
        .iter()
        .flat_map(|t| {
            t.disks
                .disks()
                .unwrap()
                .into_iter()
                .map(|d| (d.disk, t.disks.clone()))
        })
        .collect();
    // in the order the store lists them, which the suite checks
    let disks: Vec<DiskId> = store.disks().unwrap().into_iter().map(|d| d.disk).collect();
    assert_eq!(disks.len(), 6, "{disks:?}");
    assert!(
        !holders[0]
            .1
            .disks()
            .unwrap()
            .iter()
            .any(|d| d.disk == disks[2]),
        "the suite's third disk is remote"
    );
    tokio::task::spawn_blocking(move || {
        let corrupt = |d: &DiskId, a: &crate::store::ChunkAddr| {
            let (_, s) = holders.iter().find(|(x, _)| x == d).unwrap();
            assert!(s.corrupt(d, a, 200));
        };
        crate::store::conformance::run(&crate::store::conformance::Subject {
            store: store.as_ref(),
            disks,
            corrupt: &corrupt,
        });
    })
    .await
    .unwrap();
    f.stop().await;
}

/// Randomized fault schedules: partitions, cut links, lost, delayed and duplicated
/// messages, crashes and restarts, with writes through every node in between. After the
/// faults end, every acknowledged write reads back exact on every node, the metadata of
/// every node is the same, no referenced chunk is gone, and the nodes committed the same
/// entry at every index.
///
/// `WORMFS_FAULT_SCHEDULES` sets how many schedules run (default 200, several at a time),
/// `WORMFS_FAULT_SEED` replays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_fault_schedules_keep_the_invariants() {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("WORMFS_FAULT_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("WORMFS_FAULT_SCHEDULES").unwrap_or(200))
            .map(|n| 0x5eed_0000 + n)
            .collect(),
    };
    let started = Instant::now();
    let at_once = Arc::new(tokio::sync::Semaphore::new(24));
    let mut runs = Vec::new();
    for seed in seeds.iter().copied() {
        let permit = at_once.clone().acquire_owned().await.unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        let run = tokio::spawn(async move {
            let acked = run_schedule(seed, 6, l).await;
            drop(permit);
            acked
        });
        runs.push((seed, log, run));
    }
    let mut acked = 0;
    let replay = seeds.len() == 1;
    for (seed, log, run) in runs {
        match run.await {
            Ok(n) if replay => {
                acked += n;
                for line in log.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
            }
            Ok(n) => acked += n,
            Err(e) => {
                for line in log.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
                panic!(
                    "the fault schedule with seed {seed} failed (replay it with \
                     WORMFS_FAULT_SEED={seed}): {e}"
                );
            }
        }
    }
    eprintln!(
        "{} fault schedules in {:.1} s: {acked} writes acknowledged, all read back",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A small deterministic generator (xorshift64*) for the schedule.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// How long a write in a schedule may take before the client gives up on it (it then
/// counts as not acknowledged, whatever became of it).
const SCHEDULE_WRITE_PATIENCE: Duration = Duration::from_millis(1500);

/// Runs one schedule of `steps` faults from `seed`, logging to `log`; returns how many
/// writes were acknowledged (and read back).
async fn run_schedule(seed: u64, steps: usize, log: Arc<Mutex<Vec<String>>>) -> usize {
    let say = |line: String| log.lock().unwrap().push(line);
    let started = Instant::now();
    let mut f = Fixture::start(3).await;
    say(format!(
        "started at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    f.hub.seed(seed);
    let mut dice = Dice(seed);
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let names = f.names();
    for step in 0..steps {
        let who = dice.below(3) as usize;
        let other = (who + 1 + dice.below(2) as usize) % 3;
        let what = match dice.below(8) {
            0 => {
                f.hub.partition(&[
                    vec![names[who].clone()],
                    names
                        .iter()
                        .filter(|n| **n != names[who])
                        .cloned()
                        .collect(),
                ]);
                format!("partition {} from the others", names[who])
            }
            1 => {
                f.hub.cut(&names[who], &names[other]);
                f.hub.cut(&names[other], &names[who]);
                format!("cut the link {} - {}", names[who], names[other])
            }
            2 => {
                f.hub.cut(&names[who], &names[other]);
                format!("cut the link {} -> {} one way", names[who], names[other])
            }
            3 => {
                f.hub.set_loss(50);
                "lose 5% of messages".to_owned()
            }
            4 => {
                f.hub.set_delay(Duration::from_millis(1 + dice.below(20)));
                "delay every message".to_owned()
            }
            5 => {
                f.hub.set_duplicates(200, "");
                "deliver 20% of messages twice".to_owned()
            }
            6 if f.up().count() == 3 => {
                f.crash(who).await;
                format!("crash {}", names[who])
            }
            _ => {
                f.hub.heal();
                f.restart_crashed().await;
                "heal, restart what crashed".to_owned()
            }
        };
        say(format!(
            "seed {seed} step {step} at {:.1} s: {what}",
            started.elapsed().as_secs_f64()
        ));
        // a write through each node that is up, at once; some fail while the faults last
        let writes: Vec<_> = f
            .up()
            .map(|(i, _)| {
                let name = format!("f{step}-{i}");
                let len = STRIPE + 1 + dice.below(STRIPE as u64) as usize;
                let data = pattern(seed ^ (step as u64 * 8 + i as u64), len);
                (i, name, data)
            })
            .collect();
        let outcomes = futures::future::join_all(writes.iter().map(|(i, name, data)| {
            tokio::time::timeout(SCHEDULE_WRITE_PATIENCE, f.write(*i, name, data))
        }))
        .await;
        for ((_, name, data), outcome) in writes.into_iter().zip(outcomes) {
            match outcome {
                Ok(Ok(())) => acked.push((name, data)),
                Ok(Err(e)) => say(format!("  not acknowledged: {e}")),
                Err(_) => say(format!(
                    "  {name} not acknowledged within {SCHEDULE_WRITE_PATIENCE:?}"
                )),
            }
        }
    }
    f.hub.heal();
    f.restart_crashed().await;
    say(format!(
        "healed at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    f.wait_for_master(&names).await;
    say(format!(
        "a master at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // a write after the faults: the cluster works again
    let last = pattern(seed, STRIPE + 7);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match f.write(0, "after", &last).await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeds after the faults: {e}"
                );
                // a create that failed half way left the name taken
                let _ = f.nodes[0].fs().unlink(FileId::ROOT, "after").await;
            }
        }
    }
    acked.push(("after".to_owned(), last));
    f.wait_converged().await;
    for (name, data) in &acked {
        for i in 0..3 {
            let got = f.read(i, name).await.unwrap();
            assert!(
                got == *data,
                "acknowledged {name} reads back different on n{i}"
            );
        }
    }
    for i in 0..3 {
        f.check_no_referenced_chunk_is_gone(i);
    }
    f.check_committed_logs_agree();
    say(format!(
        "seed {seed}: {} writes acknowledged, all read back",
        acked.len()
    ));
    f.stop().await;
    acked.len()
}
