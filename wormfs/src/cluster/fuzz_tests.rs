//! Fuzz target: every node-to-node message a node decodes from a peer (Raft, pre-votes,
//! metadata ops forwarded to the master, heartbeats, membership and lock calls, and the
//! answers to them) is decoded without a panic, and what decodes encodes back stably.

use super::election::{PreVote, PreVoteAnswer};
use super::heartbeat::Beat;
use super::log::SubmitAnswer;
use super::membership::{AdminAnswer, AdminRequest};
use crate::fuzz;
use crate::ids::{FileId, NodeId};
use crate::locks::{LockAnswer, LockCall};
use crate::meta::{MetadataOp, NewKind, Refusal, Timestamp};
use crate::raft::{Entry, EntryPayload, LogId, Member, SnapshotMeta, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, Membership, StoredMembership};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Decodes `bytes` as a `T`; when that works, checks that the encoding of the value decodes
/// to a value with the same encoding.
fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let once = serde_json::to_vec(&v).expect("a decoded message encodes");
        let again: T = serde_json::from_slice(&once).expect("an encoded message decodes");
        assert_eq!(
            serde_json::to_vec(&again).unwrap(),
            once,
            "{} re-encodes the same",
            std::any::type_name::<T>()
        );
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A snapshot chunk travels as its bytes, not as JSON numbers: a 1 MiB chunk costs a few
/// hundred bytes more, and comes back the same.
#[test]
fn a_snapshot_chunk_is_sent_raw_and_decodes_back() {
    let member = Member {
        name: "node1".into(),
        p2p_addr: String::new(),
        rpc_addr: String::new(),
        peer_id: String::new(),
    };
    let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, member)]));
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let req = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 5)),
            last_membership: StoredMembership::new(Some(log_id(1, 0)), membership),
            snapshot_id: "3-1-5-abc".into(),
        },
        offset: 4 << 20,
        data: data.clone(),
        done: false,
    };
    let body = super::network::encode_snapshot(req.clone());
    assert!(
        body.len() < data.len() + 1024,
        "{} bytes on the wire for {} of data",
        body.len(),
        data.len()
    );
    let back = super::network::decode_snapshot(&body).unwrap();
    assert_eq!(back.data, data);
    assert_eq!(back.offset, req.offset);
    assert_eq!(back.meta, req.meta);
    assert!(!back.done);
    let err = super::network::decode_snapshot(&body[..3]).unwrap_err();
    assert!(err.contains("shorter"), "{err}");
    let err = super::network::decode_snapshot(&[0, 0, 1, 0, b'{']).unwrap_err();
    assert!(err.contains("only 1 follow"), "{err}");
}

#[test]
fn fuzz_cluster_messages() {
    let member = Member {
        name: "node1".into(),
        p2p_addr: "/ip4/127.0.0.1/tcp/4001".into(),
        rpc_addr: "127.0.0.1:7001".into(),
        peer_id: "12D3KooWexample".into(),
    };
    let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, member)]));
    let op = MetadataOp::Create {
        parent: FileId::ROOT,
        name: "photos".into(),
        kind: NewKind::Directory,
        perm: 0o755,
        uid: 1000,
        gid: 1000,
        time: Timestamp(1_700_000_000_000_000_000),
    };
    let entries: Vec<Entry> = vec![
        Entry {
            log_id: log_id(3, 6),
            payload: EntryPayload::Normal(op.clone()),
        },
        Entry {
            log_id: log_id(3, 7),
            payload: EntryPayload::Membership(membership.clone()),
        },
        Entry {
            log_id: log_id(3, 8),
            payload: EntryPayload::Blank,
        },
    ];
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(3, 5)),
        entries,
        leader_commit: Some(log_id(3, 5)),
    };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 5)),
            last_membership: StoredMembership::new(Some(log_id(1, 0)), membership),
            snapshot_id: "3-1-5-abc".into(),
        },
        offset: 0,
        data: b"SQLite format 3\0".to_vec(),
        done: true,
    };
    let beat = Beat {
        node: NodeId("node1".into()),
        rpc_addr: "127.0.0.1:7001".into(),
        p2p_addr: "/ip4/127.0.0.1/tcp/4001".into(),
        peer_id: "12D3KooWexample".into(),
        raft_id: 1,
        disks: Vec::new(),
        sent_ms: 1_700_000_000_000,
        term: 3,
        admin: crate::rpc::server::AdminEndpoint {
            url: "https://127.0.0.1:7170/".into(),
            fingerprint: "AB:CD".into(),
        },
    };
    let mut corpus = vec![
        json(&append),
        json(&VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 8)))),
        json(&snapshot),
        super::network::encode_snapshot(snapshot.clone()),
        json(&op),
        json(&beat),
        json(&PreVote {
            candidate: 2,
            term: 4,
            last_log: Some(log_id(3, 8)),
            log_sent: true,
        }),
        json(&PreVoteAnswer {
            granted: false,
            reason: "heard from the master 0.2 s ago".into(),
        }),
        json(&AdminRequest::Add {
            addr: "127.0.0.1:4002".into(),
            peer_id: Some("12D3KooWexample".into()),
        }),
        json(&AdminRequest::Remove { id: "node2".into() }),
        json(&AdminAnswer::Failed("no".into())),
        json(&SubmitAnswer::Done(
            Err(Refusal::NotFound("photos".into())),
            9,
        )),
        json(&SubmitAnswer::Unavailable("no master".into())),
    ];
    corpus.extend(fuzz::corpus("cluster_messages"));
    let tokens = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "null",
        "true",
        "-1",
        "1e999",
        "18446744073709551615",
        "\"term\":",
        "\"index\":",
        "\"leader_id\":",
        "\"entries\":",
        "\"Normal\"",
        "\"Blank\"",
        "\"Membership\"",
        "\"configs\":",
        "\"nodes\":",
        "\"session\":",
        "\"op\":",
        "\"Acquire\"",
    ];
    let mut m = fuzz::Mutator::new(fuzz::seed(), &tokens);
    fuzz::run(
        "cluster_messages",
        &corpus,
        fuzz::iterations(3000),
        &mut m,
        |b| {
            round_trip::<AppendEntriesRequest<TypeConfig>>(b);
            round_trip::<VoteRequest<u64>>(b);
            round_trip::<InstallSnapshotRequest<TypeConfig>>(b);
            if let Ok(req) = super::network::decode_snapshot(b) {
                let once = super::network::encode_snapshot(req);
                let again = super::network::decode_snapshot(&once).expect("re-encoded decodes");
                assert_eq!(super::network::encode_snapshot(again), once);
            }
            round_trip::<MetadataOp>(b);
            round_trip::<Beat>(b);
            round_trip::<PreVote>(b);
            round_trip::<PreVoteAnswer>(b);
            round_trip::<AdminRequest>(b);
            round_trip::<AdminAnswer>(b);
            round_trip::<SubmitAnswer>(b);
            round_trip::<LockCall>(b);
            round_trip::<LockAnswer>(b);
        },
    );
}
