//! A node killed at each dangerous step (the crash points of `wormfs::crash`, compiled into
//! the test build only): after a restart, what was acknowledged reads back, what was cut off
//! is either there whole or not at all, and no chunk the metadata references is missing.

use crate::fixture::*;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use wormfs::crash;

/// Restarts the node of `w` armed with crash point `point`, runs `act` (which must fail:
/// the node dies before answering), and checks that the node died there, by SIGKILL. The
/// node is then started again, unarmed, with a new mount.
fn crash_at(w: &mut World, point: &str, act: impl FnOnce(&World) -> std::io::Result<()>) {
    w.stop_mount();
    w.stop_node();
    w.start_node_with(&[(crash::CRASH_AT_ENV, point)]);
    w.start_mount();
    let outcome = act(w);
    assert!(
        outcome.is_err(),
        "the operation cut off at `{point}` reported success"
    );
    wait_killed_at(
        w.node.take().expect("node started"),
        point,
        Duration::from_secs(30),
        || w.node_log(),
    );
    w.drop_mount();
    w.start_node();
    w.start_mount();
}

/// Every chunk the metadata lists for `rel` is a file on disk.
fn chunks_are_all_there(w: &World, rel: &str) {
    for stripe in w.layout(rel)["stripes"].as_array().unwrap() {
        for c in stripe["chunks"].as_array().unwrap() {
            let p = c["path"].as_str().unwrap();
            assert!(
                Path::new(p).exists(),
                "{rel}: chunk {p} is referenced but gone"
            );
        }
    }
}

/// `rel` holds a prefix of `data` in whole blocks of 64 KiB: each block reads as written
/// or as zeros (a stripe that was never committed is a hole).
fn whole_or_absent(w: &World, rel: &str, data: &[u8]) -> usize {
    let got = fs::read(w.path(rel)).unwrap();
    assert!(got.len() <= data.len(), "{rel} grew to {} bytes", got.len());
    for (i, block) in got.chunks(65536).enumerate() {
        let want = &data[i * 65536..i * 65536 + block.len()];
        assert!(
            block == want || block.iter().all(|b| *b == 0),
            "{rel}: block {i} is neither what was written nor a hole"
        );
    }
    got.len()
}

/// Writes `rel` through the mount and syncs it: acknowledged when this returns `Ok`.
fn write_synced(w: &World, rel: &str, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(w.path(rel))?;
    f.write_all(data)?;
    f.sync_all()
}

#[test]
fn a_node_killed_after_a_stripe_s_chunks_are_synced_and_before_its_commit_loses_nothing() {
    let mut w = World::start(3, "");
    let before = bytes(300_000, 1);
    write_synced(&w, "before", &before).unwrap();
    let cut = bytes(3_000_000, 2);
    crash_at(&mut w, crash::STRIPE_CHUNKS_SYNCED, |w| {
        write_synced(w, "cut", &cut)
    });
    assert!(fs::read(w.path("before")).unwrap() == before);
    chunks_are_all_there(&w, "before");
    // the create was committed, no stripe of it was
    assert_eq!(whole_or_absent(&w, "cut", &cut), 0);
    chunks_are_all_there(&w, "cut");
    // and the file can be written again
    write_synced(&w, "cut", &cut).unwrap();
    assert!(fs::read(w.path("cut")).unwrap() == cut);
}

#[test]
fn a_node_killed_after_a_stripe_s_commit_and_before_the_reply_keeps_the_stripe() {
    let mut w = World::start(3, "");
    let cut = bytes(3_000_000, 3);
    crash_at(&mut w, crash::STRIPE_COMMITTED, |w| {
        write_synced(w, "cut", &cut)
    });
    // the writer saw a failure, but the stripe was committed: it is there, whole
    let kept = whole_or_absent(&w, "cut", &cut);
    assert!(kept > 0, "the committed stripe is gone");
    chunks_are_all_there(&w, "cut");
}

#[test]
fn a_node_killed_after_a_rename_s_commit_and_before_the_index_update_keeps_the_new_name() {
    let mut w = World::start(3, "");
    let data = bytes(2_500_000, 4);
    write_synced(&w, "old", &data).unwrap();
    crash_at(&mut w, crash::RENAME_COMMITTED, |w| {
        fs::rename(w.path("old"), w.path("new"))
    });
    assert!(!w.path("old").exists());
    assert!(fs::read(w.path("new")).unwrap() == data);
    chunks_are_all_there(&w, "new");
}

#[test]
fn every_crash_point_has_a_test() {
    let source = include_str!("crash.rs");
    for point in crash::POINTS {
        let constant = match *point {
            crash::STRIPE_CHUNKS_SYNCED => "crash::STRIPE_CHUNKS_SYNCED",
            crash::STRIPE_COMMITTED => "crash::STRIPE_COMMITTED",
            crash::RENAME_COMMITTED => "crash::RENAME_COMMITTED",
            // a cluster test (cluster.rs) goes through this one
            crash::SNAPSHOT_REPLACED => continue,
            // and a heal test (heal.rs) this one
            crash::REPAIR_CHUNKS_WRITTEN => continue,
            // and a cluster test this failure point
            crash::APPLY_FAILS => continue,
            other => panic!("crash point `{other}` has no test here"),
        };
        assert!(source.contains(&format!("crash_at(&mut w, {constant}")));
    }
}
