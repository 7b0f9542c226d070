//! A write is acknowledged only when it is durable: a writer process is killed with SIGKILL
//! mid-stream, and every file it acknowledged reads back exact.

use super::archive::{bytes, setup};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use wormfs::archive::LocalArchive;
use wormfs::policy::{PolicySet, StoragePolicy};

const CHILD_ENV: &str = "WORMFS_TEST_DURABILITY_DIR";

fn policies() -> PolicySet {
    PolicySet::single(
        "t",
        StoragePolicy {
            k: 2,
            m: 1,
            stripe_size: 8192,
        },
    )
}

fn disks(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    (0..3).map(|i| root.join(format!("disk{i}"))).collect()
}

/// Runs only as the child: writes files forever, printing each one once it is acknowledged.
#[test]
fn durability_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = std::path::PathBuf::from(root);
    let a = LocalArchive::open(root.join("meta"), &disks(&root), policies()).unwrap();
    for i in 0.. {
        let data = bytes(1000 + i * 3001 % 50_000, i as u64);
        a.write_file(&format!("/f{i}"), &data[..]).unwrap();
        println!("ACK {i}");
    }
}

#[test]
fn killed_writer_loses_nothing_it_acknowledged() {
    let s = setup(3);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability::durability_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 25 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            acked.push(n.parse::<usize>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-write
    child.wait().unwrap();
    // Whatever the child printed before dying was acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ACK ") {
            acked.push(n.parse().unwrap());
        }
    }
    let a = LocalArchive::open(s.dir.path().join("meta"), &s.disks, policies()).unwrap();
    for i in acked {
        let want = bytes(1000 + i * 3001 % 50_000, i as u64);
        assert_eq!(
            a.read_to_vec(&format!("/f{i}")).unwrap(),
            want,
            "acknowledged file {i}"
        );
    }
}
