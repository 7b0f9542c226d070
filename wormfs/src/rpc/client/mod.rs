//! A typed client of a storage node: domain types in, domain types out, errors with errno.

use super::convert::attr_from_proto;
use super::nodes::{self, log_warn};
use super::proto::{self, worm_fs_client::WormFsClient};
use super::{errno_of, PIECE_SIZE};

mod admin;
mod failover;
mod lock_calls;
mod meta_calls;
mod stripe_calls;
use crate::errno;
use crate::ids::FileId;
use crate::meta::{Attr, DirEntry, Timestamp, XattrMode};
use prost::bytes::Bytes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use failover::Moves;
pub(crate) use failover::Retry;

pub use super::identity::Identity;
pub use meta_calls::Created;

/// A connection to one node: TLS-PSK underneath, the acting-as headers on each call.
pub type Conn =
    WormFsClient<InterceptedService<super::fresh::RecordApplied<Channel>, ActingAsHeaders>>;

/// The uid and groups a call acts as (see [`acting_as`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActAs {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

thread_local! {
    static ACTING_AS: std::cell::RefCell<Option<ActAs>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every call made on this thread acting as `who` (a mount serving many local
/// users passes each request's uid this way; the node honours it only for a `--host` or an
/// admin identity). Calls must be driven on this thread (`block_on`) to carry it.
pub fn acting_as<T>(who: ActAs, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<ActAs>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let before = self.0.take();
            ACTING_AS.with(|a| *a.borrow_mut() = before);
        }
    }
    let before = ACTING_AS.with(|a| a.borrow_mut().replace(who));
    let _reset = Reset(before);
    f()
}

/// Puts the [`acting_as`] caller of this thread, if any, in each request's headers, and the
/// highest metadata index the client has seen (see [`super::fresh`]).
#[derive(Clone, Debug, Default)]
pub struct ActingAsHeaders {
    seen: super::fresh::Seen,
}

impl tonic::service::Interceptor for ActingAsHeaders {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let seen = self.seen.get();
        if seen > 0 {
            r.metadata_mut()
                .insert(super::fresh::AFTER_HEADER, seen.into());
        }
        ACTING_AS.with(|a| {
            if let Some(who) = a.borrow().as_ref() {
                let m = r.metadata_mut();
                m.insert(super::ACT_UID_HEADER, who.uid.into());
                m.insert(super::ACT_GID_HEADER, who.gid.into());
                if !who.groups.is_empty() {
                    let list = who
                        .groups
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",");
                    if let Ok(v) = list.parse() {
                        m.insert(super::ACT_GROUPS_HEADER, v);
                    }
                }
            }
        });
        Ok(r)
    }
}

/// A stripe's bytes as they arrived from the node: its pieces in order, never copied into
/// one buffer. An aligned read of up to [`super::READ_PIECE_SIZE`] lies in one piece.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StripePieces {
    pieces: Vec<Bytes>,
    len: usize,
}

impl StripePieces {
    /// The stripe's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty stripe (a hole).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a piece.
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    /// Bytes `lo..hi`, clipped to the stripe: a view into one piece when they lie in one,
    /// otherwise a copy.
    pub fn slice(&self, lo: usize, hi: usize) -> Bytes {
        let hi = hi.min(self.len);
        if lo >= hi {
            return Bytes::new();
        }
        let mut start = 0;
        let mut out: Option<Vec<u8>> = None;
        for p in &self.pieces {
            let end = start + p.len();
            if end > lo && start < hi {
                let (a, b) = (lo.max(start) - start, hi.min(end) - start);
                if out.is_none() && lo >= start && hi <= end {
                    return p.slice(a..b);
                }
                out.get_or_insert_with(|| Vec::with_capacity(hi - lo))
                    .extend_from_slice(&p[a..b]);
            }
            if end >= hi {
                break;
            }
            start = end;
        }
        out.map(Bytes::from).unwrap_or_default()
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The whole stripe in one buffer (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for p in &self.pieces {
            v.extend_from_slice(p);
        }
        v
    }
}

impl From<Vec<u8>> for StripePieces {
    fn from(v: Vec<u8>) -> StripePieces {
        let mut s = StripePieces::default();
        s.push(Bytes::from(v));
        s
    }
}

/// A failed call: the errno to return to an application, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// The POSIX errno.
    pub errno: i32,
    /// What the node (or the connection) said.
    pub message: String,
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> ClientError {
        let message = if s.metadata().get(super::ERRNO_METADATA).is_some() {
            s.message().to_owned()
        } else {
            format!(
                "node unreachable or call failed: {} ({:?})",
                s.message(),
                s.code()
            )
        };
        ClientError {
            errno: errno_of(&s),
            message,
        }
    }
}

fn proto_err(e: tonic::Status) -> ClientError {
    ClientError {
        errno: errno::EIO,
        message: format!("the node sent an invalid reply: {}", e.message()),
    }
}

/// Attribute changes for [`Client::setattr`].
pub type SetAttr = proto::SetAttrRequest;

/// How long [`Client::connect`] waits for one address (TCP and HTTP/2 handshake), and for
/// the node list it asks for after connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a connection with calls in flight pings its node (HTTP/2 keep-alive).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// How long a ping may go unanswered before the connection is dropped and the client fails
/// over.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`Client`] connects and where it caches the node list.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Where the node list is cached (see [`nodes::cache_path`]); `None`: no cache.
    pub cache: Option<PathBuf>,
    /// How long to wait for one address.
    pub connect_timeout: Duration,
    /// The user and key presented to the nodes (see [`super::client_config::identity`]).
    /// Nodes accept no connection without one.
    pub identity: Option<Arc<Identity>>,
}

impl Default for ConnectOptions {
    /// The cache at [`nodes::cache_path`], [`CONNECT_TIMEOUT`], and no identity.
    fn default() -> Self {
        ConnectOptions {
            cache: nodes::cache_path(),
            connect_timeout: CONNECT_TIMEOUT,
            identity: None,
        }
    }
}

impl ConnectOptions {
    /// The default options with `identity`.
    pub fn with_identity(identity: Identity) -> ConnectOptions {
        ConnectOptions {
            identity: Some(Arc::new(identity)),
            ..ConnectOptions::default()
        }
    }
}

/// A new random request id for a [`Retry::Deduplicated`] call (32 hex digits).
pub(super) fn request_id() -> String {
    let mut b = [0u8; 16];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        // no randomness: the clock and a counter still make ids no other call repeats
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        let n =
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) ^ u64::from(std::process::id());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `req` with `id` in its [`super::REQUEST_ID_HEADER`].
pub(super) fn with_request_id<T>(req: T, id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(req);
    if let Ok(v) = id.parse() {
        r.metadata_mut().insert(super::REQUEST_ID_HEADER, v);
    }
    r
}

/// The node a client talks to now.
#[derive(Debug)]
struct State {
    /// Every known node's address; `nodes[current]` is the one in use.
    nodes: Vec<String>,
    current: usize,
    conn: Conn,
    /// Bumped at each failover, so that calls failing together move only once.
    generation: u64,
    /// When `conn` was opened.
    since: std::time::Instant,
}

#[derive(Debug)]
struct Shared {
    first: String,
    /// The highest metadata index seen, shared with forks (see [`super::fresh`]).
    seen: super::fresh::Seen,
    /// Failovers, shared with forks.
    moves: Moves,
    opts: ConnectOptions,
    state: Mutex<State>,
    failover: tokio::sync::Mutex<()>,
}

/// A connection to a WormFS cluster through one node at a time. Cheap to clone; clones
/// share the connection and the node list.
///
/// It knows every node of the cluster (asked with `GetClusterStatus` after connecting, and
/// cached in [`nodes::cache_path`]). When the node in use stops answering (connection
/// refused or broken, timeouts: not the errors a node returns with an errno), the client
/// moves to the next node that answers, and:
/// - repeats reads, lookups and whole-stripe writes there;
/// - repeats the file-system changes there too (create, link, unlink, rmdir, rename,
///   setattr, setxattr, removexattr): each carries a request id, which the cluster applies
///   once;
/// - for another change that may have reached the dead node (a policy, the admin calls),
///   returns `EIO` saying the change could not be confirmed (it is repeated only when it
///   was never sent, or the node refused it for being behind).
///
/// Later calls go to the new node, and the client's forks follow it. A node behind what the
/// client has seen is asked again, then left (see [`super::fresh`]). See `docs/client.md`.
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

fn endpoint(address: &str, opts: &ConnectOptions) -> Result<Endpoint, ClientError> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let bad = |e: &dyn std::fmt::Display| ClientError {
        errno: errno::EINVAL,
        message: format!("`{address}` is not a node address: {e}"),
    };
    Ok(Endpoint::from_shared(url)
        .map_err(|e| bad(&e))?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        // A node that vanishes or freezes without closing the connection is noticed by
        // these pings, within 8 s (a node answers them from its I/O loop, however busy its
        // disks are; 10 s and 20 s made a mount wait up to 30 s per frozen node).
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .initial_stream_window_size(Some(super::WINDOW_SIZE))
        .initial_connection_window_size(Some(4 * super::WINDOW_SIZE))
        .max_frame_size(Some(super::MAX_FRAME_SIZE)))
}

/// The io error of kind `PermissionDenied` in `e`'s chain: the node refused the identity.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::PermissionDenied {
                return Some(io.to_string());
            }
        }
        cur = e.source();
    }
    None
}

/// Opens a connection to `address`.
async fn open(
    address: &str,
    opts: &ConnectOptions,
    seen: &super::fresh::Seen,
) -> Result<Conn, ClientError> {
    let endpoint = endpoint(address, opts)?;
    let Some(identity) = &opts.identity else {
        return Err(ClientError {
            errno: errno::EACCES,
            message: format!(
                "no client identity to present to {address}: pass --identity FILE, set {}, or                  name one in the client config (`identity = \"FILE\"`); a node writes its first                  admin identity to DATA_DIR/{}",
                super::identity::IDENTITY_ENV,
                super::identity::ADMIN_IDENTITY_FILE
            ),
        });
    };
    let connector = super::tls::tonic_connector(identity.clone()).map_err(|e| ClientError {
        errno: errno::EIO,
        message: format!("set up TLS: {e}"),
    })?;
    let unreachable = |e: &dyn std::fmt::Display| ClientError {
        errno: errno::EIO,
        message: format!("cannot reach the node at {address}: {e}; is wormfs-node running there?"),
    };
    let channel = match tokio::time::timeout(
        2 * opts.connect_timeout,
        endpoint.connect_with_connector(connector),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            if let Some(why) = refusal(&e) {
                return Err(ClientError {
                    errno: errno::EACCES,
                    message: format!("identity `{}`: {why}", identity.user),
                });
            }
            return Err(unreachable(&e));
        }
        Err(_) => return Err(unreachable(&"timed out")),
    };
    let channel = super::fresh::RecordApplied::new(channel, seen.clone());
    let headers = ActingAsHeaders { seen: seen.clone() };
    Ok(WormFsClient::with_interceptor(channel, headers)
        .max_decoding_message_size(super::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(super::MAX_MESSAGE_SIZE))
}

impl Client {
    /// Connects to the node at `address` (`host:port` or a `http://` URL), then learns the
    /// cluster's other nodes and caches them. When `address` does not answer and the cached
    /// node list holds it, the other cached nodes are tried.
    pub async fn connect(address: &str) -> Result<Client, ClientError> {
        Self::connect_with(&[address.to_owned()], ConnectOptions::default()).await
    }

    /// Connects to the first of `addresses` that answers (in order), then as
    /// [`Client::connect`].
    pub async fn connect_any(addresses: &[String]) -> Result<Client, ClientError> {
        Self::connect_with(addresses, ConnectOptions::default()).await
    }

    /// [`Client::connect_any`] with explicit options (cache location, timeout).
    pub async fn connect_with(
        addresses: &[String],
        opts: ConnectOptions,
    ) -> Result<Client, ClientError> {
        if addresses.is_empty() {
            return Err(ClientError {
                errno: errno::EINVAL,
                message: "no node address to connect to".into(),
            });
        }
        for a in addresses {
            endpoint(a, &opts)?;
        }
        let seen = super::fresh::Seen::default();
        let mut tried: Vec<String> = Vec::new();
        let mut errors: Vec<ClientError> = Vec::new();
        let mut found = None;
        for a in addresses {
            tried.push(a.clone());
            match open(a, &opts, &seen).await {
                Ok(conn) => {
                    found = Some((a.clone(), conn));
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        if found.is_none() {
            // The cached list stands in only for the cluster it was written for.
            let cached = match &opts.cache {
                Some(p) => nodes::read_cache(p).unwrap_or_else(|e| {
                    log_warn!("ignoring the node cache {}: {e}", p.display());
                    None
                }),
                None => None,
            }
            .unwrap_or_default();
            let known = |a: &String| {
                cached
                    .iter()
                    .any(|c| nodes::normalize(c) == nodes::normalize(a))
            };
            if addresses.iter().any(known) {
                for a in &cached {
                    if tried
                        .iter()
                        .any(|t| nodes::normalize(t) == nodes::normalize(a))
                        || endpoint(a, &opts).is_err()
                    {
                        continue;
                    }
                    tried.push(a.clone());
                    match open(a, &opts, &seen).await {
                        Ok(conn) => {
                            log_warn!(
                                "{} did not answer; using {a} from the node cache",
                                addresses.join(", ")
                            );
                            found = Some((a.clone(), conn));
                            break;
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        let Some((address, conn)) = found else {
            if errors.len() == 1 {
                return Err(errors.remove(0));
            }
            return Err(ClientError {
                errno: errno::EIO,
                message: format!(
                    "cannot reach any node of {}: {}; is wormfs-node running there?",
                    tried.join(", "),
                    errors
                        .iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        };
        let mut nodes = vec![address.clone()];
        for a in addresses.iter().chain(&tried) {
            if !nodes
                .iter()
                .any(|n| nodes::normalize(n) == nodes::normalize(a))
            {
                nodes.push(a.clone());
            }
        }
        let client = Client {
            shared: Arc::new(Shared {
                first: address,
                seen,
                moves: Moves::default(),
                opts,
                state: Mutex::new(State {
                    nodes,
                    current: 0,
                    conn,
                    generation: 0,
                    since: std::time::Instant::now(),
                }),
                failover: tokio::sync::Mutex::new(()),
            }),
        };
        client.refresh_nodes().await;
        Ok(client)
    }

    /// A client with its own connection to the node this one uses now, and its own copy of
    /// the node list. Its connection's tasks run on the runtime this is awaited on: a
    /// thread that drives a runtime of its own makes its calls without handing them to
    /// other threads.
    pub async fn fork(&self) -> Result<Client, ClientError> {
        let (nodes, current) = {
            let s = self.lock();
            (s.nodes.clone(), s.current)
        };
        let conn = open(&nodes[current], &self.shared.opts, &self.shared.seen).await?;
        Ok(Client {
            shared: Arc::new(Shared {
                first: self.shared.first.clone(),
                seen: self.shared.seen.clone(),
                moves: self.shared.moves.clone(),
                opts: self.shared.opts.clone(),
                state: Mutex::new(State {
                    nodes,
                    current,
                    conn,
                    generation: 0,
                    since: std::time::Instant::now(),
                }),
                failover: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The address this client first connected to (see [`Client::current_address`] for the
    /// node in use now).
    pub fn address(&self) -> &str {
        &self.shared.first
    }

    /// The address of the node calls go to now.
    pub fn current_address(&self) -> String {
        let s = self.lock();
        s.nodes[s.current].clone()
    }

    /// Every known node's address, the one in use first.
    pub fn nodes(&self) -> Vec<String> {
        let s = self.lock();
        let mut out = Vec::with_capacity(s.nodes.len());
        out.push(s.nodes[s.current].clone());
        out.extend(
            s.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != s.current)
                .map(|(_, n)| n.clone()),
        );
        out
    }

    /// The generated client of the node in use, for calls without a typed wrapper. Calls
    /// made through it do not fail over.
    pub fn raw(&self) -> Conn {
        self.lock().conn.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the node in use for the cluster's members, makes them the node list (the node
    /// in use first, online nodes before offline ones) and writes the cache. Failures keep
    /// the list as it is.
    async fn refresh_nodes(&self) {
        let (conn, via) = {
            let s = self.lock();
            (s.conn.clone(), s.nodes[s.current].clone())
        };
        let mut conn = conn;
        let reply = tokio::time::timeout(
            self.shared.opts.connect_timeout,
            conn.get_cluster_status(proto::Empty {}),
        )
        .await;
        let status = match reply {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(e)) => {
                log_warn!(
                    "cannot list the cluster's nodes through {via}: {}",
                    e.message()
                );
                return;
            }
            Err(_) => {
                log_warn!("cannot list the cluster's nodes through {via}: timed out");
                return;
            }
        };
        let mut members: Vec<(bool, String)> = status
            .nodes
            .iter()
            .filter(|n| !n.address.trim().is_empty())
            .map(|n| (n.state != "online", nodes::fill_host(&n.address, &via)))
            .collect();
        members.sort_by_key(|(offline, _)| *offline);
        let nodes = {
            let mut s = self.lock();
            let current = s.nodes[s.current].clone();
            let mut list = vec![current];
            for (_, a) in members {
                if !list
                    .iter()
                    .any(|n| nodes::normalize(n) == nodes::normalize(&a))
                {
                    list.push(a);
                }
            }
            s.nodes = list.clone();
            s.current = 0;
            list
        };
        if let Some(path) = &self.shared.opts.cache {
            if let Err(e) = nodes::write_cache(path, &nodes) {
                log_warn!("cannot write the node cache {}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod piece_tests;
#[cfg(test)]
mod tests;
