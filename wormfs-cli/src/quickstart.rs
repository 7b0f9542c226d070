//! `wormfs quickstart`: a node over a few directories, mounted, in the foreground.

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
    let mut config = format!("node_id = \"node1\"\nlisten = \"{listen}\"\ndata_dir = \"meta\"\n\n");
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
    let client = rt.block_on(wormfs::rpc::client::Client::connect(&addr.to_string()))?;
    let mounted = wormfs_fuse::mount(
        client,
        rt.handle().clone(),
        &mnt,
        &wormfs_fuse::MountOptions {
            allow_other,
            ..Default::default()
        },
    )?;
    println!("WormFS is running:");
    println!(
        "  node    node1 at {addr}, {disks} disks under {}",
        dir.display()
    );
    println!("  config  {}", config_path.display());
    println!("  mount   {}", mnt.display());
    println!(
        "Try: cp -r ~/Pictures {0}/ ; wormfs status ; wormfs file info {0}/<file>",
        mnt.display()
    );
    println!("Stop with Ctrl-C (unmounts, then stops the node).");
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        anyhow::Ok(())
    })?;
    println!("stopping: unmounting {}", mnt.display());
    let unmounted = mounted.unmount();
    let _ = stop_tx.send(());
    let stopped = rt.block_on(node).context("node task")?;
    unmounted?;
    stopped?;
    println!("stopped cleanly");
    Ok(())
}
