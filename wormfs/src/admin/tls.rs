//! HTTPS for the admin listener: a certificate the operator names, or one the node makes
//! for itself at its first start (self-signed, kept in its data directory), and the
//! certificate's SHA-256 fingerprint, which the node logs so that a browser's or `curl`'s
//! warning can be checked against it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate file a node makes for itself, in its data directory.
pub const SELF_CERT_FILE: &str = "admin-cert.pem";
/// Its key, beside it (mode 0600).
pub const SELF_KEY_FILE: &str = "admin-key.pem";

/// A TLS setup for the admin listener.
#[derive(Clone)]
pub struct AdminTls {
    /// Accepts TLS connections with the certificate.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// `sha256(certificate)` as colon-separated upper-case hex pairs (`openssl x509
    /// -fingerprint -sha256` prints the same).
    pub fingerprint: String,
    /// The certificate file.
    pub cert: PathBuf,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTls")
            .field("fingerprint", &self.fingerprint)
            .field("cert", &self.cert)
            .finish()
    }
}

/// The fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    openssl::sha::sha256(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The fingerprint of the first certificate in PEM file `cert`, as the node logs it.
pub fn file_fingerprint(cert: &Path) -> Result<String, String> {
    let first = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("certificate `{}`: {e}", cert.display()))?
        .next()
        .ok_or_else(|| format!("certificate `{}` holds no certificate", cert.display()))?
        .map_err(|e| format!("certificate `{}`: {e}", cert.display()))?;
    Ok(fingerprint(first.as_ref()))
}

/// The TLS setup from `cert` and `key` (PEM files) when given, else from the node's own
/// certificate in `data_dir`, made at the first call for the names `names` (the listen
/// address and `localhost`) and kept for later starts.
pub fn load_or_create(
    data_dir: &Path,
    given: Option<(&Path, &Path)>,
    names: &[String],
) -> Result<AdminTls, String> {
    let (cert_path, key_path) = match given {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => {
            let (c, k) = (data_dir.join(SELF_CERT_FILE), data_dir.join(SELF_KEY_FILE));
            if !c.exists() || !k.exists() {
                make_self_signed(&c, &k, names)?;
            }
            (c, k)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect())
        .map_err(|e| format!("certificate `{}`: {e}", cert_path.display()))?;
    let first = certs.first().ok_or_else(|| {
        format!(
            "certificate `{}` holds no certificate (PEM `BEGIN CERTIFICATE`)",
            cert_path.display()
        )
    })?;
    let fingerprint = fingerprint(first.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("key `{}`: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "certificate `{}` and key `{}` do not make a TLS identity: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(AdminTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        cert: cert_path,
    })
}

fn make_self_signed(cert: &Path, key: &Path, names: &[String]) -> Result<(), String> {
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("make a certificate for {names:?}: {e}"))?;
    let write = |path: &Path, text: String, mode| {
        crate::rpc::nodes::write_atomic_mode(path, text.as_bytes(), mode)
            .map_err(|e| format!("write `{}`: {e}", path.display()))
    };
    write(key, made.key_pair.serialize_pem(), 0o600)?;
    write(cert, made.cert.pem(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_node_makes_its_certificate_once_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        let a = load_or_create(dir.path(), None, &names).unwrap();
        let b = load_or_create(dir.path(), None, &names).unwrap();
        assert_eq!(
            a.fingerprint, b.fingerprint,
            "the same certificate at a restart"
        );
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1, "{}", a.fingerprint);
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(SELF_KEY_FILE), 0o600);
        // a given pair is used as it is; a damaged one is named
        let given = (
            dir.path().join(SELF_CERT_FILE),
            dir.path().join(SELF_KEY_FILE),
        );
        let c = load_or_create(
            Path::new("/nonexistent"),
            Some((&given.0, &given.1)),
            &names,
        )
        .unwrap();
        assert_eq!(c.fingerprint, a.fingerprint);
        std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
        let e = load_or_create(
            dir.path(),
            Some((&dir.path().join("bad.pem"), &given.1)),
            &names,
        )
        .unwrap_err();
        assert!(e.contains("bad.pem"), "{e}");
    }
}
