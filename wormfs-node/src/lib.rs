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
use wormfs::meta::{DiskInfo, LocalLog, MetaStore, MetadataLog, MetadataOp, NodeInfo};
use wormfs::node::NodeFs;
use wormfs::placement::SpreadPlacement;
use wormfs::rpc::server::WormFsService;
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
    let local: Arc<dyn ChunkStore> = Arc::new(disks);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "listen on {} (is another node running there?)",
                config.listen
            )
        })?;
    let addr = listener.local_addr().context("read the bound address")?;

    let (store, log, cluster): Parts = match &config.cluster {
        None => {
            let log = Arc::new(LocalLog::new(meta.clone()).context("open metadata log")?);
            record_self(&config, &addr, local.as_ref(), log.as_ref()).await?;
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
            tracing::info!(
                node = %config.node_id,
                p2p = %cluster.transport.listen_addr(),
                peer_id = %cluster.transport.peer_id(),
                "node-to-node listener up"
            );
            let store = Arc::new(
                ClusterStore::new(
                    config.node_id.clone(),
                    local.clone(),
                    Arc::new(cluster.transport.clone()),
                    cluster.heartbeats.clone(),
                    meta.clone(),
                )
                .with_membership(cluster.raft.clone()),
            );
            let log: Arc<dyn MetadataLog> = Arc::new(cluster.log());
            // The node and its disks go into the metadata once a master takes them.
            let (cfg, l, lg) = (config.clone(), local.clone(), log.clone());
            tokio::spawn(async move {
                loop {
                    match record_self(&cfg, &addr, l.as_ref(), lg.as_ref()).await {
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
    let mut service = WormFsService::new(fs.clone(), addr.to_string());
    if let Some(c) = &cluster {
        service = service.with_cluster(c.clone());
    }
    let service = service.into_server();
    tracing::info!(node = %config.node_id, %addr, disks = config.disks.len(), "node serving");
    ready(addr);
    tonic::transport::Server::builder()
        // Whole stripes travel in 1 MiB pieces: HTTP/2's 64 KiB default windows would make
        // every piece wait for window updates.
        .initial_stream_window_size(Some(wormfs::rpc::WINDOW_SIZE))
        .initial_connection_window_size(Some(4 * wormfs::rpc::WINDOW_SIZE))
        .max_frame_size(Some(wormfs::rpc::MAX_FRAME_SIZE))
        .add_service(service)
        // Small replies must not wait for Nagle's algorithm and the peer's delayed ACK.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("serve gRPC")?;
    heal.shutdown().await;
    if let Some(b) = backups {
        b.abort();
    }
    back_up_now(fs.meta(), &backup_disks).await;
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    tracing::info!("node stopped: requests drained, metadata closed");
    Ok(())
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
    let result = runtime.block_on(run(config, shutdown_signal(), |addr| {
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

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
