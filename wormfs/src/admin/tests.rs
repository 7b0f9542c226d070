//! The admin listener's routes over a node with a memory store and a real SQLite file,
//! called in process through the router (the same one the listener serves).

use super::{router, AdminState};
use crate::ids::{DiskId, FileId, NodeId};
use crate::meta::{LocalLog, MetaStore, MetadataLog, MetadataOp, Timestamp};
use crate::metrics::Metrics;
use crate::node::{CreateKind, NodeFs};
use crate::placement::SpreadPlacement;
use crate::policy::{PolicySet, StoragePolicy};
use crate::rpc::server::WormFsService;
use crate::store::{ChunkStore, MemoryChunkStore};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

const STRIPE: usize = 2 * 16384;

struct Node {
    fs: Arc<NodeFs>,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<(DiskId, u64)> = (0..3).map(|i| (DiskId(format!("d{i}")), 1 << 30)).collect();
    let store: Arc<dyn ChunkStore> = Arc::new(MemoryChunkStore::new(&disks));
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.sqlite")).unwrap());
    let log: Arc<dyn MetadataLog> = Arc::new(LocalLog::new(meta.clone()).unwrap());
    let fs = Arc::new(NodeFs::new(
        NodeId("n1".into()),
        store,
        log,
        meta,
        PolicySet::single(
            "t",
            StoragePolicy {
                k: 2,
                m: 1,
                stripe_size: STRIPE as u64,
            },
        ),
        Arc::new(SpreadPlacement),
    ));
    let state = AdminState {
        metrics: Metrics::new(),
        fs: fs.clone(),
        cluster: None,
        service: Arc::new(WormFsService::new(fs.clone(), "127.0.0.1:7070".into())),
    };
    Node {
        fs,
        app: router(state, true),
        _dir: dir,
    }
}

impl Node {
    async fn add_token(&self, name: &str) -> String {
        let token = crate::rpc::token::new_token().unwrap();
        self.fs
            .log()
            .submit(MetadataOp::PutToken {
                name: name.into(),
                hash: crate::rpc::token::token_hash(&token),
                created: Timestamp::now(),
            })
            .await
            .unwrap()
            .unwrap();
        token
    }

    /// `method path` with `token` and a JSON `body`: the status and the JSON answer.
    async fn ask(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            r = r.header("content-type", "application/json");
        }
        let req = r
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.ask(Method::GET, path, Some(token), None).await
    }
}

/// An error answer has the one shape, with the code the status implies.
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_a_token_that_is_known_and_not_revoked() {
    let n = node();
    let a = n.ask(Method::GET, "/api/v1/cluster", None, None).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(a.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("wormfs token create"));
    let forged = crate::rpc::token::new_token().unwrap();
    assert_error(
        &n.get("/api/v1/cluster", &forged).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let token = n.add_token("ops").await;
    let (status, cluster) = n.get("/api/v1/cluster", &token).await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    assert_eq!(cluster["master"], "n1");
    // the token's name is listed, never the token or its hash
    let (_, tokens) = n.get("/api/v1/tokens", &token).await;
    assert_eq!(tokens["tokens"][0]["name"], "ops");
    assert!(!tokens.to_string().contains(&token[4..]));
    n.fs.log()
        .submit(MetadataOp::RemoveToken("ops".into()))
        .await
        .unwrap()
        .unwrap();
    assert_error(
        &n.get("/api/v1/cluster", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // the probes need none
    let probe = n.ask(Method::GET, "/health", None, None).await;
    assert_eq!(probe.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_what_the_grpc_api_answers_and_names_bad_input() {
    let n = node();
    let token = n.add_token("ops").await;
    let a =
        n.fs.create(FileId::ROOT, "film.mkv", CreateKind::File, 0o644, 0, 0)
            .await
            .unwrap();
    n.fs.write_stripe(a.ino, 0, vec![9; STRIPE]).await.unwrap();

    let (s, nodes) = n.get("/api/v1/nodes", &token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(nodes[0]["id"], "n1");
    assert_eq!(nodes[0]["disks"].as_array().unwrap().len(), 3);
    let (_, p) = n.get("/api/v1/policies", &token).await;
    assert_eq!(p["default_policy"], "t");
    assert_eq!(p["policies"][0]["k"], 2);
    let (s, p) = n.get("/api/v1/policy?path=/film.mkv", &token).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!((p["k"].as_u64(), p["m"].as_u64()), (Some(2), Some(1)));
    let (s, layout) = n.get("/api/v1/files/layout?path=/film.mkv", &token).await;
    assert_eq!(s, StatusCode::OK, "{layout}");
    let chunks = layout["stripes"][0]["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(|c| c["state"] == "ok"), "{layout}");
    let (s, risk) = n.get("/api/v1/files/at-risk?max_margin=5", &token).await;
    assert_eq!(s, StatusCode::OK, "{risk}");
    assert_eq!(risk["stripes"], 1);
    let (s, what_if) = n
        .ask(
            Method::POST,
            "/api/v1/files/what-if",
            Some(&token),
            Some(r#"{"disks": ["d0", "d1"]}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{what_if}");
    assert_eq!(what_if["files_unreadable"], 1, "{what_if}");
    let (s, w) = n
        .ask(
            Method::POST,
            "/api/v1/workers/scrub",
            Some(&token),
            Some(r#"{"action": "pause"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let scrub = w["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "scrub")
        .unwrap();
    assert_eq!(scrub["paused"], true);
    let (s, users) = n.get("/api/v1/users", &token).await;
    assert_eq!(s, StatusCode::OK, "{users}");

    // bad input: named, with the error shape and a 4xx, never a 5xx
    assert_error(
        &n.get("/api/v1/files/layout?path=/nope", &token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &n.get("/api/v1/files/layout", &token).await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert_error(
        &n.get("/api/v1/files/at-risk?limit=lots", &token).await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/files/what-if",
            Some(&token),
            Some(r#"{"nodes": ["node9"]}"#),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/files/what-if",
            Some(&token),
            Some(r#"{"nodes": 5}"#),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/workers/scrub",
            Some(&token),
            Some(r#"{"action": "explode"}"#),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/workers/scrub",
            Some(&token),
            Some(r#"{"action": "pause", "colour": "red"}"#),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/disks",
            Some(&token),
            Some(r#"{"disk": "d9", "action": "drain"}"#),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/disks",
            Some(&token),
            Some("not json"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
}

/// The OpenAPI document is OpenAPI 3, describes the bearer scheme, and lists exactly the
/// routes the server has: every documented operation is routed (it asks for a token, where
/// an unknown route would be a 404), and no routed `/api/v1` path is undocumented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_the_server_has() {
    let n = node();
    let (s, doc) = n.ask(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{name}", "scrub").replace("{id}", "n1");
            let body = (m == Method::POST).then_some("{}");
            let a = n.ask(m.clone(), &concrete, None, body).await;
            assert_eq!(
                a.0,
                StatusCode::UNAUTHORIZED,
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    // every handler of api.rs, documented
    let source = include_str!("api.rs");
    let handlers = source.matches("#[utoipa::path(").count();
    assert_eq!(
        operations,
        handlers,
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // and a path nobody documented is not served
    let a = n.ask(Method::GET, "/api/v1/secret", Some("x"), None).await;
    assert_eq!(a.0, StatusCode::NOT_FOUND);
}

/// The OpenAPI document validates: an OpenAPI 3.1 parser of its own (the `oas3` crate)
/// reads it; every `$ref` names a schema the document has; every operation has a unique
/// `operationId`, a response, and a declared, required parameter for each `{name}` in its
/// path; and every parameter says where it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates() {
    let n = node();
    let (s, doc) = n.ask(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let spec = oas3::from_json(doc.to_string()).expect("an OpenAPI 3.1 parser reads it");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    assert!(!spec.info.title.is_empty() && !spec.info.version.is_empty());

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty(), "the API's bodies are described by schemas");
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("`{r}` is not a local schema reference"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "`{r}` names no schema in components"
        );
    }

    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no operationId"));
            assert!(ids.insert(id.to_owned()), "{at}: operationId `{id}` twice");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{at}: no responses"
            );
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                assert!(
                    matches!(
                        p["in"].as_str(),
                        Some("path" | "query" | "header" | "cookie")
                    ),
                    "{at}: parameter {p} says not where it goes"
                );
            }
            for t in &templated {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == *t && p["in"] == "path" && p["required"] == true),
                    "{at}: `{{{t}}}` is not a required path parameter"
                );
            }
        }
    }
}

/// The listener over HTTPS on a real socket: a client that trusts the node's own
/// certificate (checked by its fingerprint) gets the API; plain HTTP gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_https_with_the_nodes_own_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = node();
    let token = n.add_token("ops").await;
    let dir = tempfile::tempdir().unwrap();
    let tls = super::tls::load_or_create(dir.path(), None, &["127.0.0.1".to_owned()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(super::serve(listener, n.app.clone(), Some(tls.clone())));

    // trust exactly the certificate the node wrote, after checking its fingerprint
    let pem = std::fs::read(dir.path().join(super::tls::SELF_CERT_FILE)).unwrap();
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(super::tls::fingerprint(cert.as_ref()), tls.fingerprint);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = connector
        .connect(name, tcp)
        .await
        .expect("the TLS handshake");
    s.write_all(
        format!(
            "GET /api/v1/cluster HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"master\":\"n1\""), "{answer}");

    // plain HTTP to the HTTPS port: no HTTP answer
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        plain.read_to_end(&mut got),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&got)
    );
    server.abort();
}

/// Changes through the API: membership with its preview and confirmation, a directory's
/// policy, and users with their identity files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_go_through_the_api_with_previews_and_named_refusals() {
    let n = node();
    let token = n.add_token("ops").await;
    let t = Some(token.as_str());
    let a =
        n.fs.create(FileId::ROOT, "film.mkv", CreateKind::File, 0o644, 0, 0)
            .await
            .unwrap();
    n.fs.write_stripe(a.ino, 0, vec![9; STRIPE]).await.unwrap();

    // a node on its own has no membership to change: refused, saying why
    let add = n
        .ask(
            Method::POST,
            "/api/v1/nodes",
            t,
            Some(r#"{"addr": "127.0.0.1:7101"}"#),
        )
        .await;
    assert_error(&add, StatusCode::CONFLICT, "refused");
    assert!(add.1.to_string().contains("on its own"), "{}", add.1);
    // removal: previewed, refused without confirmation, with the cost in the message
    let (s, cost) = n.get("/api/v1/nodes/n1/removal", &token).await;
    assert_eq!(s, StatusCode::OK, "{cost}");
    assert_eq!(cost["files_unreadable"], 1, "{cost}");
    let unconfirmed = n.ask(Method::DELETE, "/api/v1/nodes/n1", t, None).await;
    assert_error(&unconfirmed, StatusCode::BAD_REQUEST, "invalid");
    assert!(
        unconfirmed.1.to_string().contains("1 files unreadable"),
        "{}",
        unconfirmed.1
    );
    assert_error(
        &n.ask(Method::DELETE, "/api/v1/nodes/n9?confirm=true", t, None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &n.ask(Method::DELETE, "/api/v1/nodes/n1?confirm=true", t, None)
            .await,
        StatusCode::CONFLICT,
        "refused",
    );

    // a directory's policy
    n.fs.create(FileId::ROOT, "media", CreateKind::Directory, 0o755, 0, 0)
        .await
        .unwrap();
    let set = n
        .ask(
            Method::PUT,
            "/api/v1/policy",
            t,
            Some(r#"{"path": "/media", "policy": "t"}"#),
        )
        .await;
    assert_eq!(set.0, StatusCode::NO_CONTENT, "{}", set.1);
    let (_, p) = n.get("/api/v1/policy?path=/media", &token).await;
    assert_eq!(p["name"], "t", "{p}");
    assert_error(
        &n.ask(
            Method::PUT,
            "/api/v1/policy",
            t,
            Some(r#"{"path": "/media", "policy": "gold"}"#),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );

    // users: the identity file comes back once; a second add is a conflict
    let (s, alice) = n
        .ask(
            Method::POST,
            "/api/v1/users",
            t,
            Some(r#"{"name": "alice", "uid": 1000, "gid": 1000}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{alice}");
    assert_eq!(alice["user"]["uid"], 1000);
    let text = alice["identity"].as_str().unwrap();
    assert!(
        text.contains("user = \"alice\"") && text.contains("key = "),
        "{text}"
    );
    assert_error(
        &n.ask(
            Method::POST,
            "/api/v1/users",
            t,
            Some(r#"{"name": "alice", "uid": 1000, "gid": 1000}"#),
        )
        .await,
        StatusCode::CONFLICT,
        "exists",
    );
    assert_error(
        &n.ask(Method::POST, "/api/v1/users", t, Some(r#"{"name": "a b"}"#))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid",
    );
    let (s, rotated) = n
        .ask(Method::POST, "/api/v1/users/alice/rotate", t, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["identity"], alice["identity"], "a new key");
    let gone = n.ask(Method::DELETE, "/api/v1/users/alice", t, None).await;
    assert_eq!(gone.0, StatusCode::NO_CONTENT, "{}", gone.1);
    assert_error(
        &n.ask(Method::DELETE, "/api/v1/users/alice", t, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
