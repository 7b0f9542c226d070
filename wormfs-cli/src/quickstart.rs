//! `wormfs quickstart`: a node over a few directories, mounted, in the foreground.

use crate::output::say;
use anyhow::Context;
use std::path::Path;

/// Creates `disks` disk directories and a config under `dir`, starts a node, mounts it at
/// `dir/mnt`, and waits for Ctrl-C or SIGTERM; then unmounts and stops the node.
pub fn run(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    disks: usize,
    listen: &str,
    allow_other: bool,
) -> anyhow::Result<()> {
    if disks == 0 {
        anyhow::bail!("`--disks` must be at least 1");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create `{}`", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolve `{}`", dir.display()))?;
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).with_context(|| format!("create `{}`", mnt.display()))?;
    let identity = admin_identity(&dir)?;
    let admin = admin_address(listen, 0)?;
    let mut config = format!(
        "node_id = \"node1\"\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\nadmin_tls = \"on\"\ndata_dir = \"meta\"\nadmin_identity = \"{}\"\n\n",
        identity.display()
    );
    for i in 0..disks {
        let d = dir.join(format!("disk{i}"));
        std::fs::create_dir_all(&d).with_context(|| format!("create `{}`", d.display()))?;
        config.push_str(&format!(
            "[[disks]]\nid = \"disk{i}\"\npath = \"disk{i}\"\n\n"
        ));
    }
    // The built-in default (general, 2+1) needs 3 disks; fewer get a policy that fits.
    let width = disks.min(3);
    if width < 3 {
        config.push_str(&format!(
            "[policies]\ndefault = \"small\"\n\n[policies.named.small]\nk = {}\nm = {}\nstripe_size = \"1MiB\"\n",
            width.saturating_sub(1).max(1),
            usize::from(width > 1)
        ));
    }
    let config_path = dir.join("node.toml");
    if !config_path.exists() {
        std::fs::write(&config_path, &config)
            .with_context(|| format!("write `{}`", config_path.display()))?;
    }
    let node_config = wormfs_node::config::NodeConfig::load(&config_path)?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let node = rt.spawn(wormfs_node::run(
        node_config,
        async {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = ready_tx.send(addr);
        },
    ));
    let addr = match ready_rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let why = rt
                .block_on(node)
                .map_err(anyhow::Error::from)
                .and_then(|r| r.err().map_or(Ok(()), Err));
            return Err(why
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the node did not start")));
        }
    };
    let addrs = vec![addr.to_string()];
    let client_config = write_client_config(&addrs, &identity);
    let wait_for_stop = stop_signals(rt)?;
    let mounted = mount_at(rt, &addr.to_string(), &identity, &mnt, allow_other)?;
    say!("WormFS is running:");
    say!(
        "  node    node1 at {addr}, {disks} disks under {}",
        dir.display()
    );
    say!("  config  {}", config_path.display());
    say!("  mount   {}", mnt.display());
    say_admin(&admin, &dir.join("meta"));
    print_client(client_config.as_deref(), &identity);
    print_ui(rt, &addr.to_string(), &identity, &dir, &admin);
    say!(
        "Try: cp -r ~/Pictures {0}/ ; wormfs status ; wormfs file info {0}/<file>",
        mnt.display()
    );
    say!("Stop with Ctrl-C (unmounts, then stops the node).");
    wait_for_stop(rt)?;
    say!("stopping: unmounting {}", mnt.display());
    let unmounted = mounted.unmount();
    let _ = stop_tx.send(());
    let stopped = rt.block_on(node).context("node task")?;
    unmounted?;
    stopped?;
    say!("stopped cleanly");
    Ok(())
}

/// How far above a node's gRPC port its admin HTTP listener is (node-to-node ports are
/// 30 above).
const ADMIN_OFFSET: u16 = 60;

/// The admin listener of the node whose gRPC address is `listen`, `i` nodes along: port 0
/// stays port 0.
fn admin_address(listen: &str, i: u16) -> anyhow::Result<std::net::SocketAddr> {
    let a: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("`--listen`: `{listen}` is not an address like 127.0.0.1:7070"))?;
    let port = match a.port() {
        0 => 0,
        p => p
            .checked_add(ADMIN_OFFSET + i)
            .context("`--listen` port too high for the admin listener")?,
    };
    Ok(std::net::SocketAddr::new(a.ip(), port))
}

/// Says where a node's admin listener is (HTTPS, with the node's own certificate, whose
/// SHA-256 fingerprint is in `data_dir`'s certificate file) and its probes.
fn say_admin(admin: &std::net::SocketAddr, data_dir: &Path) {
    if admin.port() == 0 {
        return;
    }
    let cert = data_dir.join(wormfs::admin::tls::SELF_CERT_FILE);
    let fingerprint = match wormfs::admin::tls::file_fingerprint(&cert) {
        Ok(f) => format!("certificate SHA-256 {f}"),
        Err(e) => format!("certificate not readable yet: {e}"),
    };
    say!("          admin https://{admin}/ ({fingerprint})");
    say!("          metrics https://{admin}/metrics, health https://{admin}/ready");
}

/// A node process started by the cluster quickstart.
struct NodeProcess {
    name: String,
    child: std::process::Child,
    addr: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `wormfs serve --config CONFIG` and waits for its "listening on" line.
fn spawn_node(name: &str, config: &Path, log: &Path) -> anyhow::Result<NodeProcess> {
    use std::io::BufRead;
    let exe = std::env::current_exe().context("find the wormfs executable")?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open `{}`", log.display()))?;
    // earlier runs' lines stay in the log; a failure shows only this start's
    let start = log_file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut child = std::process::Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| wormfs_node::DEFAULT_LOG.into()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let stdout = child.stdout.take().context("node stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.strip_prefix("wormfs-node listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{name} did not start; its log `{}` says:\n{}",
                log.display(),
                log_tail(log, start, 20)
            );
        }
    };
    Ok(NodeProcess {
        name: name.to_owned(),
        child,
        addr,
    })
}

/// The last `lines` lines `log` got after byte `start` (this run's, not earlier runs').
fn log_tail(log: &Path, start: u64, lines: usize) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let from = usize::try_from(start).unwrap_or(usize::MAX).min(text.len());
    let text = String::from_utf8_lossy(&text[from..]);
    let all: Vec<&str> = text.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!("({skipped} earlier lines left out)\n"));
    }
    out.push_str(&all[skipped..].join("\n"));
    out
}

/// `wormfs quickstart --nodes N`: N node processes on loopback ports, each with its own data
/// directory and disks, formed into a cluster; mounted at `dir/mnt` through the first node.
/// The default policy (general, 2+1) puts each stripe's three chunks on three nodes, so the
/// files survive the loss of any one node when there are three or more.
pub fn run_cluster(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    nodes: usize,
    disks_per_node: usize,
    listen: &str,
    allow_other: bool,
) -> anyhow::Result<()> {
    if nodes < 2 {
        anyhow::bail!("`--nodes` must be at least 2 for a cluster (leave it out for one node)");
    }
    if disks_per_node == 0 {
        anyhow::bail!("`--disks-per-node` must be at least 1");
    }
    let base: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("`--listen`: `{listen}` is not an address like 127.0.0.1:7070"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create `{}`", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolve `{}`", dir.display()))?;
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).with_context(|| format!("create `{}`", mnt.display()))?;
    let total_disks = nodes * disks_per_node;
    let port = |i: usize, offset: u16| -> anyhow::Result<u16> {
        base.port()
            .checked_add(offset + i as u16)
            .context("`--listen` port too high for this many nodes")
    };
    let identity = admin_identity(&dir)?;
    let mut procs = Vec::new();
    for i in 0..nodes {
        let name = format!("node{}", i + 1);
        let ndir = dir.join(&name);
        let mut config = format!(
            "node_id = \"{name}\"\nlisten = \"{}:{}\"\nadmin_listen = \"{}:{}\"\nadmin_tls = \"on\"\ndata_dir = \"meta\"\nadmin_identity = \"{}\"\n\n",
            base.ip(),
            port(i, 0)?,
            base.ip(),
            port(i, ADMIN_OFFSET)?,
            identity.display()
        );
        for d in 0..disks_per_node {
            let p = ndir.join(format!("disk{d}"));
            std::fs::create_dir_all(&p).with_context(|| format!("create `{}`", p.display()))?;
            config.push_str(&format!(
                "[[disks]]\nid = \"{name}-disk{d}\"\npath = \"disk{d}\"\n\n"
            ));
        }
        if total_disks < 3 || nodes < 3 {
            // general (2+1) wants three nodes; a smaller cluster mirrors (1+1)
            config.push_str(
                "[policies]\ndefault = \"mirror\"\n\n[policies.named.mirror]\nk = 1\nm = 1\nstripe_size = \"1MiB\"\n\n",
            );
        }
        config.push_str(&format!(
            "[cluster]\nlisten = \"{}:{}\"\nbootstrap = {}\n",
            base.ip(),
            port(i, 30)?,
            i == 0
        ));
        for j in (0..nodes).filter(|&j| j != i) {
            config.push_str(&format!(
                "\n[[cluster.peers]]\naddr = \"{}:{}\"\n",
                base.ip(),
                port(j, 30)?
            ));
        }
        let config_path = ndir.join("node.toml");
        if !config_path.exists() {
            std::fs::write(&config_path, &config)
                .with_context(|| format!("write `{}`", config_path.display()))?;
        }
        procs.push(spawn_node(&name, &config_path, &ndir.join("node.log"))?);
    }
    // wait for a master
    let first = procs[0].addr.clone();
    let opts = connect_options(&identity)?;
    let master = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let c = wormfs::rpc::client::Client::connect_with(
                std::slice::from_ref(&first),
                opts.clone(),
            )
            .await;
            if let Ok(c) = c {
                if let Ok(s) = c.cluster_status().await {
                    if !s.master.is_empty() {
                        return Ok(s.master);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "no master was elected within 60 s; see the node logs under {}",
                    dir.display()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })?;
    let addrs: Vec<String> = procs.iter().map(|p| p.addr.clone()).collect();
    let client_config = write_client_config(&addrs, &identity);
    let wait_for_stop = stop_signals(rt)?;
    let mounted = mount_at(rt, &first, &identity, &mnt, allow_other)?;
    say!("WormFS cluster is running ({nodes} nodes, master {master}):");
    for (i, p) in procs.iter().enumerate() {
        say!(
            "  {:<7} at {}, {disks_per_node} disks, data and log under {}",
            p.name,
            p.addr,
            dir.join(&p.name).display()
        );
        say_admin(
            &std::net::SocketAddr::new(base.ip(), port(i, ADMIN_OFFSET)?),
            &dir.join(&p.name).join("meta"),
        );
    }
    say!("  mount   {} (through node1)", mnt.display());
    print_client(client_config.as_deref(), &identity);
    print_ui(
        rt,
        &first,
        &identity,
        &dir,
        &std::net::SocketAddr::new(base.ip(), port(0, ADMIN_OFFSET)?),
    );
    say!(
        "Try: cp -r ~/Pictures {0}/ ; wormfs status ; wormfs file info {0}/<file>",
        mnt.display()
    );
    say!("Stop with Ctrl-C (unmounts, then stops every node).");
    wait_for_stop(rt)?;
    say!("stopping: unmounting {}", mnt.display());
    let unmounted = mounted.unmount();
    for p in &mut procs {
        // SAFETY: kill(2) with a pid we spawned.
        unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    }
    let mut clean = true;
    for p in &mut procs {
        match p.child.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("{} exited with {s}", p.name);
                clean = false;
            }
            Err(e) => {
                eprintln!("{}: {e}", p.name);
                clean = false;
            }
        }
    }
    unmounted?;
    if !clean {
        anyhow::bail!("a node did not stop cleanly; see its log");
    }
    say!("stopped cleanly");
    Ok(())
}

/// The first admin's identity file, `dir/admin.identity`: made once (a new random key),
/// named by every node's config, so whichever node is master first adds the same admin.
fn admin_identity(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    use wormfs::rpc::identity::{new_key, Identity, ADMIN_IDENTITY_FILE};
    let path = dir.join(ADMIN_IDENTITY_FILE);
    if !path.exists() {
        Identity {
            user: "admin".into(),
            key: new_key()?,
            nodes: Vec::new(),
        }
        .write(&path)?;
    }
    Identity::read(&path)?;
    Ok(path)
}

/// The options to connect with the identity at `path`.
fn connect_options(path: &Path) -> anyhow::Result<wormfs::rpc::client::ConnectOptions> {
    let identity = wormfs::rpc::identity::Identity::read(path)?;
    Ok(wormfs::rpc::client::ConnectOptions::with_identity(identity))
}

/// Makes the quickstart's admin token for the web UI and the REST API, once, in
/// `DIR/admin.token` (mode 0600), and says where the UI is. A failure is a warning: the
/// file system runs without it.
fn print_ui(
    rt: &tokio::runtime::Runtime,
    node: &str,
    identity: &Path,
    dir: &Path,
    admin: &std::net::SocketAddr,
) {
    if admin.port() == 0 {
        return;
    }
    let path = dir.join("admin.token");
    if !path.exists() {
        let made = rt.block_on(async {
            let opts = connect_options(identity)?;
            let client =
                wormfs::rpc::client::Client::connect_with(&[node.to_owned()], opts).await?;
            let name = format!(
                "quickstart-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            );
            let token = client.create_token(&name).await?;
            wormfs::rpc::token::write_token_file(&path, &token)?;
            anyhow::Ok(())
        });
        if let Err(e) = made {
            eprintln!("warning: no admin token for the web UI: {e:#}");
            return;
        }
    }
    say!(
        "  web UI  https://{admin}/ (log in with the token in {}; REST API under /api/v1; \
         the browser warns of the node's self-signed certificate: compare its SHA-256 \
         fingerprint with the one above)",
        path.display()
    );
}

/// Tells where the client config and the admin identity are.
fn print_client(config: Option<&Path>, identity: &Path) {
    say!(
        "  admin   {} (the admin identity: a secret key; keep it private)",
        identity.display()
    );
    if let Some(path) = config {
        say!(
            "  client  {} lists the nodes and the identity for `wormfs` and mounts",
            path.display()
        );
    }
}

/// Writes the client config file listing `nodes` and naming `identity`, so `wormfs` finds
/// the cluster without `--node` or `--identity`, and records the nodes in the identity file
/// too. Returns the config's path, or `None` (with a warning) when it cannot be written.
fn write_client_config(nodes: &[String], identity: &Path) -> Option<std::path::PathBuf> {
    use wormfs::rpc::client_config;
    match wormfs::rpc::identity::Identity::read(identity) {
        Ok(mut id) => {
            id.nodes = nodes.to_vec();
            if let Err(e) = id.write(identity) {
                eprintln!("warning: {e}");
            }
        }
        Err(e) => eprintln!("warning: {e}"),
    }
    let Some(path) = client_config::path() else {
        eprintln!("warning: no HOME or XDG_CONFIG_HOME: the client config file was not written");
        return None;
    };
    match client_config::write(&path, nodes, Some(identity)) {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("warning: cannot write {}: {e}", path.display());
            None
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers (before anything says the file system is up,
/// so a signal right after never kills the process uncleanly), and returns a waiter.
fn stop_signals(
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<impl FnOnce(&tokio::runtime::Runtime) -> anyhow::Result<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = rt.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    Ok(move |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        });
        Ok(())
    })
}

/// Mounts the file system served at `addr` on `mnt`, inside this process.
fn mount_at(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    identity: &Path,
    mnt: &Path,
    allow_other: bool,
) -> anyhow::Result<wormfs_fuse::Mounted> {
    let client = rt.block_on(wormfs::rpc::client::Client::connect_with(
        &[addr.to_owned()],
        connect_options(identity)?,
    ))?;
    wormfs_fuse::mount(
        client,
        rt.handle().clone(),
        mnt,
        &wormfs_fuse::MountOptions {
            allow_other,
            ..Default::default()
        },
    )
}
