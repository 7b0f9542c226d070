//! [`P2pTransport`]: the [`Transport`] between storage nodes over libp2p (TCP + noise +
//! yamux).
//!
//! - **Identity**: each node's ed25519 key lives in its data directory
//!   ([`load_or_create_identity`]); its peer ID is what other nodes pin.
//! - **Pinning**: the [`PeerBook`] lists the peers' addresses and the ID pinned for each. A
//!   connection to a listed address that presents another ID is refused and recorded (see
//!   [`P2pTransport::refusals`]); an inbound connection from an ID not in the book is refused.
//! - **Requests** ([`Transport::request`]): request-response in protobuf (`/wormfs/rpc/2`;
//!   CBOR `/1` with older nodes; `proto/wormfs_p2p.proto`), for Raft and heartbeats. Each connection
//!   starts with a hello that tells each side the other's node name.
//! - **Chunks**: chunk operations go straight to the node owning the disk, on the data path
//!   (the *data path*: TCP connections beside libp2p, sealed with keys handed out over
//!   it; see docs/architecture.md, "The data path") or, to
//!   a node of a release before it, on one libp2p stream per operation.

mod book;
mod calls;
mod chunks;
mod data;
mod gate;
mod identity;
mod swarm;
mod wire;

pub use book::{BookEntry, PeerBook, PEER_BOOK_FILE_NAME};
pub use identity::{load_or_create_identity, KEY_FILE_NAME};

use gate::{multiaddr, socket_addr, Gate};
use swarm::{accept_chunks, run_swarm};

use crate::chunk::ChunkFile;
use crate::ids::{DiskId, FileId, NodeId};
use crate::net::{Transport, TransportError};
use crate::store::{ChunkAddr, ChunkFolder, ChunkStore, IndexedChunk, StoredChunk};
use async_trait::async_trait;
use chunks::{ChunkRequest, ChunkResponse};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, PeerId, SwarmBuilder};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use wire::{Wire, WireCodec, WireRequest, WireResponse, CHUNK_V1, CHUNK_V2, RPC_V1, RPC_V2};

/// Why the transport could not start or be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// The node's key file cannot be used.
    #[error("node identity `{}`: {reason}", path.display())]
    Identity {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The peer book failed.
    #[error("peer book: {0}")]
    PeerBook(String),
    /// libp2p could not be set up or listen.
    #[error("libp2p: {0}")]
    Network(String),
}

pub use crate::net::RequestHandler;

/// What a [`P2pTransport`] needs to start.
pub struct P2pConfig {
    /// This node's name.
    pub node: NodeId,
    /// This node's key.
    pub keypair: Keypair,
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The peer pins.
    pub book: Arc<PeerBook>,
    /// The local disks, served to peers.
    pub store: Arc<dyn ChunkStore>,
    /// How often unconnected peers are dialled again.
    pub redial_interval: Duration,
    /// How long a request may wait for its answer.
    pub request_timeout: Duration,
    /// How long a chunk operation may take, all told.
    pub chunk_timeout: Duration,
    /// Where the data path listens (`None`: `listen`'s address with any free port; peers
    /// learn the port with each ticket).
    pub data_listen: Option<SocketAddr>,
}

/// A refused connection, kept for `wormfs status` and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The address of the peer.
    pub addr: String,
    /// The ID pinned there, if any.
    pub expected: Option<PeerId>,
    /// The ID the peer presented.
    pub presented: PeerId,
    /// When.
    pub at: SystemTime,
}

/// A peer as the transport sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its node name, once its hello has arrived.
    pub node: Option<NodeId>,
    /// Its peer ID.
    pub peer_id: PeerId,
    /// Whether a connection is open.
    pub connected: bool,
}

/// Largest request or response on the request protocol (Raft batches stay well under it).
const MAX_MESSAGE: u64 = 32 * 1024 * 1024;
const REFUSALS_KEPT: usize = 32;
const OPEN_ATTEMPTS: u32 = 5;

enum Command {
    Request {
        peer: PeerId,
        request: WireRequest,
        reply: oneshot::Sender<Result<WireResponse, String>>,
    },
    Respond {
        channel: ResponseChannel<WireResponse>,
        response: WireResponse,
    },
    Redial,
}

#[derive(Default)]
struct Names {
    by_node: HashMap<NodeId, PeerId>,
    by_peer: HashMap<PeerId, NodeId>,
}

struct Shared {
    node: NodeId,
    peer_id: PeerId,
    listen: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    control: libp2p_stream::Control,
    names: RwLock<Names>,
    connected: RwLock<HashSet<PeerId>>,
    handlers: RwLock<HashMap<String, RequestHandler>>,
    store: Arc<dyn ChunkStore>,
    book: Arc<PeerBook>,
    chunk_timeout: Duration,
    /// How long a request-channel call may wait for its answer (on either road).
    request_timeout: Duration,
    /// False only for a node playing one of the release before protobuf, in tests.
    speaks_v2: bool,
    /// Peers that could not serve a part of a chunk (nodes of a release before
    /// `ReadRange`): they are asked for whole chunks.
    no_ranges: Mutex<HashSet<NodeId>>,
    /// Idle data connections to peers, and peers without a data path for now.
    data: Mutex<calls::DataPeers>,
    /// Each connected peer's address as its connection came from.
    remote_ip: RwLock<HashMap<PeerId, IpAddr>>,
    refusals: Arc<Mutex<VecDeque<Refusal>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    /// Whether `node` has said hello on a libp2p connection that is still up.
    fn node_connected(&self, node: &NodeId) -> bool {
        let peer = self
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_node
            .get(node)
            .copied();
        peer.is_some_and(|p| {
            self.connected
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&p)
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The libp2p transport of one node. Cheap to clone; the network stops when the last clone
/// is dropped (or at [`P2pTransport::shutdown`]).
#[derive(Clone)]
pub struct P2pTransport {
    shared: Arc<Shared>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gate: Gate,
    rpc: request_response::Behaviour<WireCodec>,
    streams: libp2p_stream::Behaviour,
}

enum Pending {
    Caller(oneshot::Sender<Result<WireResponse, String>>),
    Hello,
}

impl P2pTransport {
    /// Starts listening and dialling the book's peers. Returns once the listener is bound.
    pub async fn start(config: P2pConfig) -> Result<P2pTransport, P2pError> {
        Self::start_speaking(config, true).await
    }

    /// [`P2pTransport::start`], speaking version 2 of the protocols or, as a node of the
    /// release before protobuf (for upgrade tests), only version 1.
    pub(crate) async fn start_speaking(
        config: P2pConfig,
        speaks_v2: bool,
    ) -> Result<P2pTransport, P2pError> {
        let P2pConfig {
            node,
            keypair,
            listen,
            book,
            store,
            redial_interval,
            request_timeout,
            chunk_timeout,
            data_listen,
        } = config;
        let peer_id = keypair.public().to_peer_id();
        let refusals = Arc::new(Mutex::new(VecDeque::new()));
        let gate = Gate {
            book: book.clone(),
            refusals: refusals.clone(),
        };
        let net = |e: &dyn std::fmt::Display| P2pError::Network(e.to_string());
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| net(&e))?
            .with_behaviour(|_| Behaviour {
                gate,
                // version 2 first: a peer that knows it picks it
                rpc: request_response::Behaviour::with_codec(
                    WireCodec::new(MAX_MESSAGE),
                    [(RPC_V2, speaks_v2), (RPC_V1, true)]
                        .into_iter()
                        .filter(|(_, on)| *on)
                        .map(|(p, _)| (p, ProtocolSupport::Full)),
                    request_response::Config::default().with_request_timeout(request_timeout),
                ),
                streams: libp2p_stream::Behaviour::new(),
            })
            .map_err(|e| net(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        swarm
            .listen_on(multiaddr(listen))
            .map_err(|e| P2pError::Network(format!("cannot listen on {listen}: {}", causes(&e))))?;
        // wait for the listener to be bound, so the caller knows the real port
        let bound = loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    if let Some(a) = socket_addr(&address) {
                        break a;
                    }
                }
                SwarmEvent::ListenerError { error, .. }
                | SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                } => {
                    return Err(P2pError::Network(format!(
                        "cannot listen on {listen}: {}",
                        causes(&error)
                    )));
                }
                _ => {}
            }
        };
        let mut control = swarm.behaviour().streams.new_control();
        let incoming_v2 = if speaks_v2 {
            Some(control.accept(CHUNK_V2).map_err(|e| net(&e))?)
        } else {
            None
        };
        let incoming_v1 = control.accept(CHUNK_V1).map_err(|e| net(&e))?;
        // the data path, beside libp2p (a node playing the release before has none)
        let data_listener = match (speaks_v2, data_listen) {
            (false, _) => None,
            (true, Some(at)) => Some(tokio::net::TcpListener::bind(at).await.map_err(|e| {
                P2pError::Network(format!("cannot listen for chunk data on {at}: {e}"))
            })?),
            (true, None) => {
                let at = SocketAddr::new(bound.ip(), 0);
                match tokio::net::TcpListener::bind(at).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(
                            "no data path ({at}: {e}): chunks go through libp2p streams"
                        );
                        None
                    }
                }
            }
        };
        let tickets = Arc::new(data::Tickets::default());
        let mut handlers: HashMap<String, RequestHandler> = HashMap::new();
        let data_port = data_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        if let Some(port) = data_port {
            let tickets = tickets.clone();
            let issue: RequestHandler = Arc::new(move |caller, _body| {
                let tickets = tickets.clone();
                Box::pin(async move {
                    tickets
                        .issue(caller, port)
                        .map(|t| t.encode())
                        .map_err(|e| format!("cannot issue a data ticket: {e}"))
                })
            });
            handlers.insert(data::TICKET_CALL.to_owned(), issue);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node,
            peer_id,
            listen: bound,
            commands: tx,
            control,
            names: RwLock::new(Names::default()),
            connected: RwLock::new(HashSet::new()),
            handlers: RwLock::new(handlers),
            store,
            book,
            chunk_timeout,
            request_timeout,
            speaks_v2,
            no_ranges: Mutex::new(HashSet::new()),
            data: Mutex::new(calls::DataPeers::default()),
            remote_ip: RwLock::new(HashMap::new()),
            refusals,
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&shared);
        let mut tasks = vec![
            tokio::spawn(run_swarm(swarm, rx, weak.clone())),
            tokio::spawn(accept_chunks(incoming_v1, Wire::V1, weak.clone())),
        ];
        if let Some(listener) = data_listener {
            tasks.push(tokio::spawn(data::accept(listener, tickets, weak.clone())));
        }
        if let Some(incoming) = incoming_v2 {
            tasks.push(tokio::spawn(accept_chunks(
                incoming,
                Wire::V2,
                weak.clone(),
            )));
        }
        tasks.push(tokio::spawn({
            let commands = shared.commands.clone();
            async move {
                let mut tick = tokio::time::interval(redial_interval);
                loop {
                    tick.tick().await;
                    if commands.send(Command::Redial).is_err() {
                        break;
                    }
                }
            }
        }));
        shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tasks);
        Ok(P2pTransport { shared })
    }

    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The bound listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The peer book.
    pub fn book(&self) -> &Arc<PeerBook> {
        &self.shared.book
    }

    /// Adds a peer to the book (`None`: trust its first ID) and dials it.
    pub fn add_peer(&self, addr: SocketAddr, peer_id: Option<PeerId>) -> Result<(), P2pError> {
        self.shared.book.add(addr, peer_id)?;
        let _ = self.shared.commands.send(Command::Redial);
        Ok(())
    }

    /// Every peer seen, connected or not.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let names = self.shared.names.read().unwrap_or_else(|e| e.into_inner());
        let connected = self
            .shared
            .connected
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut ids: HashSet<PeerId> = connected.iter().copied().collect();
        ids.extend(names.by_peer.keys().copied());
        let mut out: Vec<PeerStatus> = ids
            .into_iter()
            .map(|p| PeerStatus {
                node: names.by_peer.get(&p).cloned(),
                peer_id: p,
                connected: connected.contains(&p),
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node).then(a.peer_id.cmp(&b.peer_id)));
        out
    }

    /// Recent refused connections, oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.shared
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Stops the network tasks; calls fail afterwards.
    pub fn shutdown(&self) {
        for t in self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    fn peer_of(&self, node: &NodeId) -> Result<PeerId, TransportError> {
        let names = self.shared.names.read().unwrap_or_else(|e| e.into_inner());
        let peer = names.by_node.get(node).copied();
        drop(names);
        match peer {
            Some(p)
                if self
                    .shared
                    .connected
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&p) =>
            {
                Ok(p)
            }
            Some(_) => Err(TransportError::Unreachable {
                node: node.clone(),
                reason: "not connected".into(),
            }),
            None => Err(TransportError::Unreachable {
                node: node.clone(),
                reason: "no connection to this node yet (it has not said hello)".into(),
            }),
        }
    }

    async fn call(
        &self,
        node: &NodeId,
        request: WireRequest,
    ) -> Result<WireResponse, TransportError> {
        let peer = self.peer_of(node)?;
        let (tx, rx) = oneshot::channel();
        let gone = || TransportError::Unreachable {
            node: node.clone(),
            reason: "the transport has stopped".into(),
        };
        self.shared
            .commands
            .send(Command::Request {
                peer,
                request,
                reply: tx,
            })
            .map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .map_err(|reason| TransportError::Unreachable {
                node: node.clone(),
                reason,
            })
    }
}

#[async_trait]
impl Transport for P2pTransport {
    fn local_node(&self) -> &NodeId {
        &self.shared.node
    }

    fn serve(&self, protocol: &str, handler: RequestHandler) {
        self.shared
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(protocol.to_owned(), handler);
    }

    /// True when a connection to `node` is open and its hello has arrived.
    fn is_connected(&self, node: &NodeId) -> bool {
        self.peer_of(node).is_ok()
    }

    fn connected_peers(&self) -> Vec<NodeId> {
        self.peers()
            .into_iter()
            .filter(|p| p.connected)
            .filter_map(|p| p.node)
            .collect()
    }

    async fn put_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        path: &str,
        chunk: &ChunkFile,
    ) -> Result<StoredChunk, TransportError> {
        let request = ChunkRequest::Put {
            disk: disk.clone(),
            folder: folder.clone(),
            path: path.to_owned(),
        };
        // the header and the data go out as they are, not joined into one buffer first
        let (head, _) = chunk.encoded_header();
        match self.chunk_op(node, request, &[&head, &chunk.data]).await? {
            (ChunkResponse::Stored(s), _, _) => Ok(s),
            (other, _, _) => Err(chunks::reply_error(node, None, other)),
        }
    }

    async fn read_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<ChunkFile, TransportError> {
        let request = ChunkRequest::Read {
            disk: disk.clone(),
            addr: addr.clone(),
        };
        match self.chunk_op(node, request, &[]).await? {
            (ChunkResponse::Chunk, bytes, _) => {
                ChunkFile::decode_owned(bytes).map_err(|e| TransportError::ChunkDamaged {
                    node: node.clone(),
                    key: addr.key,
                    missing: false,
                    reason: format!("arrived damaged: {e}"),
                })
            }
            (other, _, _) => Err(chunks::reply_error(node, Some(addr), other)),
        }
    }

    async fn read_chunk_range(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let whole = || async {
            let chunk = self.read_chunk(node, disk, addr).await?;
            Ok(crate::store::data_range(&chunk, offset, len))
        };
        let ranges_known_bad = self
            .shared
            .no_ranges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(node);
        if ranges_known_bad || !self.shared.speaks_v2 {
            return whole().await;
        }
        let request = ChunkRequest::ReadRange {
            disk: disk.clone(),
            addr: addr.clone(),
            offset,
            len,
        };
        match self.chunk_op(node, request, &[]).await {
            Ok((ChunkResponse::Chunk, bytes, _)) => Ok(bytes),
            Ok((other, _, _)) => Err(chunks::reply_error(node, Some(addr), other)),
            // a node of a release before `ReadRange` (or before protobuf) cannot read the
            // request and drops the stream unanswered, while it is still connected
            Err(TransportError::Unreachable { .. }) if self.is_connected(node) => {
                tracing::debug!(%node, "the node reads no chunk ranges: asking for whole chunks");
                self.shared
                    .no_ranges
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node.clone());
                whole().await
            }
            Err(e) => Err(e),
        }
    }

    async fn check_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<Option<u64>, TransportError> {
        let request = ChunkRequest::Check {
            disk: disk.clone(),
            addr: addr.clone(),
        };
        match self.chunk_op(node, request, &[]).await? {
            (ChunkResponse::Checked(size), _, _) => Ok(size),
            (other, _, _) => Err(chunks::reply_error(node, Some(addr), other)),
        }
    }

    async fn delete_chunk(
        &self,
        node: &NodeId,
        disk: &DiskId,
        addr: &ChunkAddr,
    ) -> Result<bool, TransportError> {
        let request = ChunkRequest::Delete {
            disk: disk.clone(),
            addr: addr.clone(),
        };
        match self.chunk_op(node, request, &[]).await? {
            (ChunkResponse::Deleted(gone), _, _) => Ok(gone),
            (other, _, _) => Err(chunks::reply_error(node, Some(addr), other)),
        }
    }

    async fn scan_disk(
        &self,
        node: &NodeId,
        disk: &DiskId,
    ) -> Result<Vec<IndexedChunk>, TransportError> {
        let request = ChunkRequest::Scan { disk: disk.clone() };
        match self.chunk_op(node, request, &[]).await? {
            (ChunkResponse::Scanned, listing, wire) => wire::decode_listing(&listing, wire)
                .map_err(|e| TransportError::Remote {
                    node: node.clone(),
                    reason: format!("malformed listing of disk {disk}: {e}"),
                }),
            (other, _, _) => Err(chunks::reply_error(node, None, other)),
        }
    }

    async fn rename_file(
        &self,
        node: &NodeId,
        disk: &DiskId,
        folder: &ChunkFolder,
        file: FileId,
        path: &str,
    ) -> Result<(), TransportError> {
        let request = ChunkRequest::Rename {
            disk: disk.clone(),
            folder: folder.clone(),
            file,
            path: path.to_owned(),
        };
        match self.chunk_op(node, request, &[]).await? {
            (ChunkResponse::Renamed, _, _) => Ok(()),
            (other, _, _) => Err(chunks::reply_error(node, None, other)),
        }
    }

    async fn request(
        &self,
        node: &NodeId,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        if *node == self.shared.node {
            let handler = self
                .shared
                .handlers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(protocol)
                .cloned();
            let Some(handler) = handler else {
                return Err(TransportError::NoHandler {
                    node: node.clone(),
                    protocol: protocol.to_owned(),
                });
            };
            return handler(node.clone(), body)
                .await
                .map_err(|reason| TransportError::Remote {
                    node: node.clone(),
                    reason,
                });
        }
        self.peer_of(node)?;
        if protocol != data::TICKET_CALL {
            if let Some(answer) = self.call_data(node, protocol, &body).await? {
                return Ok(answer);
            }
        }
        self.request_p2p(node, protocol, body).await
    }
}

debug_by_name!(P2pConfig, P2pTransport);

#[cfg(test)]
mod tests;

/// `e` and its causes, `: `-joined, empty and repeated texts left out: libp2p's transport
/// errors print nothing themselves ("cannot listen on 127.0.0.1:7576: " hid "Address
/// already in use").
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut texts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        let t = e.to_string();
        if !t.is_empty() && !texts.iter().any(|seen| seen.contains(&t)) {
            texts.push(t);
        }
        cur = e.source();
    }
    if texts.is_empty() {
        format!("{e:?}")
    } else {
        texts.join(": ")
    }
}
