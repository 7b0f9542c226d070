//! Raft RPCs over the [`Transport`]: each Raft message is JSON in a request on one of three
//! protocols, answered with the receiving Raft's JSON result. A snapshot chunk's bytes go
//! raw after its JSON header ([`encode_snapshot`]): as JSON, a byte array is a list of
//! numbers, 3.5 times the size and slow to parse, and a chunk of a large snapshot then
//! missed openraft's timeout every time, so a node behind the compacted log never caught up.

use super::election::Contact;
use super::lag::Lag;
use crate::ids::NodeId;
use crate::net::{Transport, TransportError};
use crate::raft::{Member, Raft, RaftNodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Protocol of AppendEntries.
pub const APPEND: &str = "raft/append";
/// Protocol of RequestVote.
pub const VOTE: &str = "raft/vote";
/// Protocol of InstallSnapshot chunks ([`encode_snapshot`]; the first version, all JSON,
/// was `raft/snapshot`).
pub const SNAPSHOT: &str = "raft/snapshot/2";

/// Encodes a snapshot chunk: the request without its data as JSON, preceded by the JSON's
/// length (4 bytes, big-endian) and followed by the data as is.
pub fn encode_snapshot(mut req: InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let data = std::mem::take(&mut req.data);
    let header = serde_json::to_vec(&req).expect("a snapshot request's header encodes as JSON");
    let mut body = Vec::with_capacity(4 + header.len() + data.len());
    body.extend_from_slice(&(header.len() as u32).to_be_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(&data);
    body
}

/// Decodes what [`encode_snapshot`] made, saying what is wrong with a malformed body.
pub fn decode_snapshot(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    let Some((len, rest)) = body.split_first_chunk::<4>() else {
        return Err(format!(
            "a snapshot chunk of {} bytes is shorter than its 4-byte header length",
            body.len()
        ));
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return Err(format!(
            "a snapshot chunk's header says {len} bytes, and only {} follow",
            rest.len()
        ));
    }
    let (header, data) = rest.split_at(len);
    let mut req: InstallSnapshotRequest<TypeConfig> = serde_json::from_slice(header)
        .map_err(|e| format!("malformed snapshot chunk header: {e}"))?;
    if !req.data.is_empty() {
        return Err("a snapshot chunk's header carries data of its own".into());
    }
    req.data = data.to_vec();
    Ok(req)
}

/// Makes a [`RaftPeer`] per target.
#[derive(Clone)]
pub struct RaftNet {
    transport: Arc<dyn Transport>,
}

impl RaftNet {
    /// Raft networking over `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> RaftNet {
        RaftNet { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for RaftNet {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: RaftNodeId, node: &Member) -> RaftPeer {
        RaftPeer {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// Raft's connection to one peer.
pub struct RaftPeer {
    transport: Arc<dyn Transport>,
    target: RaftNodeId,
    node: Member,
}

type Rpc<E> = RPCError<RaftNodeId, Member, E>;

impl RaftPeer {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        protocol: &str,
        req: &Req,
    ) -> Result<Resp, Rpc<E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_with(protocol, body).await
    }

    /// [`RaftPeer::call`] with the request already encoded.
    async fn call_with<Resp: DeserializeOwned, E>(
        &self,
        protocol: &str,
        body: Vec<u8>,
    ) -> Result<Resp, Rpc<E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let name = NodeId(self.node.name.clone());
        let answer = self
            .transport
            .request(&name, protocol, body)
            .await
            .map_err(|e| match e {
                TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        let result: Result<Resp, E> = serde_json::from_slice(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftNodeId>, Rpc<RaftError<RaftNodeId>>> {
        self.call(APPEND, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<RaftNodeId>, Rpc<RaftError<RaftNodeId, InstallSnapshotError>>>
    {
        self.call_with(SNAPSHOT, encode_snapshot(rpc)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, Rpc<RaftError<RaftNodeId>>> {
        self.call(VOTE, &rpc).await
    }
}

/// Serves `protocol` on `transport` with JSON in and out: `f` answers each decoded request
/// (`what` names the request in the error a malformed one gets).
pub fn serve_json<Req, Resp, F, Fut>(
    transport: &dyn Transport,
    protocol: &str,
    what: &'static str,
    f: F,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let f = Arc::new(f);
    transport.serve(
        protocol,
        Arc::new(move |_caller, body| {
            let f = f.clone();
            Box::pin(async move {
                let req: Req =
                    serde_json::from_slice(&body).map_err(|e| format!("malformed {what}: {e}"))?;
                let resp = f(req).await;
                serde_json::to_vec(&resp).map_err(|e| format!("encode the answer to a {what}: {e}"))
            })
        }),
    );
}

/// Answers the three Raft protocols on `transport` with `raft`, and records in `contact`
/// each message from a master this node accepts and each vote it grants (the silence an
/// election waits out starts there: see [`Contact`]).
///
/// `lag` learns the master's commit index from each append-entries and snapshot.
pub fn serve_raft(transport: &dyn Transport, raft: Raft, contact: Arc<Contact>, lag: Arc<Lag>) {
    let r = raft.clone();
    let c = contact.clone();
    let l = lag.clone();
    serve_json(
        transport,
        APPEND,
        "Raft message",
        move |req: AppendEntriesRequest<TypeConfig>| {
            let (r, c, l) = (r.clone(), c.clone(), l.clone());
            async move {
                let committed = req.leader_commit.map(|l| l.index);
                let answer = r.append_entries(req).await;
                if matches!(&answer, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                    c.touch();
                    c.master_committed(committed);
                    if let Some(committed) = committed {
                        l.learned(committed, applied(&r), std::time::Instant::now());
                    }
                }
                answer
            }
        },
    );
    let r = raft.clone();
    let c = contact.clone();
    serve_json(
        transport,
        VOTE,
        "Raft message",
        move |req: VoteRequest<RaftNodeId>| {
            let (r, c) = (r.clone(), c.clone());
            async move {
                let m = r.metrics().borrow().clone();
                if c.abstains(m.last_applied.map(|l| l.index)) {
                    tracing::info!(
                        candidate = req.vote.leader_id().voted_for(),
                        "vote refused: this node started without its Raft log and has not \
                         caught up with a master yet"
                    );
                    return Ok(VoteResponse {
                        vote: m.vote,
                        vote_granted: false,
                        last_log_id: None,
                    });
                }
                let answer = r.vote(req).await;
                if matches!(&answer, Ok(a) if a.vote_granted) {
                    c.touch();
                }
                answer
            }
        },
    );
    transport.serve(
        SNAPSHOT,
        Arc::new(move |_caller, body| {
            let (r, c, l) = (raft.clone(), contact.clone(), lag.clone());
            Box::pin(async move {
                let req = decode_snapshot(&body)?;
                let last = req.meta.last_log_id.map(|l| l.index);
                if let Some(last) = last {
                    // the snapshot's last entry is committed: until it is installed, this
                    // node is behind it
                    l.learned(last, applied(&r), std::time::Instant::now());
                }
                let answer = r.install_snapshot(req).await;
                if answer.is_ok() {
                    c.touch();
                    c.master_committed(last);
                }
                serde_json::to_vec(&answer)
                    .map_err(|e| format!("encode the answer to a snapshot chunk: {e}"))
            })
        }),
    );
}

/// The index of the last log entry `raft` applied.
pub fn applied(raft: &Raft) -> u64 {
    raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
}

debug_by_name!(RaftNet, RaftPeer);
