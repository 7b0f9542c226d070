//! The node's TOML config: a serde layer as written, then a validated [`NodeConfig`].

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Directory for the metadata database.
    pub data_dir: Option<PathBuf>,
    /// The disks: one directory each.
    #[serde(default)]
    pub disks: Vec<RawDisk>,
    /// Storage policies.
    #[serde(default)]
    pub policies: PolicyConfig,
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
    /// The metadata directory.
    pub data_dir: PathBuf,
    /// The disks.
    pub disks: Vec<(DiskId, PathBuf)>,
    /// The policies.
    pub policies: PolicySet,
}

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
            data_dir,
            disks,
            policies,
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
        let Some(data_dir) = data_dir else {
            bail!("`data_dir` is missing: name the directory for the metadata database");
        };
        let data_dir = base.join(data_dir);
        if disks.is_empty() {
            bail!("`disks` is empty: list at least one disk directory as [[disks]] path = \"...\"");
        }
        let mut checked: Vec<(DiskId, PathBuf)> = Vec::new();
        let mut canonical: Vec<PathBuf> = Vec::new();
        for (i, d) in disks.iter().enumerate() {
            let id = DiskId(d.id.clone().unwrap_or_else(|| format!("disk{i}")));
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
        width_check(policies.default_name(), "policies.default")?;
        for (dir, name) in policies.directories() {
            width_check(name, &format!("policies.directory {dir}"))?;
        }
        Ok(NodeConfig {
            node_id: NodeId(node_id),
            listen,
            data_dir,
            disks: checked,
            policies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, base: &Path) -> String {
        format!("{:#}", NodeConfig::parse(text, base).unwrap_err())
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
}
