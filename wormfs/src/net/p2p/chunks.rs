//! The chunk protocol: one libp2p stream per chunk operation, straight to the node owning
//! the disk. A frame is `u32 LE` header length, the header (protobuf on `/wormfs/chunk/2`,
//! JSON on `/wormfs/chunk/1`: see [`super::wire`]), `u64 LE` payload length, the payload
//! (the encoded chunk file for a put or a read, the listing for a scan, empty otherwise).

use super::wire::{encode_listing, Header, Wire};
use crate::ids::{DiskId, FileId, NodeId};
use crate::net::TransportError;
use crate::store::{ChunkAddr, ChunkFolder, ChunkStore, StoreError, StoredChunk};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest header accepted.
pub(crate) const MAX_HEADER: u32 = 64 * 1024;
/// Largest chunk file accepted (a stripe is at most 64 MiB, so a chunk is far smaller).
pub(crate) const MAX_PAYLOAD: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ChunkRequest {
    Put {
        disk: DiskId,
        folder: ChunkFolder,
        path: String,
    },
    Read {
        disk: DiskId,
        addr: ChunkAddr,
    },
    /// Part of a chunk's data (`/wormfs/chunk/2` only; the answer is `Chunk` with the bytes).
    ReadRange {
        disk: DiskId,
        addr: ChunkAddr,
        offset: u64,
        len: u64,
    },
    Check {
        disk: DiskId,
        addr: ChunkAddr,
    },
    Delete {
        disk: DiskId,
        addr: ChunkAddr,
    },
    /// List the disk's chunks (the answer's payload is the JSON listing).
    Scan {
        disk: DiskId,
    },
    /// Record a file's new path in a folder's index.
    Rename {
        disk: DiskId,
        folder: ChunkFolder,
        file: FileId,
        path: String,
    },
    /// A request for `protocol`'s handler, its body as the payload: the data path carries
    /// request-channel calls too (never sent on a chunk stream).
    Call {
        protocol: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ChunkResponse {
    Stored(StoredChunk),
    /// The chunk file follows as the payload.
    Chunk,
    Checked(Option<u64>),
    Deleted(bool),
    /// The listing follows as the payload.
    Scanned,
    Renamed,
    /// Corrupt on the peer (and, from nodes before `Missing` existed, also missing).
    Damaged(String),
    /// Not on the peer.
    Missing(String),
    /// Anything else the peer's store said (or the error of a call's handler).
    Failed(String),
    /// A call's answer follows as the payload.
    Replied,
    /// No handler serves the call's protocol.
    NoHandler,
}

fn proto_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

pub(crate) async fn write_frame<T: Header>(
    stream: &mut (impl futures::AsyncWrite + Unpin),
    wire: Wire,
    header: T,
    payload: &[&[u8]],
) -> std::io::Result<()> {
    let encoded = header.encode(wire)?;
    let plen: usize = payload.iter().map(|p| p.len()).sum();
    let mut head = Vec::with_capacity(encoded.len() + 12);
    head.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    head.extend_from_slice(&encoded);
    head.extend_from_slice(&(plen as u64).to_le_bytes());
    stream.write_all(&head).await?;
    for part in payload {
        stream.write_all(part).await?;
    }
    stream.flush().await
}

pub(crate) async fn read_frame<T: Header>(
    stream: &mut (impl futures::AsyncRead + Unpin),
    wire: Wire,
) -> std::io::Result<(T, Vec<u8>)> {
    let mut len4 = [0u8; 4];
    stream.read_exact(&mut len4).await?;
    let hlen = u32::from_le_bytes(len4);
    if hlen > MAX_HEADER {
        return Err(proto_err(format!(
            "frame header of {hlen} bytes is over the {MAX_HEADER} limit"
        )));
    }
    let mut encoded = vec![0u8; hlen as usize];
    stream.read_exact(&mut encoded).await?;
    let header = T::decode(&encoded, wire)?;
    let mut len8 = [0u8; 8];
    stream.read_exact(&mut len8).await?;
    let plen = u64::from_le_bytes(len8);
    if plen > MAX_PAYLOAD {
        return Err(proto_err(format!(
            "payload of {plen} bytes is over the {MAX_PAYLOAD} limit"
        )));
    }
    let mut payload = vec![0u8; plen as usize];
    stream.read_exact(&mut payload).await?;
    Ok((header, payload))
}

fn store_reply(e: StoreError) -> ChunkResponse {
    if matches!(e, StoreError::NotFound { .. }) {
        ChunkResponse::Missing(e.to_string())
    } else if e.is_chunk_damage() {
        ChunkResponse::Damaged(e.to_string())
    } else {
        ChunkResponse::Failed(e.to_string())
    }
}

/// Serves one inbound chunk stream, opened with `wire`'s protocol, against the local store.
/// Without `ranges` it drops a `ReadRange` unanswered, as a node of a release before it
/// does (for tests that play one).
pub(crate) async fn serve_stream(
    store: Arc<dyn ChunkStore>,
    peer: PeerId,
    wire: Wire,
    mut stream: Stream,
    ranges: bool,
) {
    let result = async {
        let (request, payload): (ChunkRequest, Vec<u8>) = read_frame(&mut stream, wire).await?;
        if !ranges && matches!(request, ChunkRequest::ReadRange { .. }) {
            return Err(proto_err(
                "a chunk request of a kind this node does not know",
            ));
        }
        let (reply, out) =
            tokio::task::spawn_blocking(move || run_local(&*store, wire, request, payload))
                .await
                .map_err(|e| proto_err(format!("chunk task failed: {e}")))?;
        write_frame(&mut stream, wire, reply, &[&out]).await?;
        stream.close().await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(%peer, "chunk stream failed: {e}");
    }
}

/// Runs a chunk request on the local store (blocking); a scan's listing is encoded for
/// `wire`.
pub(crate) fn run_local(
    store: &dyn ChunkStore,
    wire: Wire,
    request: ChunkRequest,
    payload: Vec<u8>,
) -> (ChunkResponse, Vec<u8>) {
    match request {
        // verified here, then written as it came (not decoded and coded again)
        ChunkRequest::Put { disk, folder, path } => match crate::chunk::verify_chunk(&payload) {
            Ok(header) => match store.put_encoded(&disk, &folder, &path, &header, payload) {
                Ok(stored) => (ChunkResponse::Stored(stored), Vec::new()),
                Err(e) => (store_reply(e), Vec::new()),
            },
            Err(e) => (
                ChunkResponse::Failed(format!("the chunk arrived damaged: {e}")),
                Vec::new(),
            ),
        },
        // sent as stored: the caller verifies the chunk again when it arrives
        ChunkRequest::Read { disk, addr } => match store.read_encoded(&disk, &addr) {
            Ok(bytes) => (ChunkResponse::Chunk, bytes),
            Err(e) => (store_reply(e), Vec::new()),
        },
        ChunkRequest::ReadRange {
            disk,
            addr,
            offset,
            len,
        } => match store.read_chunk_range(&disk, &addr, offset, len) {
            Ok(bytes) => (ChunkResponse::Chunk, bytes),
            Err(e) => (store_reply(e), Vec::new()),
        },
        ChunkRequest::Check { disk, addr } => match store.check_chunk(&disk, &addr) {
            Ok(size) => (ChunkResponse::Checked(size), Vec::new()),
            Err(e) => (store_reply(e), Vec::new()),
        },
        ChunkRequest::Delete { disk, addr } => match store.delete_chunk(&disk, &addr) {
            Ok(gone) => (ChunkResponse::Deleted(gone), Vec::new()),
            Err(e) => (store_reply(e), Vec::new()),
        },
        ChunkRequest::Scan { disk } => match store.scan(&disk).map(|l| encode_listing(l, wire)) {
            Ok(Ok(listing)) => (ChunkResponse::Scanned, listing),
            Ok(Err(e)) => (ChunkResponse::Failed(e.to_string()), Vec::new()),
            Err(e) => (store_reply(e), Vec::new()),
        },
        ChunkRequest::Rename {
            disk,
            folder,
            file,
            path,
        } => match store.rename_file(&disk, &folder, file, &path) {
            Ok(()) => (ChunkResponse::Renamed, Vec::new()),
            Err(e) => (store_reply(e), Vec::new()),
        },
        ChunkRequest::Call { protocol } => (
            ChunkResponse::Failed(format!(
                "a call for {protocol} is not a chunk operation: calls go on the request channel or the data path"
            )),
            Vec::new(),
        ),
    }
}

/// Turns a reply into what the caller asked for, or the error it means.
pub(crate) fn reply_error(
    node: &NodeId,
    key_of: Option<&ChunkAddr>,
    reply: ChunkResponse,
) -> TransportError {
    let (missing, reply) = match reply {
        ChunkResponse::Missing(reason) => (true, ChunkResponse::Damaged(reason)),
        other => (false, other),
    };
    match reply {
        ChunkResponse::Damaged(reason) => match key_of {
            Some(addr) => TransportError::ChunkDamaged {
                node: node.clone(),
                key: addr.key,
                missing,
                reason,
            },
            None => TransportError::Remote {
                node: node.clone(),
                reason,
            },
        },
        ChunkResponse::Failed(reason) => TransportError::Remote {
            node: node.clone(),
            reason,
        },
        other => TransportError::Remote {
            node: node.clone(),
            reason: format!("unexpected chunk reply {other:?}"),
        },
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::chunk::ChunkFile;
    use crate::fuzz;
    use crate::ids::ChunkKey;

    fn frame<T: Header>(wire: Wire, header: T, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        futures::executor::block_on(write_frame(&mut out, wire, header, &[payload])).unwrap();
        out
    }

    fn read<T: Header>(wire: Wire, bytes: &[u8]) -> std::io::Result<(T, Vec<u8>)> {
        futures::executor::block_on(read_frame(&mut &bytes[..], wire))
    }

    /// Fuzz target: a chunk-protocol frame from a peer (request or answer) is read without
    /// a panic, and a frame that reads writes back to one that reads the same. Each input
    /// is tried as a whole frame and as a header alone in a frame with right lengths.
    #[test]
    fn fuzz_chunk_frames() {
        let key = ChunkKey {
            file: FileId(7),
            stripe: 3,
            generation: 1,
            index: 2,
        };
        let folder = ChunkFolder::for_path("/photos/2026/a.jpg");
        let addr = ChunkAddr {
            folder: folder.clone(),
            key,
        };
        let disk = DiskId::from("node1-d1");
        let data = b"stripe bytes".to_vec();
        let body = ChunkFile::new(key, 0, 12, 1, 2, crate::checksum::crc32(&data), data).encode();
        let requests = [
            ChunkRequest::Put {
                disk: disk.clone(),
                folder: folder.clone(),
                path: "/photos/2026/a.jpg".into(),
            },
            ChunkRequest::Read {
                disk: disk.clone(),
                addr: addr.clone(),
            },
            ChunkRequest::Scan { disk: disk.clone() },
            ChunkRequest::Rename {
                disk: disk.clone(),
                folder,
                file: FileId(7),
                path: "/b".into(),
            },
        ];
        let answers = [
            ChunkResponse::Stored(StoredChunk {
                disk,
                addr,
                size: body.len() as u64,
                checksum: 1,
            }),
            ChunkResponse::Chunk,
            ChunkResponse::Deleted(true),
            ChunkResponse::Missing("not here".into()),
        ];
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        for wire in [Wire::V1, Wire::V2] {
            for r in &requests {
                let payload: &[u8] = if matches!(r, ChunkRequest::Put { .. }) {
                    &body
                } else {
                    &[]
                };
                corpus.push(frame(wire, r.clone(), payload));
                corpus.push(r.clone().encode(wire).unwrap());
            }
            for a in &answers {
                let payload: &[u8] = if matches!(a, ChunkResponse::Chunk) {
                    &body
                } else {
                    &[]
                };
                corpus.push(frame(wire, a.clone(), payload));
                corpus.push(a.clone().encode(wire).unwrap());
            }
        }
        corpus.extend(fuzz::corpus("chunk_frames"));
        let tokens = [
            "\"Put\"",
            "\"Read\"",
            "\"Scan\"",
            "\"Rename\"",
            "\"Stored\"",
            "\"Damaged\"",
            "\"disk\":",
            "\"folder\":",
            "\"../../etc\"",
            "{",
            "}",
            "\"",
            "null",
            "-1",
        ];
        let mut m = fuzz::Mutator::new(fuzz::seed(), &tokens);
        fuzz::run(
            "chunk_frames",
            &corpus,
            fuzz::iterations(3000),
            &mut m,
            |input| {
                let mut header_only = (input.len() as u32).to_le_bytes().to_vec();
                header_only.extend_from_slice(input);
                header_only.extend_from_slice(&0u64.to_le_bytes());
                for wire in [Wire::V1, Wire::V2] {
                    for bytes in [input, &header_only[..]] {
                        if let Ok((r, payload)) = read::<ChunkRequest>(wire, bytes) {
                            let again = frame(wire, r.clone(), &payload);
                            let (r2, p2) = read::<ChunkRequest>(wire, &again).unwrap();
                            assert_eq!(format!("{r:?}"), format!("{r2:?}"));
                            assert_eq!(payload, p2);
                        }
                        if let Ok((a, payload)) = read::<ChunkResponse>(wire, bytes) {
                            let again = frame(wire, a.clone(), &payload);
                            let (a2, p2) = read::<ChunkResponse>(wire, &again).unwrap();
                            assert_eq!(format!("{a:?}"), format!("{a2:?}"));
                            assert_eq!(payload, p2);
                        }
                    }
                }
            },
        );
    }
}
