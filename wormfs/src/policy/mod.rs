//! Storage policies: how a file is coded (`k`, `m`) and cut (stripe size), named policies,
//! the global default and per-directory overrides with nearest-ancestor resolution.
//!
//! A policy applies when a file is created and is recorded with the file; changing a
//! directory's policy never rewrites existing files.

mod config;
mod set;

pub use config::{DirectoryPolicyConfig, PolicyConfig, PolicyDefinition};
pub use set::{normalize_path, PolicySet, DEFAULT_INLINE_MAX, INLINE_MAX_LIMIT};

use serde::{Deserialize, Serialize};

/// The smallest stripe a policy may have.
pub const MIN_STRIPE_SIZE: u64 = 4 * 1024;
/// The largest stripe a policy may have (stripes travel whole in one message).
pub const MAX_STRIPE_SIZE: u64 = 64 * 1024 * 1024;

/// A validated coding layout: `k` data + `m` parity chunks per stripe of `stripe_size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoragePolicy {
    /// Data shards per stripe.
    pub k: u16,
    /// Parity shards per stripe: how many chunks of a stripe may be lost.
    pub m: u16,
    /// Bytes per stripe (the last stripe of a file may be shorter).
    pub stripe_size: u64,
}

/// A policy that is not valid, or a policy name that does not resolve, with the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A field holds a value no policy may have.
    #[error("`{field}`: {reason}")]
    Invalid {
        /// The config key, e.g. `policies.named.media.k`.
        field: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A name that no policy has.
    #[error("`{field}`: no policy is named `{name}` (known: {known})")]
    UnknownName {
        /// Where the name was used.
        field: String,
        /// The name.
        name: String,
        /// The names that exist, comma separated.
        known: String,
    },
    /// The TOML does not parse.
    #[error("policy configuration does not parse: {0}")]
    Toml(String),
}

impl StoragePolicy {
    /// Checks a layout; `field` prefixes the error (e.g. `policies.named.media`).
    pub fn new(
        k: u16,
        m: u16,
        stripe_size: u64,
        field: &str,
    ) -> Result<StoragePolicy, PolicyError> {
        let invalid = |name: &str, reason: String| PolicyError::Invalid {
            field: format!("{field}.{name}"),
            reason,
        };
        if k == 0 {
            return Err(invalid(
                "k",
                "must be at least 1 (the number of data chunks per stripe)".into(),
            ));
        }
        if usize::from(k) + usize::from(m) > crate::stripe::MAX_SHARDS {
            return Err(invalid(
                "m",
                format!(
                    "k + m = {} is more than the {} chunks a stripe can have",
                    k + m,
                    crate::stripe::MAX_SHARDS
                ),
            ));
        }
        if stripe_size == 0 {
            return Err(invalid("stripe_size", "must not be zero".into()));
        }
        if !(MIN_STRIPE_SIZE..=MAX_STRIPE_SIZE).contains(&stripe_size) {
            return Err(invalid(
                "stripe_size",
                format!(
                    "{} is outside {}..={}",
                    crate::size::ByteSize(stripe_size),
                    crate::size::ByteSize(MIN_STRIPE_SIZE),
                    crate::size::ByteSize(MAX_STRIPE_SIZE)
                ),
            ));
        }
        if stripe_size % 4096 != 0 {
            return Err(invalid(
                "stripe_size",
                format!("{stripe_size} bytes is not a multiple of 4 KiB"),
            ));
        }
        if stripe_size % u64::from(k) != 0 {
            return Err(invalid(
                "stripe_size",
                format!(
                    "{} does not divide into k = {k} equal chunks; pick a multiple of {k} × 4 KiB",
                    crate::size::ByteSize(stripe_size)
                ),
            ));
        }
        Ok(StoragePolicy { k, m, stripe_size })
    }

    /// Chunks per stripe: `k + m`.
    pub fn width(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// The size of each chunk of a full stripe.
    pub fn chunk_size(&self) -> u64 {
        self.stripe_size / u64::from(self.k)
    }
}

impl std::fmt::Display for StoragePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}+{} with {} stripes",
            self.k,
            self.m,
            crate::size::ByteSize(self.stripe_size)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let cases: &[(u16, u16, u64, &str)] = &[
            (0, 1, 1 << 20, "p.k"),
            (200, 57, 1 << 20, "p.m"),
            (2, 1, 0, "p.stripe_size"),
            (2, 1, 1000, "p.stripe_size"),
            (2, 1, 128 << 20, "p.stripe_size"),
            (2, 1, (1 << 20) + 2, "p.stripe_size"),
            (3, 1, 1 << 20, "p.stripe_size"),
        ];
        for &(k, m, s, field) in cases {
            match StoragePolicy::new(k, m, s, "p") {
                Err(PolicyError::Invalid { field: f, reason }) => {
                    assert_eq!(f, field, "{k}+{m}/{s}: {reason}")
                }
                other => panic!("{k}+{m}/{s}: {other:?}"),
            }
        }
        assert!(StoragePolicy::new(3, 1, 3 << 20, "p").is_ok());
        assert!(StoragePolicy::new(1, 0, 4096, "p").is_ok());
    }
}
