//! Admin API tokens: `wfs_` and 64 hex digits (256 random bits). A node keeps only a
//! token's SHA-256 ([`token_hash`]); the token is shown once, when it is made.

/// The prefix of every token, so that one is recognised in a config or a leak scanner.
pub const TOKEN_PREFIX: &str = "wfs_";

/// A new random token.
pub fn new_token() -> Result<String, openssl::error::ErrorStack> {
    let mut b = [0u8; 32];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&b)))
}

/// `sha256(token)` in lowercase hex: what the metadata keeps.
pub fn token_hash(token: &str) -> String {
    hex(&openssl::sha::sha256(token.as_bytes()))
}

/// Writes `token` to a new file at `path`, readable by its owner only (mode 0600), and
/// syncs it. An existing file is an error: a token is never written over another.
pub fn write_token_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{token}")?;
    f.sync_all()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed_to_64_hex_digits() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 4 + 64, "{a}");
        let h = token_hash(&a);
        assert_eq!(h.len(), 64);
        assert_ne!(h, token_hash(&b));
        // the SHA-256 of "abc"
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
