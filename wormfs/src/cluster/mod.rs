//! The cluster (feature `cluster`): the metadata log replicated by openraft over the libp2p
//! [`P2pTransport`], heartbeats, and the [`ClusterStore`] that spreads chunks over every
//! node's disks.
//!
//! Roles: every storage node is a Raft voter and applies the log to its own SQLite copy, so
//! any node answers metadata reads and coordinates stripe reads and writes. The Raft leader
//! is the *master*: every metadata change is ordered by it and commits only on a majority.
//! [`RaftLog`] is the [`MetadataLog`] a node uses: on the master it writes through Raft,
//! elsewhere it forwards the op to the master.

mod election;
mod heartbeat;
mod locks;
mod network;
mod store;
#[cfg(test)]
mod tests;

pub use election::{Contact, ElectionTiming, PreVote, PreVoteAnswer, PREVOTE};
pub use heartbeat::{now_ms, Beat, DiskBeat, Heartbeats, PeerBeat, HEARTBEAT};
pub use locks::{ClusterLocks, LOCKS};
pub use network::{serve_json, serve_raft, RaftNet, RaftPeer};
pub use store::ClusterStore;

use crate::ids::NodeId;
use crate::meta::{LogError, MetaStore, MetadataLog, MetadataOp, OpReply};
use crate::net::p2p::{
    load_or_create_identity, P2pConfig, P2pError, PeerBook, PEER_BOOK_FILE_NAME,
};
use crate::net::{P2pTransport, Transport};
use crate::raft::{open_storage, Member, Raft, RaftNodeId};
use crate::store::ChunkStore;
use async_trait::async_trait;
use libp2p::PeerId;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Protocol on which followers forward metadata ops to the master.
pub const SUBMIT: &str = "meta/submit";
/// Protocol on which membership changes are forwarded to the master.
pub const ADMIN: &str = "cluster/admin";

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// The libp2p listen address.
    pub p2p_listen: SocketAddr,
    /// The peers' libp2p addresses and pinned IDs (`None`: trust the first seen).
    pub peers: Vec<(SocketAddr, Option<PeerId>)>,
    /// Forms the cluster from this node and every configured peer on first start.
    pub bootstrap: bool,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats before a peer shows offline.
    pub offline_after: u32,
    /// Raft's election timeout (the low end; the high end is 1.5×).
    pub election_timeout: Duration,
    /// Log entries since the last snapshot that trigger a new snapshot (and compaction).
    pub snapshot_after: u64,
    /// Log entries kept after a snapshot, for followers slightly behind.
    pub keep_log_entries: u64,
}

/// Why the cluster part of a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The network.
    #[error(transparent)]
    P2p(#[from] P2pError),
    /// Raft storage.
    #[error("raft storage: {0}")]
    Storage(String),
    /// Raft itself.
    #[error("raft: {0}")]
    Raft(String),
}

/// A node's Raft id, derived from its peer ID (FNV-1a of its bytes), so it needs no
/// configuration and cannot collide in practice.
pub fn raft_id(peer: &PeerId) -> RaftNodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer.to_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// How a node reaches the others: the [`Transport`] its cluster runs on, and who it is
/// there. [`Cluster::start`] builds it over libp2p; a test builds it over an
/// [`crate::net::InProcessHub`].
#[derive(Clone)]
pub struct ClusterNet {
    /// Calls and serving.
    pub transport: Arc<dyn Transport>,
    /// The libp2p transport under `transport`, when it is one: its peer book is kept in step
    /// with the membership, `node add` dials through it, and bootstrap trusts only its peers.
    pub p2p: Option<P2pTransport>,
    /// This node's Raft id.
    pub raft_id: RaftNodeId,
    /// This node's card in the membership.
    pub me: Member,
}

/// The running cluster part of a node.
pub struct Cluster {
    /// This node's name.
    pub node: NodeId,
    /// The Raft node.
    pub raft: Raft,
    /// The network.
    pub transport: Arc<dyn Transport>,
    /// The libp2p transport under [`Cluster::transport`], when the node runs on libp2p.
    pub p2p: Option<P2pTransport>,
    /// This node's card in the membership.
    pub me: Member,
    /// This node's Raft id.
    pub raft_id: RaftNodeId,
    /// Heartbeats received.
    pub heartbeats: Arc<Heartbeats>,
    /// The local metadata copy.
    pub meta: Arc<MetaStore>,
    local: Arc<dyn ChunkStore>,
    /// Read by the in-process tests' failure reports.
    #[cfg_attr(not(test), allow(dead_code))]
    contact: Arc<Contact>,
    admin: Admin,
    settings: ClusterSettings,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Serialize, Deserialize)]
enum SubmitAnswer {
    /// The reply and the op's log index.
    Done(OpReply, u64),
    NotLeader,
    Unavailable(String),
}

impl Cluster {
    /// Starts the libp2p network, Raft and heartbeats. `local` is this node's own disks,
    /// `rpc_addr` its gRPC address.
    pub async fn start(
        node: NodeId,
        rpc_addr: String,
        data_dir: &Path,
        meta: Arc<MetaStore>,
        local: Arc<dyn ChunkStore>,
        settings: ClusterSettings,
    ) -> Result<Cluster, ClusterError> {
        let keypair = load_or_create_identity(data_dir)?;
        let book = Arc::new(PeerBook::open(&data_dir.join(PEER_BOOK_FILE_NAME))?);
        for (addr, id) in &settings.peers {
            book.add(*addr, *id)?;
        }
        let transport = P2pTransport::start(P2pConfig {
            node: node.clone(),
            keypair,
            listen: settings.p2p_listen,
            book,
            store: local.clone(),
            redial_interval: (settings.heartbeat_interval / 2).max(Duration::from_millis(50)),
            // a forwarded write may wait as long as the master does
            request_timeout: write_timeout(&settings) + Duration::from_secs(2),
            chunk_timeout: (settings.election_timeout * 2).max(Duration::from_secs(5)),
        })
        .await?;
        let net = ClusterNet {
            transport: Arc::new(transport.clone()),
            raft_id: raft_id(&transport.peer_id()),
            me: Member {
                name: node.0.clone(),
                p2p_addr: transport.listen_addr().to_string(),
                rpc_addr,
                peer_id: transport.peer_id().to_string(),
            },
            p2p: Some(transport),
        };
        Cluster::start_on(net, data_dir, meta, local, settings).await
    }

    /// Starts Raft and heartbeats on `net`, with Raft's storage in `data_dir` (the node's
    /// name is `net.me.name`).
    pub async fn start_on(
        net: ClusterNet,
        data_dir: &Path,
        meta: Arc<MetaStore>,
        local: Arc<dyn ChunkStore>,
        settings: ClusterSettings,
    ) -> Result<Cluster, ClusterError> {
        let ClusterNet {
            transport,
            p2p,
            raft_id,
            me,
        } = net;
        let node = NodeId(me.name.clone());
        let (log_store, state_machine) = open_storage(data_dir, meta.clone())
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
        let lost_log = log_store
            .has_vote_but_no_log()
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
        let et = settings.election_timeout.as_millis() as u64;
        let timing = ElectionTiming::new(settings.election_timeout);
        let (election_timeout_min, election_timeout_max) = timing.openraft_timeouts();
        let config = openraft::Config {
            cluster_name: "wormfs".into(),
            heartbeat_interval: (et / 5).max(20).min(election_timeout_min - 1),
            election_timeout_min,
            election_timeout_max,
            // elections are started by `election::drive_elections`, after a pre-vote
            enable_elect: false,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_after),
            max_in_snapshot_log_to_keep: settings.keep_log_entries,
            purge_batch_size: (settings.snapshot_after / 4).clamp(1, 256),
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| ClusterError::Raft(e.to_string()))?,
        );
        let log_reader = log_store.clone();
        let raft = Raft::new(
            raft_id,
            config,
            RaftNet::new(transport.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let contact = Arc::new(Contact::default());
        if lost_log {
            // a vote but no log: its log was lost or forgotten (see `election`)
            contact.abstain();
        }
        serve_raft(transport.as_ref(), raft.clone(), contact.clone());
        election::serve_prevote(
            transport.as_ref(),
            raft.clone(),
            log_reader.clone(),
            contact.clone(),
            timing,
        );

        let heartbeats = Arc::new(Heartbeats::new(
            settings.heartbeat_interval,
            settings.offline_after,
        ));
        let hb = heartbeats.clone();
        serve_json(
            transport.as_ref(),
            HEARTBEAT,
            "heartbeat",
            move |beat: Beat| {
                hb.record(beat);
                async {}
            },
        );
        let r = raft.clone();
        let write_timeout = write_timeout(&settings);
        serve_json(
            transport.as_ref(),
            SUBMIT,
            "metadata op",
            move |op: MetadataOp| {
                let r = r.clone();
                async move {
                    match tokio::time::timeout(write_timeout, r.client_write(op)).await {
                        Ok(Ok(resp)) => SubmitAnswer::Done(resp.data, resp.log_id.index),
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                            SubmitAnswer::NotLeader
                        }
                        Ok(Err(e)) => SubmitAnswer::Unavailable(e.to_string()),
                        Err(_) => SubmitAnswer::Unavailable(format!(
                            "no majority confirmed the change within {write_timeout:?}"
                        )),
                    }
                }
            },
        );
        let admin = Admin {
            raft: raft.clone(),
            transport: transport.clone(),
            p2p: p2p.clone(),
            heartbeats: heartbeats.clone(),
            raft_id,
            meta: meta.clone(),
        };
        let a = admin.clone();
        serve_json(
            transport.as_ref(),
            ADMIN,
            "membership request",
            move |req: AdminRequest| {
                let a = a.clone();
                async move { a.apply(req).await }
            },
        );

        let mut cluster = Cluster {
            node,
            raft,
            transport,
            p2p,
            me,
            raft_id,
            heartbeats,
            meta,
            admin,
            contact: contact.clone(),
            local: local.clone(),
            settings,
            tasks: Vec::new(),
        };
        cluster.tasks.push(tokio::spawn(send_heartbeats(
            cluster.transport.clone(),
            cluster.me.clone(),
            raft_id,
            local,
            cluster.settings.heartbeat_interval,
            cluster.heartbeats.clone(),
            cluster.raft.metrics(),
        )));
        cluster.tasks.push(tokio::spawn(election::drive_elections(
            cluster.raft.clone(),
            log_reader,
            raft_id,
            cluster.transport.clone(),
            contact,
            timing,
        )));
        if let Some(p2p) = &cluster.p2p {
            cluster
                .tasks
                .push(tokio::spawn(pin_members(cluster.raft.clone(), p2p.clone())));
        }
        if cluster.settings.bootstrap {
            cluster.tasks.push(tokio::spawn(bootstrap(
                cluster.raft.clone(),
                cluster.p2p.clone(),
                cluster.heartbeats.clone(),
                cluster.me.clone(),
                raft_id,
                cluster.settings.peers.len(),
            )));
        }
        Ok(cluster)
    }

    /// The [`MetadataLog`] of this node.
    pub fn log(&self) -> RaftLog {
        RaftLog {
            raft: self.raft.clone(),
            transport: self.transport.clone(),
            meta: self.meta.clone(),
            node: self.node.clone(),
            write_timeout: write_timeout(&self.settings),
        }
    }

    /// The current master's name, if one is known.
    pub fn leader(&self) -> Option<Member> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        m.membership_config.membership().get_node(&id).cloned()
    }

    /// Every member of the metadata group.
    pub fn members(&self) -> Vec<(RaftNodeId, Member)> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// Waits until a master is known, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<Member> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the background tasks, Raft and the network.
    pub async fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.raft.shutdown().await;
        if let Some(p2p) = &self.p2p {
            p2p.shutdown();
        }
    }
}

fn write_timeout(s: &ClusterSettings) -> Duration {
    s.election_timeout * 3 + Duration::from_secs(5)
}

async fn send_heartbeats(
    transport: Arc<dyn Transport>,
    me: Member,
    raft_id: RaftNodeId,
    local: Arc<dyn ChunkStore>,
    interval: Duration,
    heard: Arc<Heartbeats>,
    term: tokio::sync::watch::Receiver<openraft::RaftMetrics<RaftNodeId, Member>>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut online: HashMap<NodeId, bool> = HashMap::new();
    loop {
        tick.tick().await;
        log_liveness(&heard, &mut online);
        let store = local.clone();
        let disks = match tokio::task::spawn_blocking(move || store.disks()).await {
            Ok(Ok(d)) => d.iter().map(DiskBeat::from).collect(),
            Ok(Err(e)) => {
                tracing::warn!("cannot inspect the disks for the heartbeat: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let beat = Beat {
            node: NodeId(me.name.clone()),
            rpc_addr: me.rpc_addr.clone(),
            p2p_addr: me.p2p_addr.clone(),
            peer_id: me.peer_id.clone(),
            raft_id,
            disks,
            sent_ms: now_ms(),
            term: term.borrow().current_term,
        };
        let Ok(body) = serde_json::to_vec(&beat) else {
            continue;
        };
        for node in transport.connected_peers() {
            let t = transport.clone();
            let body = body.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    tokio::time::timeout(interval * 2, t.request(&node, HEARTBEAT, body)).await
                {
                    tracing::debug!(%node, "heartbeat not answered: {e}");
                }
            });
        }
    }
}

/// Logs each peer's change between online and offline, once: the one line an operator
/// needs when a node goes away (Raft's own complaints about it are not logged by default).
fn log_liveness(heard: &Heartbeats, online: &mut HashMap<NodeId, bool>) {
    for p in heard.peers() {
        let was = online.insert(p.beat.node.clone(), p.online);
        match (was, p.online) {
            (Some(true), false) => tracing::warn!(
                node = %p.beat.node,
                "node {} is offline: no heartbeat for {:.1} s",
                p.beat.node,
                p.age.as_secs_f64()
            ),
            (Some(false), true) => {
                tracing::info!(node = %p.beat.node, "node {} is back online", p.beat.node)
            }
            _ => {}
        }
    }
}

/// Keeps the peer book in step with the membership: every member is pinned to the peer ID
/// the membership records, so members reach each other even when not configured as peers.
async fn pin_members(raft: Raft, transport: P2pTransport) {
    let mut metrics = raft.metrics();
    loop {
        let members: Vec<Member> = metrics
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.clone())
            .collect();
        for m in members {
            if m.peer_id == transport.peer_id().to_string() {
                continue;
            }
            let (Ok(addr), Ok(id)) = (
                m.p2p_addr.parse::<SocketAddr>(),
                m.peer_id.parse::<PeerId>(),
            ) else {
                continue;
            };
            let known = transport.book().get(addr).ok().flatten();
            if known.and_then(|k| k.peer_id) != Some(id) {
                if let Err(e) = transport.add_peer(addr, Some(id)) {
                    tracing::warn!(member = %m.name, "cannot pin the member: {e}");
                }
            }
        }
        if metrics.changed().await.is_err() {
            break;
        }
    }
}

/// Forms the cluster on first start: waits for a heartbeat from every configured peer,
/// then initializes Raft with all of them as voters. Over libp2p (`p2p`), only peers in
/// the peer book count.
async fn bootstrap(
    raft: Raft,
    p2p: Option<P2pTransport>,
    heartbeats: Arc<Heartbeats>,
    me: Member,
    my_id: RaftNodeId,
    peers: usize,
) {
    match raft.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::error!("cannot tell whether the cluster was formed: {e}");
            return;
        }
    }
    let mut last_log = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        let book: Option<Vec<String>> = p2p.as_ref().map(|t| {
            t.book()
                .entries()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e.peer_id.map(|p| p.to_string()))
                .collect()
        });
        let beats: Vec<Beat> = heartbeats
            .peers()
            .into_iter()
            .filter(|p| p.online && book.as_ref().is_none_or(|b| b.contains(&p.beat.peer_id)))
            .map(|p| p.beat)
            .collect();
        if let Some(formed) = beats.iter().find(|b| b.term > 0) {
            // this node's Raft storage is new (lost, or wiped) but its peers already form
            // a cluster: forming another would split it; its master will contact this node
            tracing::warn!(
                peer = %formed.node,
                "not forming the cluster: {} already belongs to one (term {}); waiting to \
                 be contacted by its master",
                formed.node,
                formed.term
            );
            return;
        }
        if beats.len() >= peers {
            let mut members = BTreeMap::new();
            members.insert(my_id, me.clone());
            for b in beats {
                members.insert(
                    b.raft_id,
                    Member {
                        name: b.node.0.clone(),
                        p2p_addr: b.p2p_addr.clone(),
                        rpc_addr: b.rpc_addr.clone(),
                        peer_id: b.peer_id.clone(),
                    },
                );
            }
            let names: Vec<String> = members.values().map(|m| m.name.clone()).collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(?names, "formed the cluster"),
                Err(e) => tracing::info!("cluster already formed: {e}"),
            }
            return;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            tracing::info!(
                heard = beats.len(),
                expected = peers,
                "waiting to hear from every configured peer before forming the cluster"
            );
            last_log = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The [`MetadataLog`] over Raft: writes through Raft on the master, forwards to the master
/// elsewhere, and reads nothing itself (reads go to the local [`MetaStore`]).
#[derive(Clone)]
pub struct RaftLog {
    raft: Raft,
    transport: Arc<dyn Transport>,
    meta: Arc<MetaStore>,
    node: NodeId,
    write_timeout: Duration,
}

#[async_trait]
impl MetadataLog for RaftLog {
    async fn submit(&self, op: MetadataOp) -> Result<OpReply, LogError> {
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        let unavailable = |why: String| LogError::Unavailable(why);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(unavailable(format!(
                    "no master confirmed the change within {:?}",
                    self.write_timeout
                )));
            }
            let leader = match tokio::time::timeout(left, self.raft.client_write(op.clone())).await
            {
                Ok(Ok(resp)) => return Ok(resp.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_node,
                Ok(Err(RaftError::Fatal(e))) => return Err(LogError::Store(e.to_string())),
                Ok(Err(e)) => return Err(unavailable(e.to_string())),
                Err(_) => {
                    return Err(unavailable(format!(
                        "no majority confirmed the change within {:?}",
                        self.write_timeout
                    )))
                }
            };
            let Some(leader) = leader.filter(|l| l.name != self.node.0) else {
                // an election is running: wait for its outcome
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let master = NodeId(leader.name.clone());
            if !self.transport.is_connected(&master) {
                // nothing was sent: safe to wait and try again
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let body = serde_json::to_vec(&op).map_err(|e| unavailable(e.to_string()))?;
            let answer = self
                .transport
                .request(&master, SUBMIT, body)
                .await
                .map_err(|e| {
                    unavailable(format!(
                        "the master {master} did not confirm the change (it may or may not be applied): {e}"
                    ))
                })?;
            match serde_json::from_slice::<SubmitAnswer>(&answer) {
                Ok(SubmitAnswer::Done(reply, index)) => {
                    self.wait_applied(index).await;
                    return Ok(reply);
                }
                Ok(SubmitAnswer::NotLeader) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(SubmitAnswer::Unavailable(why)) => return Err(unavailable(why)),
                Err(e) => return Err(unavailable(format!("malformed answer from {master}: {e}"))),
            }
        }
    }

    fn last_applied(&self) -> Result<u64, LogError> {
        self.meta
            .last_applied()
            .map_err(|e| LogError::Store(e.to_string()))
    }
}

impl RaftLog {
    /// After the master applied a forwarded op, waits (briefly) until this node applied it
    /// too, so the caller reads its own write from the local copy.
    async fn wait_applied(&self, index: u64) {
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(self.write_timeout, async {
            loop {
                if metrics.borrow().last_applied.map_or(0, |l| l.index) >= index {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

impl crate::heal::ClusterLiveness for Cluster {
    fn is_master(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.raft_id)
    }

    fn node_online(&self, node: &NodeId) -> bool {
        *node == self.node || self.heartbeats.get(node).is_some_and(|p| p.online)
    }

    fn members(&self) -> Vec<NodeId> {
        Cluster::members(self)
            .into_iter()
            .map(|(_, m)| NodeId(m.name))
            .collect()
    }
}

impl crate::rpc::server::ClusterInfo for Cluster {
    fn members(&self) -> Vec<crate::rpc::server::MemberRow> {
        use crate::rpc::server::MemberRow;
        let leader = self.leader().map(|l| l.name);
        let role = |name: &str| {
            if leader.as_deref() == Some(name) {
                "master"
            } else {
                "follower"
            }
        };
        let mut rows = Vec::new();
        for (_, m) in self.members() {
            if m.name == self.node.0 {
                rows.push(MemberRow {
                    id: m.name.clone(),
                    address: m.rpc_addr.clone(),
                    state: "online".into(),
                    role: role(&m.name).into(),
                    last_heartbeat: crate::meta::Timestamp::now().0,
                    disks: self.local.disks().unwrap_or_default(),
                });
                continue;
            }
            let row = match self.heartbeats.get(&NodeId(m.name.clone())) {
                Some(p) => MemberRow {
                    id: m.name.clone(),
                    address: m.rpc_addr.clone(),
                    state: if p.online { "online" } else { "offline" }.into(),
                    role: role(&m.name).into(),
                    last_heartbeat: (p.received_ms as i64).saturating_mul(1_000_000),
                    disks: p
                        .beat
                        .disks
                        .iter()
                        .map(|d| crate::store::DiskStatus {
                            disk: d.id.clone(),
                            path: None,
                            total: d.total,
                            free: d.free,
                            healthy: d.healthy,
                        })
                        .collect(),
                },
                None => MemberRow {
                    id: m.name.clone(),
                    address: m.rpc_addr.clone(),
                    state: "offline".into(),
                    role: role(&m.name).into(),
                    last_heartbeat: 0,
                    disks: Vec::new(),
                },
            };
            rows.push(row);
        }
        if rows.is_empty() {
            // not formed yet: show this node alone
            rows.push(MemberRow {
                id: self.node.0.clone(),
                address: self.me.rpc_addr.clone(),
                state: "online".into(),
                role: "joining".into(),
                last_heartbeat: crate::meta::Timestamp::now().0,
                disks: self.local.disks().unwrap_or_default(),
            });
        }
        rows
    }

    fn master(&self) -> String {
        self.leader().map(|l| l.name).unwrap_or_default()
    }

    fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    fn add_node(
        &self,
        addr: String,
        peer_id: Option<String>,
    ) -> crate::rpc::server::AdminFuture<(String, String)> {
        let admin = self.admin.clone();
        Box::pin(async move {
            match admin.run(AdminRequest::Add { addr, peer_id }).await? {
                AdminAnswer::Added { node, peer_id } => Ok((node, peer_id)),
                other => Err(format!("unexpected answer {other:?}")),
            }
        })
    }

    fn remove_node(&self, id: String) -> crate::rpc::server::AdminFuture<()> {
        let admin = self.admin.clone();
        Box::pin(async move {
            match admin.run(AdminRequest::Remove { id }).await? {
                AdminAnswer::Removed => Ok(()),
                other => Err(format!("unexpected answer {other:?}")),
            }
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum AdminRequest {
    Add {
        addr: String,
        peer_id: Option<String>,
    },
    Remove {
        id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum AdminAnswer {
    Added { node: String, peer_id: String },
    Removed,
    NotLeader,
    Failed(String),
}

/// Membership changes: carried out by the master, forwarded to it from anywhere else.
#[derive(Clone)]
struct Admin {
    raft: Raft,
    transport: Arc<dyn Transport>,
    p2p: Option<P2pTransport>,
    heartbeats: Arc<Heartbeats>,
    raft_id: RaftNodeId,
    meta: Arc<MetaStore>,
}

/// How long a new node has to announce itself after `node add`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Admin {
    async fn run(&self, req: AdminRequest) -> Result<AdminAnswer, String> {
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT + Duration::from_secs(10);
        loop {
            let (leader, member) = {
                let m = self.raft.metrics().borrow().clone();
                let leader = m.current_leader;
                let member =
                    leader.and_then(|id| m.membership_config.membership().get_node(&id).cloned());
                (leader, member)
            };
            let answer = match (leader, member) {
                (Some(id), _) if id == self.raft_id => self.apply(req.clone()).await,
                (Some(_), Some(m)) if self.transport.is_connected(&NodeId(m.name.clone())) => {
                    let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
                    let answer = self
                        .transport
                        .request(&NodeId(m.name.clone()), ADMIN, body)
                        .await
                        .map_err(|e| format!("the master {} did not answer: {e}", m.name))?;
                    serde_json::from_slice(&answer)
                        .map_err(|e| format!("malformed answer from {}: {e}", m.name))?
                }
                _ => AdminAnswer::NotLeader,
            };
            match answer {
                AdminAnswer::NotLeader if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                AdminAnswer::NotLeader => return Err("no master is elected; try again".into()),
                AdminAnswer::Failed(why) => return Err(why),
                done => return Ok(done),
            }
        }
    }

    /// Carries out `req` on this node, which must be the master.
    async fn apply(&self, req: AdminRequest) -> AdminAnswer {
        let not_leader = |e: &RaftError<RaftNodeId, ClientWriteError<RaftNodeId, Member>>| {
            matches!(e, RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
        };
        match req {
            AdminRequest::Add { addr, peer_id } => {
                let sa: SocketAddr = match addr.parse() {
                    Ok(a) => a,
                    Err(e) => return AdminAnswer::Failed(format!("`{addr}` is not IP:PORT: {e}")),
                };
                let pid = match peer_id.as_deref().map(str::parse::<PeerId>).transpose() {
                    Ok(p) => p,
                    Err(e) => return AdminAnswer::Failed(format!("bad peer ID: {e}")),
                };
                // over libp2p the master dials the new node; a hub connects every node
                if let Some(p2p) = &self.p2p {
                    if let Err(e) = p2p.add_peer(sa, pid) {
                        return AdminAnswer::Failed(e.to_string());
                    }
                }
                // the node must announce itself: that gives its name, addresses and Raft id
                let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
                let beat = loop {
                    let found = self.heartbeats.peers().into_iter().find(|p| {
                        p.online
                            && p.beat.p2p_addr == sa.to_string()
                            && pid.is_none_or(|id| p.beat.peer_id == id.to_string())
                    });
                    if let Some(p) = found {
                        break p.beat;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return AdminAnswer::Failed(format!(
                            "no node announced itself from {sa} within {JOIN_TIMEOUT:?}: is it \
                             running with this address as `cluster.listen`, and does its config \
                             list this cluster's nodes as peers?"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                let member = Member {
                    name: beat.node.0.clone(),
                    p2p_addr: beat.p2p_addr.clone(),
                    rpc_addr: beat.rpc_addr.clone(),
                    peer_id: beat.peer_id.clone(),
                };
                let existing = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .clone();
                if existing
                    .nodes()
                    .any(|(_, m)| m.name == member.name && m.peer_id != member.peer_id)
                {
                    return AdminAnswer::Failed(format!(
                        "a member is already named {}; remove it first",
                        member.name
                    ));
                }
                if let Err(e) = self.raft.add_learner(beat.raft_id, member, true).await {
                    return if not_leader(&e) {
                        AdminAnswer::NotLeader
                    } else {
                        AdminAnswer::Failed(format!("adding {} as a learner: {e}", beat.node))
                    };
                }
                let ids: std::collections::BTreeSet<RaftNodeId> = [beat.raft_id].into();
                if let Err(e) = self
                    .raft
                    .change_membership(openraft::ChangeMembers::AddVoterIds(ids), false)
                    .await
                {
                    return if not_leader(&e) {
                        AdminAnswer::NotLeader
                    } else {
                        AdminAnswer::Failed(format!("making {} a voter: {e}", beat.node))
                    };
                }
                tracing::info!(node = %beat.node, %sa, "added a node to the cluster");
                AdminAnswer::Added {
                    node: beat.node.0,
                    peer_id: beat.peer_id,
                }
            }
            AdminRequest::Remove { id } => {
                let membership = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .clone();
                let Some((rid, _)) = membership.nodes().find(|(_, m)| m.name == id) else {
                    // Left the membership, but a removal cut short kept its records: finish it.
                    let recorded = self
                        .meta
                        .nodes()
                        .is_ok_and(|n| n.iter().any(|n| n.id.0 == id));
                    if recorded {
                        return match self
                            .raft
                            .client_write(MetadataOp::RemoveNode(NodeId(id.clone())))
                            .await
                        {
                            Ok(_) => AdminAnswer::Removed,
                            Err(e) if not_leader(&e) => AdminAnswer::NotLeader,
                            Err(e) => AdminAnswer::Failed(format!("removing {id}'s records: {e}")),
                        };
                    }
                    let names: Vec<String> =
                        membership.nodes().map(|(_, m)| m.name.clone()).collect();
                    return AdminAnswer::Failed(format!(
                        "no member is named {id}; the members are {}",
                        names.join(", ")
                    ));
                };
                let rid = *rid;
                if rid == self.raft_id {
                    return AdminAnswer::Failed(format!(
                        "{id} is the master; stop it so another node takes over, then remove it"
                    ));
                }
                let ids: std::collections::BTreeSet<RaftNodeId> = [rid].into();
                if let Err(e) = self
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveVoters(ids), false)
                    .await
                {
                    return if not_leader(&e) {
                        AdminAnswer::NotLeader
                    } else {
                        AdminAnswer::Failed(format!("removing {id}: {e}"))
                    };
                }
                self.heartbeats.forget(&NodeId(id.clone()));
                // Its node and disk records go too: its chunks now count as lost, and the
                // repair worker rebuilds them elsewhere.
                if let Err(e) = self
                    .raft
                    .client_write(MetadataOp::RemoveNode(NodeId(id.clone())))
                    .await
                {
                    return AdminAnswer::Failed(format!(
                        "{id} left the membership, but its records could not be removed ({e}); run the removal again"
                    ));
                }
                tracing::info!(node = %id, "removed a node from the cluster; its chunks are rebuilt elsewhere");
                AdminAnswer::Removed
            }
        }
    }
}
