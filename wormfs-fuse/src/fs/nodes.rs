//! Creating files, directories and links, opening regular files, and the orphan directory
//! of files unlinked while open.

use super::*;

/// What to create, for [`WormFuse::create_node`].
pub(super) struct NodeSpec {
    pub(super) kind: proto::FileKind,
    pub(super) mode: u32,
    pub(super) umask: u32,
    pub(super) rdev: u32,
    pub(super) target: String,
}

impl NodeSpec {
    pub(super) fn new(kind: proto::FileKind, mode: u32, umask: u32) -> NodeSpec {
        NodeSpec {
            kind,
            mode,
            umask,
            rdev: 0,
            target: String::new(),
        }
    }
}

impl WormFuse {
    /// Registers an open of a regular file and returns its handle, and whether the
    /// kernel may keep the pages it cached of the file before (it is unchanged since).
    pub(super) fn open_regular(&self, attr: &Attr, open_lock: Option<bool>) -> Result<(u64, bool)> {
        let layout = attr
            .layout
            .as_ref()
            .ok_or_else(|| invalid("not a regular file"))?;
        let ino = attr.ino.0;
        let mut unchanged = false;
        let file = {
            let mut files = self.files.lock();
            let file = files
                .entry(ino)
                .or_insert_with(|| {
                    // Close-to-open: what this mount cached of the file when it was last
                    // closed is still good if the node's attributes have not moved since.
                    let version = match lock(&self.closed).remove(&ino) {
                        Some(c) if c.seen == seen(attr) => {
                            unchanged = true;
                            c.version
                        }
                        Some(_) => {
                            self.stripes.forget_file(ino);
                            next_version()
                        }
                        None => next_version(),
                    };
                    Arc::new(OpenFile::new(layout.stripe_size, attr, version))
                })
                .clone();
            // counted while the map is locked: a last close cannot drop it from under us
            file.handles
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            file
        };
        let mut inner = file.lock();
        // Attributes fetched before this mount's last flush of the file landed are older
        // than what it knows (an older ctime): they must not shrink the size it writes at.
        let current = attr.ctime.0 >= inner.seen.2;
        if current
            && (inner.opens == 0
                || (inner.dirty.is_empty() && inner.pending.is_empty() && inner.seen != seen(attr)))
        {
            // Changed elsewhere since we last looked: forget cached stripes (close-to-open).
            if inner.seen != seen(attr) {
                inner.version = next_version();
                self.stripes.forget_file(ino);
            }
            if inner.dirty.is_empty() && inner.pending.is_empty() {
                inner.size = attr.size;
            }
            inner.seen = seen(attr);
        }
        inner.opens += 1;
        drop(inner);
        Ok((self.new_handle(Handle::File(open_lock)), unchanged))
    }

    pub(super) fn create_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        spec: NodeSpec,
    ) -> Result<Attr> {
        Ok(self.create_node_locked(req, parent, name, spec, None)?.0)
    }

    /// [`WormFuse::create_node`] with `open_lock` in the request (see
    /// `CreateRequest.open_lock`); true when the node granted it.
    pub(super) fn create_node_locked(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        spec: NodeSpec,
        open_lock: Option<proto::LockRequest>,
    ) -> Result<(Attr, bool)> {
        let name = name_str(name)?;
        let request = proto::CreateRequest {
            parent: parent.0,
            name: name.to_owned(),
            kind: spec.kind as i32,
            perm: spec.mode & !spec.umask & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
            rdev: spec.rdev,
            symlink_target: spec.target,
            open_lock,
        };
        // the directory as the create left it, for the kernel's getattr that follows
        let mut change = self.fresh.begin();
        let _listed = self.listed.change();
        let created = self.rpc_as_quiet(req, |c, d| d.block_on(c.create_locked(request)))?;
        if let Some(dir) = created.parent {
            change.keep(parent.0, dir);
        }
        drop(change);
        Ok((created.attr, created.locked))
    }

    /// The directory holding files unlinked while open here, created when first needed.
    pub(super) fn orphan_dir(&self) -> Result<FileId> {
        match self.rpc(|c, d| d.block_on(c.lookup(FileId::ROOT, ORPHAN_DIR))) {
            Ok(a) => Ok(a.ino),
            Err(e) if e.errno == errno::ENOENT => {
                let req = proto::CreateRequest {
                    parent: FileId::ROOT.0,
                    name: ORPHAN_DIR.to_owned(),
                    kind: proto::FileKind::Directory as i32,
                    perm: 0o700,
                    ..Default::default()
                };
                match self.rpc(|c, d| d.block_on(c.create(req))) {
                    Ok(a) => Ok(a.ino),
                    Err(e) if e.errno == errno::EEXIST => Ok(self
                        .block(self.client.lookup(FileId::ROOT, ORPHAN_DIR))?
                        .ino),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// When `ino` is open here, moves `parent/name` into the orphan directory instead of
    /// removing it, so open handles keep reading and writing (POSIX keeps an unlinked file
    /// until its last close); the last release removes it. Returns whether it did.
    pub(super) fn hide_if_open(&self, parent: u64, name: &str, ino: u64) -> Result<bool> {
        let open = self.open_file(ino).is_some_and(|f| f.lock().opens > 0);
        if !open {
            return Ok(false);
        }
        let dir = self.orphan_dir()?;
        let hidden = format!("{ino}.{}", next_version());
        self.rpc(|c, d| d.block_on(c.rename(FileId(parent), name, dir, &hidden, true)))?;
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ino)
            .or_default()
            .push(hidden);
        Ok(true)
    }

    /// Removes the orphan names of `ino` after its last close.
    pub(super) fn reap_orphan(&self, ino: u64) {
        let Some(names) = self
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino)
        else {
            return;
        };
        let dir = match self.orphan_dir() {
            Ok(d) => d,
            Err(e) => return self.log_err("remove unlinked file", &e),
        };
        for n in names {
            if let Err(e) = self.rpc(|c, d| d.block_on(c.unlink(dir, &n))) {
                self.log_err("remove unlinked file", &e);
            }
        }
    }
}
