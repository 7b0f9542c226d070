//! The cluster (feature `cluster`): the metadata log replicated by openraft over the libp2p
//! [`P2pTransport`], heartbeats, and the [`ClusterStore`] that spreads chunks over every
//! node's disks.
//!
//! Roles: every storage node is a Raft voter and applies the log to its own SQLite copy, so
//! any node answers metadata reads and coordinates stripe reads and writes. The Raft leader
//! is the *master*: every metadata change is ordered by it and commits only on a majority.
//! [`RaftLog`] is the [`MetadataLog`](crate::meta::MetadataLog) a node uses: on the master
//! it writes through Raft, elsewhere it forwards the op to the master.
//!
//! The parts: [`Cluster`] starts them over any [`Transport`] ([`Cluster::start_on`]);
//! `election` decides when to campaign (pre-vote); `heartbeat` announces and tracks
//! liveness; `membership` forms the cluster and adds and removes nodes; `log` is
//! [`RaftLog`] and the master's side of forwarding; `network` carries Raft's own messages;
//! `locks` the lock service's authority; `info` what `wormfs status` and the heal workers
//! ask; `store` is [`ClusterStore`].

mod election;
#[cfg(test)]
mod fuzz_tests;
mod heartbeat;
mod info;
pub mod lag;
mod locks;
mod log;
mod membership;
mod network;
mod store;

debug_by_name!(Cluster, ClusterNet);

#[cfg(test)]
mod tests;

pub use election::{Contact, ElectionTiming, PreVote, PreVoteAnswer, PREVOTE};
pub use heartbeat::{now_ms, Beat, DiskBeat, Heartbeats, PeerBeat, HEARTBEAT};
pub use locks::{ClusterLocks, LOCKS};
pub use log::RaftLog;
pub use network::{serve_json, serve_raft, RaftNet, RaftPeer};
pub use store::ClusterStore;

use heartbeat::send_heartbeats;
use membership::{bootstrap, pin_members, Admin, AdminRequest};

use crate::ids::NodeId;
use crate::meta::MetaStore;
use crate::net::p2p::{
    load_or_create_identity, P2pConfig, P2pError, PeerBook, PEER_BOOK_FILE_NAME,
};
use crate::net::{P2pTransport, Transport};
use crate::raft::{open_storage, Member, Raft, RaftNodeId};
use crate::store::ChunkStore;
use libp2p::PeerId;
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
    /// Where chunk data is served (`None`: the libp2p address's IP, any free port).
    pub data_listen: Option<SocketAddr>,
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
#[non_exhaustive]
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
    lag: Arc<lag::Lag>,
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

impl crate::rpc::fresh::Progress for Cluster {
    fn applied(&self) -> u64 {
        network::applied(&self.raft)
    }

    fn behind(&self) -> Option<String> {
        let m = self.raft.metrics();
        let (leader, applied) = {
            let m = m.borrow();
            (m.current_leader, m.last_applied.map_or(0, |l| l.index))
        };
        if leader == Some(self.raft_id) {
            return None;
        }
        self.lag
            .behind(applied, std::time::Instant::now())
            .map(|b| b.to_string())
    }
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
            data_listen: settings.data_listen,
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
            // openraft gives each snapshot chunk 200 ms by default: less than a chunk of a
            // large snapshot takes on a busy node, which then never caught up. A chunk may
            // take as long as a forwarded write.
            install_snapshot_timeout: write_timeout(&settings).as_millis() as u64,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK as u64,
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
        let lag = Arc::new(lag::Lag::default());
        serve_raft(
            transport.as_ref(),
            raft.clone(),
            contact.clone(),
            lag.clone(),
        );
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
        log::serve_submit(transport.as_ref(), raft.clone(), write_timeout(&settings));
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
            lag,
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

    /// The [`MetadataLog`](crate::meta::MetadataLog) of this node.
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

    /// Completes when Raft stopped by itself (a storage error, say, or a panic in its core)
    /// and returns why: the node can no longer take part in the cluster and should stop, so
    /// that it is restarted, rather than go on answering with a dead metadata log. It does
    /// not complete while Raft runs, and is not meant to be awaited after [`Self::shutdown`].
    pub async fn raft_stopped(&self) -> String {
        // the core owns the sending side: it is dropped when the core stops (the server
        // metrics, unlike the whole metrics, do not change with every log entry, so this task
        // is not woken for each)
        let mut metrics = self.raft.server_metrics();
        while metrics.changed().await.is_ok() {}
        match self.raft.is_initialized().await {
            Err(fatal) => fatal.to_string(),
            Ok(_) => "its core task ended".to_owned(),
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

/// Bytes of a snapshot sent in one request (well below the transport's message limit).
const SNAPSHOT_CHUNK: usize = 4 * 1024 * 1024;

fn write_timeout(s: &ClusterSettings) -> Duration {
    s.election_timeout * 3 + Duration::from_secs(5)
}
