//! The cluster's file locks through real mounts: open locks between mounts (EBUSY), read
//! locks on and off, a killed mount's locks freed by its lease, `fcntl` and `flock` locks
//! across mounts, `O_APPEND` within one mount, and locks kept safe across a master change.

use super::cluster::Cluster;
use super::fixture::{bytes, start_mount, stop_mount, wait_for, World};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A second mount of the world's node, with its log.
fn second_mount(w: &World) -> (Child, PathBuf, PathBuf) {
    let dir = w.tmp.path().join("other");
    fs::create_dir_all(&dir).unwrap();
    let log = w.tmp.path().join("other.log");
    (start_mount(&w.addr, &dir, &log), dir, log)
}

fn open_write(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).open(p)
}

fn errno(r: std::io::Result<File>) -> i32 {
    match r {
        Ok(_) => panic!("the open was granted"),
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// `fcntl(F_SETLK or F_GETLK)` on `f`: the errno, or 0.
fn fcntl_lock(f: &File, cmd: i32, typ: i32, start: i64, len: i64) -> (i32, libc::flock) {
    // SAFETY: a zeroed flock is a valid value; fcntl gets a live descriptor and a pointer to it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    let r = unsafe { libc::fcntl(f.as_raw_fd(), cmd, &mut fl) };
    let e = if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    };
    (e, fl)
}

#[test]
fn a_second_mount_cannot_open_a_file_another_mount_holds_for_write() {
    let mut w = World::start(3, "");
    let (second, other, other_log) = second_mount(&w);
    fs::write(w.path("f.bin"), bytes(1 << 20, 1)).unwrap();

    let a = wait_for(
        "the first mount's write open",
        Duration::from_secs(5),
        || open_write(&w.path("f.bin")).ok(),
    );
    // a writer excludes other mounts' writers, and (read locks on by default) readers
    assert_eq!(errno(open_write(&other.join("f.bin"))), libc::EBUSY);
    assert_eq!(errno(File::open(other.join("f.bin"))), libc::EBUSY);
    // the refused mount says who holds the file
    wait_for(
        "the holder in the second mount's log",
        Duration::from_secs(5),
        || {
            let log = fs::read_to_string(&other_log).unwrap_or_default();
            (log.contains("refused with EBUSY")
                && log.contains("locked by")
                && log.contains(" pid "))
            .then_some(())
        },
    );
    // the same mount may open it again, from another process or this one
    let again = open_write(&w.path("f.bin")).unwrap();
    drop(again);

    // the writer's bytes are whole after close, and then the other mount may write
    let mine = bytes(1 << 20, 2);
    a.write_all_at(&mine, 0).unwrap();
    a.sync_all().unwrap();
    drop(a);
    let b = wait_for(
        "the second mount's write open",
        Duration::from_secs(5),
        || open_write(&other.join("f.bin")).ok(),
    );
    drop(b);
    assert!(fs::read(other.join("f.bin")).unwrap() == mine);
    // readers on both mounts at once are fine (once the other mount's release of its write
    // open has reached the master: it leaves up to 20 ms after the close)
    let r1 = wait_for(
        "a read open on the first mount",
        Duration::from_secs(5),
        || File::open(w.path("f.bin")).ok(),
    );
    let r2 = wait_for("a read open on both mounts", Duration::from_secs(5), || {
        File::open(other.join("f.bin")).ok()
    });
    drop((r1, r2));
    stop_mount(second, &other);
    w.stop_mount();
}

#[test]
fn with_read_locks_off_readers_ignore_writers_and_fcntl_locks_cross_mounts() {
    let mut w = World::start(3, "[locks]\nread_locks = false\n");
    let (second, other, _) = second_mount(&w);
    fs::write(w.path("f.bin"), bytes(4096, 1)).unwrap();
    let a = wait_for(
        "the first mount's write open",
        Duration::from_secs(5),
        || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(w.path("f.bin"))
                .ok()
        },
    );
    // a reader on the other mount is let in; a second writer is still refused
    let b = File::open(other.join("f.bin")).unwrap();
    assert_eq!(errno(open_write(&other.join("f.bin"))), libc::EBUSY);

    // fcntl record locks: the writer holds bytes 0..99 exclusively
    assert_eq!(fcntl_lock(&a, libc::F_SETLK, libc::F_WRLCK, 0, 100).0, 0);
    let (e, _) = fcntl_lock(&b, libc::F_SETLK, libc::F_RDLCK, 50, 10);
    assert!(e == libc::EAGAIN || e == libc::EACCES, "errno {e}");
    let (e, fl) = fcntl_lock(&b, libc::F_GETLK, libc::F_RDLCK, 50, 10);
    assert_eq!(e, 0);
    assert_eq!(
        (i32::from(fl.l_type), fl.l_start, fl.l_len),
        (libc::F_WRLCK, 0, 100),
        "F_GETLK names the writer's lock"
    );
    // elsewhere in the file, shared locks are free
    assert_eq!(fcntl_lock(&b, libc::F_SETLK, libc::F_RDLCK, 200, 10).0, 0);
    // closing a descriptor drops the process's locks on the file (POSIX)
    drop(a);
    wait_for(
        "the byte range freed by close",
        Duration::from_secs(5),
        || (fcntl_lock(&b, libc::F_SETLK, libc::F_RDLCK, 50, 10).0 == 0).then_some(()),
    );
    drop(b);
    stop_mount(second, &other);
    w.stop_mount();
}

#[test]
fn flock_from_two_mounts_waits_or_fails_with_nonblock() {
    let mut w = World::start(3, "");
    let (second, other, _) = second_mount(&w);
    fs::write(w.path("lockfile"), b"").unwrap();
    let a = wait_for("a read open", Duration::from_secs(5), || {
        File::open(w.path("lockfile")).ok()
    });
    // SAFETY: flock(2) on a live descriptor.
    assert_eq!(unsafe { libc::flock(a.as_raw_fd(), libc::LOCK_EX) }, 0);

    let target = other.join("lockfile");
    let nonblock = Command::new("flock")
        .args(["-n", "-x"])
        .arg(&target)
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(
        nonblock.code(),
        Some(1),
        "flock -n got the lock another mount holds"
    );

    let mut waiter = Command::new("flock")
        .arg("-x")
        .arg(&target)
        .arg("true")
        .spawn()
        .unwrap();
    // it waits while the first mount holds the lock
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(
            waiter.try_wait().unwrap().is_none(),
            "flock -x returned while another mount held the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: flock(2) on a live descriptor.
    assert_eq!(unsafe { libc::flock(a.as_raw_fd(), libc::LOCK_UN) }, 0);
    let status = wait_for("flock -x to get the lock", Duration::from_secs(10), || {
        waiter.try_wait().unwrap()
    });
    assert!(status.success(), "flock -x exited with {status}");
    drop(a);
    stop_mount(second, &other);
    w.stop_mount();
}

#[test]
fn a_killed_mount_loses_its_locks_within_the_lease() {
    let mut w = World::start(3, "[locks]\nlease = \"3s\"\n");
    let (second, other, _) = second_mount(&w);
    fs::write(w.path("f.bin"), bytes(4096, 3)).unwrap();
    let a = wait_for(
        "the first mount's write open",
        Duration::from_secs(5),
        || open_write(&w.path("f.bin")).ok(),
    );
    assert_eq!(errno(open_write(&other.join("f.bin"))), libc::EBUSY);

    let mut mount = w.mount.take().unwrap();
    mount.kill().unwrap(); // SIGKILL: no unmount, no release
    mount.wait().unwrap();
    let killed = Instant::now();
    drop(a);
    let b = wait_for("the write lock freed", Duration::from_secs(15), || {
        open_write(&other.join("f.bin")).ok()
    });
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(3 + 2),
        "the killed mount's lock was held {took:?} (lease 3 s)"
    );
    drop(b);
    stop_mount(second, &other);
}

#[test]
fn appends_from_one_mount_are_whole_lines() {
    let mut w = World::start(3, "");
    let file = w.path("log.txt");
    fs::write(&file, b"").unwrap();
    let writers: Vec<Child> = (0..2)
        .map(|i| {
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "for n in $(seq 1 200); do echo \"writer {i} line $n of two hundred\" >> '{}' || exit 1; done",
                    file.display()
                ))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in writers {
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "a writer failed; mount log:\n{}",
            w.mount_log()
        );
    }
    let text = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let missing: Vec<String> = (0..2)
        .flat_map(|i| (1..=200).map(move |n| format!("writer {i} line {n} of two hundred")))
        .filter(|l| !lines.contains(&l.as_str()))
        .collect();
    let torn: Vec<&&str> = lines
        .iter()
        .filter(|l| !l.ends_with("of two hundred"))
        .collect();
    assert!(
        lines.len() == 400 && missing.is_empty(),
        "{} lines, {} bytes; missing {missing:?}; torn {torn:?}; starts {:?}",
        lines.len(),
        text.len(),
        &text[..100.min(text.len())]
    );
    for i in 0..2 {
        for n in 1..=200 {
            let want = format!("writer {i} line {n} of two hundred");
            assert!(lines.contains(&want.as_str()), "missing `{want}`");
        }
    }
    w.stop_mount();
}

#[test]
fn a_lock_stays_held_across_the_death_of_the_master() {
    let mut c = Cluster::start(3, 2, "[locks]\nlease = \"3s\"\n");
    let master = c.wait_master(0, Duration::from_secs(30), None);
    let m = c.index_of(&master);
    let (ia, ib) = ((m + 1) % 3, (m + 2) % 3);

    // a user added through the master connects to every node within seconds
    let bob = c.tmp.path().join("bob.identity");
    c.cli(
        m,
        &[
            "user",
            "add",
            "bob",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--out",
            bob.to_str().unwrap(),
        ],
    )
    .unwrap();
    for i in [ia, ib] {
        wait_for(
            "the new user on every node",
            Duration::from_secs(10),
            || {
                c.cli(i, &["--identity", bob.to_str().unwrap(), "status"])
                    .ok()
            },
        );
    }

    let dir_a = c.tmp.path().join("mnt-a");
    let dir_b = c.tmp.path().join("mnt-b");
    fs::create_dir(&dir_a).unwrap();
    fs::create_dir(&dir_b).unwrap();
    let mount_a = start_mount(&c.addrs[ia], &dir_a, &c.tmp.path().join("mount-a.log"));
    let mount_b = start_mount(&c.addrs[ib], &dir_b, &c.tmp.path().join("mount-b.log"));
    fs::write(dir_a.join("f.bin"), bytes(8192, 5)).unwrap();
    let a = wait_for("mount A's write open", Duration::from_secs(5), || {
        open_write(&dir_a.join("f.bin")).ok()
    });
    let b_path = dir_b.join("f.bin");
    wait_for("mount B to see the file", Duration::from_secs(5), || {
        b_path.exists().then_some(())
    });
    assert_eq!(errno(open_write(&b_path)), libc::EBUSY);

    // the master dies while A holds the lock and renews it
    c.kill(m);
    let died = Instant::now();
    let new_master = c.wait_master(ia, Duration::from_secs(30), Some(&master));
    // for the failover and two leases after it, B is never granted the file
    let mut busy_after = 0;
    while died.elapsed() < Duration::from_secs(3) * 2 + Duration::from_secs(4) {
        match open_write(&b_path) {
            Ok(_) => panic!(
                "mount B was granted the file A holds, {:?} after the master died (new master {new_master})",
                died.elapsed()
            ),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy_after += 1,
            Err(_) => {} // no master yet: refused for that
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        busy_after > 0,
        "the new master never said who holds the file"
    );
    // A's bytes, written after the failover, are whole; once A closes, B gets the file
    let mine = bytes(8192, 6);
    a.write_all_at(&mine, 0).unwrap();
    a.sync_all().unwrap();
    drop(a);
    let b = wait_for(
        "mount B's write open after A closed",
        Duration::from_secs(15),
        || open_write(&b_path).ok(),
    );
    drop(b);
    assert!(fs::read(&b_path).unwrap() == mine);
    stop_mount(mount_a, &dir_a);
    stop_mount(mount_b, &dir_b);
}
