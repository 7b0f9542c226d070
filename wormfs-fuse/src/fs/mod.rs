//! The FUSE file system: kernel requests in, gRPC calls to a storage node out.
//!
//! Reads fetch whole stripes into a bounded cache and read ahead when access is sequential.
//! Writes fill per-file stripe buffers and send full stripes; flush, fsync, close and
//! truncate send the rest and return only when the node has made it durable. A failure is
//! returned to the application with its errno and logged with its cause.

mod answer;
mod attrs;
mod convert;
mod dirs;
mod driver;
mod fresh;
mod io;
mod listed;
mod locking;
mod nodes;
mod xattrs;

use convert::{errno_of, file_type, fuse_attr, invalid, name_str, stamp};
use driver::OwnDriver;
use nodes::NodeSpec;

use crate::fetch::{lock, Fetcher};
use crate::file::{next_version, seen, FileInner, OpenFile, OpenFiles, Seen};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use wormfs::errno;
use wormfs::ids::FileId;
use wormfs::meta::{Attr, DirEntry, FileKind, Timestamp};
use wormfs::rpc::client::{Client, ClientError, SetAttr, StripePieces};
use wormfs::rpc::proto;
use wormfs::rpc::proto_bytes::Bytes;

/// Where files unlinked while open live until their last close (hidden from listings).
pub use wormfs::heal::ORPHAN_DIR;

/// File capabilities: not kept (see `getxattr`).
const CAPABILITY_XATTR: &str = "security.capability";

/// How long the kernel may trust attributes and names.
const TTL: Duration = Duration::from_secs(1);

/// Settings of a mount.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Bytes of stripes kept in the read cache.
    pub cache_bytes: usize,
    /// Read stripes from the node's chunk files when the node runs on this machine.
    pub local_reads: bool,
}

/// A file closed here: the version its stripes were cached under and the node's
/// attributes then. A reopen that finds the same attributes keeps both.
struct Closed {
    version: u64,
    seen: Seen,
}

/// Closed files remembered at most; past that the record starts again (their stripes are
/// then read again, nothing worse).
const CLOSED_KEPT: usize = 4096;

/// The file system a mount serves.
pub struct WormFuse {
    client: Client,
    rt: tokio::runtime::Handle,
    /// Each FUSE thread's own runtime and connection (see [`WormFuse::rpc`]); `None` when
    /// the thread could not get them and uses the shared ones.
    threads: Mutex<HashMap<std::thread::ThreadId, Option<Arc<OwnDriver>>>>,
    opts: FsOptions,
    files: OpenFiles,
    /// A directory's attributes from this mount's last create (see [`fresh`]).
    fresh: fresh::FreshDirs,
    /// The attributes of a directory's next entries, for a walk of lookups (see
    /// [`listed`]).
    listed: Arc<listed::Listed>,
    /// Files closed here, by inode: what their cached stripes and pages are good for.
    closed: Mutex<HashMap<u64, Closed>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: std::sync::atomic::AtomicU64,
    stripes: Arc<Fetcher>,
    /// Files unlinked while open here: inode → names in the orphan directory.
    orphans: Mutex<HashMap<u64, Vec<String>>>,
    /// The mount's lock session.
    locks: crate::locks::Locks,
}

enum Handle {
    /// An open file, and the open lock it took (`Some(true)`: for write).
    File(Option<bool>),
    /// An open directory: its entries, each with its attributes when the node sent them.
    Dir(Vec<(DirEntry, Option<Attr>)>),
}

type Result<T> = std::result::Result<T, ClientError>;

impl WormFuse {
    /// A file system that talks to the node behind `client`, running calls on `rt`.
    pub fn new(client: Client, rt: tokio::runtime::Handle, opts: FsOptions) -> WormFuse {
        let stripes = Arc::new(Fetcher::new(
            client.clone(),
            opts.cache_bytes,
            opts.local_reads,
        ));
        let locks = crate::locks::Locks::start(client.clone(), rt.clone());
        WormFuse {
            client,
            rt,
            opts,
            files: OpenFiles::default(),
            fresh: fresh::FreshDirs::default(),
            listed: Arc::default(),
            closed: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: std::sync::atomic::AtomicU64::new(1),
            stripes,
            orphans: Mutex::new(HashMap::new()),
            threads: Mutex::new(HashMap::new()),
            locks,
        }
    }

    fn open_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.files.lock().get(&ino).cloned()
    }

    /// True when this mount has no file open (so no name it removes or replaces needs to
    /// live on as an orphan until a last close).
    fn nothing_open(&self) -> bool {
        self.files
            .lock()
            .values()
            .all(|f| f.handles.load(std::sync::atomic::Ordering::SeqCst) == 0)
    }

    /// Attributes as this mount sees them: the node's, with the size of buffered writes.
    fn with_local_size(&self, mut a: Attr) -> Attr {
        if let Some(f) = self.open_file(a.ino.0) {
            let inner = f.lock();
            a.size = inner.size;
            if let Some(t) = inner.local_mtime.filter(|t| *t > a.mtime.0) {
                a.mtime = Timestamp(t);
                a.ctime = Timestamp(t);
            }
        }
        if self
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&a.ino.0)
        {
            a.nlink = a.nlink.saturating_sub(1); // its only remaining name is the orphan one
        }
        a
    }

    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, h);
        fh
    }

    fn drop_handle(&self, fh: FileHandle) -> Option<Handle> {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0)
    }

    /// Sends all buffered writes of every open file (at unmount).
    pub fn flush_all(&self) {
        let files: Vec<(u64, Arc<OpenFile>)> = self
            .files
            .lock()
            .iter()
            .map(|(i, f)| (*i, f.clone()))
            .collect();
        for (ino, f) in files {
            let mut inner = f.lock();
            if let Err(e) = self.flush_file(ino, &mut inner) {
                tracing::error!(
                    ino,
                    bytes = inner.unsaved_bytes(),
                    errno = e.errno,
                    "flush at unmount: writes not stored: {}",
                    e.message
                );
            }
        }
    }

    /// The mount's open files, to ask after the unmount what the node never took.
    pub fn open_files(&self) -> OpenFiles {
        self.files.clone()
    }
}

impl Filesystem for WormFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // fcntl and flock locks come to the mount, which takes them cluster-wide
        if let Err(missing) =
            config.add_capabilities(InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS)
        {
            tracing::warn!(
                ?missing,
                "the kernel does not pass these lock kinds to the mount; they hold on this machine only"
            );
        }
        // listings with attributes (`ls -l` without a lookup and a getattr per entry), when
        // the kernel finds them worth it
        if let Err(missing) = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO)
        {
            tracing::info!(?missing, "the kernel lists without attributes");
        }
        tracing::info!(
            node = self.client.address(),
            cache_bytes = self.opts.cache_bytes,
            "mounted"
        );
        Ok(())
    }

    fn destroy(&mut self) {
        self.flush_all();
        self.locks.end();
        self.stripes.log_summary();
        let (answered, pages) = self.listed.counts();
        tracing::info!(answered, pages, "lookups answered from listed pages");
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = name_str(name).and_then(|n| self.look_up(req, parent.0, n));
        self.entry(reply, r, "lookup")
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        // a directory this mount just created an entry in: as the create left it
        let a = match self.fresh.take(ino.0, TTL) {
            Some(a) => Ok(a),
            None => self.rpc_quiet(|c, d| d.block_on(c.getattr(FileId(ino.0)))),
        };
        self.answer("getattr", reply, a, |reply, a| {
            reply.attr(&TTL, &fuse_attr(&self.with_local_size(a)))
        })
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let times_now =
            matches!(atime, Some(TimeOrNow::Now)) || matches!(mtime, Some(TimeOrNow::Now));
        let request = SetAttr {
            ino: ino.0,
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(|t| stamp(t).0),
            mtime: mtime.map(|t| stamp(t).0),
            times_now,
        };
        // A truncate through an open handle (ftruncate, O_TRUNC) was allowed when the file
        // was opened, as POSIX says: it acts as the mount, not as a caller who may have no
        // write permission any more.
        let through_handle = fh.is_some()
            && mode.is_none()
            && uid.is_none()
            && gid.is_none()
            && atime.is_none()
            && mtime.is_none();
        let as_caller = (!through_handle).then_some(req);
        let changes_data = size.is_some() || mtime.is_some();
        let r = self.set_attr(as_caller, ino.0, request, changes_data);
        self.answer("setattr", reply, r, |reply, a| {
            reply.attr(&TTL, &fuse_attr(&self.with_local_size(a)))
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.answer(
            "readlink",
            reply,
            self.rpc_quiet(|c, d| d.block_on(c.readlink(FileId(ino.0)))),
            |reply, t| reply.data(t.as_bytes()),
        )
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => proto::FileKind::File,
            libc::S_IFIFO => proto::FileKind::Fifo,
            libc::S_IFSOCK => proto::FileKind::Socket,
            libc::S_IFCHR => proto::FileKind::CharDevice,
            libc::S_IFBLK => proto::FileKind::BlockDevice,
            _ => return reply.error(Errno::EINVAL),
        };
        let r = self.create_node(
            req,
            parent,
            name,
            NodeSpec {
                rdev,
                ..NodeSpec::new(kind, mode, umask)
            },
        );
        self.entry(reply, r, "mknod")
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.create_node(
            req,
            parent,
            name,
            NodeSpec::new(proto::FileKind::Directory, mode, umask),
        );
        self.entry(reply, r, "mkdir")
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = name_str(name).and_then(|n| {
            // a file open here lives on until its last close: with none open, no lookup
            if !self.nothing_open() {
                let target = self.rpc(|c, d| d.block_on(c.lookup(FileId(parent.0), n)))?;
                if self.hide_if_open(parent.0, n, target.ino.0)? {
                    return Ok(());
                }
            }
            // a listed page of the directory loses the name, and goes on answering
            let unlinking = self.listed.unlinking(parent.0, n);
            let r = wormfs::rpc::client::acting_as(crate::caller::of(req), || {
                self.rpc_changing(|c, d| d.block_on(c.unlink(FileId(parent.0), n)))
            });
            if r.is_ok() {
                unlinking.done();
            }
            r
        });
        self.empty(reply, r, "unlink")
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = name_str(name)
            .and_then(|n| self.rpc_as(req, |c, d| d.block_on(c.rmdir(FileId(parent.0), n))));
        self.empty(reply, r, "rmdir")
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = match target.to_str() {
            Some(t) => self.create_node(
                req,
                parent,
                link_name,
                NodeSpec {
                    target: t.to_owned(),
                    ..NodeSpec::new(proto::FileKind::Symlink, 0o777, 0)
                },
            ),
            None => Err(invalid("symlink targets must be UTF-8")),
        };
        self.entry(reply, r, "symlink")
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let r = name_str(name).and_then(|n| {
            let nn = name_str(newname)?;
            if !no_replace && !self.nothing_open() {
                // A file replaced while open here lives on until its last close.
                let src = self.rpc(|c, d| d.block_on(c.lookup(FileId(parent.0), n)))?;
                if let Ok(dest) = self.rpc(|c, d| d.block_on(c.lookup(FileId(newparent.0), nn))) {
                    if dest.ino != src.ino && dest.kind == FileKind::File {
                        self.hide_if_open(newparent.0, nn, dest.ino.0)?;
                    }
                }
            }
            self.rpc_as(req, |c, d| {
                d.block_on(c.rename(FileId(parent.0), n, FileId(newparent.0), nn, no_replace))
            })
        });
        self.empty(reply, r, "rename")
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = name_str(newname).and_then(|n| {
            self.rpc_as(req, |c, d| {
                d.block_on(c.link(FileId(ino.0), FileId(newparent.0), n))
            })
        });
        self.entry(reply, r, "link")
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        // The lock first: the node sends the attributes along with the grant, as they are
        // once no conflicting writer can change them (a mount already holding the lock, or
        // an older node, gets them with a getattr).
        let r = self.take_open_lock(ino.0, write).and_then(|(lock, grant)| {
            let (a, content) = match grant.attr.map(wormfs::rpc::convert::attr_from_proto) {
                Some(Ok(a)) => (Ok(a), grant.content),
                _ => (
                    self.rpc_quiet(|c, d| d.block_on(c.getattr(FileId(ino.0)))),
                    None,
                ),
            };
            a.and_then(|a| match a.layout {
                Some(_) => self.open_regular(&a, lock).inspect(|_| {
                    if let Some(bytes) = content {
                        self.keep_content(ino.0, bytes);
                    }
                }),
                None => Err(invalid("not a regular file")),
            })
            .inspect_err(|_| self.drop_open_lock(ino.0, lock))
        });
        self.answer("open", reply, r, |reply, (fh, unchanged)| {
            let flags = if unchanged {
                FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::empty()
            };
            reply.opened(FileHandle(fh), flags)
        })
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        // a new file: this mount opens it for write, and takes the open lock in the same call
        let (open_lock, riding) = self.locks.for_create();
        let created = self.create_node_locked(
            req,
            parent,
            name,
            NodeSpec::new(proto::FileKind::File, mode, umask),
            Some(open_lock),
        );
        // a granted lock means the releases riding on it were dropped first; otherwise they
        // go again with the next call (dropping one twice does nothing)
        self.locks
            .rode(riding, created.as_ref().is_ok_and(|(_, locked)| *locked));
        let r = created.and_then(|(a, locked)| {
            let lock = if locked {
                self.locks.took_at_create(a.ino.0);
                Some(true)
            } else {
                self.take_open_lock(a.ino.0, true)?.0
            };
            self.open_regular(&a, lock)
                .inspect_err(|_| self.drop_open_lock(a.ino.0, lock))
                .map(|(fh, _)| (a, fh))
        });
        self.answer("create", reply, r, |reply, (a, fh)| {
            reply.created(
                &TTL,
                &fuse_attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            )
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.answer(
            "read",
            reply,
            self.do_read(ino.0, offset, size),
            |reply, data| reply.data(&data),
        )
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.answer(
            "write",
            reply,
            self.do_write(ino.0, offset, data),
            |reply, n| reply.written(n),
        )
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // a close: POSIX drops the process's record locks on the file
        if lock_owner.0 != 0 {
            self.release_lock_owner(ino.0, lock_owner.0);
        }
        let r = match self.open_file(ino.0) {
            Some(f) => {
                let mut inner = f.lock();
                self.flush_file(ino.0, &mut inner)
            }
            None => Ok(()),
        };
        self.empty(reply, r, "flush")
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.flush(_req, ino, fh, LockOwner(0), reply)
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.close_handle(ino.0, fh, lock_owner);
        self.empty(reply, r, "release")
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.open_dir(req, ino, reply)
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.list_dir(ino, fh, offset, reply)
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.list_dir_plus(ino, fh, offset, reply)
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.drop_handle(fh);
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let r = self.rpc_quiet(|c, d| d.block_on(c.statfs()));
        self.answer("statfs", reply, r, |reply, s| {
            let bs = u64::from(s.block_size.max(512));
            reply.statfs(
                s.total_bytes / bs,
                s.free_bytes / bs,
                s.free_bytes / bs,
                s.files,
                u64::from(u32::MAX),
                bs as u32,
                s.max_name_len,
                bs as u32,
            )
        })
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.set_xattr(req, ino, name, value, flags, reply)
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.get_xattr(req, ino, name, size, reply)
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.list_xattr(req, ino, size, reply)
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove_xattr(req, ino, name, reply)
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        self.get_lock(ino.0, lock_owner.0, start, end, typ, pid, reply)
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        self.set_lock(
            ino.0,
            lock_owner.0,
            start,
            end,
            typ,
            pid,
            req.pid(),
            sleep,
            reply,
        )
    }
}
