//! Identifiers shared by every layer.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A file system object's identity: its inode number. The root directory is [`FileId::ROOT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileId(pub u64);

impl FileId {
    /// The root directory's inode number (1, as FUSE expects).
    pub const ROOT: FileId = FileId(1);
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A storage node's identity (its configured name now, its libp2p peer id in a cluster).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_owned())
    }
}

/// A disk's identity, unique in the cluster. It is written in the disk's marker file so a
/// disk mounted at the wrong place is noticed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DiskId(pub String);

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DiskId {
    fn from(s: &str) -> Self {
        DiskId(s.to_owned())
    }
}

/// A chunk's identity: which file, which stripe of it, which write generation of that
/// stripe, and which of the stripe's `k + m` shards. Everything else about a chunk (its
/// disk, its folder) is where it is, not what it is.
///
/// The generation changes every time a stripe is rewritten, so the new chunks of a stripe
/// never overwrite the old ones before the new stripe's metadata is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkKey {
    /// The file the chunk belongs to.
    pub file: FileId,
    /// The stripe's index in the file (stripe `i` starts at byte `i × stripe_size`).
    pub stripe: u64,
    /// The write generation of the stripe.
    pub generation: u64,
    /// The shard index: `0..k` are data shards, `k..k+m` parity shards.
    pub index: u16,
}

impl ChunkKey {
    /// The chunk's file name inside its chunk folder, e.g. `f42_s7_g3_c1.chunk`. It spells
    /// the whole key, so a chunk folder listing alone tells which chunks are there.
    pub fn file_name(&self) -> String {
        format!(
            "f{}_s{}_g{}_c{}.chunk",
            self.file.0, self.stripe, self.generation, self.index
        )
    }

    /// Parses a name made by [`ChunkKey::file_name`]; `None` for anything else.
    pub fn parse_file_name(name: &str) -> Option<ChunkKey> {
        let rest = name.strip_suffix(".chunk")?;
        let mut parts = rest.split('_');
        let mut field = |prefix: char| -> Option<u64> {
            let p = parts.next()?;
            let digits = p.strip_prefix(prefix)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let key = ChunkKey {
            file: FileId(field('f')?),
            stripe: field('s')?,
            generation: field('g')?,
            index: u16::try_from(field('c')?).ok()?,
        };
        parts.next().is_none().then_some(key)
    }
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "file {} stripe {} gen {} chunk {}",
            self.file, self.stripe, self.generation, self.index
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_file_name_round_trips() {
        let key = ChunkKey {
            file: FileId(42),
            stripe: 7,
            generation: 3,
            index: 1,
        };
        assert_eq!(key.file_name(), "f42_s7_g3_c1.chunk");
        assert_eq!(ChunkKey::parse_file_name(&key.file_name()), Some(key));
    }

    #[test]
    fn foreign_names_are_not_chunks() {
        for name in [
            "index",
            "f1_s2_g3.chunk",
            "f1_s2_g3_c1.tmp",
            "f1_s2_g3_c99999.chunk",
            "f_s2_g3_c1.chunk",
            "f1_s2_g3_c1_x.chunk",
            "f+1_s2_g3_c1.chunk",
        ] {
            assert_eq!(ChunkKey::parse_file_name(name), None, "{name}");
        }
    }
}
