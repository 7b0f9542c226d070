//! The stripe engine: cutting files into stripes and coding stripes into chunks. Pure: no
//! I/O, no clock, no runtime.
//!
//! A file is a sequence of stripes of its policy's stripe size; only the last may be
//! shorter. Each stripe is coded into `k` data shards and `m` parity shards of equal length
//! (`ceil(len / k)`, the last data shard zero-padded). Any `k` shards give the stripe back.

mod codec;
pub mod gf;
mod layout;

pub use codec::{CodecError, EncodedStripe, ErasureCodec, MAX_SHARDS};
pub use layout::{shard_pieces, ShardPiece, StripeRange, Stripes};
