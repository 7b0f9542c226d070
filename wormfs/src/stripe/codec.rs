//! Reed-Solomon coding of one stripe into `k + m` shards, and back.
//!
//! The code is Reed-Solomon over GF(2^8) with the field polynomial 0x11D and the
//! Vandermonde-derived systematic matrix of the `reed-solomon-erasure` crate (v6). The
//! chunk header names this code, not the crate, so another implementation of the same
//! matrix could read and write the same chunks.
//!
//! This codec is such an implementation: it takes the parity rows of the matrix from
//! `reed-solomon-erasure` (the parity of each unit stripe) and multiplies shards by them
//! with the region kernels of [`super::gf`] (AVX2 or SSSE3 when the CPU has them, checked
//! at run time), so it writes the very bytes the crate writes. Where the CPU has neither,
//! the crate codes. Tests compare every output with the crate's.

use super::gf::{self, Kernel};
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
    /// The `m × k` parity rows of the code's matrix.
    parity: Vec<Vec<u8>>,
    /// The region kernel, or `None` to code with `reed-solomon-erasure`.
    kernel: Option<Kernel>,
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
        let parity = rs
            .as_ref()
            .map_or_else(Vec::new, |rs| parity_rows(rs, k, m));
        let kernel = Some(Kernel::best()).filter(|k| *k != Kernel::Scalar);
        Ok(ErasureCodec {
            k,
            m,
            rs,
            parity,
            kernel,
        })
    }

    /// The same code, computed by `kernel` (`None`: by `reed-solomon-erasure`), for tests
    /// and benchmarks that compare the two.
    pub fn with_kernel(mut self, kernel: Option<Kernel>) -> ErasureCodec {
        self.kernel = kernel;
        self
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
        if let (Some(kernel), true) = (self.kernel, self.m > 0) {
            let (data, parity) = shards.split_at_mut(self.k);
            for off in (0..shard_len).step_by(SEGMENT) {
                let end = (off + SEGMENT).min(shard_len);
                for (row, out) in self.parity.iter().zip(parity.iter_mut()) {
                    for (j, (c, input)) in row.iter().zip(data.iter()).enumerate() {
                        kernel.mul_region(*c, &input[off..end], &mut out[off..end], j == 0);
                    }
                }
            }
        } else if let Some(rs) = &self.rs {
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
        if let Some(kernel) = self.kernel {
            self.reconstruct_with(kernel, shards, data_only, expected);
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

impl ErasureCodec {
    /// The row of the code's `(k + m) × k` matrix that gives shard `i`.
    fn row(&self, i: usize) -> Vec<u8> {
        if i < self.k {
            (0..self.k).map(|j| u8::from(i == j)).collect()
        } else {
            self.parity[i - self.k].clone()
        }
    }

    /// [`Self::reconstruct`] with a region kernel: the data shards from the first `k`
    /// present shards through the inverse of their rows, then (unless `data_only`) the
    /// missing parity from the data. The caller checked that `k` shards of `len` bytes are
    /// present and some are missing.
    fn reconstruct_with(
        &self,
        kernel: Kernel,
        shards: &mut [Option<Vec<u8>>],
        data_only: bool,
        len: usize,
    ) {
        let k = self.k;
        let used: Vec<usize> = (0..shards.len())
            .filter(|i| shards[*i].is_some())
            .take(k)
            .collect();
        let rows: Vec<Vec<u8>> = used.iter().map(|i| self.row(*i)).collect();
        let inverse =
            gf::invert(&rows).expect("any k rows of a Reed-Solomon matrix are independent");
        let lost_data: Vec<usize> = (0..k).filter(|i| shards[*i].is_none()).collect();
        let mut rebuilt: Vec<Vec<u8>> = vec![vec![0; len]; lost_data.len()];
        {
            let inputs: Vec<&[u8]> = used
                .iter()
                .map(|i| shards[*i].as_deref().expect("present"))
                .collect();
            multiply(kernel, &lost_data, &inverse, &inputs, &mut rebuilt, len);
        }
        for (i, shard) in lost_data.into_iter().zip(rebuilt) {
            shards[i] = Some(shard);
        }
        if data_only {
            return;
        }
        let lost_parity: Vec<usize> = (0..self.m).filter(|p| shards[k + p].is_none()).collect();
        let mut rebuilt: Vec<Vec<u8>> = vec![vec![0; len]; lost_parity.len()];
        {
            let data: Vec<&[u8]> = shards[..k]
                .iter()
                .map(|s| s.as_deref().expect("rebuilt"))
                .collect();
            multiply(kernel, &lost_parity, &self.parity, &data, &mut rebuilt, len);
        }
        for (p, shard) in lost_parity.into_iter().zip(rebuilt) {
            shards[k + p] = Some(shard);
        }
    }
}

/// `outputs[t] = Σ_j matrix[rows[t]][j] · inputs[j]`, segment by segment so the shards
/// being worked on stay in the CPU cache.
fn multiply(
    kernel: Kernel,
    rows: &[usize],
    matrix: &[Vec<u8>],
    inputs: &[&[u8]],
    outputs: &mut [Vec<u8>],
    len: usize,
) {
    for off in (0..len).step_by(SEGMENT) {
        let end = (off + SEGMENT).min(len);
        for (r, out) in rows.iter().zip(outputs.iter_mut()) {
            for (j, (c, input)) in matrix[*r].iter().zip(inputs).enumerate() {
                kernel.mul_region(*c, &input[off..end], &mut out[off..end], j == 0);
            }
        }
    }
}

/// The parity rows of `rs`'s matrix: the parity of the stripe whose data shard `j` is the
/// byte 1 and every other the byte 0 is column `j` of those rows (the code is linear).
fn parity_rows(rs: &ReedSolomon, k: usize, m: usize) -> Vec<Vec<u8>> {
    let mut rows = vec![vec![0u8; k]; m];
    for j in 0..k {
        let mut unit: Vec<Vec<u8>> = (0..k + m).map(|i| vec![u8::from(i == j)]).collect();
        rs.encode(&mut unit)
            .expect("k + m one-byte shards fit the code");
        for (p, row) in rows.iter_mut().enumerate() {
            row[j] = unit[k + p][0];
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `0..n` in an order the seed decides (Fisher-Yates over an LCG).
    fn shuffled(n: usize, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        order
    }

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

        /// Every kernel this CPU has writes the parity `reed-solomon-erasure` writes, for
        /// any k, m and stripe length, and rebuilds any m lost shards (data and parity) to
        /// the very bytes it wrote.
        #[test]
        fn every_kernel_codes_byte_for_byte_as_the_reference(
            k in 1usize..=20,
            m in 1usize..=8,
            data in proptest::collection::vec(any::<u8>(), 0..70_000),
            seed in any::<u64>(),
        ) {
            let reference = ErasureCodec::new(k, m).unwrap().with_kernel(None);
            let want = reference.encode(&data);
            let order = shuffled(k + m, seed);
            let lost = &order[..1 + (seed as usize) % m];
            for kernel in Kernel::available() {
                let codec = ErasureCodec::new(k, m).unwrap().with_kernel(Some(kernel));
                let got = codec.encode(&data);
                prop_assert_eq!(&got.shards, &want.shards, "{:?} {}+{}", kernel, k, m);
                let mut all = drop_shards(&got, lost);
                codec.reconstruct_all(&mut all).unwrap();
                for (i, s) in all.iter().enumerate() {
                    prop_assert_eq!(s.as_ref().unwrap(), &want.shards[i], "{:?} shard {}", kernel, i);
                }
                let back = codec.decode(drop_shards(&got, lost), data.len(), got.stripe_crc).unwrap();
                prop_assert_eq!(&back, &data);
            }
        }

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
            let order = shuffled(k + m, seed);
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
