//! Faults, durability, the CLI and the node's config checks.

use super::fixture::{bytes, drop_page_cache, start_mount, stop_mount, wait_for, World, BIN};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use wormfs::ids::FileId;

#[test]
fn losing_m_chunks_reads_exact_and_losing_more_is_eio_naming_the_stripe() {
    let w = World::start(3, ""); // general: 2+1, 1 MiB stripes
    let data = bytes((5 << 20) + (1 << 19), 4); // 6 stripes, the last one half full
    fs::write(w.path("f.bin"), &data).unwrap();
    let layout = w.layout("f.bin");
    let stripes = layout["stripes"].as_array().unwrap();
    assert_eq!(stripes.len(), 6);
    assert_eq!(stripes[5]["len"].as_u64(), Some(1 << 19));
    let chunk = |s: usize, c: usize| stripes[s]["chunks"][c]["path"].as_str().unwrap().to_owned();

    // m = 1: losing one chunk of stripe 2 still reads exact (read through a fresh mount so
    // nothing is cached)
    fs::remove_file(chunk(2, 0)).unwrap();
    let mut w = w;
    w.stop_mount();
    w.start_mount();
    // a jump into the lost chunk's bytes (a range read) decodes around it too
    let mut buf = vec![0u8; 4096];
    let at = (2 << 20) + 100;
    std::os::unix::fs::FileExt::read_exact_at(
        &fs::File::open(w.path("f.bin")).unwrap(),
        &mut buf,
        at as u64,
    )
    .unwrap();
    assert!(buf == data[at..at + 4096]);
    assert!(fs::read(w.path("f.bin")).unwrap() == data);
    let after = w.layout("f.bin");
    assert_eq!(
        after["stripes"][2]["chunks"][0]["state"].as_str(),
        Some("missing"),
        "the read reported the loss"
    );

    // a second loss in stripe 2 is one too many
    fs::remove_file(chunk(2, 1)).unwrap();
    w.stop_mount();
    w.start_mount();
    let err = fs::read(w.path("f.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let log = w.node_log();
    assert!(
        log.contains("stripe 2 of file") && log.contains("unreadable"),
        "node log names the stripe:\n{log}"
    );
    // the other stripes still read
    let mut f = fs::File::open(w.path("f.bin")).unwrap();
    let mut first = vec![0u8; 1 << 20];
    std::io::Read::read_exact(&mut f, &mut first).unwrap();
    assert!(first == data[..1 << 20]);
}

#[test]
fn fsynced_data_survives_sigkill_of_the_node() {
    let mut w = World::start(3, "");
    let data = bytes(3_333_333, 5);
    let mut f = fs::File::create(w.path("durable.bin")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap(); // acknowledged: chunks fsynced and metadata committed
    w.kill_node();
    drop(f);
    w.stop_mount();
    w.start_node();
    w.start_mount();
    assert!(fs::read(w.path("durable.bin")).unwrap() == data);
}

#[test]
fn a_write_the_node_cannot_store_fails_with_an_errno() {
    let mut w = World::start(3, "");
    fs::write(w.path("before"), b"x").unwrap();
    w.kill_node();
    let err = fs::write(w.path("after"), bytes(2 << 20, 1)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}

#[test]
fn cli_status_and_file_info() {
    let w = World::start(3, "");
    fs::write(w.path("a"), bytes(10_000, 1)).unwrap(); // past policies.inline_max
    let status: serde_json::Value = serde_json::from_str(&w.cli(&["status", "--json"])).unwrap();
    assert_eq!(status["master"].as_str(), Some("node1"));
    assert_eq!(status["nodes"][0]["disks"].as_array().unwrap().len(), 3);
    assert!(status["last_applied"].as_u64().unwrap() > 0);
    let text = w.cli(&["file", "info", "/a"]);
    assert!(
        text.contains("policy general (2+1") && text.contains("chunk  0"),
        "{text}"
    );
    for c in w.layout("a")["stripes"][0]["chunks"].as_array().unwrap() {
        let p = c["path"].as_str().unwrap();
        assert!(
            Path::new(p).starts_with(w.tmp.path()) && Path::new(p).exists(),
            "{p}"
        );
    }
}

#[test]
fn bad_configs_stop_the_node_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("node.toml");
    fs::write(&cfg, "data_dir = \"m\"\n[[disks]]\npath = \"missing\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`disks[0].path`") && err.contains("create the directory"),
        "{err}"
    );
}

#[test]
fn writes_the_node_never_stored_fail_at_fsync_and_close() {
    let mut w = World::start(3, "");
    let mut f = fs::File::create(w.path("doomed")).unwrap();
    w.kill_node();
    // Full stripes go to the node in the background, so write() may still succeed here;
    // what it accepted and could not store must fail fsync.
    let _ = f.write_all(&bytes(3 << 20, 1));
    let err = f.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}

#[test]
fn small_files_are_kept_in_the_metadata_and_survive_a_kill() {
    let mut w = World::start(3, ""); // policies.inline_max: 4 KiB by default
    let files: Vec<(String, Vec<u8>)> = [1usize, 4096, 4097, (1 << 20) + 100]
        .iter()
        .map(|&n| (format!("f{n}"), bytes(n, n as u64)))
        .collect();
    for (name, data) in &files {
        let mut f = fs::File::create(w.path(name)).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
    }
    let inline_of = |w: &World, name: &str| -> Vec<(bool, usize)> {
        w.layout(name)["stripes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["inline"].as_bool().unwrap(),
                    s["chunks"].as_array().unwrap().len(),
                )
            })
            .collect()
    };
    assert_eq!(inline_of(&w, "f1"), vec![(true, 0)]);
    assert_eq!(inline_of(&w, "f4096"), vec![(true, 0)]);
    assert_eq!(inline_of(&w, "f4097"), vec![(false, 3)]);
    // a large file's short last stripe is kept in the metadata too
    assert_eq!(inline_of(&w, "f1048676"), vec![(false, 3), (true, 0)]);
    let text = w.cli(&["file", "info", w.path("f1").to_str().unwrap()]);
    assert!(text.contains("kept in the metadata"), "{text}");

    // acknowledged (fsync) means committed: a SIGKILL of the node loses none of it
    w.kill_node();
    w.stop_mount();
    w.start_node();
    w.start_mount();
    for (name, data) in &files {
        assert!(&fs::read(w.path(name)).unwrap() == data, "{name}");
    }
    // growing a small file turns it into chunks; shrinking it back keeps it in metadata
    let mut grown = files[0].1.clone();
    grown.extend(bytes(9000, 9));
    fs::write(w.path("f1"), &grown).unwrap();
    assert_eq!(inline_of(&w, "f1"), vec![(false, 3)]);
    assert!(fs::read(w.path("f1")).unwrap() == grown);
    fs::File::options()
        .write(true)
        .open(w.path("f1"))
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(inline_of(&w, "f1"), vec![(true, 0)]);
    assert!(fs::read(w.path("f1")).unwrap() == grown[..100]);
}

#[test]
fn inline_max_zero_codes_every_stripe() {
    let w = World::start(3, "[policies]\ninline_max = 0\n");
    fs::write(w.path("tiny"), b"x").unwrap();
    let layout = w.layout("tiny");
    let s = &layout["stripes"][0];
    assert_eq!(s["inline"].as_bool(), Some(false));
    assert_eq!(s["chunks"].as_array().unwrap().len(), 3);
    assert_eq!(fs::read(w.path("tiny")).unwrap(), b"x");
}

/// A count of the mount's last "stripes read" line.
fn read_count(w: &World, name: &str) -> u64 {
    w.mount_count("stripes read", name)
}

/// The counts of the mount's last "stripes read" line: (from chunk files, through the node).
fn stripes_read(w: &World) -> (u64, u64) {
    (
        read_count(w, "from_chunk_files"),
        read_count(w, "through_node"),
    )
}

/// Flips the last byte of the first data chunk file of `stripe`, in a file's `layout`.
fn damage_data_chunk(layout: &serde_json::Value, stripe: usize) {
    let path = layout["stripes"][stripe]["chunks"][0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut chunk = fs::read(&path).unwrap();
    let last = chunk.len() - 1;
    chunk[last] ^= 0x5a;
    fs::write(&path, &chunk).unwrap();
}

/// Waits for the node to record the first data chunk of `stripe` of `rel` as damaged (a
/// read records it in the background: it does not wait for a metadata write).
fn wait_until_recorded_damaged(w: &World, rel: &str, stripe: usize) {
    wait_for(
        "the node to record the damaged chunk",
        Duration::from_secs(10),
        || {
            let layout = w.layout(rel);
            (layout["stripes"][stripe]["chunks"][0]["state"].as_str() == Some("corrupt"))
                .then_some(())
        },
    );
}

#[test]
fn a_mount_beside_the_node_reads_chunk_files_and_falls_back_on_damage() {
    let mut w = World::start(3, ""); // general: 2+1, 1 MiB stripes
    let data = bytes((3 << 20) + 10_000, 11); // 4 stripes, the last one short (but coded)
    fs::write(w.path("f.bin"), &data).unwrap();
    w.stop_mount();
    w.start_mount();
    assert!(fs::read(w.path("f.bin")).unwrap() == data);
    let layout = w.layout("f.bin");
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    assert!(
        files >= 4 && node == 0,
        "read {files} stripes from chunk files, {node} through the node"
    );

    // a flipped byte in a data chunk: the local read refuses the chunk, the node decodes
    // around it, records it, and the bytes are still exact
    damage_data_chunk(&layout, 1);
    w.start_mount();
    assert!(fs::read(w.path("f.bin")).unwrap() == data);
    wait_until_recorded_damaged(&w, "f.bin", 1);
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    assert!(
        files >= 3 && node >= 1,
        "read {files} stripes from chunk files, {node} through the node"
    );

    // --no-local-reads: everything through the node
    w.start_mount_with(&["--no-local-reads"]);
    assert!(fs::read(w.path("f.bin")).unwrap() == data);
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    assert!(
        files == 0 && node >= 4,
        "read {files} stripes from chunk files, {node} through the node"
    );
}

#[test]
fn reads_that_jump_are_read_from_chunk_files_too() {
    use std::os::unix::fs::FileExt;
    let mut w = World::start(3, ""); // 2+1, 1 MiB stripes
    let data = bytes((40 << 20) + 300_000, 51); // 41 stripes, the last one short
    fs::write(w.path("f.bin"), &data).unwrap();
    // small files, which may be kept in the metadata (up to 64 KiB)
    let small: Vec<(String, Vec<u8>)> = [10, 4000, 4096, 60_000]
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("small{i}"), bytes(n, 60 + i as u64)))
        .collect();
    for (name, bytes) in &small {
        fs::write(w.path(name), bytes).unwrap();
    }
    w.stop_mount();
    w.start_mount();
    let f = fs::File::open(w.path("f.bin")).unwrap();
    drop_page_cache(&f);
    // each read lies more than the mount's sequential window (8 MiB) from the last one
    let mib = 1u64 << 20;
    for offset in [
        30 * mib + 100,
        5 * mib,
        20 * mib - 10,      // across stripes 19 and 20
        40 * mib + 299_000, // in the short last stripe, and past the end
        10 * mib + 777,
    ] {
        let mut got = vec![0u8; 4096];
        let n = f.read_at(&mut got, offset).unwrap();
        let end = (offset as usize + 4096).min(data.len());
        assert_eq!(n, end - offset as usize, "at {offset}");
        assert!(got[..n] == data[offset as usize..end], "at {offset}");
    }
    drop(f);
    // a small file kept in the metadata (up to 4 KiB by default) comes with its open and
    // costs no read call; a larger one is one call to the node, with no location asked
    for (name, bytes) in &small {
        assert!(&fs::read(w.path(name)).unwrap() == bytes, "{name}");
    }
    w.stop_mount();
    let (ranges, local) = (read_count(&w, "ranges"), read_count(&w, "ranges_local"));
    let beyond_inline = small.iter().filter(|(_, b)| b.len() > 4096).count() as u64;
    assert!(
        local >= 5 && ranges == local + beyond_inline,
        "{local} of {ranges} jumping reads were read from chunk files, \
         {beyond_inline} small file(s) past the inline limit"
    );
    // (a location serves every read of its stripe; one call locates up to 16 stripes for
    // whole-stripe reads, should the kernel's read-ahead make any)
    let (located, stripes) = (
        read_count(&w, "locate_calls"),
        read_count(&w, "from_chunk_files"),
    );
    assert!(
        located <= local + stripes,
        "{located} locate calls for {local} ranges and {stripes} stripes read from chunk files"
    );
    assert_eq!(read_count(&w, "through_node"), 0);

    // with local reads off, they go through the node, with the same bytes
    w.start_mount_with(&["--no-local-reads"]);
    let f = fs::File::open(w.path("f.bin")).unwrap();
    drop_page_cache(&f);
    let mut got = vec![0u8; 4096];
    f.read_exact_at(&mut got, 30 * mib + 100).unwrap();
    assert!(got[..] == data[(30 * mib + 100) as usize..][..4096]);
    drop(f);
    w.stop_mount();
    assert!(read_count(&w, "ranges") >= 1);
    assert_eq!(read_count(&w, "ranges_local"), 0);
}

#[test]
fn a_stripe_with_a_damaged_chunk_is_located_once_for_all_its_jumping_reads() {
    use std::os::unix::fs::FileExt;
    let mut w = World::start(3, ""); // 2+1, 1 MiB stripes
    let mib = 1u64 << 20;
    let data = bytes(30 << 20, 81);
    fs::write(w.path("f.bin"), &data).unwrap();
    // damage a data chunk of stripe 5, and read it once so that the node records it
    damage_data_chunk(&w.layout("f.bin"), 5);
    w.stop_mount();
    w.start_mount();
    assert!(fs::read(w.path("f.bin")).unwrap() == data);
    wait_until_recorded_damaged(&w, "f.bin", 5);
    w.stop_mount();

    // reads that jump between stripe 5 (read through the node: a chunk is damaged) and
    // stripe 25 (from its chunk files): each stripe is located once
    w.start_mount();
    let f = fs::File::open(w.path("f.bin")).unwrap();
    drop_page_cache(&f);
    for offset in [
        5 * mib + 100,
        25 * mib + 100,
        5 * mib + 5000,
        25 * mib + 5000,
        5 * mib + 9000,
    ] {
        let mut got = vec![0u8; 1000];
        f.read_exact_at(&mut got, offset).unwrap();
        assert!(got[..] == data[offset as usize..][..1000], "at {offset}");
    }
    drop(f);
    w.stop_mount();
    assert_eq!(read_count(&w, "locate_calls"), 2);
}

#[test]
fn a_read_does_not_fetch_ahead_the_stripes_this_mount_still_holds() {
    use std::os::unix::fs::FileExt;
    let mut w = World::start(3, ""); // 2+1, 1 MiB stripes
    let mib = 1usize << 20;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(w.path("f.bin"))
        .unwrap();
    // three stripes, each written short of its end, so all stay in the write buffer
    let mut want = vec![0u8; 2 * mib + mib / 2];
    for (i, len) in [(0, mib - 1), (1, mib - 1), (2, mib / 2)] {
        let data = bytes(len, 70 + i as u64);
        f.write_all_at(&data, (i * mib) as u64).unwrap();
        want[i * mib..i * mib + len].copy_from_slice(&data);
    }
    // a sequential read from the start through the same open file, past the kernel's pages
    drop_page_cache(&f);
    let mut got = vec![0u8; want.len()];
    f.read_exact_at(&mut got, 0).unwrap();
    assert!(got == want);
    drop(f);
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    assert_eq!(
        (files, node),
        (0, 0),
        "stripes fetched (from chunk files, through the node) while the mount held them all"
    );
}

/// Reads `path` whole through a fresh open, after dropping the kernel's cached pages of it.
fn read_uncached(path: &Path) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    drop_page_cache(&f);
    let mut got = Vec::new();
    f.read_to_end(&mut got).unwrap();
    got
}

#[test]
fn a_reopened_file_is_read_from_the_mount_s_cache_until_it_changes() {
    let mut w = World::start(3, ""); // 2+1, 1 MiB stripes
    let data = bytes((2 << 20) + 5, 21); // 3 stripes
    fs::write(w.path("f.bin"), &data).unwrap();
    w.stop_mount();

    // one read: how many stripes that takes
    w.start_mount();
    assert!(read_uncached(&w.path("f.bin")) == data);
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    let one_read = files + node;
    assert!(one_read >= 3, "{one_read} stripes read");

    // three reads, each its own open and close: the file did not change, so the second and
    // third are answered from the mount's stripe cache
    w.start_mount();
    for _ in 0..3 {
        assert!(read_uncached(&w.path("f.bin")) == data);
    }

    // another mount of the node changes the file; the next open here sees it
    let other = w.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    let second = start_mount(&w.addr, &other, &w.tmp.path().join("other.log"));
    let changed = bytes((2 << 20) + 5, 22);
    fs::write(other.join("f.bin"), &changed).unwrap();
    stop_mount(second, &other);
    // (the kernel still holds this mount's pages of the old bytes: the open must drop them)
    assert!(
        fs::read(w.path("f.bin")).unwrap() == changed,
        "a reopen after another mount's change reads the new bytes"
    );
    // and a truncate through this mount, by path, is seen at the next open too
    fs::OpenOptions::new()
        .write(true)
        .open(w.path("f.bin"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    assert!(read_uncached(&w.path("f.bin")) == changed[..1000]);
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    assert!(
        files + node <= 2 * one_read + 1,
        "{} stripes read: three reads of an unchanged file should take one read's {one_read}, \
         and the changed file one more",
        files + node
    );
}

/// A gRPC client of the world's node, on a runtime of its own, with no node-list cache.
fn connect(w: &World) -> (tokio::runtime::Runtime, wormfs::rpc::client::Client) {
    use wormfs::rpc::client::{Client, ConnectOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let identity = wormfs::rpc::identity::Identity::read(&w.admin_identity()).unwrap();
    let opts = ConnectOptions {
        cache: None,
        ..ConnectOptions::with_identity(identity)
    };
    let client = rt
        .block_on(Client::connect_with(std::slice::from_ref(&w.addr), opts))
        .unwrap();
    (rt, client)
}

#[test]
fn a_directory_is_listed_in_pages_that_go_on_after_the_last_name() {
    let w = World::start(3, "");
    fs::create_dir(w.path("d")).unwrap();
    // names whose bytes sort differently from their characters' look: upper before lower,
    // digits before letters, multi-byte UTF-8 after ASCII
    let mut names: Vec<String> = (0..40).map(|i| format!("f{i:03}")).collect();
    names.extend(["A", "Z", "a", "z", "0", "é", "ä", "日本", "x y", "-dash"].map(String::from));
    for n in &names {
        fs::write(w.path("d").join(n), n.as_bytes()).unwrap();
    }
    names.sort(); // bytewise, as the node orders the listing
    let ino = fs::metadata(w.path("d")).unwrap().ino();
    let (rt, client) = connect(&w);
    let listed = |page| {
        rt.block_on(client.readdir_in_pages(FileId(ino), page))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
    };
    for page in [1, 7, 49, 50, 51, 0, 1_000_000] {
        assert_eq!(listed(page), names, "pages of {page}");
    }
    // the mount lists the same names
    let mut seen: Vec<String> = fs::read_dir(w.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, names);
}

#[test]
fn stripes_are_located_many_at_a_time_up_to_the_file_s_end() {
    use std::os::unix::fs::FileExt;
    let w = World::start(3, ""); // 2+1, 1 MiB stripes

    // stripes 0, 1, 3 and a short 4; stripe 2 is a hole
    let f = fs::File::create(w.path("f.bin")).unwrap();
    f.write_all_at(&bytes(2 << 20, 31), 0).unwrap();
    f.write_all_at(&bytes((1 << 20) + 100_000, 32), 3 << 20)
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let ino = fs::metadata(w.path("f.bin")).unwrap().ino();

    let (rt, client) = connect(&w);
    let locate = |first, count| rt.block_on(client.locate_stripes(FileId(ino), first, count));

    let all = locate(0, 64).unwrap();
    let found: Vec<bool> = all.iter().map(|l| l.found).collect();
    assert_eq!(
        found,
        [true, true, false, true, true],
        "one entry per stripe, to the end"
    );
    for (i, l) in all.iter().enumerate().filter(|(_, l)| l.found) {
        assert_eq!(l.data.len(), 2, "stripe {i}: its two data chunks");
        assert!(
            l.data.iter().all(|c| Path::new(&c.path).is_file()),
            "stripe {i}: {l:?}"
        );
    }
    assert_eq!(all[4].len, 100_000);
    // a window inside the file, one at its end, and one past it
    assert_eq!(locate(1, 2).unwrap(), all[1..3]);
    assert_eq!(locate(4, 10).unwrap(), all[4..]);
    assert!(locate(5, 1).unwrap().is_empty());
    // a count out of bounds names the field
    for count in [0, 65] {
        let e = locate(0, count).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(e.message.contains("field `count`"), "{}", e.message);
    }
}

#[test]
fn a_stripe_located_before_another_mount_rewrote_it_is_located_again_and_read_from_its_files() {
    use std::os::unix::fs::FileExt;
    // 2+1, 1 MiB stripes; writers ignore readers (read locks off), so that another mount
    // may rewrite the file this one reads
    let mut w = World::start(3, "[locks]\nread_locks = false\n");
    let old = bytes(24 << 20, 41); // 24 stripes
    fs::write(w.path("f.bin"), &old).unwrap();
    w.stop_mount();
    w.start_mount();

    // this mount reads the first stripe, which locates the next ones too
    let f = fs::File::open(w.path("f.bin")).unwrap();
    drop_page_cache(&f);
    let mut got = vec![0u8; 24 << 20];
    f.read_exact_at(&mut got[..1 << 20], 0).unwrap();
    assert!(got[..1 << 20] == old[..1 << 20]);

    // another mount rewrites the whole file: every stripe gets a new generation, and its
    // old chunk files are deleted
    let other = w.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    let second = start_mount(&w.addr, &other, &w.tmp.path().join("other.log"));
    let new = bytes(24 << 20, 42);
    fs::write(other.join("f.bin"), &new).unwrap();
    stop_mount(second, &other);

    // the same open reads on: stripes fetched ahead before the rewrite may hold the old
    // bytes (close-to-open), but each stripe is wholly old or wholly new, and every one
    // is read from chunk files, none through the node
    f.read_exact_at(&mut got[1 << 20..], 1 << 20).unwrap();
    drop(f);
    let mut newer = 0;
    for (i, (g, (o, n))) in got
        .chunks(1 << 20)
        .zip(old.chunks(1 << 20).zip(new.chunks(1 << 20)))
        .enumerate()
    {
        assert!(
            g == o || g == n,
            "stripe {i} is neither the old nor the new bytes"
        );
        newer += usize::from(g == n);
    }
    assert!(
        newer >= 8,
        "only {newer} of 24 stripes read after the rewrite are new"
    );
    w.stop_mount();
    let (files, node) = stripes_read(&w);
    assert!(
        files >= 24 && node == 0,
        "read {files} stripes from chunk files, {node} through the node"
    );
}

/// The systemd units of docs/running.md (examples/deploy) run `wormfs` subcommands and
/// flags that exist, and name the config and identity files the guide writes.
#[test]
fn the_systemd_units_run_commands_that_exist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy");
    for unit in ["wormfs-node.service", "wormfs-mount.service"] {
        let text = fs::read_to_string(dir.join(unit)).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit} has an ExecStart"));
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/wormfs"), "{unit}");
        let sub = words.next().unwrap();
        let out = std::process::Command::new(BIN)
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{unit}: `wormfs {sub}` is not a command"
        );
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in words.filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(flag),
                "{unit}: `wormfs {sub}` has no {flag}:\n{help}"
            );
        }
        for file in text
            .split_whitespace()
            .filter(|w| w.contains("/etc/wormfs/"))
            .map(|w| w.rsplit('=').next().unwrap())
        {
            let name = Path::new(file).file_name().unwrap().to_str().unwrap();
            let guide = fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/running.md"),
            )
            .unwrap();
            assert!(
                guide.contains(name),
                "{unit} names {file}, which docs/running.md never writes"
            );
        }
    }
}
