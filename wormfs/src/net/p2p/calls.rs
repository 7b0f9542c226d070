//! Calls to a peer on the data path ([`super::data`]) when the peer has one: chunk calls
//! (else on a fresh libp2p stream, each call retried a few times and bounded as a whole)
//! and request-channel calls (else on the libp2p request channel).

use super::chunks::{self, ChunkRequest, ChunkResponse};
use super::data::{Sealed, Ticket, IDLE_PER_PEER, TICKET_CALL};
use super::wire::{Header, Wire, WireRequest, WireResponse, CHUNK_V1, CHUNK_V2};
use super::{P2pTransport, OPEN_ATTEMPTS};
use crate::ids::NodeId;
use crate::net::TransportError;
use libp2p::PeerId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a peer without a usable data path is asked through libp2p streams before the
/// data path is tried again (it may have been upgraded, or its port opened).
const DATA_RETRY: Duration = Duration::from_secs(60);

/// The caller's side of the data path, per peer.
#[derive(Default)]
pub(super) struct DataPeers {
    pub(super) idle: HashMap<NodeId, Vec<Sealed>>,
    /// Peers asked through streams until the instant given.
    pub(super) off: HashMap<NodeId, Instant>,
}

type Answer = (ChunkResponse, Vec<u8>, Wire);

impl P2pTransport {
    /// Runs one chunk operation on `node`: locally for this node, else remotely.
    /// Returns the answer, its payload, and the encoding the payload is in.
    pub(super) async fn chunk_op(
        &self,
        node: &NodeId,
        request: ChunkRequest,
        payload: &[&[u8]],
    ) -> Result<Answer, TransportError> {
        if *node == self.shared.node {
            let store = self.shared.store.clone();
            let payload = payload.concat();
            return tokio::task::spawn_blocking(move || {
                let (answer, payload) = chunks::run_local(&*store, Wire::V2, request, payload);
                (answer, payload, Wire::V2)
            })
            .await
            .map_err(|e| TransportError::Remote {
                node: node.clone(),
                reason: format!("local chunk task failed: {e}"),
            });
        }
        let peer = self.peer_of(node)?;
        // A frozen peer keeps its connection open but never answers: bound the whole call.
        // A call that breaks is tried again on a fresh connection or stream: every chunk
        // call may run twice (a chunk key is never reused, so a repeated put stores the
        // same bytes again).
        let timeout = self.shared.chunk_timeout;
        let attempt_all = async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let tried = match self.chunk_data(node, &request, payload).await {
                    Ok(Some(answer)) => return Ok(answer),
                    Ok(None) => self.chunk_stream(node, peer, &request, payload).await,
                    Err(e) => Err(e),
                };
                match tried {
                    Ok(r) => return Ok(r),
                    Err((sent, e)) => {
                        if attempt >= OPEN_ATTEMPTS {
                            return Err(e);
                        }
                        tracing::debug!(%node, sent, "chunk call failed (attempt {attempt}), trying again: {e}");
                        tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, attempt_all).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Unreachable {
                node: node.clone(),
                reason: format!("no answer to a chunk request within {timeout:?}"),
            }),
        }
    }

    /// One chunk call on the data path; `Ok(None)` when `node` has none for now. The
    /// error says whether the request went out.
    async fn chunk_data(
        &self,
        node: &NodeId,
        request: &ChunkRequest,
        payload: &[&[u8]],
    ) -> Result<Option<Answer>, (bool, TransportError)> {
        let Some(mut conn) = self.data_conn(node).await.map_err(|e| (false, e))? else {
            return Ok(None);
        };
        let unreachable = |reason: String| TransportError::Unreachable {
            node: node.clone(),
            reason,
        };
        let header = request
            .clone()
            .encode(Wire::V2)
            .map_err(|e| (false, unreachable(format!("encoding a chunk request: {e}"))))?;
        let exchange = async {
            conn.send_parts(&header, payload).await?;
            conn.recv().await?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the data connection closed before the answer",
                )
            })
        };
        let (header, payload) = match exchange.await {
            Ok(m) => m,
            Err(e) => {
                // the others idle beside it most likely broke with it (a restarted peer)
                self.data_peers().idle.remove(node);
                return Err((true, unreachable(format!("data connection: {e}"))));
            }
        };
        let answer = ChunkResponse::decode(&header, Wire::V2)
            .map_err(|e| (true, unreachable(format!("reading the chunk reply: {e}"))))?;
        self.idle_again(node, conn);
        Ok(Some((answer, payload, Wire::V2)))
    }

    /// A request-channel call on the data path; `Ok(None)` when `node` has none for now
    /// (the call then goes on the libp2p request channel). A call that fails after it went
    /// out is not sent again: it may have run.
    pub(super) async fn call_data(
        &self,
        node: &NodeId,
        protocol: &str,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let Some(mut conn) = self.data_conn(node).await? else {
            return Ok(None);
        };
        let unreachable = |reason: String| TransportError::Unreachable {
            node: node.clone(),
            reason,
        };
        let header = ChunkRequest::Call {
            protocol: protocol.to_owned(),
        }
        .encode(Wire::V2)
        .map_err(|e| unreachable(format!("encoding a call: {e}")))?;
        let timeout = self.shared.request_timeout;
        let exchange = async {
            conn.send(&header, body).await?;
            conn.recv().await?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the data connection closed before the answer",
                )
            })
        };
        let (header, answer) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                self.data_peers().idle.remove(node);
                return Err(unreachable(format!("data connection: {e}")));
            }
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer to a {protocol} call within {timeout:?}"
                )))
            }
        };
        let reply = ChunkResponse::decode(&header, Wire::V2)
            .map_err(|e| unreachable(format!("reading a call's answer: {e}")))?;
        self.idle_again(node, conn);
        match reply {
            ChunkResponse::Replied => Ok(Some(answer)),
            ChunkResponse::Failed(reason) => Err(TransportError::Remote {
                node: node.clone(),
                reason,
            }),
            ChunkResponse::NoHandler => Err(TransportError::NoHandler {
                node: node.clone(),
                protocol: protocol.to_owned(),
            }),
            other => Err(TransportError::Remote {
                node: node.clone(),
                reason: format!("answered a {protocol} call with {other:?}"),
            }),
        }
    }

    /// Puts a connection whose exchange ended cleanly back in `node`'s idle pool.
    fn idle_again(&self, node: &NodeId, conn: Sealed) {
        let mut peers = self.data_peers();
        let idle = peers.idle.entry(node.clone()).or_default();
        if idle.len() < IDLE_PER_PEER {
            idle.push(conn);
        }
    }

    /// A request on the libp2p request channel.
    pub(super) async fn request_p2p(
        &self,
        node: &NodeId,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let request = WireRequest::Call {
            protocol: protocol.to_owned(),
            body,
        };
        match self.call(node, request).await? {
            WireResponse::Reply(body) => Ok(body),
            WireResponse::Failed(reason) => Err(TransportError::Remote {
                node: node.clone(),
                reason,
            }),
            WireResponse::NoHandler => Err(TransportError::NoHandler {
                node: node.clone(),
                protocol: protocol.to_owned(),
            }),
            WireResponse::Hello { .. } => Err(TransportError::Remote {
                node: node.clone(),
                reason: "answered a call with a hello".into(),
            }),
        }
    }

    fn data_peers(&self) -> std::sync::MutexGuard<'_, DataPeers> {
        self.shared.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle data connection to `node`, or a new one on a fresh ticket; `None` when the
    /// node has no data path (a release before it, an unreachable port) for now.
    async fn data_conn(&self, node: &NodeId) -> Result<Option<Sealed>, TransportError> {
        if !self.shared.speaks_v2 {
            return Ok(None);
        }
        {
            let mut peers = self.data_peers();
            if let Some(until) = peers.off.get(node) {
                if Instant::now() < *until {
                    return Ok(None);
                }
                peers.off.remove(node);
            }
            // a connection the peer closed meanwhile (it restarted) is dropped here, not
            // found broken by the call that would use it
            while let Some(conn) = peers.idle.get_mut(node).and_then(Vec::pop) {
                if conn.is_open() {
                    return Ok(Some(conn));
                }
            }
        }
        let peer = self.peer_of(node)?;
        let Some(ip) = self
            .shared
            .remote_ip
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .copied()
        else {
            return Ok(None);
        };
        let off = |why: String| {
            tracing::warn!(%node, "no data path to the node ({why}): its chunks go through libp2p streams for {DATA_RETRY:?}");
            self.data_peers()
                .off
                .insert(node.clone(), Instant::now() + DATA_RETRY);
            Ok(None)
        };
        let ticket = match self.request_p2p(node, TICKET_CALL, Vec::new()).await {
            Ok(body) => match Ticket::decode(&body) {
                Ok(t) => t,
                Err(e) => return off(format!("its ticket: {e}")),
            },
            Err(TransportError::NoHandler { .. }) => {
                return off("it runs a release without one".into())
            }
            Err(e) => return Err(e),
        };
        match ticket.connect(ip).await {
            Ok(conn) => Ok(Some(conn)),
            Err(e) => off(format!("cannot connect to {ip}:{}: {e}", ticket.port)),
        }
    }

    /// One chunk call on one fresh stream; the error says whether the request went out.
    /// The stream speaks version 2 unless the peer only knows version 1.
    async fn chunk_stream(
        &self,
        node: &NodeId,
        peer: PeerId,
        request: &ChunkRequest,
        payload: &[&[u8]],
    ) -> Result<Answer, (bool, TransportError)> {
        let unreachable = |reason: String| TransportError::Unreachable {
            node: node.clone(),
            reason,
        };
        let cannot_open = |e: libp2p_stream::OpenStreamError| {
            (
                false,
                unreachable(format!("cannot open a chunk stream: {e}")),
            )
        };
        let mut control = self.shared.control.clone();
        let first = if self.shared.speaks_v2 {
            control.open_stream(peer, CHUNK_V2).await
        } else {
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(
                CHUNK_V2,
            ))
        };
        let (wire, mut stream) = match first {
            Ok(s) => (Wire::V2, s),
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => (
                Wire::V1,
                control
                    .open_stream(peer, CHUNK_V1)
                    .await
                    .map_err(cannot_open)?,
            ),
            Err(e) => return Err(cannot_open(e)),
        };
        chunks::write_frame(&mut stream, wire, request.clone(), payload)
            .await
            .map_err(|e| (true, unreachable(format!("sending the chunk request: {e}"))))?;
        let (answer, payload) = chunks::read_frame::<ChunkResponse>(&mut stream, wire)
            .await
            .map_err(|e| (true, unreachable(format!("reading the chunk reply: {e}"))))?;
        Ok((answer, payload, wire))
    }
}
