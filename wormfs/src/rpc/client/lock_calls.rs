//! The lock call of [`Client`].

use super::{Client, ClientError, Retry};
use crate::rpc::proto;

impl Client {
    /// One `Lock` call (see `proto::LockRequest`). Repeated on another node when the one in
    /// use fails: every lock operation may be asked twice.
    pub async fn lock_call(
        &self,
        req: proto::LockRequest,
    ) -> Result<proto::LockReply, ClientError> {
        Ok(self
            .call("lock", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.lock(req).await }
            })
            .await?
            .into_inner())
    }
}
