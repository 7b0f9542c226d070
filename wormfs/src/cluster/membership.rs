//! Membership: who belongs to the metadata group, and how that changes. The peer book is
//! kept pinned to the members (libp2p only), the cluster is formed on first start, and
//! `node add` / `node remove` are carried out by the master, forwarded to it from any node.

use super::heartbeat::{Beat, Heartbeats};
use super::ADMIN;
use crate::ids::NodeId;
use crate::meta::{MetaStore, MetadataOp};
use crate::net::{P2pTransport, Transport};
use crate::raft::{Member, Raft, RaftNodeId};
use libp2p::PeerId;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Keeps the peer book in step with the membership: every member is pinned to the peer ID
/// the membership records, so members reach each other even when not configured as peers.
pub(super) async fn pin_members(raft: Raft, transport: P2pTransport) {
    // the server metrics change only with the state, the leader or the membership (the
    // whole metrics change with every log entry, and would wake this task for each); only a
    // new membership (another log id) is pinned again
    let mut metrics = raft.server_metrics();
    let me = transport.peer_id().to_string();
    let mut pinned = None;
    loop {
        let new: Option<(Vec<Member>, _)> = {
            let m = metrics.borrow();
            let config = &m.membership_config;
            let at = *config.log_id();
            (pinned != Some(at)).then(|| {
                (
                    config
                        .membership()
                        .nodes()
                        .map(|(_, n)| n.clone())
                        .collect(),
                    at,
                )
            })
        };
        let Some((members, at)) = new else {
            // and once a minute anyway, in case a pin failed or was changed meanwhile
            match tokio::time::timeout(Duration::from_secs(60), metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => pinned = None,
            }
            continue;
        };
        pinned = Some(at);
        for m in members {
            if m.peer_id == me {
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
        // the membership just pinned: the next turn waits for a change
    }
}

/// Forms the cluster on first start: waits for a heartbeat from every configured peer,
/// then initializes Raft with all of them as voters. Over libp2p (`p2p`), only peers in
/// the peer book count.
pub(super) async fn bootstrap(
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum AdminRequest {
    Add {
        addr: String,
        peer_id: Option<String>,
    },
    Remove {
        id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum AdminAnswer {
    Added { node: String, peer_id: String },
    Removed,
    NotLeader,
    Failed(String),
}

/// Membership changes: carried out by the master, forwarded to it from anywhere else.
#[derive(Clone)]
pub(super) struct Admin {
    pub(super) raft: Raft,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) p2p: Option<P2pTransport>,
    pub(super) heartbeats: Arc<Heartbeats>,
    pub(super) raft_id: RaftNodeId,
    pub(super) meta: Arc<MetaStore>,
}

/// How long a new node has to announce itself after `node add`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Admin {
    pub(super) async fn run(&self, req: AdminRequest) -> Result<AdminAnswer, String> {
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
    pub(super) async fn apply(&self, req: AdminRequest) -> AdminAnswer {
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
