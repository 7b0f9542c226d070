//! Fetching stripes from the node: through the cache, one fetch per stripe at a time.
//!
//! A stripe being fetched (by a reader or by read-ahead) is not fetched again: later
//! readers of it wait for the first fetch and share its result.
//!
//! When the node runs on this machine, a stripe's data chunks on the node's disks are read
//! from the chunk files themselves (`wormfs::rpc::local`): the node only says where they
//! are, 16 stripes a call for a sequential read, and reads the bytes of the other data
//! chunks, if any, as a range of the stripe. A read that jumps reads just the blocks that
//! hold its bytes the same way. Anything that goes wrong there falls back to reading the
//! stripe through the node, which decodes around damaged chunks and records them.

use crate::cache::StripeCache;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use wormfs::ids::FileId;
use wormfs::rpc::client::{Client, ClientError, StripePieces};
use wormfs::rpc::local::{read_located_partly, read_located_range, LocalReadError};
use wormfs::rpc::proto::StripeLocation;

/// Local reads that fail in a row (files unreadable to this process, say) before the mount
/// stops trying them.
const LOCAL_FAILURES_BEFORE_OFF: u32 = 16;

/// Stripes located in one call: a sequential read asks the node once per this many.
const LOCATE_AHEAD: u32 = 16;

/// Locations kept for stripes not read yet; past it they are all dropped (a reader that
/// jumps about leaves some unused).
const LOCATIONS_KEPT: usize = 1024;

type Key = (u64, u64, u64); // (inode, stripe, version)
type Outcome = Result<Arc<StripePieces>, ClientError>;

#[derive(Default)]
struct Slot {
    done: Mutex<Option<Outcome>>,
    ready: Condvar,
}

/// The node's stripes as this mount reads them.
pub struct Fetcher {
    client: Client,
    cache: Mutex<StripeCache>,
    inflight: Mutex<HashMap<Key, Arc<Slot>>>,
    local: Reads,
    /// Stripes located ahead of their reads, at the version they were located for: taken
    /// by the stripe's read, and put back after a range read (the next read may fall in
    /// the same stripe).
    located: Mutex<HashMap<Key, StripeLocation>>,
}

/// How this mount reads stripes: whether local reads are still on, and the counts it logs
/// when it stops.
#[derive(Default)]
struct Reads {
    /// Still worth trying.
    on: AtomicBool,
    /// Local reads that failed in a row.
    failed_in_a_row: AtomicU32,
    /// Stripes read from chunk files.
    from_files: AtomicU64,
    /// Stripes read through the node.
    through_node: AtomicU64,
    /// Runs of data chunks not on the node's disks, read through the node for a stripe
    /// whose other data chunks were read from their files.
    runs_through_node: AtomicU64,
    /// Reads that jumped and asked for just their bytes.
    ranges: AtomicU64,
    /// Of those, the ones read from chunk files.
    ranges_from_files: AtomicU64,
    /// `LocateStripes` calls.
    locate_calls: AtomicU64,
}

impl Reads {
    fn off(&self, why: &str) {
        if self.on.swap(false, Ordering::Relaxed) {
            tracing::info!("stripes are read through the node from now on: {why}");
        }
    }
}

/// Locks `m`, taking the data over from a thread that panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fetcher {
    /// A fetcher over `client` with a cache of `cache_bytes`; with `local_reads`, stripes
    /// are read from the node's chunk files when the node runs on this machine.
    pub fn new(client: Client, cache_bytes: usize, local_reads: bool) -> Fetcher {
        let local = Reads::default();
        local.on.store(local_reads, Ordering::Relaxed);
        Fetcher {
            client,
            cache: Mutex::new(StripeCache::new(cache_bytes)),
            inflight: Mutex::new(HashMap::new()),
            local,
            located: Mutex::new(HashMap::new()),
        }
    }

    /// Reads a stripe: from its chunk files when it can, else through the node. Blocks;
    /// not for the runtime's own threads.
    fn load(&self, rt: &tokio::runtime::Handle, key: Key) -> Outcome {
        let (ino, index, _) = key;
        if self.local.on.load(Ordering::Relaxed) {
            if let Some(data) = self.load_local(rt, key) {
                self.local.from_files.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::new(data));
            }
        }
        self.local.through_node.fetch_add(1, Ordering::Relaxed);
        rt.block_on(self.client.read_stripe_pieces(FileId(ino), index))
            .map(Arc::new)
    }

    /// Where the stripe lies: located ahead by an earlier call, or located now together
    /// with the next [`LOCATE_AHEAD`] − 1 stripes. The flag tells a location from earlier.
    fn locate(
        &self,
        rt: &tokio::runtime::Handle,
        key: Key,
        ahead: u32,
    ) -> Result<(StripeLocation, bool), ClientError> {
        if let Some(loc) = lock(&self.located).remove(&key) {
            return Ok((loc, true));
        }
        let (ino, index, version) = key;
        self.local.locate_calls.fetch_add(1, Ordering::Relaxed);
        let mut found = rt
            .block_on(self.client.locate_stripes(FileId(ino), index, ahead))?
            .into_iter();
        // No entry: the stripe lies past the file's end, as the node sees it.
        let loc = found.next().unwrap_or_default();
        for (i, l) in (index + 1..).zip(found) {
            self.keep_location((ino, i, version), l);
        }
        Ok((loc, false))
    }

    /// The stripe read from its chunk files (empty for a hole), or `None` when it must be
    /// read through the node. When some of its data chunks are on the node's disks and some
    /// are not, the others' bytes are read through the node as ranges of the stripe.
    fn load_local(&self, rt: &tokio::runtime::Handle, key: Key) -> Option<StripePieces> {
        let (ino, index, _) = key;
        let through_node = |offset: u64, len: u64| {
            self.local.runs_through_node.fetch_add(1, Ordering::Relaxed);
            rt.block_on(
                self.client
                    .read_stripe_range_pieces(FileId(ino), index, offset, len),
            )
            .map_err(|e| e.message)
        };
        self.read_local(rt, key, LOCATE_AHEAD, false, StripePieces::default, |loc| {
            read_located_partly(FileId(ino), index, loc, &through_node)
        })
    }

    /// Bytes `offset..offset + len` of a stripe (clipped to it; empty for a hole) read from
    /// its chunk files, or `None` when they must be read through the node. The stripe's
    /// location is kept for the next read in it.
    pub fn read_range_local(
        &self,
        rt: &tokio::runtime::Handle,
        key: Key,
        offset: u64,
        len: u64,
    ) -> Option<Vec<u8>> {
        if !self.local.on.load(Ordering::Relaxed) {
            return None;
        }
        let (ino, index, _) = key;
        let got = self.read_local(rt, key, 1, true, Vec::new, |loc| {
            read_located_range(FileId(ino), index, loc, offset, len)
        });
        if got.is_some() {
            self.local.ranges_from_files.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    /// Locates the stripe (with the next `ahead` − 1) and reads it from chunk files with
    /// `read`; `hole` answers a stripe never written. `None`: read it through the node.
    /// With `keep`, a location that served a read, or that says the stripe has no chunk
    /// files here, is kept for the next read.
    fn read_local<T>(
        &self,
        rt: &tokio::runtime::Handle,
        key: Key,
        mut ahead: u32,
        keep: bool,
        hole: impl Fn() -> T,
        read: impl Fn(&StripeLocation) -> Result<T, LocalReadError>,
    ) -> Option<T> {
        let (ino, index, _) = key;
        loop {
            let (loc, earlier) = match self.locate(rt, key, ahead) {
                Ok(found) => found,
                Err(e) if e.errno == wormfs::errno::ENOSYS => {
                    self.local
                        .off("the node cannot locate stripes (an older version)");
                    return None;
                }
                Err(e) => {
                    tracing::debug!(ino, stripe = index, error = %e.message, "cannot locate the stripe; reading it through the node");
                    return None;
                }
            };
            let error = match if loc.found { read(&loc) } else { Ok(hole()) } {
                Ok(data) => {
                    self.local.failed_in_a_row.store(0, Ordering::Relaxed);
                    if keep {
                        self.keep_location(key, loc);
                    }
                    return Some(data);
                }
                Err(LocalReadError::Elsewhere) => {
                    self.local.off("the node runs on another machine");
                    return None;
                }
                // The normal reasons to read through the node: nothing is wrong, and the
                // next read in the stripe need not ask where it lies again. (The node not
                // giving the chunks that are elsewhere is for the node's own read to report.)
                Err(
                    LocalReadError::NoChunks
                    | LocalReadError::NotHere(_)
                    | LocalReadError::ThroughNode(_),
                ) => {
                    if keep {
                        self.keep_location(key, loc);
                    }
                    return None;
                }
                Err(e) => e,
            };
            if earlier {
                // The stripe may have been rewritten since it was located: ask again.
                ahead = 1;
                continue;
            }
            tracing::debug!(file = %FileId(ino), stripe = index, error = %error, "local read failed; reading through the node");
            let failed = self.local.failed_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
            if failed >= LOCAL_FAILURES_BEFORE_OFF {
                self.local.off(&format!(
                    "{failed} local reads failed in a row, the last with: {error}"
                ));
            }
            return None;
        }
    }

    /// Keeps a location for a later read, within [`LOCATIONS_KEPT`].
    fn keep_location(&self, key: Key, loc: StripeLocation) {
        let mut located = lock(&self.located);
        if located.len() >= LOCATIONS_KEPT {
            located.clear();
        }
        located.insert(key, loc);
    }

    /// Counts a read that jumped and asked for just its bytes.
    pub fn note_range(&self) {
        self.local.ranges.fetch_add(1, Ordering::Relaxed);
    }

    /// Logs how many stripes were read from chunk files and through the node, how many
    /// reads jumped and asked for just their bytes, how many of those were read from chunk
    /// files, and how many times the node was asked where stripes lie.
    pub fn log_summary(&self) {
        tracing::info!(
            from_chunk_files = self.local.from_files.load(Ordering::Relaxed),
            through_node = self.local.through_node.load(Ordering::Relaxed),
            ranges = self.local.ranges.load(Ordering::Relaxed),
            ranges_local = self.local.ranges_from_files.load(Ordering::Relaxed),
            locate_calls = self.local.locate_calls.load(Ordering::Relaxed),
            runs_through_node = self.local.runs_through_node.load(Ordering::Relaxed),
            "stripes read"
        );
    }

    /// Starts fetching `key` unless it is cached or already being fetched; returns the slot
    /// to wait on and whether this caller must do the fetch.
    fn claim(&self, key: Key) -> Option<(Arc<Slot>, bool)> {
        if lock(&self.cache).contains(key.0, key.1, key.2) {
            return None;
        }
        let mut inflight = lock(&self.inflight);
        if let Some(slot) = inflight.get(&key) {
            return Some((slot.clone(), false));
        }
        let slot = Arc::new(Slot::default());
        inflight.insert(key, slot.clone());
        Some((slot, true))
    }

    fn finish(&self, key: Key, slot: &Slot, outcome: Outcome) {
        if let Ok(data) = &outcome {
            lock(&self.cache).insert(key.0, key.1, key.2, data.clone());
        }
        *lock(&slot.done) = Some(outcome);
        slot.ready.notify_all();
        lock(&self.inflight).remove(&key);
    }

    /// Stripe `index` of `ino` at `version`: from the cache, from a fetch already under way,
    /// or fetched now. Blocks; call from a FUSE thread, not from the runtime.
    pub fn get(&self, rt: &tokio::runtime::Handle, ino: u64, index: u64, version: u64) -> Outcome {
        let key = (ino, index, version);
        loop {
            if let Some(hit) = lock(&self.cache).get(ino, index, version) {
                return Ok(hit);
            }
            let Some((slot, leader)) = self.claim(key) else {
                continue;
            };
            if leader {
                let outcome = self.load(rt, key);
                self.finish(key, &slot, outcome.clone());
                return outcome;
            }
            let mut done = lock(&slot.done);
            while done.is_none() {
                done = slot.ready.wait(done).unwrap_or_else(|e| e.into_inner());
            }
            return done.clone().expect("checked above");
        }
    }

    /// Fetches stripe `index` in the background unless cached or under way.
    pub fn prefetch(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        ino: u64,
        index: u64,
        version: u64,
    ) {
        let key = (ino, index, version);
        if let Some((slot, true)) = self.claim(key) {
            let me = self.clone();
            if self.local.on.load(Ordering::Relaxed) {
                let handle = rt.clone();
                rt.spawn_blocking(move || {
                    let outcome = me.load(&handle, key);
                    me.finish(key, &slot, outcome);
                });
                return;
            }
            self.local.through_node.fetch_add(1, Ordering::Relaxed);
            rt.spawn(async move {
                let outcome = me
                    .client
                    .read_stripe_pieces(FileId(ino), index)
                    .await
                    .map(Arc::new);
                me.finish(key, &slot, outcome);
            });
        }
    }

    /// Caches stripe `index` of `ino` at `version`, as the mount got it some other way.
    pub fn keep(&self, ino: u64, index: u64, version: u64, data: Arc<StripePieces>) {
        lock(&self.cache).insert(ino, index, version, data);
    }

    /// The stripe, when it is cached for this version.
    pub fn cached(&self, ino: u64, index: u64, version: u64) -> Option<Arc<StripePieces>> {
        lock(&self.cache).get(ino, index, version)
    }

    /// Lets a sequential reader's stripe go (see [`StripeCache::leave_behind`]).
    pub fn leave_behind(&self, ino: u64, file_size: u64, behind: std::ops::Range<u64>) {
        lock(&self.cache).leave_behind(ino, file_size, behind);
    }

    /// Drops every cached stripe of a file, and the locations of its stripes not read yet.
    pub fn forget_file(&self, ino: u64) {
        lock(&self.cache).forget_file(ino);
        lock(&self.located).retain(|key, _| key.0 != ino);
    }
}
