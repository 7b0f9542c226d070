//! The FUSE file system: kernel requests in, gRPC calls to a storage node out.
//!
//! Reads fetch whole stripes into a bounded cache and read ahead when access is sequential.
//! Writes fill per-file stripe buffers and send full stripes; flush, fsync, close and
//! truncate send the rest and return only when the node has made it durable. A failure is
//! returned to the application with its errno and logged with its cause.

mod dirs;
mod locking;

use crate::fetch::{lock, Fetcher};
use crate::file::{next_version, seen, FileInner, OpenFile, OpenFiles, Seen};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wormfs::errno;
use wormfs::ids::FileId;
use wormfs::meta::{Attr, DirEntry, FileKind, Timestamp, XattrMode};
use wormfs::rpc::client::{Client, ClientError, SetAttr, StripePieces};
use wormfs::rpc::proto;
use wormfs::rpc::proto_bytes::Bytes;

/// Where files unlinked while open live until their last close (hidden from listings).
pub use wormfs::heal::ORPHAN_DIR;

/// File capabilities: not kept (see `getxattr`).
const CAPABILITY_XATTR: &str = "security.capability";

/// How long the kernel may trust attributes and names.
const TTL: Duration = Duration::from_secs(1);
/// Stripes read ahead of a sequential reader.
const READ_AHEAD: u64 = 2;
/// How far a read may start from where the last one ended and still count as sequential
/// (at least two stripes; see `ReadPattern::note`). The kernel sends a sequential
/// reader's read-ahead as several requests at once, and the request threads take them in
/// any order.
const SEQUENTIAL_WINDOW: u64 = 8 << 20;
/// Dirty stripes a file may hold before they are sent.
const MAX_DIRTY: usize = 8;
/// Background sends of full stripes a file may have on their way at once.
const MAX_SENDING: usize = 2;

/// A stripe's bytes as a read finds them: written here and not yet committed, or fetched.
enum Held {
    Local(Arc<Vec<u8>>),
    Fetched(Arc<StripePieces>),
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Local(d) => d.len(),
            Held::Fetched(p) => p.len(),
        }
    }

    fn slice(&self, lo: usize, hi: usize) -> Bytes {
        match self {
            Held::Local(d) => Bytes::copy_from_slice(&d[lo..hi.min(d.len())]),
            Held::Fetched(p) => p.slice(lo, hi),
        }
    }
}

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

/// A FUSE thread's own runtime, driving its own connection.
struct OwnDriver {
    rt: tokio::runtime::Runtime,
    client: Client,
}

/// What runs a call's future: the thread's own runtime, or the mount's shared one.
enum Driver<'a> {
    Own(&'a tokio::runtime::Runtime),
    Shared(&'a tokio::runtime::Handle),
}

impl Driver<'_> {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Driver::Own(rt) => rt.block_on(f),
            Driver::Shared(h) => h.block_on(f),
        }
    }
}

enum Handle {
    /// An open file, and the open lock it took (`Some(true)`: for write).
    File(Option<bool>),
    /// An open directory: its entries, each with its attributes when the node sent them.
    Dir(Vec<(DirEntry, Option<Attr>)>),
}

type Result<T> = std::result::Result<T, ClientError>;

/// A stripe buffer shared between the mount's state and a send in flight.
struct SharedStripe(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedStripe {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The reply types, answered the same way on failure.
trait Fail {
    fn fail(self, e: Errno);
}

macro_rules! fail_by_error {
    ($($t:ty),*) => { $(impl Fail for $t { fn fail(self, e: Errno) { self.error(e) } })* };
}
fail_by_error!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

/// What to create, for [`WormFuse::create_node`].
struct NodeSpec {
    kind: proto::FileKind,
    mode: u32,
    umask: u32,
    rdev: u32,
    target: String,
}

impl NodeSpec {
    fn new(kind: proto::FileKind, mode: u32, umask: u32) -> NodeSpec {
        NodeSpec {
            kind,
            mode,
            umask,
            rdev: 0,
            target: String::new(),
        }
    }
}

fn errno_of(e: &ClientError) -> Errno {
    Errno::from_i32(e.errno)
}

fn invalid(what: &str) -> ClientError {
    ClientError {
        errno: errno::EINVAL,
        message: what.to_owned(),
    }
}

fn name_str(name: &OsStr) -> Result<&str> {
    name.to_str()
        .ok_or_else(|| invalid("file names must be UTF-8"))
}

fn time(t: Timestamp) -> SystemTime {
    if t.0 >= 0 {
        UNIX_EPOCH + Duration::from_nanos(t.0 as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(t.0.unsigned_abs())
    }
}

fn stamp(t: TimeOrNow) -> Timestamp {
    match t {
        TimeOrNow::Now => Timestamp::now(),
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        },
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn fuse_attr(a: &Attr) -> FileAttr {
    let blksize = a
        .layout
        .as_ref()
        .map_or(4096, |l| l.stripe_size.min(1 << 20) as u32);
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
        crtime: time(a.crtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize,
        flags: 0,
    }
}

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
            closed: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: std::sync::atomic::AtomicU64::new(1),
            stripes,
            orphans: Mutex::new(HashMap::new()),
            threads: Mutex::new(HashMap::new()),
            locks,
        }
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Makes a call to the node from a FUSE thread. Each FUSE thread has its own
    /// single-threaded runtime and connection, so a request's round trip stays on the
    /// thread that serves it: no hand-off to the shared runtime's workers and back, which
    /// costs more than the call itself on a small machine.
    fn rpc<T>(&self, call: impl FnOnce(&Client, &Driver<'_>) -> T) -> T {
        match self.own_driver() {
            Some(own) => call(&own.client, &Driver::Own(&own.rt)),
            None => call(&self.client, &Driver::Shared(&self.rt)),
        }
    }

    /// [`WormFuse::rpc`] acting as the caller of `req`: the node checks its permissions.
    /// Only the call the caller asked for goes this way; what the mount does for itself
    /// (the orphan directory, data sent in the background) acts as the mount's identity.
    fn rpc_as<T>(&self, req: &Request, call: impl FnOnce(&Client, &Driver<'_>) -> T) -> T {
        wormfs::rpc::client::acting_as(crate::caller::of(req), || self.rpc(call))
    }

    /// [`WormFuse::rpc_as`] with `req`'s caller, or [`WormFuse::rpc`] without one.
    fn rpc_opt<T>(&self, req: Option<&Request>, call: impl FnOnce(&Client, &Driver<'_>) -> T) -> T {
        match req {
            Some(req) => self.rpc_as(req, call),
            None => self.rpc(call),
        }
    }

    fn own_driver(&self) -> Option<Arc<OwnDriver>> {
        let id = std::thread::current().id();
        if let Some(d) = lock(&self.threads).get(&id) {
            return d.clone();
        }
        let made = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                let client = rt.block_on(self.client.fork()).map_err(|e| e.message)?;
                Ok(Arc::new(OwnDriver { rt, client }))
            });
        let own = match made {
            Ok(own) => Some(own),
            Err(e) => {
                tracing::warn!(error = %e, "a FUSE thread could not open its own connection; it shares the mount's");
                None
            }
        };
        lock(&self.threads).insert(id, own.clone());
        own
    }

    fn open_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        self.files.lock().get(&ino).cloned()
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

    fn log_err(&self, op: &str, e: &ClientError) {
        if e.errno == errno::EIO || e.errno == errno::ENOSPC {
            tracing::error!(op, errno = e.errno, "{}", e.message);
        } else {
            tracing::debug!(op, errno = e.errno, "{}", e.message);
        }
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

    /// Registers an open of a regular file and returns its handle, and whether the
    /// kernel may keep the pages it cached of the file before (it is unchanged since).
    fn open_regular(&self, attr: &Attr, open_lock: Option<bool>) -> Result<(u64, bool)> {
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

    /// Fetches a stripe (cache first). Returns the stored bytes (shorter than the stripe
    /// or empty for a hole).
    fn fetch(&self, ino: u64, index: u64, version: u64) -> Result<Arc<StripePieces>> {
        self.stripes.get(&self.rt, ino, index, version)
    }

    fn read_ahead(&self, ino: u64, stripes: &[u64], version: u64) {
        for &index in stripes {
            self.stripes.prefetch(&self.rt, ino, index, version);
        }
    }

    /// Sends every dirty stripe of a file; on failure they stay dirty and the error is
    /// returned (the data is not stored).
    /// Waits for the oldest background send. A failed one puts its stripes back in the
    /// buffer (unless rewritten since), so the next flush sends them again, and returns
    /// the error.
    fn wait_oldest(&self, inner: &mut FileInner) -> Result<()> {
        let Some(p) = inner.pending.pop_front() else {
            return Ok(());
        };
        let outcome = self.block(p.task).unwrap_or_else(|e| {
            Err(ClientError {
                errno: errno::EIO,
                message: format!("background send failed: {e}"),
            })
        });
        for (index, data) in &p.stripes {
            if inner
                .sending
                .get(index)
                .is_some_and(|d| Arc::ptr_eq(d, data))
            {
                inner.sending.remove(index);
            }
        }
        match outcome {
            Ok(attr) => {
                // The sent stripes are read from the node from now on. A fetch of one of
                // them that started before the node stored it (a read-ahead, say) holds
                // the old bytes: a new version keeps it from being served.
                inner.version = next_version();
                inner.seen = seen(&attr);
                Ok(())
            }
            Err(e) => {
                for (index, data) in p.stripes {
                    inner
                        .dirty
                        .entry(index)
                        .or_insert_with(|| data.as_ref().clone());
                }
                Err(e)
            }
        }
    }

    /// Waits for every background send; the first error, if any.
    fn wait_all(&self, inner: &mut FileInner) -> Result<()> {
        let mut first = Ok(());
        while !inner.pending.is_empty() {
            let r = self.wait_oldest(inner);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Sends full stripes in the background, at most [`MAX_SENDING`] sends at a time, and
    /// in order for any one stripe.
    fn send_behind(&self, ino: u64, inner: &mut FileInner, indexes: Vec<u64>) -> Result<()> {
        if indexes.iter().any(|i| inner.sending.contains_key(i)) {
            self.wait_all(inner)?; // an older version of one of them is still on its way
        }
        let stripes: Vec<(u64, Arc<Vec<u8>>)> = indexes
            .into_iter()
            .filter_map(|i| inner.dirty.remove(&i).map(|d| (i, Arc::new(d))))
            .collect();
        for (i, d) in &stripes {
            inner.sending.insert(*i, d.clone());
        }
        let payload: Vec<(FileId, u64, Bytes)> = stripes
            .iter()
            .map(|(i, d)| (FileId(ino), *i, Bytes::from_owner(SharedStripe(d.clone()))))
            .collect();
        let client = self.client.clone();
        let task = self
            .rt
            .spawn(async move { client.write_stripes(payload).await });
        inner
            .pending
            .push_back(crate::file::Pending { stripes, task });
        while inner.pending.len() > MAX_SENDING {
            self.wait_oldest(inner)?;
        }
        Ok(())
    }

    fn flush_file(&self, ino: u64, inner: &mut FileInner) -> Result<()> {
        // Failed background sends are back in `dirty` and go again below.
        let _ = self.wait_all(inner);
        if inner.dirty.is_empty() {
            return Ok(());
        }
        // The buffers go out as they are and come back only if the send fails.
        let dirty = std::mem::take(&mut inner.dirty);
        let shared: Vec<(u64, Arc<Vec<u8>>)> =
            dirty.into_iter().map(|(i, d)| (i, Arc::new(d))).collect();
        let stripes: Vec<(FileId, u64, Bytes)> = shared
            .iter()
            .map(|(i, d)| (FileId(ino), *i, Bytes::from_owner(SharedStripe(d.clone()))))
            .collect();
        let sent = self.rpc(|c, d| d.block_on(c.write_stripes(stripes)));
        let attr = match sent {
            Ok(attr) => attr,
            Err(e) => {
                inner.dirty = shared
                    .into_iter()
                    .map(|(i, d)| (i, Arc::try_unwrap(d).unwrap_or_else(|d| d.as_ref().clone())))
                    .collect();
                return Err(e);
            }
        };
        inner.version = next_version();
        inner.seen = seen(&attr);
        inner.size = inner.size.max(attr.size);
        inner.local_mtime = None; // the node's times now include these writes
        Ok(())
    }

    fn do_write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let file = self.open_file(ino).ok_or_else(|| ClientError {
            errno: errno::EIO,
            message: format!("write to inode {ino} without an open handle"),
        })?;
        let s = file.stripe_size;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= i64::MAX as u64)
            .ok_or_else(|| ClientError {
                errno: errno::EFBIG,
                message: "write past the largest file size".into(),
            })?;
        let mut inner = file.lock();
        let mut pos = offset;
        while pos < end {
            let index = pos / s;
            let start = index * s;
            let take = ((start + s).min(end) - pos) as usize;
            let src = &data[(pos - offset) as usize..(pos - offset) as usize + take];
            if !inner.dirty.contains_key(&index) {
                // Read-modify-write: start from what the stripe holds now.
                let mut base = Vec::new();
                if start < inner.size && !(pos == start && take as u64 == s) {
                    match inner.sending.get(&index) {
                        Some(d) => base.extend_from_slice(d),
                        None => base = self.fetch(ino, index, inner.version)?.to_vec(),
                    }
                    let want = (inner.size - start).min(s) as usize;
                    if base.len() < want {
                        base.resize(want, 0);
                    }
                }
                inner.dirty.insert(index, base);
            }
            let stripe = inner.dirty.get_mut(&index).expect("inserted above");
            FileInner::apply(stripe, (pos - start) as usize, src);
            pos += take as u64;
        }
        inner.size = inner.size.max(end);
        inner.local_mtime = Some(Timestamp::now().0);
        inner.version = next_version();
        inner.changed_here = true;
        self.stripes.forget_file(ino);
        // Full stripes go to the node in the background; when too much is buffered,
        // everything is sent and waited for.
        if inner.dirty.len() > MAX_DIRTY {
            self.flush_file(ino, &mut inner)?;
        } else {
            let full: Vec<u64> = inner
                .dirty
                .iter()
                .filter(|(_, d)| d.len() as u64 == s)
                .map(|(i, _)| *i)
                .collect();
            if !full.is_empty() {
                self.send_behind(ino, &mut inner, full)?;
            }
        }
        Ok(data.len() as u32)
    }

    fn do_read(&self, ino: u64, offset: u64, size: u32) -> Result<Bytes> {
        let Some(file) = self.open_file(ino) else {
            return Err(ClientError {
                errno: errno::EIO,
                message: format!("read of inode {ino} without an open handle"),
            });
        };
        let s = file.stripe_size;
        let (file_size, version, sequential, dirty, ahead) = {
            let mut inner = file.lock();
            let end = offset.saturating_add(u64::from(size)).min(inner.size);
            let size = inner.size;
            let sequential = inner
                .reads
                .note(offset, end, size, SEQUENTIAL_WINDOW.max(2 * s));
            let first = offset / s;
            let last = end.div_ceil(s);
            let dirty: HashMap<u64, Arc<Vec<u8>>> = (first..last)
                .filter_map(|i| inner.local_stripe(i).map(|d| (i, d)))
                .collect();
            // The next stripes, to fetch while this read waits for its own; not those this
            // mount holds itself (buffered or being sent): the node's copy is not served
            // while the mount's is newer.
            let ahead: Vec<u64> = if sequential {
                (last..(last + READ_AHEAD).min(inner.size.div_ceil(s)))
                    .filter(|&i| !inner.holds(i))
                    .collect()
            } else {
                Vec::new()
            };
            (inner.size, inner.version, sequential, dirty, ahead)
        };
        let end = offset.saturating_add(u64::from(size)).min(file_size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let (first, last) = (offset / s, end.div_ceil(s));
        self.read_ahead(ino, &ahead, version);
        // The answer in parts; a read inside one fetched piece is answered from it as is.
        let mut parts: Vec<Bytes> = Vec::new();
        let zeros = |n: u64| Bytes::from(vec![0u8; n as usize]); // holes read as zeros
        for index in first..last {
            let start = index * s;
            let lo = offset.max(start) - start;
            let hi = end.min(start + s) - start;
            let held = match dirty.get(&index) {
                Some(d) => Held::Local(d.clone()),
                None if sequential => Held::Fetched(self.fetch(ino, index, version)?),
                // A jump: fetch only the bytes asked for, unless the stripe is cached.
                None => match self.stripes.cached(ino, index, version) {
                    Some(hit) => Held::Fetched(hit),
                    None => {
                        self.stripes.note_range();
                        // A stripe this short may be kept in the metadata: the node answers
                        // it in one call, where a local read would first locate it only to
                        // find no chunk files (a small file's read would cost two calls).
                        let stored = file_size.saturating_sub(start).min(s);
                        let local = (stored > wormfs::policy::INLINE_MAX_LIMIT)
                            .then(|| {
                                self.stripes.read_range_local(
                                    &self.rt,
                                    (ino, index, version),
                                    lo,
                                    hi - lo,
                                )
                            })
                            .flatten();
                        let bytes = match local {
                            Some(bytes) => bytes,
                            None => self.rpc(|c, d| {
                                d.block_on(c.read_stripe_range(FileId(ino), index, lo, hi - lo))
                            })?,
                        };
                        let got = (bytes.len() as u64).min(hi - lo);
                        parts.push(Bytes::from(bytes));
                        if got < hi - lo {
                            parts.push(zeros(hi - lo - got));
                        }
                        continue;
                    }
                },
            };
            let have = (held.len() as u64).min(hi);
            if lo < have {
                parts.push(held.slice(lo as usize, have as usize));
            }
            if hi > lo.max(have) {
                parts.push(zeros(hi - lo.max(have)));
            }
        }
        Ok(match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => {
                let mut out = Vec::with_capacity((end - offset) as usize);
                for p in &parts {
                    out.extend_from_slice(p);
                }
                Bytes::from(out)
            }
        })
    }

    /// Answers a request: `ok` with the value, or the error's errno, logged with its cause.
    fn answer<R: Fail, T>(&self, op: &str, reply: R, r: Result<T>, ok: impl FnOnce(R, T)) {
        match r {
            Ok(v) => ok(reply, v),
            Err(e) => {
                self.log_err(op, &e);
                reply.fail(errno_of(&e))
            }
        }
    }

    fn entry(&self, reply: ReplyEntry, r: Result<Attr>, op: &str) {
        self.answer(op, reply, r, |reply, a| {
            reply.entry(&TTL, &fuse_attr(&self.with_local_size(a)), Generation(0))
        })
    }

    fn empty(&self, reply: ReplyEmpty, r: Result<()>, op: &str) {
        self.answer(op, reply, r, |reply, ()| reply.ok())
    }

    fn create_node(
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
    fn create_node_locked(
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
        self.rpc_as(req, |c, d| d.block_on(c.create_locked(request)))
    }

    /// The directory holding files unlinked while open here, created when first needed.
    fn orphan_dir(&self) -> Result<FileId> {
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
    fn hide_if_open(&self, parent: u64, name: &str, ino: u64) -> Result<bool> {
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
    fn reap_orphan(&self, ino: u64) {
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
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = name_str(name)
            .and_then(|n| self.rpc_as(req, |c, d| d.block_on(c.lookup(FileId(parent.0), n))));
        self.entry(reply, r, "lookup")
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.answer(
            "getattr",
            reply,
            self.rpc(|c, d| d.block_on(c.getattr(FileId(ino.0)))),
            |reply, a| reply.attr(&TTL, &fuse_attr(&self.with_local_size(a))),
        )
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
        let r = match (changes_data, self.open_file(ino.0)) {
            (true, Some(file)) => {
                // Buffered writes go first, so they neither survive a truncate nor override
                // an explicit modification time when they are sent later.
                let mut inner = file.lock();
                inner.changed_here = true;
                self.flush_file(ino.0, &mut inner).and_then(|()| {
                    let a = self.rpc_opt(as_caller, |c, d| d.block_on(c.setattr(request)))?;
                    if let Some(new_size) = size {
                        inner.size = new_size;
                        self.stripes.forget_file(ino.0);
                    }
                    inner.local_mtime = None;
                    // Stripes cached under a version were all fetched after its `seen`
                    // (what lets a reopen keep them): a new `seen`, a new version.
                    inner.version = next_version();
                    inner.seen = seen(&a);
                    Ok(a)
                })
            }
            (true, None) => {
                let r = self.rpc_opt(as_caller, |c, d| d.block_on(c.setattr(request)));
                lock(&self.closed).remove(&ino.0);
                self.stripes.forget_file(ino.0);
                r
            }
            (false, _) => self.rpc_opt(as_caller, |c, d| d.block_on(c.setattr(request))),
        };
        self.answer("setattr", reply, r, |reply, a| {
            reply.attr(&TTL, &fuse_attr(&self.with_local_size(a)))
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.answer(
            "readlink",
            reply,
            self.rpc(|c, d| d.block_on(c.readlink(FileId(ino.0)))),
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
            let target = self.rpc(|c, d| d.block_on(c.lookup(FileId(parent.0), n)))?;
            if self.hide_if_open(parent.0, n, target.ino.0)? {
                return Ok(());
            }
            self.rpc_as(req, |c, d| d.block_on(c.unlink(FileId(parent.0), n)))
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
            if !no_replace {
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
        let r = self.take_open_lock(ino.0, write).and_then(|(lock, attr)| {
            let a = match attr.map(wormfs::rpc::convert::attr_from_proto) {
                Some(Ok(a)) => Ok(a),
                _ => self.rpc(|c, d| d.block_on(c.getattr(FileId(ino.0)))),
            };
            a.and_then(|a| match a.layout {
                Some(_) => self.open_regular(&a, lock),
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
        if let Some(Handle::File(lock)) = self.drop_handle(fh) {
            self.drop_open_lock(ino.0, lock);
        }
        if let Some(owner) = lock_owner {
            // the last descriptor of an open file with a flock lock
            self.release_lock_owner(ino.0, owner.0);
        }
        let mut r = Ok(());
        if let Some(f) = self.open_file(ino.0) {
            let mut inner = f.lock();
            r = self.flush_file(ino.0, &mut inner);
            inner.opens = inner.opens.saturating_sub(1);
            let last = inner.opens == 0;
            f.handles.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let clean = inner.dirty.is_empty() && inner.pending.is_empty();
            let kept = (!inner.changed_here).then_some(Closed {
                version: inner.version,
                seen: inner.seen,
            });
            drop(inner);
            if last {
                // Another open of the file may have come in since: it found this entry and
                // counts on it, so only a file still closed under the map's lock goes.
                let mut files = self.files.lock();
                let still_closed = files.get(&ino.0).is_some_and(|g| Arc::ptr_eq(g, &f))
                    && f.handles.load(std::sync::atomic::Ordering::SeqCst) == 0;
                if still_closed && clean {
                    files.remove(&ino.0);
                    if let Some(kept) = kept {
                        let mut closed = lock(&self.closed);
                        if closed.len() >= CLOSED_KEPT {
                            closed.clear(); // their stripes are read again, nothing worse
                        }
                        closed.insert(ino.0, kept);
                    }
                }
                drop(files);
                if still_closed {
                    self.reap_orphan(ino.0);
                }
            }
        }
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
        let r = self.rpc(|c, d| d.block_on(c.statfs()));
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
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::Replace
        } else {
            XattrMode::Any
        };
        let r = name_str(name).and_then(|n| {
            if n == CAPABILITY_XATTR {
                return Err(ClientError {
                    errno: errno::EOPNOTSUPP,
                    message: format!("{CAPABILITY_XATTR}: WormFS does not keep file capabilities"),
                });
            }
            self.rpc_as(req, |c, d| {
                d.block_on(c.setxattr(FileId(ino.0), n, value, mode))
            })
        });
        self.empty(reply, r, "setxattr")
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if name == CAPABILITY_XATTR {
            // The kernel asks before every write(); no file here has one (setxattr refuses
            // it), so the answer needs no round trip to the node.
            reply.error(Errno::from_i32(errno::ENODATA));
            return;
        }
        let r = name_str(name)
            .and_then(|n| self.rpc_as(req, |c, d| d.block_on(c.getxattr(FileId(ino.0), n))));
        self.answer("getxattr", reply, r, |reply, v| {
            if size == 0 {
                reply.size(v.len() as u32)
            } else if v.len() > size as usize {
                reply.error(Errno::ERANGE)
            } else {
                reply.data(&v)
            }
        })
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = self.rpc_as(req, |c, d| d.block_on(c.listxattr(FileId(ino.0))));
        self.answer("listxattr", reply, r, |reply, names| {
            let mut buf = Vec::new();
            for n in names {
                buf.extend_from_slice(n.as_bytes());
                buf.push(0);
            }
            if size == 0 {
                reply.size(buf.len() as u32)
            } else if buf.len() > size as usize {
                reply.error(Errno::ERANGE)
            } else {
                reply.data(&buf)
            }
        })
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = name_str(name)
            .and_then(|n| self.rpc_as(req, |c, d| d.block_on(c.removexattr(FileId(ino.0), n))));
        self.empty(reply, r, "removexattr")
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
