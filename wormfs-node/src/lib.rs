//! The WormFS storage node: reads its config, opens its disks and metadata, and serves the
//! gRPC API until told to stop. `main` is a thin wrapper; tests and `wormfs quickstart` call
//! [`run`] too.

pub mod config;

use anyhow::Context;
use config::NodeConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use wormfs::cluster::{Cluster, ClusterStore};
use wormfs::heal::{ClusterLiveness, HealContext, HealService, SoloNode};
use wormfs::locks::{LockAuthority, LockService, SoloAuthority};
use wormfs::meta::{
    DiskInfo, LocalLog, MetaStore, MetadataLog, MetadataOp, NodeInfo, Refusal, UserRecord,
};
use wormfs::node::NodeFs;
use wormfs::placement::SpreadPlacement;
use wormfs::rpc::identity::Identity;
use wormfs::rpc::server::WormFsService;
use wormfs::rpc::session::Users;
use wormfs::rpc::tls::PskAcceptor;
use wormfs::store::{ChunkStore, DirLock, DiskChunkStore};

/// The chunk store, the metadata log and the cluster (if any) a node serves with.
type Parts = (
    Arc<dyn ChunkStore>,
    Arc<dyn MetadataLog>,
    Option<Arc<Cluster>>,
);

/// The metadata database's file name in the data directory.
pub const META_FILE: &str = "meta.sqlite";

/// Starts the node, calls `ready` with the bound address once it accepts requests, and
/// serves until `shutdown` completes. Then it stops taking requests, lets in-flight ones
/// (writes included) finish, and closes the metadata database.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data_dir `{}`", config.data_dir.display()))?;
    make_private(&config.data_dir)?;
    // One node per data directory and per disk: held until the node stops.
    let _data_lock = DirLock::acquire(&config.data_dir, "data directory")?;
    if config.cluster.is_none() {
        refuse_lost_metadata(&config)?;
    }
    let meta =
        Arc::new(MetaStore::open(&config.data_dir.join(META_FILE)).context("open metadata")?);
    let disks = open_disks(&config, &meta)?;
    for (disk, why) in disks.failed() {
        tracing::error!(%disk, "disk failed: {why}");
    }
    let failed: Vec<_> = disks.failed().into_iter().map(|(d, _)| d).collect();
    let backup_disks: Vec<std::path::PathBuf> = config
        .disks
        .iter()
        .filter(|(id, _)| !failed.contains(id))
        .map(|(_, p)| p.clone())
        .collect();
    let metrics = wormfs::metrics::Metrics::new();
    let local: Arc<dyn ChunkStore> = Arc::new(wormfs::metrics::MeteredStore::new(
        Arc::new(disks),
        metrics.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "listen on {} (is another node running there?)",
                config.listen
            )
        })?;
    let addr = listener.local_addr().context("read the bound address")?;
    let admin_listener = match &config.admin_listen {
        None => None,
        Some(a) => match tokio::net::TcpListener::bind(a.addr).await {
            Ok(l) => Some((l, a.clone())),
            Err(e) if !a.required => {
                tracing::warn!(
                    "no admin listener (/metrics, /health, /ready): the default address {} is \
                     taken ({e}); set `admin_listen` to another address, or `off`",
                    a.addr
                );
                None
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "listen on {} for `admin_listen` (is another node running there?)",
                        a.addr
                    )
                })
            }
        },
    };

    let (store, log, cluster): Parts = match &config.cluster {
        None => {
            let log = Arc::new(LocalLog::new(meta.clone()).context("open metadata log")?);
            record_self(&config, &addr, local.as_ref(), log.as_ref()).await?;
            ensure_admin(&config, &addr, log.as_ref(), &meta).await?;
            (local.clone(), log, None)
        }
        Some(settings) => {
            let cluster = Cluster::start(
                config.node_id.clone(),
                addr.to_string(),
                &config.data_dir,
                meta.clone(),
                local.clone(),
                settings.clone(),
            )
            .await
            .context("join the cluster")?;
            if let Some(p2p) = &cluster.p2p {
                tracing::info!(
                    node = %config.node_id,
                    p2p = %p2p.listen_addr(),
                    peer_id = %p2p.peer_id(),
                    "node-to-node listener up"
                );
            }
            let store = Arc::new(
                ClusterStore::new(
                    config.node_id.clone(),
                    local.clone(),
                    cluster.transport.clone(),
                    cluster.heartbeats.clone(),
                    meta.clone(),
                )
                .with_membership(cluster.raft.clone()),
            );
            let log: Arc<dyn MetadataLog> = Arc::new(cluster.log());
            // The node and its disks go into the metadata once a master takes them; so does
            // the first admin, when the cluster has no user yet.
            let (cfg, l, lg, m) = (config.clone(), local.clone(), log.clone(), meta.clone());
            tokio::spawn(async move {
                loop {
                    let done = match record_self(&cfg, &addr, l.as_ref(), lg.as_ref()).await {
                        Ok(()) => ensure_admin(&cfg, &addr, lg.as_ref(), &m).await,
                        Err(e) => Err(e),
                    };
                    match done {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::info!("cannot record this node in the metadata yet: {e:#}");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            });
            (store, log, Some(Arc::new(cluster)))
        }
    };

    let liveness: Arc<dyn ClusterLiveness> = match &cluster {
        Some(c) => c.clone(),
        None => Arc::new(SoloNode(config.node_id.clone())),
    };
    let placement = Arc::new(SpreadPlacement);
    let authority: Arc<dyn LockAuthority> = match &cluster {
        Some(c) => c.lock_authority(),
        None => Arc::new(SoloAuthority),
    };
    let locks = Arc::new(LockService::new(
        config.locks.lease,
        config.locks.read_locks,
        authority,
        log.clone(),
        meta.clone(),
    ));
    // Scrub and repair run on the master (a node alone is its own master).
    let heal = HealService::start(HealContext {
        node: config.node_id.clone(),
        store: store.clone(),
        log: log.clone(),
        meta: meta.clone(),
        placement: placement.clone(),
        liveness: liveness.clone(),
        settings: config.heal.clone(),
        local_disks: config
            .disks
            .iter()
            .filter(|(id, _)| !failed.contains(id))
            .cloned()
            .collect(),
        open_files: Some(locks.clone()),
    });
    let backups = config.heal.meta_backup_every.map(|every| {
        let (meta, disks) = (meta.clone(), backup_disks.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                back_up_now(&meta, &disks).await;
            }
        })
    });
    let fs = Arc::new(
        NodeFs::new(
            config.node_id.clone(),
            store,
            log,
            meta,
            config.policies.clone(),
            placement,
        )
        .with_liveness(liveness),
    );
    let users = Arc::new(Users::new(fs.meta().clone()));
    let admin_tls = match &admin_listener {
        Some((l, a)) if a.tls => {
            let bound = l
                .local_addr()
                .context("read the admin listener's address")?;
            let names = vec![bound.ip().to_string(), "localhost".to_owned()];
            let given = a.cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            Some(
                wormfs::admin::tls::load_or_create(&config.data_dir, given, &names)
                    .map_err(anyhow::Error::msg)
                    .context("set up HTTPS for `admin_listen`")?,
            )
        }
        _ => None,
    };
    // where the admin listener is, as `wormfs status` shows it (heartbeats carry it)
    let admin_endpoint = match &admin_listener {
        Some((l, _)) => {
            let scheme = if admin_tls.is_some() { "https" } else { "http" };
            let bound = l
                .local_addr()
                .context("read the admin listener's address")?;
            let endpoint = wormfs::rpc::server::AdminEndpoint {
                url: format!("{scheme}://{}/", announced(bound, addr)),
                fingerprint: admin_tls
                    .as_ref()
                    .map_or(String::new(), |t| t.fingerprint.clone()),
            };
            tracing::info!(
                url = %endpoint.url,
                fingerprint = %endpoint.fingerprint,
                "admin listener up: the web UI, the REST API, /metrics, /health, /ready"
            );
            endpoint
        }
        None => wormfs::rpc::server::AdminEndpoint::default(),
    };
    if let Some(c) = &cluster {
        c.heartbeats.set_own_admin(admin_endpoint.clone());
    }
    let mut service = WormFsService::new(fs.clone(), addr.to_string())
        .with_locks(locks.clone())
        .with_metrics(metrics.clone())
        .with_admin(admin_endpoint);
    if let Some(c) = &cluster {
        c.serve_locks(locks);
        service = service.with_cluster(c.clone());
    }
    // the REST API answers through the same service as gRPC
    let admin = admin_listener.map(|(l, _)| {
        let state = wormfs::admin::AdminState {
            metrics: metrics.clone(),
            fs: fs.clone(),
            cluster: cluster
                .clone()
                .map(|c| c as Arc<dyn wormfs::rpc::server::ClusterInfo>),
            service: Arc::new(service.clone()),
        };
        // bearer tokens never cross a network in the clear: the API over HTTPS, or on
        // loopback
        let api = admin_tls.is_some() || l.local_addr().is_ok_and(|a| a.ip().is_loopback());
        if !api {
            tracing::warn!(
                "the admin listener serves plain HTTP on a network address (`admin_tls = \"off\"`): \
                 it serves /metrics, /health and /ready there, not the REST API"
            );
        }
        tokio::spawn(wormfs::admin::serve(
            l,
            wormfs::admin::router(state, api),
            admin_tls.clone(),
        ))
    });
    let service = service.into_server(users.clone());
    // A node whose Raft stopped by itself stops too (drained, as on SIGTERM) and exits with
    // an error, so that a supervisor restarts it, instead of going on without a metadata log.
    let raft_failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let shutdown = {
        let cluster = cluster.clone();
        let raft_failure = raft_failure.clone();
        async move {
            let Some(cluster) = cluster else {
                return shutdown.await;
            };
            tokio::select! {
                () = shutdown => {}
                why = cluster.raft_stopped() => {
                    tracing::error!(
                        "the metadata log (Raft) stopped: {why}; stopping this node so it can \
                         be restarted"
                    );
                    *raft_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            }
        }
    };
    // Clients connect with TLS 1.3 and their user's pre-shared key, nothing else.
    let acceptor = Arc::new(PskAcceptor::new(users).context("set up TLS")?);
    tracing::info!(node = %config.node_id, %addr, disks = config.disks.len(), "node serving");
    ready(addr);
    tonic::transport::Server::builder()
        // Whole stripes travel in 1 MiB pieces: HTTP/2's 64 KiB default windows would make
        // every piece wait for window updates.
        .initial_stream_window_size(Some(wormfs::rpc::WINDOW_SIZE))
        .initial_connection_window_size(Some(4 * wormfs::rpc::WINDOW_SIZE))
        .max_frame_size(Some(wormfs::rpc::MAX_FRAME_SIZE))
        // In a cluster, a node behind its master or behind what the client has seen does
        // not answer from its old metadata (see wormfs::rpc::fresh).
        .layer(wormfs::metrics::GrpcMetricsLayer::new(metrics.clone()))
        .layer(tower::util::option_layer(cluster.clone().map(|c| {
            wormfs::rpc::fresh::FreshLayer::new(c as Arc<dyn wormfs::rpc::fresh::Progress>)
        })))
        .add_service(service)
        .serve_with_incoming_shutdown(wormfs::rpc::tls::incoming(listener, acceptor), shutdown)
        .await
        .context("serve gRPC")?;
    if let Some(a) = admin {
        a.abort();
    }
    heal.shutdown().await;
    if let Some(b) = backups {
        b.abort();
    }
    back_up_now(fs.meta(), &backup_disks).await;
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    if let Some(why) = raft_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        anyhow::bail!(
            "the metadata log (Raft) stopped: {why}; the node stopped. Restart it: it catches \
             up from the other nodes (see docs/RELIABILITY.md)"
        );
    }
    tracing::info!("node stopped: requests drained, metadata closed");
    Ok(())
}

/// The address others reach the admin listener at: `bound`, with an unspecified IP
/// (`0.0.0.0`, `[::]`) replaced by the gRPC listener's, when that one is specific.
fn announced(bound: SocketAddr, grpc: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() && !grpc.ip().is_unspecified() {
        SocketAddr::new(grpc.ip(), bound.port())
    } else {
        bound
    }
}

/// Opens the node's disks. A disk the metadata knows (recorded before, or holding chunks)
/// must have its marker: an empty directory in its place is a wiped disk or an empty mount
/// point, opened as failed and never claimed again.
fn open_disks(config: &NodeConfig, meta: &MetaStore) -> anyhow::Result<DiskChunkStore> {
    let known: Vec<_> = meta
        .disks()
        .context("read the disk records")?
        .into_iter()
        .map(|d| d.id)
        .collect();
    DiskChunkStore::open_expecting(&config.disks, &|id| {
        known.contains(id) || meta.has_chunks_on(id).unwrap_or(false)
    })
    .context("open disks")
}

/// Writes a copy of the metadata to the first disks (see [`wormfs::heal::back_up`]); a
/// failure is logged, the node goes on.
async fn back_up_now(meta: &Arc<MetaStore>, disks: &[std::path::PathBuf]) {
    let (meta, disks) = (meta.clone(), disks.to_vec());
    match tokio::task::spawn_blocking(move || wormfs::heal::back_up(&meta, &disks)).await {
        Ok(Ok(copies)) => tracing::info!(?copies, "metadata copied to the disks"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not copy the metadata to the disks"),
        Err(e) => tracing::warn!(error = %e, "metadata copy task failed"),
    }
}

/// A node alone whose metadata database is missing while its disks hold chunks lost its
/// metadata: starting would show an empty file system over those chunks. Refuses, saying
/// how to recover.
fn refuse_lost_metadata(config: &NodeConfig) -> anyhow::Result<()> {
    let db = config.data_dir.join(META_FILE);
    if db.exists() {
        return Ok(());
    }
    for (id, path) in &config.disks {
        if holds_chunk_folders(path) {
            anyhow::bail!(
                "the metadata database `{}` is missing, but disk `{id}` ({}) holds chunks: \
                 the metadata was lost or the data directory is wrong. Rebuild it from the \
                 disks with `wormfs recover --config CONFIG` (with the node stopped), or fix \
                 `data_dir`; to start empty instead, empty the disk directories first",
                db.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// True when a disk directory has a marker and a non-empty top folder (`1`..`1000`).
fn holds_chunk_folders(disk: &std::path::Path) -> bool {
    if !disk.join(wormfs::store::MARKER_FILE_NAME).exists() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(disk) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let top = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=1000).contains(&n));
        top && std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_some())
    })
}

/// `wormfs recover`: rebuilds a stopped node's metadata from its disks (chunk-folder
/// index files and chunk headers). Refused while the node runs (the data directory is
/// locked) or when the metadata database still holds files.
pub fn recover_offline(config: &NodeConfig) -> anyhow::Result<wormfs::heal::RecoverReport> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data_dir `{}`", config.data_dir.display()))?;
    let _lock = DirLock::acquire(&config.data_dir, "data directory")?;
    let db = config.data_dir.join(META_FILE);
    let meta = Arc::new(MetaStore::open(&db).context("open metadata")?);
    let (inodes, _) = meta.usage().context("count inodes")?;
    if inodes > 1 {
        anyhow::bail!(
            "the metadata database `{}` holds {} inodes; recover only rebuilds a lost one: \
             move it aside first if it is damaged",
            db.display(),
            inodes - 1
        );
    }
    let paths: Vec<std::path::PathBuf> = config.disks.iter().map(|(_, p)| p.clone()).collect();
    let backup = wormfs::heal::newest_backup(&paths);
    if let Some(b) = &backup {
        meta.replace_from(&b.path)
            .with_context(|| format!("restore the metadata copy {}", b.path.display()))?;
    }
    let store = open_disks(config, &meta)?;
    let log = LocalLog::new(meta.clone()).context("open metadata log")?;
    let ids: Vec<_> = config.disks.iter().map(|(id, _)| id.clone()).collect();
    let report =
        wormfs::heal::recover(&store, &ids, &config.node_id, &meta, &log, &config.policies)
            .map_err(|e| anyhow::anyhow!("recover: {e}"))?;
    Ok(wormfs::heal::RecoverReport { backup, ..report })
}

/// Makes the data directory private (mode 0700): it holds the users' keys and the node's
/// libp2p key.
fn make_private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("inspect data_dir `{}`", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make data_dir `{}` private (mode 0700)", dir.display()))?;
        tracing::info!(dir = %dir.display(), "data directory made private (mode 0700): it holds keys");
    }
    Ok(())
}

/// Adds the first admin when there is no user yet: from the `admin_identity` file when it
/// exists (every node of a new cluster may name the same one), else (a node alone, or a
/// cluster's bootstrap node) from a new key written there first. A node that made a key
/// another node's admin beat removes its file again.
async fn ensure_admin(
    config: &NodeConfig,
    addr: &SocketAddr,
    log: &dyn MetadataLog,
    meta: &MetaStore,
) -> anyhow::Result<()> {
    if !meta.users().context("read the users")?.is_empty() {
        return Ok(());
    }
    let path = &config.admin_identity;
    // in a cluster only the bootstrap node makes a key, so two nodes never race to write one
    let may_make = config.cluster.as_ref().is_none_or(|c| c.bootstrap);
    let (identity, made) = if path.exists() {
        (Identity::read(path)?, false)
    } else if !may_make {
        return Ok(());
    } else {
        let identity = Identity {
            user: "admin".into(),
            key: wormfs::rpc::identity::new_key()?,
            nodes: vec![addr.to_string()],
        };
        identity.write(path)?;
        (identity, true)
    };
    let op = MetadataOp::PutUser {
        user: UserRecord {
            name: identity.user.clone(),
            key: identity.key,
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            admin: true,
            host: false,
            created: wormfs::meta::Timestamp::now(),
        },
        replace: false,
    };
    match log.submit(op).await.context("add the first admin")? {
        Ok(_) => {
            tracing::info!(user = %identity.user, file = %path.display(), "first admin added: its identity file is the way in");
        }
        Err(Refusal::Exists(_)) if made => {
            let _ = std::fs::remove_file(path);
        }
        Err(Refusal::Exists(_)) => {}
        Err(r) => anyhow::bail!("add the first admin: {r}"),
    }
    Ok(())
}

/// Records this node and its disks in the metadata, so status and placement see them.
async fn record_self(
    config: &NodeConfig,
    addr: &SocketAddr,
    store: &dyn ChunkStore,
    log: &dyn MetadataLog,
) -> anyhow::Result<()> {
    let mut ops = vec![MetadataOp::UpsertNode(NodeInfo {
        id: config.node_id.clone(),
        address: addr.to_string(),
    })];
    for d in store.disks().context("inspect disks")? {
        ops.push(MetadataOp::UpsertDisk(DiskInfo {
            id: d.disk,
            node: config.node_id.clone(),
            path: d.path.map(|p| p.display().to_string()).unwrap_or_default(),
            total: d.total,
            free: d.free,
        }));
    }
    for op in ops {
        log.submit(op)
            .await
            .context("record node in metadata")?
            .map_err(|r| anyhow::anyhow!("record node: {r}"))?;
    }
    Ok(())
}

/// The log filter of a node when `RUST_LOG` is not set: `info`, and openraft's warnings,
/// but not its replication complaints, which repeat several lines a second for as long as a
/// node is down (the node logs that itself, once: "node N is offline").
pub const DEFAULT_LOG: &str = "info,openraft=warn,openraft::replication=off,\
    openraft::engine::handler::replication_handler=error";

/// Runs a node from a config file in the foreground until SIGTERM or SIGINT, printing
/// `wormfs-node listening on ADDR` on stdout once it serves. The body of `wormfs-node` and of
/// `wormfs serve`.
pub fn serve_foreground(config_path: &std::path::Path) -> std::process::ExitCode {
    use std::process::ExitCode;
    let config = match NodeConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wormfs-node: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wormfs-node: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = {
        let _in_runtime = runtime.enter();
        shutdown_signal()
    };
    let result = runtime.block_on(run(config, shutdown, |addr| {
        use std::io::Write;
        println!("wormfs-node listening on {addr}");
        let _ = std::io::stdout().flush();
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormfs-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called (inside
/// a runtime), not when the future is first polled: a signal that arrives after the node
/// said it listens stops it cleanly instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}
