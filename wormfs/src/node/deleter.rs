//! Chunk files a committed op made garbage, deleted in the background.
//!
//! Once the metadata no longer refers to a chunk, nothing reads it, so its file can go at
//! any time after the commit. Deleting before answering the client made an `unlink` or an
//! overwrite wait for every node holding the old chunks: about 20 s per stripe when one of
//! them was frozen (found by tests/soak.sh), and a delete's round trips on every call when
//! none was. So the ops hand their garbage to one thread per node, which deletes it in
//! order. A delete that fails, and the queue of a node that stops before it is done, leave
//! orphan chunks, which the garbage worker finds and removes (see `heal::garbage`): never
//! lost data.
//!
//! Only garbage whose chunk keys no later write can make again goes here: a file removed
//! or a stripe replaced by a new generation (`engine::next_generation`). A repair moves a
//! chunk under the same key, and deletes the copy it replaced itself, before it answers.

use crate::meta::ChunkLocation;
use crate::store::ChunkStore;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Batches of garbage waiting; beyond this, garbage is left to the garbage worker.
pub const QUEUE_BATCHES: usize = 4096;

/// The sending side of a node's deleter thread (see the module documentation).
pub struct Deleter {
    queue: Mutex<Option<SyncSender<Vec<ChunkLocation>>>>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Deleter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deleter")
            .field("pending", &self.pending())
            .finish()
    }
}

impl Deleter {
    /// Starts the thread that deletes garbage from `store`.
    pub fn start(store: Arc<dyn ChunkStore>) -> Deleter {
        let (tx, rx) = sync_channel::<Vec<ChunkLocation>>(QUEUE_BATCHES);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let left = pending.clone();
        let spawned = std::thread::Builder::new()
            .name("wormfs-garbage".into())
            .spawn(move || {
                for batch in rx {
                    for g in &batch {
                        if let Err(e) = store.delete_chunk(&g.disk, &g.addr()) {
                            tracing::warn!(
                                chunk = %g.key,
                                disk = %g.disk,
                                error = %e,
                                "could not delete a garbage chunk; the garbage worker will"
                            );
                        }
                    }
                    left.fetch_sub(batch.len(), std::sync::atomic::Ordering::AcqRel);
                }
            });
        let queue = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot start the garbage deleter thread; garbage chunks are left to \
                     the garbage worker"
                );
                None
            }
        };
        Deleter {
            queue: Mutex::new(queue),
            pending,
        }
    }

    /// Queues `garbage` for deletion; when the queue is full (a node that does not answer
    /// deletes, and many removals), logs and leaves it to the garbage worker.
    pub fn delete(&self, garbage: Vec<ChunkLocation>) {
        if garbage.is_empty() {
            return;
        }
        let n = garbage.len();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = queue.as_ref() else {
            return;
        };
        self.pending
            .fetch_add(n, std::sync::atomic::Ordering::AcqRel);
        match tx.try_send(garbage) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.pending
                    .fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
                tracing::warn!(
                    chunks = n,
                    "the garbage deleter is {QUEUE_BATCHES} batches behind; these chunks are \
                     left to the garbage worker"
                );
            }
        }
    }

    /// Chunks queued and not yet deleted (or given up on).
    pub fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
    }
}
