//! Checksums. WormFS uses CRC32 (IEEE polynomial, as computed by `crc32fast`) everywhere:
//! per chunk file, per block of chunk data, per stripe, per index record.

/// CRC32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// CRC32 (IEEE) of the concatenation of `parts`, without concatenating them.
pub fn crc32_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// The CRC32 polynomial, bit-reversed (the order `crc32fast` computes in).
const POLY: u32 = 0xEDB8_8320;

/// `a × b` modulo the CRC polynomial, both bit-reversed (bit 31 is x⁰).
const fn mul_mod_poly(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut product = 0u32;
    while m != 0 {
        if a & m != 0 {
            product ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `X_POW_2N[n]` is x^(2ⁿ) modulo the polynomial.
const X_POW_2N: [u32; 64] = {
    let mut t = [0u32; 64];
    t[0] = 1 << 30; // x¹
    let mut n = 1;
    while n < 64 {
        t[n] = mul_mod_poly(t[n - 1], t[n - 1]);
        n += 1;
    }
    t
};

/// x^(8 × `len`) modulo the polynomial: what shifting a CRC past `len` bytes multiplies it by.
pub fn crc32_shift(len: u64) -> u32 {
    let mut power = 1u32 << 31; // x⁰
    let (mut n, mut k) = (len, 3usize); // 8 × len = len × 2³
    while n != 0 {
        if n & 1 != 0 {
            power = mul_mod_poly(X_POW_2N[k % 64], power);
        }
        n >>= 1;
        k += 1;
    }
    power
}

/// CRC32 (IEEE) of `A ‖ B` from `crc_a` = CRC32 of `A`, `crc_b` = CRC32 of `B`, and `shift`
/// = [`crc32_shift`] of `B`'s length: a few hundred instructions, instead of reading the
/// bytes again.
pub fn crc32_combine(crc_a: u32, crc_b: u32, shift: u32) -> u32 {
    mul_mod_poly(shift, crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Combining the CRCs of two parts gives the CRC of the whole, at every split.
        #[test]
        fn combined_crcs_are_the_crc_of_the_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(bytes.len() + 1);
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(
                crc32_combine(crc32(a), crc32(b), crc32_shift(b.len() as u64)),
                crc32(&bytes)
            );
        }
    }

    #[test]
    fn a_long_part_combines_too() {
        let b = vec![0xA5u8; 3 * 65_536 + 17];
        assert_eq!(
            crc32_combine(crc32(b"head"), crc32(&b), crc32_shift(b.len() as u64)),
            crc32_parts([&b"head"[..], &b])
        );
    }

    #[test]
    fn known_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn parts_equal_whole() {
        assert_eq!(crc32_parts([&b"1234"[..], b"56789"]), crc32(b"123456789"));
    }
}
