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
