//! The records metadata is made of.

use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use crate::store::{ChunkAddr, ChunkFolder};
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// What kind of object an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file, stored as stripes.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

#[cfg(feature = "local")]
impl FileKind {
    pub(crate) fn code(self) -> i64 {
        match self {
            FileKind::File => 1,
            FileKind::Directory => 2,
            FileKind::Symlink => 3,
            FileKind::Fifo => 4,
            FileKind::Socket => 5,
            FileKind::CharDevice => 6,
            FileKind::BlockDevice => 7,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<FileKind> {
        Some(match code {
            1 => FileKind::File,
            2 => FileKind::Directory,
            3 => FileKind::Symlink,
            4 => FileKind::Fifo,
            5 => FileKind::Socket,
            6 => FileKind::CharDevice,
            7 => FileKind::BlockDevice,
            _ => return None,
        })
    }
}

/// How a regular file is coded and where its chunks gather; fixed when it is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLayout {
    /// The policy's name at creation.
    pub policy: String,
    /// Data chunks per stripe.
    pub k: u16,
    /// Parity chunks per stripe.
    pub m: u16,
    /// Bytes per stripe.
    pub stripe_size: u64,
    /// The chunk folder, from the path at creation.
    pub folder: ChunkFolder,
}

/// An inode's attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    /// Inode number.
    pub ino: FileId,
    /// Kind.
    pub kind: FileKind,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    /// Hard links (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (symlinks: the target's length).
    pub size: u64,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification of contents.
    pub mtime: Timestamp,
    /// Last change of attributes.
    pub ctime: Timestamp,
    /// Creation.
    pub crtime: Timestamp,
    /// Regular files: their layout.
    pub layout: Option<FileLayout>,
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// The inode it names.
    pub ino: FileId,
    /// The inode's kind.
    pub kind: FileKind,
}

/// The health of one chunk as metadata knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChunkState {
    /// Written and not known to be damaged.
    Ok,
    /// Found missing (by a read or a scrub).
    Missing,
    /// Found failing its checksum.
    Corrupt,
}

#[cfg(feature = "local")]
impl ChunkState {
    pub(crate) fn code(self) -> i64 {
        match self {
            ChunkState::Ok => 0,
            ChunkState::Missing => 1,
            ChunkState::Corrupt => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> ChunkState {
        match code {
            1 => ChunkState::Missing,
            2 => ChunkState::Corrupt,
            _ => ChunkState::Ok,
        }
    }
}

/// One chunk of a stripe: where it is and what it should be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Shard index in the stripe.
    pub index: u16,
    /// The node holding it.
    pub node: NodeId,
    /// The disk holding it.
    pub disk: DiskId,
    /// Chunk file size.
    pub size: u64,
    /// Whole-chunk checksum.
    pub crc: u32,
    /// Known health.
    pub state: ChunkState,
}

/// One stripe of a file and its chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeRecord {
    /// Stripe index in the file.
    pub index: u64,
    /// Write generation (part of every chunk's key).
    pub generation: u64,
    /// Bytes in the stripe.
    pub len: u64,
    /// CRC32 of the stripe's bytes.
    pub crc: u32,
    /// Data shards.
    pub k: u16,
    /// Parity shards.
    pub m: u16,
    /// The chunks, one per shard index present; none when the stripe is kept inline.
    pub chunks: Vec<ChunkRecord>,
    /// The stripe's bytes, when it is small enough to be kept in the metadata itself
    /// instead of as `k + m` chunk files (see [`crate::policy::PolicySet::inline_max`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "inline_bytes"
    )]
    pub inline: Option<Vec<u8>>,
}

/// Inline stripe bytes: a hex string in human-readable formats (the replicated log is
/// JSON, where a byte array would take four characters a byte), raw bytes elsewhere.
mod inline_bytes {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) if s.is_human_readable() => {
                // a small file's bytes ride every log entry, append and call of its commit:
                // two table lookups a byte, no per-character UTF-8 work
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut text = Vec::with_capacity(b.len() * 2);
                for x in b {
                    text.extend_from_slice(&[HEX[usize::from(x >> 4)], HEX[usize::from(x & 15)]]);
                }
                let text = String::from_utf8(text).expect("hex digits are ASCII");
                s.serialize_some(&text)
            }
            Some(b) => s.serialize_some(&Bytes(b)),
        }
    }

    struct Bytes<'a>(&'a [u8]);
    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;
    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Vec<u8>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("inline stripe bytes (hex string or bytes) or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(BytesVisitor).map(Some)
        }
    }

    /// Each byte's value as a lowercase hex digit, 0xff for any other byte.
    const HEX_VALUE: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut d = 0;
        while d < 10 {
            t[b'0' as usize + d] = d as u8;
            d += 1;
        }
        let mut d = 0;
        while d < 6 {
            t[b'a' as usize + d] = 10 + d as u8;
            d += 1;
        }
        t
    };

    struct BytesVisitor;
    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a hex string or bytes")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            if v.len() % 2 != 0 {
                return Err(E::custom("inline stripe bytes: odd number of hex digits"));
            }
            // table lookups, and one check of every digit at the end
            let mut out = Vec::with_capacity(v.len() / 2);
            let mut seen = 0u8;
            for p in v.as_bytes().chunks_exact(2) {
                let (hi, lo) = (HEX_VALUE[usize::from(p[0])], HEX_VALUE[usize::from(p[1])]);
                seen |= hi | lo;
                out.push(hi << 4 | lo);
            }
            if seen > 15 {
                return Err(E::custom("inline stripe bytes: not a lowercase hex digit"));
            }
            Ok(out)
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// A chunk's full address in the cluster: node, disk, folder and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// The node holding it.
    pub node: NodeId,
    /// The disk holding it.
    pub disk: DiskId,
    /// Its chunk folder.
    pub folder: ChunkFolder,
    /// The chunk.
    pub key: ChunkKey,
}

impl ChunkLocation {
    /// The address within its disk.
    pub fn addr(&self) -> ChunkAddr {
        ChunkAddr {
            folder: self.folder.clone(),
            key: self.key,
        }
    }
}

/// A storage node as metadata records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node.
    pub id: NodeId,
    /// Where peers and clients reach it.
    pub address: String,
}

/// A disk as metadata records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The disk.
    pub id: DiskId,
    /// Its node.
    pub node: NodeId,
    /// Its directory on the node.
    pub path: String,
    /// Capacity in bytes.
    pub total: u64,
    /// Free bytes when last reported.
    pub free: u64,
}

/// A user a client identity names: the key its TLS pre-shared key must match, and what it
/// may act as. Replicated through the metadata log so every node knows every user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user's name: the PSK identity a client presents.
    pub name: String,
    /// The 256-bit pre-shared key.
    pub key: [u8; 32],
    /// The uid the user acts as.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// May change membership, users, workers and disks, and act as any uid.
    pub admin: bool,
    /// A trusted host (a mount serving many local users): may act as the uid and groups its
    /// caller passes.
    pub host: bool,
    /// When the user was added, or its key last rotated.
    pub created: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    // never the key
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("groups", &self.groups)
            .field("admin", &self.admin)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::StripeRecord;

    fn record(inline: Option<Vec<u8>>) -> StripeRecord {
        StripeRecord {
            index: 0,
            generation: 1,
            len: inline.as_ref().map_or(0, |b| b.len() as u64),
            crc: 0,
            k: 1,
            m: 0,
            chunks: Vec::new(),
            inline,
        }
    }

    /// Inline bytes are lowercase hex in JSON, every byte value round-trips, and a string
    /// that is not lowercase hex of whole bytes is refused saying why.
    #[test]
    fn inline_bytes_are_lowercase_hex_in_json() {
        let all: Vec<u8> = (0..=255).collect();
        let json = serde_json::to_string(&record(Some(all.clone()))).unwrap();
        assert!(json.contains("\"inline\":\"000102"), "{json}");
        assert!(json.contains("fdfeff\""), "{json}");
        let back: StripeRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.inline, Some(all));
        let none = serde_json::to_string(&record(None)).unwrap();
        assert!(!none.contains("inline"), "{none}");
        assert_eq!(
            serde_json::from_str::<StripeRecord>(&none).unwrap().inline,
            None
        );
        for (text, why) in [
            ("0g", "not a lowercase hex digit"),
            ("AB", "not a lowercase hex digit"),
            ("a/", "not a lowercase hex digit"),
            ("abc", "odd number of hex digits"),
        ] {
            let bad = json_with(text);
            let e = serde_json::from_str::<StripeRecord>(&bad).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
        }
    }

    fn json_with(inline: &str) -> String {
        format!(
            r#"{{"index":0,"generation":1,"len":1,"crc":0,"k":1,"m":0,"chunks":[],"inline":"{inline}"}}"#
        )
    }
}
