//! Per-open-file state: the file's size as this mount sees it and its dirty stripes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use wormfs::meta::Attr;
use wormfs::rpc::client::ClientError;

/// A version never used before in this mount. Versions are global, not per file, so a file
/// reopened after its state was dropped matches stripes cached under an old version only
/// when the mount hands that version back on purpose (see `WormFuse::open_regular`).
pub fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the node's attributes said of a file's contents: size, mtime and ctime. Every
/// change of a file's bytes or times moves its ctime, which no one can set.
pub type Seen = (u64, i64, i64);

/// The [`Seen`] of `a`.
pub fn seen(a: &Attr) -> Seen {
    (a.size, a.mtime.0, a.ctime.0)
}

/// An open regular file. Shared by every handle of one inode.
pub struct OpenFile {
    /// Bytes per stripe of this file.
    pub stripe_size: u64,
    /// The mutable part.
    pub inner: Mutex<FileInner>,
    /// Handles open on the file, counted under the mount's map of open files: the entry
    /// leaves the map only when none is open (an open racing a last close keeps it).
    pub handles: std::sync::atomic::AtomicUsize,
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
    /// are never served; and whenever `seen` changes, so every stripe cached under this
    /// version was fetched after `seen` was: if the node's attributes still match `seen`
    /// at a reopen, the stripes are still the file's bytes.
    pub version: u64,
    /// The node's attributes when last seen, to notice changes made elsewhere.
    pub seen: Seen,
    /// Whether this mount changed the file's bytes, size or times since the state was
    /// made. Such a file's cached stripes and pages are not kept past its last close: the
    /// node's attributes after this mount's change cannot tell it from another mount's
    /// change made at the same time.
    pub changed_here: bool,
    /// Where reads of the file have been, to tell a sequential reader.
    pub reads: ReadPattern,
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

/// Where the reads of one open file have been.
#[derive(Debug, Clone, Copy)]
pub struct ReadPattern {
    /// Where the last read ended (`u64::MAX` before the first read).
    end: u64,
    /// How many reads running have started near where the one before ended.
    near: u32,
}

impl Default for ReadPattern {
    fn default() -> ReadPattern {
        ReadPattern {
            end: u64::MAX,
            near: 0,
        }
    }
}

impl ReadPattern {
    /// Notes a read of `offset..end` of a file of `size` bytes, and says whether it
    /// continues a sequential reader, whose whole stripes are then fetched and the next
    /// ones read ahead. That is a read
    /// that starts where the last one ended, or within `window` of it when the read before
    /// did too (the kernel sends a sequential reader's read-ahead as several requests, and
    /// the request threads take them in any order). A random read that happens to land
    /// near the last one fetches only its own bytes: counting it as sequential cost 4 KiB
    /// random reads several stripes each, a few times in a hundred. A file's first read is
    /// sequential when it starts at the beginning and more follows (a read of a whole small
    /// file asks for just its bytes).
    pub fn note(&mut self, offset: u64, end: u64, size: u64, window: u64) -> bool {
        let (sequential, near) = if self.end == u64::MAX {
            let first = offset == 0 && end < size;
            (first, first)
        } else {
            let near = offset.abs_diff(self.end) <= window;
            (offset == self.end || (near && self.near > 0), near)
        };
        self.near = if near { self.near.saturating_add(1) } else { 0 };
        self.end = end;
        sequential
    }
}

impl OpenFile {
    /// State for a file coded in stripes of `stripe_size`, as the node's attributes
    /// `attr` describe it, with cached stripes of `version`.
    pub fn new(stripe_size: u64, attr: &Attr, version: u64) -> OpenFile {
        OpenFile {
            stripe_size,
            handles: std::sync::atomic::AtomicUsize::new(0),
            inner: Mutex::new(FileInner {
                size: attr.size,
                dirty: BTreeMap::new(),
                opens: 0,
                version,
                seen: seen(attr),
                changed_here: false,
                reads: ReadPattern::default(),
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
    /// Bytes written here that the node has not confirmed: buffered and being sent.
    pub fn unsaved_bytes(&self) -> u64 {
        let dirty: usize = self.dirty.values().map(Vec::len).sum();
        let sending: usize = self.sending.values().map(|d| d.len()).sum();
        (dirty + sending) as u64
    }

    /// Whether this mount holds bytes of stripe `index` the node has not confirmed
    /// (buffered or being sent): what [`FileInner::local_stripe`] would return, without
    /// copying them.
    pub fn holds(&self, index: u64) -> bool {
        self.dirty.contains_key(&index) || self.sending.contains_key(&index)
    }

    /// The bytes of stripe `index` written here and not yet confirmed by the node: the
    /// buffered ones, else the ones being sent.
    pub fn local_stripe(&self, index: u64) -> Option<Arc<Vec<u8>>> {
        match self.dirty.get(&index) {
            Some(d) => Some(Arc::new(d.clone())),
            None => self.sending.get(&index).cloned(),
        }
    }

    /// Copies `data` into the dirty stripe `index` at `at` (bytes from the stripe start),
    /// growing it as needed: zeros for a hole before `at`, and the bytes past its end
    /// appended, not zeroed first and then overwritten (a sequential writer appends every
    /// byte it writes).
    pub fn apply(stripe: &mut Vec<u8>, at: usize, data: &[u8]) {
        if stripe.len() < at {
            stripe.resize(at, 0);
        }
        let over = (stripe.len() - at).min(data.len());
        stripe[at..at + over].copy_from_slice(&data[..over]);
        stripe.extend_from_slice(&data[over..]);
    }
}

/// The mount's open files by inode, shared between the FUSE threads and the one that
/// unmounts: after the unmount it tells what the node never took.
#[derive(Clone, Default)]
pub struct OpenFiles(Arc<Mutex<HashMap<u64, Arc<OpenFile>>>>);

impl OpenFiles {
    /// Locks the map.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<OpenFile>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The files holding writes the node has not confirmed, with their unconfirmed bytes,
    /// by inode.
    pub fn unsaved(&self) -> Vec<(u64, u64)> {
        let files: Vec<(u64, Arc<OpenFile>)> =
            self.lock().iter().map(|(i, f)| (*i, f.clone())).collect();
        let mut out: Vec<(u64, u64)> = files
            .into_iter()
            .map(|(ino, f)| (ino, f.lock().unsaved_bytes()))
            .filter(|(_, bytes)| *bytes > 0)
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{FileInner, ReadPattern};

    #[test]
    fn writes_into_a_stripe_overwrite_append_and_leave_holes_as_zeros() {
        let mut s = Vec::new();
        FileInner::apply(&mut s, 0, b"abcd");
        assert_eq!(s, b"abcd");
        FileInner::apply(&mut s, 4, b"ef"); // appended
        assert_eq!(s, b"abcdef");
        FileInner::apply(&mut s, 1, b"XY"); // inside
        assert_eq!(s, b"aXYdef");
        FileInner::apply(&mut s, 5, b"123"); // over the end
        assert_eq!(s, b"aXYde123");
        FileInner::apply(&mut s, 10, b"z"); // past it: a hole of zeros
        assert_eq!(s, b"aXYde123\0\0z");
        FileInner::apply(&mut s, 2, b""); // nothing
        assert_eq!(s.len(), 11);
    }

    const MIB: u64 = 1 << 20;

    /// A sequential reader stays sequential even when its read-ahead requests come out of
    /// order; random 4 KiB reads of a big file almost never count as sequential, though
    /// a few in a hundred land within the window of the read before.
    #[test]
    fn random_reads_near_the_last_one_are_not_taken_for_a_sequential_reader() {
        let (size, window) = (512 * MIB, 8 * MIB);
        let mut seq = ReadPattern::default();
        let mut at = 0;
        assert!(seq.note(0, 128 << 10, size, window), "a first read from 0");
        at += 128 << 10;
        for _ in 0..100 {
            // requests of 128 KiB, each pair taken in the wrong order
            let (a, b) = (at, at + (128 << 10));
            assert!(seq.note(b, b + (128 << 10), size, window));
            assert!(seq.note(a, a + (128 << 10), size, window));
            at += 256 << 10;
        }

        let mut random = ReadPattern::default();
        let mut state = 42u64;
        let mut near = 0;
        let mut taken = 0;
        let mut last_end = u64::MAX;
        for _ in 0..10_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let offset = (state >> 33) % (size / 4096) * 4096;
            if last_end != u64::MAX && offset.abs_diff(last_end) <= window {
                near += 1;
            }
            last_end = offset + 4096;
            if random.note(offset, offset + 4096, size, window) {
                taken += 1;
            }
        }
        assert!(
            near > 200,
            "the old rule took {near} of 10,000 for sequential"
        );
        assert!(
            taken < 20,
            "{taken} of 10,000 random reads taken for sequential"
        );
        // a read of a whole small file is not a sequential reader's first
        assert!(!ReadPattern::default().note(0, 4096, 4096, window));
    }
}
