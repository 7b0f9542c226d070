//! Chunk folder names: a 10-character alphanumeric hash of a file's path at creation.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The number of top-level folders on each disk, named `1` to `1000`.
pub const TOP_FOLDERS: u64 = 1000;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const NAME_LEN: usize = 10;

/// A chunk folder's name. Made from the file's full path when the file is created and
/// recorded in its metadata, so renaming a file does not move its chunks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChunkFolder(String);

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // final avalanche (splitmix64 finalizer) so near paths land far apart
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl ChunkFolder {
    /// The chunk folder of a file created at `path`.
    pub fn for_path(path: &str) -> ChunkFolder {
        let mut h = fnv1a(path.as_bytes(), 0);
        let mut name = [0u8; NAME_LEN];
        for c in name.iter_mut() {
            *c = ALPHABET[(h % 36) as usize];
            h /= 36;
        }
        ChunkFolder(String::from_utf8(name.to_vec()).expect("ASCII"))
    }

    /// The folder's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The top-level folder (`1`–`1000`) the chunk folder sits in, derived from its name.
    pub fn top(&self) -> u64 {
        1 + fnv1a(self.0.as_bytes(), 1) % TOP_FOLDERS
    }

    /// The folder's path relative to the disk root, e.g. `417/k3j9x0a2bq`.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.top(), self.0)
    }
}

impl TryFrom<String> for ChunkFolder {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == NAME_LEN && s.bytes().all(|b| ALPHABET.contains(&b)) {
            Ok(ChunkFolder(s))
        } else {
            Err(format!(
                "`{s}` is not a chunk folder name (10 characters of 0-9 a-z)"
            ))
        }
    }
}

impl From<ChunkFolder> for String {
    fn from(f: ChunkFolder) -> String {
        f.0
    }
}

impl fmt::Display for ChunkFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn stable_and_well_formed() {
        let a = ChunkFolder::for_path("/photos/cat.jpg");
        assert_eq!(a, ChunkFolder::for_path("/photos/cat.jpg"));
        assert_eq!(a.as_str().len(), 10);
        assert!(ChunkFolder::try_from(a.as_str().to_owned()).is_ok());
        assert!((1..=1000).contains(&a.top()));
        assert!(ChunkFolder::try_from("ABC".to_owned()).is_err());
    }

    #[test]
    fn spread_over_top_folders() {
        let tops: BTreeSet<u64> = (0..5000)
            .map(|i| ChunkFolder::for_path(&format!("/f{i}")).top())
            .collect();
        assert!(
            tops.len() > 950,
            "only {} of 1000 top folders used",
            tops.len()
        );
        let names: BTreeSet<ChunkFolder> = (0..5000)
            .map(|i| ChunkFolder::for_path(&format!("/f{i}")))
            .collect();
        assert_eq!(names.len(), 5000);
    }
}
