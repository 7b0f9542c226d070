//! Client identity files: the user name and 256-bit key a client presents to the nodes
//! (TLS 1.3 external PSK, see [`super::tls`]), and the nodes it may try.
//!
//! ```toml
//! # WormFS client identity. Secret: anyone who has this file is this user.
//! user = "alice"
//! key = "9f2c…64 hex digits…"
//! nodes = ["10.0.0.1:7070", "10.0.0.2:7070"]
//! ```
//!
//! The file must be readable by its owner only (mode 0600, as `wormfs user add` writes it);
//! a file others can read is refused, as ssh refuses such a private key.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

/// Environment variable naming the identity file (when no `--identity` is given).
pub const IDENTITY_ENV: &str = "WORMFS_IDENTITY";

/// The file name a node writes its first admin identity to, in its data directory.
pub const ADMIN_IDENTITY_FILE: &str = "admin.identity";

/// A user's name and key, and the nodes to try.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name (the PSK identity).
    pub user: String,
    /// The 256-bit pre-shared key.
    pub key: [u8; 32],
    /// gRPC addresses of the cluster's nodes (may be empty).
    pub nodes: Vec<String>,
}

impl std::fmt::Debug for Identity {
    // never the key
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    user: String,
    key: String,
    #[serde(default)]
    nodes: Vec<String>,
}

/// A new random 256-bit key.
pub fn new_key() -> io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    openssl::rand::rand_bytes(&mut key)
        .map_err(|e| io::Error::other(format!("draw a random key: {e}")))?;
    Ok(key)
}

/// `key` as 64 lowercase hex digits.
pub fn to_hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Checks a user name: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("user name `{name}` must have 1 to 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "user name `{name}` has `{c}`; use letters, digits, `.`, `_`, `-` and `@`"
        ));
    }
    Ok(())
}

impl Identity {
    /// The identity file's text, as [`Identity::write`] writes it.
    pub fn to_text(&self) -> io::Result<String> {
        let body = toml::to_string(&IdentityFile {
            user: self.user.clone(),
            key: to_hex(&self.key),
            nodes: self.nodes.clone(),
        })
        .map_err(io::Error::other)?;
        Ok(format!(
            "# WormFS client identity. Secret: anyone who has this file is user `{}`.\n\
             # See docs/security.md.\n{body}",
            self.user
        ))
    }

    /// Reads the identity file at `path`, refusing one that others can read.
    pub fn read(path: &Path) -> io::Result<Identity> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("read identity file `{shown}`: {e}")))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "identity file `{shown}` can be read by others (mode {mode:04o}): it is a \
                     secret key; run `chmod 600 {shown}`"
                ),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("read identity file `{shown}`: {e}")))?;
        let file: IdentityFile = toml::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{shown}` is not a WormFS identity file: {e}"),
            )
        })?;
        check_user_name(&file.user)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("`{shown}`: {e}")))?;
        let key = from_hex(&file.key).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{shown}`: `key` must be 64 hex digits (a 256-bit key)"),
            )
        })?;
        Ok(Identity {
            user: file.user,
            key,
            nodes: file.nodes,
        })
    }

    /// Writes the identity to `path` with mode 0600, atomically (a new file is renamed over
    /// the old one, so a reader never sees half a key).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = self.to_text()?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)?;
        }
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other(format!("`{}` is not a file path", path.display())))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("write identity file `{}`: {e}", path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.identity");
        let id = Identity {
            user: "alice".into(),
            key: new_key().unwrap(),
            nodes: vec!["127.0.0.1:7070".into()],
        };
        id.write(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identity::read(&path).unwrap(), id);
        assert!(
            !format!("{id:?}").contains(&to_hex(&id.key)),
            "Debug shows the key"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::read(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn bad_identity_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.identity");
        use std::os::unix::fs::OpenOptionsExt;
        let write = |text: &str| {
            let _ = std::fs::remove_file(&path);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        };
        write("user = \"a\"\nkey = \"abcd\"\n");
        assert!(Identity::read(&path)
            .unwrap_err()
            .to_string()
            .contains("64 hex digits"));
        write(&format!("user = \"a b\"\nkey = \"{}\"\n", "00".repeat(32)));
        assert!(Identity::read(&path)
            .unwrap_err()
            .to_string()
            .contains("has ` `"));
        write("nonsense");
        assert!(Identity::read(&path)
            .unwrap_err()
            .to_string()
            .contains("not a WormFS identity file"));
    }
}
