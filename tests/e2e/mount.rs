//! Ordinary file work through the mount, checked byte for byte.

use super::fixture::{bytes, drop_page_cache, start_mount, stop_mount, wait_for, World};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn assert_same_tree(a: &Path, b: &Path) {
    let mut left: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut right: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    right.sort();
    assert_eq!(
        left,
        right,
        "entries of {} and {}",
        a.display(),
        b.display()
    );
    for name in left {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pb.display());
        assert_eq!(
            ma.permissions().mode() & 0o7777,
            mb.permissions().mode() & 0o7777,
            "mode of {}",
            pb.display()
        );
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
        } else {
            assert_eq!(ma.len(), mb.len(), "size of {}", pb.display());
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "contents of {}",
                pb.display()
            );
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", pb.display());
        }
    }
}

#[test]
fn tar_copies_a_tree_exactly() {
    let w = World::start(6, "");
    let src = w.tmp.path().join("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    for (i, len) in [0usize, 1, 4095, 4096, 100_000, (1 << 20) + 7, 3 << 20]
        .into_iter()
        .enumerate()
    {
        fs::write(src.join(format!("a/f{i}")), bytes(len, i as u64)).unwrap();
    }
    fs::write(src.join("a/b/c/deep.txt"), b"deep").unwrap();
    fs::set_permissions(
        src.join("a/b/c/deep.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("../f1", src.join("a/b/link")).unwrap();
    let dst = w.path("copy");
    fs::create_dir(&dst).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -cf - . | tar -C '{}' -xpf -",
            src.display(),
            dst.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_tree(&src, &dst);
}

#[test]
fn overwrite_truncate_append_and_remount() {
    let mut w = World::start(3, "");
    let p = w.path("big.bin");
    let mut model = bytes(5 * (1 << 20) + 12345, 1); // 6 stripes of 1 MiB, the last short
    fs::write(&p, &model).unwrap();
    assert_eq!(fs::read(&p).unwrap(), model);

    // overwrite the middle, across a stripe boundary
    let patch = bytes(300_000, 2);
    let at = (2 << 20) - 100_000;
    let mut f = OpenOptions::new().write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&patch).unwrap();
    drop(f);
    model[at..at + patch.len()].copy_from_slice(&patch);
    assert_eq!(fs::read(&p).unwrap(), model, "after overwriting the middle");

    // truncate down into a stripe, then up: the tail reads as zeros
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(1_500_000).unwrap();
    model.truncate(1_500_000);
    assert_eq!(fs::read(&p).unwrap(), model, "after truncating down");
    f.set_len(3_000_000).unwrap();
    model.resize(3_000_000, 0);
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), model, "after extending");

    // append
    let tail = bytes(777_777, 3);
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(&tail).unwrap();
    f.sync_all().unwrap();
    drop(f);
    model.extend_from_slice(&tail);
    assert_eq!(fs::metadata(&p).unwrap().len(), model.len() as u64);
    assert_eq!(fs::read(&p).unwrap(), model, "after appending");

    w.restart();
    assert_eq!(
        fs::read(w.path("big.bin")).unwrap(),
        model,
        "after restarting node and mount"
    );
}

#[test]
fn a_stripe_read_ahead_while_its_new_bytes_were_sent_is_not_read_stale() {
    use std::os::unix::fs::FileExt;
    let w = World::start(3, "");
    let p = w.path("rw.bin");
    const S: usize = 1 << 20; // the stripe size
    const N: usize = 6;
    fs::write(&p, vec![0u8; S * (N + 2)]).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    for i in 0..N {
        // A whole stripe: the mount sends it to the node in the background.
        let new = bytes(S, i as u64 + 10);
        f.write_all_at(&new, ((i + 1) * S) as u64).unwrap();
        // A sequential read of the stripe before it reads that stripe ahead, from the node,
        // which may still hold the old bytes.
        drop_page_cache(&f);
        let mut some = vec![0u8; 64 << 10];
        f.read_exact_at(&mut some, (i * S) as u64).unwrap();
        // The background send is waited for and leaves the write buffer.
        f.sync_all().unwrap();
        drop_page_cache(&f);
        let mut got = vec![0u8; S];
        f.read_exact_at(&mut got, ((i + 1) * S) as u64).unwrap();
        assert!(
            got == new,
            "stripe {} reads stale bytes after its write",
            i + 1
        );
    }
}

#[test]
fn rename_over_existing_like_an_editor() {
    let w = World::start(3, "");
    // larger than policies.inline_max, so the file has chunk files
    fs::write(w.path("doc.txt"), bytes(10_000, 1)).unwrap();
    let old_layout = w.layout("doc.txt");
    let old_chunk = old_layout["stripes"][0]["chunks"][0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Path::new(&old_chunk).exists());
    fs::write(w.path(".doc.txt.swp"), b"version 2, longer").unwrap();
    fs::rename(w.path(".doc.txt.swp"), w.path("doc.txt")).unwrap();
    assert_eq!(fs::read(w.path("doc.txt")).unwrap(), b"version 2, longer");
    assert!(!w.path(".doc.txt.swp").exists());
    assert!(
        !Path::new(&old_chunk).exists(),
        "the replaced file's chunks are deleted"
    );
    // moving directories and removing trees
    fs::create_dir_all(w.path("x/y")).unwrap();
    fs::write(w.path("x/y/z"), b"z").unwrap();
    fs::rename(w.path("x"), w.path("moved")).unwrap();
    assert_eq!(fs::read(w.path("moved/y/z")).unwrap(), b"z");
    assert_eq!(
        fs::remove_dir(w.path("moved")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    fs::remove_dir_all(w.path("moved")).unwrap();
    assert!(!w.path("moved").exists());
}

#[test]
fn concurrent_readers_see_the_same_bytes() {
    let w = World::start(3, "");
    let data = bytes(8 << 20, 9);
    fs::write(w.path("shared.bin"), &data).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (path, data) = (w.path("shared.bin"), &data);
            s.spawn(move || {
                let mut f = File::open(path).unwrap();
                // each reader starts at a different place and wraps around
                let start = t * (2 << 20);
                let mut buf = vec![0u8; data.len() - start];
                f.seek(SeekFrom::Start(start as u64)).unwrap();
                f.read_exact(&mut buf).unwrap();
                assert!(buf == data[start..], "reader {t}");
            });
        }
    });
}

fn setxattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a valid buffer for the duration of the call.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn getxattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given size.
    let rc = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(rc as usize);
    Ok(buf)
}

#[test]
fn xattrs_symlinks_modes_and_policies() {
    let w = World::start(6, "");
    let f = w.path("notes.txt");
    fs::write(&f, b"hello").unwrap();
    setxattr(&f, "user.colour", b"blue").unwrap();
    assert_eq!(getxattr(&f, "user.colour").unwrap(), b"blue");
    assert_eq!(
        getxattr(&f, "user.missing").unwrap_err().raw_os_error(),
        Some(libc::ENODATA)
    );

    std::os::unix::fs::symlink("notes.txt", w.path("link")).unwrap();
    assert_eq!(
        fs::read_link(w.path("link")).unwrap(),
        Path::new("notes.txt")
    );
    assert_eq!(fs::read(w.path("link")).unwrap(), b"hello");

    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    let m = fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), when);

    // a directory's policy, set through the attribute, applies to new files under it
    fs::create_dir(w.path("films")).unwrap();
    assert_eq!(
        getxattr(&w.path("films"), "user.wormfs.policy").unwrap(),
        b"general"
    );
    setxattr(&w.path("films"), "user.wormfs.policy", b"media").unwrap();
    fs::create_dir(w.path("films/2024")).unwrap();
    fs::write(w.path("films/2024/a.mkv"), bytes(10, 1)).unwrap();
    assert_eq!(
        getxattr(&w.path("films/2024/a.mkv"), "user.wormfs.policy").unwrap(),
        b"media"
    );
    assert_eq!(
        getxattr(&f, "user.wormfs.policy").unwrap(),
        b"general",
        "existing files keep theirs"
    );
    let e = setxattr(&w.path("films"), "user.wormfs.policy", b"platinum").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    let out = w.cli(&[
        "policy",
        "get",
        "--json",
        w.path("films/2024").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["policy"].as_str(), v["k"].as_u64(), v["source"].as_str()),
        (Some("media"), Some(4), Some("inherited"))
    );

    for (path, source) in [
        ("films", "directory"),
        ("", "default"),
        ("notes.txt", "file"),
    ] {
        let out = w.cli(&["policy", "get", "--json", w.path(path).to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["source"].as_str(), Some(source), "{path}: {out}");
    }

    // fifos, and errors with the right errno
    let fifo = std::ffi::CString::new(w.path("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(w.path("pipe")).unwrap().file_type()
    ));
    assert_eq!(
        fs::create_dir(w.path("films")).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        fs::read(w.path("nope")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
}

#[test]
fn a_policy_wider_than_the_disks_is_refused() {
    let w = World::start(3, "");
    fs::create_dir(w.path("d")).unwrap();
    let e = setxattr(&w.path("d"), "user.wormfs.policy", b"media").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    let out = std::process::Command::new(super::fixture::BIN)
        .args([
            "--node",
            &w.addr,
            "policy",
            "set",
            w.path("d").to_str().unwrap(),
            "media",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs 6 disks, but the cluster has 3"),
        "{err}"
    );
}

#[test]
fn an_unlinked_open_file_lives_until_closed() {
    use std::os::unix::fs::FileExt;
    let w = World::start(3, "");
    let p = w.path("tmpfile");
    let mut f = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    assert_eq!(
        f.metadata().unwrap().nlink(),
        0,
        "fstat of an unlinked file"
    );
    f.write_all_at(b"STILL", 0).unwrap();
    f.sync_all().unwrap();
    let mut back = [0u8; 10];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back, b"STILL here");
    assert!(
        fs::read_dir(&w.mnt)
            .unwrap()
            .all(|e| e.unwrap().file_name() != ".wormfs-orphans"),
        "the orphan directory is hidden"
    );
    drop(f);
    // after the last close (the kernel sends the release after close returns) the file is
    // gone: the hidden directory empties
    super::fixture::wait_for(
        "the unlinked file to be removed",
        std::time::Duration::from_secs(10),
        || {
            fs::read_dir(w.path(".wormfs-orphans"))
                .unwrap()
                .next()
                .is_none()
                .then_some(())
        },
    );
}

/// Removing files one after another, as `rm -r` does (a lookup, then an unlink, for each),
/// has the lookups answered from a listed page, which loses each name removed here: a name
/// removed is not found again. A file with two names shows one name less after one is
/// removed, and the names left are all there.
#[test]
fn removals_one_after_another_are_answered_from_a_listed_page_that_loses_each_name() {
    let mut w = World::start(3, "");
    fs::create_dir(w.path("r")).unwrap();
    for i in 0..30_u64 {
        fs::write(w.path(&format!("r/f{i:02}")), bytes(100 + i as usize, i)).unwrap();
    }
    fs::hard_link(w.path("r/f29"), w.path("r/g29")).unwrap();
    w.stop_mount();
    w.start_mount();
    for i in 0..20_u64 {
        let p = w.path(&format!("r/f{i:02}"));
        assert_eq!(fs::metadata(&p).unwrap().len(), 100 + i, "f{i:02}");
        fs::remove_file(&p).unwrap();
        assert!(fs::metadata(&p).is_err(), "f{i:02} removed, yet found");
    }
    let nlink = |p: &str| fs::metadata(w.path(p)).unwrap().nlink();
    assert_eq!(nlink("r/g29"), 2);
    fs::remove_file(w.path("r/f29")).unwrap();
    assert_eq!(nlink("r/g29"), 1);
    let mut left: Vec<String> = fs::read_dir(w.path("r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut want: Vec<String> = (20..29).map(|i| format!("f{i}")).collect();
    want.push("g29".into());
    assert_eq!(left, want);
    for i in 20..29_u64 {
        assert_eq!(
            fs::metadata(w.path(&format!("r/f{i}"))).unwrap().len(),
            100 + i
        );
    }
    w.stop_mount();
    // f02..f19 at least, unless this machine took over a second for a few removals
    let answered = w.mount_count("lookups answered from listed pages", "answered");
    let pages = w.mount_count("lookups answered from listed pages", "pages");
    assert!(
        answered >= 8,
        "the removals' lookups went to the node: {answered} answered from {pages} listed pages"
    );
}

/// A walk of `stat`s over a directory (cold: a fresh mount) is answered from a listed page
/// after its second file, with the right attributes. A name this mount then renames or
/// removes is not answered from the page (a stale page would still find it), and another
/// mount's change shows within the TTL.
#[test]
fn a_walk_of_stats_is_answered_from_a_listed_page_and_changes_show() {
    let mut w = World::start(3, "");
    fs::create_dir(w.path("d")).unwrap();
    let sizes: Vec<usize> = (0..40).map(|i| 100 + i * 37).collect();
    for (i, n) in sizes.iter().enumerate() {
        fs::write(w.path(&format!("d/f{i:02}")), bytes(*n, i as u64)).unwrap();
    }
    w.stop_mount();
    w.start_mount();
    let size = |p: &str| fs::metadata(w.path(p)).map(|m| m.len());
    // the page fetched at f01 holds f02..f39; the kernel has looked up f00..f19
    for (i, n) in sizes.iter().enumerate().take(20) {
        assert_eq!(size(&format!("d/f{i:02}")).unwrap(), *n as u64, "f{i:02}");
    }
    assert!(
        size("d/none").is_err(),
        "a name not in the page is looked up: none"
    );
    fs::rename(w.path("d/f26"), w.path("d/h26")).unwrap();
    fs::remove_file(w.path("d/f27")).unwrap();
    assert!(size("d/f26").is_err(), "renamed away, yet found");
    assert!(size("d/f27").is_err(), "removed, yet found");
    assert_eq!(size("d/h26").unwrap(), sizes[26] as u64);
    for (i, n) in sizes.iter().enumerate().skip(28) {
        assert_eq!(size(&format!("d/f{i:02}")).unwrap(), *n as u64, "f{i:02}");
    }
    // another mount's change shows within the TTL
    let other_mnt = w.tmp.path().join("other");
    fs::create_dir(&other_mnt).unwrap();
    let other = start_mount(&w.addr, &other_mnt, &w.tmp.path().join("other.log"));
    fs::write(other_mnt.join("d/f08"), bytes(4_321, 8)).unwrap();
    wait_for(
        "the other mount's write to show",
        Duration::from_secs(5),
        || (size("d/f08").ok() == Some(4_321)).then_some(()),
    );
    stop_mount(other, &other_mnt);
    w.stop_mount();
    // f02..f19 at least, unless this machine took over a second for twenty stats
    let answered = w.mount_count("lookups answered from listed pages", "answered");
    assert!(
        answered >= 10,
        "the walk's lookups went to the node: {answered} answered from listed pages"
    );
}
