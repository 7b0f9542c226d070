//! The node's TOML config: a serde layer as written, then a validated [`NodeConfig`].

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wormfs::cluster::ClusterSettings;
use wormfs::heal::HealSettings;
use wormfs::ids::{DiskId, NodeId};
use wormfs::policy::{PolicyConfig, PolicySet};

/// The config file as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This node's name in the cluster (default `node1`).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Address the gRPC API listens on (default `127.0.0.1:7070`; port 0 picks a free one).
    #[serde(default)]
    pub listen: Option<String>,
    /// Address of the admin HTTP listener: `/metrics`, `/health`, `/ready` (default
    /// `127.0.0.1:7170`, skipped with a warning when taken; `off` for none).
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// HTTPS on the admin listener: `auto` (default: on unless the address is loopback),
    /// `on` or `off`.
    #[serde(default)]
    pub admin_tls: Option<String>,
    /// The admin listener's certificate (PEM), with `admin_key`; default: one the node
    /// makes for itself in `data_dir`.
    #[serde(default)]
    pub admin_cert: Option<PathBuf>,
    /// The key of `admin_cert` (PEM).
    #[serde(default)]
    pub admin_key: Option<PathBuf>,
    /// Directory for the metadata database.
    pub data_dir: Option<PathBuf>,
    /// The first admin's identity file (default `DATA_DIR/admin.identity`): read and added
    /// as user `admin` when the cluster has no user yet, or written there first.
    #[serde(default)]
    pub admin_identity: Option<PathBuf>,
    /// The disks: one directory each.
    #[serde(default)]
    pub disks: Vec<RawDisk>,
    /// Storage policies.
    #[serde(default)]
    pub policies: PolicyConfig,
    /// Cluster membership; absent for a node on its own.
    #[serde(default)]
    pub cluster: Option<RawCluster>,
    /// Scrub and repair.
    #[serde(default)]
    pub heal: RawHeal,
    /// File locks.
    #[serde(default)]
    pub locks: RawLocks,
}

/// The `[locks]` table: the cluster's file locks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocks {
    /// How long a client's locks outlive its last renewal (default `10s`).
    #[serde(default)]
    pub lease: Option<String>,
    /// Readers and writers exclude each other (default true); false lets a writer open a
    /// file others read, and readers open a file being written.
    #[serde(default)]
    pub read_locks: Option<bool>,
}

/// The checked `[locks]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSettings {
    /// The lease.
    pub lease: Duration,
    /// Whether readers and writers exclude each other.
    pub read_locks: bool,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            lease: Duration::from_secs(10),
            read_locks: true,
        }
    }
}

fn check_locks(raw: RawLocks) -> anyhow::Result<LockSettings> {
    let d = LockSettings::default();
    let lease = match &raw.lease {
        Some(t) => match parse_duration(t, "locks.lease")? {
            Some(l) if l >= Duration::from_secs(1) => l,
            _ => {
                bail!("`locks.lease`: `{t}` must be at least 1s (a mount renews every third of it)")
            }
        },
        None => d.lease,
    };
    Ok(LockSettings {
        lease,
        read_locks: raw.read_locks.unwrap_or(d.read_locks),
    })
}

/// The `[heal]` table: scrub and repair.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeal {
    /// Runs scrub and repair on the master (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Time after a scrub finishes before the next shallow scrub (default `1h`; `off`).
    #[serde(default)]
    pub scrub_every: Option<String>,
    /// Time after a deep scrub finishes before the next (default `30d`; `off`).
    #[serde(default)]
    pub deep_scrub_every: Option<String>,
    /// How often repair looks for stripes to repair while it has none (default `30s`).
    #[serde(default)]
    pub repair_every: Option<String>,
    /// I/O budget of each worker, bytes per second (default unlimited).
    #[serde(default)]
    pub bytes_per_sec: Option<wormfs::size::ByteSize>,
    /// Budget in chunk operations per second (default unlimited).
    #[serde(default)]
    pub ops_per_sec: Option<u64>,
    /// How often a copy of the metadata database is written to the first two disks
    /// (default `10m`; `off`). A node also writes one when it stops.
    #[serde(default)]
    pub meta_backup_every: Option<String>,
    /// How often the node sweeps its disks for garbage (default `1h`; `off`).
    #[serde(default)]
    pub garbage_every: Option<String>,
    /// Garbage younger than this is left alone (default `1h`).
    #[serde(default)]
    pub garbage_grace: Option<String>,
    /// Files a crashed mount left in `/.wormfs-orphans` are removed once unchanged this
    /// long (default `7d`).
    #[serde(default)]
    pub orphan_grace: Option<String>,
}

/// The `[cluster]` table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Address the node-to-node (libp2p) listener binds (default `127.0.0.1:7100`).
    #[serde(default)]
    pub listen: Option<String>,
    /// Address the chunk data listener binds (default: `listen`'s address, any free port;
    /// peers learn the port over libp2p). Set a port when a firewall sits between nodes.
    #[serde(default)]
    pub data_listen: Option<String>,
    /// Form the cluster from this node and every peer on first start (one node only).
    #[serde(default)]
    pub bootstrap: bool,
    /// The other nodes.
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// Heartbeat interval in milliseconds (default 1000).
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
    /// Missed heartbeats before a peer shows offline (default 30).
    #[serde(default)]
    pub offline_after: Option<u32>,
    /// Raft election timeout in milliseconds (default 10000).
    #[serde(default)]
    pub election_timeout_ms: Option<u64>,
    /// Log entries between snapshots (default 5000).
    #[serde(default)]
    pub snapshot_after: Option<u64>,
    /// Log entries kept after a snapshot (default 1000).
    #[serde(default)]
    pub keep_log_entries: Option<u64>,
}

/// One `[[cluster.peers]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    /// The peer's libp2p address, `IP:PORT`.
    pub addr: String,
    /// Its peer ID, or `auto` to trust the first ID it presents (default `auto`).
    #[serde(default)]
    pub peer_id: Option<String>,
}

/// One `[[disks]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    /// The disk's id (default `disk<N>` by position).
    #[serde(default)]
    pub id: Option<String>,
    /// The directory chunks go to (an empty directory on first start).
    pub path: PathBuf,
}

/// A checked config.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node.
    pub node_id: NodeId,
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// The admin HTTP listener, if any.
    pub admin_listen: Option<AdminListen>,
    /// The metadata directory.
    pub data_dir: PathBuf,
    /// The first admin's identity file.
    pub admin_identity: PathBuf,
    /// The disks.
    pub disks: Vec<(DiskId, PathBuf)>,
    /// The policies.
    pub policies: PolicySet,
    /// The cluster settings, when the node is part of one.
    pub cluster: Option<ClusterSettings>,
    /// Scrub and repair.
    pub heal: HealSettings,
    /// File locks.
    pub locks: LockSettings,
}

/// Where the admin HTTP listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminListen {
    /// The address.
    pub addr: SocketAddr,
    /// True when the config names it: the node does not start without it. The default
    /// address is skipped, with a warning, when another process holds it.
    pub required: bool,
    /// HTTPS.
    pub tls: bool,
    /// The certificate and key files, when the config names them (else the node's own).
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// The default admin HTTP listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7170";

/// The default libp2p listen address.
pub const DEFAULT_P2P_LISTEN: &str = "127.0.0.1:7100";

/// The default gRPC listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

impl NodeConfig {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config `{}`", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("config `{}`", path.display()))
    }

    /// Parses and checks config text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<NodeConfig> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        let RawConfig {
            node_id,
            listen,
            admin_listen,
            admin_tls,
            admin_cert,
            admin_key,
            data_dir,
            admin_identity,
            disks,
            policies,
            cluster,
            heal,
            locks,
        } = raw;
        let node_id = node_id.unwrap_or_else(|| "node1".into());
        if node_id.is_empty()
            || !node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("`node_id`: `{node_id}` must be letters, digits, `-` or `_`");
        }
        let listen_text = listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text.parse().map_err(|e| {
            anyhow::anyhow!("`listen`: `{listen_text}` is not an address like 127.0.0.1:7070 ({e})")
        })?;
        let admin_addr = match admin_listen.as_deref().map(str::trim) {
            Some("off") => None,
            Some(text) => Some((
                text.parse::<SocketAddr>().map_err(|e| {
                    anyhow::anyhow!(
                        "`admin_listen`: `{text}` is not an address like 127.0.0.1:7170, or `off` ({e})"
                    )
                })?,
                true,
            )),
            None => Some((DEFAULT_ADMIN_LISTEN.parse().expect("a valid default"), false)),
        };
        let cert = match (admin_cert, admin_key) {
            (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
            (None, None) => None,
            _ => bail!("`admin_cert` and `admin_key` go together: name both files, or neither"),
        };
        let admin_listen = match admin_addr {
            None => None,
            Some((addr, required)) => {
                let tls = match admin_tls.as_deref().map(str::trim) {
                    None | Some("auto") => !addr.ip().is_loopback() || cert.is_some(),
                    Some("on") => true,
                    Some("off") if cert.is_some() => {
                        bail!("`admin_tls` is `off` but `admin_cert` is set: remove one of them")
                    }
                    Some("off") => false,
                    Some(other) => bail!("`admin_tls`: `{other}` is not `auto`, `on` or `off`"),
                };
                Some(AdminListen {
                    addr,
                    required,
                    tls,
                    cert: cert.clone(),
                })
            }
        };
        let Some(data_dir) = data_dir else {
            bail!("`data_dir` is missing: name the directory for the metadata database");
        };
        let data_dir = base.join(data_dir);
        let admin_identity = match admin_identity {
            Some(p) => base.join(p),
            None => data_dir.join(wormfs::rpc::identity::ADMIN_IDENTITY_FILE),
        };
        if disks.is_empty() {
            bail!("`disks` is empty: list at least one disk directory as [[disks]] path = \"...\"");
        }
        let mut checked: Vec<(DiskId, PathBuf)> = Vec::new();
        let mut canonical: Vec<PathBuf> = Vec::new();
        for (i, d) in disks.iter().enumerate() {
            // in a cluster, disk ids must be unique across nodes: default to NODE-diskN
            let id = DiskId(d.id.clone().unwrap_or_else(|| {
                if cluster.is_some() {
                    format!("{node_id}-disk{i}")
                } else {
                    format!("disk{i}")
                }
            }));
            let path = base.join(&d.path);
            let real = std::fs::canonicalize(&path).map_err(|e| {
                anyhow::anyhow!("`disks[{i}].path`: `{}` cannot be used ({e}); create the directory or fix the path", path.display())
            })?;
            if !real.is_dir() {
                bail!("`disks[{i}].path`: `{}` is not a directory", path.display());
            }
            if let Some(j) = canonical.iter().position(|c| *c == real) {
                bail!("`disks[{i}].path`: `{}` is the same directory as `disks[{j}].path`; each disk needs its own", path.display());
            }
            if let Some(j) = checked.iter().position(|(other, _)| *other == id) {
                bail!("`disks[{i}].id`: `{id}` is already the id of `disks[{j}]`");
            }
            canonical.push(real);
            checked.push((id, path));
        }
        let policies = policies.build()?;
        let cluster = cluster.map(check_cluster).transpose()?;
        let width_check = |name: &str, field: &str| -> anyhow::Result<()> {
            let p = policies
                .get(name)
                .expect("built sets only reference known policies");
            if p.width() > checked.len() {
                bail!(
                    "`{field}`: policy `{name}` ({}+{}) needs {} disks, but this node has {}; add disks or choose a narrower policy",
                    p.k,
                    p.m,
                    p.width(),
                    checked.len()
                );
            }
            Ok(())
        };
        // in a cluster, policies are checked against the whole cluster's disks at write time
        if cluster.is_none() {
            width_check(policies.default_name(), "policies.default")?;
            for (dir, name) in policies.directories() {
                width_check(name, &format!("policies.directory {dir}"))?;
            }
        }
        Ok(NodeConfig {
            node_id: NodeId(node_id),
            listen,
            admin_listen,
            data_dir,
            admin_identity,
            disks: checked,
            policies,
            cluster,
            heal: check_heal(heal)?,
            locks: check_locks(locks)?,
        })
    }
}

/// Parses a duration like `250ms`, `90s`, `5m`, `1h` or `30d`; `off` is `None`.
pub fn parse_duration(text: &str, field: &str) -> anyhow::Result<Option<Duration>> {
    let t = text.trim();
    if t == "off" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!("`{field}`: `{text}` is not a duration like 90s, 5m, 1h, 30d or off")
    })?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => bail!("`{field}`: unknown unit `{other}` in `{text}`; use ms, s, m, h or d"),
    };
    Ok(Some(Duration::from_millis(n.saturating_mul(ms))))
}

fn check_heal(raw: RawHeal) -> anyhow::Result<HealSettings> {
    let d = HealSettings::default();
    let every = |v: &Option<String>, field: &str, default: Option<Duration>| match v {
        Some(t) => match parse_duration(t, field)? {
            Some(d) if d.is_zero() => match field {
                "heal.repair_every" | "heal.garbage_grace" | "heal.orphan_grace" => {
                    bail!("`{field}` must be above 0")
                }
                _ => bail!("`{field}` must be above 0 (or `off`)"),
            },
            d => Ok(d),
        },
        None => Ok(default),
    };
    let repair_every = every(&raw.repair_every, "heal.repair_every", Some(d.repair_every))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`heal.repair_every` cannot be off; set `heal.enabled = false` to stop repair"
            )
        })?;
    if repair_every.is_zero() {
        bail!("`heal.repair_every` must be above 0");
    }
    Ok(HealSettings {
        scrub_every: every(&raw.scrub_every, "heal.scrub_every", d.scrub_every)?,
        deep_scrub_every: every(
            &raw.deep_scrub_every,
            "heal.deep_scrub_every",
            d.deep_scrub_every,
        )?,
        repair_every,
        budget: wormfs::worker::Budget {
            bytes_per_sec: raw.bytes_per_sec.map_or(0, |b| b.0),
            ops_per_sec: raw.ops_per_sec.unwrap_or(0),
        },
        enabled: raw.enabled.unwrap_or(true),
        meta_backup_every: every(
            &raw.meta_backup_every,
            "heal.meta_backup_every",
            d.meta_backup_every,
        )?,
        garbage_every: every(&raw.garbage_every, "heal.garbage_every", d.garbage_every)?,
        garbage_grace: every(
            &raw.garbage_grace,
            "heal.garbage_grace",
            Some(d.garbage_grace),
        )?
        .ok_or_else(|| {
            anyhow::anyhow!("`heal.garbage_grace` cannot be off; set `heal.garbage_every = \"off\"` to keep all garbage")
        })?,
        orphan_grace: every(&raw.orphan_grace, "heal.orphan_grace", Some(d.orphan_grace))?
            .ok_or_else(|| {
                anyhow::anyhow!("`heal.orphan_grace` cannot be off; set `heal.garbage_every = \"off\"` to keep them")
            })?,
    })
}

fn check_cluster(raw: RawCluster) -> anyhow::Result<ClusterSettings> {
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_P2P_LISTEN.into());
    let p2p_listen: SocketAddr = listen_text.parse().map_err(|e| {
        anyhow::anyhow!(
            "`cluster.listen`: `{listen_text}` is not an address like 127.0.0.1:7100 ({e})"
        )
    })?;
    let data_listen = match raw.data_listen.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|e| {
            anyhow::anyhow!(
                "`cluster.data_listen`: `{text}` is not an address like 127.0.0.1:7101 ({e})"
            )
        })?),
    };
    if data_listen == Some(p2p_listen) {
        bail!("`cluster.data_listen` must differ from `cluster.listen` ({p2p_listen})");
    }
    let mut peers = Vec::new();
    for (i, p) in raw.peers.iter().enumerate() {
        let addr: SocketAddr = p.addr.parse().map_err(|e| {
            anyhow::anyhow!(
                "`cluster.peers[{i}].addr`: `{}` is not an address like 127.0.0.1:7101 ({e})",
                p.addr
            )
        })?;
        if addr == p2p_listen {
            bail!("`cluster.peers[{i}].addr`: `{addr}` is this node's own `cluster.listen`");
        }
        if peers.iter().any(|(a, _)| *a == addr) {
            bail!("`cluster.peers[{i}].addr`: `{addr}` is listed twice");
        }
        let id = match p.peer_id.as_deref() {
            None | Some("auto") => None,
            Some(text) => Some(text.parse().map_err(|e| {
                anyhow::anyhow!(
                    "`cluster.peers[{i}].peer_id`: `{text}` is not a peer ID (use the ID the node logs at start, `node-to-node listener up ... peer_id=...`, or `auto`): {e}"
                )
            })?),
        };
        peers.push((addr, id));
    }
    let ms = |v: Option<u64>, default: u64, field: &str| -> anyhow::Result<Duration> {
        match v.unwrap_or(default) {
            0 => bail!("`cluster.{field}` must be above 0"),
            n => Ok(Duration::from_millis(n)),
        }
    };
    let heartbeat_interval = ms(raw.heartbeat_ms, 1000, "heartbeat_ms")?;
    let election_timeout = ms(raw.election_timeout_ms, 10_000, "election_timeout_ms")?;
    if election_timeout < Duration::from_millis(100) {
        bail!("`cluster.election_timeout_ms` must be at least 100 (Raft heartbeats go at a fifth of it)");
    }
    let offline_after = raw.offline_after.unwrap_or(30);
    if offline_after == 0 {
        bail!("`cluster.offline_after` must be above 0");
    }
    Ok(ClusterSettings {
        p2p_listen,
        data_listen,
        peers,
        bootstrap: raw.bootstrap,
        heartbeat_interval,
        offline_after,
        election_timeout,
        snapshot_after: raw.snapshot_after.unwrap_or(5000).max(1),
        keep_log_entries: raw.keep_log_entries.unwrap_or(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, base: &Path) -> String {
        format!("{:#}", NodeConfig::parse(text, base).unwrap_err())
    }

    /// The configs of docs/running.md (examples/deploy) are valid, once their disk
    /// directories exist: a change of the config format that breaks them fails here.
    #[test]
    fn the_deploy_examples_parse() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_str().unwrap();
        for d in ["disk0/data", "disk1/data"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy");
        for (file, node, bootstrap) in [
            ("node1.toml", "node1", true),
            ("node2.toml", "node2", false),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(text.contains("/srv/wormfs/"), "{file} names its disks");
            let text = text.replace("/srv/wormfs", root);
            let c =
                NodeConfig::parse(&text, tmp.path()).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert_eq!(c.node_id.0, node);
            assert_eq!(c.disks.len(), 2);
            let cluster = c.cluster.expect("a cluster member");
            assert_eq!(cluster.bootstrap, bootstrap, "{file}");
            assert_eq!(cluster.peers.len(), 2, "{file}");
            assert_eq!(
                c.admin_listen
                    .map(|a| (a.addr.to_string(), a.required, a.tls)),
                Some(("127.0.0.1:7170".to_owned(), true, false))
            );
        }
        let client = std::fs::read_to_string(dir.join("client.toml")).unwrap();
        let client: wormfs::rpc::client_config::ClientConfig = toml::from_str(&client).unwrap();
        assert_eq!(client.nodes.len(), 3);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a", "b", "c"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let base = tmp.path();
        let disks3 = "[[disks]]\npath = \"a\"\n[[disks]]\npath = \"b\"\n[[disks]]\npath = \"c\"\n";
        let cases = [
            (disks3.to_string(), "`data_dir` is missing"),
            ("data_dir = \"m\"\n".to_string(), "`disks` is empty"),
            ("data_dir = \"m\"\n[[disks]]\npath = \"nope\"\n".to_string(), "`disks[0].path`: "),
            ("data_dir = \"m\"\n[[disks]]\npath = \"a\"\n[[disks]]\npath = \"./a/\"\n".to_string(), "same directory as `disks[0].path`"),
            (format!("data_dir = \"m\"\nlisten = \"here\"\n{disks3}"), "`listen`: `here`"),
            (format!("data_dir = \"m\"\n{disks3}[policies]\ndefault = \"media\"\n"), "policy `media` (4+2) needs 6 disks, but this node has 3"),
            (format!("data_dir = \"m\"\n{disks3}[policies]\ndefault = \"gold\"\n"), "no policy is named `gold`"),
            (format!("data_dir = \"m\"\n{disks3}[policies.named.x]\nk = 0\nm = 1\nstripe_size = \"1MiB\"\n"), "`policies.named.x.k`"),
            (format!("data_dir = \"m\"\ncolour = 1\n{disks3}"), "unknown field `colour`"),
            (format!("data_dir = \"m\"\n{disks3}[policies]\ninline_max = \"1MiB\"\n"), "`policies.inline_max`"),
            (format!("data_dir = \"m\"\nadmin_listen = \"here\"\n{disks3}"), "`admin_listen`: `here`"),
            (format!("data_dir = \"m\"\nadmin_tls = \"maybe\"\n{disks3}"), "`admin_tls`: `maybe` is not"),
            (format!("data_dir = \"m\"\nadmin_cert = \"c.pem\"\n{disks3}"), "`admin_cert` and `admin_key` go together"),
            (format!("data_dir = \"m\"\nadmin_tls = \"off\"\nadmin_cert = \"c\"\nadmin_key = \"k\"\n{disks3}"), "`admin_tls` is `off` but `admin_cert` is set"),
        ];
        for (text, want) in cases {
            let e = err(&text, base);
            assert!(e.contains(want), "{text:?}\n gave {e:?}\n wanted {want:?}");
        }
        let ok = NodeConfig::parse(
            &format!("data_dir = \"m\"\nlisten = \"127.0.0.1:0\"\n{disks3}"),
            base,
        )
        .unwrap();
        assert_eq!(ok.disks.len(), 3);
        assert_eq!(ok.disks[2].0, DiskId("disk2".into()));
        assert_eq!(ok.policies.default_name(), "general");
    }

    /// Fuzz target: any config text gives a config or an error, never a panic; an error
    /// is one that names something (not an empty message).
    #[test]
    fn fuzz_node_config() {
        use wormfs::fuzz;
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a", "b", "c", "d"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let disks = "[[disks]]\nid = \"d0\"\npath = \"a\"\n[[disks]]\nid = \"d1\"\npath = \"b\"\n\
                     [[disks]]\npath = \"c\"\n[[disks]]\npath = \"d\"\n";
        let mut corpus: Vec<Vec<u8>> = [
            format!("node_id = \"node1\"\nlisten = \"127.0.0.1:7070\"\ndata_dir = \"m\"\n{disks}"),
            format!(
                "data_dir = \"m\"\n{disks}[policies]\ndefault = \"wide\"\ninline_max = \"4KiB\"\n\
                 [policies.named.wide]\nk = 3\nm = 1\nstripe_size = \"3MiB\"\n\
                 [[policies.directory]]\npath = \"/photos\"\npolicy = \"wide\"\n"
            ),
            format!(
                "data_dir = \"m\"\n{disks}[cluster]\nlisten = \"127.0.0.1:7100\"\nbootstrap = true\n\
                 heartbeat_ms = 200\noffline_after = 10\nelection_timeout_ms = 1500\n\
                 [[cluster.peers]]\naddr = \"127.0.0.1:7101\"\npeer_id = \"auto\"\n"
            ),
            format!(
                "data_dir = \"m\"\n{disks}[heal]\nscrub_every = \"6h\"\nbytes_per_sec = \"200MiB\"\n\
                 ops_per_sec = 1000\norphan_grace = \"7d\"\n"
            ),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        corpus.extend(fuzz::corpus("node_config"));
        let tokens = [
            "\n",
            "=",
            "\"",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            ".",
            "-1",
            "0",
            "1e999",
            "nan",
            "18446744073709551615",
            "\"0B\"",
            "\"1PiB\"",
            "\"0s\"",
            "true",
            "k = ",
            "m = ",
            "stripe_size = ",
            "[cluster]\n",
            "[heal]\n",
            "[policies]\n",
            "path = ",
            "\"..\"",
        ];
        let mut m = fuzz::Mutator::new(fuzz::seed(), &tokens);
        // fewer inputs than the library's targets: each parse reads the disk directories
        fuzz::run(
            "node_config",
            &corpus,
            fuzz::iterations(1500),
            &mut m,
            |input| {
                let text = String::from_utf8_lossy(input);
                if let Err(e) = NodeConfig::parse(&text, tmp.path()) {
                    assert!(
                        !format!("{e:#}").trim().is_empty(),
                        "an empty error for {text:?}"
                    );
                }
            },
        );
    }
}
