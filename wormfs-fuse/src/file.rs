//! Per-open-file state: the file's size as this mount sees it and its dirty stripes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use wormfs::meta::Attr;
use wormfs::rpc::client::ClientError;

/// A version never used before in this mount. Versions are global, not per file, so a file
/// reopened after its state was dropped never matches stripes cached under an old version.
pub fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An open regular file. Shared by every handle of one inode.
pub struct OpenFile {
    /// Bytes per stripe of this file.
    pub stripe_size: u64,
    /// The mutable part.
    pub inner: Mutex<FileInner>,
}

/// What writes change.
pub struct FileInner {
    /// The file's size including buffered writes.
    pub size: u64,
    /// Stripes written here and not yet sent, by index: the stripe's bytes from its start.
    pub dirty: BTreeMap<u64, Vec<u8>>,
    /// Open handles.
    pub opens: u32,
    /// Bumped on every change made through this mount, so cached stripes of older versions
    /// are never served.
    pub version: u64,
    /// The node's `(size, mtime)` when last seen, to notice changes made elsewhere.
    pub seen: (u64, i64),
    /// Where the last read ended, to detect sequential reading (`u64::MAX` before the
    /// first read).
    pub read_end: u64,
    /// When this mount last wrote to the file (nanoseconds), so `stat` shows buffered
    /// writes' times before they reach the node.
    pub local_mtime: Option<i64>,
    /// Full stripes sent in the background and not yet confirmed, by index.
    pub sending: BTreeMap<u64, Arc<Vec<u8>>>,
    /// The background sends, oldest first, with the stripes each carries.
    pub pending: VecDeque<Pending>,
}

/// One background send of full stripes.
pub struct Pending {
    /// The stripes it carries.
    pub stripes: Vec<(u64, Arc<Vec<u8>>)>,
    /// Its outcome.
    pub task: tokio::task::JoinHandle<Result<Attr, ClientError>>,
}

impl OpenFile {
    /// State for a file of `size` bytes coded in stripes of `stripe_size`.
    pub fn new(stripe_size: u64, size: u64, mtime: i64) -> OpenFile {
        OpenFile {
            stripe_size,
            inner: Mutex::new(FileInner {
                size,
                dirty: BTreeMap::new(),
                opens: 0,
                version: next_version(),
                seen: (size, mtime),
                read_end: u64::MAX,
                local_mtime: None,
                sending: BTreeMap::new(),
                pending: VecDeque::new(),
            }),
        }
    }

    /// Locks the mutable part.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FileInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileInner {
    /// The bytes of stripe `index` written here and not yet confirmed by the node: the
    /// buffered ones, else the ones being sent.
    pub fn local_stripe(&self, index: u64) -> Option<Arc<Vec<u8>>> {
        match self.dirty.get(&index) {
            Some(d) => Some(Arc::new(d.clone())),
            None => self.sending.get(&index).cloned(),
        }
    }

    /// Copies `data` into the dirty stripe `index` at `at` (bytes from the stripe start),
    /// growing it with zeros as needed.
    pub fn apply(stripe: &mut Vec<u8>, at: usize, data: &[u8]) {
        if stripe.len() < at + data.len() {
            stripe.resize(at + data.len(), 0);
        }
        stripe[at..at + data.len()].copy_from_slice(data);
    }
}
