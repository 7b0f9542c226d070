//! GF(2^8) with the field polynomial 0x11D (x^8 + x^4 + x^3 + x^2 + 1), the field of the
//! stripe code: products, inverses, matrix inversion, and the region kernels the codec
//! runs over shards (`dst ^= c · src`), in AVX2 or SSSE3 where the CPU has them (checked
//! at run time, never assumed from the build) and in plain Rust elsewhere.
//!
//! A region product uses the split-table method: `c · x = c · (x & 15) ^ c · (x >> 4 << 4)`,
//! two 16-entry tables per constant, which a byte shuffle looks up 32 (AVX2) or 16
//! (SSSE3) bytes at a time.

/// `exp[i] = 2^i` (doubled, so a sum of two logs needs no reduction) and `log[2^i] = i`.
const fn tables() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11D;
        }
        i += 1;
    }
    while i < 512 {
        exp[i] = exp[i - 255];
        i += 1;
    }
    (exp, log)
}

const TABLES: ([u8; 512], [u8; 256]) = tables();
static EXP: [u8; 512] = TABLES.0;
static LOG: [u8; 256] = TABLES.1;

/// `a · b` in the field.
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[usize::from(LOG[usize::from(a)]) + usize::from(LOG[usize::from(b)])]
    }
}

/// `1 / a`; `a` must not be 0.
pub fn inv(a: u8) -> u8 {
    debug_assert!(a != 0, "0 has no inverse");
    EXP[255 - usize::from(LOG[usize::from(a)])]
}

/// The inverse of the square matrix `a` (rows of equal length), or `None` when it is
/// singular.
pub fn invert(a: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    let n = a.len();
    let mut m: Vec<Vec<u8>> = a.to_vec();
    let mut out: Vec<Vec<u8>> = (0..n)
        .map(|i| (0..n).map(|j| u8::from(i == j)).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n).find(|&r| m[r][col] != 0)?;
        m.swap(col, pivot);
        out.swap(col, pivot);
        let scale = inv(m[col][col]);
        for j in 0..n {
            m[col][j] = mul(m[col][j], scale);
            out[col][j] = mul(out[col][j], scale);
        }
        for r in 0..n {
            let f = m[r][col];
            if r == col || f == 0 {
                continue;
            }
            for j in 0..n {
                m[r][j] ^= mul(f, m[col][j]);
                out[r][j] ^= mul(f, out[col][j]);
            }
        }
    }
    Some(out)
}

/// How region products are computed on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 32 bytes at a time (x86-64 with AVX2).
    Avx2,
    /// 16 bytes at a time (x86-64 with SSSE3).
    Ssse3,
    /// A byte at a time, in plain Rust.
    Scalar,
}

impl Kernel {
    /// The fastest kernel this CPU runs, detected once at run time.
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Kernel::Avx2;
                }
                if std::arch::is_x86_feature_detected!("ssse3") {
                    return Kernel::Ssse3;
                }
            }
            Kernel::Scalar
        })
    }

    /// Every kernel this CPU runs (for tests that compare them).
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("ssse3") {
                all.push(Kernel::Ssse3);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
        }
        all
    }

    /// `dst ^= c · src` byte by byte (`dst` and `src` of one length); with `overwrite`,
    /// `dst = c · src`.
    pub fn mul_region(self, c: u8, src: &[u8], dst: &mut [u8], overwrite: bool) {
        assert_eq!(src.len(), dst.len(), "regions of one length");
        match (c, overwrite) {
            (0, true) => return dst.fill(0),
            (0, false) => return,
            (1, true) => return dst.copy_from_slice(src),
            _ => {}
        }
        let (lo, hi) = split_tables(c);
        let done = match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx2` is only chosen when the CPU reports AVX2 (`best`,
            // `available`), and the kernel stays within both slices.
            Kernel::Avx2 => unsafe { x86::mul_avx2(&lo, &hi, src, dst, overwrite) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for SSSE3.
            Kernel::Ssse3 => unsafe { x86::mul_ssse3(&lo, &hi, src, dst, overwrite) },
            _ => 0,
        };
        scalar(&lo, &hi, &src[done..], &mut dst[done..], overwrite);
    }
}

/// `c · x` for `x` in 0..16, and `c · (x << 4)` for `x` in 0..16.
fn split_tables(c: u8) -> ([u8; 16], [u8; 16]) {
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    for x in 0..16u8 {
        lo[usize::from(x)] = mul(c, x);
        hi[usize::from(x)] = mul(c, x << 4);
    }
    (lo, hi)
}

fn scalar(lo: &[u8; 16], hi: &[u8; 16], src: &[u8], dst: &mut [u8], overwrite: bool) {
    for (d, s) in dst.iter_mut().zip(src) {
        let p = lo[usize::from(s & 15)] ^ hi[usize::from(s >> 4)];
        *d = if overwrite { p } else { *d ^ p };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The AVX2 region product over the longest prefix of whole 32-byte blocks; returns
    /// its length.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mul_avx2(
        lo: &[u8; 16],
        hi: &[u8; 16],
        src: &[u8],
        dst: &mut [u8],
        overwrite: bool,
    ) -> usize {
        let tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast()));
        let thi = _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast()));
        let mask = _mm256_set1_epi8(0x0f);
        let n = src.len() / 32 * 32;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i < n {
            let x = _mm256_loadu_si256(s.add(i).cast());
            let l = _mm256_and_si256(x, mask);
            let h = _mm256_and_si256(_mm256_srli_epi64(x, 4), mask);
            let mut p = _mm256_xor_si256(_mm256_shuffle_epi8(tlo, l), _mm256_shuffle_epi8(thi, h));
            if !overwrite {
                p = _mm256_xor_si256(p, _mm256_loadu_si256(d.add(i).cast()));
            }
            _mm256_storeu_si256(d.add(i).cast(), p);
            i += 32;
        }
        n
    }

    /// The SSSE3 region product over the longest prefix of whole 16-byte blocks; returns
    /// its length.
    #[target_feature(enable = "ssse3")]
    pub(super) unsafe fn mul_ssse3(
        lo: &[u8; 16],
        hi: &[u8; 16],
        src: &[u8],
        dst: &mut [u8],
        overwrite: bool,
    ) -> usize {
        let tlo = _mm_loadu_si128(lo.as_ptr().cast());
        let thi = _mm_loadu_si128(hi.as_ptr().cast());
        let mask = _mm_set1_epi8(0x0f);
        let n = src.len() / 16 * 16;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        while i < n {
            let x = _mm_loadu_si128(s.add(i).cast());
            let l = _mm_and_si128(x, mask);
            let h = _mm_and_si128(_mm_srli_epi64(x, 4), mask);
            let mut p = _mm_xor_si128(_mm_shuffle_epi8(tlo, l), _mm_shuffle_epi8(thi, h));
            if !overwrite {
                p = _mm_xor_si128(p, _mm_loadu_si128(d.add(i).cast()));
            }
            _mm_storeu_si128(d.add(i).cast(), p);
            i += 16;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_field_is_a_field() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
        // x^8 = x^4 + x^3 + x^2 + 1 under 0x11D
        assert_eq!(mul(0x80, 2), 0x1D);
        // distributive over a sample
        for (a, b, c) in [(3u8, 7u8, 200u8), (0x53, 0xCA, 0x11), (255, 254, 253)] {
            assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
        }
    }

    #[test]
    fn inversion_inverts_and_finds_singular_matrices() {
        let a = vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 10]];
        let b = invert(&a).unwrap();
        for (i, row) in a.iter().enumerate() {
            for j in 0..3usize {
                let v = row
                    .iter()
                    .zip(&b)
                    .fold(0u8, |acc, (x, col)| acc ^ mul(*x, col[j]));
                assert_eq!(v, u8::from(i == j), "({i}, {j})");
            }
        }
        assert!(invert(&[vec![1, 2], vec![1, 2]]).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every kernel this CPU has computes what the field's `mul` does, for any constant,
        /// length (whole blocks and tails) and offset, adding and overwriting.
        #[test]
        fn every_kernel_matches_the_field(
            c in any::<u8>(),
            src in proptest::collection::vec(any::<u8>(), 0..300),
            seed in any::<u8>(),
            skip in 0usize..5,
        ) {
            let src = &src[skip.min(src.len())..];
            let base: Vec<u8> = (0..src.len()).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            for kernel in Kernel::available() {
                for overwrite in [false, true] {
                    let mut dst = base.clone();
                    kernel.mul_region(c, src, &mut dst, overwrite);
                    for i in 0..src.len() {
                        let want = mul(c, src[i]) ^ if overwrite { 0 } else { base[i] };
                        prop_assert_eq!(dst[i], want, "{:?} c={} i={}", kernel, c, i);
                    }
                }
            }
        }
    }
}
