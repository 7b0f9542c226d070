//! Liveness, apart from Raft: every node announces itself to each connected peer once per
//! interval with its card (names and addresses) and its disks' space and health. A peer
//! not heard from for `offline_after` intervals is offline.

use crate::ids::{DiskId, NodeId};
use crate::net::Transport;
use crate::raft::{Member, RaftNodeId};
use crate::store::{ChunkStore, DiskStatus};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Protocol of heartbeats.
pub const HEARTBEAT: &str = "cluster/heartbeat";

/// One disk in a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskBeat {
    /// The disk.
    pub id: DiskId,
    /// Capacity in bytes.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// The disk answers and carries its marker.
    pub healthy: bool,
}

impl From<&DiskStatus> for DiskBeat {
    fn from(d: &DiskStatus) -> DiskBeat {
        DiskBeat {
            id: d.disk.clone(),
            total: d.total,
            free: d.free,
            healthy: d.healthy,
        }
    }
}

/// What a node announces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// The node's name.
    pub node: NodeId,
    /// Its gRPC address.
    pub rpc_addr: String,
    /// Its libp2p address.
    pub p2p_addr: String,
    /// Its peer ID.
    pub peer_id: String,
    /// Its Raft node id.
    pub raft_id: u64,
    /// Its disks.
    pub disks: Vec<DiskBeat>,
    /// Sender's clock, milliseconds since the Unix epoch.
    pub sent_ms: u64,
    /// The sender's Raft term: above 0 once it belongs to a formed cluster (0 from nodes
    /// too old to send it).
    #[serde(default)]
    pub term: u64,
    /// The sender's admin listener (absent from nodes too old to send it).
    #[serde(default)]
    pub admin: crate::rpc::server::AdminEndpoint,
}

/// The last heartbeat of a peer and how long ago it came.
#[derive(Clone, Debug)]
pub struct PeerBeat {
    /// The heartbeat.
    pub beat: Beat,
    /// When it arrived (this node's wall clock, ms since the epoch).
    pub received_ms: u64,
    /// Time since then.
    pub age: Duration,
    /// False after `offline_after` missed intervals.
    pub online: bool,
}

/// The heartbeats received, by node.
pub struct Heartbeats {
    interval: Duration,
    offline_after: u32,
    table: RwLock<HashMap<NodeId, (Beat, Instant, u64)>>,
    own_admin: RwLock<crate::rpc::server::AdminEndpoint>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Heartbeats {
    /// A table where a peer is offline after `offline_after` missed `interval`s.
    pub fn new(interval: Duration, offline_after: u32) -> Heartbeats {
        Heartbeats {
            interval,
            offline_after,
            table: RwLock::new(HashMap::new()),
            own_admin: RwLock::default(),
        }
    }

    /// This node's admin listener, announced in its heartbeats from now on.
    pub fn set_own_admin(&self, admin: crate::rpc::server::AdminEndpoint) {
        *self.own_admin.write().unwrap_or_else(|e| e.into_inner()) = admin;
    }

    /// This node's admin listener, as announced.
    pub fn own_admin(&self) -> crate::rpc::server::AdminEndpoint {
        self.own_admin
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How often peers send heartbeats.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long placement waits for the first heartbeat of a member it has not heard from
    /// (a node that just started or joined): `offline_after` intervals, at most five. A
    /// connected peer sends one each interval, so this is enough for it to arrive; a
    /// member still silent after it is treated as offline.
    pub fn first_beat_patience(&self) -> Duration {
        self.interval * self.offline_after.min(5)
    }

    /// `p` online by its heartbeats, unless this node's connection to it is down
    /// (`connected` false) and it has missed two heartbeats since: a killed node (its
    /// connection closes at once) counts as offline, and its chunks not as "ok", within
    /// about two intervals instead of after `offline_after` of them. A node that hangs with
    /// its connection open still takes `offline_after`.
    pub fn reachable(&self, p: &PeerBeat, connected: bool) -> bool {
        p.online && (connected || p.age <= self.interval * 2)
    }

    /// Records a heartbeat.
    pub fn record(&self, beat: Beat) {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(beat.node.clone(), (beat, Instant::now(), now_ms()));
    }

    /// Forgets a node (removed from the cluster).
    pub fn forget(&self, node: &NodeId) {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    fn peer_beat(&self, (beat, at, received_ms): &(Beat, Instant, u64)) -> PeerBeat {
        let age = at.elapsed();
        PeerBeat {
            beat: beat.clone(),
            received_ms: *received_ms,
            age,
            online: age <= self.interval * self.offline_after,
        }
    }

    /// Every peer heard from.
    pub fn peers(&self) -> Vec<PeerBeat> {
        let mut out: Vec<PeerBeat> = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|entry| self.peer_beat(entry))
            .collect();
        out.sort_by(|a, b| a.beat.node.cmp(&b.beat.node));
        out
    }

    /// Whether a heartbeat of `node` has been received (a lookup, no copy of the beat:
    /// placement asks it of every member before each stripe).
    pub fn heard_from(&self, node: &NodeId) -> bool {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(node)
    }

    /// The last heartbeat of `node` (one lookup: readers ask it for each chunk).
    pub fn get(&self, node: &NodeId) -> Option<PeerBeat> {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .map(|entry| self.peer_beat(entry))
    }
}

/// Sends this node's heartbeat to every connected peer once per `interval`, and logs
/// peers going offline and coming back.
pub(super) async fn send_heartbeats(
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
            admin: heard.own_admin(),
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

debug_by_name!(Heartbeats);

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat of node `b`, sent at `sent_ms`.
    fn beat_of_b(sent_ms: u64) -> Beat {
        Beat {
            node: NodeId("b".into()),
            rpc_addr: "127.0.0.1:1".into(),
            p2p_addr: "127.0.0.1:2".into(),
            peer_id: "x".into(),
            raft_id: 2,
            disks: vec![],
            sent_ms,
            term: 0,
            admin: Default::default(),
        }
    }

    #[test]
    fn a_peer_goes_offline_after_the_missed_beats() {
        let hb = Heartbeats::new(Duration::from_millis(10), 3);
        hb.record(beat_of_b(now_ms()));
        assert!(hb.get(&NodeId("b".into())).unwrap().online);
        let deadline = Instant::now() + Duration::from_secs(10);
        while hb.get(&NodeId("b".into())).unwrap().online {
            assert!(Instant::now() < deadline, "never went offline");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(hb.get(&NodeId("b".into())).unwrap().age >= Duration::from_millis(30));
        hb.forget(&NodeId("b".into()));
        assert!(hb.peers().is_empty());
    }

    /// A peer whose connection is down counts as offline once it has missed two beats,
    /// long before `offline_after`; one still connected keeps its heartbeats' word.
    #[test]
    fn a_peer_without_a_connection_is_offline_after_two_missed_beats() {
        let hb = Heartbeats::new(Duration::from_millis(100), 300);
        let beat = |age_ms: u64| PeerBeat {
            beat: beat_of_b(0),
            received_ms: 0,
            age: Duration::from_millis(age_ms),
            online: age_ms <= 100 * 300,
        };
        // a fresh beat: reachable, connected or not (a redial in progress)
        assert!(hb.reachable(&beat(150), false));
        assert!(hb.reachable(&beat(150), true));
        // two beats missed: offline without a connection, online with one (a hang)
        assert!(!hb.reachable(&beat(250), false));
        assert!(hb.reachable(&beat(250), true));
        // past offline_after: offline either way
        assert!(!hb.reachable(&beat(31_000), true));
    }
}
