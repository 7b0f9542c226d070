//! Reed-Solomon coding of one stripe into `k + m` shards, and back.
//!
//! The code is Reed-Solomon over GF(2^8) with the field polynomial 0x11D and the
//! Vandermonde-derived systematic matrix of the `reed-solomon-erasure` crate (v6). The
//! chunk header names this code, not the crate, so another implementation of the same
//! matrix could read and write the same chunks.

use crate::checksum::crc32;
use reed_solomon_erasure::galois_8::ReedSolomon;

/// The largest number of shards (data + parity) a stripe may have over GF(2^8).
pub const MAX_SHARDS: usize = 256;

/// Bytes of each shard coded at a time, so the working set stays in the CPU cache.
const SEGMENT: usize = 32 * 1024;

/// Why a stripe could not be coded or rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// `k`/`m` out of range.
    #[error(
        "cannot code with k = {k}, m = {m}: k must be at least 1 and k + m at most {MAX_SHARDS}"
    )]
    BadParameters {
        /// Data shards asked for.
        k: usize,
        /// Parity shards asked for.
        m: usize,
    },
    /// Too many shards are missing to rebuild the stripe.
    #[error("stripe cannot be rebuilt: {present} of {total} chunks present, {needed} needed")]
    TooFewShards {
        /// Shards that were given.
        present: usize,
        /// Shards needed (k).
        needed: usize,
        /// All shards of the stripe (k + m).
        total: usize,
    },
    /// The caller passed shards of the wrong number or length.
    #[error("shard {index} has {actual} bytes where {expected} were expected")]
    ShardLength {
        /// Which shard.
        index: usize,
        /// Its length.
        actual: usize,
        /// The length every shard must have.
        expected: usize,
    },
    /// The caller passed the wrong number of shard slots.
    #[error("{actual} shard slots given where the code has {expected}")]
    ShardCount {
        /// Slots given.
        actual: usize,
        /// k + m.
        expected: usize,
    },
    /// The decoded bytes do not match the stripe checksum.
    #[error("stripe checksum mismatch after decoding: expected {expected:08x}, got {actual:08x}")]
    StripeChecksum {
        /// Checksum recorded when the stripe was written.
        expected: u32,
        /// Checksum of what came back.
        actual: u32,
    },
    /// The stripe length does not fit the shards.
    #[error("a stripe of {stripe_len} bytes does not fit {k} shards of {shard_len} bytes")]
    StripeLength {
        /// The stripe's recorded length.
        stripe_len: usize,
        /// Data shards.
        k: usize,
        /// Each shard's length.
        shard_len: usize,
    },
}

/// A stripe coded into shards, with the checksums that go into its chunk headers.
#[derive(Clone, Debug)]
pub struct EncodedStripe {
    /// `k` data shards then `m` parity shards, all of the same length.
    pub shards: Vec<Vec<u8>>,
    /// CRC32 of the stripe's bytes (before padding).
    pub stripe_crc: u32,
    /// The stripe's length in bytes.
    pub stripe_len: usize,
}

/// An erasure code with `k` data and `m` parity shards.
pub struct ErasureCodec {
    k: usize,
    m: usize,
    rs: Option<ReedSolomon>,
}

impl std::fmt::Debug for ErasureCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ErasureCodec({}+{})", self.k, self.m)
    }
}

impl ErasureCodec {
    /// A codec for `k` data and `m` parity shards. `m = 0` stores the data shards alone.
    pub fn new(k: usize, m: usize) -> Result<Self, CodecError> {
        if k == 0 || k + m > MAX_SHARDS {
            return Err(CodecError::BadParameters { k, m });
        }
        let rs = if m == 0 {
            None
        } else {
            Some(ReedSolomon::new(k, m).map_err(|_| CodecError::BadParameters { k, m })?)
        };
        Ok(ErasureCodec { k, m, rs })
    }

    /// Data shards.
    pub fn data_shards(&self) -> usize {
        self.k
    }

    /// Parity shards.
    pub fn parity_shards(&self) -> usize {
        self.m
    }

    /// The length of each shard of a stripe of `stripe_len` bytes.
    pub fn shard_len(&self, stripe_len: usize) -> usize {
        stripe_len.div_ceil(self.k)
    }

    /// Codes `stripe` into `k + m` shards.
    pub fn encode(&self, stripe: &[u8]) -> EncodedStripe {
        let shard_len = self.shard_len(stripe.len());
        let mut shards: Vec<Vec<u8>> = Vec::with_capacity(self.k + self.m);
        for i in 0..self.k {
            let lo = (i * shard_len).min(stripe.len());
            let hi = ((i + 1) * shard_len).min(stripe.len());
            let mut shard = Vec::with_capacity(shard_len);
            shard.extend_from_slice(&stripe[lo..hi]);
            shard.resize(shard_len, 0);
            shards.push(shard);
        }
        shards.resize_with(self.k + self.m, || vec![0; shard_len]);
        if let Some(rs) = &self.rs {
            // Code in segments so the k + m slices being worked on stay in the CPU cache.
            for off in (0..shard_len).step_by(SEGMENT) {
                let end = (off + SEGMENT).min(shard_len);
                let mut views: Vec<&mut [u8]> =
                    shards.iter_mut().map(|s| &mut s[off..end]).collect();
                rs.encode(&mut views)
                    .expect("shard count and lengths are built to match the code");
            }
        }
        EncodedStripe {
            shards,
            stripe_crc: crc32(stripe),
            stripe_len: stripe.len(),
        }
    }

    /// Rebuilds the missing shards in place (data and parity). Needs at least `k` present
    /// shards, all of one length. Used by repair, which rewrites every chunk.
    pub fn reconstruct_all(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), CodecError> {
        self.reconstruct(shards, false)
    }

    /// Rebuilds the stripe's bytes from at least `k` present shards and checks them against
    /// `stripe_crc`. Only missing *data* shards are computed.
    pub fn decode(
        &self,
        mut shards: Vec<Option<Vec<u8>>>,
        stripe_len: usize,
        stripe_crc: u32,
    ) -> Result<Vec<u8>, CodecError> {
        self.reconstruct(&mut shards, true)?;
        let shard_len = shards.iter().flatten().next().map_or(0, Vec::len);
        if stripe_len > shard_len * self.k || shard_len != self.shard_len(stripe_len) {
            return Err(CodecError::StripeLength {
                stripe_len,
                k: self.k,
                shard_len,
            });
        }
        let mut out = Vec::with_capacity(stripe_len);
        for shard in shards.iter().take(self.k).flatten() {
            let want = (stripe_len - out.len()).min(shard.len());
            out.extend_from_slice(&shard[..want]);
        }
        let actual = crc32(&out);
        if actual != stripe_crc {
            return Err(CodecError::StripeChecksum {
                expected: stripe_crc,
                actual,
            });
        }
        Ok(out)
    }

    fn reconstruct(
        &self,
        shards: &mut [Option<Vec<u8>>],
        data_only: bool,
    ) -> Result<(), CodecError> {
        let total = self.k + self.m;
        if shards.len() != total {
            return Err(CodecError::ShardCount {
                actual: shards.len(),
                expected: total,
            });
        }
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(CodecError::TooFewShards {
                present,
                needed: self.k,
                total,
            });
        }
        let expected = shards.iter().flatten().next().map_or(0, Vec::len);
        if let Some((index, s)) = shards
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|s| s.len() != expected).map(|s| (i, s)))
        {
            return Err(CodecError::ShardLength {
                index,
                actual: s.len(),
                expected,
            });
        }
        if present == total || (data_only && shards[..self.k].iter().all(Option::is_some)) {
            return Ok(());
        }
        if expected == 0 {
            for s in shards.iter_mut() {
                s.get_or_insert_with(Vec::new);
            }
            return Ok(());
        }
        let rs = self
            .rs
            .as_ref()
            .expect("m > 0 whenever a shard can be missing with k present");
        let present_mask: Vec<bool> = shards.iter().map(Option::is_some).collect();
        let mut full: Vec<Vec<u8>> = shards
            .iter_mut()
            .map(|s| s.take().unwrap_or_else(|| vec![0; expected]))
            .collect();
        for off in (0..expected).step_by(SEGMENT) {
            let end = (off + SEGMENT).min(expected);
            let mut views: Vec<(&mut [u8], bool)> = full
                .iter_mut()
                .zip(&present_mask)
                .map(|(s, p)| (&mut s[off..end], *p))
                .collect();
            let result = if data_only {
                rs.reconstruct_data(&mut views)
            } else {
                rs.reconstruct(&mut views)
            };
            result.map_err(|_| CodecError::TooFewShards {
                present,
                needed: self.k,
                total,
            })?;
        }
        for (i, (slot, shard)) in shards.iter_mut().zip(full).enumerate() {
            // After a data-only rebuild, missing parity shards were not computed: leave them out.
            if present_mask[i] || !data_only || i < self.k {
                *slot = Some(shard);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drop_shards(enc: &EncodedStripe, lost: &[usize]) -> Vec<Option<Vec<u8>>> {
        enc.shards
            .iter()
            .enumerate()
            .map(|(i, s)| (!lost.contains(&i)).then(|| s.clone()))
            .collect()
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            ErasureCodec::new(0, 1).unwrap_err(),
            CodecError::BadParameters { k: 0, m: 1 }
        );
        assert!(ErasureCodec::new(200, 57).is_err());
        assert!(ErasureCodec::new(200, 56).is_ok());
    }

    #[test]
    fn too_many_losses_say_how_many() {
        let codec = ErasureCodec::new(4, 2).unwrap();
        let enc = codec.encode(&[7u8; 1000]);
        let err = codec
            .decode(drop_shards(&enc, &[0, 3, 5]), 1000, enc.stripe_crc)
            .unwrap_err();
        assert_eq!(
            err,
            CodecError::TooFewShards {
                present: 3,
                needed: 4,
                total: 6
            }
        );
        assert_eq!(
            err.to_string(),
            "stripe cannot be rebuilt: 3 of 6 chunks present, 4 needed"
        );
    }

    #[test]
    fn wrong_checksum_is_caught() {
        let codec = ErasureCodec::new(2, 1).unwrap();
        let enc = codec.encode(b"hello world");
        let err = codec
            .decode(drop_shards(&enc, &[1]), 11, enc.stripe_crc ^ 1)
            .unwrap_err();
        assert!(matches!(err, CodecError::StripeChecksum { .. }));
    }

    #[test]
    fn mismatched_shard_lengths_are_refused() {
        let codec = ErasureCodec::new(2, 1).unwrap();
        let enc = codec.encode(b"hello world");
        let mut shards = drop_shards(&enc, &[0]);
        shards[2].as_mut().unwrap().push(0);
        assert!(matches!(
            codec.decode(shards, 11, enc.stripe_crc),
            Err(CodecError::ShardLength { index: 2, .. })
        ));
    }

    #[test]
    fn no_parity_works() {
        let codec = ErasureCodec::new(3, 0).unwrap();
        let enc = codec.encode(b"abcdefgh");
        assert_eq!(enc.shards.len(), 3);
        assert_eq!(
            codec
                .decode(drop_shards(&enc, &[]), 8, enc.stripe_crc)
                .unwrap(),
            b"abcdefgh"
        );
        assert!(matches!(
            codec.decode(drop_shards(&enc, &[1]), 8, enc.stripe_crc),
            Err(CodecError::TooFewShards {
                present: 2,
                needed: 3,
                total: 3
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_m_losses_come_back_identical(
            k in 1usize..=16,
            m in 0usize..=8,
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            seed in any::<u64>(),
        ) {
            let codec = ErasureCodec::new(k, m).unwrap();
            let enc = codec.encode(&data);
            prop_assert_eq!(enc.shards.len(), k + m);
            // Choose up to m distinct shards to lose, driven by the seed.
            let mut order: Vec<usize> = (0..k + m).collect();
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let lose = (seed as usize) % (m + 1);
            let lost = &order[..lose];
            let back = codec.decode(drop_shards(&enc, lost), data.len(), enc.stripe_crc).unwrap();
            prop_assert_eq!(&back, &data);

            let mut all = drop_shards(&enc, lost);
            codec.reconstruct_all(&mut all).unwrap();
            for (i, s) in all.iter().enumerate() {
                prop_assert_eq!(s.as_ref().unwrap(), &enc.shards[i]);
            }
        }
    }
}
