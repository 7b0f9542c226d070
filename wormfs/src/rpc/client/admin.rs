//! The admin calls of [`Client`]: policies, status, file layouts, workers and risk.

use super::{Client, ClientError, Retry};
use crate::rpc::proto;

impl Client {
    /// Sets (or with `None` clears) the policy of the directory at `path`. Not repeated on
    /// another node once sent.
    pub async fn set_policy(&self, path: &str, policy: Option<&str>) -> Result<(), ClientError> {
        let req = proto::SetPolicyRequest {
            path: path.to_owned(),
            policy: policy.unwrap_or_default().to_owned(),
        };
        self.call("set_policy", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.set_storage_policy(req).await }
        })
        .await?;
        Ok(())
    }

    /// The policy of the object at `path`.
    pub async fn get_policy(&self, path: &str) -> Result<proto::PolicyReply, ClientError> {
        let req = proto::PathRequest {
            path: path.to_owned(),
        };
        Ok(self
            .call("get_policy", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.get_storage_policy(req).await }
            })
            .await?
            .into_inner())
    }

    /// The cluster's status.
    pub async fn cluster_status(&self) -> Result<proto::ClusterStatusReply, ClientError> {
        Ok(self
            .call("cluster_status", Retry::Safe, |mut c| async move {
                c.get_cluster_status(proto::Empty {}).await
            })
            .await?
            .into_inner())
    }

    /// The health of the node in use.
    pub async fn node_health(&self) -> Result<proto::NodeHealthReply, ClientError> {
        Ok(self
            .call("node_health", Retry::Safe, |mut c| async move {
                c.get_node_health(proto::Empty {}).await
            })
            .await?
            .into_inner())
    }

    /// The file at `path` with its stripes and chunks.
    pub async fn file_layout(&self, path: &str) -> Result<proto::FileLayoutReply, ClientError> {
        let req = proto::PathRequest {
            path: path.to_owned(),
        };
        Ok(self
            .call("file_layout", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.get_file_layout(req).await }
            })
            .await?
            .into_inner())
    }
}
