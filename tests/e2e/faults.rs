//! Defects found by hostile testing (issue 14): each test failed before its fix.

use crate::fixture::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Writes buffered in the mount that never reach the node are lost: the unmount says so
/// and `wormfs mount` exits with failure, instead of "unmounted" and status 0.
#[test]
fn writes_the_node_never_took_fail_the_unmount() {
    let mut w = World::start(3, "");
    // 100 KB, less than a stripe: the mount holds it until the file is flushed
    let mut f = std::fs::File::create(w.path("buffered")).unwrap();
    f.write_all(&bytes(100_000, 7)).unwrap();
    w.kill_node();
    let mut mount = w.mount.take().unwrap();
    sigterm(&mut mount);
    let status = mount.wait().unwrap();
    drop(f);
    let log = w.mount_log();
    assert!(
        !status.success(),
        "the mount exited with success though 100 KB it acknowledged were never stored; log:\n{log}"
    );
    assert!(
        log.contains("100000 bytes written to 1 file(s)") && log.contains("NOT stored"),
        "the mount's last words do not name the lost bytes:\n{log}"
    );
}

/// The same with the file closed first: the close reports the failure, and so does the
/// unmount, whose flush cannot store the bytes either.
#[test]
fn a_failed_flush_at_unmount_fails_the_unmount() {
    let mut w = World::start(3, "");
    let mut f = std::fs::File::create(w.path("buffered")).unwrap();
    f.write_all(&bytes(100_000, 8)).unwrap();
    w.kill_node();
    let closed = f.sync_all();
    assert!(closed.is_err(), "fsync with the node gone returned success");
    drop(f);
    let mut mount = w.mount.take().unwrap();
    sigterm(&mut mount);
    let status = mount.wait().unwrap();
    let log = w.mount_log();
    assert!(
        !status.success(),
        "the mount exited with success; log:\n{log}"
    );
    assert!(log.contains("NOT stored"), "{log}");
    assert!(
        !is_mounted(&w.mnt),
        "the mount point is still mounted after the process ended"
    );
}

/// `wormfs file info F | head -1`: a reader that goes away ends the command with success,
/// not a panic (exit 101 and a backtrace).
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let w = World::start(3, "");
    std::fs::write(w.path("f"), bytes(300_000, 9)).unwrap();
    for args in [
        vec!["file", "info", "/f"],
        vec!["status"],
        vec!["--json", "file", "info", "/f"],
    ] {
        let mut child = Command::new(BIN)
            .arg("--node")
            .arg(&w.addr)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // the reader goes before the command has its answer from the node to print
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "wormfs {args:?} into a closed pipe: {}\n{stderr}",
            out.status
        );
    }
}

/// `truncate -s 9223372036854775807 F` on the mount: `df` and `wormfs status` still work
/// (the node's byte counter overflowed into a REAL, and both failed until F was removed).
#[test]
fn a_file_of_the_largest_size_leaves_df_and_status_working() {
    let w = World::start(3, "");
    for name in ["a", "b"] {
        let f = std::fs::File::create(w.path(name)).unwrap();
        f.set_len(i64::MAX as u64).unwrap();
    }
    assert_eq!(
        std::fs::metadata(w.path("a")).unwrap().len(),
        i64::MAX as u64
    );
    let c = std::ffi::CString::new(w.mnt.to_str().unwrap()).unwrap();
    // SAFETY: statvfs(3) with a valid path and a zeroed struct it fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(
        rc,
        0,
        "statfs of the mount failed: {}",
        std::io::Error::last_os_error()
    );
    let status = w.cli(&["status"]);
    assert!(status.contains("node1"), "{status}");
}
