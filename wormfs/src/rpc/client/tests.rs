//! Failover against fake nodes: each fake is a tonic server behind a TCP proxy owned by
//! the test, so that "killing" a node closes its listener (later connections are
//! refused) and cuts every open connection (calls in flight break).
use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

/// What a fake node does and has seen.
#[derive(Default)]
struct Fake {
    /// Answers carry this inode number, to tell which node answered.
    id: u64,
    /// The addresses `GetClusterStatus` lists.
    members: Mutex<Vec<String>>,
    /// When set, `Create` and `WriteStripes` report on this channel and never answer.
    hang: Mutex<Option<tokio::sync::mpsc::UnboundedSender<&'static str>>>,
    creates: AtomicUsize,
    writes: AtomicUsize,
    unlinks: AtomicUsize,
    policy_changes: AtomicUsize,
    user_removals: AtomicUsize,
    /// The request id header of each call, in order ("" for none).
    request_ids: Mutex<Vec<String>>,
}

impl Fake {
    fn attr(&self) -> proto::AttrReply {
        proto::AttrReply {
            locked: false,
            parent: None,
            attr: Some(proto::Attr {
                ino: self.id,
                kind: proto::FileKind::File as i32,
                perm: 0o644,
                nlink: 1,
                ..Default::default()
            }),
        }
    }

    async fn maybe_hang(&self, what: &'static str) {
        let hang = self.hang.lock().unwrap().clone();
        if let Some(tx) = hang {
            let _ = tx.send(what);
            std::future::pending::<()>().await;
        }
    }
}

impl Fake {
    async fn lookup(&self, r: proto::EntryRequest) -> Result<proto::AttrReply, Status> {
        if r.name == "missing" {
            return Err(crate::rpc::status_with_errno(
                errno::ENOENT,
                "no such entry",
            ));
        }
        Ok(self.attr())
    }

    async fn create(&self, _: proto::CreateRequest) -> Result<proto::AttrReply, Status> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.maybe_hang("create").await;
        Ok(self.attr())
    }

    async fn unlink(&self, _: proto::EntryRequest) -> Result<proto::Empty, Status> {
        self.unlinks.fetch_add(1, Ordering::SeqCst);
        self.maybe_hang("unlink").await;
        Ok(proto::Empty {})
    }

    async fn set_policy(&self, _: proto::SetPolicyRequest) -> Result<proto::Empty, Status> {
        self.policy_changes.fetch_add(1, Ordering::SeqCst);
        self.maybe_hang("set_policy").await;
        Ok(proto::Empty {})
    }

    async fn remove_user(&self, _: proto::UserRequest) -> Result<proto::Empty, Status> {
        self.user_removals.fetch_add(1, Ordering::SeqCst);
        self.maybe_hang("remove_user").await;
        Ok(proto::Empty {})
    }

    async fn write_stripes(
        &self,
        mut stream: tonic::Streaming<proto::StripePiece>,
    ) -> Result<proto::AttrReply, Status> {
        while stream.message().await?.is_some() {}
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.maybe_hang("write").await;
        Ok(self.attr())
    }

    fn cluster_status(&self) -> proto::ClusterStatusReply {
        let nodes = self
            .members
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, a)| proto::NodeStatus {
                id: format!("node{}", i + 1),
                address: a.clone(),
                state: "online".into(),
                ..Default::default()
            })
            .collect();
        proto::ClusterStatusReply {
            nodes,
            master: "node1".into(),
            ..Default::default()
        }
    }
}

/// The fake as a raw gRPC service of the `wormfs.v1.WormFs` methods the tests use (the
/// others answer `Unimplemented`), so that methods added to the API need no change here.
#[derive(Clone)]
struct FakeService(Arc<Fake>);

impl tonic::server::NamedService for FakeService {
    const NAME: &'static str = "wormfs.v1.WormFs";
}

type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;
type BoxFut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

type Handler<Req, Resp> = fn(Arc<Fake>, Req) -> BoxFut<Result<Resp, Status>>;

/// A method (unary, or client-streaming with `Req` a stream) as a function of the
/// request.
struct Method<Req, Resp>(Arc<Fake>, Handler<Req, Resp>);

impl<Req, Resp: 'static> tonic::server::UnaryService<Req> for Method<Req, Resp> {
    type Response = Resp;
    type Future = BoxFut<Result<Response<Resp>, Status>>;
    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let f = (self.1)(self.0.clone(), request.into_inner());
        Box::pin(async move { f.await.map(Response::new) })
    }
}

impl<Req, Resp: 'static> tonic::server::ClientStreamingService<Req>
    for Method<tonic::Streaming<Req>, Resp>
{
    type Response = Resp;
    type Future = BoxFut<Result<Response<Resp>, Status>>;
    fn call(&mut self, request: Request<tonic::Streaming<Req>>) -> Self::Future {
        let f = (self.1)(self.0.clone(), request.into_inner());
        Box::pin(async move { f.await.map(Response::new) })
    }
}

fn grpc<Req, Resp>() -> tonic::server::Grpc<tonic_prost::ProstCodec<Resp, Req>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for FakeService {
    type Response = HttpResponse;
    type Error = std::convert::Infallible;
    type Future = BoxFut<Result<HttpResponse, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let fake = self.0.clone();
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let id = req
            .headers()
            .get(crate::rpc::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        fake.request_ids.lock().unwrap().push(id);
        Box::pin(async move {
            Ok(match method.as_str() {
                "Lookup" => {
                    let m: Handler<proto::EntryRequest, _> =
                        |f, r| Box::pin(async move { f.lookup(r).await });
                    grpc().unary(Method(fake, m), req).await
                }
                "GetAttr" => {
                    let m: Handler<proto::InoRequest, _> =
                        |f, _| Box::pin(async move { Ok(f.attr()) });
                    grpc().unary(Method(fake, m), req).await
                }
                "Create" => {
                    let m: Handler<proto::CreateRequest, _> =
                        |f, r| Box::pin(async move { f.create(r).await });
                    grpc().unary(Method(fake, m), req).await
                }
                "Unlink" => {
                    let m: Handler<proto::EntryRequest, _> =
                        |f, r| Box::pin(async move { f.unlink(r).await });
                    grpc().unary(Method(fake, m), req).await
                }
                "SetStoragePolicy" => {
                    let m: Handler<proto::SetPolicyRequest, _> =
                        |f, r| Box::pin(async move { f.set_policy(r).await });
                    grpc().unary(Method(fake, m), req).await
                }
                "RemoveUser" => {
                    let m: Handler<proto::UserRequest, _> =
                        |f, r| Box::pin(async move { f.remove_user(r).await });
                    grpc().unary(Method(fake, m), req).await
                }
                "WriteStripes" => {
                    let m: Handler<tonic::Streaming<proto::StripePiece>, _> =
                        |f, s| Box::pin(async move { f.write_stripes(s).await });
                    grpc().client_streaming(Method(fake, m), req).await
                }
                "GetClusterStatus" => {
                    let m: Handler<proto::Empty, _> =
                        |f, _| Box::pin(async move { Ok(f.cluster_status()) });
                    grpc().unary(Method(fake, m), req).await
                }
                _ => Status::unimplemented("not in the fake").into_http(),
            })
        })
    }
}

/// Copies bytes one way until either side closes; while `frozen`, copies nothing and keeps
/// both sides open (a stopped process: its kernel keeps the connections, nothing answers).
async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if from.readable().await.is_err() {
            return;
        }
        if frozen.load(Ordering::SeqCst) {
            continue;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut at = 0;
        while at < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[at..n]) {
                Ok(k) => at += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// A fake node reachable at `address` through a proxy the test can kill.
struct Node {
    address: String,
    fake: Arc<Fake>,
    proxy: JoinHandle<()>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

/// A node's metadata progress as the test sets it (see [`crate::rpc::fresh`]).
#[derive(Default)]
struct TestProgress {
    applied: std::sync::atomic::AtomicU64,
    behind: Mutex<Option<String>>,
}

impl crate::rpc::fresh::Progress for TestProgress {
    fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    fn behind(&self) -> Option<String> {
        self.behind.lock().unwrap().clone()
    }
}

impl Node {
    async fn start(id: u64) -> Node {
        Node::start_with(id, None).await
    }

    /// A fake node whose server checks freshness against `progress`.
    async fn start_with(id: u64, progress: Option<Arc<TestProgress>>) -> Node {
        let fake = Arc::new(Fake {
            id,
            ..Default::default()
        });
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let svc = FakeService(fake.clone());
        let acceptor = Arc::new(crate::rpc::tls::PskAcceptor::new(Arc::new(TestKeys)).unwrap());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .layer(tower::util::option_layer(progress.map(|p| {
                    crate::rpc::fresh::FreshLayer::new(p as Arc<dyn crate::rpc::fresh::Progress>)
                })))
                .add_service(svc)
                .serve_with_incoming(crate::rpc::tls::incoming(backend, acceptor))
                .await;
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = front.local_addr().unwrap().to_string();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let links2 = links.clone();
        let frozen: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let frozen2 = frozen.clone();
        let proxy = tokio::spawn(async move {
            while let Ok((client, _)) = front.accept().await {
                let Ok(server) = TcpStream::connect(backend_addr).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut l = links2.lock().unwrap();
                l.push(tokio::spawn(pump(cr, sw, frozen2.clone())));
                l.push(tokio::spawn(pump(sr, cw, frozen2.clone())));
            }
        });
        Node {
            address,
            fake,
            proxy,
            links,
            frozen,
        }
    }

    /// Makes the node take the calls that can hang (create, unlink, a policy change, a
    /// stripe write) and never answer them, starts `call` on a clone of `client`, and
    /// returns it once it has reached the node as `what`.
    async fn hang_in<T, F, Fut>(&self, client: &Client, what: &str, call: F) -> JoinHandle<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        *self.fake.hang.lock().unwrap() = Some(tx);
        let call = tokio::spawn(call(client.clone()));
        assert_eq!(rx.recv().await, Some(what));
        call
    }

    /// The node freezes (SIGSTOP): connections stay open and new ones are taken, and
    /// nothing is answered, not even HTTP/2 pings.
    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// The node dies: its port refuses connections and open ones are cut.
    async fn kill(&self) {
        self.proxy.abort();
        self.cut_links().await;
    }

    /// The open connections to the node are cut; new ones are taken.
    async fn cut_links(&self) {
        for l in self.links.lock().unwrap().drain(..) {
            l.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one user fake nodes know.
struct TestKeys;

const TEST_KEY: [u8; 32] = [7; 32];

impl crate::rpc::tls::KeyLookup for TestKeys {
    fn key_of(&self, name: &str) -> Option<[u8; 32]> {
        (name == "tester").then_some(TEST_KEY)
    }
}

fn test_identity(key: [u8; 32]) -> Option<Arc<super::Identity>> {
    Some(Arc::new(super::Identity {
        user: "tester".into(),
        key,
        nodes: Vec::new(),
    }))
}

/// Two fake nodes that list each other, and options caching in `dir`.
async fn cluster(dir: &std::path::Path) -> (Node, Node, ConnectOptions) {
    let a = Node::start(1).await;
    let b = Node::start(2).await;
    let members = vec![a.address.clone(), b.address.clone()];
    *a.fake.members.lock().unwrap() = members.clone();
    *b.fake.members.lock().unwrap() = members;
    let opts = ConnectOptions {
        cache: Some(dir.join("nodes.json")),
        connect_timeout: Duration::from_secs(2),
        identity: test_identity(TEST_KEY),
    };
    (a, b, opts)
}

fn create_req() -> proto::CreateRequest {
    proto::CreateRequest {
        parent: 1,
        name: "f".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn connecting_learns_and_caches_the_node_list() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts.clone())
        .await
        .unwrap();
    assert_eq!(client.nodes(), vec![a.address.clone(), b.address.clone()]);
    assert_eq!(client.address(), a.address);
    let cached = nodes::read_cache(opts.cache.as_ref().unwrap()).unwrap();
    assert_eq!(cached, Some(vec![a.address.clone(), b.address.clone()]));
}

#[tokio::test]
async fn a_lookup_moves_to_the_next_node_when_the_first_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    assert_eq!(
        client.lookup(FileId::ROOT, "x").await.unwrap().ino,
        FileId(1)
    );
    // A domain error is the node's answer: no failover.
    let e = client.lookup(FileId::ROOT, "missing").await.unwrap_err();
    assert_eq!(e.errno, errno::ENOENT);
    assert_eq!(client.current_address(), a.address);

    a.kill().await;
    let attr = client.lookup(FileId::ROOT, "x").await.unwrap();
    assert_eq!(attr.ino, FileId(2), "answered by the second node");
    assert_eq!(client.current_address(), b.address);
    assert_eq!(client.nodes()[0], b.address);
    // Clones share the move.
    assert_eq!(
        client.clone().getattr(FileId(5)).await.unwrap().ino,
        FileId(2)
    );

    b.kill().await;
    let e = client.lookup(FileId::ROOT, "x").await.unwrap_err();
    assert_eq!(e.errno, errno::EIO);
    assert!(e.message.contains("no node of the cluster answers"), "{e}");
}

#[tokio::test]
async fn a_create_cut_off_mid_call_is_repeated_on_the_next_node_with_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let call = a
        .hang_in(&client, "create", |client| async move {
            client.create(create_req()).await
        })
        .await;
    // The create reached the node; the node dies before answering.
    a.kill().await;
    let attr = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the broken call returns")
        .unwrap()
        .expect("the create is repeated on the next node");
    assert_eq!(attr.ino, FileId(2), "answered by the second node");
    assert_eq!(b.fake.creates.load(Ordering::SeqCst), 1);
    // with the same request id, which the nodes apply once
    let first = a.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    let repeat = b.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    assert!(
        first.len() == 32 && first.bytes().all(|c| c.is_ascii_hexdigit()),
        "{first:?}"
    );
    assert_eq!(first, repeat);
    // a new create has a new id
    client.create(create_req()).await.unwrap();
    let next = b.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    assert_ne!(next, first);
}

/// A change without a request id (removing a user) cut off mid-call may or may not have
/// been made: `EIO` saying so, never repeated elsewhere.
#[tokio::test]
async fn a_change_without_a_request_id_cut_off_mid_call_is_eio_and_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let call = a
        .hang_in(&client, "remove_user", |client| async move {
            client.remove_user("alice").await
        })
        .await;
    // The call reached the node; the node dies before answering.
    a.kill().await;
    let e = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the broken call returns")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.errno, errno::EIO);
    assert!(e.message.contains("could not be confirmed"), "{e}");
    assert_eq!(
        b.fake.user_removals.load(Ordering::SeqCst),
        0,
        "not repeated"
    );
    // Later calls use the next node.
    assert_eq!(client.current_address(), b.address);
    client.remove_user("alice").await.unwrap();
    assert_eq!(b.fake.user_removals.load(Ordering::SeqCst), 1);
}

/// A directory's policy change carries a request id: cut off mid-call, it is repeated on
/// the next node under the same id, so the log applies it once.
#[tokio::test]
async fn a_policy_change_cut_off_mid_call_is_repeated_with_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let call = a
        .hang_in(&client, "set_policy", |client| async move {
            client.set_policy("/media", Some("archive")).await
        })
        .await;
    a.kill().await;
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the broken call returns")
        .unwrap()
        .expect("the policy change is repeated on the next node");
    assert_eq!(b.fake.policy_changes.load(Ordering::SeqCst), 1);
    let first = a.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    let repeat = b.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    assert_eq!(first.len(), 32, "{first:?}");
    assert_eq!(first, repeat);
}

/// An unlink carries a request id as a create does: cut off mid-call, it is repeated on the
/// next node under the same id (the node answers a repeat of an applied id as the first).
#[tokio::test]
async fn an_unlink_cut_off_mid_call_is_repeated_on_the_next_node_with_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let call = a
        .hang_in(&client, "unlink", |client| async move {
            client.unlink(FileId::ROOT, "x").await
        })
        .await;
    a.kill().await;
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the broken call returns")
        .unwrap()
        .expect("the unlink is repeated on the next node");
    assert_eq!(b.fake.unlinks.load(Ordering::SeqCst), 1);
    let first = a.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    let repeat = b.fake.request_ids.lock().unwrap().last().cloned().unwrap();
    assert_eq!(first.len(), 32, "{first:?}");
    assert_eq!(first, repeat);
}

#[tokio::test]
async fn a_create_refused_before_it_was_sent_is_sent_to_the_next_node() {
    // The node is dead before the call: its connection is refused, so the request never
    // left the client and sending it to the next node is safe.
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    a.kill().await;
    // Let the client's connection see the close, so the call reconnects (and is refused)
    // instead of being written into the dead connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attr = client.create(create_req()).await.unwrap();
    assert_eq!(attr.ino, FileId(2));
    assert_eq!(b.fake.creates.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stripe_write_cut_off_mid_call_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let data = prost::bytes::Bytes::from(vec![7u8; 3 * PIECE_SIZE + 5]);
    let call = a
        .hang_in(&client, "write", |client| async move {
            client.write_stripes(vec![(FileId(9), 0, data)]).await
        })
        .await;
    a.kill().await;
    let attr = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the write returns")
        .unwrap()
        .unwrap();
    assert_eq!(attr.ino, FileId(2));
    assert_eq!(b.fake.writes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_dead_first_address_falls_back_to_the_cached_nodes_of_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    drop(
        Client::connect_with(std::slice::from_ref(&a.address), opts.clone())
            .await
            .unwrap(),
    );
    a.kill().await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts.clone())
        .await
        .unwrap();
    assert_eq!(client.current_address(), b.address);
    assert_eq!(
        client.lookup(FileId::ROOT, "x").await.unwrap().ino,
        FileId(2)
    );
    // An address the cache does not know is another cluster: no hopping to ours.
    let stranger = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let e = Client::connect_with(std::slice::from_ref(&stranger), opts.clone())
        .await
        .unwrap_err();
    assert_eq!(e.errno, errno::EIO);
    assert!(e.message.contains(&stranger), "{e}");
    // connect_any skips addresses that do not answer.
    let client = Client::connect_with(&[stranger, b.address.clone()], opts)
        .await
        .unwrap();
    assert_eq!(client.current_address(), b.address);
}

#[tokio::test]
async fn a_wrong_key_or_no_identity_is_eacces_naming_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b, opts) = cluster(dir.path()).await;
    let wrong = ConnectOptions {
        identity: test_identity([8; 32]),
        cache: None,
        ..opts.clone()
    };
    let e = Client::connect_with(std::slice::from_ref(&a.address), wrong)
        .await
        .unwrap_err();
    assert_eq!(e.errno, errno::EACCES, "{e}");
    assert!(e.message.contains("`tester`"), "{e}");
    let none = ConnectOptions {
        identity: None,
        cache: None,
        ..opts
    };
    let e = Client::connect_with(std::slice::from_ref(&a.address), none)
        .await
        .unwrap_err();
    assert_eq!(e.errno, errno::EACCES, "{e}");
    assert!(e.message.contains("--identity"), "{e}");
}

#[tokio::test]
async fn a_bad_address_is_einval() {
    let e = Client::connect_with(&["not a url::".to_owned()], ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.errno, errno::EINVAL);
    let e = Client::connect_with(&[], ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.errno, errno::EINVAL);
}

/// Two fake nodes with the given progress, listing each other, and options caching in `dir`.
async fn fresh_cluster(
    dir: &std::path::Path,
) -> (
    Node,
    Node,
    Arc<TestProgress>,
    Arc<TestProgress>,
    ConnectOptions,
) {
    let (pa, pb) = (
        Arc::new(TestProgress::default()),
        Arc::new(TestProgress::default()),
    );
    let a = Node::start_with(1, Some(pa.clone())).await;
    let b = Node::start_with(2, Some(pb.clone())).await;
    let members = vec![a.address.clone(), b.address.clone()];
    *a.fake.members.lock().unwrap() = members.clone();
    *b.fake.members.lock().unwrap() = members;
    let opts = ConnectOptions {
        cache: Some(dir.join("nodes.json")),
        connect_timeout: Duration::from_secs(2),
        identity: test_identity(TEST_KEY),
    };
    (a, b, pa, pb, opts)
}

/// A client that has seen metadata index 10 on one node is not answered by a node that has
/// applied less: that node refuses, the client asks it again, and it answers once it has
/// caught up (here after 300 ms).
#[tokio::test]
async fn a_node_behind_what_the_client_has_seen_answers_only_once_it_has_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, pa, pb, opts) = fresh_cluster(dir.path()).await;
    pa.applied.store(10, Ordering::SeqCst);
    pb.applied.store(3, Ordering::SeqCst);
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    assert_eq!(
        client.lookup(FileId::ROOT, "x").await.unwrap().ino,
        FileId(1)
    );
    assert_eq!(
        client.shared.seen.get(),
        10,
        "the client keeps what a answered with"
    );
    a.kill().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let catch_up = tokio::spawn({
        let pb = pb.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pb.applied.store(12, Ordering::SeqCst);
        }
    });
    let started = std::time::Instant::now();
    client.unlink(FileId::ROOT, "x").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}, before b caught up",
        started.elapsed()
    );
    assert_eq!(
        b.fake.unlinks.load(Ordering::SeqCst),
        1,
        "run once, when b caught up"
    );
    assert_eq!(client.shared.seen.get(), 12);
    catch_up.await.unwrap();
}

/// A node that says it is behind its master is left for another node after the client's
/// patience, even for a change that is never repeated after an uncertain send: the refusal
/// says that nothing ran.
#[tokio::test]
async fn a_node_that_stays_behind_is_left_for_another_and_nothing_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, pa, _pb, opts) = fresh_cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    *pa.behind.lock().unwrap() = Some("a snapshot install keeps failing".into());
    let started = std::time::Instant::now();
    // a change without a request id: repeated elsewhere only because the refusal says
    // nothing of it ran
    client.set_policy("/media", Some("archive")).await.unwrap();
    assert!(started.elapsed() >= crate::rpc::fresh::BEHIND_PATIENCE);
    assert_eq!(
        a.fake.policy_changes.load(Ordering::SeqCst),
        0,
        "nothing ran on a"
    );
    assert_eq!(b.fake.policy_changes.load(Ordering::SeqCst), 1);
    assert_eq!(client.current_address(), b.address);
}

/// When one client of a family (a mount's connections) leaves a node, the others follow it
/// on their next call, without first asking the node it left. Here the node still takes
/// connections but never answers an unlink: a fork that asked it would wait for ever.
#[tokio::test]
async fn a_fork_follows_a_move_of_its_family_without_asking_the_node_left() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let fork = client.fork().await.unwrap();
    let call = a
        .hang_in(&client, "unlink", |client| async move {
            client.unlink(FileId::ROOT, "x").await
        })
        .await;
    // the client's connection breaks: it moves to b (a still takes connections)
    a.cut_links().await;
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the broken call returns")
        .unwrap()
        .unwrap();
    assert_eq!(client.current_address(), b.address);
    let on_a = a.fake.unlinks.load(Ordering::SeqCst);
    // the fork was on a; its next call goes to b at once
    tokio::time::timeout(Duration::from_secs(10), fork.unlink(FileId::ROOT, "y"))
        .await
        .expect("the fork asked the node its family left, which never answers")
        .unwrap();
    assert_eq!(fork.current_address(), b.address);
    assert_eq!(
        a.fake.unlinks.load(Ordering::SeqCst),
        on_a,
        "nothing more sent to a"
    );
    assert_eq!(b.fake.unlinks.load(Ordering::SeqCst), 2);
}

/// A node that freezes while a call waits on it (SIGSTOP: the connection stays open, nothing
/// answers) is given up within the keep-alive (a ping every 3 s, 5 s to answer), and the
/// call goes to the next node. With pings every 10 s and 20 s to answer, a mount waited up
/// to 30 s for each frozen node (tests/soak.sh: a patch waited 50 s).
#[tokio::test]
async fn a_node_that_freezes_mid_call_is_left_within_the_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, opts) = cluster(dir.path()).await;
    let client = Client::connect_with(std::slice::from_ref(&a.address), opts)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let call = a
        .hang_in(&client, "unlink", |client| async move {
            client.unlink(FileId::ROOT, "x").await
        })
        .await;
    a.freeze();
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the call still waits on the frozen node after 15 s")
        .unwrap()
        .expect("repeated on the next node");
    assert_eq!(client.current_address(), b.address);
    assert_eq!(b.fake.unlinks.load(Ordering::SeqCst), 1);
    eprintln!("left the frozen node after {:?}", started.elapsed());
}
