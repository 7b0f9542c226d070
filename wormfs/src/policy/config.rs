//! The TOML form of policies, as written in a node's config under `[policies]`.

use super::{PolicyError, PolicySet, StoragePolicy};
use crate::size::ByteSize;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[policies]` section of a node config.
///
/// ```toml
/// [policies]
/// default = "general"
///
/// [policies.named.photos]
/// k = 4
/// m = 2
/// stripe_size = "4MiB"
///
/// [[policies.directory]]
/// path = "/photos"
/// policy = "photos"
/// ```
///
/// Named policies are added to the built-in `general`, `media` and `archive` (a name given
/// here replaces the built-in one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy of every directory without an override (default `general`).
    #[serde(default)]
    pub default: Option<String>,
    /// Named policies.
    #[serde(default)]
    pub named: BTreeMap<String, PolicyDefinition>,
    /// Per-directory overrides.
    #[serde(default)]
    pub directory: Vec<DirectoryPolicyConfig>,
    /// Stripes of at most this size are kept in the metadata, not as chunk files (default
    /// one block, `"4KiB"`; `0` turns it off). See [`PolicySet::inline_max`].
    #[serde(default)]
    pub inline_max: Option<ByteSize>,
}

/// One named policy as written in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDefinition {
    /// Data chunks per stripe.
    pub k: u16,
    /// Parity chunks per stripe.
    pub m: u16,
    /// Bytes per stripe, e.g. `"4MiB"`.
    pub stripe_size: ByteSize,
}

/// One per-directory override as written in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryPolicyConfig {
    /// An absolute path in the file system, e.g. `/media/movies`.
    pub path: String,
    /// The name of the policy files created under it get.
    pub policy: String,
}

impl PolicyConfig {
    /// Parses a `[policies]` table written on its own (without the `[policies]` header).
    pub fn from_toml(text: &str) -> Result<PolicyConfig, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))
    }

    /// Validates every field and builds the [`PolicySet`]. Errors name the field, e.g.
    /// `policies.named.media.k` or `policies.directory[2].policy`.
    pub fn build(&self) -> Result<PolicySet, PolicyError> {
        let mut set = PolicySet::defaults();
        for (name, def) in &self.named {
            let field = format!("policies.named.{name}");
            if !valid_name(name) {
                return Err(PolicyError::Invalid {
                    field,
                    reason: "a policy name is 1 to 64 letters, digits, `-` or `_`".into(),
                });
            }
            let policy = StoragePolicy::new(def.k, def.m, def.stripe_size.0, &field)?;
            set.insert(name.clone(), policy);
        }
        if let Some(default) = &self.default {
            set.set_default(default, "policies.default")?;
        }
        if let Some(max) = self.inline_max {
            set.set_inline_max(max.0, "policies.inline_max")?;
        }
        for (i, dir) in self.directory.iter().enumerate() {
            let field = format!("policies.directory[{i}]");
            let path = super::normalize_path(&dir.path).map_err(|reason| PolicyError::Invalid {
                field: format!("{field}.path"),
                reason,
            })?;
            set.set_directory(&path, &dir.policy, &format!("{field}.policy"))?;
        }
        Ok(set)
    }
}

/// True for names made of 1–64 ASCII letters, digits, `-` and `_`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match PolicyConfig::from_toml(text).and_then(|c| c.build()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn full_config_parses() {
        let set = PolicyConfig::from_toml(
            r#"
            default = "media"
            [named.photos]
            k = 4
            m = 2
            stripe_size = "4MiB"
            [[directory]]
            path = "/photos/"
            policy = "photos"
            "#,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(set.default_name(), "media");
        assert_eq!(
            set.get("photos"),
            Some(&StoragePolicy {
                k: 4,
                m: 2,
                stripe_size: 4 << 20
            })
        );
        assert_eq!(
            set.resolve("/photos/2024/a.jpg", |_| None).unwrap().0,
            "photos"
        );
        assert_eq!(set.resolve("/other", |_| None).unwrap().0, "media");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "[named.x]\nk = 0\nm = 1\nstripe_size = \"1MiB\"",
                "`policies.named.x.k`",
            ),
            (
                "[named.x]\nk = 200\nm = 100\nstripe_size = \"1MiB\"",
                "`policies.named.x.m`",
            ),
            (
                "[named.x]\nk = 2\nm = 1\nstripe_size = 0",
                "`policies.named.x.stripe_size`",
            ),
            (
                "[named.x]\nk = 3\nm = 1\nstripe_size = \"1MiB\"",
                "does not divide into k = 3",
            ),
            (
                "default = \"nope\"",
                "`policies.default`: no policy is named `nope`",
            ),
            (
                "[[directory]]\npath = \"/a\"\npolicy = \"nope\"",
                "`policies.directory[0].policy`",
            ),
            (
                "[[directory]]\npath = \"relative\"\npolicy = \"media\"",
                "`policies.directory[0].path`",
            ),
            (
                "[named.\"a b\"]\nk = 2\nm = 1\nstripe_size = \"1MiB\"",
                "`policies.named.a b`",
            ),
            (
                "[named.x]\nk = 2\nm = 1\nstripe_size = \"1 parsec\"",
                "is not a size",
            ),
            ("colour = \"red\"", "unknown field `colour`"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "{text:?} gave {e:?}, wanted {want:?}");
        }
    }
}
