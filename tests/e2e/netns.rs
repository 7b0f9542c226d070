//! Partitions of real node processes by the network, not by signals: each node runs in a
//! network namespace of its own, joined to the others by veth pairs on two bridges the test
//! creates (and removes): a cluster network for node-to-node traffic, and a client network
//! for gRPC, where the mounts (in the test's namespace) reach every node. Taking a node's
//! cluster link down cuts it off from the other nodes while its process runs on and its
//! clients still reach it: TCP connections hang instead of breaking, as in a real switch
//! or cable failure, which SIGSTOP and loopback never show.
//!
//! Needs root and `ip` (iproute2) with network namespaces; elsewhere the test says why it
//! does not run and passes.

use super::cluster::ELECTION_MS;
use super::fixture::{bytes, sigterm, spawn_until_in, start_mount, stop_mount, wait_for_or_show};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Runs `ip ARGS`, panicking with its error output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why network namespaces cannot be used here, if they cannot.
fn unsupported() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    let probe = format!("wormfs-probe-{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Err(e) => Some(format!("no `ip` command ({e}); install iproute2")),
        Ok(o) if !o.status.success() => Some(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            None
        }
    }
}

/// Three namespaces on a cluster bridge and a client bridge, and the nodes in them.
struct Net {
    tag: String,
    /// Third octet of both subnets (10.213.X.0/24 cluster, 10.214.X.0/24 clients).
    x: u32,
    tmp: tempfile::TempDir,
    nodes: Vec<Option<Child>>,
    addrs: Vec<String>,
    mounts: Vec<(Child, PathBuf)>,
}

impl Net {
    fn ns(&self, i: usize) -> String {
        format!("wfs{}-{}", self.tag, i + 1)
    }

    /// The root side of node `i`'s veth on bridge `kind` (`c` cluster, `k` clients).
    fn veth(&self, kind: char, i: usize) -> String {
        format!("wf{}{kind}{}", self.tag, i + 1)
    }

    fn bridge(&self, kind: char) -> String {
        format!("wf{}b{kind}", self.tag)
    }

    fn cluster_ip(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.x, i + 1)
    }

    fn setup(n: usize) -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("{}", pid % 100_000),
            x: 10 + pid % 240,
            tmp: tempfile::tempdir().unwrap(),
            nodes: (0..n).map(|_| None).collect(),
            addrs: vec![String::new(); n],
            mounts: Vec::new(),
        };
        for (kind, subnet) in [('c', 213), ('k', 214)] {
            let br = net.bridge(kind);
            ip(&["link", "add", &br, "type", "bridge"]);
            if kind == 'k' {
                // the test's namespace is a client of every node
                ip(&[
                    "addr",
                    "add",
                    &format!("10.{subnet}.{}.254/24", net.x),
                    "dev",
                    &br,
                ]);
            }
            ip(&["link", "set", &br, "up"]);
        }
        for i in 0..n {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            for (kind, subnet) in [('c', 213), ('k', 214)] {
                let outside = net.veth(kind, i);
                let inside = format!("{outside}i");
                ip(&[
                    "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                ]);
                ip(&["link", "set", &inside, "netns", &ns]);
                ip(&["link", "set", &outside, "master", &net.bridge(kind), "up"]);
                let addr = format!("10.{subnet}.{}.{}/24", net.x, i + 1);
                ip(&["-n", &ns, "addr", "add", &addr, "dev", &inside]);
                ip(&["-n", &ns, "link", "set", &inside, "up"]);
            }
        }
        net.configure(n);
        net
    }

    /// The identity and node configs: node1 bootstraps, every node lists the others.
    fn configure(&self, n: usize) {
        let identity = self.tmp.path().join("admin.identity");
        wormfs::rpc::identity::Identity {
            user: "admin".into(),
            key: wormfs::rpc::identity::new_key().unwrap(),
            nodes: Vec::new(),
        }
        .write(&identity)
        .unwrap();
        std::env::set_var("WORMFS_IDENTITY", &identity);
        std::env::set_var("WORMFS_NODE_CACHE", self.tmp.path().join("nodes.json"));
        for i in 0..n {
            let dir = self.dir(i);
            fs::create_dir(&dir).unwrap();
            let mut config = format!(
                "node_id = \"node{}\"\nlisten = \"10.214.{}.{}:7070\"\ndata_dir = \"meta\"\n\
                 admin_identity = \"{}\"\n",
                i + 1,
                self.x,
                i + 1,
                identity.display()
            );
            for d in 0..2 {
                fs::create_dir(dir.join(format!("disk{d}"))).unwrap();
                config.push_str(&format!(
                    "[[disks]]\nid = \"n{}d{d}\"\npath = \"disk{d}\"\n",
                    i + 1
                ));
            }
            config.push_str(&format!(
                "[cluster]\nlisten = \"{}:7576\"\nbootstrap = {}\nheartbeat_ms = 200\n\
                 offline_after = 10\nelection_timeout_ms = {ELECTION_MS}\n",
                self.cluster_ip(i),
                i == 0
            ));
            for j in (0..n).filter(|j| *j != i) {
                config.push_str(&format!(
                    "[[cluster.peers]]\naddr = \"{}:7576\"\n",
                    self.cluster_ip(j)
                ));
            }
            fs::write(dir.join("node.toml"), config).unwrap();
        }
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("node{}", i + 1))
    }

    fn log(&self, i: usize) -> String {
        fs::read_to_string(self.dir(i).join("node.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("--- node{}\n{}", i + 1, self.log(i)))
            .collect()
    }

    fn start_node(&mut self, i: usize) {
        let ns = self.ns(i);
        let config = self.dir(i).join("node.toml");
        let (child, line) = spawn_until_in(
            &["ip", "netns", "exec", &ns],
            &["serve", "--config", config.to_str().unwrap()],
            &self.dir(i).join("node.log"),
            "wormfs-node listening on ",
            &[],
        );
        self.addrs[i] = line
            .trim_start_matches("wormfs-node listening on ")
            .trim()
            .to_owned();
        self.nodes[i] = Some(child);
    }

    /// The master node `i` names, if any.
    fn master_seen_by(&self, i: usize) -> Option<String> {
        let m = super::fixture::status_at(&self.addrs[i])?["master"]
            .as_str()?
            .to_owned();
        (!m.is_empty()).then_some(m)
    }

    /// Mounts through node `via` at a new directory.
    fn mount(&mut self, via: usize) -> PathBuf {
        let mnt = self
            .tmp
            .path()
            .join(format!("mnt{}", self.mounts.len() + 1));
        fs::create_dir(&mnt).unwrap();
        let log = self
            .tmp
            .path()
            .join(format!("mount{}.log", self.mounts.len() + 1));
        let child = start_mount(&self.addrs[via], &mnt, &log);
        self.mounts.push((child, mnt.clone()));
        mnt
    }

    /// Takes node `i`'s cluster link down (`false`) or up (`true`).
    fn cluster_link(&self, i: usize, up: bool) {
        ip(&[
            "link",
            "set",
            &self.veth('c', i),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (child, mnt) in self.mounts.drain(..) {
            stop_mount(child, &mnt);
        }
        for c in self.nodes.iter_mut().filter_map(Option::take) {
            let mut c = c;
            sigterm(&mut c);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 0..self.addrs.len() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        for kind in ['c', 'k'] {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge(kind)])
                .status();
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The master loses its network to the other nodes (its process and its clients' network
/// stay): the two others elect a master within about the election timeout and take writes;
/// a write through the cut-off master is refused, never acknowledged; when the link comes
/// back, the old master follows the new one, serves what the majority wrote, and nothing of
/// the refused write appears.
#[test]
fn a_master_cut_off_by_the_network_is_replaced_refuses_writes_and_rejoins() {
    if let Some(why) = unsupported() {
        eprintln!("network-namespace partition test not run: {why}");
        return;
    }
    let mut net = Net::setup(3);
    for i in 0..3 {
        net.start_node(i);
    }
    let logs = || net.logs();
    let first = wait_for_or_show("a master", Duration::from_secs(30), logs, || {
        let m = net.master_seen_by(1)?;
        (0..3)
            .all(|i| net.master_seen_by(i).as_deref() == Some(m.as_str()))
            .then_some(m)
    });
    assert_eq!(first, "node1", "the bootstrap node leads first");
    let majority_mnt = net.mount(1);
    let old_master_mnt = net.mount(0);
    let before = bytes(3 << 20, 1);
    write_synced(&majority_mnt.join("before.bin"), &before).unwrap();

    // cut node1 off from node2 and node3
    net.cluster_link(0, false);
    let cut = Instant::now();
    let logs = || net.logs();
    let new = wait_for_or_show(
        "a new master on the majority side",
        Duration::from_secs(30),
        logs,
        || net.master_seen_by(1).filter(|m| m != "node1"),
    );
    let elected_after = cut.elapsed();
    eprintln!(
        "new master {new} {elected_after:?} after the cut (election timeout {ELECTION_MS} ms)"
    );
    assert!(
        elected_after < Duration::from_millis(ELECTION_MS * 4 + 5000),
        "no new master for {elected_after:?}"
    );
    let during = bytes(2 << 20, 2);
    let logs = || net.logs();
    // the majority takes writes (the first may meet the election's end)
    wait_for_or_show(
        "a write on the majority side",
        Duration::from_secs(30),
        logs,
        || write_synced(&majority_mnt.join("during.bin"), &during).ok(),
    );
    // a write through the cut-off master is never acknowledged
    let refused = write_synced(&old_master_mnt.join("minority.bin"), &bytes(1 << 20, 3));
    assert!(
        refused.is_err(),
        "a write through the cut-off master was acknowledged"
    );

    // the link comes back: node1 follows the new master and serves what it wrote
    net.cluster_link(0, true);
    let healed = Instant::now();
    let logs = || net.logs();
    wait_for_or_show(
        "node1 to follow the new master",
        Duration::from_secs(40),
        logs,
        || (net.master_seen_by(0).as_deref() == Some(new.as_str())).then_some(()),
    );
    let logs = || net.logs();
    let read_back = wait_for_or_show(
        "node1's mount to read what the majority wrote",
        Duration::from_secs(40),
        logs,
        || fs::read(old_master_mnt.join("during.bin")).ok(),
    );
    eprintln!(
        "node1 rejoined and served the majority's file {:?} after the link came back",
        healed.elapsed()
    );
    assert!(
        read_back == during,
        "node1 served other bytes for during.bin"
    );
    assert_eq!(fs::read(old_master_mnt.join("before.bin")).unwrap(), before);
    for mnt in [&majority_mnt, &old_master_mnt] {
        assert!(
            !mnt.join("minority.bin").exists(),
            "the refused write appeared in {}",
            mnt.display()
        );
    }
    assert_eq!(fs::read(majority_mnt.join("during.bin")).unwrap(), during);
}
