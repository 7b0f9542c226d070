//! A typed client of a storage node: domain types in, domain types out, errors with errno.

use super::convert::attr_from_proto;
use super::proto::{self, worm_fs_client::WormFsClient};
use super::{errno_of, PIECE_SIZE};
use crate::errno;
use crate::ids::FileId;
use crate::meta::{Attr, DirEntry, Timestamp, XattrMode};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// A failed call: the errno to return to an application, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// The POSIX errno.
    pub errno: i32,
    /// What the node (or the connection) said.
    pub message: String,
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> ClientError {
        let message = if s.metadata().get(super::ERRNO_METADATA).is_some() {
            s.message().to_owned()
        } else {
            format!(
                "node unreachable or call failed: {} ({:?})",
                s.message(),
                s.code()
            )
        };
        ClientError {
            errno: errno_of(&s),
            message,
        }
    }
}

fn proto_err(e: tonic::Status) -> ClientError {
    ClientError {
        errno: errno::EIO,
        message: format!("the node sent an invalid reply: {}", e.message()),
    }
}

/// Attribute changes for [`Client::setattr`].
pub type SetAttr = proto::SetAttrRequest;

/// A connection to one storage node. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    inner: WormFsClient<Channel>,
    address: String,
}

impl Client {
    /// Connects to the node at `address` (`host:port` or a `http://` URL).
    pub async fn connect(address: &str) -> Result<Client, ClientError> {
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let bad = |e: &dyn std::fmt::Display| ClientError {
            errno: errno::EINVAL,
            message: format!("`{address}` is not a node address: {e}"),
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|e| bad(&e))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(super::WINDOW_SIZE))
            .initial_connection_window_size(Some(4 * super::WINDOW_SIZE));
        let channel = endpoint.connect().await.map_err(|e| ClientError {
            errno: errno::EIO,
            message: format!(
                "cannot reach the node at {address}: {e}; is wormfs-node running there?"
            ),
        })?;
        let inner = WormFsClient::new(channel)
            .max_decoding_message_size(super::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(super::MAX_MESSAGE_SIZE);
        Ok(Client {
            inner,
            address: address.to_owned(),
        })
    }

    /// The address this client talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The generated client, for calls without a typed wrapper.
    pub fn raw(&self) -> WormFsClient<Channel> {
        self.inner.clone()
    }

    fn attr(reply: proto::AttrReply) -> Result<Attr, ClientError> {
        let a = reply
            .attr
            .ok_or_else(|| proto_err(tonic::Status::invalid_argument("reply without attr")))?;
        attr_from_proto(a).map_err(proto_err)
    }

    /// Looks `name` up in `parent`.
    pub async fn lookup(&self, parent: FileId, name: &str) -> Result<Attr, ClientError> {
        let r = self
            .raw()
            .lookup(proto::EntryRequest {
                parent: parent.0,
                name: name.to_owned(),
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// An inode's attributes.
    pub async fn getattr(&self, ino: FileId) -> Result<Attr, ClientError> {
        Self::attr(
            self.raw()
                .get_attr(proto::InoRequest { ino: ino.0 })
                .await?
                .into_inner(),
        )
    }

    /// Changes attributes (size included).
    pub async fn setattr(&self, req: SetAttr) -> Result<Attr, ClientError> {
        Self::attr(self.raw().set_attr(req).await?.into_inner())
    }

    /// Creates an object; see [`proto::CreateRequest`].
    pub async fn create(&self, req: proto::CreateRequest) -> Result<Attr, ClientError> {
        Self::attr(self.raw().create(req).await?.into_inner())
    }

    /// Adds a hard link.
    pub async fn link(
        &self,
        ino: FileId,
        new_parent: FileId,
        new_name: &str,
    ) -> Result<Attr, ClientError> {
        let req = proto::LinkRequest {
            ino: ino.0,
            new_parent: new_parent.0,
            new_name: new_name.to_owned(),
        };
        Self::attr(self.raw().link(req).await?.into_inner())
    }

    /// Removes a non-directory.
    pub async fn unlink(&self, parent: FileId, name: &str) -> Result<(), ClientError> {
        self.raw()
            .unlink(proto::EntryRequest {
                parent: parent.0,
                name: name.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: FileId, name: &str) -> Result<(), ClientError> {
        self.raw()
            .rmdir(proto::EntryRequest {
                parent: parent.0,
                name: name.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Renames.
    pub async fn rename(
        &self,
        parent: FileId,
        name: &str,
        new_parent: FileId,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), ClientError> {
        let req = proto::RenameRequest {
            parent: parent.0,
            name: name.to_owned(),
            new_parent: new_parent.0,
            new_name: new_name.to_owned(),
            no_replace,
        };
        self.raw().rename(req).await?;
        Ok(())
    }

    /// A directory's entries.
    pub async fn readdir(&self, ino: FileId) -> Result<Vec<DirEntry>, ClientError> {
        let r = self
            .raw()
            .read_dir(proto::InoRequest { ino: ino.0 })
            .await?
            .into_inner();
        r.entries
            .into_iter()
            .map(|e| {
                Ok(DirEntry {
                    name: e.name,
                    ino: super::convert::ino("entries.ino", e.ino).map_err(proto_err)?,
                    kind: super::convert::kind_from_proto("entries.kind", e.kind)
                        .map_err(proto_err)?,
                })
            })
            .collect()
    }

    /// A symlink's target.
    pub async fn readlink(&self, ino: FileId) -> Result<String, ClientError> {
        Ok(self
            .raw()
            .read_link(proto::InoRequest { ino: ino.0 })
            .await?
            .into_inner()
            .target)
    }

    /// An extended attribute.
    pub async fn getxattr(&self, ino: FileId, name: &str) -> Result<Vec<u8>, ClientError> {
        Ok(self
            .raw()
            .get_xattr(proto::XattrRequest {
                ino: ino.0,
                name: name.to_owned(),
            })
            .await?
            .into_inner()
            .value)
    }

    /// Sets an extended attribute.
    pub async fn setxattr(
        &self,
        ino: FileId,
        name: &str,
        value: &[u8],
        mode: XattrMode,
    ) -> Result<(), ClientError> {
        let mode = match mode {
            XattrMode::Any => proto::XattrMode::Any,
            XattrMode::Create => proto::XattrMode::Create,
            XattrMode::Replace => proto::XattrMode::Replace,
        } as i32;
        let req = proto::SetXattrRequest {
            ino: ino.0,
            name: name.to_owned(),
            value: value.to_vec(),
            mode,
        };
        self.raw().set_xattr(req).await?;
        Ok(())
    }

    /// Extended attribute names.
    pub async fn listxattr(&self, ino: FileId) -> Result<Vec<String>, ClientError> {
        Ok(self
            .raw()
            .list_xattr(proto::InoRequest { ino: ino.0 })
            .await?
            .into_inner()
            .names)
    }

    /// Removes an extended attribute.
    pub async fn removexattr(&self, ino: FileId, name: &str) -> Result<(), ClientError> {
        self.raw()
            .remove_xattr(proto::XattrRequest {
                ino: ino.0,
                name: name.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// File-system figures.
    pub async fn statfs(&self) -> Result<proto::StatFsReply, ClientError> {
        Ok(self.raw().stat_fs(proto::Empty {}).await?.into_inner())
    }

    /// Reads a whole stripe; empty for a hole.
    pub async fn read_stripe(&self, ino: FileId, index: u64) -> Result<Vec<u8>, ClientError> {
        self.read_pieces(proto::ReadStripeRequest {
            ino: ino.0,
            index,
            offset: 0,
            len: 0,
        })
        .await
    }

    /// Reads bytes `offset..offset + len` of a stripe (clipped to it); empty for a hole.
    pub async fn read_stripe_range(
        &self,
        ino: FileId,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.read_pieces(proto::ReadStripeRequest {
            ino: ino.0,
            index,
            offset,
            len,
        })
        .await
    }

    async fn read_pieces(&self, req: proto::ReadStripeRequest) -> Result<Vec<u8>, ClientError> {
        let mut stream = self.raw().read_stripe(req).await?.into_inner();
        let mut out = Vec::new();
        while let Some(piece) = stream.message().await? {
            if piece.offset != out.len() as u64
                || out.len() as u64 + piece.data.len() as u64
                    > piece.stripe_len.max(piece.data.len() as u64)
            {
                return Err(proto_err(tonic::Status::invalid_argument(
                    "stripe pieces out of order",
                )));
            }
            if out.capacity() == 0 {
                out.reserve_exact(piece.stripe_len as usize);
            }
            out.extend_from_slice(&piece.data);
        }
        Ok(out)
    }

    /// Writes whole stripes `(file, index, bytes)` and returns the file's attributes after
    /// the last one. Each stripe is durable and committed when this returns `Ok`. The bytes
    /// are sent as they are, without a copy (`Bytes::from(vec)` or `Bytes::from_owner`).
    pub async fn write_stripes(
        &self,
        stripes: Vec<(FileId, u64, prost::bytes::Bytes)>,
    ) -> Result<Attr, ClientError> {
        let mut pieces = Vec::new();
        for (ino, index, data) in stripes {
            let len = data.len();
            for at in (0..len).step_by(PIECE_SIZE) {
                pieces.push(proto::StripePiece {
                    ino: ino.0,
                    index,
                    stripe_len: len as u64,
                    offset: at as u64,
                    data: data.slice(at..(at + PIECE_SIZE).min(len)),
                });
            }
        }
        let r = self.raw().write_stripes(tokio_stream::iter(pieces)).await?;
        Self::attr(r.into_inner())
    }

    /// Sets (or with `None` clears) the policy of the directory at `path`.
    pub async fn set_policy(&self, path: &str, policy: Option<&str>) -> Result<(), ClientError> {
        let req = proto::SetPolicyRequest {
            path: path.to_owned(),
            policy: policy.unwrap_or_default().to_owned(),
        };
        self.raw().set_storage_policy(req).await?;
        Ok(())
    }

    /// The policy of the object at `path`.
    pub async fn get_policy(&self, path: &str) -> Result<proto::PolicyReply, ClientError> {
        Ok(self
            .raw()
            .get_storage_policy(proto::PathRequest {
                path: path.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// The cluster's status.
    pub async fn cluster_status(&self) -> Result<proto::ClusterStatusReply, ClientError> {
        Ok(self
            .raw()
            .get_cluster_status(proto::Empty {})
            .await?
            .into_inner())
    }

    /// The file at `path` with its stripes and chunks.
    pub async fn file_layout(&self, path: &str) -> Result<proto::FileLayoutReply, ClientError> {
        Ok(self
            .raw()
            .get_file_layout(proto::PathRequest {
                path: path.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Sets only the times of an inode (helper for `utimens`).
    pub async fn set_times(
        &self,
        ino: FileId,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<Attr, ClientError> {
        self.setattr(SetAttr {
            ino: ino.0,
            atime: atime.map(|t| t.0),
            mtime: mtime.map(|t| t.0),
            ..Default::default()
        })
        .await
    }
}
