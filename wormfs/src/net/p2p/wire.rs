//! How node-to-node messages are encoded.
//!
//! Version 2 (the one a node offers first) is protobuf, from `proto/wormfs_p2p.proto`:
//! `/wormfs/rpc/2` carries an `RpcRequest`/`RpcResponse` per stream, and `/wormfs/chunk/2`
//! frames carry `ChunkRequest`/`ChunkResponse` headers and a `ChunkListing` payload for
//! scans. Version 1 (CBOR requests, JSON chunk headers) is still read and written, so a node
//! of this version and one of the version before can work together while a cluster is
//! upgraded one node at a time: libp2p negotiates the highest version both sides speak, per
//! stream.
//!
//! The bodies inside a call (Raft messages, heartbeats, forwarded metadata operations) are
//! each handler's own encoding, carried as bytes: they are openraft's and WormFS's serde
//! types, versioned by their handlers' protocol names.

use super::chunks::{ChunkRequest, ChunkResponse};
use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use crate::store::{ChunkAddr, ChunkFolder, IndexedChunk, StoredChunk};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response::{self, cbor};
use libp2p::StreamProtocol;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::io;

/// The generated code of `proto/wormfs_p2p.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    include!(concat!(env!("OUT_DIR"), "/wormfs.p2p.v1.rs"));
}

/// The request protocol, protobuf.
pub(crate) const RPC_V2: StreamProtocol = StreamProtocol::new("/wormfs/rpc/2");
/// The request protocol as nodes before protobuf speak it, CBOR.
pub(crate) const RPC_V1: StreamProtocol = StreamProtocol::new("/wormfs/rpc/1");
/// The chunk protocol with protobuf headers.
pub(crate) const CHUNK_V2: StreamProtocol = StreamProtocol::new("/wormfs/chunk/2");
/// The chunk protocol with JSON headers, as nodes before protobuf speak it.
pub(crate) const CHUNK_V1: StreamProtocol = StreamProtocol::new("/wormfs/chunk/1");

/// Which encoding a chunk stream uses, from the protocol it was opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// `/wormfs/chunk/1`: JSON headers and listings.
    V1,
    /// `/wormfs/chunk/2`: protobuf headers and listings.
    V2,
}

/// A request on the request protocol. Its serde shape is the version-1 (CBOR) encoding and
/// must not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireRequest {
    Hello {
        node: NodeId,
    },
    Call {
        protocol: String,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// An answer on the request protocol. Its serde shape is the version-1 (CBOR) encoding and
/// must not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireResponse {
    Hello { node: NodeId },
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    Failed(String),
    NoHandler,
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A message with no case of a `oneof` set: a newer peer sent something this node does not
/// know, or the bytes are not a message of this protocol.
fn unknown_case(message: &str) -> io::Error {
    invalid(format!(
        "a {message} of a kind this node does not know (is the peer a newer WormFS? upgrade \
         this node)"
    ))
}

impl From<WireRequest> for pb::RpcRequest {
    fn from(r: WireRequest) -> Self {
        use pb::rpc_request::Kind;
        let kind = match r {
            WireRequest::Hello { node } => Kind::Hello(pb::Hello { node: node.0 }),
            WireRequest::Call { protocol, body } => Kind::Call(pb::Call { protocol, body }),
        };
        pb::RpcRequest { kind: Some(kind) }
    }
}

impl TryFrom<pb::RpcRequest> for WireRequest {
    type Error = io::Error;

    fn try_from(r: pb::RpcRequest) -> io::Result<Self> {
        use pb::rpc_request::Kind;
        match r.kind {
            Some(Kind::Hello(h)) => Ok(WireRequest::Hello {
                node: NodeId(h.node),
            }),
            Some(Kind::Call(c)) => Ok(WireRequest::Call {
                protocol: c.protocol,
                body: c.body,
            }),
            None => Err(unknown_case("request")),
        }
    }
}

impl From<WireResponse> for pb::RpcResponse {
    fn from(r: WireResponse) -> Self {
        use pb::rpc_response::Kind;
        let kind = match r {
            WireResponse::Hello { node } => Kind::Hello(pb::Hello { node: node.0 }),
            WireResponse::Reply(body) => Kind::Reply(body),
            WireResponse::Failed(reason) => Kind::Failed(reason),
            WireResponse::NoHandler => Kind::NoHandler(pb::NoHandler {}),
        };
        pb::RpcResponse { kind: Some(kind) }
    }
}

impl TryFrom<pb::RpcResponse> for WireResponse {
    type Error = io::Error;

    fn try_from(r: pb::RpcResponse) -> io::Result<Self> {
        use pb::rpc_response::Kind;
        match r.kind {
            Some(Kind::Hello(h)) => Ok(WireResponse::Hello {
                node: NodeId(h.node),
            }),
            Some(Kind::Reply(body)) => Ok(WireResponse::Reply(body)),
            Some(Kind::Failed(reason)) => Ok(WireResponse::Failed(reason)),
            Some(Kind::NoHandler(_)) => Ok(WireResponse::NoHandler),
            None => Err(unknown_case("answer")),
        }
    }
}

/// The request protocol's codec: protobuf on [`RPC_V2`], CBOR on [`RPC_V1`].
#[derive(Clone)]
pub(crate) struct WireCodec {
    max: u64,
    v1: cbor::codec::Codec<WireRequest, WireResponse>,
}

impl WireCodec {
    /// A codec refusing messages over `max` bytes.
    pub(crate) fn new(max: u64) -> Self {
        WireCodec {
            max,
            v1: cbor::codec::Codec::default()
                .set_request_size_maximum(max)
                .set_response_size_maximum(max),
        }
    }

    async fn read_all<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        // one byte over the limit tells a message at the limit from one over it
        io.take(self.max + 1).read_to_end(&mut bytes).await?;
        if bytes.len() as u64 > self.max {
            return Err(invalid(format!(
                "a message over the {} byte limit",
                self.max
            )));
        }
        Ok(bytes)
    }
}

impl request_response::Codec for WireCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = WireResponse;

    async fn read_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        if *protocol == RPC_V1 {
            return self.v1.read_request(protocol, io).await;
        }
        let bytes = self.read_all(io).await?;
        pb::RpcRequest::decode(&bytes[..])
            .map_err(invalid)?
            .try_into()
    }

    async fn read_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<WireResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        if *protocol == RPC_V1 {
            return self.v1.read_response(protocol, io).await;
        }
        let bytes = self.read_all(io).await?;
        pb::RpcResponse::decode(&bytes[..])
            .map_err(invalid)?
            .try_into()
    }

    async fn write_request<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        req: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if *protocol == RPC_V1 {
            return self.v1.write_request(protocol, io, req).await;
        }
        io.write_all(&pb::RpcRequest::from(req).encode_to_vec())
            .await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
        res: WireResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        if *protocol == RPC_V1 {
            return self.v1.write_response(protocol, io, res).await;
        }
        io.write_all(&pb::RpcResponse::from(res).encode_to_vec())
            .await
    }
}

// ---- chunk protocol headers ----

fn key_to_pb(k: ChunkKey) -> pb::ChunkKey {
    pb::ChunkKey {
        file: k.file.0,
        stripe: k.stripe,
        generation: k.generation,
        index: u32::from(k.index),
    }
}

fn key_from_pb(k: Option<pb::ChunkKey>) -> io::Result<ChunkKey> {
    let k = k.ok_or_else(|| invalid("a chunk address without its key"))?;
    Ok(ChunkKey {
        file: FileId(k.file),
        stripe: k.stripe,
        generation: k.generation,
        index: u16::try_from(k.index)
            .map_err(|_| invalid(format!("shard index {} is over 65535", k.index)))?,
    })
}

fn folder_from_pb(f: String) -> io::Result<ChunkFolder> {
    ChunkFolder::try_from(f).map_err(invalid)
}

fn addr_to_pb(a: ChunkAddr) -> pb::ChunkAddr {
    pb::ChunkAddr {
        folder: a.folder.into(),
        key: Some(key_to_pb(a.key)),
    }
}

fn addr_from_pb(a: Option<pb::ChunkAddr>) -> io::Result<ChunkAddr> {
    let a = a.ok_or_else(|| invalid("a chunk request without its chunk address"))?;
    Ok(ChunkAddr {
        folder: folder_from_pb(a.folder)?,
        key: key_from_pb(a.key)?,
    })
}

fn on_disk(disk: DiskId, addr: ChunkAddr) -> pb::ChunkOnDisk {
    pb::ChunkOnDisk {
        disk: disk.0,
        addr: Some(addr_to_pb(addr)),
    }
}

fn from_on_disk(c: pb::ChunkOnDisk) -> io::Result<(DiskId, ChunkAddr)> {
    Ok((DiskId(c.disk), addr_from_pb(c.addr)?))
}

impl From<ChunkRequest> for pb::ChunkRequest {
    fn from(r: ChunkRequest) -> Self {
        use pb::chunk_request::Kind;
        let kind = match r {
            ChunkRequest::Put { disk, folder, path } => Kind::Put(pb::PutChunk {
                disk: disk.0,
                folder: folder.into(),
                path,
            }),
            ChunkRequest::Read { disk, addr } => Kind::Read(on_disk(disk, addr)),
            ChunkRequest::ReadRange {
                disk,
                addr,
                offset,
                len,
            } => Kind::Range(pb::ReadRange {
                disk: disk.0,
                addr: Some(addr_to_pb(addr)),
                offset,
                len,
            }),
            ChunkRequest::Check { disk, addr } => Kind::Check(on_disk(disk, addr)),
            ChunkRequest::Delete { disk, addr } => Kind::Delete(on_disk(disk, addr)),
            ChunkRequest::Scan { disk } => Kind::Scan(pb::ScanDisk { disk: disk.0 }),
            ChunkRequest::Call { protocol } => Kind::Call(pb::CallRequest { protocol }),
            ChunkRequest::Rename {
                disk,
                folder,
                file,
                path,
            } => Kind::Rename(pb::RenameFile {
                disk: disk.0,
                folder: folder.into(),
                file: file.0,
                path,
            }),
        };
        pb::ChunkRequest { kind: Some(kind) }
    }
}

impl TryFrom<pb::ChunkRequest> for ChunkRequest {
    type Error = io::Error;

    fn try_from(r: pb::ChunkRequest) -> io::Result<Self> {
        use pb::chunk_request::Kind;
        Ok(match r.kind.ok_or_else(|| unknown_case("chunk request"))? {
            Kind::Put(p) => ChunkRequest::Put {
                disk: DiskId(p.disk),
                folder: folder_from_pb(p.folder)?,
                path: p.path,
            },
            Kind::Read(c) => {
                let (disk, addr) = from_on_disk(c)?;
                ChunkRequest::Read { disk, addr }
            }
            Kind::Range(r) => {
                let (disk, addr) = from_on_disk(pb::ChunkOnDisk {
                    disk: r.disk,
                    addr: r.addr,
                })?;
                ChunkRequest::ReadRange {
                    disk,
                    addr,
                    offset: r.offset,
                    len: r.len,
                }
            }
            Kind::Check(c) => {
                let (disk, addr) = from_on_disk(c)?;
                ChunkRequest::Check { disk, addr }
            }
            Kind::Delete(c) => {
                let (disk, addr) = from_on_disk(c)?;
                ChunkRequest::Delete { disk, addr }
            }
            Kind::Scan(s) => ChunkRequest::Scan {
                disk: DiskId(s.disk),
            },
            Kind::Call(c) => ChunkRequest::Call {
                protocol: c.protocol,
            },
            Kind::Rename(r) => ChunkRequest::Rename {
                disk: DiskId(r.disk),
                folder: folder_from_pb(r.folder)?,
                file: FileId(r.file),
                path: r.path,
            },
        })
    }
}

impl From<ChunkResponse> for pb::ChunkResponse {
    fn from(r: ChunkResponse) -> Self {
        use pb::chunk_response::Kind;
        let kind = match r {
            ChunkResponse::Stored(s) => Kind::Stored(pb::StoredChunk {
                disk: s.disk.0,
                addr: Some(addr_to_pb(s.addr)),
                size: s.size,
                checksum: s.checksum,
            }),
            ChunkResponse::Chunk => Kind::Chunk(pb::Empty {}),
            ChunkResponse::Checked(size) => Kind::Checked(pb::Checked { size }),
            ChunkResponse::Deleted(gone) => Kind::Deleted(gone),
            ChunkResponse::Scanned => Kind::Scanned(pb::Empty {}),
            ChunkResponse::Renamed => Kind::Renamed(pb::Empty {}),
            ChunkResponse::Damaged(reason) => Kind::Damaged(reason),
            ChunkResponse::Missing(reason) => Kind::Missing(reason),
            ChunkResponse::Failed(reason) => Kind::Failed(reason),
            ChunkResponse::Replied => Kind::Replied(pb::Empty {}),
            ChunkResponse::NoHandler => Kind::NoHandler(pb::Empty {}),
        };
        pb::ChunkResponse { kind: Some(kind) }
    }
}

impl TryFrom<pb::ChunkResponse> for ChunkResponse {
    type Error = io::Error;

    fn try_from(r: pb::ChunkResponse) -> io::Result<Self> {
        use pb::chunk_response::Kind;
        Ok(match r.kind.ok_or_else(|| unknown_case("chunk answer"))? {
            Kind::Stored(s) => ChunkResponse::Stored(StoredChunk {
                disk: DiskId(s.disk),
                addr: addr_from_pb(s.addr)?,
                size: s.size,
                checksum: s.checksum,
            }),
            Kind::Chunk(_) => ChunkResponse::Chunk,
            Kind::Checked(c) => ChunkResponse::Checked(c.size),
            Kind::Deleted(gone) => ChunkResponse::Deleted(gone),
            Kind::Scanned(_) => ChunkResponse::Scanned,
            Kind::Renamed(_) => ChunkResponse::Renamed,
            Kind::Damaged(reason) => ChunkResponse::Damaged(reason),
            Kind::Missing(reason) => ChunkResponse::Missing(reason),
            Kind::Failed(reason) => ChunkResponse::Failed(reason),
            Kind::Replied(_) => ChunkResponse::Replied,
            Kind::NoHandler(_) => ChunkResponse::NoHandler,
        })
    }
}

/// A chunk-protocol header: encoded per [`Wire`] version.
pub(crate) trait Header: Sized {
    /// The header's bytes in `wire`'s encoding.
    fn encode(self, wire: Wire) -> io::Result<Vec<u8>>;
    /// A header from bytes in `wire`'s encoding.
    fn decode(bytes: &[u8], wire: Wire) -> io::Result<Self>;
}

impl Header for ChunkRequest {
    fn encode(self, wire: Wire) -> io::Result<Vec<u8>> {
        match wire {
            Wire::V1 => serde_json::to_vec(&self).map_err(invalid),
            Wire::V2 => Ok(pb::ChunkRequest::from(self).encode_to_vec()),
        }
    }

    fn decode(bytes: &[u8], wire: Wire) -> io::Result<Self> {
        match wire {
            Wire::V1 => serde_json::from_slice(bytes).map_err(invalid),
            Wire::V2 => pb::ChunkRequest::decode(bytes).map_err(invalid)?.try_into(),
        }
    }
}

impl Header for ChunkResponse {
    fn encode(self, wire: Wire) -> io::Result<Vec<u8>> {
        match wire {
            Wire::V1 => serde_json::to_vec(&self).map_err(invalid),
            Wire::V2 => Ok(pb::ChunkResponse::from(self).encode_to_vec()),
        }
    }

    fn decode(bytes: &[u8], wire: Wire) -> io::Result<Self> {
        match wire {
            Wire::V1 => serde_json::from_slice(bytes).map_err(invalid),
            Wire::V2 => pb::ChunkResponse::decode(bytes)
                .map_err(invalid)?
                .try_into(),
        }
    }
}

/// A disk's listing, as a scan answer's payload.
pub(crate) fn encode_listing(listing: Vec<IndexedChunk>, wire: Wire) -> io::Result<Vec<u8>> {
    match wire {
        Wire::V1 => serde_json::to_vec(&listing).map_err(invalid),
        Wire::V2 => Ok(pb::ChunkListing {
            chunks: listing
                .into_iter()
                .map(|c| pb::IndexedChunk {
                    disk: c.disk.0,
                    folder: c.folder.into(),
                    path: c.path,
                    key: Some(key_to_pb(c.key)),
                    size: c.size,
                    checksum: c.checksum,
                    stripe_start: c.stripe_start,
                    stripe_end: c.stripe_end,
                    k: u32::from(c.k),
                    m: u32::from(c.m),
                })
                .collect(),
        }
        .encode_to_vec()),
    }
}

/// A disk's listing from a scan answer's payload.
pub(crate) fn decode_listing(bytes: &[u8], wire: Wire) -> io::Result<Vec<IndexedChunk>> {
    match wire {
        Wire::V1 => serde_json::from_slice(bytes).map_err(invalid),
        Wire::V2 => {
            let shards = |n: u32, what: &str| {
                u16::try_from(n).map_err(|_| invalid(format!("{what} = {n} is over 65535")))
            };
            pb::ChunkListing::decode(bytes)
                .map_err(invalid)?
                .chunks
                .into_iter()
                .map(|c| {
                    Ok(IndexedChunk {
                        disk: DiskId(c.disk),
                        folder: folder_from_pb(c.folder)?,
                        path: c.path,
                        key: key_from_pb(c.key)?,
                        size: c.size,
                        checksum: c.checksum,
                        stripe_start: c.stripe_start,
                        stripe_end: c.stripe_end,
                        k: shards(c.k, "k")?,
                        m: shards(c.m, "m")?,
                    })
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests;
