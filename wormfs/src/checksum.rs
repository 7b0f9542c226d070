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

#[cfg(test)]
mod tests {
    use super::*;

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
