//! Fetching stripes from the node: through the cache, one fetch per stripe at a time.
//!
//! A stripe being fetched (by a reader or by read-ahead) is not fetched again: later
//! readers of it wait for the first fetch and share its result.

use crate::cache::StripeCache;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use wormfs::ids::FileId;
use wormfs::rpc::client::{Client, ClientError, StripePieces};

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
}

/// Locks `m`, taking the data over from a thread that panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fetcher {
    /// A fetcher over `client` with a cache of `cache_bytes`.
    pub fn new(client: Client, cache_bytes: usize) -> Fetcher {
        Fetcher {
            client,
            cache: Mutex::new(StripeCache::new(cache_bytes)),
            inflight: Mutex::new(HashMap::new()),
        }
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
                let outcome = rt
                    .block_on(self.client.read_stripe_pieces(FileId(ino), index))
                    .map(Arc::new);
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

    /// The stripe, when it is cached for this version.
    pub fn cached(&self, ino: u64, index: u64, version: u64) -> Option<Arc<StripePieces>> {
        lock(&self.cache).get(ino, index, version)
    }

    /// Drops every cached stripe of a file.
    pub fn forget_file(&self, ino: u64) {
        lock(&self.cache).forget_file(ino);
    }
}
