//! Erasure-coding and checksum throughput, each against memcpy of the same bytes in the
//! same run: the codec as it runs (the region kernel this CPU has, see
//! `wormfs::stripe::gf`) and the reference it must match byte for byte
//! (`reed-solomon-erasure`). `cargo bench -p wormfs --bench erasure` prints a Markdown
//! table for `docs/BENCHMARKS.md`.
//!
//! Every figure is the median of 7 samples; each sample repeats the operation for at least
//! 100 ms. Throughput counts stripe bytes (the user's data), not parity.

use std::hint::black_box;
use std::time::{Duration, Instant};
use wormfs::checksum::crc32;
use wormfs::stripe::ErasureCodec;

const SAMPLES: usize = 7;
const SAMPLE_TIME: Duration = Duration::from_millis(100);

/// Median bytes per second of `op` processing `bytes` bytes per call.
fn throughput(bytes: usize, mut op: impl FnMut()) -> f64 {
    op(); // warm up
    let mut rates: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < SAMPLE_TIME {
                op();
                n += 1;
            }
            (bytes as f64 * n as f64) / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[SAMPLES / 2]
}

fn gib(rate: f64) -> f64 {
    rate / (1u64 << 30) as f64
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; only measure when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // Keep freed shard buffers for reuse, as a long-running node's allocator does once its
    // thresholds have adapted: otherwise whichever codec is timed first pays for fresh,
    // zeroed pages on every call (glibc raises its mmap threshold only after the first
    // large free), and the order of the columns decides the figures.
    // SAFETY: mallopt only tunes the allocator; called before any threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    println!(
        "kernel: {:?}; each GiB/s is stripe bytes per second on one core",
        wormfs::stripe::gf::Kernel::best()
    );
    println!("| k+m | stripe | memcpy GiB/s | encode GiB/s (× memcpy) | reference encode GiB/s | reconstruct m lost GiB/s (× memcpy) | reference reconstruct GiB/s | CRC32 GiB/s (× memcpy) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (k, m) in [(2usize, 1usize), (4, 2), (8, 3), (10, 4)] {
        for mib in [1usize, 4] {
            let len = mib << 20;
            let data: Vec<u8> = (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2])
                .collect();
            let mut dst = vec![0u8; len];
            let memcpy = throughput(len, || {
                dst.copy_from_slice(black_box(&data));
                black_box(&dst);
            });
            let codec = ErasureCodec::new(k, m).unwrap();
            let reference = ErasureCodec::new(k, m).unwrap().with_kernel(None);
            let encode = throughput(len, || {
                black_box(codec.encode(black_box(&data)));
            });
            let ref_encode = throughput(len, || {
                black_box(reference.encode(black_box(&data)));
            });
            let enc = codec.encode(&data);
            // Lose m data shards (the worst case for reading): shards 0..m.
            let damaged: Vec<Option<Vec<u8>>> = enc
                .shards
                .iter()
                .enumerate()
                .map(|(i, s)| (i >= m).then(|| s.clone()))
                .collect();
            let reconstruct = throughput(len, || {
                let out = codec.decode(damaged.clone(), len, enc.stripe_crc).unwrap();
                black_box(out);
            });
            let ref_reconstruct = throughput(len, || {
                let out = reference
                    .decode(damaged.clone(), len, enc.stripe_crc)
                    .unwrap();
                black_box(out);
            });
            let crc = throughput(len, || {
                black_box(crc32(black_box(&data)));
            });
            println!(
                "| {k}+{m} | {mib} MiB | {:.2} | {:.2} ({:.2}×) | {:.2} | {:.2} ({:.2}×) | {:.2} | {:.1} ({:.2}×) |",
                gib(memcpy),
                gib(encode),
                encode / memcpy,
                gib(ref_encode),
                gib(reconstruct),
                reconstruct / memcpy,
                gib(ref_reconstruct),
                gib(crc),
                crc / memcpy
            );
        }
    }
}
