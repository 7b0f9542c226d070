//! Node-to-node chunk throughput on loopback: [`P2pTransport`] chunk reads and writes
//! against raw TCP moving the same bytes in the same run.
//! `cargo bench -p wormfs --features cluster --bench transport` prints a Markdown table for
//! `docs/BENCHMARKS.md`.
//!
//! Every figure is the median of 5 samples of 256 MiB each.

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

fn gib(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / (1u64 << 30) as f64
}

async fn raw_tcp() -> f64 {
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
    let buf = vec![5u8; CHUNK];
    let mut rates = Vec::new();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        for _ in 0..PER_SAMPLE {
            s.write_all(&buf).await.unwrap();
        }
        s.flush().await.unwrap();
        rates.push(gib(CHUNK * PER_SAMPLE, start.elapsed()));
    }
    median(rates)
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

async fn p2p(parallel: usize) -> (f64, f64) {
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
        let start = Instant::now();
        let mut addrs = Vec::new();
        for _ in 0..PER_SAMPLE / parallel {
            let batch: Vec<_> = (0..parallel)
                .map(|_| {
                    next += 1;
                    let (a, c, d, f) = (a.clone(), chunk(next), disk.clone(), folder.clone());
                    let nb = nb.clone();
                    tokio::spawn(async move { a.put_chunk(&nb, &d, &f, "/bench", c).await })
                })
                .collect();
            for t in batch {
                addrs.push(t.await.unwrap().unwrap().addr);
            }
        }
        puts.push(gib(CHUNK * PER_SAMPLE, start.elapsed()));
        let start = Instant::now();
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
        reads.push(gib(CHUNK * PER_SAMPLE, start.elapsed()));
        for addr in addrs {
            a.delete_chunk(&nb, &disk, &addr).await.unwrap();
        }
    }
    (median(puts), median(reads))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = raw_tcp().await;
        println!("| measure | GiB/s | ÷ raw TCP |");
        println!("|---|---|---|");
        println!("| raw TCP, 1 MiB writes | {tcp:.2} | 1.00× |");
        for parallel in [1, 4] {
            let (put, read) = p2p(parallel).await;
            println!(
                "| libp2p chunk put, 1 MiB, {parallel} at a time | {put:.2} | {:.2}× |",
                put / tcp
            );
            println!(
                "| libp2p chunk read, 1 MiB, {parallel} at a time | {read:.2} | {:.2}× |",
                read / tcp
            );
        }
    });
}
