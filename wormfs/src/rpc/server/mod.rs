//! The gRPC service of a storage node: checks each request, calls [`NodeFs`], and turns
//! errors into statuses carrying their errno.

use super::convert::{attr_to_proto, ino, invalid, kind_to_proto, name};
use super::proto::{self, worm_fs_server::WormFs};
use super::session::{caller_of, require_admin};
use super::{status_with_errno, READDIR_PAGE};
use crate::meta::Timestamp;
use crate::node::{CreateKind, FsError, NodeFs, SetAttrArgs};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

mod status;
mod stripes;
mod xattrs;

/// The gRPC service over one node's file system. Cheap to clone: its parts are shared.
#[derive(Clone)]
pub struct WormFsService {
    fs: Arc<NodeFs>,
    address: String,
    cluster: Option<Arc<dyn ClusterInfo>>,
    locks: Option<Arc<crate::locks::LockService>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    admin: AdminEndpoint,
}

/// One node as `GetClusterStatus` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    /// The node's name.
    pub id: String,
    /// Its gRPC address.
    pub address: String,
    /// `online` or `offline`.
    pub state: String,
    /// `master` or `follower`.
    pub role: String,
    /// When its last heartbeat arrived (Unix nanoseconds; now for this node).
    pub last_heartbeat: i64,
    /// Its disks.
    pub disks: Vec<crate::store::DiskStatus>,
    /// Its admin listener's URL and certificate fingerprint (empty when unknown).
    pub admin: AdminEndpoint,
}

/// Where a node's admin listener is: its URL, and its certificate's SHA-256 fingerprint
/// when it speaks HTTPS. Empty strings when it has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminEndpoint {
    /// E.g. `https://10.0.0.1:7170/`.
    pub url: String,
    /// E.g. `AB:CD:...` (32 pairs), empty for plain HTTP.
    pub fingerprint: String,
}

/// What the status call needs from the cluster, when the node is part of one.
pub trait ClusterInfo: Send + Sync {
    /// Every member.
    fn members(&self) -> Vec<MemberRow>;
    /// The master's name, empty while an election runs.
    fn master(&self) -> String;
    /// The Raft term this node is in: each election raises it.
    fn term(&self) -> u64;
    /// Adds the node at libp2p address `addr` (pinned to `peer_id` when given) as a voter;
    /// returns its name and peer ID.
    fn add_node(&self, addr: String, peer_id: Option<String>) -> AdminFuture<(String, String)>;
    /// Removes the node named `id` from the membership.
    fn remove_node(&self, id: String) -> AdminFuture<()>;
}

/// The answer of a membership change: a value, or what went wrong.
pub type AdminFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send>>;

impl WormFsService {
    /// A service over `fs`, announcing `address` as this node's.
    pub fn new(fs: Arc<NodeFs>, address: String) -> WormFsService {
        WormFsService {
            fs,
            address,
            cluster: None,
            locks: None,
            metrics: None,
            admin: AdminEndpoint::default(),
        }
    }

    /// Reports this node's admin listener in `GetClusterStatus` (a node on its own; in a
    /// cluster the heartbeats carry it).
    pub fn with_admin(mut self, admin: AdminEndpoint) -> WormFsService {
        self.admin = admin;
        self
    }

    /// Counts the stripe bytes read and written for clients in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> WormFsService {
        self.metrics = Some(metrics);
        self
    }

    fn count_client_bytes(&self, read: bool, n: usize) {
        if let Some(m) = &self.metrics {
            m.client_bytes(read, n as u64);
        }
    }

    /// Answers `Lock` calls with `locks`.
    pub fn with_locks(mut self, locks: Arc<crate::locks::LockService>) -> WormFsService {
        self.locks = Some(locks);
        self
    }

    /// Reports the cluster's members and master in `GetClusterStatus`.
    pub fn with_cluster(mut self, cluster: Arc<dyn ClusterInfo>) -> WormFsService {
        self.cluster = Some(cluster);
        self
    }

    /// The tonic server for this service, with WormFS's message size limits, checking each
    /// call's session against `users` (serve it over [`super::tls::incoming`]).
    pub fn into_server(
        self,
        users: Arc<super::session::Users>,
    ) -> tonic::service::interceptor::InterceptedService<
        proto::worm_fs_server::WormFsServer<WormFsService>,
        super::session::Authenticator,
    > {
        tonic::service::interceptor::InterceptedService::new(
            proto::worm_fs_server::WormFsServer::new(self)
                .max_decoding_message_size(super::MAX_MESSAGE_SIZE)
                .max_encoding_message_size(super::MAX_MESSAGE_SIZE),
            super::session::Authenticator::new(users),
        )
    }
}

impl WormFsService {
    /// What the call under `request_id` gave when it ran before (see
    /// [`crate::node::applied_before`]): a repeat whose checks fail because the first run
    /// changed what they look at answers as the first run did.
    fn repeat_of(&self, request_id: &Option<String>) -> Option<crate::meta::Applied> {
        crate::node::applied_before(self.fs.meta(), request_id.as_deref())
    }
}

/// A failed operation as a status, logged where it is decided.
fn status(op: &str, e: FsError) -> Status {
    let errno = e.errno();
    if errno == crate::errno::EIO {
        tracing::error!(op, error = %e, "operation failed");
    } else {
        tracing::debug!(op, error = %e, errno, "operation refused");
    }
    status_with_errno(errno, e.to_string())
}

fn attr_reply(a: &crate::meta::Attr) -> Response<proto::AttrReply> {
    Response::new(proto::AttrReply {
        attr: Some(attr_to_proto(a)),
        locked: false,
        parent: None,
    })
}

/// A disk as the status calls show it; `draining` lists the disks being drained.
fn disk_status(d: &crate::store::DiskStatus, draining: &[crate::ids::DiskId]) -> proto::DiskStatus {
    proto::DiskStatus {
        id: d.disk.to_string(),
        path: d
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        total: d.total,
        free: d.free,
        healthy: d.healthy,
        draining: draining.contains(&d.disk),
    }
}

type PieceStream = Pin<Box<dyn Stream<Item = Result<proto::StripePiece, Status>> + Send>>;

#[tonic::async_trait]
impl WormFs for WormFsService {
    async fn lookup(
        &self,
        r: Request<proto::EntryRequest>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        let who = caller_of(&r)?;
        let r = r.into_inner();
        let parent = ino("parent", r.parent)?;
        self.fs
            .check_lookup(&who, parent)
            .map_err(|e| status("lookup", e))?;
        let a = self
            .fs
            .lookup(parent, name("name", &r.name)?)
            .map_err(|e| status("lookup", e))?;
        Ok(attr_reply(&a))
    }

    async fn get_attr(
        &self,
        r: Request<proto::InoRequest>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        let a = self
            .fs
            .getattr(ino("ino", r.into_inner().ino)?)
            .map_err(|e| status("getattr", e))?;
        Ok(attr_reply(&a))
    }

    async fn set_attr(
        &self,
        r: Request<proto::SetAttrRequest>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let perm = r.perm.map(|p| u16::try_from(p & 0o7777).expect("masked"));
        let mut args = SetAttrArgs {
            perm,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            atime: r.atime.map(Timestamp),
            mtime: r.mtime.map(Timestamp),
        };
        let file = ino("ino", r.ino)?;
        if let Err(e) = self.fs.check_setattr(&who, file, &mut args, r.times_now) {
            return match self.repeat_of(&request_id).and_then(|a| a.attr) {
                Some(a) => Ok(attr_reply(&a)),
                None => Err(status("setattr", e)),
            };
        }
        let a = crate::node::once(request_id, self.fs.setattr(file, args))
            .await
            .map_err(|e| status("setattr", e))?;
        Ok(attr_reply(&a))
    }

    async fn create(
        &self,
        r: Request<proto::CreateRequest>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let kind = match proto::FileKind::try_from(r.kind) {
            Ok(proto::FileKind::File) => CreateKind::File,
            Ok(proto::FileKind::Directory) => CreateKind::Directory,
            Ok(proto::FileKind::Symlink) => {
                if r.symlink_target.is_empty() || r.symlink_target.len() > 4096 {
                    return Err(invalid(
                        "symlink_target",
                        "a link target is 1 to 4096 bytes",
                    ));
                }
                CreateKind::Symlink(r.symlink_target)
            }
            Ok(proto::FileKind::Fifo) => CreateKind::Fifo,
            Ok(proto::FileKind::Socket) => CreateKind::Socket,
            Ok(proto::FileKind::CharDevice) => CreateKind::CharDevice(r.rdev),
            Ok(proto::FileKind::BlockDevice) => CreateKind::BlockDevice(r.rdev),
            _ => return Err(invalid("kind", format!("unknown file kind {}", r.kind))),
        };
        let perm = u16::try_from(r.perm & 0o7777).expect("masked");
        let parent = ino("parent", r.parent)?;
        let directory = matches!(kind, CreateKind::Directory);
        let perm = self
            .fs
            .check_create(&who, parent, r.uid, r.gid, perm, directory)
            .map_err(|e| status("create", e))?;
        let file = matches!(kind, CreateKind::File);
        let a = crate::node::once(
            request_id,
            self.fs
                .create(parent, name("name", &r.name)?, kind, perm, r.uid, r.gid),
        )
        .await
        .map_err(|e| status("create", e))?;
        let mut reply = attr_reply(&a);
        // the directory as the new entry left it: what the kernel of a mount asks next
        reply.get_mut().parent = self.fs.getattr(parent).ok().map(|p| attr_to_proto(&p));
        // the creator's open lock, in the same call: a refusal (or no lock service) leaves
        // the creator to ask for it on its own and hear why
        if let (true, Some(mut lr), Some(locks)) = (file, r.open_lock, &self.locks) {
            lr.op = super::locks::op::ACQUIRE;
            lr.lock = Some(super::locks::spec(&crate::locks::Held::open(
                a.ino.0,
                crate::locks::LockKind::OpenWrite,
            )));
            if let Ok(l) = super::locks::lock(&self.fs, locks, &who, lr).await {
                reply.get_mut().locked = l.granted;
            }
        }
        Ok(reply)
    }

    async fn link(
        &self,
        r: Request<proto::LinkRequest>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let new_parent = ino("new_parent", r.new_parent)?;
        if let Err(e) = self.fs.check_link(&who, new_parent) {
            return match self.repeat_of(&request_id) {
                Some(applied) => applied
                    .attr
                    .map(|a| attr_reply(&a))
                    .ok_or_else(|| status("link", e)),
                None => Err(status("link", e)),
            };
        }
        let a = crate::node::once(
            request_id,
            self.fs.link(
                ino("ino", r.ino)?,
                new_parent,
                name("new_name", &r.new_name)?,
            ),
        )
        .await
        .map_err(|e| status("link", e))?;
        Ok(attr_reply(&a))
    }

    async fn unlink(
        &self,
        r: Request<proto::EntryRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let (parent, n) = (ino("parent", r.parent)?, name("name", &r.name)?);
        if let Err(e) = self.fs.check_remove(&who, parent, n) {
            return match self.repeat_of(&request_id) {
                Some(_) => Ok(Response::new(proto::Empty {})),
                None => Err(status("unlink", e)),
            };
        }
        crate::node::once(request_id, self.fs.unlink(parent, n))
            .await
            .map_err(|e| status("unlink", e))?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn rmdir(
        &self,
        r: Request<proto::EntryRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let (parent, n) = (ino("parent", r.parent)?, name("name", &r.name)?);
        if let Err(e) = self.fs.check_remove(&who, parent, n) {
            return match self.repeat_of(&request_id) {
                Some(_) => Ok(Response::new(proto::Empty {})),
                None => Err(status("rmdir", e)),
            };
        }
        crate::node::once(request_id, self.fs.rmdir(parent, n))
            .await
            .map_err(|e| status("rmdir", e))?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn rename(
        &self,
        r: Request<proto::RenameRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let (parent, n) = (ino("parent", r.parent)?, name("name", &r.name)?);
        let (new_parent, new_n) = (
            ino("new_parent", r.new_parent)?,
            name("new_name", &r.new_name)?,
        );
        if let Err(e) = self.fs.check_rename(&who, parent, n, new_parent, new_n) {
            return match self.repeat_of(&request_id) {
                Some(_) => Ok(Response::new(proto::Empty {})),
                None => Err(status("rename", e)),
            };
        }
        crate::node::once(
            request_id,
            self.fs.rename(parent, n, new_parent, new_n, r.no_replace),
        )
        .await
        .map_err(|e| status("rename", e))?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn read_dir(
        &self,
        r: Request<proto::ReadDirRequest>,
    ) -> Result<Response<proto::ReadDirReply>, Status> {
        let who = caller_of(&r)?;
        let r = r.into_inner();
        let dir = ino("ino", r.ino)?;
        self.fs
            .check_readdir(&who, dir)
            .map_err(|e| status("readdir", e))?;
        let limit = match r.limit {
            0 => READDIR_PAGE,
            n => n.min(READDIR_PAGE),
        };
        // One more than the page, to tell whether more follow.
        let mut entries = self
            .fs
            .readdir_after(dir, &r.after, u64::from(limit) + 1)
            .map_err(|e| status("readdir", e))?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        // attributes only for a caller who may look the names up (search permission)
        let with_attrs = r.with_attrs && self.fs.check_lookup(&who, dir).is_ok();
        Ok(Response::new(proto::ReadDirReply {
            more,
            entries: entries
                .into_iter()
                .map(|e| proto::DirEntry {
                    // an entry removed meanwhile goes without: the client asks for it
                    attr: with_attrs
                        .then(|| self.fs.getattr(e.ino).ok())
                        .flatten()
                        .map(|a| crate::rpc::convert::attr_to_proto(&a)),
                    name: e.name,
                    ino: e.ino.0,
                    kind: kind_to_proto(e.kind) as i32,
                })
                .collect(),
        }))
    }

    async fn read_link(
        &self,
        r: Request<proto::InoRequest>,
    ) -> Result<Response<proto::ReadLinkReply>, Status> {
        let target = self
            .fs
            .readlink(ino("ino", r.into_inner().ino)?)
            .map_err(|e| status("readlink", e))?;
        Ok(Response::new(proto::ReadLinkReply { target }))
    }

    async fn get_xattr(
        &self,
        r: Request<proto::XattrRequest>,
    ) -> Result<Response<proto::XattrValue>, Status> {
        self.serve_get_xattr(r).await
    }

    async fn set_xattr(
        &self,
        r: Request<proto::SetXattrRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.serve_set_xattr(r).await
    }

    async fn list_xattr(
        &self,
        r: Request<proto::InoRequest>,
    ) -> Result<Response<proto::XattrNames>, Status> {
        self.serve_list_xattr(r).await
    }

    async fn remove_xattr(
        &self,
        r: Request<proto::XattrRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.serve_remove_xattr(r).await
    }

    async fn stat_fs(
        &self,
        _r: Request<proto::Empty>,
    ) -> Result<Response<proto::StatFsReply>, Status> {
        let s = self.fs.statfs().map_err(|e| status("statfs", e))?;
        Ok(Response::new(proto::StatFsReply {
            total_bytes: s.total_bytes,
            free_bytes: s.free_bytes,
            files: s.files,
            block_size: 4096,
            max_name_len: 255,
        }))
    }

    type ReadStripeStream = PieceStream;

    async fn read_stripe(
        &self,
        r: Request<proto::ReadStripeRequest>,
    ) -> Result<Response<PieceStream>, Status> {
        self.serve_read_stripe(r).await
    }

    async fn locate_stripes(
        &self,
        r: Request<proto::LocateStripesRequest>,
    ) -> Result<Response<proto::StripeLocations>, Status> {
        self.serve_locate_stripes(r).await
    }

    async fn write_stripes(
        &self,
        r: Request<Streaming<proto::StripePiece>>,
    ) -> Result<Response<proto::AttrReply>, Status> {
        self.serve_write_stripes(r).await
    }

    async fn set_storage_policy(
        &self,
        r: Request<proto::SetPolicyRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let who = caller_of(&r)?;
        let request_id = request_id_of(&r)?;
        let r = r.into_inner();
        let norm = crate::policy::normalize_path(&r.path).map_err(|e| invalid("path", e))?;
        let attr = self
            .fs
            .attr_at(&norm)
            .map_err(|e| status("set policy", e))?;
        self.fs
            .check_policy(&who, &attr)
            .map_err(|e| status("set policy", e))?;
        let policy = (!r.policy.is_empty()).then_some(r.policy.as_str());
        crate::node::once(request_id, self.fs.set_dir_policy(attr.ino, policy))
            .await
            .map_err(|e| status("set policy", e))?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn get_storage_policy(
        &self,
        r: Request<proto::PathRequest>,
    ) -> Result<Response<proto::PolicyReply>, Status> {
        let norm =
            crate::policy::normalize_path(&r.into_inner().path).map_err(|e| invalid("path", e))?;
        let attr = self
            .fs
            .attr_at(&norm)
            .map_err(|e| status("get policy", e))?;
        let v = self
            .fs
            .policy_of_inode(attr.ino)
            .map_err(|e| status("get policy", e))?;
        Ok(Response::new(proto::PolicyReply {
            name: v.name,
            k: u32::from(v.policy.k),
            m: u32::from(v.policy.m),
            stripe_size: v.policy.stripe_size,
            source: v.source.to_owned(),
        }))
    }

    async fn get_cluster_status(
        &self,
        r: Request<proto::Empty>,
    ) -> Result<Response<proto::ClusterStatusReply>, Status> {
        self.serve_get_cluster_status(r).await
    }

    async fn get_node_health(
        &self,
        r: Request<proto::Empty>,
    ) -> Result<Response<proto::NodeHealthReply>, Status> {
        self.serve_get_node_health(r).await
    }

    async fn add_node(
        &self,
        r: Request<proto::AddNodeRequest>,
    ) -> Result<Response<proto::AddNodeReply>, Status> {
        require_admin(&caller_of(&r)?, "adding a node")?;
        let r = r.into_inner();
        let Some(cluster) = &self.cluster else {
            return Err(Status::failed_precondition(
                "this node runs on its own: add a [cluster] table to its config first",
            ));
        };
        if r.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "addr: `{}` is not an IP:PORT node-to-node address",
                r.addr
            )));
        }
        let peer_id = (!r.peer_id.is_empty()).then_some(r.peer_id);
        let (node, peer_id) = cluster
            .add_node(r.addr, peer_id)
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(proto::AddNodeReply { node, peer_id }))
    }

    async fn remove_node(
        &self,
        r: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        require_admin(&caller_of(&r)?, "removing a node")?;
        let r = r.into_inner();
        let Some(cluster) = &self.cluster else {
            return Err(Status::failed_precondition(
                "this node runs on its own: there is no membership to change",
            ));
        };
        if r.id.is_empty() {
            return Err(Status::invalid_argument("id: name the node to remove"));
        }
        cluster
            .remove_node(r.id)
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn get_file_layout(
        &self,
        r: Request<proto::PathRequest>,
    ) -> Result<Response<proto::FileLayoutReply>, Status> {
        let path = r.into_inner().path;
        super::admin::file_layout(&self.fs, path)
            .await
            .map(Response::new)
            .map_err(|e| status("file layout", e))
    }

    async fn list_workers(
        &self,
        _r: Request<proto::Empty>,
    ) -> Result<Response<proto::WorkersReply>, Status> {
        super::admin::workers(&self.fs)
            .map(Response::new)
            .map_err(|e| status("list workers", e))
    }

    async fn control_worker(
        &self,
        r: Request<proto::WorkerRequest>,
    ) -> Result<Response<proto::WorkersReply>, Status> {
        require_admin(&caller_of(&r)?, "controlling scrub and repair")?;
        let r = r.into_inner();
        self.fs
            .control_worker(&r.name, &r.action, r.deep, r.bytes_per_sec, r.ops_per_sec)
            .await
            .map_err(|e| status("control worker", e))?;
        super::admin::workers(&self.fs)
            .map(Response::new)
            .map_err(|e| status("list workers", e))
    }

    async fn disk_command(
        &self,
        r: Request<proto::DiskRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        require_admin(&caller_of(&r)?, "draining or removing a disk")?;
        let r = r.into_inner();
        if r.disk.is_empty() {
            return Err(Status::invalid_argument("disk: name the disk"));
        }
        let disk = crate::ids::DiskId(r.disk);
        let done = match r.action.as_str() {
            "drain" => self.fs.drain_disk(&disk, true).await,
            "undrain" => self.fs.drain_disk(&disk, false).await,
            "remove" => self.fs.remove_disk(&disk).await,
            other => {
                return Err(Status::invalid_argument(format!(
                    "action: `{other}` is not drain, undrain or remove"
                )))
            }
        };
        done.map_err(|e| status("disk command", e))?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn list_users(
        &self,
        r: Request<proto::Empty>,
    ) -> Result<Response<proto::UsersReply>, Status> {
        super::users::list(&self.fs, &caller_of(&r)?).map(Response::new)
    }

    async fn put_user(
        &self,
        r: Request<proto::PutUserRequest>,
    ) -> Result<Response<proto::PutUserReply>, Status> {
        let caller = caller_of(&r)?;
        super::users::put(&self.fs, &caller, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_user(
        &self,
        r: Request<proto::UserRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let caller = caller_of(&r)?;
        super::users::remove(&self.fs, &caller, r.into_inner().name).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn list_tokens(
        &self,
        r: Request<proto::Empty>,
    ) -> Result<Response<proto::TokensReply>, Status> {
        let caller = caller_of(&r)?;
        super::users::list_tokens(&self.fs, &caller).map(Response::new)
    }

    async fn put_token(
        &self,
        r: Request<proto::PutTokenRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let caller = caller_of(&r)?;
        super::users::put_token(&self.fs, &caller, r.into_inner()).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn remove_token(
        &self,
        r: Request<proto::UserRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let caller = caller_of(&r)?;
        super::users::remove_token(&self.fs, &caller, r.into_inner().name).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn lock(
        &self,
        r: Request<proto::LockRequest>,
    ) -> Result<Response<proto::LockReply>, Status> {
        let caller = caller_of(&r)?;
        let Some(locks) = &self.locks else {
            return Err(super::status_with_errno(
                crate::errno::ENOSYS,
                "this node runs no lock service",
            ));
        };
        super::locks::lock(&self.fs, locks, &caller, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_risk(
        &self,
        r: Request<proto::RiskRequest>,
    ) -> Result<Response<proto::RiskReply>, Status> {
        super::admin::risk(&self.fs, r.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| status("risk", e))
    }
}

/// The request's [`super::REQUEST_ID_HEADER`], if it has one.
fn request_id_of<T>(r: &Request<T>) -> Result<Option<String>, Status> {
    let Some(v) = r.metadata().get(super::REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(id) if crate::node::valid_request_id(id) => Ok(Some(id.to_owned())),
        _ => Err(invalid(
            super::REQUEST_ID_HEADER,
            format!(
                "a request id is 1 to {} ASCII letters, digits and '-'",
                crate::node::MAX_REQUEST_ID
            ),
        )),
    }
}

debug_by_name!(WormFsService);
