//! A typed client of a storage node: domain types in, domain types out, errors with errno.

use super::convert::attr_from_proto;
use super::nodes::{self, log_warn};
use super::proto::{self, worm_fs_client::WormFsClient};
use super::{errno_of, PIECE_SIZE};

mod admin;
use crate::errno;
use crate::ids::FileId;
use crate::meta::{Attr, DirEntry, Timestamp, XattrMode};
use prost::bytes::Bytes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

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

/// How a [`Client`] connects and where it caches the node list.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Where the node list is cached (see [`nodes::cache_path`]); `None`: no cache.
    pub cache: Option<PathBuf>,
    /// How long to wait for one address.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    /// The cache at [`nodes::cache_path`] and [`CONNECT_TIMEOUT`].
    fn default() -> Self {
        ConnectOptions {
            cache: nodes::cache_path(),
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

/// Whether a call may be sent again after its node stopped answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads, lookups and whole-stripe writes: repeating them changes nothing more.
    Safe,
    /// Metadata changes: repeated only when the request surely never left the client.
    OnlyUnsent,
}

/// The node a client talks to now.
#[derive(Debug)]
struct State {
    /// Every known node's address; `nodes[current]` is the one in use.
    nodes: Vec<String>,
    current: usize,
    conn: WormFsClient<Channel>,
    /// Bumped at each failover, so that calls failing together move only once.
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    first: String,
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
/// - for a metadata change that may have reached the dead node, returns `EIO` saying the
///   change could not be confirmed (it is repeated only when it was never sent).
///
/// Later calls go to the new node. See `docs/client.md`.
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
}

/// True when `s` says the node could not be reached or the call broke on the way, rather
/// than the node's own answer (which always carries an errno).
fn is_unreachable(s: &tonic::Status) -> bool {
    use tonic::Code;
    s.metadata().get(super::ERRNO_METADATA).is_none()
        && matches!(
            s.code(),
            Code::Unavailable
                | Code::Unknown
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Internal
        )
}

/// True when `s` is a failure to open the connection, so the request never left.
fn never_sent(s: &tonic::Status) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(s);
    let mut texts = vec![s.message().to_owned()];
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        texts.push(e.to_string());
        cur = e.source();
    }
    texts.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("tcp connect error")
            || t.contains("error trying to connect")
            || t.contains("connection refused")
    })
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
        // A node that vanishes without closing the connection is noticed by these pings.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .initial_stream_window_size(Some(super::WINDOW_SIZE))
        .initial_connection_window_size(Some(4 * super::WINDOW_SIZE))
        .max_frame_size(Some(super::MAX_FRAME_SIZE)))
}

/// Opens a connection to `address`.
async fn open(address: &str, opts: &ConnectOptions) -> Result<WormFsClient<Channel>, ClientError> {
    let endpoint = endpoint(address, opts)?;
    let unreachable = |e: &dyn std::fmt::Display| ClientError {
        errno: errno::EIO,
        message: format!("cannot reach the node at {address}: {e}; is wormfs-node running there?"),
    };
    let channel = match tokio::time::timeout(2 * opts.connect_timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(unreachable(&e)),
        Err(_) => return Err(unreachable(&"timed out")),
    };
    Ok(WormFsClient::new(channel)
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
        let mut tried: Vec<String> = Vec::new();
        let mut errors: Vec<ClientError> = Vec::new();
        let mut found = None;
        for a in addresses {
            tried.push(a.clone());
            match open(a, &opts).await {
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
                    match open(a, &opts).await {
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
                opts,
                state: Mutex::new(State {
                    nodes,
                    current: 0,
                    conn,
                    generation: 0,
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
        let conn = open(&nodes[current], &self.shared.opts).await?;
        Ok(Client {
            shared: Arc::new(Shared {
                first: self.shared.first.clone(),
                opts: self.shared.opts.clone(),
                state: Mutex::new(State {
                    nodes,
                    current,
                    conn,
                    generation: 0,
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
    pub fn raw(&self) -> WormFsClient<Channel> {
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

    /// Moves to the next node that answers, unless another call already moved away from
    /// the connection of `generation`. Tries every other node, then the failed one again.
    async fn fail_over(&self, generation: u64) -> Result<(), ClientError> {
        let _one_at_a_time = self.shared.failover.lock().await;
        let (nodes, current) = {
            let s = self.lock();
            if s.generation != generation {
                return Ok(());
            }
            (s.nodes.clone(), s.current)
        };
        let mut errors = Vec::new();
        for step in 1..=nodes.len() {
            let i = (current + step) % nodes.len();
            match open(&nodes[i], &self.shared.opts).await {
                Ok(conn) => {
                    {
                        let mut s = self.lock();
                        s.current = i;
                        s.conn = conn;
                        s.generation += 1;
                    }
                    if i != current {
                        log_warn!(
                            "node {} stopped answering; now using {}",
                            nodes[current],
                            nodes[i]
                        );
                    }
                    self.refresh_nodes().await;
                    return Ok(());
                }
                Err(e) => errors.push(e.message),
            }
        }
        Err(ClientError {
            errno: errno::EIO,
            message: format!(
                "no node of the cluster answers ({}): {}",
                nodes.join(", "),
                errors.join("; ")
            ),
        })
    }

    /// Runs `call` on the node in use, failing over as the type says (see [`Client`]).
    pub(super) async fn call<T, F, Fut>(
        &self,
        what: &str,
        retry: Retry,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(WormFsClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut attempts = 0;
        loop {
            let (conn, generation, address, known) = {
                let s = self.lock();
                (
                    s.conn.clone(),
                    s.generation,
                    s.nodes[s.current].clone(),
                    s.nodes.len(),
                )
            };
            let status = match call(conn).await {
                Ok(v) => return Ok(v),
                Err(s) => s,
            };
            if !is_unreachable(&status) {
                return Err(status.into());
            }
            attempts += 1;
            let unsent = never_sent(&status);
            let moved = self.fail_over(generation).await;
            if retry == Retry::OnlyUnsent && !unsent {
                return Err(ClientError {
                    errno: errno::EIO,
                    message: format!(
                        "{what}: the node at {address} stopped answering during the call ({}: {}), \
                         so the change could not be confirmed: it may or may not have been made",
                        status.code(),
                        status.message()
                    ),
                });
            }
            moved?;
            if attempts > known {
                return Err(ClientError {
                    errno: errno::EIO,
                    message: format!(
                        "{what}: no node answered after {attempts} attempts; the last, {address}, said: {} ({:?})",
                        status.message(),
                        status.code()
                    ),
                });
            }
        }
    }

    fn attr(reply: proto::AttrReply) -> Result<Attr, ClientError> {
        let a = reply
            .attr
            .ok_or_else(|| proto_err(tonic::Status::invalid_argument("reply without attr")))?;
        attr_from_proto(a).map_err(proto_err)
    }

    /// Looks `name` up in `parent`.
    pub async fn lookup(&self, parent: FileId, name: &str) -> Result<Attr, ClientError> {
        let req = proto::EntryRequest {
            parent: parent.0,
            name: name.to_owned(),
        };
        let r = self
            .call("lookup", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.lookup(req).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// An inode's attributes.
    pub async fn getattr(&self, ino: FileId) -> Result<Attr, ClientError> {
        let r = self
            .call("getattr", Retry::Safe, |mut c| async move {
                c.get_attr(proto::InoRequest { ino: ino.0 }).await
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Changes attributes (size included). Not repeated on another node once sent.
    pub async fn setattr(&self, req: SetAttr) -> Result<Attr, ClientError> {
        let r = self
            .call("setattr", Retry::OnlyUnsent, |mut c| async move {
                c.set_attr(req).await
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Creates an object; see [`proto::CreateRequest`]. Not repeated on another node once
    /// sent.
    pub async fn create(&self, req: proto::CreateRequest) -> Result<Attr, ClientError> {
        let r = self
            .call("create", Retry::OnlyUnsent, |mut c| {
                let req = req.clone();
                async move { c.create(req).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Adds a hard link. Not repeated on another node once sent.
    pub async fn link(
        &self,
        ino: FileId,
        new_parent: FileId,
        new_name: &str,
    ) -> Result<Attr, ClientError> {
        let req = proto::LinkRequest {
            ino: ino.0,
            new_parent: new_parent.0,
            new_name: new_name.to_owned(),
        };
        let r = self
            .call("link", Retry::OnlyUnsent, |mut c| {
                let req = req.clone();
                async move { c.link(req).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Removes a non-directory. Not repeated on another node once sent.
    pub async fn unlink(&self, parent: FileId, name: &str) -> Result<(), ClientError> {
        let req = proto::EntryRequest {
            parent: parent.0,
            name: name.to_owned(),
        };
        self.call("unlink", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.unlink(req).await }
        })
        .await?;
        Ok(())
    }

    /// Removes an empty directory. Not repeated on another node once sent.
    pub async fn rmdir(&self, parent: FileId, name: &str) -> Result<(), ClientError> {
        let req = proto::EntryRequest {
            parent: parent.0,
            name: name.to_owned(),
        };
        self.call("rmdir", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.rmdir(req).await }
        })
        .await?;
        Ok(())
    }

    /// Renames. Not repeated on another node once sent.
    pub async fn rename(
        &self,
        parent: FileId,
        name: &str,
        new_parent: FileId,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), ClientError> {
        let req = proto::RenameRequest {
            parent: parent.0,
            name: name.to_owned(),
            new_parent: new_parent.0,
            new_name: new_name.to_owned(),
            no_replace,
        };
        self.call("rename", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.rename(req).await }
        })
        .await?;
        Ok(())
    }

    /// A directory's entries.
    pub async fn readdir(&self, ino: FileId) -> Result<Vec<DirEntry>, ClientError> {
        self.readdir_in_pages(ino, 0).await
    }

    /// A directory's entries, asked for `page` at a time (0: as many as the node sends in
    /// one reply), each page after the last name of the one before.
    pub async fn readdir_in_pages(
        &self,
        ino: FileId,
        page: u32,
    ) -> Result<Vec<DirEntry>, ClientError> {
        let mut entries: Vec<DirEntry> = Vec::new();
        loop {
            let req = proto::ReadDirRequest {
                ino: ino.0,
                after: entries.last().map(|e| e.name.clone()).unwrap_or_default(),
                limit: page,
            };
            let r = self
                .call("readdir", Retry::Safe, |mut c| {
                    let req = req.clone();
                    async move { c.read_dir(req).await }
                })
                .await?
                .into_inner();
            let got = r.entries.len();
            for e in r.entries {
                let entry = DirEntry {
                    name: e.name,
                    ino: super::convert::ino("entries.ino", e.ino).map_err(proto_err)?,
                    kind: super::convert::kind_from_proto("entries.kind", e.kind)
                        .map_err(proto_err)?,
                };
                // Each page must go on after the last: a node that did not would loop us.
                if entries.last().is_some_and(|last| last.name >= entry.name) {
                    return Err(proto_err(super::convert::invalid(
                        "entries.name",
                        format!("{:?} is out of order in the listing", entry.name),
                    )));
                }
                entries.push(entry);
            }
            if !r.more || got == 0 {
                return Ok(entries);
            }
        }
    }

    /// A symlink's target.
    pub async fn readlink(&self, ino: FileId) -> Result<String, ClientError> {
        Ok(self
            .call("readlink", Retry::Safe, |mut c| async move {
                c.read_link(proto::InoRequest { ino: ino.0 }).await
            })
            .await?
            .into_inner()
            .target)
    }

    /// An extended attribute.
    pub async fn getxattr(&self, ino: FileId, name: &str) -> Result<Vec<u8>, ClientError> {
        let req = proto::XattrRequest {
            ino: ino.0,
            name: name.to_owned(),
        };
        Ok(self
            .call("getxattr", Retry::Safe, |mut c| {
                let req = req.clone();
                async move { c.get_xattr(req).await }
            })
            .await?
            .into_inner()
            .value)
    }

    /// Sets an extended attribute. Not repeated on another node once sent.
    pub async fn setxattr(
        &self,
        ino: FileId,
        name: &str,
        value: &[u8],
        mode: XattrMode,
    ) -> Result<(), ClientError> {
        let mode = match mode {
            XattrMode::Any => proto::XattrMode::Any,
            XattrMode::Create => proto::XattrMode::Create,
            XattrMode::Replace => proto::XattrMode::Replace,
        } as i32;
        let req = proto::SetXattrRequest {
            ino: ino.0,
            name: name.to_owned(),
            value: value.to_vec(),
            mode,
        };
        self.call("setxattr", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.set_xattr(req).await }
        })
        .await?;
        Ok(())
    }

    /// Extended attribute names.
    pub async fn listxattr(&self, ino: FileId) -> Result<Vec<String>, ClientError> {
        Ok(self
            .call("listxattr", Retry::Safe, |mut c| async move {
                c.list_xattr(proto::InoRequest { ino: ino.0 }).await
            })
            .await?
            .into_inner()
            .names)
    }

    /// Removes an extended attribute. Not repeated on another node once sent.
    pub async fn removexattr(&self, ino: FileId, name: &str) -> Result<(), ClientError> {
        let req = proto::XattrRequest {
            ino: ino.0,
            name: name.to_owned(),
        };
        self.call("removexattr", Retry::OnlyUnsent, |mut c| {
            let req = req.clone();
            async move { c.remove_xattr(req).await }
        })
        .await?;
        Ok(())
    }

    /// File-system figures.
    pub async fn statfs(&self) -> Result<proto::StatFsReply, ClientError> {
        Ok(self
            .call("statfs", Retry::Safe, |mut c| async move {
                c.stat_fs(proto::Empty {}).await
            })
            .await?
            .into_inner())
    }

    /// Reads a whole stripe; empty for a hole.
    pub async fn read_stripe(&self, ino: FileId, index: u64) -> Result<Vec<u8>, ClientError> {
        Ok(self.read_stripe_pieces(ino, index).await?.to_vec())
    }

    /// Reads a whole stripe (empty for a hole) as the pieces it arrived in, without
    /// copying them into one buffer.
    pub async fn read_stripe_pieces(
        &self,
        ino: FileId,
        index: u64,
    ) -> Result<StripePieces, ClientError> {
        self.read_pieces(proto::ReadStripeRequest {
            ino: ino.0,
            index,
            offset: 0,
            len: 0,
        })
        .await
    }

    /// Where stripes `first..first + count` of `ino` lie on the node's disks, for reading
    /// their chunk files on this machine (see [`super::local`]): one location per stripe,
    /// up to the file's last. `count` is 1 to [`MAX_LOCATE`](super::MAX_LOCATE). A node
    /// too old to answer gives `ENOSYS`.
    pub async fn locate_stripes(
        &self,
        ino: FileId,
        first: u64,
        count: u32,
    ) -> Result<Vec<proto::StripeLocation>, ClientError> {
        let req = proto::LocateStripesRequest {
            ino: ino.0,
            first,
            count,
        };
        Ok(self
            .call("locate_stripes", Retry::Safe, |mut c| async move {
                c.locate_stripes(req).await.map_err(|s| {
                    if s.code() == tonic::Code::Unimplemented {
                        super::status_with_errno(errno::ENOSYS, "the node cannot locate stripes")
                    } else {
                        s
                    }
                })
            })
            .await?
            .into_inner()
            .stripes)
    }

    /// Reads bytes `offset..offset + len` of a stripe (clipped to it); empty for a hole.
    pub async fn read_stripe_range(
        &self,
        ino: FileId,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .read_pieces(proto::ReadStripeRequest {
                ino: ino.0,
                index,
                offset,
                len,
            })
            .await?
            .to_vec())
    }

    /// Reads a stripe's pieces; a stream broken half-way is read again from the start on
    /// the next node.
    async fn read_pieces(
        &self,
        req: proto::ReadStripeRequest,
    ) -> Result<StripePieces, ClientError> {
        self.call("read_stripe", Retry::Safe, |mut c| async move {
            let mut stream = c.read_stripe(req).await?.into_inner();
            let mut out = StripePieces::default();
            while let Some(piece) = stream.message().await? {
                if piece.offset != out.len() as u64
                    || out.len() as u64 + piece.data.len() as u64
                        > piece.stripe_len.max(piece.data.len() as u64)
                {
                    return Err(super::status_with_errno(
                        errno::EIO,
                        "the node sent an invalid reply: stripe pieces out of order",
                    ));
                }
                out.push(piece.data);
            }
            Ok(out)
        })
        .await
    }

    /// Writes whole stripes `(file, index, bytes)` and returns the file's attributes after
    /// the last one. Each stripe is durable and committed when this returns `Ok`. The bytes
    /// are sent as they are, without a copy (`Bytes::from(vec)` or `Bytes::from_owner`).
    /// When the node stops answering, the stripes are sent again to the next node: a
    /// repeated stripe write stores the same bytes again.
    pub async fn write_stripes(
        &self,
        stripes: Vec<(FileId, u64, prost::bytes::Bytes)>,
    ) -> Result<Attr, ClientError> {
        let mut pieces = Vec::new();
        for (ino, index, data) in stripes {
            let len = data.len();
            for at in (0..len).step_by(PIECE_SIZE) {
                pieces.push(proto::StripePiece {
                    ino: ino.0,
                    index,
                    stripe_len: len as u64,
                    offset: at as u64,
                    data: data.slice(at..(at + PIECE_SIZE).min(len)),
                });
            }
        }
        let r = self
            .call("write_stripes", Retry::Safe, |mut c| {
                // Clones share the bytes.
                let pieces = pieces.clone();
                async move { c.write_stripes(tokio_stream::iter(pieces)).await }
            })
            .await?;
        Self::attr(r.into_inner())
    }

    /// Sets only the times of an inode (helper for `utimens`).
    pub async fn set_times(
        &self,
        ino: FileId,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<Attr, ClientError> {
        self.setattr(SetAttr {
            ino: ino.0,
            atime: atime.map(|t| t.0),
            mtime: mtime.map(|t| t.0),
            ..Default::default()
        })
        .await
    }
}

#[cfg(test)]
mod piece_tests;
#[cfg(test)]
mod tests;
