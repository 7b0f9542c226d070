//! The chunk file format: a variable-length, checksummed, self-describing header followed by
//! the shard's bytes. See `docs/chunk-format.md` for the byte layout.
//!
//! Parsing is strict: a wrong magic, an unknown version, a length that runs past the end of
//! the file, an unknown algorithm or a checksum mismatch is a [`ChunkFormatError`], never a
//! panic.

mod error;
mod file;
mod header;

pub use error::ChunkFormatError;
pub use file::{verify_chunk, ChunkFile};
pub use header::{
    ChecksumAlgo, ChunkHeader, CompressionAlgo, ErasureAlgo, BLOCK_SIZE, FIXED_HEADER_LEN,
    FORMAT_VERSION, MAGIC,
};
