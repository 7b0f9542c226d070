//! An in-process [`Transport`]: the nodes of a cluster in one process reach each other's
//! stores and handlers directly, through an [`InProcessHub`] whose fault hooks cut nodes
//! and links (partitions, one-way ones too), delay requests, lose them (before or after the
//! handler ran) and deliver them twice, from a seeded generator so that a failing schedule
//! can be replayed.

use super::{RequestHandler, Transport, TransportError};
use crate::chunk::ChunkFile;
use crate::ids::{DiskId, FileId, NodeId};
use crate::store::{ChunkAddr, ChunkFolder, ChunkStore, IndexedChunk, StoredChunk};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Default)]
struct Endpoint {
    store: Option<Arc<dyn ChunkStore>>,
    handlers: BTreeMap<String, RequestHandler>,
}

/// The faults the hub applies to every call.
#[derive(Default)]
struct Faults {
    /// Nodes cut off from every other.
    unreachable: BTreeSet<NodeId>,
    /// Directed links that carry nothing: `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Latency added to each request on a protocol starting with `delay_prefix`.
    delay: Duration,
    delay_prefix: String,
    /// Requests lost, per thousand: half before the handler runs, half after (the answer).
    loss_per_mille: u32,
    /// Requests delivered twice, per thousand, on protocols starting with `dup_prefix`.
    dup_per_mille: u32,
    dup_prefix: String,
    /// The state of the generator behind loss and duplicates.
    rng: u64,
}

impl Faults {
    /// A number below 1000 from the seeded generator (xorshift64*).
    fn roll(&mut self) -> u32 {
        let mut x = self.rng.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as u32 % 1000
    }

    fn blocked(&self, from: &NodeId, to: &NodeId) -> Option<&'static str> {
        if self.unreachable.contains(to) || self.unreachable.contains(from) {
            Some("cut off by the test")
        } else if self.cut.contains(&(from.clone(), to.clone())) {
            Some("link cut by the test")
        } else {
            None
        }
    }

    /// The delay added to a request on `protocol`.
    fn delay_of(&self, protocol: &str) -> Duration {
        if protocol.starts_with(self.delay_prefix.as_str()) {
            self.delay
        } else {
            Duration::ZERO
        }
    }

    /// Why the link between `a` and `b` is closed in either direction, if it is.
    fn link_closed(&self, a: &NodeId, b: &NodeId) -> Option<&'static str> {
        self.blocked(a, b).or_else(|| self.blocked(b, a))
    }
}

#[derive(Default)]
struct HubState {
    nodes: BTreeMap<NodeId, Endpoint>,
    faults: Faults,
}

/// The switchboard of an in-process cluster, with its fault hooks.
#[derive(Clone, Default)]
pub struct InProcessHub {
    state: Arc<RwLock<HubState>>,
}

impl std::fmt::Debug for InProcessHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.read();
        f.debug_struct("InProcessHub")
            .field("nodes", &s.nodes.keys().collect::<Vec<_>>())
            .field("unreachable", &s.faults.unreachable)
            .field("cut", &s.faults.cut)
            .finish()
    }
}

impl InProcessHub {
    /// An empty hub.
    pub fn new() -> InProcessHub {
        InProcessHub::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HubState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HubState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `node` with its chunk store and returns its transport. A node that left
    /// (see [`InProcessHub::leave`]) joins again this way, as a restarted process would.
    pub fn join(&self, node: NodeId, store: Arc<dyn ChunkStore>) -> InProcessTransport {
        self.write().nodes.entry(node.clone()).or_default().store = Some(store);
        InProcessTransport {
            hub: self.clone(),
            me: node,
        }
    }

    /// Takes `node` out, with its store and handlers: calls to it fail as unreachable, as
    /// to a crashed process.
    pub fn leave(&self, node: &NodeId) {
        self.write().nodes.remove(node);
    }

    /// Serves `protocol` on `node` with `handler`.
    pub fn serve(&self, node: &NodeId, protocol: &str, handler: RequestHandler) {
        self.write()
            .nodes
            .entry(node.clone())
            .or_default()
            .handlers
            .insert(protocol.to_owned(), handler);
    }

    /// Cuts `node` off from every other (`true`) or reconnects it (`false`).
    pub fn set_unreachable(&self, node: &NodeId, unreachable: bool) {
        let mut s = self.write();
        if unreachable {
            s.faults.unreachable.insert(node.clone());
        } else {
            s.faults.unreachable.remove(node);
        }
    }

    /// Cuts the link from `from` to `to` (one way: `to` still reaches `from`).
    pub fn cut(&self, from: &NodeId, to: &NodeId) {
        self.write().faults.cut.insert((from.clone(), to.clone()));
    }

    /// Splits the nodes into `groups`: every link between two groups is cut both ways.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let mut s = self.write();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i == j {
                    continue;
                }
                for x in a {
                    for y in b {
                        s.faults.cut.insert((x.clone(), y.clone()));
                    }
                }
            }
        }
    }

    /// Ends every fault: partitions, cut nodes, delays, losses and duplicates.
    pub fn heal(&self) {
        let mut s = self.write();
        let rng = s.faults.rng;
        s.faults = Faults {
            rng,
            ..Faults::default()
        };
    }

    /// Adds `delay` to every request.
    pub fn set_delay(&self, delay: Duration) {
        self.set_delay_for("", delay);
    }

    /// Adds `delay` to every request on a protocol starting with `prefix` (the others
    /// travel without one). A prefix of [`CHUNK_RANGE`] delays reads of chunk ranges too
    /// (other chunk calls, and every chunk call when the prefix is empty, go undelayed).
    pub fn set_delay_for(&self, prefix: &str, delay: Duration) {
        let mut s = self.write();
        s.faults.delay = delay;
        s.faults.delay_prefix = prefix.to_owned();
    }

    /// Loses `per_mille` of the requests: half before the handler runs (nothing happened),
    /// half after (it happened, the answer is lost). The caller sees `Unreachable`.
    pub fn set_loss(&self, per_mille: u32) {
        self.write().faults.loss_per_mille = per_mille.min(1000);
    }

    /// Delivers `per_mille` of the requests on protocols starting with `prefix` twice (the
    /// caller gets the first answer), as a retrying network would.
    pub fn set_duplicates(&self, per_mille: u32, prefix: &str) {
        let mut s = self.write();
        s.faults.dup_per_mille = per_mille.min(1000);
        s.faults.dup_prefix = prefix.to_owned();
    }

    /// Seeds the generator behind losses and duplicates.
    pub fn seed(&self, seed: u64) {
        self.write().faults.rng = seed;
    }

    fn unreachable(node: &NodeId, reason: &str) -> TransportError {
        TransportError::Unreachable {
            node: node.clone(),
            reason: reason.into(),
        }
    }

    fn store(&self, from: &NodeId, node: &NodeId) -> Result<Arc<dyn ChunkStore>, TransportError> {
        let s = self.read();
        if let Some(why) = s.faults.link_closed(from, node) {
            return Err(Self::unreachable(node, why));
        }
        s.nodes
            .get(node)
            .and_then(|e| e.store.clone())
            .ok_or_else(|| Self::unreachable(node, "not in this hub"))
    }
}

/// The name under which the hub's delay hook ([`InProcessHub::set_delay_for`]) sees a read
/// of a chunk range.
pub const CHUNK_RANGE: &str = "chunk/range";

/// Waits `delay`, on the runtime's timer when there is one.
async fn wait(delay: Duration) {
    if !delay.is_zero() {
        #[cfg(feature = "rpc")]
        tokio::time::sleep(delay).await;
        // without tokio (a build of the bare library) there is no timer to wait on
        #[cfg(not(feature = "rpc"))]
        std::thread::sleep(delay);
    }
}

/// One node's view of an [`InProcessHub`].
#[derive(Clone)]
pub struct InProcessTransport {
    hub: InProcessHub,
    me: NodeId,
}

impl std::fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessTransport")
            .field("me", &self.me)
            .finish()
    }
}

/// What the hub decided for one request.
enum Fate {
    Deliver { twice: bool },
    LoseBefore,
    LoseAfter,
}

#[async_trait]
impl Transport for InProcessTransport {
    fn local_node(&self) -> &NodeId {
        &self.me
    }

    async fn put_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, TransportError> {
        let store = self.hub.store(&self.me, node)?;
        store
            .put_chunk(disk, folder, path, chunk)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn read_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<ChunkFile, TransportError> {
        let store = self.hub.store(&self.me, node)?;
        store
            .read_chunk(disk, addr)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn read_chunk_range(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let store = self.hub.store(&self.me, node)?;
        let delay = {
            let f = &self.hub.read().faults;
            // only a prefix that names range reads delays them
            if f.delay_prefix.is_empty() {
                Duration::ZERO
            } else {
                f.delay_of(CHUNK_RANGE)
            }
        };
        wait(delay).await;
        store
            .read_chunk_range(disk, addr, offset, len)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn check_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<Option<u64>, TransportError> {
        let store = self.hub.store(&self.me, node)?;
        store
            .check_chunk(disk, addr)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn delete_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<bool, TransportError> {
        let store = self.hub.store(&self.me, node)?;
        store
            .delete_chunk(disk, addr)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn scan_disk(
        &self,
        node: &NodeId,
        disk: &DiskId,
    ) -> Result<Vec<IndexedChunk>, TransportError> {
        let store = self.hub.store(&self.me, node)?;
        store
            .scan(disk)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn rename_file(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), TransportError> {
        let store = self.hub.store(&self.me, node)?;
        store
            .rename_file(disk, folder, file, path)
            .map_err(|e| TransportError::from_store(node, e))
    }

    async fn request(
        &self,
        node: &NodeId,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let (handler, fate, delay) = {
            let mut s = self.hub.write();
            if let Some(why) = s.faults.blocked(&self.me, node) {
                return Err(InProcessHub::unreachable(node, why));
            }
            let endpoint = s
                .nodes
                .get(node)
                .ok_or_else(|| InProcessHub::unreachable(node, "not in this hub"))?;
            let handler = endpoint.handlers.get(protocol).cloned().ok_or_else(|| {
                TransportError::NoHandler {
                    node: node.clone(),
                    protocol: protocol.to_owned(),
                }
            })?;
            let f = &mut s.faults;
            let fate = if f.loss_per_mille > 0 && f.roll() < f.loss_per_mille {
                if f.roll() < 500 {
                    Fate::LoseBefore
                } else {
                    Fate::LoseAfter
                }
            } else {
                let twice = f.dup_per_mille > 0
                    && protocol.starts_with(f.dup_prefix.as_str())
                    && f.roll() < f.dup_per_mille;
                Fate::Deliver { twice }
            };
            (handler, fate, f.delay_of(protocol))
        };
        wait(delay).await;
        let remote = |reason| TransportError::Remote {
            node: node.clone(),
            reason,
        };
        match fate {
            Fate::LoseBefore => Err(InProcessHub::unreachable(node, "request lost by the test")),
            Fate::LoseAfter => {
                let _ = handler(self.me.clone(), body).await;
                Err(InProcessHub::unreachable(node, "answer lost by the test"))
            }
            Fate::Deliver { twice } => {
                let answer = handler(self.me.clone(), body.clone()).await;
                if twice {
                    let _ = handler(self.me.clone(), body).await;
                }
                // the answer travels back: a link cut meanwhile (or one way) loses it
                let back = self.hub.read().faults.blocked(node, &self.me);
                match back {
                    Some(why) => Err(InProcessHub::unreachable(node, why)),
                    None => answer.map_err(remote),
                }
            }
        }
    }

    fn serve(&self, protocol: &str, handler: RequestHandler) {
        self.hub.serve(&self.me, protocol, handler);
    }

    fn is_connected(&self, node: &NodeId) -> bool {
        let s = self.hub.read();
        s.nodes.contains_key(node) && s.faults.link_closed(&self.me, node).is_none()
    }

    fn connected_peers(&self) -> Vec<NodeId> {
        let s = self.hub.read();
        s.nodes
            .keys()
            .filter(|n| **n != self.me && s.faults.link_closed(&self.me, n).is_none())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChunkKey, FileId};
    use crate::store::MemoryChunkStore;

    #[tokio::test]
    async fn chunks_and_requests_reach_peers_until_cut_off() {
        let hub = InProcessHub::new();
        let (a, b): (NodeId, NodeId) = ("a".into(), "b".into());
        let disk = DiskId("b0".into());
        let ta = hub.join(
            a.clone(),
            Arc::new(MemoryChunkStore::new(&[(DiskId("a0".into()), 1 << 20)])),
        );
        hub.join(
            b.clone(),
            Arc::new(MemoryChunkStore::new(&[(disk.clone(), 1 << 20)])),
        );
        hub.serve(
            &b,
            "echo",
            Arc::new(|_from, body: Vec<u8>| {
                Box::pin(async move { Ok(body.into_iter().rev().collect()) })
            }),
        );

        let key = ChunkKey {
            file: FileId(1),
            stripe: 0,
            generation: 1,
            index: 0,
        };
        let chunk = ChunkFile::new(
            key,
            0,
            3,
            1,
            0,
            crate::checksum::crc32(b"abc"),
            b"abc".to_vec(),
        );
        let folder = ChunkFolder::for_path("/x");
        let stored = ta
            .put_chunk(&b, &disk, &folder, "/x", &chunk)
            .await
            .unwrap();
        assert_eq!(ta.read_chunk(&b, &disk, &stored.addr).await.unwrap(), chunk);
        assert_eq!(
            ta.request(&b, "echo", vec![1, 2, 3]).await.unwrap(),
            vec![3, 2, 1]
        );
        assert!(matches!(
            ta.request(&b, "raft", vec![]).await,
            Err(TransportError::NoHandler { .. })
        ));

        assert!(ta.delete_chunk(&b, &disk, &stored.addr).await.unwrap());
        assert!(matches!(
            ta.read_chunk(&b, &disk, &stored.addr).await,
            Err(TransportError::ChunkDamaged { .. })
        ));

        hub.set_unreachable(&b, true);
        assert!(matches!(
            ta.check_chunk(&b, &disk, &stored.addr).await,
            Err(TransportError::Unreachable { .. })
        ));
        hub.set_unreachable(&b, false);
        assert_eq!(ta.check_chunk(&b, &disk, &stored.addr).await.unwrap(), None);
        assert_eq!(ta.local_node(), &a);
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;
    use crate::store::MemoryChunkStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Three nodes, each counting the requests its "count" handler ran.
    fn three() -> (InProcessHub, Vec<InProcessTransport>, Vec<Arc<AtomicUsize>>) {
        let hub = InProcessHub::new();
        let mut ts = Vec::new();
        let mut counts = Vec::new();
        for n in ["a", "b", "c"] {
            let t = hub.join(
                n.into(),
                Arc::new(MemoryChunkStore::new(&[(DiskId(format!("{n}0")), 1 << 20)])),
            );
            let count = Arc::new(AtomicUsize::new(0));
            let c = count.clone();
            t.serve(
                "count",
                Arc::new(move |_from, body| {
                    c.fetch_add(1, Ordering::SeqCst);
                    Box::pin(async move { Ok(body) })
                }),
            );
            ts.push(t);
            counts.push(count);
        }
        (hub, ts, counts)
    }

    fn node(n: &str) -> NodeId {
        n.into()
    }

    #[tokio::test]
    async fn partitions_and_one_way_cuts_stop_requests_until_healed() {
        let (hub, ts, counts) = three();
        assert_eq!(ts[0].connected_peers(), vec![node("b"), node("c")]);
        hub.partition(&[vec![node("a")], vec![node("b"), node("c")]]);
        assert!(matches!(
            ts[0].request(&node("b"), "count", vec![1]).await,
            Err(TransportError::Unreachable { .. })
        ));
        assert_eq!(counts[1].load(Ordering::SeqCst), 0, "nothing was delivered");
        assert!(ts[0].connected_peers().is_empty());
        assert_eq!(ts[1].connected_peers(), vec![node("c")]);
        assert_eq!(
            ts[1].request(&node("c"), "count", vec![2]).await.unwrap(),
            vec![2]
        );
        hub.heal();
        assert_eq!(
            ts[0].request(&node("b"), "count", vec![3]).await.unwrap(),
            vec![3]
        );

        // one way: a's requests reach b, b's answers do not come back, and b cannot call a
        hub.cut(&node("b"), &node("a"));
        let before = counts[1].load(Ordering::SeqCst);
        assert!(ts[0].request(&node("b"), "count", vec![4]).await.is_err());
        assert_eq!(
            counts[1].load(Ordering::SeqCst),
            before + 1,
            "delivered, answer lost"
        );
        assert!(!ts[1].is_connected(&node("a")));
        hub.heal();

        // a node that left is unreachable until it joins again
        hub.leave(&node("c"));
        assert!(ts[0].request(&node("c"), "count", vec![5]).await.is_err());
        assert!(!ts[0].is_connected(&node("c")));
    }

    #[tokio::test]
    async fn losses_and_duplicates_follow_the_seed() {
        let run = |seed: u64| async move {
            let (hub, ts, counts) = three();
            hub.seed(seed);
            hub.set_loss(300);
            hub.set_duplicates(300, "count");
            let mut outcomes = Vec::new();
            for i in 0..200u8 {
                outcomes.push(ts[0].request(&node("b"), "count", vec![i]).await.is_ok());
            }
            (outcomes, counts[1].load(Ordering::SeqCst))
        };
        let (a, ran_a) = run(7).await;
        let (b, ran_b) = run(7).await;
        assert_eq!(a, b, "the same seed replays the same faults");
        assert_eq!(ran_a, ran_b);
        let ok = a.iter().filter(|o| **o).count();
        // about 30% lost; of the rest about 30% ran twice; half the losses ran once
        assert!((100..180).contains(&ok), "{ok} of 200 answered");
        assert!(
            ran_a > ok,
            "some requests ran twice or ran with their answer lost"
        );
        let (c, _) = run(8).await;
        assert_ne!(a, c, "another seed, other faults");
    }
}
