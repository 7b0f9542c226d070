//! Where stripes begin and end in a file.

/// One stripe's place in its file: bytes `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeRange {
    /// The stripe's index in the file.
    pub index: u64,
    /// The file offset of the stripe's first byte.
    pub start: u64,
    /// The file offset just past the stripe's last byte.
    pub end: u64,
}

impl StripeRange {
    /// The number of bytes in the stripe.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when the stripe holds no bytes (never produced by [`Stripes`]).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Cuts a file of `file_size` bytes into stripes of `stripe_size` bytes.
#[derive(Clone, Copy, Debug)]
pub struct Stripes {
    stripe_size: u64,
    file_size: u64,
}

impl Stripes {
    /// The stripes of a file of `file_size` bytes. `stripe_size` must not be zero (policies
    /// guarantee it); a zero is treated as one byte rather than dividing by zero.
    pub fn new(stripe_size: u64, file_size: u64) -> Self {
        Stripes {
            stripe_size: stripe_size.max(1),
            file_size,
        }
    }

    /// How many stripes the file has (0 for an empty file).
    pub fn count(&self) -> u64 {
        self.file_size.div_ceil(self.stripe_size)
    }

    /// The stripe with this index, clipped to the file size; `None` past the end.
    pub fn get(&self, index: u64) -> Option<StripeRange> {
        let start = index.checked_mul(self.stripe_size)?;
        if start >= self.file_size {
            return None;
        }
        let end = start.saturating_add(self.stripe_size).min(self.file_size);
        Some(StripeRange { index, start, end })
    }

    /// The indexes of the stripes that hold any byte of `offset..offset + len`, clipped to the
    /// file size.
    pub fn covering(&self, offset: u64, len: u64) -> std::ops::Range<u64> {
        let end = offset.saturating_add(len).min(self.file_size);
        if offset >= end {
            return 0..0;
        }
        offset / self.stripe_size..end.div_ceil(self.stripe_size)
    }

    /// Every stripe of the file, in order.
    pub fn iter(&self) -> impl Iterator<Item = StripeRange> + '_ {
        (0..self.count()).filter_map(|i| self.get(i))
    }
}

/// The part of one data shard that a byte range of a stripe covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardPiece {
    /// The data shard's index: it holds the stripe's bytes from `shard × shard_len`.
    pub shard: usize,
    /// The first byte of the piece, from the shard's start.
    pub offset: u64,
    /// The piece's length in bytes.
    pub len: u64,
}

/// The pieces of the data shards (of `shard_len` bytes, at least 1) that hold bytes
/// `offset..offset + len` of a stripe of `stripe_len` bytes, in order; the range is
/// clipped to the stripe, so a range past its end has none.
pub fn shard_pieces(
    stripe_len: u64,
    shard_len: u64,
    offset: u64,
    len: u64,
) -> impl Iterator<Item = ShardPiece> {
    let shard_len = shard_len.max(1);
    let end = offset.saturating_add(len).min(stripe_len);
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let within = pos % shard_len;
        let piece = ShardPiece {
            shard: (pos / shard_len) as usize,
            offset: within,
            len: (shard_len - within).min(end - pos),
        };
        pos += piece.len;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_stripe_is_short() {
        let s = Stripes::new(10, 25);
        let all: Vec<_> = s.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(all, vec![(0, 10), (10, 20), (20, 25)]);
        assert_eq!(s.count(), 3);
        assert_eq!(s.get(3), None);
    }

    #[test]
    fn empty_file_has_no_stripes() {
        assert_eq!(Stripes::new(10, 0).count(), 0);
        assert_eq!(Stripes::new(10, 0).covering(0, 5), 0..0);
    }

    #[test]
    fn shard_pieces_cover_a_range_and_stop_at_the_stripe_s_end() {
        let pieces = |offset, len| {
            shard_pieces(25, 10, offset, len)
                .map(|p| (p.shard, p.offset, p.len))
                .collect::<Vec<_>>()
        };
        assert_eq!(pieces(0, 25), [(0, 0, 10), (1, 0, 10), (2, 0, 5)]);
        assert_eq!(pieces(8, 4), [(0, 8, 2), (1, 0, 2)]);
        assert_eq!(pieces(12, 3), [(1, 2, 3)]);
        assert_eq!(pieces(22, 100), [(2, 2, 3)]);
        assert!(pieces(25, 5).is_empty());
        assert!(pieces(3, 0).is_empty());
        assert!(shard_pieces(10, 4, u64::MAX, u64::MAX).next().is_none());
    }

    #[test]
    fn covering_ranges() {
        let s = Stripes::new(10, 100);
        assert_eq!(s.covering(0, 10), 0..1);
        assert_eq!(s.covering(9, 2), 0..2);
        assert_eq!(s.covering(95, 100), 9..10);
        assert_eq!(s.covering(100, 1), 0..0);
    }
}
