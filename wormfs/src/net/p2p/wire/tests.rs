//! The node-to-node encodings: recorded bytes of both versions still decode, a newer
//! peer's additions are ignored or refused clearly, and every message round-trips.

use super::*;
use crate::fuzz;
use libp2p::request_response::Codec;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn read_request(protocol: &StreamProtocol, bytes: &[u8]) -> io::Result<WireRequest> {
    let mut codec = WireCodec::new(1 << 20);
    futures::executor::block_on(codec.read_request(protocol, &mut &bytes[..]))
}

fn read_response(protocol: &StreamProtocol, bytes: &[u8]) -> io::Result<WireResponse> {
    let mut codec = WireCodec::new(1 << 20);
    futures::executor::block_on(codec.read_response(protocol, &mut &bytes[..]))
}

fn write_request(protocol: &StreamProtocol, r: WireRequest) -> Vec<u8> {
    let mut codec = WireCodec::new(1 << 20);
    let mut out = Vec::new();
    futures::executor::block_on(codec.write_request(protocol, &mut out, r)).unwrap();
    out
}

fn write_response(protocol: &StreamProtocol, r: WireResponse) -> Vec<u8> {
    let mut codec = WireCodec::new(1 << 20);
    let mut out = Vec::new();
    futures::executor::block_on(codec.write_response(protocol, &mut out, r)).unwrap();
    out
}

fn call() -> WireRequest {
    WireRequest::Call {
        protocol: "raft/vote".into(),
        body: vec![1, 2, 3],
    }
}

fn hello() -> WireRequest {
    WireRequest::Hello {
        node: NodeId("node1".into()),
    }
}

// Bytes as the previous release (CBOR only, commit 03b429f) wrote them.
const V1_HELLO: &str = "a16548656c6c6fa1646e6f6465656e6f646531";
const V1_CALL: &str = "a16443616c6ca26870726f746f636f6c69726166742f766f746564626f647943010203";
const V1_REPLY: &str = "a1655265706c7943070809";
const V1_NO_HANDLER: &str = "694e6f48616e646c6572";

// Bytes of this version's protobuf messages: a change here renumbers a field, which breaks
// talking to nodes of this version.
const V2_HELLO: &str = "0a070a056e6f646531";
const V2_CALL: &str = "12100a09726166742f766f74651203010203";
const V2_REPLY: &str = "1203070809";
const V2_NO_HANDLER: &str = "2200";

/// A node of this version reads what a node of the previous release sends, and answers in
/// the bytes that node expects.
#[test]
fn version_1_messages_recorded_from_the_previous_release_still_read() {
    assert_eq!(read_request(&RPC_V1, &unhex(V1_HELLO)).unwrap(), hello());
    assert_eq!(read_request(&RPC_V1, &unhex(V1_CALL)).unwrap(), call());
    assert_eq!(
        read_response(&RPC_V1, &unhex(V1_REPLY)).unwrap(),
        WireResponse::Reply(vec![7, 8, 9])
    );
    assert_eq!(
        read_response(&RPC_V1, &unhex(V1_NO_HANDLER)).unwrap(),
        WireResponse::NoHandler
    );
    assert_eq!(hex(&write_request(&RPC_V1, call())), V1_CALL);
    assert_eq!(hex(&write_request(&RPC_V1, hello())), V1_HELLO);
    assert_eq!(
        hex(&write_response(&RPC_V1, WireResponse::Reply(vec![7, 8, 9]))),
        V1_REPLY
    );
    assert_eq!(
        hex(&write_response(&RPC_V1, WireResponse::NoHandler)),
        V1_NO_HANDLER
    );
}

#[test]
fn version_2_messages_keep_their_field_numbers() {
    assert_eq!(hex(&write_request(&RPC_V2, hello())), V2_HELLO);
    assert_eq!(hex(&write_request(&RPC_V2, call())), V2_CALL);
    assert_eq!(
        hex(&write_response(&RPC_V2, WireResponse::Reply(vec![7, 8, 9]))),
        V2_REPLY
    );
    assert_eq!(
        hex(&write_response(&RPC_V2, WireResponse::NoHandler)),
        V2_NO_HANDLER
    );
    assert_eq!(read_request(&RPC_V2, &unhex(V2_CALL)).unwrap(), call());
    assert_eq!(read_request(&RPC_V2, &unhex(V2_HELLO)).unwrap(), hello());
}

/// A newer node may add fields; this node reads the fields it knows and ignores the rest.
/// A request kind it does not know is refused with an error that says so.
#[test]
fn a_newer_peers_additions_are_ignored_or_refused_by_name() {
    // the call of V2_CALL with field 9 (varint 7) added inside it, and field 20 (a string)
    // added to the request
    let mut call_body = unhex("0a09726166742f766f746512030102034807");
    let mut newer = vec![0x12, call_body.len() as u8];
    newer.append(&mut call_body);
    newer.extend_from_slice(&unhex("a201026869"));
    assert_eq!(read_request(&RPC_V2, &newer).unwrap(), call());

    // a request whose only case is field 7, which this version does not have
    let e = read_request(&RPC_V2, &unhex("3a00")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("does not know"), "{e}");
    let e = read_response(&RPC_V2, &unhex("3a00")).unwrap_err();
    assert!(e.to_string().contains("newer WormFS"), "{e}");
}

#[test]
fn a_message_over_the_limit_is_refused() {
    let mut codec = WireCodec::new(16);
    let big = write_request(
        &RPC_V2,
        WireRequest::Call {
            protocol: "p".into(),
            body: vec![0; 32],
        },
    );
    let e = futures::executor::block_on(codec.read_request(&RPC_V2, &mut &big[..])).unwrap_err();
    assert!(e.to_string().contains("16 byte limit"), "{e}");
}

fn addr() -> ChunkAddr {
    ChunkAddr {
        folder: ChunkFolder::for_path("/photos/a.jpg"),
        key: ChunkKey {
            file: FileId(42),
            stripe: 7,
            generation: 3,
            index: 5,
        },
    }
}

fn every_request() -> Vec<ChunkRequest> {
    let disk = DiskId("node2-d1".into());
    vec![
        ChunkRequest::Put {
            disk: disk.clone(),
            folder: addr().folder,
            path: "/photos/a.jpg".into(),
        },
        ChunkRequest::Read {
            disk: disk.clone(),
            addr: addr(),
        },
        ChunkRequest::Check {
            disk: disk.clone(),
            addr: addr(),
        },
        ChunkRequest::Delete {
            disk: disk.clone(),
            addr: addr(),
        },
        ChunkRequest::Scan { disk: disk.clone() },
        ChunkRequest::Rename {
            disk: disk.clone(),
            folder: addr().folder,
            file: FileId(42),
            path: "/photos/b.jpg".into(),
        },
        ChunkRequest::ReadRange {
            disk,
            addr: addr(),
            offset: 65_536,
            len: 4096,
        },
    ]
}

fn every_answer() -> Vec<ChunkResponse> {
    vec![
        ChunkResponse::Stored(StoredChunk {
            disk: DiskId("node2-d1".into()),
            addr: addr(),
            size: 65_600,
            checksum: 0xdead_beef,
        }),
        ChunkResponse::Chunk,
        ChunkResponse::Checked(Some(65_600)),
        ChunkResponse::Checked(None),
        ChunkResponse::Deleted(true),
        ChunkResponse::Deleted(false),
        ChunkResponse::Scanned,
        ChunkResponse::Renamed,
        ChunkResponse::Damaged("bad checksum".into()),
        ChunkResponse::Missing("not here".into()),
        ChunkResponse::Failed("disk full".into()),
    ]
}

/// Every chunk header and a listing come back the same in both versions.
#[test]
fn chunk_headers_and_listings_round_trip_in_both_versions() {
    for wire in [Wire::V1, Wire::V2] {
        for r in every_request() {
            let back = ChunkRequest::decode(&r.clone().encode(wire).unwrap(), wire).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"), "{wire:?}");
        }
        for a in every_answer() {
            let back = ChunkResponse::decode(&a.clone().encode(wire).unwrap(), wire).unwrap();
            assert_eq!(format!("{back:?}"), format!("{a:?}"), "{wire:?}");
        }
        let listing = vec![IndexedChunk {
            disk: DiskId("node2-d1".into()),
            folder: addr().folder,
            path: "/photos/a.jpg".into(),
            key: addr().key,
            size: 65_600,
            checksum: 7,
            stripe_start: 0,
            stripe_end: 4 << 20,
            k: 4,
            m: 2,
        }];
        let bytes = encode_listing(listing.clone(), wire).unwrap();
        assert_eq!(decode_listing(&bytes, wire).unwrap(), listing, "{wire:?}");
    }
    // a protobuf header is a fraction of the JSON one
    let r = every_request().remove(1);
    let (v1, v2) = (
        r.clone().encode(Wire::V1).unwrap().len(),
        r.encode(Wire::V2).unwrap().len(),
    );
    assert!(v2 * 2 < v1, "protobuf {v2} bytes, JSON {v1} bytes");
}

/// What a peer sends is checked as the JSON was: a chunk folder must be a folder name (no
/// path to climb out of the disk), and a shard index must fit.
#[test]
fn bad_chunk_headers_are_refused_with_what_is_wrong() {
    let bad_folder = pb::ChunkRequest {
        kind: Some(pb::chunk_request::Kind::Put(pb::PutChunk {
            disk: "d".into(),
            folder: "../../etc".into(),
            path: "/a".into(),
        })),
    }
    .encode_to_vec();
    let e = ChunkRequest::decode(&bad_folder, Wire::V2).unwrap_err();
    assert!(e.to_string().contains("not a chunk folder name"), "{e}");

    let mut key = key_to_pb(addr().key);
    key.index = 70_000;
    let big_index = pb::ChunkRequest {
        kind: Some(pb::chunk_request::Kind::Read(pb::ChunkOnDisk {
            disk: "d".into(),
            addr: Some(pb::ChunkAddr {
                folder: addr().folder.into(),
                key: Some(key),
            }),
        })),
    }
    .encode_to_vec();
    let e = ChunkRequest::decode(&big_index, Wire::V2).unwrap_err();
    assert!(e.to_string().contains("70000"), "{e}");

    let no_addr = pb::ChunkRequest {
        kind: Some(pb::chunk_request::Kind::Delete(pb::ChunkOnDisk {
            disk: "d".into(),
            addr: None,
        })),
    }
    .encode_to_vec();
    let e = ChunkRequest::decode(&no_addr, Wire::V2).unwrap_err();
    assert!(e.to_string().contains("without its chunk address"), "{e}");
}

/// Fuzz target: a request-protocol message from a peer, in either version, decodes without
/// a panic, and what decodes encodes back to bytes that decode the same.
#[test]
fn fuzz_rpc_messages() {
    let mut corpus: Vec<Vec<u8>> = [V1_HELLO, V1_CALL, V1_REPLY, V1_NO_HANDLER]
        .iter()
        .chain(&[V2_HELLO, V2_CALL, V2_REPLY, V2_NO_HANDLER])
        .map(|h| unhex(h))
        .collect();
    for p in [&RPC_V1, &RPC_V2] {
        corpus.push(write_response(p, WireResponse::Failed("no".into())));
        corpus.push(write_response(
            p,
            WireResponse::Hello {
                node: NodeId("n".into()),
            },
        ));
    }
    corpus.extend(fuzz::corpus("rpc_messages"));
    let tokens = ["Call", "Hello", "Reply", "\x12", "\x0a", "\x1a", "\x7f\x7f"];
    let mut m = fuzz::Mutator::new(fuzz::seed(), &tokens);
    fuzz::run(
        "rpc_messages",
        &corpus,
        fuzz::iterations(3000),
        &mut m,
        |b| {
            for p in [&RPC_V1, &RPC_V2] {
                if let Ok(r) = read_request(p, b) {
                    assert_eq!(read_request(p, &write_request(p, r.clone())).unwrap(), r);
                }
                if let Ok(r) = read_response(p, b) {
                    assert_eq!(read_response(p, &write_response(p, r.clone())).unwrap(), r);
                }
            }
            for wire in [Wire::V1, Wire::V2] {
                if let Ok(l) = decode_listing(b, wire) {
                    let again = encode_listing(l.clone(), wire).unwrap();
                    assert_eq!(decode_listing(&again, wire).unwrap(), l);
                }
            }
        },
    );
}
