//! The node's libp2p identity: an ed25519 key kept in the data directory, created on the
//! first start. The peer ID other nodes pin is derived from it, so losing the file gives the
//! node a new identity that its peers will refuse until an operator re-pins it.

use super::P2pError;
use libp2p::identity::Keypair;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The key file's name inside the data directory.
pub const KEY_FILE_NAME: &str = "node.key";

/// Loads the identity kept in `dir`, or creates one (mode 0600, fsynced) when there is none.
pub fn load_or_create_identity(dir: &Path) -> Result<Keypair, P2pError> {
    let path = dir.join(KEY_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| P2pError::Identity {
            path: path.clone(),
            reason: format!(
                "not a libp2p key ({e}); restore the node's key file or move it away to give \
                 the node a new identity (its peers must then be re-pinned)"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| P2pError::Identity {
                path: path.clone(),
                reason: format!("cannot encode a new key: {e}"),
            })?;
            let io = |e: std::io::Error| P2pError::Identity {
                path: path.clone(),
                reason: format!("cannot write a new key: {e}"),
            };
            fs::create_dir_all(dir).map_err(io)?;
            let tmp = dir.join(format!(".{KEY_FILE_NAME}.tmp"));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
            drop(f);
            fs::rename(&tmp, &path).map_err(io)?;
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(P2pError::Identity {
            path,
            reason: format!("cannot read it: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_a_restart_and_a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        fs::write(dir.path().join(KEY_FILE_NAME), b"garbage").unwrap();
        let err = load_or_create_identity(dir.path()).unwrap_err().to_string();
        assert!(err.contains(KEY_FILE_NAME), "{err}");
    }
}
