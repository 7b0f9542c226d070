//! The set of policies a cluster agrees on, and how a path finds its policy.

use super::{PolicyError, StoragePolicy};
use std::collections::BTreeMap;

/// Named policies, the default, and per-directory overrides from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySet {
    named: BTreeMap<String, StoragePolicy>,
    default: String,
    directories: BTreeMap<String, String>,
    inline_max: u64,
}

/// Stripes of at most this many bytes are kept in the metadata by default: one disk block.
/// Coded, such a stripe would cost `k + m` chunk files of a block each (six blocks for a
/// 4 KiB file under 4+2) and as many fsyncs; in the metadata it costs one copy per
/// metadata replica and one commit.
pub const DEFAULT_INLINE_MAX: u64 = 4096;

/// The largest `inline_max` accepted: inline bytes travel in one replicated-log entry.
pub const INLINE_MAX_LIMIT: u64 = 64 * 1024;

impl PolicySet {
    /// The built-in policies, each fitting a 3-node × 2-disk cluster and surviving the loss
    /// of any one node when chunks are spread evenly over nodes:
    ///
    /// | name | k+m | stripe | overhead | survives |
    /// |---|---|---|---|---|
    /// | `general` (default) | 2+1 | 1 MiB | 1.5× | 1 disk or 1 node |
    /// | `media` | 4+2 | 4 MiB | 1.5× | 2 disks or 1 node |
    /// | `archive` | 3+3 | 3 MiB | 2× | 3 disks, or 1 node and 1 more disk |
    pub fn defaults() -> PolicySet {
        let named = [
            (
                "general",
                StoragePolicy {
                    k: 2,
                    m: 1,
                    stripe_size: 1 << 20,
                },
            ),
            (
                "media",
                StoragePolicy {
                    k: 4,
                    m: 2,
                    stripe_size: 4 << 20,
                },
            ),
            (
                "archive",
                StoragePolicy {
                    k: 3,
                    m: 3,
                    stripe_size: 3 << 20,
                },
            ),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_owned(), p))
        .collect();
        PolicySet {
            named,
            default: "general".into(),
            directories: BTreeMap::new(),
            inline_max: DEFAULT_INLINE_MAX,
        }
    }

    /// A set holding only `policy`, named `name`, as the default.
    pub fn single(name: &str, policy: StoragePolicy) -> PolicySet {
        PolicySet {
            named: [(name.to_owned(), policy)].into(),
            default: name.to_owned(),
            directories: BTreeMap::new(),
            inline_max: DEFAULT_INLINE_MAX,
        }
    }

    /// Stripes of at most this many bytes are kept in the metadata instead of as chunk
    /// files (0: never). Such a stripe is replicated with the metadata, on every node of a
    /// cluster, and is not rebuilt from chunk folders' index files.
    pub fn inline_max(&self) -> u64 {
        self.inline_max
    }

    /// Sets [`PolicySet::inline_max`]; `field` names the setting in errors.
    pub fn set_inline_max(&mut self, bytes: u64, field: &str) -> Result<(), PolicyError> {
        if bytes > INLINE_MAX_LIMIT {
            return Err(PolicyError::Invalid {
                field: field.into(),
                reason: format!(
                    "{bytes} bytes is more than the {INLINE_MAX_LIMIT} a stripe kept in the metadata may hold; use 0 to 64KiB"
                ),
            });
        }
        self.inline_max = bytes;
        Ok(())
    }

    /// Adds or replaces a named policy.
    pub fn insert(&mut self, name: String, policy: StoragePolicy) {
        self.named.insert(name, policy);
    }

    /// Makes `name` the default; `field` names the config key in the error.
    pub fn set_default(&mut self, name: &str, field: &str) -> Result<(), PolicyError> {
        self.check_name(name, field)?;
        self.default = name.to_owned();
        Ok(())
    }

    /// Sets the override of directory `path` (normalized) to policy `name`.
    pub fn set_directory(
        &mut self,
        path: &str,
        name: &str,
        field: &str,
    ) -> Result<(), PolicyError> {
        self.check_name(name, field)?;
        self.directories.insert(path.to_owned(), name.to_owned());
        Ok(())
    }

    /// Checks that a policy named `name` exists; `field` names where the name was used.
    pub fn check_name(&self, name: &str, field: &str) -> Result<&StoragePolicy, PolicyError> {
        self.named
            .get(name)
            .ok_or_else(|| PolicyError::UnknownName {
                field: field.to_owned(),
                name: name.to_owned(),
                known: self.named.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&StoragePolicy> {
        self.named.get(name)
    }

    /// Every named policy, by name.
    pub fn named(&self) -> &BTreeMap<String, StoragePolicy> {
        &self.named
    }

    /// The default policy's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The per-directory overrides from the config, path → policy name.
    pub fn directories(&self) -> &BTreeMap<String, String> {
        &self.directories
    }

    /// The policy of a new file at `path` (normalized): the nearest ancestor directory with an
    /// override wins; at one directory an override from `dynamic` (set through the API or the
    /// `user.wormfs.policy` attribute, looked up by directory path) beats the config's.
    /// Without any, the default. Returns the policy's name and layout.
    pub fn resolve(
        &self,
        path: &str,
        dynamic: impl Fn(&str) -> Option<String>,
    ) -> Result<(String, StoragePolicy), PolicyError> {
        self.resolve_with_origin(path, dynamic)
            .map(|(name, policy, _)| (name, policy))
    }

    /// [`PolicySet::resolve`], also naming the directory whose override decided (`None`
    /// when the default did).
    pub fn resolve_with_origin(
        &self,
        path: &str,
        dynamic: impl Fn(&str) -> Option<String>,
    ) -> Result<(String, StoragePolicy, Option<String>), PolicyError> {
        let mut dir = parent(path);
        let (name, origin) = loop {
            let Some(d) = dir else {
                break (self.default.clone(), None);
            };
            if let Some(name) = dynamic(d).or_else(|| self.directories.get(d).cloned()) {
                break (name, Some(d.to_owned()));
            }
            dir = parent(d);
        };
        let policy = *self.check_name(&name, &format!("policy of {path}"))?;
        Ok((name, policy, origin))
    }
}

/// The parent directory of a normalized path; `None` for `/`.
fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Normalizes an absolute path: one `/` between components, no trailing `/`, no `.`; `..`
/// and relative paths are refused with the reason.
pub fn normalize_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{path}` is not an absolute path (start it with `/`)"
        ));
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(format!("`{path}` contains `..`"));
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_three_nodes_of_two_disks() {
        let set = PolicySet::defaults();
        for (name, p) in set.named() {
            assert!(p.width() <= 6, "{name} needs {} disks", p.width());
            let per_node = p.width().div_ceil(3);
            assert!(
                usize::from(p.m) >= per_node,
                "{name} does not survive a node"
            );
            assert_eq!(
                StoragePolicy::new(p.k, p.m, p.stripe_size, name).as_ref(),
                Ok(p)
            );
        }
        assert_eq!(set.default_name(), "general");
    }

    #[test]
    fn nearest_ancestor_wins() {
        let mut set = PolicySet::defaults();
        set.set_directory("/media", "media", "t").unwrap();
        set.set_directory("/media/keep", "archive", "t").unwrap();
        let r = |p: &str| set.resolve(p, |_| None).unwrap().0;
        assert_eq!(r("/file"), "general");
        assert_eq!(
            r("/media"),
            "general",
            "a directory's own override applies to its children"
        );
        assert_eq!(r("/media/film.mkv"), "media");
        assert_eq!(r("/media/keep/a/b/c"), "archive");
        assert_eq!(r("/mediaextra/x"), "general");
        // a dynamic override beats the config at the same level and nearer ones win
        let dynamic = |d: &str| (d == "/media/keep/a").then(|| "general".to_string());
        assert_eq!(
            set.resolve("/media/keep/a/b", dynamic).unwrap().0,
            "general"
        );
        let dynamic = |d: &str| (d == "/media").then(|| "archive".to_string());
        assert_eq!(set.resolve("/media/x", dynamic).unwrap().0, "archive");
        assert_eq!(
            set.resolve_with_origin("/media/keep/a/b", |_| None)
                .unwrap()
                .2
                .as_deref(),
            Some("/media/keep")
        );
        assert_eq!(
            set.resolve_with_origin("/other/x", |_| None).unwrap().2,
            None
        );
    }

    #[test]
    fn unknown_dynamic_name_is_an_error() {
        let set = PolicySet::defaults();
        let e = set.resolve("/a/b", |_| Some("gone".into())).unwrap_err();
        assert!(e.to_string().contains("no policy is named `gone`"), "{e}");
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize_path("/a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert!(normalize_path("a/b").is_err());
        assert!(normalize_path("/a/../b").is_err());
    }
}
