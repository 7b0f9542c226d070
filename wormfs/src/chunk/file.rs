//! A whole chunk file: header and data, built and verified.

use super::header::{ChecksumAlgo, ChunkHeader, CompressionAlgo, ErasureAlgo, BLOCK_SIZE};
use super::ChunkFormatError;
use crate::checksum::crc32;
use crate::ids::ChunkKey;

/// A chunk: its header and its shard bytes.
#[derive(Clone, Debug)]
pub struct ChunkFile {
    /// The header, as written or as parsed.
    pub header: ChunkHeader,
    /// The shard's bytes. A chunk made by [`ChunkFile::new`] remembers their CRC32 (from
    /// its block checksums) for [`ChunkFile::encode`]: make a new chunk rather than change
    /// them.
    pub data: Vec<u8>,
    /// CRC32 of `data`, where [`ChunkFile::new`] computed the block checksums itself.
    data_crc: Option<u32>,
}

/// Chunks are equal when their headers and data are.
impl PartialEq for ChunkFile {
    fn eq(&self, other: &ChunkFile) -> bool {
        self.header == other.header && self.data == other.data
    }
}

impl Eq for ChunkFile {}

impl ChunkFile {
    /// Builds a chunk for shard `key.index` of a stripe covering `stripe_start..stripe_end`,
    /// coded `k + m`, whose bytes have checksum `stripe_crc`.
    pub fn new(
        key: ChunkKey,
        stripe_start: u64,
        stripe_end: u64,
        k: u16,
        m: u16,
        stripe_crc: u32,
        data: Vec<u8>,
    ) -> ChunkFile {
        let block_crcs: Vec<u32> = data.chunks(BLOCK_SIZE as usize).map(crc32).collect();
        // below a few blocks, reading hot bytes again is as cheap as combining
        let data_crc = (data.len() >= COMBINE_FROM)
            .then(|| crc_of_blocks(&block_crcs, BLOCK_SIZE as usize, data.len()));
        let header = ChunkHeader {
            key,
            stripe_start,
            stripe_end,
            k,
            m,
            stripe_crc,
            compression: CompressionAlgo::None,
            erasure: if m == 0 {
                ErasureAlgo::None
            } else {
                ErasureAlgo::ReedSolomonGf8Vandermonde
            },
            checksum: ChecksumAlgo::Crc32,
            data_len: data.len() as u64,
            block_size: BLOCK_SIZE,
            block_crcs,
        };
        ChunkFile {
            header,
            data,
            data_crc,
        }
    }

    /// A chunk of `header` and `data` as they are (a header read or built elsewhere): its
    /// block checksums are not checked against the data, nor trusted to encode it.
    pub fn from_parts(header: ChunkHeader, data: Vec<u8>) -> ChunkFile {
        ChunkFile {
            header,
            data,
            data_crc: None,
        }
    }

    /// The chunk file's bytes: header (with the whole-chunk checksum filled in) then data.
    pub fn encode(&self) -> Vec<u8> {
        let (mut out, _) = self.encoded_header();
        out.extend_from_slice(&self.data);
        out
    }

    /// The chunk file's first bytes, the header with the whole-chunk checksum filled in, and
    /// that checksum: followed by [`ChunkFile::data`] they are [`ChunkFile::encode`]'s bytes,
    /// for writers that send the two parts without joining them.
    pub fn encoded_header(&self) -> (Vec<u8>, u32) {
        let mut head = self.header.encode();
        let crc = match self.data_crc {
            // known from the block checksums new() computed: the data is not read again
            Some(data) if self.header.data_len == self.data.len() as u64 => {
                crate::checksum::crc32_combine(crc32(&head[4..]), data, self.data.len() as u64)
            }
            _ => crate::checksum::crc32_parts([&head[4..], &self.data[..]]),
        };
        head[..4].copy_from_slice(&crc.to_le_bytes());
        (head, crc)
    }

    /// The whole-chunk checksum [`ChunkFile::encode`] writes at offset 0.
    pub fn checksum(&self) -> u32 {
        self.encoded_header().1
    }

    /// Parses and fully verifies a chunk file: header, whole-chunk checksum and every block.
    pub fn decode(bytes: &[u8]) -> Result<ChunkFile, ChunkFormatError> {
        let header = verify_chunk(bytes)?;
        let data = bytes[header.encoded_len()..].to_vec();
        Ok(ChunkFile::from_parts(header, data))
    }

    /// [`ChunkFile::decode`] of bytes the caller owns: the data keeps their buffer, moved
    /// down over the header, instead of being copied into a new one.
    pub fn decode_owned(mut bytes: Vec<u8>) -> Result<ChunkFile, ChunkFormatError> {
        let header = verify_chunk(&bytes)?;
        bytes.drain(..header.encoded_len());
        Ok(ChunkFile::from_parts(header, bytes))
    }

    /// The chunk's size on disk in bytes.
    pub fn encoded_len(&self) -> u64 {
        self.header.encoded_len() as u64 + self.data.len() as u64
    }
}

/// The data length from which a new chunk combines its block checksums into the data's,
/// instead of reading the data again to encode it. Combining costs up to a few µs (a
/// multiplication modulo the polynomial per bit set in each block's length, and in the
/// data's); a CRC pass over 256 KiB costs about that much when the bytes are in the caches,
/// and more when not.
const COMBINE_FROM: usize = 256 * 1024;

/// The CRC32 of `len` bytes from the CRC32s of their blocks of `block` bytes (the last one
/// shorter), combined without the bytes.
fn crc_of_blocks(block_crcs: &[u32], block: usize, len: usize) -> u32 {
    let mut crc = 0; // of no bytes
    for (i, block_crc) in block_crcs.iter().enumerate() {
        let n = block.min(len - i * block);
        crc = crate::checksum::crc32_combine(crc, *block_crc, n as u64);
    }
    crc
}

/// Verifies a whole chunk file and returns its header: the header checks of
/// [`ChunkHeader::parse`], then the whole-chunk checksum, which covers every byte after it
/// (block checksums serve reads of part of a chunk, see [`ChunkHeader::verify_blocks`]).
pub fn verify_chunk(bytes: &[u8]) -> Result<ChunkHeader, ChunkFormatError> {
    let header = ChunkHeader::parse(bytes, bytes.len() as u64)?;
    let stored = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let computed = crc32(&bytes[4..]);
    if stored != computed {
        return Err(ChunkFormatError::ChunkChecksum { stored, computed });
    }
    Ok(header)
}

impl ChunkHeader {
    /// Verifies `data`, the chunk's data bytes starting at data offset `first_block ×
    /// block_size`, against the block checksums. `data` must end on a block boundary or at
    /// the end of the chunk. Lets a partial read be trusted without reading the whole chunk.
    pub fn verify_blocks(&self, first_block: usize, data: &[u8]) -> Result<(), ChunkFormatError> {
        let start = first_block as u64 * u64::from(self.block_size);
        let end = start + data.len() as u64;
        if end > self.data_len
            || (end != self.data_len && data.len() % self.block_size as usize != 0)
        {
            return Err(ChunkFormatError::BadField {
                field: "block_crcs",
                reason: format!(
                    "range {start}..{end} does not end on a block boundary of {} data bytes",
                    self.data_len
                ),
            });
        }
        for (i, block) in data.chunks(self.block_size as usize).enumerate() {
            let block_no = first_block + i;
            let stored = self.block_crcs[block_no];
            let computed = crc32(block);
            if stored != computed {
                return Err(ChunkFormatError::BlockChecksum {
                    block: block_no,
                    stored,
                    computed,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{FIXED_HEADER_LEN, MAGIC};
    use crate::ids::FileId;
    use proptest::prelude::*;

    fn sample(data_len: usize) -> ChunkFile {
        let key = ChunkKey {
            file: FileId(9),
            stripe: 4,
            generation: 2,
            index: 1,
        };
        let k = 3u64;
        let data: Vec<u8> = (0..data_len).map(|i| (i * 7 % 251) as u8).collect();
        let stripe_len = data_len as u64 * k;
        ChunkFile::new(key, 1000, 1000 + stripe_len.max(1), 3, 2, 0xdead_beef, data)
    }

    /// The checksum a new chunk encodes with, combined from its block checksums, is the
    /// checksum of its bytes; a chunk from parts, whose blocks are not trusted, reads them.
    #[test]
    fn the_combined_checksum_is_the_checksum_of_the_bytes() {
        for len in [
            0,
            1,
            4095,
            65_536,
            200_001,
            COMBINE_FROM - 1,
            COMBINE_FROM,
            COMBINE_FROM + 1,
            300_007,
            1 << 20,
            (1 << 20) + 65_535,
        ] {
            let c = sample(len);
            assert_eq!(c.data_crc.is_some(), len >= COMBINE_FROM, "{len} bytes");
            let bytes = c.encode();
            let head = c.header.encode();
            let read = crate::checksum::crc32_parts([&head[4..], &c.data[..]]);
            assert_eq!(c.checksum(), read, "{len} bytes");
            if len > 0 {
                // (a chunk of no bytes is not a valid chunk of this stripe)
                assert_eq!(verify_chunk(&bytes).unwrap(), c.header, "{len} bytes");
            }
            // wrong block checksums do not make a wrong whole-chunk checksum
            let mut header = c.header.clone();
            if let Some(first) = header.block_crcs.first_mut() {
                *first ^= 1;
            }
            let parts = ChunkFile::from_parts(header.clone(), c.data.clone());
            let head = header.encode();
            let read = crate::checksum::crc32_parts([&head[4..], &c.data[..]]);
            assert_eq!(parts.checksum(), read, "{len} bytes, from parts");
        }
    }

    #[test]
    fn round_trips() {
        let c = sample(200_000);
        let bytes = c.encode();
        assert_eq!(bytes.len() as u64, c.encoded_len());
        assert_eq!(
            u32::from_le_bytes(bytes[..4].try_into().unwrap()),
            c.checksum()
        );
        assert_eq!(ChunkFile::decode(&bytes).unwrap(), c);
        assert_eq!(ChunkFile::decode_owned(bytes.clone()).unwrap(), c);
        // damage anywhere is found the same way by both
        let mut bad = bytes.clone();
        let at = bad.len() - 10;
        bad[at] ^= 1;
        assert_eq!(
            ChunkFile::decode_owned(bad.clone()).unwrap_err(),
            ChunkFile::decode(&bad).unwrap_err()
        );
        assert_eq!(c.header.block_crcs.len(), 4);
        assert_eq!(c.header.encoded_len(), FIXED_HEADER_LEN + 4 * 4 + 4);
    }

    #[test]
    fn typed_errors() {
        let bytes = sample(1000).encode();
        assert!(matches!(
            ChunkFile::decode(&bytes[..10]),
            Err(ChunkFormatError::TooShort { len: 10, .. })
        ));

        let mut b = bytes.clone();
        b[4] = b'X';
        assert_eq!(
            ChunkFile::decode(&b).unwrap_err(),
            ChunkFormatError::BadMagic {
                found: [b'X', MAGIC[1], MAGIC[2], MAGIC[3]],
                expected: MAGIC
            }
        );

        let mut b = bytes.clone();
        b[8] = 9;
        assert_eq!(
            ChunkFile::decode(&b).unwrap_err(),
            ChunkFormatError::UnsupportedVersion {
                found: 9,
                supported: 1
            }
        );

        // truncated data: the header says more bytes follow than the file has
        assert!(matches!(
            ChunkFile::decode(&bytes[..bytes.len() - 1]),
            Err(ChunkFormatError::BadLength { .. })
        ));

        // header_len past the end
        let mut b = bytes.clone();
        b[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            ChunkFile::decode(&b),
            Err(ChunkFormatError::BadLength { .. })
        ));

        // a flipped data byte
        let mut b = bytes.clone();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(
            ChunkFile::decode(&b),
            Err(ChunkFormatError::ChunkChecksum { .. })
        ));

        // a flipped header byte
        let mut b = bytes.clone();
        b[20] ^= 1;
        assert!(matches!(
            ChunkFile::decode(&b),
            Err(ChunkFormatError::HeaderChecksum { .. })
        ));
    }

    #[test]
    fn partial_reads_are_verified_by_block() {
        let c = sample(3 * BLOCK_SIZE as usize + 10);
        let h = &c.header;
        let bs = BLOCK_SIZE as usize;
        h.verify_blocks(1, &c.data[bs..3 * bs]).unwrap();
        h.verify_blocks(3, &c.data[3 * bs..]).unwrap();
        let mut bad = c.data[bs..2 * bs].to_vec();
        bad[5] ^= 0x40;
        assert!(matches!(
            h.verify_blocks(1, &bad),
            Err(ChunkFormatError::BlockChecksum { block: 1, .. })
        ));
        assert!(
            h.verify_blocks(1, &c.data[bs..bs + 5]).is_err(),
            "must end on a block boundary"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The parser never panics on arbitrary bytes, and accepts only what verifies.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(c) = ChunkFile::decode(&bytes) {
                prop_assert_eq!(&c.encode(), &bytes);
            }
            let _ = ChunkHeader::parse(&bytes, bytes.len() as u64 + 7);
        }

        /// Arbitrary mutations of a valid chunk are caught, never panic.
        #[test]
        fn mutations_are_caught(data_len in 1usize..3000, pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
            let c = sample(data_len);
            let mut b = c.encode();
            let at = pos.index(b.len());
            b[at] ^= xor;
            prop_assert!(ChunkFile::decode(&b).is_err());
        }

        /// Truncations and extensions of a valid chunk are caught.
        #[test]
        fn wrong_lengths_are_caught(data_len in 1usize..3000, cut in any::<prop::sample::Index>(), extra in proptest::collection::vec(any::<u8>(), 1..10)) {
            let b = sample(data_len).encode();
            let at = cut.index(b.len());
            prop_assert!(ChunkFile::decode(&b[..at]).is_err());
            let mut longer = b.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(ChunkFile::decode(&longer).is_err());
        }
    }

    /// Rewrites the header checksum and the whole-chunk checksum of a (mutated) chunk file
    /// where its header length allows, so that mutations reach the checks behind them.
    fn with_checksums_fixed(b: &[u8]) -> Vec<u8> {
        let mut b = b.to_vec();
        if b.len() >= 12 {
            let hlen = usize::from(u16::from_le_bytes([b[10], b[11]]));
            if (12..=b.len()).contains(&hlen) {
                let crc = crate::checksum::crc32(&b[4..hlen - 4]);
                b[hlen - 4..hlen].copy_from_slice(&crc.to_le_bytes());
            }
            let whole = crate::checksum::crc32(&b[4..]);
            b[..4].copy_from_slice(&whole.to_le_bytes());
        }
        b
    }

    /// Fuzz target: the chunk header and chunk file parsers never panic, and what they
    /// accept encodes back to the same bytes' meaning.
    #[test]
    fn fuzz_chunk_file() {
        use crate::chunk::ChunkHeader;
        use crate::fuzz;
        let mut corpus: Vec<Vec<u8>> = [0, 1, 100, 65_536, 65_537, 140_000]
            .into_iter()
            .map(|n| sample(n).encode())
            .collect();
        corpus.extend(fuzz::corpus("chunk_file"));
        let mut m = fuzz::Mutator::new(fuzz::seed(), &["WFCH"]);
        fuzz::run(
            "chunk_file",
            &corpus,
            fuzz::iterations(3000),
            &mut m,
            |input| {
                for b in [input.to_vec(), with_checksums_fixed(input)] {
                    for file_len in [b.len() as u64, (b.len() as u64).saturating_mul(2)] {
                        if let Ok(h) = ChunkHeader::parse(&b, file_len) {
                            let again = ChunkHeader::parse(&h.encode(), file_len);
                            assert_eq!(again.as_ref(), Ok(&h), "a parsed header re-encodes");
                        }
                    }
                    if let Ok(c) = ChunkFile::decode(&b) {
                        assert_eq!(c.encode(), b, "a decoded chunk file re-encodes exactly");
                    }
                }
            },
        );
    }
}
