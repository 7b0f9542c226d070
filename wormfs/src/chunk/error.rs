//! Why bytes are not a valid chunk.

/// A chunk file that cannot be trusted, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkFormatError {
    /// Fewer bytes than the smallest possible header.
    #[error("chunk is {len} bytes, shorter than the {min}-byte minimum header")]
    TooShort {
        /// Bytes available.
        len: usize,
        /// Smallest valid header.
        min: usize,
    },
    /// The magic bytes are not WormFS's.
    #[error("not a WormFS chunk: magic is {found:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// What was found.
        found: [u8; 4],
        /// What a chunk starts with.
        expected: [u8; 4],
    },
    /// A format version this build does not know.
    #[error(
        "chunk format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The header says it is longer than the file, or its parts do not add up.
    #[error("chunk header length {header_len} is invalid for a {file_len}-byte chunk: {reason}")]
    BadLength {
        /// Header length claimed.
        header_len: usize,
        /// Bytes available.
        file_len: usize,
        /// What does not add up.
        reason: &'static str,
    },
    /// The header's own checksum does not match.
    #[error("chunk header checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    HeaderChecksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// The whole-chunk checksum does not match.
    #[error("chunk checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    ChunkChecksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A block's checksum does not match.
    #[error("chunk block {block} checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    BlockChecksum {
        /// Which block.
        block: usize,
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// The node holding the chunk found it corrupt (the reason is its verification's).
    #[error("the node holding the chunk found it corrupt: {reason}")]
    CorruptOnHolder {
        /// What the holder's verification found.
        reason: String,
    },
    /// A field holds a value no writer produces.
    #[error("chunk header field `{field}` is invalid: {reason}")]
    BadField {
        /// The field's name, as in `docs/chunk-format.md`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
