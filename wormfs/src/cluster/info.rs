//! What a node tells about the cluster: liveness for the heal workers, and members, master
//! and term for `wormfs status`, with `node add` / `node remove` handed to the membership.

use super::membership::{AdminAnswer, AdminRequest};
use super::Cluster;
use crate::ids::NodeId;

impl crate::heal::ClusterLiveness for Cluster {
    fn is_master(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.raft_id)
    }

    fn node_online(&self, node: &NodeId) -> bool {
        *node == self.node
            || self
                .heartbeats
                .get(node)
                .is_some_and(|p| self.reachable(node, &p))
    }

    fn members(&self) -> Vec<NodeId> {
        Cluster::members(self)
            .into_iter()
            .map(|(_, m)| NodeId(m.name))
            .collect()
    }
}

impl Cluster {
    /// See [`super::heartbeat::Heartbeats::reachable`].
    fn reachable(&self, node: &NodeId, p: &super::heartbeat::PeerBeat) -> bool {
        self.heartbeats
            .reachable(p, self.transport.is_connected(node))
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
                    admin: self.heartbeats.own_admin(),
                });
                continue;
            }
            let row = match self.heartbeats.get(&NodeId(m.name.clone())) {
                Some(p) => MemberRow {
                    id: m.name.clone(),
                    address: m.rpc_addr.clone(),
                    state: if self.reachable(&NodeId(m.name.clone()), &p) {
                        "online"
                    } else {
                        "offline"
                    }
                    .into(),
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
                    admin: p.beat.admin.clone(),
                },
                None => MemberRow {
                    id: m.name.clone(),
                    address: m.rpc_addr.clone(),
                    state: "offline".into(),
                    role: role(&m.name).into(),
                    last_heartbeat: 0,
                    disks: Vec::new(),
                    admin: Default::default(),
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
                admin: self.heartbeats.own_admin(),
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
