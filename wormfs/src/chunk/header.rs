//! The chunk header: layout, encoding and strict parsing.

use super::ChunkFormatError;
use crate::checksum::crc32;
use crate::ids::{ChunkKey, FileId};

/// The 4 bytes at offset 4 of every chunk file.
pub const MAGIC: [u8; 4] = *b"WFCH";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the header before the block checksums (see `docs/chunk-format.md`).
pub const FIXED_HEADER_LEN: usize = 82;
/// Bytes of shard data covered by each block checksum.
pub const BLOCK_SIZE: u32 = 64 * 1024;

/// Compression applied to the chunk data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionAlgo {
    /// Stored as is (code 0).
    None,
}

/// The erasure code that produced the chunk. It names the *code*, not a crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErasureAlgo {
    /// No coding: the chunk is a plain copy of its part of the stripe (code 0, m = 0).
    None,
    /// Reed-Solomon over GF(2^8), polynomial 0x11D, the systematic Vandermonde-derived matrix
    /// of `reed-solomon-erasure` v6 (code 1).
    ReedSolomonGf8Vandermonde,
}

/// The checksum used for every checksum in the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlgo {
    /// CRC32, IEEE polynomial (code 1).
    Crc32,
}

/// Everything a chunk file says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Which chunk this is (file, stripe, generation, shard index).
    pub key: ChunkKey,
    /// File offset of the stripe's first byte.
    pub stripe_start: u64,
    /// File offset just past the stripe's last byte.
    pub stripe_end: u64,
    /// Data shards of the stripe.
    pub k: u16,
    /// Parity shards of the stripe.
    pub m: u16,
    /// CRC32 of the stripe's bytes.
    pub stripe_crc: u32,
    /// Compression of the data.
    pub compression: CompressionAlgo,
    /// The erasure code.
    pub erasure: ErasureAlgo,
    /// The checksum algorithm.
    pub checksum: ChecksumAlgo,
    /// Bytes of shard data after the header.
    pub data_len: u64,
    /// Bytes per block checksum.
    pub block_size: u32,
    /// CRC32 of each `block_size` block of the data; the last block may be shorter.
    pub block_crcs: Vec<u32>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl ChunkHeader {
    /// The header's length in bytes when encoded.
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN + 4 * self.block_crcs.len() + 4
    }

    /// The number of block checksums a data length needs.
    pub fn blocks_for(data_len: u64, block_size: u32) -> u64 {
        data_len.div_ceil(u64::from(block_size.max(1)))
    }

    /// Encodes the header. The first 4 bytes (the whole-chunk checksum) are left zero: they
    /// can only be known once the data is known, see [`super::ChunkFile::encode`].
    pub fn encode(&self) -> Vec<u8> {
        let len = self.encoded_len();
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
        b.extend_from_slice(&self.key.file.0.to_le_bytes());
        b.extend_from_slice(&self.key.stripe.to_le_bytes());
        b.extend_from_slice(&self.key.generation.to_le_bytes());
        b.extend_from_slice(&self.stripe_start.to_le_bytes());
        b.extend_from_slice(&self.stripe_end.to_le_bytes());
        b.extend_from_slice(&self.key.index.to_le_bytes());
        b.extend_from_slice(&self.k.to_le_bytes());
        b.extend_from_slice(&self.m.to_le_bytes());
        b.push(match self.compression {
            CompressionAlgo::None => 0,
        });
        b.push(match self.erasure {
            ErasureAlgo::None => 0,
            ErasureAlgo::ReedSolomonGf8Vandermonde => 1,
        });
        b.push(match self.checksum {
            ChecksumAlgo::Crc32 => 1,
        });
        b.push(0); // flags, reserved
        b.extend_from_slice(&self.stripe_crc.to_le_bytes());
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.extend_from_slice(&self.data_len.to_le_bytes());
        b.extend_from_slice(
            &u32::try_from(self.block_crcs.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        debug_assert_eq!(b.len(), FIXED_HEADER_LEN);
        for c in &self.block_crcs {
            b.extend_from_slice(&c.to_le_bytes());
        }
        let header_crc = crc32(&b[4..]);
        b.extend_from_slice(&header_crc.to_le_bytes());
        b
    }

    /// Parses and checks the header at the start of `bytes`, which may be the whole chunk
    /// file or only its beginning; `file_len` is the length of the whole file. Checks the
    /// magic, version, lengths, the header checksum and every field's range. Does not check
    /// the whole-chunk checksum (see [`super::verify_chunk`]).
    pub fn parse(bytes: &[u8], file_len: u64) -> Result<ChunkHeader, ChunkFormatError> {
        let min = FIXED_HEADER_LEN + 4;
        if bytes.len() < min {
            return Err(ChunkFormatError::TooShort {
                len: bytes.len(),
                min,
            });
        }
        let magic: [u8; 4] = bytes[4..8].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(ChunkFormatError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let version = u16_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(ChunkFormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let header_len = usize::from(u16_at(bytes, 10));
        let file_len_usize = usize::try_from(file_len).unwrap_or(usize::MAX);
        let bad_len = |reason| ChunkFormatError::BadLength {
            header_len,
            file_len: file_len_usize,
            reason,
        };
        if header_len < min {
            return Err(bad_len("shorter than the fixed part"));
        }
        if header_len as u64 > file_len {
            return Err(bad_len("runs past the end of the file"));
        }
        if header_len > bytes.len() {
            return Err(bad_len("runs past the bytes given"));
        }
        let n_blocks = u32_at(bytes, 78) as usize;
        if FIXED_HEADER_LEN + 4 * n_blocks + 4 != header_len {
            return Err(bad_len("does not match the number of block checksums"));
        }
        let stored = u32_at(bytes, header_len - 4);
        let computed = crc32(&bytes[4..header_len - 4]);
        if stored != computed {
            return Err(ChunkFormatError::HeaderChecksum { stored, computed });
        }
        let bad = |field, reason: String| ChunkFormatError::BadField { field, reason };
        let key = ChunkKey {
            file: FileId(u64_at(bytes, 12)),
            stripe: u64_at(bytes, 20),
            generation: u64_at(bytes, 28),
            index: u16_at(bytes, 52),
        };
        let (stripe_start, stripe_end) = (u64_at(bytes, 36), u64_at(bytes, 44));
        if stripe_end <= stripe_start {
            return Err(bad(
                "stripe_end",
                format!("{stripe_end} is not after stripe_start {stripe_start}"),
            ));
        }
        let (k, m) = (u16_at(bytes, 54), u16_at(bytes, 56));
        if k == 0 || usize::from(k) + usize::from(m) > crate::stripe::MAX_SHARDS {
            return Err(bad("k", format!("k = {k}, m = {m} is not a valid code")));
        }
        if key.index >= k + m {
            return Err(bad(
                "chunk_index",
                format!("{} is not below k + m = {}", key.index, k + m),
            ));
        }
        let compression = match bytes[58] {
            0 => CompressionAlgo::None,
            c => return Err(bad("compression", format!("unknown algorithm {c}"))),
        };
        let erasure = match bytes[59] {
            0 if m == 0 => ErasureAlgo::None,
            1 if m > 0 => ErasureAlgo::ReedSolomonGf8Vandermonde,
            c => {
                return Err(bad(
                    "erasure",
                    format!("algorithm {c} is unknown or does not fit m = {m}"),
                ))
            }
        };
        let checksum = match bytes[60] {
            1 => ChecksumAlgo::Crc32,
            c => return Err(bad("checksum", format!("unknown algorithm {c}"))),
        };
        if bytes[61] != 0 {
            return Err(bad("flags", format!("unknown flags {:#04x}", bytes[61])));
        }
        let stripe_crc = u32_at(bytes, 62);
        let block_size = u32_at(bytes, 66);
        if block_size == 0 {
            return Err(bad("block_size", "is zero".into()));
        }
        let data_len = u64_at(bytes, 70);
        if (header_len as u64).checked_add(data_len) != Some(file_len) {
            return Err(bad_len("header plus data_len is not the file length"));
        }
        let stripe_len = stripe_end - stripe_start;
        if data_len != stripe_len.div_ceil(u64::from(k)) {
            return Err(bad(
                "data_len",
                format!("{data_len} does not fit a {stripe_len}-byte stripe over k = {k}"),
            ));
        }
        if Self::blocks_for(data_len, block_size) != n_blocks as u64 {
            return Err(bad(
                "block_count",
                format!("{n_blocks} blocks do not cover {data_len} bytes of {block_size}"),
            ));
        }
        let block_crcs = (0..n_blocks)
            .map(|i| u32_at(bytes, FIXED_HEADER_LEN + 4 * i))
            .collect();
        Ok(ChunkHeader {
            key,
            stripe_start,
            stripe_end,
            k,
            m,
            stripe_crc,
            compression,
            erasure,
            checksum,
            data_len,
            block_size,
            block_crcs,
        })
    }
}
