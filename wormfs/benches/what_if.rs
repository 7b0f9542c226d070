//! `wormfs what-if` and `wormfs at-risk` (`NodeFs::risk`) over a metadata database of a
//! million files, against the plainest full read of the same chunk rows in the same run
//! (`SELECT SUM(size) FROM chunks`).
//!
//! `cargo bench -p wormfs --features node --bench what_if` (WHATIF_FILES=N for another
//! size). The database (1,000 directories of 1,000 one-stripe files, 2+1 over three nodes of
//! two disks) is written with plain SQL in one transaction; building it takes a while and
//! is not timed. Each figure is the median of 3 runs, wall time and CPU time.

use std::sync::Arc;
use std::time::{Duration, Instant};
use wormfs::heal::ClusterLiveness;
use wormfs::ids::{DiskId, NodeId};
use wormfs::meta::{LocalLog, MetaStore};
use wormfs::node::NodeFs;
use wormfs::placement::SpreadPlacement;
use wormfs::policy::PolicySet;
use wormfs::store::MemoryChunkStore;

struct AllOnline(Vec<NodeId>);

impl ClusterLiveness for AllOnline {
    fn is_master(&self) -> bool {
        true
    }
    fn node_online(&self, _: &NodeId) -> bool {
        true
    }
    fn members(&self) -> Vec<NodeId> {
        self.0.clone()
    }
}

fn cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// Median (wall, cpu) of 3 runs of `f`.
fn measure(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut runs: Vec<(Duration, Duration)> = (0..3)
        .map(|_| {
            let (w, c) = (Instant::now(), cpu());
            f();
            (w.elapsed(), cpu() - c)
        })
        .collect();
    runs.sort();
    runs[1]
}

fn build(path: &std::path::Path, files: u64) {
    drop(MetaStore::open(path).unwrap()); // the schema
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = c.transaction().unwrap();
    for n in 1..=3 {
        tx.execute(
            "INSERT INTO nodes VALUES (?1, '127.0.0.1:1')",
            [format!("node{n}")],
        )
        .unwrap();
        for d in 0..2 {
            tx.execute(
                "INSERT INTO disks VALUES (?1, ?2, '', 1099511627776, 549755813888)",
                [format!("n{n}d{d}"), format!("node{n}")],
            )
            .unwrap();
        }
    }
    let dirs = files.div_ceil(1000);
    let mut ino: i64 = 2;
    {
        let mut inode = tx
            .prepare(
                "INSERT INTO inodes (ino, kind, perm, nlink, uid, gid, size, atime, mtime, ctime,
                                     crtime, policy, k, m, stripe_size, folder)
                 VALUES (?1, ?2, 420, 1, 0, 0, ?3, 0, 0, 0, 0, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        let mut dentry = tx
            .prepare("INSERT INTO dentries VALUES (?1, ?2, ?3)")
            .unwrap();
        let mut stripe = tx
            .prepare("INSERT INTO stripes (ino, idx, generation, len, crc, k, m) VALUES (?1, 0, 1, 1000000, 7, 2, 1)")
            .unwrap();
        let mut chunk = tx
            .prepare(
                "INSERT INTO chunks (ino, stripe, chunk, generation, node, disk, size, crc, state)
                 VALUES (?1, 0, ?2, 1, ?3, ?4, 504096, 9, 0)",
            )
            .unwrap();
        let none: Option<String> = None;
        let mut made = 0;
        for d in 0..dirs {
            let dir = ino;
            ino += 1;
            inode
                .execute(rusqlite::params![dir, 2, 0, none, none, none, none, none])
                .unwrap();
            dentry
                .execute(rusqlite::params![1, format!("d{d}"), dir])
                .unwrap();
            for f in 0..1000 {
                if made == files {
                    break;
                }
                made += 1;
                let file = ino;
                ino += 1;
                let folder = format!("{:010}", file % 9_999_999_999);
                inode
                    .execute(rusqlite::params![
                        file,
                        1,
                        1_000_000,
                        "general",
                        2,
                        1,
                        1 << 20,
                        folder
                    ])
                    .unwrap();
                dentry
                    .execute(rusqlite::params![dir, format!("f{f}"), file])
                    .unwrap();
                stripe.execute([file]).unwrap();
                for i in 0..3i64 {
                    let n = (file + i) % 3 + 1;
                    chunk
                        .execute(rusqlite::params![
                            file,
                            i,
                            format!("node{n}"),
                            format!("n{n}d{}", file % 2)
                        ])
                        .unwrap();
                }
            }
        }
    }
    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'next_ino'", [ino])
        .unwrap();
    tx.commit().unwrap();
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; only measure when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let files: u64 = std::env::var("WHATIF_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    let t = Instant::now();
    build(&path, files);
    eprintln!("built {files} files in {:.1?}", t.elapsed());

    let meta = Arc::new(MetaStore::open(&path).unwrap());
    let disks: Vec<(DiskId, u64)> = (1..=3)
        .flat_map(|n| (0..2).map(move |d| (DiskId(format!("n{n}d{d}")), 1u64 << 40)))
        .collect();
    let nodes: Vec<NodeId> = (1..=3).map(|n| NodeId(format!("node{n}"))).collect();
    let fs = NodeFs::new(
        nodes[0].clone(),
        Arc::new(MemoryChunkStore::new(&disks)),
        Arc::new(LocalLog::new(meta.clone()).unwrap()),
        meta.clone(),
        PolicySet::defaults(),
        Arc::new(SpreadPlacement),
    )
    .with_liveness(Arc::new(AllOnline(nodes.clone())));

    let plain = measure(|| {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row("SELECT SUM(size) FROM chunks", [], |r| r.get(0))
            .unwrap();
        assert!(n > 0);
    });
    let mut report = None;
    let what_if = measure(|| report = Some(fs.risk(&nodes[2..], &[], 0, 1000).unwrap()));
    let r = report.unwrap();
    assert_eq!(r.stripes, files);
    let at_risk = measure(|| {
        fs.risk(&[], &[], 0, 1000).unwrap();
    });
    let two = measure(|| {
        let r = fs.risk(&nodes[1..], &[], 0, 10).unwrap();
        assert_eq!(r.files_unreadable, files);
    });
    println!("| {files} files, 2+1 on 3 nodes | wall | CPU | × plain scan (wall) |");
    println!("|---|---|---|---|");
    let row = |name: &str, (w, c): (Duration, Duration)| {
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.1}× |",
            w.as_secs_f64(),
            c.as_secs_f64(),
            w.as_secs_f64() / plain.0.as_secs_f64()
        );
    };
    row("plain scan: `SELECT SUM(size) FROM chunks`", plain);
    row(
        "`what-if --lose-node node3` (files at risk listed)",
        what_if,
    );
    row("`at-risk`", at_risk);
    row(
        "`what-if` with two of three nodes lost (every file unreadable)",
        two,
    );
    eprintln!(
        "what-if node3: {} at risk, {} unreadable",
        r.files_at_risk, r.files_unreadable
    );
}
