//! [`NodeFs`]: the metadata half of the file system.

use super::FsError;
use crate::ids::{FileId, NodeId};
use crate::meta::{
    Applied, Attr, ChunkLocation, DirEntry, FileKind, FileLayout, MetaStore, MetadataLog,
    MetadataOp, NewKind, Refusal, Timestamp, XattrMode,
};
use crate::placement::PlacementPolicy;
use crate::policy::{PolicySet, StoragePolicy};
use crate::store::{ChunkFolder, ChunkStore};
use std::sync::Arc;

/// What [`NodeFs::create`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateKind {
    /// A regular file (its layout comes from the policy of its directory).
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink(String),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    CharDevice(u32),
    /// A block device.
    BlockDevice(u32),
}

/// Attribute changes for [`NodeFs::setattr`]; `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttrArgs {
    /// Permission bits.
    pub perm: Option<u16>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Size (truncate or extend).
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<Timestamp>,
    /// Modification time.
    pub mtime: Option<Timestamp>,
}

/// File-system wide figures for `statfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Capacity of all disks in bytes.
    pub total_bytes: u64,
    /// Free bytes on all disks.
    pub free_bytes: u64,
    /// Inodes in use.
    pub files: u64,
}

/// The policy that applies to a path, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyView {
    /// The policy's name.
    pub name: String,
    /// Its layout.
    pub policy: StoragePolicy,
    /// `file` (recorded when the file was created), `directory` (set on this directory),
    /// `inherited` or `default`.
    pub source: &'static str,
}

/// The file system as one storage node serves it: metadata changes go through the
/// [`MetadataLog`], reads come from the local [`MetaStore`], stripes are coded onto the
/// node's [`ChunkStore`].
pub struct NodeFs {
    pub(super) node: NodeId,
    pub(super) store: Arc<dyn ChunkStore>,
    pub(super) log: Arc<dyn MetadataLog>,
    pub(super) meta: Arc<MetaStore>,
    pub(super) policies: PolicySet,
    pub(super) placement: Arc<dyn PlacementPolicy>,
    pub(super) liveness: Arc<dyn crate::heal::ClusterLiveness>,
    /// Deletes what committed ops made garbage, after the answer (see [`super::deleter`]).
    pub(super) deleter: super::deleter::Deleter,
}

impl NodeFs {
    /// A file system over these parts.
    pub fn new(
        node: NodeId,
        store: Arc<dyn ChunkStore>,
        log: Arc<dyn MetadataLog>,
        meta: Arc<MetaStore>,
        policies: PolicySet,
        placement: Arc<dyn PlacementPolicy>,
    ) -> NodeFs {
        NodeFs {
            liveness: Arc::new(crate::heal::SoloNode(node.clone())),
            deleter: super::deleter::Deleter::start(store.clone()),
            node,
            store,
            log,
            meta,
            policies,
            placement,
        }
    }

    /// Takes who is master and online from `liveness` (a cluster's); a node alone is
    /// always both.
    pub fn with_liveness(mut self, liveness: Arc<dyn crate::heal::ClusterLiveness>) -> NodeFs {
        self.liveness = liveness;
        self
    }

    /// The placement policy.
    pub fn placement(&self) -> &Arc<dyn PlacementPolicy> {
        &self.placement
    }

    /// The metadata log.
    pub fn log(&self) -> &Arc<dyn MetadataLog> {
        &self.log
    }

    /// Who is master and online.
    pub fn liveness(&self) -> &Arc<dyn crate::heal::ClusterLiveness> {
        &self.liveness
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The local metadata, for reads.
    pub fn meta(&self) -> &Arc<MetaStore> {
        &self.meta
    }

    /// The chunk store.
    pub fn store(&self) -> &Arc<dyn ChunkStore> {
        &self.store
    }

    /// The policies in force.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// Puts `op` through the log; a refusal becomes [`FsError::Refused`]. The chunk files
    /// the op made garbage are deleted in the background (see [`super::deleter`]): the
    /// caller does not wait for the nodes that hold them.
    pub(super) async fn submit(&self, op: MetadataOp) -> Result<Applied, FsError> {
        let applied = self.log.submit(super::request::wrap(op)).await??;
        self.deleter.delete(applied.garbage.clone());
        Ok(applied)
    }

    /// Garbage chunks handed to the background deleter and not deleted yet.
    pub fn garbage_pending(&self) -> usize {
        self.deleter.pending()
    }

    /// Deletes chunk files no metadata refers to. A failure leaves an orphan chunk (found
    /// later by scanning the index files), never lost data, so it is logged, not returned.
    pub(super) async fn collect_garbage(&self, garbage: Vec<ChunkLocation>) {
        if garbage.is_empty() {
            return;
        }
        let store = self.store.clone();
        // the store reaches every chunk it knows the disk of (a cluster store: every node's)
        let _ = tokio::task::spawn_blocking(move || {
            for g in garbage.iter() {
                if let Err(e) = store.delete_chunk(&g.disk, &g.addr()) {
                    tracing::warn!(chunk = %g.key, disk = %g.disk, error = %e, "could not delete a garbage chunk");
                }
            }
        })
        .await;
    }

    /// An inode's attributes.
    pub fn getattr(&self, ino: FileId) -> Result<Attr, FsError> {
        self.meta
            .attr(ino)?
            .ok_or_else(|| Refusal::NotFound(format!("inode {ino}")).into())
    }

    /// The inode at absolute path `path`.
    pub fn attr_at(&self, path: &str) -> Result<Attr, FsError> {
        let norm = crate::policy::normalize_path(path).map_err(FsError::Invalid)?;
        self.meta
            .lookup_path(&norm)?
            .ok_or_else(|| Refusal::NotFound(format!("{norm}: no such file or directory")).into())
    }

    /// The inode `name` in directory `parent`.
    pub fn lookup(&self, parent: FileId, name: &str) -> Result<Attr, FsError> {
        self.meta
            .lookup(parent, name)?
            .ok_or_else(|| Refusal::NotFound(format!("`{name}` in directory {parent}")).into())
    }

    /// At most `limit` entries of a directory whose names sort after `after` (`""` for
    /// the first), by name: one page of a listing, which a client continues after the
    /// last name it got.
    pub fn readdir_after(
        &self,
        dir: FileId,
        after: &str,
        limit: u64,
    ) -> Result<Vec<DirEntry>, FsError> {
        let attr = self.getattr(dir)?;
        if attr.kind != FileKind::Directory {
            return Err(Refusal::NotDir(format!("inode {dir}")).into());
        }
        Ok(self.meta.readdir_after(dir, after, limit)?)
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: FileId) -> Result<String, FsError> {
        self.meta
            .readlink(ino)?
            .ok_or_else(|| Refusal::Invalid(format!("inode {ino} is not a symbolic link")).into())
    }

    /// The path of `name` in `parent`.
    pub(super) fn child_path(&self, parent: FileId, name: &str) -> Result<String, FsError> {
        let dir = self
            .meta
            .path_of(parent)?
            .ok_or_else(|| Refusal::NotFound(format!("directory {parent}")))?;
        Ok(if dir == "/" {
            format!("/{name}")
        } else {
            format!("{dir}/{name}")
        })
    }

    /// Creates `name` in `parent`. A regular file gets the policy of its directory.
    pub async fn create(
        &self,
        parent: FileId,
        name: &str,
        kind: CreateKind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, FsError> {
        let kind = match kind {
            CreateKind::File => {
                let path = self.child_path(parent, name)?;
                let (policy, p) = self
                    .policies
                    .resolve(&path, |d| self.meta.dir_policy_at(d).ok().flatten())?;
                NewKind::File(FileLayout {
                    policy,
                    k: p.k,
                    m: p.m,
                    stripe_size: p.stripe_size,
                    folder: ChunkFolder::for_path(&path),
                })
            }
            CreateKind::Directory => NewKind::Directory,
            CreateKind::Symlink(t) => NewKind::Symlink(t),
            CreateKind::Fifo => NewKind::Fifo,
            CreateKind::Socket => NewKind::Socket,
            CreateKind::CharDevice(d) => NewKind::CharDevice(d),
            CreateKind::BlockDevice(d) => NewKind::BlockDevice(d),
        };
        let op = MetadataOp::Create {
            parent,
            name: name.to_owned(),
            kind,
            perm,
            uid,
            gid,
            time: Timestamp::now(),
        };
        Ok(self
            .submit(op)
            .await?
            .attr
            .expect("create returns the new inode"))
    }

    /// Adds a hard link.
    pub async fn link(
        &self,
        ino: FileId,
        new_parent: FileId,
        new_name: &str,
    ) -> Result<Attr, FsError> {
        let op = MetadataOp::Link {
            ino,
            new_parent,
            new_name: new_name.to_owned(),
            time: Timestamp::now(),
        };
        Ok(self.submit(op).await?.attr.expect("link returns the inode"))
    }

    /// Removes a non-directory.
    pub async fn unlink(&self, parent: FileId, name: &str) -> Result<(), FsError> {
        self.submit(MetadataOp::Unlink {
            parent,
            name: name.to_owned(),
            time: Timestamp::now(),
        })
        .await
        .map(drop)
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: FileId, name: &str) -> Result<(), FsError> {
        self.submit(MetadataOp::Rmdir {
            parent,
            name: name.to_owned(),
            time: Timestamp::now(),
        })
        .await
        .map(drop)
    }

    /// Renames, replacing the destination as `rename(2)` does. The chunks stay in their
    /// folders; the chunk folders' index files learn the new path.
    pub async fn rename(
        &self,
        parent: FileId,
        name: &str,
        new_parent: FileId,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let op = MetadataOp::Rename {
            parent,
            name: name.to_owned(),
            new_parent,
            new_name: new_name.to_owned(),
            no_replace,
            time: Timestamp::now(),
        };
        let applied = self.submit(op).await?;
        crate::crash::point(crate::crash::RENAME_COMMITTED);
        if let Some(attr) = applied.attr.filter(|a| a.kind == FileKind::File) {
            self.note_rename(&attr).await;
        }
        Ok(())
    }

    /// Records a file's new path in the index files of the disks holding its chunks.
    async fn note_rename(&self, attr: &Attr) {
        let (Some(layout), Ok(Some(path))) = (attr.layout.clone(), self.meta.path_of(attr.ino))
        else {
            return;
        };
        let Ok(stripes) = self.meta.stripes(attr.ino) else {
            return;
        };
        let mut disks: Vec<_> = stripes
            .iter()
            .flat_map(|s| s.chunks.iter())
            .filter(|c| c.node == self.node)
            .map(|c| c.disk.clone())
            .collect();
        disks.sort();
        disks.dedup();
        let store = self.store.clone();
        let ino = attr.ino;
        let _ = tokio::task::spawn_blocking(move || {
            for d in disks {
                if let Err(e) = store.rename_file(&d, &layout.folder, ino, &path) {
                    tracing::warn!(disk = %d, error = %e, "could not record a rename in a chunk folder index");
                }
            }
        })
        .await;
    }

    /// Changes attributes; a size change truncates or extends the file.
    pub async fn setattr(&self, ino: FileId, args: SetAttrArgs) -> Result<Attr, FsError> {
        let mut attr = self.getattr(ino)?;
        if let Some(size) = args.size {
            attr = self.truncate(ino, size).await?;
        }
        let SetAttrArgs {
            perm,
            uid,
            gid,
            size: _,
            atime,
            mtime,
        } = args;
        if perm.is_some() || uid.is_some() || gid.is_some() || atime.is_some() || mtime.is_some() {
            let op = MetadataOp::SetAttr {
                ino,
                perm,
                uid,
                gid,
                atime,
                mtime,
                time: Timestamp::now(),
            };
            attr = self
                .submit(op)
                .await?
                .attr
                .expect("setattr returns the inode");
        }
        Ok(attr)
    }

    /// An extended attribute. `user.wormfs.policy` answers the effective policy's name.
    pub fn getxattr(&self, ino: FileId, name: &str) -> Result<Vec<u8>, FsError> {
        if name == super::POLICY_XATTR {
            return Ok(self.policy_of_inode(ino)?.name.into_bytes());
        }
        self.meta
            .xattr(ino, name)?
            .ok_or_else(|| Refusal::NoAttr(name.to_owned()).into())
    }

    /// Sets an extended attribute. `user.wormfs.policy` on a directory sets its policy.
    pub async fn setxattr(
        &self,
        ino: FileId,
        name: &str,
        value: &[u8],
        mode: XattrMode,
    ) -> Result<(), FsError> {
        if name == super::POLICY_XATTR {
            let policy = std::str::from_utf8(value)
                .map_err(|_| FsError::Invalid("a policy name is UTF-8 text".into()))?;
            let policy = policy.trim_end_matches(['\n', '\0']).trim();
            return self
                .set_dir_policy(ino, (!policy.is_empty()).then_some(policy))
                .await;
        }
        let op = MetadataOp::SetXattr {
            ino,
            name: name.to_owned(),
            value: value.to_vec(),
            mode,
            time: Timestamp::now(),
        };
        self.submit(op).await.map(drop)
    }

    /// The names of an inode's extended attributes.
    pub fn listxattr(&self, ino: FileId) -> Result<Vec<String>, FsError> {
        self.getattr(ino)?;
        Ok(self.meta.xattr_names(ino)?)
    }

    /// Removes an extended attribute. Removing `user.wormfs.policy` from a directory makes it
    /// inherit again.
    pub async fn removexattr(&self, ino: FileId, name: &str) -> Result<(), FsError> {
        if name == super::POLICY_XATTR {
            return self.set_dir_policy(ino, None).await;
        }
        self.submit(MetadataOp::RemoveXattr {
            ino,
            name: name.to_owned(),
            time: Timestamp::now(),
        })
        .await
        .map(drop)
    }

    /// Sets (or with `None` clears) a directory's policy.
    pub async fn set_dir_policy(&self, ino: FileId, policy: Option<&str>) -> Result<(), FsError> {
        let attr = self.getattr(ino)?;
        if attr.kind != FileKind::Directory {
            return Err(FsError::NotPermitted(
                "a policy is set on a directory; a file keeps the layout it was written with"
                    .into(),
            ));
        }
        if let Some(p) = policy {
            let layout = self.policies.check_name(p, super::POLICY_XATTR)?;
            let disks = self.store.disks()?.iter().filter(|d| d.healthy).count();
            if layout.width() > disks {
                return Err(FsError::Invalid(format!(
                    "policy `{p}` ({}+{}) needs {} disks, but the cluster has {disks} usable; add disks or choose a narrower policy",
                    layout.k,
                    layout.m,
                    layout.width()
                )));
            }
        }
        self.submit(MetadataOp::SetDirPolicy {
            ino,
            policy: policy.map(str::to_owned),
        })
        .await
        .map(drop)
    }

    /// The policy of the object at `ino`: a file's recorded one, or the one new files in a
    /// directory get.
    pub fn policy_of_inode(&self, ino: FileId) -> Result<PolicyView, FsError> {
        let attr = self.getattr(ino)?;
        if let Some(l) = attr.layout {
            return Ok(PolicyView {
                name: l.policy,
                policy: StoragePolicy {
                    k: l.k,
                    m: l.m,
                    stripe_size: l.stripe_size,
                },
                source: "file",
            });
        }
        let path = self
            .meta
            .path_of(ino)?
            .ok_or_else(|| Refusal::NotFound(format!("inode {ino}")))?;
        // A new file in this directory: resolve as for a child.
        let probe = if path == "/" {
            "/x".to_owned()
        } else {
            format!("{path}/x")
        };
        let (name, policy, origin) = self
            .policies
            .resolve_with_origin(&probe, |d| self.meta.dir_policy_at(d).ok().flatten())?;
        let source = match origin {
            Some(dir) if dir == path => "directory",
            Some(_) => "inherited",
            None => "default",
        };
        Ok(PolicyView {
            name,
            policy,
            source,
        })
    }

    /// File-system wide figures.
    pub fn statfs(&self) -> Result<StatFs, FsError> {
        let disks = self.store.disks()?;
        let (files, _) = self.meta.usage()?;
        Ok(StatFs {
            total_bytes: disks.iter().map(|d| d.total).sum(),
            free_bytes: disks.iter().filter(|d| d.healthy).map(|d| d.free).sum(),
            files,
        })
    }
}

debug_by_name!(NodeFs);
