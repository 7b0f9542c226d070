//! Node-to-node chunk throughput on loopback: [`P2pTransport`] chunk reads and writes
//! against raw TCP moving the same bytes in the same run.
//! `cargo bench -p wormfs --features cluster,vendored-openssl --bench transport` prints a
//! Markdown table for `docs/BENCHMARKS.md`. Feature `vendored-openssl` links the OpenSSL the
//! node binaries ship (built from source, with AES-GCM kernels for AVX-512 and VAES);
//! without it the bench links the system's, which may seal at a third of the speed.
//!
//! `TRANSPORT_ONLY=4` (or `1`) runs only raw TCP and the chunk rows of that many calls at a
//! time, for a profile.
//!
//! Every throughput figure is the median of 5 samples of 256 MiB each; every call figure
//! the median of 5 samples of 2,000 calls.

use libp2p::identity::Keypair;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wormfs::chunk::ChunkFile;
use wormfs::ids::{ChunkKey, DiskId, FileId, NodeId};
use wormfs::net::p2p::{P2pConfig, P2pTransport, PeerBook};
use wormfs::net::Transport;
use wormfs::store::{ChunkFolder, MemoryChunkStore};

const SAMPLES: usize = 5;
const CHUNK: usize = 1 << 20;
const PER_SAMPLE: usize = 256;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds this process (both nodes, or both ends of the TCP reference) has used.
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A timed sample: wall clock and CPU from its start.
struct Clock(Instant, f64);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now(), cpu_seconds())
    }

    /// GiB/s and CPU seconds per GiB for `bytes` moved since the start.
    fn rate(&self, bytes: usize) -> (f64, f64) {
        let gib = bytes as f64 / (1u64 << 30) as f64;
        (
            gib / self.0.elapsed().as_secs_f64(),
            (cpu_seconds() - self.1) / gib,
        )
    }
}

impl Clock {
    /// µs per call and CPU µs per call for `calls` made since the start.
    fn per_call(&self, calls: usize) -> (f64, f64) {
        let n = calls as f64;
        (
            self.0.elapsed().as_secs_f64() * 1e6 / n,
            (cpu_seconds() - self.1) * 1e6 / n,
        )
    }
}

fn medians(v: Vec<(f64, f64)>) -> (f64, f64) {
    let (r, c): (Vec<f64>, Vec<f64>) = v.into_iter().unzip();
    (median(r), median(c))
}

/// Raw TCP moving 1 MiB writes: of one buffer over and over (`distinct` false: the bytes
/// stay in the CPU's caches), or of as many distinct buffers as a sample has chunks, made
/// before the clock starts as the chunks are (the bytes come from memory, as a chunk's do).
async fn raw_tcp(distinct: bool) -> (f64, f64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let one = vec![5u8; CHUNK];
    let mut rates = Vec::new();
    for sample in 0..SAMPLES {
        let made: Vec<Vec<u8>> = if distinct {
            (0..PER_SAMPLE)
                .map(|i| vec![((sample * PER_SAMPLE + i) % 251) as u8; CHUNK])
                .collect()
        } else {
            Vec::new()
        };
        let clock = Clock::start();
        for i in 0..PER_SAMPLE {
            s.write_all(made.get(i).unwrap_or(&one)).await.unwrap();
        }
        s.flush().await.unwrap();
        rates.push(clock.rate(CHUNK * PER_SAMPLE));
    }
    medians(rates)
}

async fn node(name: &str, peers: &[SocketAddr]) -> P2pTransport {
    let book = Arc::new(PeerBook::open_in_memory().unwrap());
    for p in peers {
        book.add(*p, None).unwrap();
    }
    P2pTransport::start(P2pConfig {
        node: NodeId(name.into()),
        keypair: Keypair::generate_ed25519(),
        listen: "127.0.0.1:0".parse().unwrap(),
        book,
        store: Arc::new(MemoryChunkStore::new(&[(
            DiskId(format!("{name}-d0")),
            1 << 40,
        )])),
        redial_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(30),
        chunk_timeout: Duration::from_secs(30),
        data_listen: None,
    })
    .await
    .unwrap()
}

fn chunk(stripe: u64) -> ChunkFile {
    let data = vec![(stripe % 251) as u8; CHUNK];
    let key = ChunkKey {
        file: FileId(1),
        stripe,
        generation: 1,
        index: 0,
    };
    ChunkFile::new(
        key,
        stripe * CHUNK as u64,
        (stripe + 1) * CHUNK as u64,
        1,
        1,
        wormfs::checksum::crc32(&data),
        data,
    )
}

async fn p2p(parallel: usize) -> ((f64, f64), (f64, f64)) {
    let a = node("a", &[]).await;
    let b = node("b", &[a.listen_addr()]).await;
    a.add_peer(b.listen_addr(), None).unwrap();
    let nb = NodeId("b".into());
    while !a.is_connected(&nb) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let disk = DiskId("b-d0".into());
    let folder = ChunkFolder::for_path("/bench");
    let mut next = 0u64;
    let (mut puts, mut reads) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let mut addrs = Vec::new();
        // the chunks are made before the clock starts, as raw TCP's buffer is
        let mut made: Vec<ChunkFile> = (0..PER_SAMPLE)
            .map(|_| {
                next += 1;
                chunk(next)
            })
            .collect();
        let clock = Clock::start();
        for _ in 0..PER_SAMPLE / parallel {
            let batch: Vec<_> = (0..parallel)
                .map(|_| {
                    let c = made.pop().expect("one chunk per put");
                    let (a, d, f) = (a.clone(), disk.clone(), folder.clone());
                    let nb = nb.clone();
                    tokio::spawn(async move { a.put_chunk(&nb, &d, &f, "/bench", &c).await })
                })
                .collect();
            for t in batch {
                addrs.push(t.await.unwrap().unwrap().addr);
            }
        }
        puts.push(clock.rate(CHUNK * PER_SAMPLE));
        let clock = Clock::start();
        for group in addrs.chunks(parallel) {
            let batch: Vec<_> = group
                .iter()
                .map(|addr| {
                    let (a, d, addr, nb) = (a.clone(), disk.clone(), addr.clone(), nb.clone());
                    tokio::spawn(async move { a.read_chunk(&nb, &d, &addr).await })
                })
                .collect();
            for t in batch {
                t.await.unwrap().unwrap();
            }
        }
        reads.push(clock.rate(CHUNK * PER_SAMPLE));
        for addr in addrs {
            a.delete_chunk(&nb, &disk, &addr).await.unwrap();
        }
    }
    (medians(puts), medians(reads))
}

/// Small calls, one at a time: what a Raft round or a forwarded metadata op costs in
/// messages. Raw TCP ping-pong of the same size is the reference.
const CALLS: usize = 2000;
const CALL_BYTES: usize = 256;

/// µs per round trip and CPU µs per round trip (both ends), median of the samples.
async fn raw_tcp_calls() -> (f64, f64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; CALL_BYTES];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [7u8; CALL_BYTES];
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let clock = Clock::start();
        for _ in 0..CALLS {
            s.write_all(&buf).await.unwrap();
            s.read_exact(&mut buf).await.unwrap();
        }
        samples.push(clock.per_call(CALLS));
    }
    medians(samples)
}

async fn p2p_calls() -> (f64, f64) {
    let a = node("a", &[]).await;
    let b = node("b", &[a.listen_addr()]).await;
    a.add_peer(b.listen_addr(), None).unwrap();
    let nb = NodeId("b".into());
    while !a.is_connected(&nb) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.serve(
        "/bench/echo",
        Arc::new(|_caller, body| Box::pin(async move { Ok(body) })),
    );
    let body = vec![7u8; CALL_BYTES];
    // the first call sets up whatever the transport keeps between calls
    a.request(&nb, "/bench/echo", body.clone()).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let clock = Clock::start();
        for _ in 0..CALLS {
            let back = a.request(&nb, "/bench/echo", body.clone()).await.unwrap();
            assert_eq!(back.len(), CALL_BYTES);
        }
        samples.push(clock.per_call(CALLS));
    }
    medians(samples)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // the allocator settings of a node process, which both ends here stand for
    wormfs::process::keep_stripe_buffers();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tcp, tcp_cpu) = raw_tcp(false).await;
        let (tcp_d, tcp_d_cpu) = raw_tcp(true).await;
        println!("| measure | GiB/s | ÷ raw TCP, one buffer | ÷ raw TCP, distinct buffers | CPU-s per GiB (both ends) |");
        println!("|---|---|---|---|---|");
        println!("| raw TCP, 1 MiB writes of one buffer | {tcp:.2} | 1.00× | {:.2}× | {tcp_cpu:.2} |", tcp / tcp_d);
        println!("| raw TCP, 1 MiB writes of distinct buffers | {tcp_d:.2} | {:.2}× | 1.00× | {tcp_d_cpu:.2} |", tcp_d / tcp);
        // `TRANSPORT_ONLY=4` (or 1) runs raw TCP and that one row pair, for a profile
        let only: Option<usize> = std::env::var("TRANSPORT_ONLY")
            .ok()
            .map(|v| v.parse().expect("TRANSPORT_ONLY is 1 or 4"));
        for parallel in [1, 4].into_iter().filter(|p| only.is_none_or(|o| o == *p)) {
            let (put, read) = p2p(parallel).await;
            for (what, (rate, cpu)) in [("put", put), ("read", read)] {
                println!(
                    "| chunk {what}, 1 MiB, {parallel} at a time | {rate:.2} | {:.2}× | {:.2}× | {cpu:.2} |",
                    rate / tcp,
                    rate / tcp_d
                );
            }
        }
        if only.is_some() {
            return;
        }
        let (tcp_us, tcp_cpu) = raw_tcp_calls().await;
        let (call_us, call_cpu) = p2p_calls().await;
        println!();
        println!("| {CALL_BYTES}-byte call, one at a time | µs per call | ÷ raw TCP | CPU µs per call (both ends) |");
        println!("|---|---|---|---|");
        println!("| raw TCP ping-pong | {tcp_us:.1} | 1.00× | {tcp_cpu:.1} |");
        println!(
            "| `Transport::request` | {call_us:.1} | {:.2}× | {call_cpu:.1} |",
            call_us / tcp_us
        );
    });
}
