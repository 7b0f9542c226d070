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

/// CRC32 (IEEE) of `A ‖ B` from `crc_a` = CRC32 of `A`, `crc_b` = CRC32 of `B`, and
/// `len_b` = `B`'s length, without the bytes (`crc32fast` multiplies modulo the polynomial,
/// once per bit set in `len_b`).
pub fn crc32_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut a = crc32fast::Hasher::new_with_initial(crc_a);
    a.combine(&crc32fast::Hasher::new_with_initial_len(crc_b, len_b));
    a.finalize()
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
                crc32_combine(crc32(a), crc32(b), b.len() as u64),
                crc32(&bytes)
            );
        }
    }

    #[test]
    fn a_long_part_combines_too() {
        let b = vec![0xA5u8; 3 * 65_536 + 17];
        assert_eq!(
            crc32_combine(crc32(b"head"), crc32(&b), b.len() as u64),
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
