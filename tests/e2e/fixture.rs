//! A node process and a mount process over fresh directories, with logs kept for asserts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_wormfs");

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`] that prints `log()` (the node's log, say) when it times out.
pub fn wait_for_or_show<T>(
    what: &str,
    timeout: Duration,
    log: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; the log:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `wormfs --node ADDR status --json`, `None` when the node does not answer.
pub fn status_at(addr: &str) -> Option<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["--node", addr, "status", "--json"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(path.to_str().unwrap()))
}

/// Spawns `wormfs ARGS`, waits for a stdout line starting with `marker`, and returns the
/// child and that line. Stderr goes to `log`.
pub fn spawn_until(args: &[&str], log: &Path, marker: &str) -> (Child, String) {
    spawn_until_with(args, log, marker, &[])
}

/// [`spawn_until`] with more environment variables for the child.
pub fn spawn_until_with(
    args: &[&str],
    log: &Path,
    marker: &str,
    envs: &[(&str, &str)],
) -> (Child, String) {
    spawn_until_in(&[], args, log, marker, envs)
}

/// [`spawn_until_with`] run through `prefix` (`ip netns exec NS`, say: a command that
/// ends by executing `wormfs ARGS`, so the child is the wormfs process).
pub fn spawn_until_in(
    prefix: &[&str],
    args: &[&str],
    log: &Path,
    marker: &str,
    envs: &[(&str, &str)],
) -> (Child, String) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = command
        .args(args)
        .env(
            "RUST_LOG",
            // a test that checks what the default filter lets through sets WORMFS_TEST_LOG
            std::env::var("WORMFS_TEST_LOG")
                .unwrap_or_else(|_| "info,openraft=warn,wormfs=debug".into()),
        )
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with(marker) => return (child, line),
            Ok(_) => {}
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "`wormfs {}` exited with {status}; log:\n{}",
                        args.join(" "),
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "`wormfs {}` did not print `{marker}`",
                    args.join(" ")
                );
            }
        }
    }
}

/// Waits (up to `timeout`) for `node`, started with a crash point armed, to die there: by
/// SIGKILL, with `log()` naming `point`.
pub fn wait_killed_at(mut node: Child, point: &str, timeout: Duration, log: impl Fn() -> String) {
    use std::os::unix::process::ExitStatusExt;
    let status = wait_for(
        &format!("the node to die at crash point `{point}`"),
        timeout,
        || node.try_wait().unwrap(),
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let text = log();
    assert!(
        text.contains(&format!("crash point `{point}` reached")),
        "{text}"
    );
}

pub fn sigterm(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Starts `wormfs --node ADDR mount MNT` (stderr to `log`) and waits for the mount.
pub fn start_mount(addr: &str, mnt: &Path, log: &Path) -> Child {
    start_mount_with(addr, mnt, log, &[])
}

/// [`start_mount`] with more arguments for `wormfs mount`.
pub fn start_mount_with(addr: &str, mnt: &Path, log: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["--node", addr, "mount", mnt.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (child, _) = spawn_until(&args, log, "wormfs-fuse mounted");
    wait_for("the mount to appear", Duration::from_secs(10), || {
        is_mounted(mnt).then_some(())
    });
    child
}

/// Unmounts with SIGTERM and checks for a clean exit and the mount gone.
pub fn stop_mount(mut child: Child, mnt: &Path) {
    sigterm(&mut child);
    let status = child.wait().unwrap();
    assert!(status.success(), "mount exited with {status}");
    assert!(
        !is_mounted(mnt),
        "still mounted after the mount process exited"
    );
}

/// Drops the kernel's cached pages of `f`, so the next read reaches the mount.
pub fn drop_page_cache(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain call on an open descriptor.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

/// A node over `disks` directories and a mount of it.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub node: Option<Child>,
    pub mount: Option<Child>,
    pub addr: String,
    pub mnt: PathBuf,
}

impl World {
    /// A world with `disks` disks and `extra` appended to the node config.
    pub fn start(disks: usize, extra: &str) -> World {
        assert!(
            Path::new("/dev/fuse").exists(),
            "these tests mount for real and need /dev/fuse"
        );
        let tmp = tempfile::tempdir().unwrap();
        // the node writes its first admin's identity here; the mounts and commands this test
        // starts present it (one test per process under nextest)
        std::env::set_var("WORMFS_IDENTITY", tmp.path().join("admin.identity"));
        let mut config = String::from(
            "node_id = \"node1\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"meta\"\n\
             admin_identity = \"admin.identity\"\n",
        );
        for i in 0..disks {
            std::fs::create_dir(tmp.path().join(format!("disk{i}"))).unwrap();
            config.push_str(&format!("[[disks]]\npath = \"disk{i}\"\n"));
        }
        config.push_str(extra);
        std::fs::write(tmp.path().join("node.toml"), config).unwrap();
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut w = World {
            tmp,
            node: None,
            mount: None,
            addr: String::new(),
            mnt,
        };
        w.start_node();
        w.start_mount();
        w
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The admin identity file the node wrote.
    pub fn admin_identity(&self) -> PathBuf {
        self.tmp.path().join("admin.identity")
    }

    pub fn node_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("node.log")).unwrap_or_default()
    }

    pub fn start_node(&mut self) {
        self.start_node_with(&[]);
    }

    /// Starts the node with more environment variables (a crash point, say).
    pub fn start_node_with(&mut self, envs: &[(&str, &str)]) {
        let config = self.tmp.path().join("node.toml");
        let (child, line) = spawn_until_with(
            &["serve", "--config", config.to_str().unwrap()],
            &self.tmp.path().join("node.log"),
            "wormfs-node listening on ",
            envs,
        );
        self.addr = line
            .trim_start_matches("wormfs-node listening on ")
            .trim()
            .to_owned();
        self.node = Some(child);
    }

    pub fn start_mount(&mut self) {
        self.start_mount_with(&[]);
    }

    /// Mounts with more arguments for `wormfs mount`.
    pub fn start_mount_with(&mut self, extra: &[&str]) {
        self.mount = Some(start_mount_with(
            &self.addr,
            &self.mnt,
            &self.tmp.path().join("mount.log"),
            extra,
        ));
    }

    pub fn mount_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("mount.log")).unwrap_or_default()
    }

    /// The number after `key=` in the mount's last log line that holds `line` (the counts a
    /// mount logs when it stops).
    pub fn mount_count(&self, line: &str, key: &str) -> u64 {
        let log = self.mount_log();
        let found = log
            .lines()
            .rev()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("the mount logs no '{line}' line:\n{log}"));
        let key = format!("{key}=");
        let at = found
            .find(&key)
            .unwrap_or_else(|| panic!("{key} in {found}"))
            + key.len();
        found[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a number after {key} in {found}"))
    }

    /// Unmounts with SIGTERM and waits for a clean exit.
    pub fn stop_mount(&mut self) {
        if let Some(c) = self.mount.take() {
            stop_mount(c, &self.mnt);
        }
    }

    /// Stops the node with SIGTERM and waits for a clean exit.
    pub fn stop_node(&mut self) {
        if let Some(mut c) = self.node.take() {
            sigterm(&mut c);
            let status = c.wait().unwrap();
            assert!(status.success(), "node exited with {status}");
        }
    }

    /// Kills the mount with SIGKILL and detaches its mount point (a mount whose node is gone
    /// for good, since a restarted node listens on a new port).
    pub fn drop_mount(&mut self) {
        if let Some(mut c) = self.mount.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }

    /// Kills the node with SIGKILL (no chance to clean up).
    pub fn kill_node(&mut self) {
        if let Some(mut c) = self.node.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.stop_mount();
        self.stop_node();
        self.start_node();
        self.start_mount();
    }

    /// Runs `wormfs --node ADDR ARGS` and returns stdout; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .arg("--node")
            .arg(&self.addr)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wormfs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `wormfs file info --json` of a mount path.
    pub fn layout(&self, rel: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli(&[
            "file",
            "info",
            "--json",
            self.path(rel).to_str().unwrap(),
        ]))
        .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.mount.take() {
            sigterm(&mut c);
            let _ = c.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(mut c) = self.node.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
