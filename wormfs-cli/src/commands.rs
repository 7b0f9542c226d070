//! The commands that query or change a running cluster.

use crate::output::out;
use anyhow::Context;
use serde_json::json;
use wormfs::rpc::client::Client;

/// The `--identity` file (or `WORMFS_IDENTITY`), set once by `main`.
pub(crate) static IDENTITY: std::sync::OnceLock<Option<std::path::PathBuf>> =
    std::sync::OnceLock::new();

/// Connects to `node` (`--node` / `WORMFS_NODE`); when it is empty, to the nodes of the
/// client config file, else of the node cache, else of the identity file, else
/// 127.0.0.1:7070 (docs/client.md), presenting the identity (`--identity`).
pub(crate) async fn connect(node: &str) -> anyhow::Result<Client> {
    let identity = IDENTITY.get().cloned().flatten();
    Ok(wormfs::rpc::client_config::connect(Some(node), identity.as_deref()).await?)
}

pub(crate) fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A path in WormFS: an absolute WormFS path as is, or a local path through a WormFS mount
/// translated to the WormFS path.
pub fn fs_path(path: &str) -> anyhow::Result<String> {
    if let Ok(real) = std::fs::canonicalize(path) {
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut best: Option<(std::path::PathBuf, String)> = None;
            for line in mounts.lines() {
                let mut f = line.split_whitespace();
                let (Some(source), Some(target), Some(fstype)) = (f.next(), f.next(), f.next())
                else {
                    continue;
                };
                // Mounted as root the type is plain `fuse` and the source our FSName.
                if fstype != "fuse.wormfs" && !(fstype == "fuse" && source == "wormfs") {
                    continue;
                }
                let target = std::path::PathBuf::from(target.replace("\\040", " "));
                if let Ok(rest) = real.strip_prefix(&target) {
                    let p = format!("/{}", rest.display());
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| target.as_os_str().len() > b.as_os_str().len())
                    {
                        best = Some((target, p));
                    }
                }
            }
            if let Some((_, p)) = best {
                return Ok(p);
            }
        }
    }
    if !path.starts_with('/') {
        anyhow::bail!("`{path}` is neither a path in WormFS (starting with /) nor a path through a WormFS mount");
    }
    Ok(path.to_owned())
}

/// `wormfs status`.
pub async fn status(node: &str, as_json: bool) -> anyhow::Result<()> {
    let client = connect(node).await?;
    let s = client
        .cluster_status()
        .await
        .context("get cluster status")?;
    let workers = client
        .list_workers()
        .await
        .context("read the scrub and repair workers")?
        .workers;
    let repair = workers.iter().find(|w| w.name == "repair").cloned();
    if as_json {
        let nodes: Vec<_> = s
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id, "address": n.address, "state": n.state, "role": n.role,
                    "last_heartbeat_ns": n.last_heartbeat,
                    "admin_url": n.admin_url, "admin_fingerprint": n.admin_fingerprint,
                    "disks": n.disks.iter().map(|d| json!({"id": d.id, "path": d.path, "total": d.total, "free": d.free, "healthy": d.healthy && n.state == "online", "draining": d.draining})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let policies: Vec<_> = s
            .policies
            .iter()
            .map(|p| json!({"name": p.name, "k": p.k, "m": p.m, "stripe_size": p.stripe_size}))
            .collect();
        let out = json!({
            "master": s.master, "term": s.term, "last_applied": s.last_applied, "files": s.files, "bytes": s.bytes,
            "default_policy": s.default_policy, "policies": policies, "nodes": nodes,
            "workers": workers.iter().map(crate::heal::worker_json).collect::<Vec<_>>(),
            "stripes": repair.as_ref().map(|r| json!({
                "degraded": r.degraded, "at_risk": r.at_risk, "unreadable": r.unreadable,
                "counted_ns": r.counted,
            })),
        });
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!(
        "master: {}   sequence: {}   inodes: {}   data: {}",
        s.master,
        s.last_applied,
        s.files,
        human(s.bytes)
    );
    for n in &s.nodes {
        out!("node {} at {}: {} ({})", n.id, n.address, n.state, n.role);
        if !n.admin_url.is_empty() {
            if n.admin_fingerprint.is_empty() {
                out!("  admin {} (web UI, REST API, metrics)", n.admin_url);
            } else {
                out!(
                    "  admin {} (web UI, REST API, metrics; certificate SHA-256 {})",
                    n.admin_url,
                    n.admin_fingerprint
                );
            }
        }
        for d in &n.disks {
            let used = d.total.saturating_sub(d.free);
            out!(
                "  disk {:<10} {:>10} free of {:>10} ({:>3.0}% used) {}  {}",
                d.id,
                human(d.free),
                human(d.total),
                if d.total > 0 {
                    used as f64 * 100.0 / d.total as f64
                } else {
                    0.0
                },
                // a disk of a node not heard from is not known to be ok
                match (n.state.as_str(), d.healthy, d.draining) {
                    ("online", true, false) => "ok",
                    ("online", true, true) => "draining",
                    ("online", false, _) => "FAILING",
                    _ => "NODE OFFLINE",
                },
                d.path
            );
        }
    }
    let names: Vec<String> = s
        .policies
        .iter()
        .map(|p| format!("{} ({}+{}, {})", p.name, p.k, p.m, human(p.stripe_size)))
        .collect();
    out!(
        "policies: {}; default: {}",
        names.join(", "),
        s.default_policy
    );
    if let Some(r) = &repair {
        if r.counted > 0 {
            let age = (wormfs::meta::Timestamp::now().0 - r.counted).max(0) / 1_000_000_000;
            out!(
                "stripes (counted by repair {age}s ago): {} degraded, {} at risk (one more loss and they are gone), {} unreadable",
                r.degraded, r.at_risk, r.unreadable
            );
        }
    }
    for w in &workers {
        out!("{}", crate::heal::worker_line(w));
    }
    Ok(())
}

/// `wormfs policy get PATH`.
pub async fn policy_get(node: &str, path: &str, as_json: bool) -> anyhow::Result<()> {
    let p = fs_path(path)?;
    let client = connect(node).await?;
    let r = client
        .get_policy(&p)
        .await
        .with_context(|| format!("get the policy of {p}"))?;
    if as_json {
        out!(
            "{}",
            json!({"path": p, "policy": r.name, "k": r.k, "m": r.m, "stripe_size": r.stripe_size, "source": r.source})
        );
    } else {
        out!(
            "{p}: {} ({}+{}, {} stripes; {})",
            r.name,
            r.k,
            r.m,
            human(r.stripe_size),
            r.source
        );
    }
    Ok(())
}

/// `wormfs policy set PATH NAME`.
pub async fn policy_set(node: &str, path: &str, policy: &str, as_json: bool) -> anyhow::Result<()> {
    let p = fs_path(path)?;
    let client = connect(node).await?;
    let name = (policy != "inherit").then_some(policy);
    client
        .set_policy(&p, name)
        .await
        .with_context(|| format!("set the policy of {p}"))?;
    let r = client.get_policy(&p).await?;
    if as_json {
        out!(
            "{}",
            json!({"path": p, "policy": r.name, "source": r.source})
        );
    } else {
        out!(
            "{p}: new files get {} ({}+{}); existing files keep their layout",
            r.name,
            r.k,
            r.m
        );
    }
    Ok(())
}

/// `wormfs file info PATH`.
pub async fn file_info(node: &str, path: &str, as_json: bool) -> anyhow::Result<()> {
    let p = fs_path(path)?;
    let client = connect(node).await?;
    let r = client
        .file_layout(&p)
        .await
        .with_context(|| format!("get the layout of {p}"))?;
    let attr = r.attr.unwrap_or_default();
    let layout = attr.layout.clone().unwrap_or_default();
    if as_json {
        let stripes: Vec<_> = r
            .stripes
            .iter()
            .map(|s| {
                json!({
                    "index": s.index, "generation": s.generation, "start": s.start, "len": s.len, "crc": s.crc, "inline": s.inline,
                    "margin": s.margin,
                    "chunks": s.chunks.iter().map(|c| json!({"index": c.index, "node": c.node, "disk": c.disk, "path": c.path, "size": c.size, "state": c.state, "verified_ns": c.verified})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = json!({
            "path": p, "inode": attr.ino, "size": attr.size, "policy": layout.policy, "k": layout.k, "m": layout.m,
            "stripe_size": layout.stripe_size, "chunk_folder": layout.folder, "stripes": stripes,
        });
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    out!(
        "{p}: inode {}, {} bytes, policy {} ({}+{}, {} stripes), chunk folder {}",
        attr.ino,
        attr.size,
        layout.policy,
        layout.k,
        layout.m,
        human(layout.stripe_size),
        layout.folder
    );
    for s in &r.stripes {
        let margin = match s.margin {
            _ if s.inline => String::new(),
            m if m < 0 => ", UNREADABLE".into(),
            0 => ", margin 0: one more loss and it is gone".into(),
            m => format!(", margin {m}"),
        };
        out!(
            "stripe {} (bytes {}..{}, generation {}{margin}):",
            s.index,
            s.start,
            s.start + s.len,
            s.generation
        );
        if s.inline {
            out!("  kept in the metadata (no chunk files: at most policies.inline_max bytes)");
        }
        for c in &s.chunks {
            out!(
                "  chunk {:>2} {:>12} on {}/{} {}  {}",
                c.index,
                c.state,
                c.node,
                c.disk,
                human(c.size),
                c.path
            );
        }
    }
    Ok(())
}
