//! The cluster's and the node's status.

use super::{disk_status, status, MemberRow, WormFsService};
use crate::meta::Timestamp;
use crate::rpc::proto;
use tonic::{Request, Response, Status};

impl WormFsService {
    pub(super) async fn serve_get_cluster_status(
        &self,
        _r: Request<proto::Empty>,
    ) -> Result<Response<proto::ClusterStatusReply>, Status> {
        let fs = &self.fs;
        let last_applied = fs
            .meta()
            .last_applied()
            .map_err(|e| status("status", e.into()))?;
        let (files, bytes) = fs.meta().usage().map_err(|e| status("status", e.into()))?;
        let draining = fs
            .meta()
            .draining_disks()
            .map_err(|e| status("status", e.into()))?;
        let (rows, master, term) = match &self.cluster {
            Some(c) => (c.members(), c.master(), c.term()),
            None => {
                let disks = fs.store().disks().map_err(|e| status("status", e.into()))?;
                let row = MemberRow {
                    id: fs.node().to_string(),
                    address: self.address.clone(),
                    state: "online".into(),
                    role: "master".into(),
                    last_heartbeat: Timestamp::now().0,
                    disks,
                    admin: self.admin.clone(),
                };
                (vec![row], fs.node().to_string(), 0)
            }
        };
        let nodes = rows
            .into_iter()
            .map(|r| proto::NodeStatus {
                id: r.id,
                address: r.address,
                state: r.state,
                role: r.role,
                last_heartbeat: r.last_heartbeat,
                disks: r.disks.iter().map(|d| disk_status(d, &draining)).collect(),
                admin_url: r.admin.url,
                admin_fingerprint: r.admin.fingerprint,
            })
            .collect();
        Ok(Response::new(proto::ClusterStatusReply {
            nodes,
            master,
            last_applied,
            default_policy: fs.policies().default_name().to_owned(),
            policies: fs
                .policies()
                .named()
                .iter()
                .map(|(n, p)| proto::PolicyInfo {
                    name: n.clone(),
                    k: u32::from(p.k),
                    m: u32::from(p.m),
                    stripe_size: p.stripe_size,
                })
                .collect(),
            files,
            bytes,
            term,
        }))
    }

    pub(super) async fn serve_get_node_health(
        &self,
        _r: Request<proto::Empty>,
    ) -> Result<Response<proto::NodeHealthReply>, Status> {
        let disks = self
            .fs
            .store()
            .disks()
            .map_err(|e| status("health", e.into()))?;
        let last_applied = self
            .fs
            .meta()
            .last_applied()
            .map_err(|e| status("health", e.into()))?;
        let draining = self
            .fs
            .meta()
            .draining_disks()
            .map_err(|e| status("health", e.into()))?;
        Ok(Response::new(proto::NodeHealthReply {
            node: self.fs.node().to_string(),
            healthy: disks.iter().all(|d| d.healthy),
            version: crate::VERSION.to_owned(),
            last_applied,
            disks: disks.iter().map(|d| disk_status(d, &draining)).collect(),
        }))
    }
}
