//! The metadata calls of [`Client`], one per FUSE operation: lookups, attributes, entries,
//! links, directories, extended attributes, statfs.

use super::*;

/// What [`Client::create_locked`] gives back.
#[derive(Debug, Clone)]
pub struct Created {
    /// The new entry's attributes.
    pub attr: Attr,
    /// The open write lock the request asked for was granted.
    pub locked: bool,
    /// The parent directory's attributes once the entry is in it (`None` from nodes older
    /// than this field).
    pub parent: Option<Attr>,
}

impl Client {
    pub(super) fn attr(reply: proto::AttrReply) -> Result<Attr, ClientError> {
        let a = reply
            .attr
            .ok_or_else(|| proto_err(tonic::Status::invalid_argument("reply without attr")))?;
        attr_from_proto(a).map_err(proto_err)
    }

    /// Looks `name` up in `parent`.
    pub async fn lookup(&self, parent: FileId, name: &str) -> Result<Attr, ClientError> {
        let req = proto::EntryRequest {
            parent: parent.0,
            name: name.to_owned(),
        };
        let r = self
            .call("lookup", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.lookup(req).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// An inode's attributes.
    pub async fn getattr(&self, ino: FileId) -> Result<Attr, ClientError> {
        let r = self
            .call("getattr", Retry::Safe, |mut c| async move {
                c.get_attr(proto::InoRequest { ino: ino.0 }).await
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Changes attributes (size included); repeated on another node under its request id.
    pub async fn setattr(&self, req: SetAttr) -> Result<Attr, ClientError> {
        let id = request_id();
        let r = self
            .call("setattr", Retry::Deduplicated, |mut c| {
                let req = with_request_id(req, &id);
                async move { c.set_attr(req).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Creates an object; see [`proto::CreateRequest`]. Carries a request id, so it is
    /// repeated on the next node when the node in use stops answering during the call, and
    /// applied once.
    pub async fn create(&self, req: proto::CreateRequest) -> Result<Attr, ClientError> {
        Ok(self.create_locked(req).await?.attr)
    }

    /// [`Client::create`], with whether the open write lock the request's `open_lock` asked
    /// for was granted and the parent directory's attributes after the create.
    pub async fn create_locked(&self, req: proto::CreateRequest) -> Result<Created, ClientError> {
        let id = request_id();
        let mut r = self
            .call("create", Retry::Deduplicated, |mut c| {
                let req = with_request_id(req.clone(), &id);
                async move { c.create(req).await }
            })
            .await?
            .into_inner();
        let locked = r.locked;
        let parent = match r.parent.take().map(attr_from_proto) {
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return Err(proto_err(e)),
            None => None,
        };
        Ok(Created {
            attr: Self::attr(r)?,
            locked,
            parent,
        })
    }

    /// Adds a hard link; repeated on another node under its request id, as a create is.
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
        let id = request_id();
        let r = self
            .call("link", Retry::Deduplicated, |mut c| {
                let req = with_request_id(req.clone(), &id);
                async move { c.link(req).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Removes a non-directory; repeated on another node under its request id.
    pub async fn unlink(&self, parent: FileId, name: &str) -> Result<(), ClientError> {
        let req = proto::EntryRequest {
            parent: parent.0,
            name: name.to_owned(),
        };
        let id = request_id();
        self.call("unlink", Retry::Deduplicated, |mut c| {
            let req = with_request_id(req.clone(), &id);
            async move { c.unlink(req).await }
        })
        .await?;
        Ok(())
    }

    /// Removes an empty directory; repeated on another node under its request id.
    pub async fn rmdir(&self, parent: FileId, name: &str) -> Result<(), ClientError> {
        let req = proto::EntryRequest {
            parent: parent.0,
            name: name.to_owned(),
        };
        let id = request_id();
        self.call("rmdir", Retry::Deduplicated, |mut c| {
            let req = with_request_id(req.clone(), &id);
            async move { c.rmdir(req).await }
        })
        .await?;
        Ok(())
    }

    /// Renames; repeated on another node under its request id.
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
        let id = request_id();
        self.call("rename", Retry::Deduplicated, |mut c| {
            let req = with_request_id(req.clone(), &id);
            async move { c.rename(req).await }
        })
        .await?;
        Ok(())
    }

    /// A directory's entries.
    pub async fn readdir(&self, ino: FileId) -> Result<Vec<DirEntry>, ClientError> {
        self.readdir_in_pages(ino, 0).await
    }

    /// A directory's entries, asked for `page` at a time (0: as many as the node sends in
    /// one reply), each page after the last name of the one before.
    pub async fn readdir_in_pages(
        &self,
        ino: FileId,
        page: u32,
    ) -> Result<Vec<DirEntry>, ClientError> {
        let listed = self.list(ino, "", page, false, false).await?;
        Ok(listed.into_iter().map(|(e, _)| e).collect())
    }

    /// A directory's entries with each one's attributes, as a readdirplus wants them. An
    /// entry comes without when the node did not send them: a node of a release before
    /// it, a caller without search permission on the directory, or an entry removed
    /// while the listing was made.
    pub async fn readdir_plus(
        &self,
        ino: FileId,
    ) -> Result<Vec<(DirEntry, Option<Attr>)>, ClientError> {
        self.list(ino, "", 0, true, false).await
    }

    /// One page of [`Client::readdir_plus`]: at most `limit` entries (the node may send
    /// fewer) whose names sort after `after`, with their attributes.
    pub async fn readdir_plus_page(
        &self,
        ino: FileId,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(DirEntry, Option<Attr>)>, ClientError> {
        self.list(ino, after, limit, true, true).await
    }

    /// The entries after `after`, `page` at a time; all of them, or the first page only
    /// (`one_page`).
    async fn list(
        &self,
        ino: FileId,
        after: &str,
        page: u32,
        with_attrs: bool,
        one_page: bool,
    ) -> Result<Vec<(DirEntry, Option<Attr>)>, ClientError> {
        let mut entries: Vec<(DirEntry, Option<Attr>)> = Vec::new();
        loop {
            let req = proto::ReadDirRequest {
                ino: ino.0,
                after: entries
                    .last()
                    .map_or(after, |(e, _)| e.name.as_str())
                    .to_owned(),
                limit: page,
                with_attrs,
            };
            let r = self
                .call("readdir", Retry::Safe, |mut c| {
                    let req = req.clone();
                    async move { c.read_dir(req).await }
                })
                .await?
                .into_inner();
            let got = r.entries.len();
            for e in r.entries {
                let attr = e
                    .attr
                    .map(crate::rpc::convert::attr_from_proto)
                    .transpose()
                    .map_err(proto_err)?;
                let entry = DirEntry {
                    name: e.name,
                    ino: crate::rpc::convert::ino("entries.ino", e.ino).map_err(proto_err)?,
                    kind: crate::rpc::convert::kind_from_proto("entries.kind", e.kind)
                        .map_err(proto_err)?,
                };
                // an attribute of another inode than the entry's is not believed
                let attr = attr.filter(|a| a.ino == entry.ino);
                // Each page must go on after the last: a node that did not would loop us.
                let before = entries.last().map_or(after, |(last, _)| last.name.as_str());
                if !before.is_empty() && before >= entry.name.as_str() {
                    return Err(proto_err(crate::rpc::convert::invalid(
                        "entries.name",
                        format!("{:?} is out of order in the listing", entry.name),
                    )));
                }
                entries.push((entry, attr));
            }
            if !r.more || got == 0 || one_page {
                return Ok(entries);
            }
        }
    }

    /// A symlink's target.
    pub async fn readlink(&self, ino: FileId) -> Result<String, ClientError> {
        Ok(self
            .call("readlink", Retry::Safe, |mut c| async move {
                c.read_link(proto::InoRequest { ino: ino.0 }).await
            })
            .await?
            .into_inner()
            .target)
    }

    /// An extended attribute.
    pub async fn getxattr(&self, ino: FileId, name: &str) -> Result<Vec<u8>, ClientError> {
        let req = proto::XattrRequest {
            ino: ino.0,
            name: name.to_owned(),
        };
        Ok(self
            .call("getxattr", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.get_xattr(req).await }
            })
            .await?
            .into_inner()
            .value)
    }

    /// Sets an extended attribute. Not repeated on another node once sent.
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
        let id = request_id();
        self.call("setxattr", Retry::Deduplicated, |mut c| {
            let req = with_request_id(req.clone(), &id);
            async move { c.set_xattr(req).await }
        })
        .await?;
        Ok(())
    }

    /// Extended attribute names.
    pub async fn listxattr(&self, ino: FileId) -> Result<Vec<String>, ClientError> {
        Ok(self
            .call("listxattr", Retry::Safe, |mut c| async move {
                c.list_xattr(proto::InoRequest { ino: ino.0 }).await
            })
            .await?
            .into_inner()
            .names)
    }

    /// Removes an extended attribute; repeated on another node under its request id.
    pub async fn removexattr(&self, ino: FileId, name: &str) -> Result<(), ClientError> {
        let req = proto::XattrRequest {
            ino: ino.0,
            name: name.to_owned(),
        };
        let id = request_id();
        self.call("removexattr", Retry::Deduplicated, |mut c| {
            let req = with_request_id(req.clone(), &id);
            async move { c.remove_xattr(req).await }
        })
        .await?;
        Ok(())
    }

    /// File-system figures.
    pub async fn statfs(&self) -> Result<proto::StatFsReply, ClientError> {
        Ok(self
            .call("statfs", Retry::Safe, |mut c| async move {
                c.stat_fs(proto::Empty {}).await
            })
            .await?
            .into_inner())
    }
}
