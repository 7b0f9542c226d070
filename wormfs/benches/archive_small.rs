//! `LocalArchive` writing many small files: files per second, CPU per file and bytes on
//! each disk, against the plainest way to store the same files durably in the same run
//! (each written to a plain directory on the same file system and fsynced, with its
//! directory).
//!
//! `cargo bench -p wormfs --bench archive_small` (SMALL_FILES=N for another count; the
//! default is 10,000 files of 2 KiB over three disk directories with the `general` 2+1
//! policy). The figure is the median of 3 runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wormfs::archive::LocalArchive;
use wormfs::policy::PolicySet;

const FILE_BYTES: usize = 2048;

fn cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// Bytes the files under `dir` take on the file system (allocated blocks), and how many
/// files and directories there are.
fn on_disk(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut entries = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        entries += 1;
        bytes += m.blocks() * 512;
        if m.is_dir() {
            let (b, n) = on_disk(&e.path());
            bytes += b;
            entries += n;
        }
    }
    (bytes, entries)
}

fn content(i: usize) -> Vec<u8> {
    (0..FILE_BYTES).map(|j| (i * 31 + j * 7) as u8).collect()
}

struct Run {
    wall: Duration,
    cpu: Duration,
}

fn timed(f: impl FnOnce()) -> Run {
    let (w0, c0) = (Instant::now(), cpu());
    f();
    Run {
        wall: w0.elapsed(),
        cpu: cpu() - c0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("SMALL_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (mut rate, mut cpu_per, mut plain_rate, mut plain_cpu) = (vec![], vec![], vec![], vec![]);
    let mut disk_bytes = 0;
    let mut disk_entries = 0;
    for _ in 0..3 {
        let root =
            tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or("/tmp".into())).unwrap();
        let disks: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("d{i}"))).collect();
        for d in &disks {
            std::fs::create_dir(d).unwrap();
        }
        let a =
            LocalArchive::open(root.path().join("meta"), &disks, PolicySet::defaults()).unwrap();
        let r = timed(|| {
            for i in 0..n {
                a.write_file(&format!("/d{}/f{i}", i / 1000), &content(i)[..])
                    .unwrap();
            }
        });
        rate.push(n as f64 / r.wall.as_secs_f64());
        cpu_per.push(r.cpu.as_secs_f64() * 1e6 / n as f64);
        (disk_bytes, disk_entries) = on_disk(&disks[0]);

        let plain = root.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let r = timed(|| {
            for i in 0..n {
                let dir = plain.join(format!("d{}", i / 1000));
                if i % 1000 == 0 {
                    std::fs::create_dir(&dir).unwrap();
                }
                let mut f = std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
                f.write_all(&content(i)).unwrap();
                f.sync_all().unwrap();
                std::fs::File::open(&dir).unwrap().sync_all().unwrap();
            }
        });
        plain_rate.push(n as f64 / r.wall.as_secs_f64());
        plain_cpu.push(r.cpu.as_secs_f64() * 1e6 / n as f64);
    }
    let (rate, plain_rate) = (median(rate), median(plain_rate));
    println!("{n} files of {FILE_BYTES} bytes, `general` 2+1 over 3 disk directories, median of 3");
    println!(
        "LocalArchive:      {rate:8.0} files/s  {:7.1} µs CPU per file",
        median(cpu_per)
    );
    println!(
        "plain dir + fsync: {plain_rate:8.0} files/s  {:7.1} µs CPU per file",
        median(plain_cpu)
    );
    println!("ratio:             {:8.2}×", rate / plain_rate);
    println!("disk d0 after the last run: {disk_bytes} bytes in {disk_entries} entries");
}
