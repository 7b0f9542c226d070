//! Client sessions on a real node: TLS-PSK identities (plaintext, wrong key, unknown,
//! removed and rotated users refused, with the node's log line), admin-only operations.

use super::fixture::{wait_for, World, BIN};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wormfs::rpc::client::{Client, ConnectOptions};
use wormfs::rpc::identity::Identity;

/// Runs `wormfs --node ADDR --identity ID ARGS`: (success, stdout, stderr).
fn as_user(w: &World, identity: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--node")
        .arg(&w.addr)
        .arg("--identity")
        .arg(identity)
        .args(args)
        .current_dir(w.tmp.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn client_as(
    rt: &tokio::runtime::Runtime,
    w: &World,
    identity: &Path,
) -> Result<Client, wormfs::rpc::client::ClientError> {
    let opts = ConnectOptions {
        cache: None,
        ..ConnectOptions::with_identity(Identity::read(identity).unwrap())
    };
    rt.block_on(Client::connect_with(std::slice::from_ref(&w.addr), opts))
}

fn wait_for_log(w: &World, needle: &str) {
    wait_for(
        &format!("`{needle}` in the node log"),
        Duration::from_secs(10),
        || w.node_log().contains(needle).then_some(()),
    );
}

#[test]
fn plaintext_wrong_key_unknown_and_removed_users_are_refused_with_a_log_line() {
    let mut w = World::start(3, "");
    w.stop_mount();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // the admin's identity works
    let (ok, out, err) = as_user(&w, &w.admin_identity(), &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("node1"), "{out}");

    // a plaintext gRPC client gets nothing
    let plain = rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", w.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        let mut c = wormfs::rpc::proto::worm_fs_client::WormFsClient::new(ch);
        c.stat_fs(wormfs::rpc::proto::Empty {})
            .await
            .map(|_| ())
            .map_err(|s| Box::new(s) as Box<dyn std::error::Error>)?;
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    assert!(plain.is_err(), "a plaintext client was served");
    wait_for_log(&w, "not a TLS-PSK client with a WormFS identity");

    // the admin's name with another key
    let admin = Identity::read(&w.admin_identity()).unwrap();
    let wrong = w.tmp.path().join("wrong.identity");
    Identity {
        key: wormfs::rpc::identity::new_key().unwrap(),
        ..admin.clone()
    }
    .write(&wrong)
    .unwrap();
    let (ok, _, err) = as_user(&w, &wrong, &["status"]);
    assert!(!ok);
    assert!(
        err.contains("identity `admin`") && err.contains("refused"),
        "{err}"
    );
    wait_for_log(&w, "wrong key for user `admin`");

    // a user no node knows
    let ghost = w.tmp.path().join("ghost.identity");
    Identity {
        user: "ghost".into(),
        ..admin.clone()
    }
    .write(&ghost)
    .unwrap();
    let (ok, _, err) = as_user(&w, &ghost, &["status"]);
    assert!(!ok);
    assert!(err.contains("identity `ghost`"), "{err}");
    wait_for_log(&w, "unknown user `ghost`");

    // bob is added, connects, and is removed while connected
    let (ok, out, err) = as_user(
        &w,
        &w.admin_identity(),
        &["user", "add", "bob", "--uid", "65534", "--gid", "65534"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("added user bob (uid 65534"), "{out}");
    let bob = w.tmp.path().join("bob.identity");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bob).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_hex = wormfs::rpc::identity::to_hex(&Identity::read(&bob).unwrap().key);
    let client = client_as(&rt, &w, &bob).unwrap();
    rt.block_on(client.statfs()).unwrap();
    let (ok, out, _) = as_user(&w, &w.admin_identity(), &["user", "list"]);
    assert!(ok && out.contains("bob") && out.contains("65534"), "{out}");
    let (ok, _, err) = as_user(&w, &w.admin_identity(), &["user", "remove", "bob"]);
    assert!(ok, "{err}");
    let e = rt.block_on(client.statfs()).unwrap_err();
    assert_eq!(e.errno, libc::EACCES, "{e}");
    assert!(e.message.contains("removed"), "{e}");
    wait_for_log(&w, "as user `bob`: the user was removed");
    assert!(
        client_as(&rt, &w, &bob).is_err(),
        "a removed user connected"
    );
    assert!(
        !w.node_log().contains(&key_hex),
        "a key was written to the node's log"
    );

    // the last admin cannot be removed
    let (ok, _, err) = as_user(&w, &w.admin_identity(), &["user", "remove", "admin"]);
    assert!(!ok && err.contains("last admin"), "{err}");
}

#[test]
fn only_admins_change_users_membership_and_workers_and_a_rotated_key_replaces_the_old() {
    let mut w = World::start(3, "");
    w.stop_mount();
    let (ok, _, err) = as_user(
        &w,
        &w.admin_identity(),
        &[
            "user",
            "add",
            "carol",
            "--uid",
            "1000",
            "--out",
            "carol.identity",
        ],
    );
    assert!(ok, "{err}");
    let carol = w.tmp.path().join("carol.identity");
    for args in [
        &["user", "add", "mallory", "--uid", "0"][..],
        &["user", "list"][..],
        &["node", "remove", "node1", "--yes"][..],
        &["scrub"][..],
        &["repair", "pause"][..],
        &["disk", "drain", "disk0"][..],
    ] {
        let (ok, _, err) = as_user(&w, &carol, args);
        assert!(!ok, "carol ran {args:?}");
        assert!(err.contains("needs an admin identity"), "{args:?}: {err}");
    }
    // carol may look at the cluster
    let (ok, _, err) = as_user(&w, &carol, &["status"]);
    assert!(ok, "{err}");

    // a rotation: the new file works, the old one is refused
    let old = w.tmp.path().join("carol-old.identity");
    std::fs::copy(&carol, &old).unwrap();
    let (ok, _, err) = as_user(
        &w,
        &w.admin_identity(),
        &["user", "rotate", "carol", "--out", "carol.identity"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = as_user(&w, &carol, &["status"]);
    assert!(ok, "{err}");
    let (ok, _, err) = as_user(&w, &old, &["status"]);
    assert!(!ok, "the old key still works");
    assert!(err.contains("identity `carol`"), "{err}");
    wait_for_log(&w, "wrong key for user `carol`");
}

/// Calls `f` acting as uid/gid (the headers a host mount sends) on this thread.
fn acting<T>(uid: u32, f: impl FnOnce() -> T) -> T {
    wormfs::rpc::client::acting_as(
        wormfs::rpc::client::ActAs {
            uid,
            gid: uid,
            groups: Vec::new(),
        },
        f,
    )
}

#[test]
fn the_node_checks_permissions_for_direct_grpc_callers_and_refuses_acls() {
    use std::os::unix::fs::PermissionsExt;
    use wormfs::ids::FileId;
    use wormfs::rpc::proto;
    let w = World::start(3, "");
    // through the mount, as root: a secret file and a directory anyone may write in
    std::fs::write(w.path("secret"), b"root's secret").unwrap();
    std::fs::set_permissions(w.path("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(w.path("pub")).unwrap();
    std::fs::set_permissions(w.path("pub"), std::fs::Permissions::from_mode(0o777)).unwrap();

    for (name, flags) in [("nobody", &[][..]), ("host", &["--host"][..])] {
        let mut args = vec!["user", "add", name, "--uid", "65534", "--gid", "65534"];
        args.extend_from_slice(flags);
        let (ok, _, err) = as_user(&w, &w.admin_identity(), &args);
        assert!(ok, "{err}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let nobody = client_as(&rt, &w, &w.tmp.path().join("nobody.identity")).unwrap();
    let secret = rt
        .block_on(nobody.lookup(FileId::ROOT, "secret"))
        .unwrap()
        .ino;

    // nobody cannot read, chown, chmod or unlink root's 0600 file
    let e = rt.block_on(nobody.read_stripe(secret, 0)).unwrap_err();
    assert_eq!(e.errno, libc::EACCES, "{e}");
    assert!(e.message.contains("`nobody`"), "{e}");
    let chown = proto::SetAttrRequest {
        ino: secret.0,
        uid: Some(65534),
        ..Default::default()
    };
    let e = rt.block_on(nobody.setattr(chown)).unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    let chmod = proto::SetAttrRequest {
        ino: secret.0,
        perm: Some(0o666),
        ..Default::default()
    };
    assert_eq!(
        rt.block_on(nobody.setattr(chmod)).unwrap_err().errno,
        libc::EPERM
    );
    let e = rt
        .block_on(nobody.unlink(FileId::ROOT, "secret"))
        .unwrap_err();
    assert_eq!(e.errno, libc::EACCES, "{e}");

    // nor create a setuid file owned by root, even where it may write
    let pub_dir = rt.block_on(nobody.lookup(FileId::ROOT, "pub")).unwrap().ino;
    let setuid_root = proto::CreateRequest {
        parent: pub_dir.0,
        name: "sh".into(),
        kind: proto::FileKind::File as i32,
        perm: 0o4755,
        uid: 0,
        gid: 0,
        ..Default::default()
    };
    let e = rt.block_on(nobody.create(setuid_root.clone())).unwrap_err();
    assert_eq!(e.errno, libc::EPERM, "{e}");
    // its own file there is fine
    let own = rt
        .block_on(nobody.create(proto::CreateRequest {
            uid: 65534,
            gid: 65534,
            perm: 0o644,
            name: "mine".into(),
            ..setuid_root.clone()
        }))
        .unwrap();
    assert_eq!(own.uid, 65534);
    // a personal identity's acting-as headers are ignored: still nobody
    let e = acting(0, || rt.block_on(nobody.read_stripe(secret, 0))).unwrap_err();
    assert_eq!(e.errno, libc::EACCES, "{e}");
    // and it cannot remove a node
    let (ok, _, err) = as_user(
        &w,
        &w.tmp.path().join("nobody.identity"),
        &["node", "remove", "node1", "--yes"],
    );
    assert!(!ok && err.contains("needs an admin identity"), "{err}");

    // a trusted host acts as the uid its caller has
    let host = client_as(&rt, &w, &w.tmp.path().join("host.identity")).unwrap();
    let e = acting(65534, || rt.block_on(host.read_stripe(secret, 0))).unwrap_err();
    assert_eq!(e.errno, libc::EACCES, "{e}");
    let bytes = acting(0, || rt.block_on(host.read_stripe(secret, 0))).unwrap();
    assert_eq!(bytes, b"root's secret");

    // the admin reads it, and chowns it
    let admin = client_as(&rt, &w, &w.admin_identity()).unwrap();
    assert_eq!(
        rt.block_on(admin.read_stripe(secret, 0)).unwrap(),
        b"root's secret"
    );
    let a = rt.block_on(admin.setattr(chown)).unwrap();
    assert_eq!(a.uid, 65534);

    // POSIX ACLs are refused, not stored and ignored
    let path = std::ffi::CString::new(w.path("pub/mine").to_str().unwrap()).unwrap();
    // user:nobody:--- on a 0644 file (version 2, ACL_USER_OBJ rw, ACL_USER 65534 ---, ...)
    let acl: Vec<u8> = [
        2u32.to_le_bytes().to_vec(),
        [1u16.to_le_bytes(), 6u16.to_le_bytes()].concat(),
        u32::MAX.to_le_bytes().to_vec(),
        [2u16.to_le_bytes(), 0u16.to_le_bytes()].concat(),
        65534u32.to_le_bytes().to_vec(),
        [4u16.to_le_bytes(), 4u16.to_le_bytes()].concat(),
        u32::MAX.to_le_bytes().to_vec(),
        [0x10u16.to_le_bytes(), 4u16.to_le_bytes()].concat(),
        u32::MAX.to_le_bytes().to_vec(),
        [0x20u16.to_le_bytes(), 4u16.to_le_bytes()].concat(),
        u32::MAX.to_le_bytes().to_vec(),
    ]
    .concat();
    let name = std::ffi::CString::new("system.posix_acl_access").unwrap();
    // SAFETY: setxattr(2) with valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(r, -1, "an ACL was accepted");
    assert_eq!(errno, Some(libc::EOPNOTSUPP));
    // the node refuses it for a direct caller too
    let e = rt
        .block_on(admin.setxattr(
            own.ino,
            "system.posix_acl_access",
            &acl,
            wormfs::meta::XattrMode::Any,
        ))
        .unwrap_err();
    assert_eq!(e.errno, libc::EOPNOTSUPP, "{e}");
}

/// A change repeated under its request id (as a client does on another node after the first
/// stopped answering mid-call) answers as the first run did, also when the node's own
/// permission checks look at what the first run changed: a rename's source and a sticky
/// directory's victim are gone, and the repeat is not refused with `ENOENT`.
#[test]
fn a_repeated_rename_or_unlink_of_a_user_answers_as_the_first_run() {
    use wormfs::rpc::proto;
    let mut w = World::start(3, "");
    w.stop_mount();
    let (ok, _, err) = as_user(
        &w,
        &w.admin_identity(),
        &["user", "add", "bob", "--uid", "65534", "--gid", "65534"],
    );
    assert!(ok, "{err}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = client_as(&rt, &w, &w.admin_identity()).unwrap();
    // a sticky directory everyone may write, owned by root: removing from it checks the
    // victim's owner
    let boxed = rt
        .block_on(admin.create(proto::CreateRequest {
            parent: 1,
            name: "box".into(),
            kind: proto::FileKind::Directory as i32,
            perm: 0o1777,
            ..Default::default()
        }))
        .unwrap();
    let bob = client_as(&rt, &w, &w.tmp.path().join("bob.identity"))
        .unwrap()
        .raw();
    fn with_id<T>(req: T, id: &str) -> tonic::Request<T> {
        let mut r = tonic::Request::new(req);
        r.metadata_mut()
            .insert(wormfs::rpc::REQUEST_ID_HEADER, id.parse().unwrap());
        r
    }
    let mut call = bob.clone();
    rt.block_on(call.create(with_id(
        proto::CreateRequest {
            parent: boxed.ino.0,
            name: "f".into(),
            kind: proto::FileKind::File as i32,
            perm: 0o644,
            uid: 65534,
            gid: 65534,
            ..Default::default()
        },
        "c1",
    )))
    .expect("bob creates box/f");
    let rename = || proto::RenameRequest {
        parent: boxed.ino.0,
        name: "f".into(),
        new_parent: boxed.ino.0,
        new_name: "g".into(),
        no_replace: false,
    };
    for _ in 0..2 {
        rt.block_on(call.rename(with_id(rename(), "r1")))
            .expect("the rename and its repeat");
    }
    let e = rt
        .block_on(call.rename(with_id(rename(), "r2")))
        .expect_err("a new rename of the gone name");
    assert_eq!(wormfs::rpc::errno_of(&e), libc::ENOENT, "{e:?}");
    let entry = || proto::EntryRequest {
        parent: boxed.ino.0,
        name: "g".into(),
    };
    for _ in 0..2 {
        rt.block_on(call.unlink(with_id(entry(), "u1")))
            .expect("the unlink and its repeat");
    }
    let e = rt
        .block_on(call.unlink(with_id(entry(), "u2")))
        .expect_err("a new unlink of the gone name");
    assert_eq!(wormfs::rpc::errno_of(&e), libc::ENOENT, "{e:?}");
}
