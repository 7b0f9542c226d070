//! The client's cache of the cluster's node list (`nodes.json`), and address helpers.
//!
//! After a [`Client`](super::client::Client) connects, it asks the node for the cluster's
//! members and writes their gRPC addresses here, so that a later start still finds the
//! cluster when the address it was given does not answer. See `docs/client.md`.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Environment variable naming the cache file (overrides the XDG location).
pub const CACHE_ENV: &str = "WORMFS_NODE_CACHE";

/// Logs a warning: through `tracing` when the crate has it (feature `node`), else on stderr.
macro_rules! log_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "node")]
        {
            tracing::warn!($($arg)*);
        }
        #[cfg(not(feature = "node"))]
        {
            eprintln!("wormfs: warning: {}", format_args!($($arg)*));
        }
    }};
}
pub(crate) use log_warn;

/// The contents of the cache file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCache {
    /// gRPC addresses of the cluster's nodes, the one last used first.
    pub nodes: Vec<String>,
    /// When the list was written (Unix seconds).
    #[serde(default)]
    pub updated: u64,
}

/// Where the node list is cached: `$WORMFS_NODE_CACHE`, else
/// `$XDG_CACHE_HOME/wormfs/nodes.json`, else `$HOME/.cache/wormfs/nodes.json`; `None` when
/// none of these variables is set.
pub fn cache_path() -> Option<PathBuf> {
    if let Some(p) = non_empty_env(CACHE_ENV) {
        return Some(PathBuf::from(p));
    }
    xdg_dir("XDG_CACHE_HOME", ".cache").map(|d| d.join("wormfs").join("nodes.json"))
}

/// `$VAR` when it is an absolute path (the XDG rule), else `$HOME/fallback`.
pub(crate) fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    if let Some(p) = non_empty_env(var) {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            return Some(p);
        }
    }
    non_empty_env("HOME").map(|h| PathBuf::from(h).join(fallback))
}

fn non_empty_env(var: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

/// Reads the node list cached at `path`; `Ok(None)` when there is no such file.
pub fn read_cache(path: &Path) -> io::Result<Option<Vec<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let cache: NodeCache = serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{}` is not a node cache: {e}", path.display()),
        )
    })?;
    Ok(Some(cache.nodes))
}

/// Writes `nodes` to the cache at `path` atomically (a temporary file renamed over it),
/// creating its directory.
pub fn write_cache(path: &Path, nodes: &[String]) -> io::Result<()> {
    let updated = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cache = NodeCache {
        nodes: nodes.to_vec(),
        updated,
    };
    let mut text = serde_json::to_string_pretty(&cache).map_err(io::Error::other)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The cached node list at the default [`cache_path`]; empty when there is none. A cache
/// that cannot be read is logged and ignored.
pub fn cached_nodes() -> Vec<String> {
    let Some(path) = cache_path() else {
        return Vec::new();
    };
    match read_cache(&path) {
        Ok(nodes) => nodes.unwrap_or_default(),
        Err(e) => {
            log_warn!("ignoring the node cache {}: {e}", path.display());
            Vec::new()
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and
/// renamed over `path`, so readers see the old contents or the new, never a part. Each
/// call has its own temporary file, so the clients of one process (a mount's connections)
/// may write at once.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // what `File::create` gives: 0666 less the umask
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`], the file made with `mode` (less the umask), e.g. 0600 for a secret.
pub(crate) fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` names no file", path.display()),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An address without its `http://` scheme or trailing `/`, to compare addresses.
pub(crate) fn normalize(address: &str) -> &str {
    let a = address.strip_prefix("http://").unwrap_or(address);
    a.trim_end_matches('/')
}

/// The address a node reported, with an unspecified host (`0.0.0.0`, `[::]`, empty) replaced
/// by the host of `via`, the address that reached the cluster.
pub(crate) fn fill_host(reported: &str, via: &str) -> String {
    let reported = normalize(reported);
    let Some((host, port)) = reported.rsplit_once(':') else {
        return reported.to_owned();
    };
    if !matches!(host, "" | "0.0.0.0" | "[::]" | "::") {
        return reported.to_owned();
    }
    match normalize(via).rsplit_once(':') {
        Some((via_host, _)) => format!("{via_host}:{port}"),
        None => reported.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip_is_atomic_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/nodes.json");
        assert_eq!(read_cache(&path).unwrap(), None);
        let nodes = vec!["10.0.0.1:7070".to_owned(), "10.0.0.2:7070".to_owned()];
        write_cache(&path, &nodes).unwrap();
        assert_eq!(read_cache(&path).unwrap(), Some(nodes.clone()));
        write_cache(&path, &nodes[1..]).unwrap();
        assert_eq!(read_cache(&path).unwrap(), Some(nodes[1..].to_vec()));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("nodes.json")]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"nodes\""), "{text}");
    }

    /// The clients of one mount write the cache at once (found by the soak: they shared
    /// one temporary file): every write succeeds and every read sees one whole list.
    #[test]
    fn clients_of_one_process_write_the_cache_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("nodes.json");
        let lists: Vec<Vec<String>> = (0..6)
            .map(|t| (0..200).map(|i| format!("node{t}-{i}:7000")).collect())
            .collect();
        write_cache(&cache, &lists[0]).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let writers: Vec<_> = lists
                .iter()
                .map(|list| {
                    let cache = &cache;
                    s.spawn(move || {
                        for _ in 0..40 {
                            write_cache(cache, list).unwrap();
                        }
                    })
                })
                .collect();
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let read = read_cache(&cache).unwrap().unwrap();
                    assert!(
                        lists.contains(&read),
                        "a torn cache of {} nodes",
                        read.len()
                    );
                }
            });
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["nodes.json"], "temporary files left behind");
    }

    #[test]
    fn a_damaged_cache_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodes.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = read_cache(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn unspecified_hosts_take_the_host_that_reached_the_cluster() {
        assert_eq!(fill_host("0.0.0.0:7071", "10.1.2.3:7070"), "10.1.2.3:7071");
        assert_eq!(fill_host("[::]:7071", "http://h:7070"), "h:7071");
        assert_eq!(fill_host("10.0.0.9:7071", "h:7070"), "10.0.0.9:7071");
        assert_eq!(normalize("http://h:1/"), "h:1");
    }
}
