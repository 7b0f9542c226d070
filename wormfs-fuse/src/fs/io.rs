//! Reading and writing open files: stripes fetched, read ahead, buffered and sent.

use super::*;
use std::ops::Range;

/// Stripes read ahead of a sequential reader.
pub(super) const READ_AHEAD: u64 = 2;

/// How far a read may start from where the last one ended and still count as sequential
/// (at least two stripes; see `ReadPattern::note`). The kernel sends a sequential
/// reader's read-ahead as several requests at once, and the request threads take them in
/// any order.
pub(super) const SEQUENTIAL_WINDOW: u64 = 8 << 20;

/// The stripes a sequential reader has left behind for good with a read of stripes
/// `first..last`, if any: those just past the window in which reads still count as
/// sequential (`window` bytes, stripes of `s` bytes), so no straggling request of the
/// kernel's read-ahead asks for them. As many as the read covers, so a reader whose
/// requests are larger than a stripe leaves every one of them behind, not one per request.
///
/// The kernel's page cache keeps what a sequential reader read, so the mount drops such
/// stripes of a file larger than half its cache (see `StripeCache::leave_behind`):
/// its cache then holds little more than the read-ahead, and the buffers the next stripes
/// arrive in are ones freed before, not fresh pages the kernel must fault in and zero (that
/// was a third of the mount's CPU in a cold read through a 3-node cluster:
/// docs/BENCHMARKS.md).
pub(super) fn left_behind(first: u64, last: u64, s: u64, window: u64) -> Option<Range<u64>> {
    let newest = first.checked_sub(window.div_ceil(s.max(1)) + 1)?;
    let covered = last.saturating_sub(first).max(1);
    Some(newest.saturating_sub(covered - 1)..newest + 1)
}

/// A write at least this large starts a stripe with room for all of it.
const LARGE_WRITE: usize = 128 << 10;

/// Dirty stripes a file may hold before they are sent.
pub(super) const MAX_DIRTY: usize = 8;

/// Background sends of full stripes a file may have on their way at once.
pub(super) const MAX_SENDING: usize = 2;

/// A stripe's bytes as a read finds them: written here and not yet committed, or fetched.
pub(super) enum Held {
    Local(Arc<Vec<u8>>),
    Fetched(Arc<StripePieces>),
}

impl Held {
    pub(super) fn len(&self) -> usize {
        match self {
            Held::Local(d) => d.len(),
            Held::Fetched(p) => p.len(),
        }
    }

    pub(super) fn slice(&self, lo: usize, hi: usize) -> Bytes {
        match self {
            Held::Local(d) => Bytes::copy_from_slice(&d[lo..hi.min(d.len())]),
            Held::Fetched(p) => p.slice(lo, hi),
        }
    }
}

/// A stripe buffer shared between the mount's state and a send in flight.
pub(super) struct SharedStripe(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedStripe {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl WormFuse {
    /// A release: drops the handle and its open lock (and an flock owner's locks with the
    /// last descriptor), flushes the file, and forgets it after its last close, keeping
    /// what a reopen may reuse; an orphan name it left goes with it.
    pub(super) fn close_handle(
        &self,
        ino: u64,
        fh: fuser::FileHandle,
        lock_owner: Option<fuser::LockOwner>,
    ) -> Result<()> {
        if let Some(Handle::File(lock)) = self.drop_handle(fh) {
            self.drop_open_lock(ino, lock);
        }
        if let Some(owner) = lock_owner {
            // the last descriptor of an open file with a flock lock
            self.release_lock_owner(ino, owner.0);
        }
        let mut r = Ok(());
        if let Some(f) = self.open_file(ino) {
            let mut inner = f.lock();
            r = self.flush_file(ino, &mut inner);
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
                let still_closed = files.get(&ino).is_some_and(|g| Arc::ptr_eq(g, &f))
                    && f.handles.load(std::sync::atomic::Ordering::SeqCst) == 0;
                if still_closed && clean {
                    files.remove(&ino);
                    if let Some(kept) = kept {
                        let mut closed = lock(&self.closed);
                        if closed.len() >= CLOSED_KEPT {
                            closed.clear(); // their stripes are read again, nothing worse
                        }
                        closed.insert(ino, kept);
                    }
                }
                drop(files);
                if still_closed {
                    self.reap_orphan(ino);
                }
            }
        }
        r
    }

    /// Caches a small file's whole content, sent with its open lock, as its stripe 0 at the
    /// open file's version, unless this mount holds newer bytes of it or sees another size:
    /// its reads then need no call.
    pub(super) fn keep_content(&self, ino: u64, bytes: Vec<u8>) {
        let Some(file) = self.open_file(ino) else {
            return;
        };
        let inner = file.lock();
        if inner.size != bytes.len() as u64
            || inner.holds(0)
            || bytes.len() as u64 > file.stripe_size
        {
            return;
        }
        let version = inner.version;
        drop(inner);
        self.stripes
            .keep(ino, 0, version, Arc::new(StripePieces::from(bytes)));
    }

    /// Fetches a stripe (cache first). Returns the stored bytes (shorter than the stripe
    /// or empty for a hole).
    pub(super) fn fetch(&self, ino: u64, index: u64, version: u64) -> Result<Arc<StripePieces>> {
        self.stripes.get(&self.rt, ino, index, version)
    }

    pub(super) fn read_ahead(&self, ino: u64, stripes: &[u64], version: u64) {
        for &index in stripes {
            self.stripes.prefetch(&self.rt, ino, index, version);
        }
    }

    /// Sends every dirty stripe of a file; on failure they stay dirty and the error is
    /// returned (the data is not stored).
    /// Waits for the oldest background send. A failed one puts its stripes back in the
    /// buffer (unless rewritten since), so the next flush sends them again, and returns
    /// the error.
    pub(super) fn wait_oldest(&self, inner: &mut FileInner) -> Result<()> {
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
    pub(super) fn wait_all(&self, inner: &mut FileInner) -> Result<()> {
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
    pub(super) fn send_behind(
        &self,
        ino: u64,
        inner: &mut FileInner,
        indexes: Vec<u64>,
    ) -> Result<()> {
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
        // sizes and times change: listed pages are retired at the start and at the end
        let change = self.listed.change();
        let task = self.rt.spawn(async move {
            let sent = client.write_stripes(payload).await;
            drop(change);
            sent
        });
        inner
            .pending
            .push_back(crate::file::Pending { stripes, task });
        while inner.pending.len() > MAX_SENDING {
            self.wait_oldest(inner)?;
        }
        Ok(())
    }

    pub(super) fn flush_file(&self, ino: u64, inner: &mut FileInner) -> Result<()> {
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
        let sent = {
            let _listed = self.listed.change();
            self.rpc_quiet(|c, d| d.block_on(c.write_stripes(stripes)))
        };
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

    pub(super) fn do_write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32> {
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
                // Read-modify-write: start from what the stripe holds now. A large write
                // is taken for a sequential writer's: room for the whole stripe at once,
                // so the next writes append without moving it.
                let room = if take >= LARGE_WRITE {
                    s as usize
                } else {
                    take
                };
                let mut base = Vec::with_capacity(room);
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

    pub(super) fn do_read(&self, ino: u64, offset: u64, size: u32) -> Result<Bytes> {
        let Some(file) = self.open_file(ino) else {
            return Err(ClientError {
                errno: errno::EIO,
                message: format!("read of inode {ino} without an open handle"),
            });
        };
        let s = file.stripe_size;
        let window = SEQUENTIAL_WINDOW.max(2 * s);
        let (file_size, version, sequential, dirty, ahead) = {
            let mut inner = file.lock();
            let end = offset.saturating_add(u64::from(size)).min(inner.size);
            let size = inner.size;
            let sequential = inner.reads.note(offset, end, size, window);
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
        if let Some(behind) = left_behind(first, last, s, window).filter(|_| sequential) {
            self.stripes.leave_behind(ino, file_size, behind);
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_left_behind_only_past_the_sequential_window() {
        let mib = 1u64 << 20;
        // 4 MiB stripes, an 8 MiB window: a read in stripe 3 leaves stripe 0 behind
        let (s, w) = (4 * mib, SEQUENTIAL_WINDOW.max(8 * mib));
        assert_eq!(left_behind(0, 1, s, w), None);
        assert_eq!(left_behind(2, 3, s, w), None);
        assert_eq!(left_behind(3, 4, s, w), Some(0..1));
        assert_eq!(left_behind(10, 11, s, w), Some(7..8));
        // 1 MiB stripes: 9 stripes behind, farther than a read request can straggle
        let (s, w) = (mib, SEQUENTIAL_WINDOW.max(2 * mib));
        assert_eq!(left_behind(8, 9, s, w), None);
        assert_eq!(left_behind(9, 10, s, w), Some(0..1));
        // what is left behind lies wholly outside the window
        for first in 0..40 {
            if let Some(b) = left_behind(first, first + 1, s, w) {
                assert!(
                    (first - b.end + 1) * s > w,
                    "stripe {} behind {first}",
                    b.end - 1
                );
            }
        }
    }

    #[test]
    fn a_read_larger_than_a_stripe_leaves_every_stripe_it_passed_behind() {
        // 64 KiB stripes read 1 MiB (16 stripes) at a time
        let (s, w) = (64 << 10, SEQUENTIAL_WINDOW);
        let per_read = (1u64 << 20) / s;
        let mut dropped = std::collections::BTreeSet::new();
        let mut first = 0;
        while first < 1000 {
            if let Some(b) = left_behind(first, first + per_read, s, w) {
                assert!(
                    (first - b.end + 1) * s > w,
                    "inside the window: {b:?} at {first}"
                );
                dropped.extend(b);
            }
            first += per_read;
        }
        // every stripe up to the last one behind the window, none missed
        let newest = *dropped.last().expect("some were left behind");
        assert_eq!(dropped.len() as u64, newest + 1, "gaps in {dropped:?}");
        assert!(
            newest + 1 + w / s + per_read >= 1000,
            "stopped early at {newest}"
        );
    }
}
