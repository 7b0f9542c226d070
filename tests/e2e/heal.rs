//! Self-healing on a real node process: the scrub finds damaged chunk files, repair
//! rebuilds them, a wiped disk is not claimed again, a crash in the middle of a repair loses
//! nothing, and one data directory has one owner.

use super::fixture::{bytes, wait_for, wait_killed_at, World, BIN};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// 4+2 with 256 KiB stripes on every file; repair looks for work every second; scrub only
/// on command.
const HEAL: &str = "[policies]\ndefault = \"small\"\n[policies.named.small]\nk = 4\nm = 2\n\
                    stripe_size = \"256KiB\"\n[heal]\nrepair_every = \"1s\"\n\
                    scrub_every = \"off\"\ndeep_scrub_every = \"off\"\n";

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// The chunk file of shard `index` of stripe `stripe`, from `file info --json`.
fn chunk_file(layout: &serde_json::Value, stripe: usize, index: u64) -> String {
    layout["stripes"][stripe]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["index"] == index)
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn flip(path: &str, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
}

/// True when every stripe of `rel` has `width` chunks, all `ok`, on distinct disks, none
/// on `not_disk`.
fn whole(w: &World, rel: &str, width: usize, not_disk: Option<&str>) -> bool {
    let l = w.layout(rel);
    l["stripes"].as_array().unwrap().iter().all(|s| {
        let chunks = s["chunks"].as_array().unwrap();
        let mut disks: Vec<&str> = chunks.iter().map(|c| c["disk"].as_str().unwrap()).collect();
        disks.sort_unstable();
        disks.dedup();
        chunks.len() == width
            && disks.len() == width
            && chunks.iter().all(|c| c["state"] == "ok")
            && not_disk.is_none_or(|d| !disks.contains(&d))
    })
}

fn scrub(w: &World, deep: bool) -> serde_json::Value {
    let mut args = vec!["scrub", "--wait", "--json"];
    if deep {
        args.push("--deep");
    }
    serde_json::from_str(&w.cli(&args)).unwrap()
}

#[test]
fn scrub_and_repair_heal_rot_in_data_and_parity_truncation_deleted_chunks_and_a_wiped_disk() {
    let mut w = World::start(7, HEAL);
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("f{i}"), bytes(1 << 20, 40 + i)))
        .collect();
    for (name, data) in &files {
        write_synced(&w.path(name), data);
    }
    let l = w.layout("f0");
    flip(&chunk_file(&l, 0, 0), 5000); // data
    flip(&chunk_file(&l, 1, 5), 5000); // parity: no read ever touches it
    let t = chunk_file(&l, 2, 2);
    let len = fs::metadata(&t).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    fs::remove_file(chunk_file(&l, 3, 3)).unwrap();

    let s = scrub(&w, true);
    assert_eq!(s["found"], 4, "{s}");
    assert_eq!(s["done"], s["total"], "{s}");
    wait_for("repair of f0", Duration::from_secs(30), || {
        whole(&w, "f0", 6, None).then_some(())
    });
    let r: serde_json::Value = serde_json::from_str(&w.cli(&["repair", "--json"])).unwrap();
    assert!(r["repaired"].as_u64().unwrap() >= 4, "{r}");
    // the rebuilt chunks verify: a second deep scrub finds nothing
    assert_eq!(scrub(&w, true)["found"], 0);

    // A wiped disk (or an unmounted one, leaving an empty directory) is not claimed again:
    // it shows failed, and its chunks are rebuilt on the disk its stripes do not use.
    w.stop_mount();
    w.stop_node();
    let disk3 = w.tmp.path().join("disk3");
    for e in fs::read_dir(&disk3).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            fs::remove_dir_all(&p).unwrap();
        } else {
            fs::remove_file(&p).unwrap();
        }
    }
    w.start_node();
    w.start_mount();
    let status: serde_json::Value = serde_json::from_str(&w.cli(&["status", "--json"])).unwrap();
    let d3 = status["nodes"][0]["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "disk3")
        .unwrap()
        .clone();
    assert_eq!(d3["healthy"], false, "{status}");
    assert!(
        !disk3.join("wormfs-disk.toml").exists(),
        "a wiped disk must not be claimed again"
    );
    assert!(w.node_log().contains("disk failed"), "{}", w.node_log());
    for (name, _) in &files {
        wait_for(
            "the wiped disk's chunks rebuilt",
            Duration::from_secs(30),
            || whole(&w, name, 6, Some("disk3")).then_some(()),
        );
    }
    let risk: serde_json::Value = serde_json::from_str(&w.cli(&["at-risk", "--json"])).unwrap();
    assert_eq!(risk["degraded"], 0, "{risk}");
    assert_eq!(risk["unreadable"], 0, "{risk}");
    // a fresh mount reads every file exact
    w.stop_mount();
    w.start_mount();
    for (name, data) in &files {
        assert!(&fs::read(w.path(name)).unwrap() == data, "{name}");
    }
}

#[test]
fn file_info_and_what_if_tell_the_truth_about_a_lost_chunk() {
    let w = World::start(6, HEAL);
    // repair paused: the loss stays for the reports to show
    w.cli(&["repair", "pause"]);
    write_synced(&w.path("a"), &bytes(1 << 20, 1));
    let l = w.layout("a");
    fs::remove_file(chunk_file(&l, 0, 1)).unwrap();
    assert_eq!(scrub(&w, false)["found"], 1);
    let l = w.layout("a");
    let s0 = &l["stripes"][0];
    assert_eq!(s0["margin"], 1, "{l}");
    assert_eq!(s0["chunks"][1]["state"], "missing", "{l}");
    assert_eq!(l["stripes"][1]["margin"], 2, "{l}");
    let text = w.cli(&["file", "info", w.path("a").to_str().unwrap()]);
    assert!(text.contains("missing"), "{text}");
    // losing two more disks of stripe 0 would make it unreadable; one more leaves it at 0
    let d = |i: usize| s0["chunks"][i]["disk"].as_str().unwrap().to_owned();
    let r: serde_json::Value = serde_json::from_str(&w.cli(&[
        "what-if",
        "--json",
        "--lose-disk",
        &d(2),
        "--lose-disk",
        &d(3),
    ]))
    .unwrap();
    assert_eq!(r["files_unreadable"], 1, "{r}");
    assert_eq!(r["files"][0]["path"], "/a", "{r}");
    let r: serde_json::Value =
        serde_json::from_str(&w.cli(&["what-if", "--json", "--lose-disk", &d(2)])).unwrap();
    assert_eq!(
        (r["files_unreadable"].as_u64(), r["files_at_risk"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    let out = Command::new(BIN)
        .args(["--node", &w.addr, "what-if", "--lose-disk", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disk `nope`") && err.contains("not in the cluster"),
        "{err}"
    );
}

/// With repair paused, writes `n` files of 1 MiB (seeds from `seed`) and deletes one chunk
/// of each of their four stripes; a scrub finds them all.
fn damaged_files(w: &World, n: u64, seed: u64) -> Vec<(String, Vec<u8>)> {
    w.cli(&["repair", "pause"]);
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("f{i}"), bytes(1 << 20, seed + i)))
        .collect();
    for (name, data) in &files {
        write_synced(&w.path(name), data);
    }
    for (name, _) in &files {
        let l = w.layout(name);
        for stripe in 0..4 {
            fs::remove_file(chunk_file(&l, stripe, (stripe % 6) as u64)).unwrap();
        }
    }
    assert_eq!(scrub(w, false)["found"], 4 * n);
    files
}

/// Waits until every file is whole again on 6 disks, then checks its bytes and that a deep
/// scrub finds nothing.
fn repaired_whole(w: &World, files: &[(String, Vec<u8>)]) {
    for (name, _) in files {
        wait_for("the repair to complete", Duration::from_secs(60), || {
            whole(w, name, 6, None).then_some(())
        });
    }
    for (name, data) in files {
        assert!(&fs::read(w.path(name)).unwrap() == data, "{name}");
    }
    assert_eq!(scrub(w, true)["found"], 0);
}

#[test]
fn a_crash_in_the_middle_of_a_repair_loses_nothing_and_the_repair_completes() {
    let mut w = World::start(6, HEAL);
    let files = damaged_files(&w, 4, 70);
    // two stripe repairs a second: slow enough to kill the node in the middle
    w.cli(&["repair", "resume", "--ops", "2"]);
    wait_for("repair under way", Duration::from_secs(30), || {
        let r: serde_json::Value = serde_json::from_str(&w.cli(&["repair", "--json"])).ok()?;
        (r["repaired"].as_u64()? >= 2 && r["queued"].as_u64()? >= 2).then_some(())
    });
    w.kill_node();
    w.stop_mount();
    w.start_node();
    w.start_mount();
    repaired_whole(&w, &files);
}

/// The node dies (crash point) after the repair worker stored a stripe's rebuilt chunks and
/// before their commit: restarted, the repair completes, every file reads back, and a scrub
/// finds nothing.
#[test]
fn a_node_killed_between_a_repair_s_chunk_writes_and_its_commit_loses_nothing() {
    use wormfs::crash;
    let mut w = World::start(6, HEAL);
    let files = damaged_files(&w, 2, 90);
    w.stop_mount();
    w.stop_node();
    w.start_node_with(&[(crash::CRASH_AT_ENV, crash::REPAIR_CHUNKS_WRITTEN)]);
    w.cli(&["repair", "resume"]);
    wait_killed_at(
        w.node.take().unwrap(),
        crash::REPAIR_CHUNKS_WRITTEN,
        Duration::from_secs(60),
        || w.node_log(),
    );
    w.start_node();
    w.cli(&["repair", "resume"]);
    w.start_mount();
    repaired_whole(&w, &files);
}

#[test]
fn a_second_node_on_the_same_data_directory_is_refused() {
    let w = World::start(3, "");
    let config = w.tmp.path().join("node.toml");
    let out = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another WormFS process") && err.contains("data directory"),
        "{err}"
    );
    // the first node is unharmed
    fs::write(w.path("still"), b"works").unwrap();
    assert_eq!(fs::read(w.path("still")).unwrap(), b"works");
}

/// Runs `wormfs ARGS` expecting it to exit by itself within 20 s; returns (success, stderr).
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for("the command to exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.success(), err)
}

fn remove_meta(w: &World) {
    for e in fs::read_dir(w.tmp.path().join("meta")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("meta.sqlite")
        {
            fs::remove_file(p).unwrap();
        }
    }
}

#[test]
fn a_lost_metadata_database_is_refused_at_start_and_recover_brings_every_file_back() {
    use std::os::unix::fs::PermissionsExt;
    let mut w = World::start(6, HEAL);
    fs::create_dir_all(w.path("dir/sub")).unwrap();
    w.cli(&["policy", "set", w.path("dir").to_str().unwrap(), "general"]);
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("a", bytes(1 << 20, 1)),
        ("dir/b", bytes((3 << 20) + 100, 2)), // its last 100 bytes are kept in the metadata
        ("dir/sub/c", bytes(300_000, 3)),
        ("x", bytes(700_000, 4)),
        ("tiny", bytes(100, 5)), // kept in the metadata whole
    ];
    for (name, data) in &files {
        write_synced(&w.path(name), data);
    }
    fs::set_permissions(w.path("dir/sub/c"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("dir/b", w.path("link")).unwrap();
    let before_b = w.layout("dir/b");
    // a clean stop writes a copy of the metadata to the first two disks
    w.stop_mount();
    w.stop_node();
    for d in ["disk0", "disk1"] {
        assert!(
            w.tmp
                .path()
                .join(d)
                .join(".wormfs-meta-backup.sqlite")
                .exists(),
            "{d}"
        );
    }
    // after the copy: a new file, a file rewritten, a file renamed; then a crash
    w.start_node();
    w.start_mount();
    files.push(("later", bytes(600_000, 6)));
    write_synced(&w.path("later"), &files[5].1);
    files[0].1 = bytes(1 << 20, 7);
    write_synced(&w.path("a"), &files[0].1);
    fs::rename(w.path("x"), w.path("dir/y")).unwrap();
    files[3].0 = "dir/y";
    w.kill_node();
    w.stop_mount();
    remove_meta(&w);

    let config = w.tmp.path().join("node.toml");
    let config = config.to_str().unwrap();
    let (ok, err) = run_to_exit(&["serve", "--config", config]);
    assert!(!ok, "a node must not start empty over disks full of chunks");
    assert!(
        err.contains("is missing, but disk") && err.contains("wormfs recover"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["recover", "--json", "--config", config])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["backup"]["path"].is_string(), "{report}");
    assert_eq!(
        report["files"], 1,
        "only `later` is newer than the copy: {report}"
    );
    assert_eq!(
        report["updated_stripes"], 4,
        "the four stripes of `a`: {report}"
    );
    assert_eq!(report["renamed"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["gone"].as_array().unwrap().len(), 0, "{report}");
    // a second recover over the rebuilt database is refused
    let (ok, err) = run_to_exit(&["recover", "--config", config]);
    assert!(
        !ok && err.contains("recover only rebuilds a lost one"),
        "{err}"
    );

    w.start_node();
    w.start_mount();
    for (name, data) in &files {
        assert_eq!(
            fs::metadata(w.path(name)).unwrap().len(),
            data.len() as u64,
            "{name}"
        );
        assert!(&fs::read(w.path(name)).unwrap() == data, "{name}");
    }
    assert!(!w.path("x").exists());
    let mode = fs::metadata(w.path("dir/sub/c"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        fs::read_link(w.path("link")).unwrap().to_str(),
        Some("dir/b")
    );
    let after_b = w.layout("dir/b");
    for key in ["policy", "k", "m", "stripe_size", "size", "inode"] {
        assert_eq!(after_b[key], before_b[key], "{key}: {after_b}");
    }
    // the recovered file system takes writes like any other
    write_synced(&w.path("dir/sub/new"), b"after recovery, 27 bytes ok");
    assert_eq!(
        fs::read(w.path("dir/sub/new")).unwrap(),
        b"after recovery, 27 bytes ok"
    );
}

#[test]
fn recover_without_a_metadata_copy_rebuilds_files_from_the_chunks_alone() {
    let mut w = World::start(6, &format!("{HEAL}meta_backup_every = \"off\"\n"));
    fs::create_dir_all(w.path("d")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a", bytes(1 << 20, 11)),
        ("d/b", bytes((1 << 20) + 300_000, 12)),
    ];
    for (name, data) in &files {
        write_synced(&w.path(name), data);
    }
    w.kill_node(); // no clean stop: no copy either
    w.stop_mount();
    for d in 0..6 {
        let _ = fs::remove_file(
            w.tmp
                .path()
                .join(format!("disk{d}/.wormfs-meta-backup.sqlite")),
        );
    }
    remove_meta(&w);
    let config = w.tmp.path().join("node.toml");
    let out = Command::new(BIN)
        .args(["recover", "--json", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["backup"].is_null(), "{report}");
    assert_eq!(report["files"], 2, "{report}");
    w.start_node();
    w.start_mount();
    for (name, data) in &files {
        assert!(&fs::read(w.path(name)).unwrap() == data, "{name}");
    }
    let l = w.layout("d/b");
    assert_eq!(
        (l["policy"].as_str(), l["k"].as_u64()),
        (Some("small"), Some(4)),
        "{l}"
    );
}

#[test]
fn the_garbage_worker_removes_unreferenced_chunks_temp_files_and_empty_folders_only() {
    let w = World::start(
        6,
        &format!("{HEAL}garbage_every = \"1s\"\ngarbage_grace = \"1s\"\n"),
    );
    let data = bytes(1 << 20, 90);
    write_synced(&w.path("kept"), &data);
    let l = w.layout("kept");
    let real = std::path::PathBuf::from(chunk_file(&l, 0, 0));
    let folder = real.parent().unwrap().to_owned();
    let name = real.file_name().unwrap().to_str().unwrap().to_owned();
    let ino = l["inode"].as_u64().unwrap();
    // an older generation of the same shard: garbage
    let stale = folder.join(format!("f{ino}_s0_g1_c0.chunk"));
    fs::copy(&real, &stale).unwrap();
    // a temporary file of a write cut short: garbage
    let temp = folder.join(format!(".{name}.1.2.tmp"));
    fs::write(&temp, b"partial").unwrap();
    // a chunk of a file this node has not heard of yet (a replica behind): kept
    let future = folder.join("f999999_s0_g1_c0.chunk");
    fs::copy(&real, &future).unwrap();
    // an empty chunk folder: removed
    let top = folder.parent().unwrap();
    let empty = top.join("zzzzzzzzzz");
    fs::create_dir(&empty).unwrap();
    wait_for("the garbage swept", Duration::from_secs(30), || {
        (!stale.exists() && !temp.exists() && !empty.exists()).then_some(())
    });
    assert!(real.exists() && future.exists());
    let workers: serde_json::Value = serde_json::from_str(&w.cli(&["status", "--json"])).unwrap();
    let g = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "garbage@node1")
        .cloned();
    assert!(g.is_some(), "{workers}");
    assert!(fs::read(w.path("kept")).unwrap() == data);
    assert_eq!(scrub(&w, true)["found"], 0);
}

#[test]
fn a_drained_disk_is_emptied_takes_no_new_chunks_and_can_then_be_removed() {
    let mut w = World::start(7, HEAL);
    let files: Vec<(String, Vec<u8>)> = (0..2)
        .map(|i| (format!("f{i}"), bytes(1 << 20, 300 + i)))
        .collect();
    for (name, data) in &files {
        write_synced(&w.path(name), data);
    }
    let on_disk3 = |w: &World, name: &str| {
        w.layout(name)["stripes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["chunks"].as_array().unwrap().clone())
            .filter(|c| c["disk"] == "disk3")
            .count()
    };
    assert!(files.iter().map(|(n, _)| on_disk3(&w, n)).sum::<usize>() > 0);
    let fails = |w: &World, args: &[&str]| {
        let out = Command::new(BIN)
            .args(["--node", &w.addr])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fails(&w, &["disk", "remove", "disk3"]);
    assert!(
        err.contains("still holds") && err.contains("drain it first"),
        "{err}"
    );

    // --wait returns once repair has moved every chunk away: no polling needed after it
    let out = w.cli(&["disk", "drain", "disk3", "--wait"]);
    assert!(out.contains("repair finished"), "{out}");
    for (name, _) in &files {
        assert!(whole(&w, name, 6, Some("disk3")), "{name} still on disk3");
    }
    write_synced(&w.path("new"), &bytes(1 << 20, 310));
    assert_eq!(
        on_disk3(&w, "new"),
        0,
        "a draining disk takes no new chunks"
    );
    let err = fails(&w, &["disk", "remove", "disk3"]);
    assert!(err.contains("still among node node1's disks"), "{err}");

    // out of the config, the empty disk is removed for good
    w.stop_mount();
    w.stop_node();
    let mut config =
        String::from("node_id = \"node1\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"meta\"\n");
    for i in [0, 1, 2, 4, 5, 6] {
        config.push_str(&format!(
            "[[disks]]\nid = \"disk{i}\"\npath = \"disk{i}\"\n"
        ));
    }
    config.push_str(HEAL);
    fs::write(w.tmp.path().join("node.toml"), config).unwrap();
    w.start_node();
    w.start_mount();
    w.cli(&["disk", "remove", "disk3"]);
    let status: serde_json::Value = serde_json::from_str(&w.cli(&["status", "--json"])).unwrap();
    let disks: Vec<&str> = status["nodes"][0]["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(!disks.contains(&"disk3"), "{status}");
    let risk: serde_json::Value = serde_json::from_str(&w.cli(&["at-risk", "--json"])).unwrap();
    assert_eq!(risk["degraded"], 0, "{risk}");
    for (name, data) in &files {
        assert!(&fs::read(w.path(name)).unwrap() == data, "{name}");
    }
}

/// The number of entries in the orphan directory.
fn orphans(w: &World) -> usize {
    fs::read_dir(w.path(".wormfs-orphans"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Passes the garbage worker of node1 has finished.
fn garbage_passes(w: &World) -> u64 {
    let status: serde_json::Value = serde_json::from_str(&w.cli(&["status", "--json"])).unwrap();
    status["workers"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "garbage@node1"))
        .and_then(|g| g["passes"].as_u64())
        .unwrap_or(0)
}

/// A file unlinked while open, whose mount then dies: once the mount's lock session has
/// expired, the lock service says no one has it open, and the garbage worker removes it
/// with its chunks after the short garbage grace, not the week-long orphan grace.
#[test]
fn a_file_a_crashed_mount_left_unlinked_but_open_is_removed_once_no_one_has_it_open() {
    let mut w = World::start(
        6,
        &format!(
            "{HEAL}garbage_every = \"1s\"\ngarbage_grace = \"1s\"\norphan_grace = \"1h\"\n\
             [locks]\nlease = \"2s\"\n"
        ),
    );
    let mut f = fs::File::create(w.path("victim")).unwrap();
    f.write_all(&bytes(300_000, 5)).unwrap();
    f.sync_all().unwrap();
    let chunks: Vec<String> = w.layout("victim")["stripes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["chunks"].as_array().unwrap().clone())
        .map(|c| c["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(!chunks.is_empty());
    fs::remove_file(w.path("victim")).unwrap(); // open here: kept in the orphan directory
    assert_eq!(orphans(&w), 1);
    // the mount dies without closing it
    let mut m = w.mount.take().unwrap();
    m.kill().unwrap();
    m.wait().unwrap();
    let _ = Command::new("umount").arg("-l").arg(&w.mnt).status();
    drop(f);
    w.start_mount();
    wait_for("the orphan removed", Duration::from_secs(30), || {
        (orphans(&w) == 0).then_some(())
    });
    // its chunks went with it
    for c in &chunks {
        wait_for("its chunk files deleted", Duration::from_secs(10), || {
            (!std::path::Path::new(c).exists()).then_some(())
        });
    }
}

/// A file unlinked while a live mount keeps it open stays, however old, and reads back
/// exact; it goes when the mount closes it.
#[test]
fn an_orphan_a_live_mount_has_open_stays_past_the_orphan_grace() {
    let w = World::start(
        6,
        &format!("{HEAL}garbage_every = \"1s\"\ngarbage_grace = \"1s\"\norphan_grace = \"1s\"\n"),
    );
    let data = bytes(300_000, 6);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(w.path("kept-open"))
        .unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    fs::remove_file(w.path("kept-open")).unwrap();
    assert_eq!(orphans(&w), 1);
    // three garbage passes, the last two begun well past the orphan grace
    let start = garbage_passes(&w);
    wait_for("three garbage passes", Duration::from_secs(30), || {
        (garbage_passes(&w) >= start + 3).then_some(())
    });
    assert_eq!(
        orphans(&w),
        1,
        "an orphan still open on a live mount was removed"
    );
    let mut back = Vec::new();
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    assert!(back == data, "the open orphan no longer reads back exact");
    drop(f);
    wait_for(
        "the orphan gone after its last close",
        Duration::from_secs(10),
        || (orphans(&w) == 0).then_some(()),
    );
}
