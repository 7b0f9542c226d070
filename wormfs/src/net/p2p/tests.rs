use super::*;
use crate::ids::{ChunkKey, FileId};
use crate::store::MemoryChunkStore;

struct Node {
    transport: P2pTransport,
    store: Arc<MemoryChunkStore>,
    _dir: tempfile::TempDir,
}

async fn start(
    name: &str,
    listen: SocketAddr,
    keypair: Option<Keypair>,
    peers: &[SocketAddr],
) -> Node {
    start_speaking(name, listen, keypair, peers, true).await
}

/// A node; `speaks_v2` false plays one of the release before protobuf.
async fn start_speaking(
    name: &str,
    listen: SocketAddr,
    keypair: Option<Keypair>,
    peers: &[SocketAddr],
    speaks_v2: bool,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let book = Arc::new(PeerBook::open(&dir.path().join(PEER_BOOK_FILE_NAME)).unwrap());
    for p in peers {
        book.add(*p, None).unwrap();
    }
    let store = Arc::new(MemoryChunkStore::new(&[(
        DiskId(format!("{name}-d0")),
        1 << 30,
    )]));
    let transport = P2pTransport::start_speaking(
        config(name, keypair, listen, book, store.clone()),
        speaks_v2,
    )
    .await
    .unwrap();
    Node {
        transport,
        store,
        _dir: dir,
    }
}

/// A test node's config: short timeouts, a new key unless one is given.
fn config(
    name: &str,
    keypair: Option<Keypair>,
    listen: SocketAddr,
    book: Arc<PeerBook>,
    store: Arc<MemoryChunkStore>,
) -> P2pConfig {
    P2pConfig {
        node: NodeId(name.into()),
        keypair: keypair.unwrap_or_else(Keypair::generate_ed25519),
        listen,
        book,
        store,
        redial_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(5),
        chunk_timeout: Duration::from_secs(5),
        data_listen: None,
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn chunk() -> ChunkFile {
    let data = b"stripe bytes".to_vec();
    let key = ChunkKey {
        file: FileId(7),
        stripe: 0,
        generation: 1,
        index: 2,
    };
    ChunkFile::new(
        key,
        0,
        data.len() as u64,
        1,
        2,
        crate::checksum::crc32(&data),
        data,
    )
}

/// Whether `t` sends `node`'s chunks through libp2p streams for now (no data path).
fn streams_only(t: &P2pTransport, node: &NodeId) -> bool {
    t.shared.data.lock().unwrap().off.contains_key(node)
}

/// Nodes `a` and `b`, each in the other's book and connected, and their names.
async fn connected_pair() -> (Node, Node, NodeId, NodeId) {
    let a = start("a", any_port(), None, &[]).await;
    let b = start("b", any_port(), None, &[a.transport.listen_addr()]).await;
    a.transport
        .add_peer(b.transport.listen_addr(), None)
        .unwrap();
    let (na, nb) = (NodeId("a".into()), NodeId("b".into()));
    wait_for("a and b to connect", || {
        a.transport.is_connected(&nb) && b.transport.is_connected(&na)
    })
    .await;
    (a, b, na, nb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_peers_exchange_chunks_and_requests() {
    let (a, b, na, nb) = connected_pair().await;
    // each pinned the other's first ID, durably
    let pinned = a
        .transport
        .book()
        .get(b.transport.listen_addr())
        .unwrap()
        .unwrap();
    assert_eq!(pinned.peer_id, Some(b.transport.peer_id()));

    let disk = DiskId("b-d0".into());
    let folder = ChunkFolder::for_path("/movie.mkv");
    let c = chunk();
    let stored = a
        .transport
        .put_chunk(&nb, &disk, &folder, "/movie.mkv", &c)
        .await
        .unwrap();
    assert_eq!(stored.disk, disk);
    assert_eq!(
        a.transport.shared.data.lock().unwrap().idle[&nb].len(),
        1,
        "the put went on a data connection, now idle"
    );
    assert_eq!(
        a.transport
            .read_chunk(&nb, &disk, &stored.addr)
            .await
            .unwrap(),
        c
    );
    assert_eq!(
        a.transport
            .check_chunk(&nb, &disk, &stored.addr)
            .await
            .unwrap(),
        Some(stored.size)
    );
    // part of the chunk's data, clipped to it
    for (offset, len, want) in [
        (3, 5, &c.data[3..8]),
        (7, 100, &c.data[7..]),
        (50, 4, &[][..]),
    ] {
        let part = a
            .transport
            .read_chunk_range(&nb, &disk, &stored.addr, offset, len)
            .await
            .unwrap();
        assert_eq!(part, want, "{offset}+{len}");
    }
    assert!(
        a.transport.shared.no_ranges.lock().unwrap().is_empty(),
        "a node of this release reads ranges itself"
    );
    // the peer's index lists the chunk, and records a rename
    a.transport
        .rename_file(&nb, &disk, &folder, c.header.key.file, "/renamed.mkv")
        .await
        .unwrap();
    let listed = a.transport.scan_disk(&nb, &disk).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].key, listed[0].path.as_str()),
        (c.header.key, "/renamed.mkv")
    );
    // a chunk that rotted on the peer is corrupt, not missing
    assert!(b.store.corrupt(&disk, &stored.addr, 100));
    let err = a
        .transport
        .read_chunk(&nb, &disk, &stored.addr)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ChunkDamaged { missing: false, .. }),
        "{err}"
    );
    let err = a
        .transport
        .read_chunk_range(&nb, &disk, &stored.addr, 0, 4)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ChunkDamaged { missing: false, .. }),
        "a range of a rotten chunk: {err}"
    );
    // a disk the peer does not have is the peer failing, not the chunk
    let err = a
        .transport
        .put_chunk(&nb, &DiskId("nope".into()), &folder, "/x", &c)
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Remote { .. }), "{err}");
    assert!(a
        .transport
        .delete_chunk(&nb, &disk, &stored.addr)
        .await
        .unwrap());
    let err = a
        .transport
        .read_chunk(&nb, &disk, &stored.addr)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ChunkDamaged { missing: true, .. }),
        "{err}"
    );

    b.transport.serve(
        "echo",
        Arc::new(|caller: NodeId, body: Vec<u8>| {
            Box::pin(async move {
                let mut out = caller.0.into_bytes();
                out.extend(body.into_iter().rev());
                Ok(out)
            })
        }),
    );
    assert_eq!(
        a.transport
            .request(&nb, "echo", vec![1, 2, 3])
            .await
            .unwrap(),
        b"a\x03\x02\x01".to_vec()
    );
    assert!(matches!(
        a.transport.request(&nb, "raft", vec![]).await,
        Err(TransportError::NoHandler { .. })
    ));
    // a large body travels too
    let big = vec![7u8; 3 << 20];
    assert_eq!(
        a.transport
            .request(&nb, "echo", big.clone())
            .await
            .unwrap()
            .len(),
        big.len() + 1
    );
    // the local node is served without the network
    let local = DiskId("a-d0".into());
    let s = a
        .transport
        .put_chunk(&na, &local, &folder, "/m", &c)
        .await
        .unwrap();
    assert_eq!(
        a.transport.read_chunk(&na, &local, &s.addr).await.unwrap(),
        c
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_identity_at_a_pinned_address_is_refused() {
    let a = start("a", any_port(), None, &[]).await;
    let b = start("b", any_port(), None, &[a.transport.listen_addr()]).await;
    let b_addr = b.transport.listen_addr();
    let old_id = b.transport.peer_id();
    a.transport.add_peer(b_addr, None).unwrap();
    let nb = NodeId("b".into());
    wait_for("a to reach b", || a.transport.is_connected(&nb)).await;

    b.transport.shutdown();
    drop(b);
    wait_for("a to see b go", || !a.transport.is_connected(&nb)).await;
    // an impostor (a new key) takes b's address
    let mut impostor = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while impostor.is_none() {
        let dir = tempfile::tempdir().unwrap();
        let book = Arc::new(PeerBook::open_in_memory().unwrap());
        book.add(a.transport.listen_addr(), None).unwrap();
        match P2pTransport::start(P2pConfig {
            node: nb.clone(),
            keypair: Keypair::generate_ed25519(),
            listen: b_addr,
            book,
            store: Arc::new(MemoryChunkStore::new(&[(DiskId("b-d0".into()), 1 << 20)])),
            redial_interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
            chunk_timeout: Duration::from_secs(5),
            data_listen: None,
        })
        .await
        {
            Ok(t) => impostor = Some((t, dir)),
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "port not free again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let (impostor, _dir) = impostor.unwrap();
    let new_id = impostor.peer_id();
    wait_for("a to refuse the impostor", || {
        a.transport.refusals().iter().any(|r| {
            r.addr == b_addr.to_string() && r.expected == Some(old_id) && r.presented == new_id
        })
    })
    .await;
    assert!(!a.transport.is_connected(&nb));
    let err = a.transport.request(&nb, "echo", vec![]).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err}");
    // the pin survived in the book
    assert_eq!(
        a.transport.book().get(b_addr).unwrap().unwrap().peer_id,
        Some(old_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_in_the_book_is_refused() {
    let a = start("a", any_port(), None, &[]).await;
    let c = start("c", any_port(), None, &[a.transport.listen_addr()]).await;
    let c_id = c.transport.peer_id();
    wait_for("a to refuse c", || {
        a.transport
            .refusals()
            .iter()
            .any(|r| r.presented == c_id && r.expected.is_none())
    })
    .await;
    assert!(!c.transport.is_connected(&NodeId("a".into())));
    assert!(!a.transport.is_connected(&NodeId("c".into())));
}

/// A node-to-node port another process holds: the error says why, not just where.
#[tokio::test]
async fn a_busy_port_is_named_with_its_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let book = Arc::new(PeerBook::open(&dir.path().join(PEER_BOOK_FILE_NAME)).unwrap());
    let store = Arc::new(MemoryChunkStore::new(&[(DiskId("d0".into()), 1 << 30)]));
    let err = P2pTransport::start(config("busy", None, addr, book, store))
        .await
        .expect_err("a second listener on a bound port");
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.to_lowercase().contains("in use"),
        "the error does not name the port and its cause: {text}"
    );
}

/// A cluster is upgraded one node at a time: a node of this version and one of the release
/// before protobuf (CBOR requests, JSON chunk headers) exchange chunks, listings and
/// requests both ways, each side falling back to what the other speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_release_before_protobuf_works_with_this_one() {
    let old = start_speaking("old", any_port(), None, &[], false).await;
    let new = start("new", any_port(), None, &[old.transport.listen_addr()]).await;
    old.transport
        .add_peer(new.transport.listen_addr(), None)
        .unwrap();
    let (n_old, n_new) = (NodeId("old".into()), NodeId("new".into()));
    wait_for("the old and the new node to connect", || {
        old.transport.is_connected(&n_new) && new.transport.is_connected(&n_old)
    })
    .await;
    let echo: RequestHandler = Arc::new(|caller: NodeId, body: Vec<u8>| {
        Box::pin(async move {
            let mut out = caller.0.into_bytes();
            out.extend(body);
            Ok(out)
        })
    });
    old.transport.serve("echo", echo.clone());
    new.transport.serve("echo", echo);
    let folder = ChunkFolder::for_path("/movie.mkv");
    let c = chunk();
    for (from, to, to_name) in [(&new, &old, &n_old), (&old, &new, &n_new)] {
        let disk = DiskId(format!("{}-d0", to_name.0));
        let stored = from
            .transport
            .put_chunk(to_name, &disk, &folder, "/movie.mkv", &c)
            .await
            .unwrap_or_else(|e| panic!("a put to {to_name}: {e}"));
        assert_eq!(to.store.chunk_count(), 1);
        assert_eq!(
            from.transport
                .read_chunk(to_name, &disk, &stored.addr)
                .await
                .unwrap(),
            c
        );
        // a range, from a node that cannot ask for one or of one that cannot serve it
        let part = from
            .transport
            .read_chunk_range(to_name, &disk, &stored.addr, 2, 6)
            .await
            .unwrap_or_else(|e| panic!("a range of a chunk on {to_name}: {e}"));
        assert_eq!(part, c.data[2..8]);
        if to_name == &n_old {
            let off = streams_only(&new.transport, &n_old);
            assert!(
                off,
                "the old node, with no data path, is asked through streams"
            );
            // the old node dropped the request: the new one reads it whole from now on
            let known = new
                .transport
                .shared
                .no_ranges
                .lock()
                .unwrap()
                .contains(&n_old);
            assert!(known, "the old node is remembered as reading no ranges");
        }
        let listed = from.transport.scan_disk(to_name, &disk).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].key, c.header.key);
        assert!(from
            .transport
            .delete_chunk(to_name, &disk, &stored.addr)
            .await
            .unwrap());
        let body = from
            .transport
            .request(to_name, "echo", vec![1, 2])
            .await
            .unwrap();
        let mut expected = from.transport.local_node().0.clone().into_bytes();
        expected.extend([1, 2]);
        assert_eq!(body, expected);
        assert!(matches!(
            from.transport.request(to_name, "raft", vec![]).await,
            Err(TransportError::NoHandler { .. })
        ));
    }
}

/// The data path's holder redeems a ticket once; a caller that cannot reach the data port
/// carries on through libp2p streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_path_takes_a_ticket_once_and_falls_back_when_unreachable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b, _, nb) = connected_pair().await;
    let ticket = a
        .transport
        .request(&nb, data::TICKET_CALL, Vec::new())
        .await
        .unwrap();
    let port = data::Ticket::decode(&ticket).unwrap().port;
    // an id that was never issued, then the ticket twice: only its first use is served
    let closed = |mut s: tokio::net::TcpStream| async move {
        let mut byte = [0u8; 1];
        matches!(s.read(&mut byte).await, Ok(0) | Err(_))
    };
    let mut stranger = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stranger.write_all(&[9u8; 16]).await.unwrap();
    assert!(closed(stranger).await, "an unknown ticket is refused");
    for (round, served) in [(1, true), (2, false)] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(&ticket[2..18]).await.unwrap();
        let mut probe = [0u8; 1];
        let answered = tokio::time::timeout(Duration::from_millis(300), s.read(&mut probe)).await;
        // a served connection waits for a record; a refused one is closed at once
        assert_eq!(answered.is_err(), served, "use {round} of the ticket");
    }
    // the data port cannot be reached from a (127.0.0.2 is not where b listens)
    a.transport
        .shared
        .remote_ip
        .write()
        .unwrap()
        .insert(b.transport.peer_id(), "127.0.0.2".parse().unwrap());
    let disk = DiskId("b-d0".into());
    let c = chunk();
    let stored = a
        .transport
        .put_chunk(&nb, &disk, &ChunkFolder::for_path("/a"), "/a", &c)
        .await
        .unwrap();
    assert_eq!(b.store.chunk_count(), 1);
    assert!(streams_only(&a.transport, &nb));
    assert_eq!(
        a.transport
            .read_chunk(&nb, &disk, &stored.addr)
            .await
            .unwrap(),
        c
    );
}

/// Request-channel calls ride the data path: an answer, a handler's error and a missing
/// handler all come back as on libp2p; a caller without a data path still gets its
/// answer through libp2p; and a holder no longer connected to the caller on libp2p does not
/// serve the caller's open data connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ride_the_data_path_while_the_libp2p_connection_is_up() {
    let (a, b, na, nb) = connected_pair().await;
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    b.transport.serve(
        "/test/echo",
        Arc::new(move |caller, body| {
            log.lock().unwrap().push(caller);
            Box::pin(async move {
                if body == b"fail" {
                    Err("asked to fail".to_string())
                } else {
                    Ok([&b"echo:"[..], &body].concat())
                }
            })
        }),
    );
    let idle = |t: &P2pTransport| {
        t.shared
            .data
            .lock()
            .unwrap()
            .idle
            .get(&nb)
            .map_or(0, Vec::len)
    };
    assert_eq!(idle(&a.transport), 0);
    let answer = a
        .transport
        .request(&nb, "/test/echo", b"hi".to_vec())
        .await
        .unwrap();
    assert_eq!(answer, b"echo:hi");
    assert_eq!(idle(&a.transport), 1, "the call went on a data connection");
    assert_eq!(
        *heard.lock().unwrap(),
        vec![na.clone()],
        "the handler knows the caller"
    );
    match a
        .transport
        .request(&nb, "/test/echo", b"fail".to_vec())
        .await
    {
        Err(TransportError::Remote { reason, .. }) => assert_eq!(reason, "asked to fail"),
        other => panic!("expected the handler's error, got {other:?}"),
    }
    match a.transport.request(&nb, "/test/none", Vec::new()).await {
        Err(TransportError::NoHandler { protocol, .. }) => assert_eq!(protocol, "/test/none"),
        other => panic!("expected no handler, got {other:?}"),
    }
    assert_eq!(
        idle(&a.transport),
        1,
        "one connection served the three calls"
    );

    // b no longer counts a as connected: the open data connection is refused
    b.transport
        .shared
        .connected
        .write()
        .unwrap()
        .remove(&a.transport.peer_id());
    let refused = a.transport.request(&nb, "/test/echo", b"x".to_vec()).await;
    assert!(
        matches!(refused, Err(TransportError::Unreachable { .. })),
        "{refused:?}"
    );
    assert_eq!(idle(&a.transport), 0, "the broken connection was dropped");
    b.transport
        .shared
        .connected
        .write()
        .unwrap()
        .insert(a.transport.peer_id());

    // without a data path, calls still go through (on libp2p)
    a.transport
        .shared
        .remote_ip
        .write()
        .unwrap()
        .insert(b.transport.peer_id(), "127.0.0.2".parse().unwrap());
    let answer = a
        .transport
        .request(&nb, "/test/echo", b"again".to_vec())
        .await
        .unwrap();
    assert_eq!(answer, b"echo:again");
    assert!(streams_only(&a.transport, &nb));
    assert_eq!(idle(&a.transport), 0);
}
