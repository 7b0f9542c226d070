//! Clusters of real node processes on loopback: Raft-replicated metadata, chunks spread
//! over nodes, failover of the master.

use super::fixture::{
    bytes, is_mounted, sigterm, spawn_until_with, start_mount, stop_mount, wait_for,
    wait_for_or_show, wait_killed_at, BIN,
};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Raft election timeout the test clusters run with.
pub const ELECTION_MS: u64 = 1500;

/// A port `base` in 20000..29000 such that `base + o` is free for every offset `o`, and
/// reserved for this test process. Below the ephemeral range (32768 and up by default),
/// where ports handed out for port 0 by other tests running at the same time cannot
/// collide with it. The reservation is an exclusive `flock` on a file per port in
/// `/tmp/wormfs-test-ports`, held until this process ends: the other test processes
/// (nextest runs each test in its own) skip a port another has taken but not yet bound.
pub fn free_block(offsets: &[u16]) -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    // a different sequence for every call: tests pick ports at the same time
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (u64::from(std::process::id()) ^ now).wrapping_add(call.wrapping_mul(2_654_435_761));
    for attempt in 0..500u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 104_729) % 9_000) as u16;
        // never the same port twice in this process, even once released
        static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let all_free = offsets.iter().all(|o| {
            !given.contains(&(base + o))
                && std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok()
        });
        if all_free && offsets.iter().all(|o| reserve_port(base + o)) {
            given.extend(offsets.iter().map(|o| base + o));
            return base;
        }
    }
    panic!("no block of free ports found below the ephemeral range");
}

/// Takes port `port` for this process across test processes (see [`free_block`]): false
/// when another process holds it. A block taken in part stays taken in part; the ports are
/// plentiful.
fn reserve_port(port: u16) -> bool {
    use std::os::fd::AsRawFd;
    let dir = std::path::Path::new("/tmp/wormfs-test-ports");
    let _ = fs::create_dir_all(dir);
    let Ok(file) = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return true; // no shared directory: the bind check alone
    };
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    std::mem::forget(file); // held until the process ends, which releases the lock
    true
}

/// A free port for a node's node-to-node listener, taken as [`free_block`] takes them.
fn free_port() -> u16 {
    free_block(&[0])
}

/// `n` node processes with `disks` disks each, every node listing every other as a peer.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: Vec<Option<Child>>,
    pub addrs: Vec<String>,
    pub p2p_ports: Vec<u16>,
    pub mount: Option<Child>,
    pub mnt: PathBuf,
}

impl Cluster {
    pub fn start(n: usize, disks: usize, extra: &str) -> Cluster {
        Self::start_some(n, n, disks, extra)
    }

    /// `n` configured nodes of which the first `initial` form the cluster and run; the
    /// others list those as peers and wait to be started and added.
    pub fn start_some(n: usize, initial: usize, disks: usize, extra: &str) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        // the clients this test starts keep their node list here, not in the user's cache
        std::env::set_var("WORMFS_NODE_CACHE", tmp.path().join("nodes.json"));
        // one admin identity every node names; the mounts and commands present it
        let identity = tmp.path().join("admin.identity");
        wormfs::rpc::identity::Identity {
            user: "admin".into(),
            key: wormfs::rpc::identity::new_key().unwrap(),
            nodes: Vec::new(),
        }
        .write(&identity)
        .unwrap();
        std::env::set_var("WORMFS_IDENTITY", &identity);
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        for i in 0..n {
            let dir = tmp.path().join(format!("node{}", i + 1));
            fs::create_dir(&dir).unwrap();
            let mut config = format!(
                "node_id = \"node{}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"meta\"\n\
                 admin_identity = \"{}\"\n",
                i + 1,
                identity.display()
            );
            for d in 0..disks {
                fs::create_dir(dir.join(format!("disk{d}"))).unwrap();
                config.push_str(&format!(
                    "[[disks]]\nid = \"n{}d{d}\"\npath = \"disk{d}\"\n",
                    i + 1
                ));
            }
            config.push_str(&format!(
                "[cluster]\nlisten = \"127.0.0.1:{}\"\nbootstrap = {}\nheartbeat_ms = 200\n\
                 offline_after = 10\nelection_timeout_ms = {ELECTION_MS}\n{extra}",
                ports[i],
                i == 0
            ));
            for (j, p) in ports.iter().enumerate().take(initial) {
                if j != i {
                    config.push_str(&format!("[[cluster.peers]]\naddr = \"127.0.0.1:{p}\"\n"));
                }
            }
            fs::write(dir.join("node.toml"), config).unwrap();
        }
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let mut c = Cluster {
            tmp,
            nodes: (0..n).map(|_| None).collect(),
            addrs: vec![String::new(); n],
            p2p_ports: ports,
            mount: None,
            mnt,
        };
        for i in 0..initial {
            c.start_node(i);
        }
        c
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("node{}", i + 1))
    }

    /// Node `i`'s data directory (metadata, Raft log, snapshots, key).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir(i).join("meta")
    }

    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.dir(i).join("node.log")).unwrap_or_default()
    }

    pub fn start_node(&mut self, i: usize) {
        self.start_node_with(i, &[]);
    }

    /// Starts node `i` with more environment variables (a crash point, say).
    pub fn start_node_with(&mut self, i: usize, envs: &[(&str, &str)]) {
        let dir = self.dir(i);
        let config = dir.join("node.toml");
        let (child, line) = spawn_until_with(
            &["serve", "--config", config.to_str().unwrap()],
            &dir.join("node.log"),
            "wormfs-node listening on ",
            envs,
        );
        self.addrs[i] = line
            .trim_start_matches("wormfs-node listening on ")
            .trim()
            .to_owned();
        self.nodes[i] = Some(child);
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            sigterm(&mut c);
            let status = c.wait().unwrap();
            assert!(status.success(), "node{} exited with {status}", i + 1);
        }
    }

    /// Sends `sig` (e.g. SIGSTOP, SIGCONT) to node `i`.
    pub fn signal(&self, i: usize, sig: i32) {
        let pid = self.nodes[i].as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) with a pid we spawned.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits until node `via` shows every node online.
    pub fn wait_all_online(&self, via: usize) {
        let n = self.nodes.iter().filter(|c| c.is_some()).count();
        wait_for("every node online", Duration::from_secs(20), || {
            let s = self.status(via)?;
            let nodes = s["nodes"].as_array()?;
            (nodes.len() == n && nodes.iter().all(|x| x["state"] == "online")).then_some(())
        });
    }

    /// The state node `via` shows for node `name`.
    pub fn state_of(&self, via: usize, name: &str) -> Option<String> {
        let s = self.status(via)?;
        s["nodes"]
            .as_array()?
            .iter()
            .find(|x| x["id"] == name)
            .and_then(|x| x["state"].as_str().map(str::to_owned))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// `wormfs --node ADDR ARGS` through node `i`: stdout, or the failure's stderr.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(BIN)
            .args(["--node", &self.addrs[i]])
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `wormfs status --json` through node `i`, `None` when it does not answer.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        super::fixture::status_at(&self.addrs[i])
    }

    /// Waits until node `via` names a master other than `not`, and returns its name.
    pub fn wait_master(&self, via: usize, timeout: Duration, not: Option<&str>) -> String {
        wait_for("a master", timeout, || {
            let s = self.status(via)?;
            let m = s["master"].as_str()?.to_owned();
            (!m.is_empty() && Some(m.as_str()) != not).then_some(m)
        })
    }

    pub fn index_of(&self, name: &str) -> usize {
        name.trim_start_matches("node").parse::<usize>().unwrap() - 1
    }

    pub fn mount(&mut self, via: usize) {
        let log = self.tmp.path().join("mount.log");
        self.mount = Some(start_mount(&self.addrs[via], &self.mnt, &log));
    }

    /// What the mount has logged so far.
    pub fn mount_log(&self) -> String {
        fs::read_to_string(self.tmp.path().join("mount.log")).unwrap_or_default()
    }

    pub fn unmount(&mut self) {
        if let Some(c) = self.mount.take() {
            stop_mount(c, &self.mnt);
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn layout(&self, via: usize, rel: &str) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["--node", &self.addrs[via], "file", "info", "--json"])
            .arg(self.path(rel))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.mount.take() {
            sigterm(&mut c);
            let _ = c.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        for c in self.nodes.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[test]
fn three_nodes_spread_chunks_and_survive_the_death_of_the_master() {
    let mut c = Cluster::start(3, 2, "");
    let master = c.wait_master(0, Duration::from_secs(30), None);
    let m = c.index_of(&master);
    let via = (m + 1) % 3; // the mount talks to a follower: its writes are forwarded
    c.wait_all_online(via);
    c.mount(via);

    // general is 2+1 with 1 MiB stripes: every stripe's 3 chunks on 3 different nodes
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| bytes((3 << 20) + 1000 * i, i as u64))
        .collect();
    for (i, data) in before.iter().enumerate() {
        write_synced(&c.path(&format!("before{i}.bin")), data).unwrap();
    }
    let layout = c.layout(via, "before0.bin");
    for s in layout["stripes"].as_array().unwrap() {
        let mut nodes: Vec<&str> = s["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ch| ch["node"].as_str().unwrap())
            .collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(nodes.len(), 3, "chunks of a stripe on distinct nodes: {s}");
    }

    // a writer runs while the master dies
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
        let mnt = c.mnt.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let data = bytes(300_000 + i, 1000 + i as u64);
                match write_synced(&mnt.join(format!("w{i}.bin")), &data) {
                    Ok(()) => acked.lock().unwrap().push(i),
                    Err(e) => failed.lock().unwrap().push(format!("w{i}: {e}")),
                }
                i += 1;
            }
        })
    };
    wait_for("the writer to get going", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 3).then_some(())
    });
    let killed_at = Instant::now();
    c.kill(m);
    let new_master = c.wait_master(
        via,
        Duration::from_millis(ELECTION_MS * 2) + Duration::from_secs(8),
        Some(&master),
    );
    let failover = killed_at.elapsed();
    assert_ne!(new_master, master);
    let at_failover = acked.lock().unwrap().len();
    wait_for(
        "the writer to go on after the failover",
        Duration::from_secs(30),
        || (acked.lock().unwrap().len() >= at_failover + 5).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked: Vec<usize> = acked.lock().unwrap().clone();
    let failed: Vec<String> = failed.lock().unwrap().clone();
    eprintln!(
        "failover to {new_master} in {failover:?}; {} files acknowledged, {} failed: {failed:?}",
        acked.len(),
        failed.len(),
    );

    // a fresh mount (nothing cached): every acknowledged file reads back exact, with one
    // node of three gone
    c.unmount();
    c.mount(via);
    for (i, data) in before.iter().enumerate() {
        let got = fs::read(c.path(&format!("before{i}.bin"))).unwrap();
        assert!(got == *data, "before{i}.bin differs after the master died");
    }
    for &i in &acked {
        let got = fs::read(c.path(&format!("w{i}.bin"))).unwrap();
        assert!(
            got == bytes(300_000 + i, 1000 + i as u64),
            "w{i}.bin differs"
        );
    }
}

/// A 3-node cluster that compacts its log after 20 entries, keeping 5, and a follower
/// (`lag`, stopped) that missed 40 files written meanwhile (seeds from `seed`): far more
/// than the log keeps, so it can only catch up by snapshot. Returns the cluster (mounted
/// through another node), `lag`, the files' bytes (`s{i}.bin`) and the master's applied
/// index to catch up to.
fn behind_the_compacted_log(seed: u64) -> (Cluster, usize, Vec<Vec<u8>>, u64) {
    let mut c = Cluster::start(3, 2, "snapshot_after = 20\nkeep_log_entries = 5\n");
    let master = c.wait_master(0, Duration::from_secs(30), None);
    let m = c.index_of(&master);
    let (lag, via) = ((m + 1) % 3, (m + 2) % 3);
    c.wait_all_online(via);
    c.mount(via);
    // the lagging node has a snapshot of its own, older than the one it will be sent
    let snapshots = c.dir(lag).join("meta").join(wormfs::raft::SNAPSHOT_DIR);
    let mut n = 0;
    wait_for(
        "the node that will lag to take a snapshot",
        Duration::from_secs(30),
        || {
            let taken = fs::read_dir(&snapshots)
                .ok()?
                .any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")));
            if !taken {
                write_synced(&c.path(&format!("before{n}.bin")), &bytes(100, n)).unwrap();
                n += 1;
            }
            taken.then_some(())
        },
    );
    c.stop(lag);
    // each file is several log entries: far more than the 5 kept after a snapshot
    let files: Vec<Vec<u8>> = (0..40).map(|i| bytes(5000 + i, seed + i as u64)).collect();
    for (i, data) in files.iter().enumerate() {
        write_synced(&c.path(&format!("s{i}.bin")), data).unwrap();
    }
    let target = c.status(via).unwrap()["last_applied"].as_u64().unwrap();
    (c, lag, files, target)
}

#[test]
fn a_node_behind_the_compacted_log_catches_up_by_snapshot_and_serves_new_files() {
    let (mut c, lag, files, target) = behind_the_compacted_log(77);
    c.start_node(lag);
    wait_for(
        "the restarted node to catch up",
        Duration::from_secs(30),
        || {
            let applied = c.status(lag)?["last_applied"].as_u64()?;
            (applied >= target).then_some(())
        },
    );
    let log = c.log(lag);
    assert!(
        log.contains("installed a metadata snapshot"),
        "the node caught up by snapshot:\n{log}"
    );
    // it serves the new files
    c.unmount();
    c.mount(lag);
    for (i, data) in files.iter().enumerate() {
        let got = fs::read(c.path(&format!("s{i}.bin"))).unwrap();
        assert!(
            got == *data,
            "s{i}.bin differs when read through the caught-up node"
        );
    }
}

/// A follower killed (crash point) after it replaced its database with the master's
/// snapshot and before it recorded the snapshot as its own: restarted, it catches up and
/// serves every file.
#[test]
fn a_node_killed_in_the_middle_of_a_snapshot_install_catches_up_after_a_restart() {
    use wormfs::crash;
    let (mut c, lag, files, target) = behind_the_compacted_log(91);
    c.start_node_with(lag, &[(crash::CRASH_AT_ENV, crash::SNAPSHOT_REPLACED)]);
    wait_killed_at(
        c.nodes[lag].take().unwrap(),
        crash::SNAPSHOT_REPLACED,
        Duration::from_secs(60),
        || c.log(lag),
    );
    c.start_node(lag);
    wait_for_or_show(
        "the restarted node to catch up",
        Duration::from_secs(60),
        || {
            format!(
                "{}\n--- the master's:\n{}",
                c.log(lag),
                c.log((lag + 2) % 3)
            )
        },
        || {
            let applied = c.status(lag)?["last_applied"].as_u64()?;
            (applied >= target).then_some(())
        },
    );
    let log = c.log(lag);
    assert!(
        log.contains("a snapshot install was interrupted"),
        "the restarted node took a snapshot of its replaced database:\n{log}"
    );
    c.unmount();
    c.mount(lag);
    for (i, data) in files.iter().enumerate() {
        let got = fs::read(c.path(&format!("s{i}.bin"))).unwrap();
        assert!(got == *data, "s{i}.bin differs on the restarted node");
    }
}

/// A node whose Raft stops by itself (here applying committed entries fails, as an I/O
/// error on the metadata disk would make it) stops too, with an error that says why,
/// instead of going on without a metadata log; the others go on, and restarted it catches
/// up.
#[test]
fn a_node_whose_metadata_log_fails_stops_with_the_reason_and_the_others_go_on() {
    use wormfs::crash;
    let mut c = Cluster::start(3, 2, "");
    let master = c.wait_master(0, Duration::from_secs(30), None);
    let m = c.index_of(&master);
    let (failing, via) = ((m + 1) % 3, (m + 2) % 3);
    c.wait_all_online(via);
    c.stop(failing);
    c.start_node_with(failing, &[(crash::CRASH_AT_ENV, crash::APPLY_FAILS)]);
    c.mount(via);
    // a commit for it to apply (the node may stop during this write, which then fails)
    let _ = write_synced(&c.path("first.bin"), &bytes(10_000, 1));
    let mut node = c.nodes[failing].take().unwrap();
    let status = wait_for_or_show(
        "the node whose apply fails to stop",
        Duration::from_secs(30),
        || c.log(failing),
        || node.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(1), "{status}");
    let log = c.log(failing);
    assert!(log.contains("failure point `apply-fails` reached"), "{log}");
    assert!(
        log.contains("the metadata log (Raft) stopped")
            && log.contains("Restart it: it catches up from the other nodes"),
        "{log}"
    );
    let second = bytes(20_000, 2);
    write_synced(&c.path("second.bin"), &second).unwrap();
    c.start_node(failing);
    let target = c.status(via).unwrap()["last_applied"].as_u64().unwrap();
    wait_for_or_show(
        "the restarted node to catch up",
        Duration::from_secs(30),
        || c.log(failing),
        || (c.status(failing)?["last_applied"].as_u64()? >= target).then_some(()),
    );
    c.unmount();
    c.mount(failing);
    assert!(fs::read(c.path("second.bin")).unwrap() == second);
}

#[test]
fn a_node_with_a_new_identity_at_a_pinned_address_is_refused() {
    let mut c = Cluster::start(3, 1, "");
    c.wait_master(0, Duration::from_secs(30), None);
    c.wait_all_online(0);
    c.stop(2);
    fs::remove_file(c.dir(2).join("meta/node.key")).unwrap();
    c.start_node(2);
    let addr = format!("127.0.0.1:{}", c.p2p_ports[2]);
    wait_for(
        "node1 to refuse the new identity",
        Duration::from_secs(20),
        || {
            let log = c.log(0);
            log.lines()
                .any(|l| {
                    l.contains(&format!(
                        "refusing the node at {addr}: its peer ID is pinned to"
                    )) && l.contains("but it presented")
                })
                .then_some(())
        },
    );
    wait_for("node3 to show offline", Duration::from_secs(20), || {
        (c.state_of(0, "node3")? == "offline").then_some(())
    });
}

#[test]
fn a_minority_cannot_commit_and_the_majority_can() {
    let mut c = Cluster::start(5, 1, "");
    let master = c.wait_master(0, Duration::from_secs(30), None);
    let m = c.index_of(&master);
    c.wait_all_online(m);
    c.mount(m);
    let others: Vec<usize> = (0..5).filter(|&i| i != m).collect();

    // two of five frozen: the other three are a majority and commit
    c.signal(others[0], libc::SIGSTOP);
    c.signal(others[1], libc::SIGSTOP);
    let a = bytes(200_000, 1);
    write_synced(&c.path("majority.bin"), &a).unwrap();

    // three of five frozen: the master and one follower cannot commit
    c.signal(others[2], libc::SIGSTOP);
    let err = write_synced(&c.path("minority.bin"), &bytes(1000, 2)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");

    // thawed, the cluster commits again
    for &i in &others[..3] {
        c.signal(i, libc::SIGCONT);
    }
    let b = bytes(300_000, 3);
    wait_for("a write after the thaw", Duration::from_secs(30), || {
        write_synced(&c.path("after.bin"), &b).ok()
    });
    assert!(fs::read(c.path("majority.bin")).unwrap() == a);
    assert!(fs::read(c.path("after.bin")).unwrap() == b);
}

#[test]
fn nodes_join_and_leave_with_node_add_and_remove() {
    let mut c = Cluster::start_some(4, 3, 1, "");
    c.wait_master(0, Duration::from_secs(30), None);
    c.wait_all_online(0);
    c.start_node(3);
    let addr = format!("127.0.0.1:{}", c.p2p_ports[3]);
    let out = c.cli(1, &["node", "add", &addr]).unwrap(); // asked of any node
    assert!(out.contains("added node4"), "{out}");
    c.wait_all_online(0);
    let s = c.status(0).unwrap();
    assert_eq!(s["nodes"].as_array().unwrap().len(), 4, "{s}");
    // the new node serves: a mount through it writes and reads. It places chunks on the
    // disks its peers' heartbeats have told it of: wait until it has heard from all
    c.wait_all_online(3);
    c.mount(3);
    let data = bytes(2 << 20, 9);
    write_synced(&c.path("via-node4.bin"), &data).unwrap();
    assert!(fs::read(c.path("via-node4.bin")).unwrap() == data);
    // a policy wider than the cluster's four disks is refused, naming it and the disks
    fs::create_dir(c.path("wide")).unwrap();
    let wide = c.path("wide");
    let err = c
        .cli(3, &["policy", "set", wide.to_str().unwrap(), "media"])
        .unwrap_err();
    assert!(
        err.contains("policy `media` (4+2) needs 6 disks, but the cluster has 4 usable"),
        "{err}"
    );
    c.unmount();
    // unknown names are refused with the reason; a removal shows its cost first
    let err = c.cli(0, &["node", "remove", "node9"]).unwrap_err();
    assert!(err.contains("node `node9` not in the cluster"), "{err}");
    let err = c.cli(0, &["node", "remove", "node4"]).unwrap_err();
    assert!(
        err.contains("nothing removed: run again with --yes"),
        "{err}"
    );
    let out = c.cli(0, &["node", "remove", "node4", "--yes"]).unwrap();
    assert!(out.contains("removed node4"), "{out}");
    wait_for("node4 to leave the status", Duration::from_secs(20), || {
        let s = c.status(0)?;
        let names: Vec<&str> = s["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["id"].as_str())
            .collect();
        (names.len() == 3 && !names.contains(&"node4")).then_some(())
    });
}

#[test]
fn quickstart_runs_a_cluster_that_wormfs_finds_through_the_client_config() {
    let tmp = tempfile::tempdir().unwrap();
    let Quickstart {
        mut child,
        guard,
        dir,
        home,
        base,
        log,
    } = start_quickstart(tmp.path(), &["--disks-per-node", "2"]);
    let text = fs::read_to_string(&log).unwrap();
    for n in ["node1", "node2", "node3"] {
        assert!(text.contains(n), "{text}");
    }
    // the web UI's address, and a token for it in a private file
    assert!(
        text.contains(&format!("web UI  https://127.0.0.1:{}/", base + 60)),
        "{text}"
    );
    // each node's admin listener is HTTPS with its own certificate, whose fingerprint the
    // quickstart prints
    let admin = |i: u16| AdminAt {
        addr: format!("127.0.0.1:{}", base + 60 + i),
        cert: dir.join(format!("node{}/meta/admin-cert.pem", i + 1)),
    };
    let fingerprints: Vec<String> = (0..3)
        .map(|i| wormfs::admin::tls::file_fingerprint(&admin(i).cert).unwrap())
        .collect();
    for f in &fingerprints {
        assert!(text.contains(&format!("certificate SHA-256 {f}")), "{text}");
    }
    let ui_token = fs::read_to_string(dir.join("admin.token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(dir.join("admin.token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // `wormfs status` without --node finds the cluster through client.toml
    let out = cli_in(&home, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["nodes"].as_array().unwrap().len(), 3, "{s}");
    assert!(!s["master"].as_str().unwrap().is_empty());
    // every node's admin listener is in the status, carried by the heartbeats
    wait_for(
        "every node's admin URL in the status",
        Duration::from_secs(20),
        || {
            let out = cli_in(&home, &["status", "--json"]);
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let mut got: Vec<(String, String)> = s["nodes"]
                .as_array()?
                .iter()
                .map(|n| {
                    let field = |k: &str| n[k].as_str().unwrap_or("").to_owned();
                    (field("admin_url"), field("admin_fingerprint"))
                })
                .collect();
            got.sort();
            let want: Vec<(String, String)> = (0..3)
                .map(|i| {
                    let url = format!("https://127.0.0.1:{}/", base + 60 + i);
                    (url, fingerprints[i as usize].clone())
                })
                .collect();
            (got == want).then_some(())
        },
    );
    // every node's admin listener (60 above its gRPC port) is live, ready, and scraped
    for i in 0..3 {
        let (code, body) = http_get(&admin(i), "/health");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        wait_for("node to be ready", Duration::from_secs(30), || {
            (http_get(&admin(i), "/ready").0 == 200).then_some(())
        });
        assert_eq!(http_get(&admin(i), "/nope").0, 404);
    }
    let scrape_all =
        || -> Vec<prometheus_parse::Scrape> { (0..3).map(|i| scrape(&admin(i))).collect() };
    let before = scrape_all();
    // the mount works, and every stripe of a file spans three nodes
    let data = bytes(1 << 20, 5);
    write_synced(&dir.join("mnt/hello.bin"), &data).unwrap();
    assert!(fs::read(dir.join("mnt/hello.bin")).unwrap() == data);
    // the series moved with the write, on the nodes the mount's connections use
    let after = scrape_all();
    let sum = |all: &[prometheus_parse::Scrape], name: &str, labels: &[(&str, &str)]| -> f64 {
        all.iter()
            .flat_map(|s| s.samples.iter())
            .filter(|x| x.metric == name)
            .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            // the parser reads OpenMetrics counters (`# TYPE x counter`, samples `x_total`)
            // as untyped
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        sum(
            &after[..1],
            "wormfs_cluster_members",
            &[("state", "online")]
        ),
        3.0
    );
    assert!(sum(&after, "wormfs_disk_capacity_bytes", &[]) > 0.0);
    assert!(
        sum(
            &after,
            "wormfs_client_bytes_total",
            &[("direction", "written")]
        ) >= sum(
            &before,
            "wormfs_client_bytes_total",
            &[("direction", "written")]
        ) + (1 << 20) as f64,
        "the 1 MiB write is counted: {} then {}",
        sum(
            &before,
            "wormfs_client_bytes_total",
            &[("direction", "written")]
        ),
        sum(
            &after,
            "wormfs_client_bytes_total",
            &[("direction", "written")]
        )
    );
    assert!(
        sum(
            &after,
            "wormfs_grpc_requests_total",
            &[("method", "Create")]
        ) > sum(
            &before,
            "wormfs_grpc_requests_total",
            &[("method", "Create")]
        )
    );
    // 2+1 over three nodes: each node's disks took a chunk
    for i in 0..3 {
        assert!(
            sum(
                &after[i..=i],
                "wormfs_chunk_operations_total",
                &[("op", "put")]
            ) > sum(
                &before[i..=i],
                "wormfs_chunk_operations_total",
                &[("op", "put")]
            ),
            "node{}'s disks took chunks",
            i + 1
        );
    }
    assert!(
        sum(&after[..1], "wormfs_metadata_applied_index", &[])
            > sum(&before[..1], "wormfs_metadata_applied_index", &[])
    );
    // `ls -l` takes each entry's attributes with the listing (readdirplus): with the
    // kernel's dentries dropped, listing 40 files and stat'ing each asks the nodes for a
    // few lookups and attributes, not one per file
    let listed = dir.join("mnt/listed");
    fs::create_dir(&listed).unwrap();
    // each create makes the kernel ask for the directory's attributes again (its
    // permission check): the create's reply brought them, so no call goes for them
    let getattrs = |all: &[prometheus_parse::Scrape]| {
        sum(all, "wormfs_grpc_requests_total", &[("method", "GetAttr")])
    };
    let before_creates = scrape_all();
    for i in 0..40 {
        fs::write(listed.join(format!("f{i}")), b"x").unwrap();
    }
    let getattrs_for_creates = getattrs(&scrape_all()) - getattrs(&before_creates);
    assert!(
        getattrs_for_creates < 10.0,
        "{getattrs_for_creates} getattrs for 40 files created one after another"
    );
    let asked = |all: &[prometheus_parse::Scrape]| {
        sum(all, "wormfs_grpc_requests_total", &[("method", "Lookup")])
            + sum(all, "wormfs_grpc_requests_total", &[("method", "GetAttr")])
    };
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let before_ls = scrape_all();
    let mut seen = 0;
    for e in fs::read_dir(&listed).unwrap() {
        let e = e.unwrap();
        assert_eq!(fs::symlink_metadata(e.path()).unwrap().len(), 1);
        seen += 1;
    }
    assert_eq!(seen, 40);
    let asked_for_ls = asked(&scrape_all()) - asked(&before_ls);
    assert!(
        asked_for_ls < 20.0,
        "{asked_for_ls} lookups and getattrs for a listing of 40 files with attributes"
    );
    // a small file's bytes come with its open lock: reading the 40 files cold asks the
    // nodes for no stripe
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let stripes_asked = |all: &[prometheus_parse::Scrape]| {
        sum(
            all,
            "wormfs_grpc_requests_total",
            &[("method", "ReadStripe")],
        )
    };
    let before_reads = scrape_all();
    for i in 0..40 {
        assert_eq!(fs::read(listed.join(format!("f{i}"))).unwrap(), b"x");
    }
    let read_calls = stripes_asked(&scrape_all()) - stripes_asked(&before_reads);
    assert!(
        read_calls < 5.0,
        "{read_calls} stripe reads for 40 small files read cold"
    );
    // an admin token made through one node works on every node's REST API, and a revoked
    // one on none
    let token_file = tmp.path().join("ops.token");
    let cli = |args: &[&str]| cli_ok(&home, args);
    let (code, _) = http_get_with(&admin(0), "/api/v1/cluster", Some(ui_token.trim()));
    assert_eq!(code, 200, "the quickstart's own token works");
    cli(&[
        "token",
        "create",
        "ops",
        "--out",
        token_file.to_str().unwrap(),
    ]);
    let token = fs::read_to_string(&token_file).unwrap().trim().to_owned();
    assert!(token.starts_with("wfs_"), "{token}");
    assert!(cli(&["token", "list"]).contains("ops"));
    for i in 0..3 {
        assert_eq!(http_get(&admin(i), "/api/v1/cluster").0, 401);
        let cluster = wait_for("the token on every node", Duration::from_secs(20), || {
            let (code, body) = http_get_with(&admin(i), "/api/v1/cluster", Some(&token));
            (code == 200).then_some(body)
        });
        let cluster: serde_json::Value = serde_json::from_str(&cluster).unwrap();
        assert_eq!(cluster["nodes"].as_array().unwrap().len(), 3, "{cluster}");
    }
    cli(&["token", "revoke", "ops"]);
    for i in 0..3 {
        wait_for("the revoked token refused", Duration::from_secs(20), || {
            (http_get_with(&admin(i), "/api/v1/cluster", Some(&token)).0 == 401).then_some(())
        });
    }
    let masters = sum(&after, "wormfs_cluster_is_master", &[]);
    assert_eq!(masters, 1.0, "one master among the three");
    // Ctrl-C (SIGTERM here) unmounts and stops every node cleanly
    // SAFETY: kill(2) with a pid we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    std::mem::forget(guard);
    assert!(status.success(), "{}", fs::read_to_string(&log).unwrap());
    assert!(fs::read_to_string(&log)
        .unwrap()
        .contains("stopped cleanly"));
    assert!(!is_mounted(&dir.join("mnt")));
}

/// `wormfs ARGS` for a user whose configuration is under `home` (where a quickstart wrote
/// the client config naming its nodes and identity), with no node or identity from this
/// process's environment.
pub fn cli_in(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("WORMFS_NODE")
        .env_remove("WORMFS_IDENTITY")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .unwrap()
}

/// [`cli_in`] that must succeed: its standard output.
pub fn cli_ok(home: &Path, args: &[&str]) -> String {
    let out = cli_in(home, args);
    assert!(
        out.status.success(),
        "wormfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An HTTPS GET (HTTP/1.1) to a node's admin listener: the status code and the body.
pub fn http_get(at: &AdminAt, path: &str) -> (u16, String) {
    http_get_with(at, path, None)
}

/// A node's admin listener: its address, and the certificate it serves, which a client
/// trusts alone.
pub struct AdminAt {
    pub addr: String,
    pub cert: PathBuf,
}

/// [`http_get`] with a bearer token.
pub fn http_get_with(at: &AdminAt, path: &str, token: Option<&str>) -> (u16, String) {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let addr = &at.addr;
    let cert = rustls::pki_types::CertificateDer::from_pem_file(&at.cert)
        .unwrap_or_else(|e| panic!("{}: {e}", at.cert.display()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = addr.rsplit_once(':').unwrap().0.to_owned();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("https://{addr}{path}: {e}"));
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // a server that closes without TLS's close_notify, after the whole answer
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => panic!("https://{addr}{path}: {e}"),
    }
    let raw = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (code, body.to_owned())
}

/// `/metrics` of the node whose admin listener is `addr`, parsed as Prometheus text.
fn scrape(at: &AdminAt) -> prometheus_parse::Scrape {
    let (code, body) = http_get(at, "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("the metrics parse as Prometheus text")
}

/// A three-node `wormfs quickstart` that [`start_quickstart`] started.
pub struct Quickstart {
    pub child: Child,
    /// Stops it if the test fails first.
    pub guard: Guard,
    /// Its `--dir`.
    pub dir: PathBuf,
    /// The `XDG_CONFIG_HOME`/`XDG_CACHE_HOME` parent: the client config goes there.
    pub home: PathBuf,
    /// Its first gRPC port.
    pub base: u16,
    /// Its stdout.
    pub log: PathBuf,
}

/// Starts `wormfs quickstart --nodes 3 ARGS` under `tmp` (data in `tmp/demo`, the client's
/// config and cache in `tmp/home`) and waits until it says it runs.
pub fn start_quickstart(tmp: &Path, args: &[&str]) -> Quickstart {
    let dir = tmp.join("demo");
    let home = tmp.join("home");
    fs::create_dir(&home).unwrap();
    // a base port whose 3 gRPC, 3 node-to-node and 3 admin ports (base+0..2, base+30..32,
    // base+60..62) are free, below the kernel's ephemeral range, so no other test's port 0
    // lands on them
    let base = free_block(&[0, 1, 2, 30, 31, 32, 60, 61, 62]);
    let log = tmp.join("quickstart.log");
    let mut child = Command::new(BIN)
        .args(["quickstart", "--dir", dir.to_str().unwrap(), "--nodes", "3"])
        .args(["--listen", &format!("127.0.0.1:{base}")])
        .args(args)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("RUST_LOG", "warn")
        .stdout(fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let guard = scopeguard(child.id());
    wait_for("the quickstart cluster", Duration::from_secs(60), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "quickstart exited with {status}:\n{}",
                fs::read_to_string(&log).unwrap()
            );
        }
        let text = fs::read_to_string(&log).ok()?;
        text.contains("Stop with Ctrl-C").then_some(())
    });
    Quickstart {
        child,
        guard,
        dir,
        home,
        base,
        log,
    }
}

/// Kills the quickstart process group's leader if the test fails before stopping it.
pub struct Guard(u32);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we spawned.
        unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
    }
}

pub fn scopeguard(pid: u32) -> Guard {
    Guard(pid)
}

#[test]
fn a_mount_started_with_one_address_survives_that_nodes_death() {
    let mut c = Cluster::start(3, 2, "");
    let master = c.wait_master(0, Duration::from_secs(30), None);
    let m = c.index_of(&master);
    let via = (m + 1) % 3; // a follower: the cluster keeps its master when it dies
    c.wait_all_online(via);
    c.mount(via);
    let files: Vec<Vec<u8>> = (0..3)
        .map(|i| bytes(1_500_000 + i, 40 + i as u64))
        .collect();
    for (i, data) in files.iter().enumerate() {
        write_synced(&c.path(&format!("early{i}.bin")), data).unwrap();
    }
    c.kill(via);
    // lookups and reads move to another node
    let err = fs::metadata(c.path("not-there")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    for (i, data) in files.iter().enumerate() {
        let got = fs::read(c.path(&format!("early{i}.bin"))).unwrap();
        assert!(
            got == *data,
            "early{i}.bin differs after the mount's node died"
        );
    }
    // and so do writes (one that could not be confirmed may fail with EIO, never silently)
    let late = bytes(700_000, 99);
    wait_for(
        "a write after the node died",
        Duration::from_secs(30),
        || match write_synced(&c.path("late.bin"), &late) {
            Ok(()) => Some(()),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                None
            }
        },
    );
    assert!(fs::read(c.path("late.bin")).unwrap() == late);
    // a new mount given only the dead address starts from the cached node list
    c.unmount();
    c.mount(via);
    for (i, data) in files.iter().enumerate() {
        let got = fs::read(c.path(&format!("early{i}.bin"))).unwrap();
        assert!(got == *data, "early{i}.bin differs through the remount");
    }
    assert!(fs::read(c.path("late.bin")).unwrap() == late);
}
