//! The admin calls of [`Client`]: policies, status, file layouts, workers and risk.

use super::{request_id, with_request_id, Client, ClientError, Retry};
use crate::rpc::proto;

impl Client {
    /// Sets (or with `None` clears) the policy of the directory at `path`. Carries a request
    /// id, so a call cut off by a node's death is repeated on the next node and applied
    /// once.
    pub async fn set_policy(&self, path: &str, policy: Option<&str>) -> Result<(), ClientError> {
        let req = proto::SetPolicyRequest {
            path: path.to_owned(),
            policy: policy.unwrap_or_default().to_owned(),
        };
        let id = request_id();
        self.call("set_policy", Retry::Deduplicated, |mut c| {
            let req = with_request_id(req.clone(), &id);
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

    /// The scrub and repair workers' controls and statuses.
    pub async fn list_workers(&self) -> Result<proto::WorkersReply, ClientError> {
        Ok(self
            .call("list_workers", Retry::Safe, |mut c| async move {
                c.list_workers(proto::Empty {}).await
            })
            .await?
            .into_inner())
    }

    /// Changes a worker's control (see `proto::WorkerRequest`). Not repeated on another
    /// node once sent (a repeated `start` would ask for a second scrub pass).
    pub async fn control_worker(
        &self,
        req: proto::WorkerRequest,
    ) -> Result<proto::WorkersReply, ClientError> {
        Ok(self
            .call("control_worker", Retry::OnlyUnsent, |mut c| {
                let req = req.clone();
                async move { c.control_worker(req).await }
            })
            .await?
            .into_inner())
    }

    /// Files at risk now, or if the nodes and disks named in `req` were lost.
    pub async fn risk(&self, req: proto::RiskRequest) -> Result<proto::RiskReply, ClientError> {
        Ok(self
            .call("risk", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.get_risk(req).await }
            })
            .await?
            .into_inner())
    }

    /// `drain`, `undrain` or `remove` a disk. Not repeated on another node once sent.
    pub async fn disk_command(&self, disk: &str, action: &str) -> Result<(), ClientError> {
        let req = proto::DiskRequest {
            disk: disk.to_owned(),
            action: action.to_owned(),
        };
        self.call("disk_command", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.disk_command(req).await }
        })
        .await?;
        Ok(())
    }
}

impl Client {
    /// Every user (admin identities only).
    pub async fn list_users(&self) -> Result<Vec<proto::UserInfo>, ClientError> {
        Ok(self
            .call("list_users", Retry::Safe, |mut c| async move {
                c.list_users(proto::Empty {}).await
            })
            .await?
            .into_inner()
            .users)
    }

    /// Adds `user` (or with `rotate`, gives the user of that name a new key) and returns
    /// the user and its new key. Not repeated on another node once sent.
    pub async fn put_user(
        &self,
        user: proto::UserInfo,
        rotate: bool,
    ) -> Result<proto::PutUserReply, ClientError> {
        let req = proto::PutUserRequest {
            user: Some(user),
            rotate,
        };
        Ok(self
            .call("put_user", Retry::OnlyUnsent, |mut c| {
                let req = req.clone();
                async move { c.put_user(req).await }
            })
            .await?
            .into_inner())
    }

    /// Removes the user `name`. Not repeated on another node once sent.
    pub async fn remove_user(&self, name: &str) -> Result<(), ClientError> {
        let req = proto::UserRequest {
            name: name.to_owned(),
        };
        self.call("remove_user", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.remove_user(req).await }
        })
        .await?;
        Ok(())
    }

    /// Every admin API token (names and times; admin identities only).
    pub async fn list_tokens(&self) -> Result<Vec<proto::TokenInfo>, ClientError> {
        Ok(self
            .call("list_tokens", Retry::Safe, |mut c| async move {
                c.list_tokens(proto::Empty {}).await
            })
            .await?
            .into_inner()
            .tokens)
    }

    /// Makes an admin API token named `name`: a random 256-bit token whose SHA-256 alone
    /// is sent and kept. Returns the token, to show once. A call cut off by a node's death
    /// is repeated on the next node: a second record of the same hash is refused as
    /// existing, which then means the first was made.
    pub async fn create_token(&self, name: &str) -> Result<String, ClientError> {
        let token = crate::rpc::token::new_token().map_err(|e| ClientError {
            errno: crate::errno::EIO,
            message: format!("no randomness for a token: {e}"),
        })?;
        let req = proto::PutTokenRequest {
            name: name.to_owned(),
            hash: crate::rpc::token::token_hash(&token),
        };
        self.call("put_token", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.put_token(req).await }
        })
        .await?;
        Ok(token)
    }

    /// Revokes the admin API token `name`. Not repeated on another node once sent.
    pub async fn remove_token(&self, name: &str) -> Result<(), ClientError> {
        let req = proto::UserRequest {
            name: name.to_owned(),
        };
        self.call("remove_token", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.remove_token(req).await }
        })
        .await?;
        Ok(())
    }
}
