//! The client config file (`client.toml`): which nodes a client tries first when no address
//! is given on its command line, and the order in which a client finds its nodes.
//!
//! ```toml
//! nodes = ["127.0.0.1:7070", "10.0.0.2:7070"]
//! identity = "admin.identity"   # relative to this file's directory
//! ```
//!
//! See `docs/client.md`.

use super::nodes;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the client config file (overrides the XDG location).
pub const CONFIG_ENV: &str = "WORMFS_CLIENT_CONFIG";

/// The address tried when nothing else names a node.
pub const DEFAULT_NODE: &str = "127.0.0.1:7070";

/// The contents of `client.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// gRPC addresses of nodes (`host:port` or `http://` URLs), tried in order.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The identity file to present (see [`super::identity`]); a relative path is taken
    /// from the config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
}

/// Where the client config lives: `$WORMFS_CLIENT_CONFIG`, else
/// `$XDG_CONFIG_HOME/wormfs/client.toml`, else `$HOME/.config/wormfs/client.toml`; `None`
/// when none of these variables is set.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    nodes::xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("wormfs").join("client.toml"))
}

/// Reads the config at `path`: `Ok(None)` when there is no such file, an `InvalidData`
/// error naming the file when it is not valid.
pub fn read(path: &Path) -> io::Result<Option<ClientConfig>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("read the client config `{}`: {e}", path.display()),
            ))
        }
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{}` is not a valid client config: {e}", path.display()),
        )
    })
}

/// Writes a config listing `nodes` (and naming `identity`, if any) to `path` atomically,
/// creating its directory.
pub fn write(path: &Path, nodes: &[String], identity: Option<&Path>) -> io::Result<()> {
    let config = ClientConfig {
        nodes: nodes.to_vec(),
        identity: identity.map(Path::to_path_buf),
    };
    let body = toml::to_string(&config).map_err(io::Error::other)?;
    let text = format!(
        "# WormFS client config: the nodes `wormfs` and `wormfs-fuse` try when no --node\n\
         # or WORMFS_NODE is given. See docs/client.md.\n{body}"
    );
    nodes::write_atomic(path, text.as_bytes())
}

/// The identity a client presents, and the file it came from: `explicit` (`--identity`)
/// when given; else `$WORMFS_IDENTITY`; else the client config's `identity`. Nothing found
/// is an error that says where an identity can come from.
pub fn identity(explicit: Option<&Path>) -> io::Result<(super::identity::Identity, PathBuf)> {
    use super::identity::{Identity, ADMIN_IDENTITY_FILE, IDENTITY_ENV};
    let chosen = if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        Some(p.to_path_buf())
    } else if let Some(p) = std::env::var_os(IDENTITY_ENV).filter(|v| !v.is_empty()) {
        Some(PathBuf::from(p))
    } else if let Some(config_path) = path() {
        read(&config_path)?
            .and_then(|c| c.identity)
            .map(|p| match config_path.parent() {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p,
            })
    } else {
        None
    };
    let Some(p) = chosen else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no client identity: pass --identity FILE, set {IDENTITY_ENV}, or add \
                 `identity = \"FILE\"` to the client config{}; a node writes its first admin \
                 identity to DATA_DIR/{ADMIN_IDENTITY_FILE}, and `wormfs user add` makes more",
                path()
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default()
            ),
        ));
    };
    Ok((Identity::read(&p)?, p))
}

/// Connects as `wormfs` and `wormfs-fuse` do: the identity from [`identity`], the first
/// addresses from [`resolve`] (the identity file's nodes stand in when nothing else names
/// one). Errors say which file the addresses came from.
pub async fn connect(
    node: Option<&str>,
    identity_file: Option<&Path>,
) -> io::Result<super::client::Client> {
    use super::client::{Client, ConnectOptions};
    let (identity, id_path) = identity(identity_file)?;
    let mut seeds = resolve(node)?;
    if seeds.source == SeedSource::Default && !identity.nodes.is_empty() {
        seeds = Seeds {
            nodes: identity.nodes.clone(),
            source: SeedSource::Config(id_path),
        };
    }
    let client = Client::connect_with(&seeds.nodes, ConnectOptions::with_identity(identity)).await;
    client.map_err(|e| {
        let message = match &seeds.source {
            SeedSource::Config(p) | SeedSource::Cache(p) => {
                format!(
                    "connect to the nodes listed in {}: {}",
                    p.display(),
                    e.message
                )
            }
            _ => e.message,
        };
        io::Error::new(
            if e.errno == crate::errno::EACCES {
                io::ErrorKind::PermissionDenied
            } else {
                io::ErrorKind::Other
            },
            message,
        )
    })
}

/// Where a client's first addresses came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedSource {
    /// `--node` or `WORMFS_NODE`.
    Explicit,
    /// The client config file at this path.
    Config(PathBuf),
    /// The node list cache at this path.
    Cache(PathBuf),
    /// Nothing named a node: [`DEFAULT_NODE`].
    Default,
}

/// The addresses a client starts from, and where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// Addresses to try in order (never empty).
    pub nodes: Vec<String>,
    /// Where they came from.
    pub source: SeedSource,
}

/// The addresses to start from: `explicit` (`--node` / `WORMFS_NODE`) when given and not
/// empty; else the nodes of the client config file; else the cached node list; else
/// [`DEFAULT_NODE`]. A config file that exists but cannot be read or parsed is an error; a
/// damaged cache is logged and skipped.
pub fn resolve(explicit: Option<&str>) -> io::Result<Seeds> {
    resolve_in(explicit, path(), nodes::cache_path())
}

/// [`resolve`] with the config and cache paths given.
fn resolve_in(
    explicit: Option<&str>,
    config: Option<PathBuf>,
    cache: Option<PathBuf>,
) -> io::Result<Seeds> {
    if let Some(node) = explicit.map(str::trim).filter(|n| !n.is_empty()) {
        return Ok(Seeds {
            nodes: vec![node.to_owned()],
            source: SeedSource::Explicit,
        });
    }
    if let Some(p) = config {
        if let Some(config) = read(&p)? {
            let nodes: Vec<String> = config
                .nodes
                .into_iter()
                .filter(|n| !n.trim().is_empty())
                .collect();
            if !nodes.is_empty() {
                return Ok(Seeds {
                    nodes,
                    source: SeedSource::Config(p),
                });
            }
        }
    }
    if let Some(p) = cache {
        match nodes::read_cache(&p) {
            Ok(Some(cached)) if !cached.is_empty() => {
                return Ok(Seeds {
                    nodes: cached,
                    source: SeedSource::Cache(p),
                })
            }
            Ok(_) => {}
            Err(e) => nodes::log_warn!("ignoring the node cache {}: {e}", p.display()),
        }
    }
    Ok(Seeds {
        nodes: vec![DEFAULT_NODE.to_owned()],
        source: SeedSource::Default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wormfs/client.toml");
        assert_eq!(read(&path).unwrap(), None);
        let nodes = vec![
            "127.0.0.1:7070".to_owned(),
            "http://10.0.0.2:7070".to_owned(),
        ];
        write(&path, &nodes, None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"nodes = ["127.0.0.1:7070", "http://10.0.0.2:7070"]"#),
            "{text}"
        );
        assert_eq!(
            read(&path).unwrap(),
            Some(ClientConfig {
                nodes,
                identity: None
            })
        );
    }

    #[test]
    fn a_bad_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "nodes = \"not a list\"\n").unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("client.toml"), "{e}");
        std::fs::write(&path, "node = [\"typo\"]\n").unwrap();
        assert!(read(&path).is_err(), "unknown keys are rejected");
    }

    #[test]
    fn seeds_come_from_the_flag_then_the_config_then_the_cache_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("client.toml");
        let cache = dir.path().join("nodes.json");
        let both = || resolve_in(None, Some(config.clone()), Some(cache.clone())).unwrap();
        assert_eq!(both().nodes, vec![DEFAULT_NODE.to_owned()]);
        assert_eq!(both().source, SeedSource::Default);
        nodes::write_cache(&cache, &["c1:1".to_owned(), "c2:1".to_owned()]).unwrap();
        assert_eq!(both().nodes, vec!["c1:1".to_owned(), "c2:1".to_owned()]);
        assert_eq!(both().source, SeedSource::Cache(cache.clone()));
        write(&config, &[], None).unwrap();
        assert_eq!(
            both().source,
            SeedSource::Cache(cache.clone()),
            "an empty config is skipped"
        );
        write(&config, &["k1:1".to_owned()], None).unwrap();
        assert_eq!(both().nodes, vec!["k1:1".to_owned()]);
        assert_eq!(both().source, SeedSource::Config(config.clone()));
        let s = resolve_in(Some("x:1"), Some(config.clone()), Some(cache.clone())).unwrap();
        assert_eq!(
            (s.nodes, s.source),
            (vec!["x:1".to_owned()], SeedSource::Explicit)
        );
        std::fs::write(&config, "nodes = 3").unwrap();
        assert!(resolve_in(None, Some(config), Some(cache)).is_err());
    }

    #[test]
    fn an_explicit_address_wins() {
        let s = resolve(Some(" 10.0.0.5:7070 ")).unwrap();
        assert_eq!(s.nodes, vec!["10.0.0.5:7070".to_owned()]);
        assert_eq!(s.source, SeedSource::Explicit);
    }
}
