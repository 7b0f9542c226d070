//! `wormfs user add|list|remove|rotate`: the users client identities name (admin only).

use crate::output::out;
use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};
use wormfs::rpc::identity::Identity;
use wormfs::rpc::proto;

/// What `wormfs user add` is given.
pub struct NewUser {
    pub name: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    pub admin: bool,
    pub host: bool,
    pub out: Option<PathBuf>,
}

/// The uid and gid of local account `name`, if there is one.
fn local_account(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam with a valid C string; the fields are copied out at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: a non-null result points to a valid passwd record.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Writes the identity for `reply` to `out` (default `./NAME.identity`).
fn write_identity(
    client: &wormfs::rpc::client::Client,
    reply: &proto::PutUserReply,
    out: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, String)> {
    let user = reply.user.clone().context("the node sent no user")?;
    let key: [u8; 32] = reply
        .key
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the node sent a key of {} bytes", reply.key.len()))?;
    let path = out.unwrap_or_else(|| PathBuf::from(format!("{}.identity", user.name)));
    Identity {
        user: user.name.clone(),
        key,
        nodes: client.nodes(),
    }
    .write(&path)?;
    Ok((path, user.name))
}

fn shown(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// `wormfs user add NAME ...`.
pub async fn add(node: &str, new: NewUser, as_json: bool) -> anyhow::Result<()> {
    wormfs::rpc::identity::check_user_name(&new.name).map_err(anyhow::Error::msg)?;
    let local = local_account(&new.name);
    let uid = match (new.uid, local) {
        (Some(u), _) => u,
        (None, Some((u, _))) => u,
        (None, None) => anyhow::bail!(
            "`{}` is not a local account: name the uid it acts as with --uid (and --gid)",
            new.name
        ),
    };
    let gid = new
        .gid
        .or(local.filter(|(u, _)| *u == uid).map(|(_, g)| g))
        .unwrap_or(uid);
    if new.out.as_ref().is_some_and(|p| p.exists())
        || new.out.is_none() && Path::new(&format!("{}.identity", new.name)).exists()
    {
        anyhow::bail!(
            "the identity file `{}` exists already: choose another with --out, or remove it",
            new.out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.identity", new.name)))
                .display()
        );
    }
    let client = crate::commands::connect(node).await?;
    let reply = client
        .put_user(
            proto::UserInfo {
                name: new.name.clone(),
                uid,
                gid,
                groups: new.groups,
                admin: new.admin,
                host: new.host,
                created: 0,
            },
            false,
        )
        .await
        .with_context(|| format!("add user `{}`", new.name))?;
    let (path, name) = write_identity(&client, &reply, new.out)?;
    if as_json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({"user": name, "uid": uid, "gid": gid,
                "admin": new.admin, "host": new.host, "identity": shown(&path)}))?
        );
    } else {
        out!(
            "added user {name} (uid {uid}, gid {gid}{}{}); its identity file is {} (mode 0600: a secret key, give it only to that user)",
            if new.admin { ", admin" } else { "" },
            if new.host { ", trusted host" } else { "" },
            shown(&path)
        );
    }
    Ok(())
}

/// `wormfs user rotate NAME`: a new key; the old one is refused from now on.
pub async fn rotate(
    node: &str,
    name: &str,
    out: Option<PathBuf>,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    let reply = client
        .put_user(
            proto::UserInfo {
                name: name.to_owned(),
                ..Default::default()
            },
            true,
        )
        .await
        .with_context(|| format!("rotate the key of user `{name}`"))?;
    let (path, name) = write_identity(&client, &reply, out)?;
    if as_json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({"user": name, "identity": shown(&path)}))?
        );
    } else {
        out!(
            "user {name} has a new key in {}; its old identity file is refused from now on",
            shown(&path)
        );
    }
    Ok(())
}

/// `wormfs user remove NAME`.
pub async fn remove(node: &str, name: &str, as_json: bool) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    client
        .remove_user(name)
        .await
        .with_context(|| format!("remove user `{name}`"))?;
    if as_json {
        out!("{}", json!({"removed": name}));
    } else {
        out!("removed user {name}: its identity is refused by every node from now on");
    }
    Ok(())
}

/// `wormfs user list`.
pub async fn list(node: &str, as_json: bool) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    let users = client.list_users().await.context("list users")?;
    if as_json {
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                json!({"name": u.name, "uid": u.uid, "gid": u.gid, "groups": u.groups,
                       "admin": u.admin, "host": u.host, "created": u.created})
            })
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({ "users": rows }))?
        );
        return Ok(());
    }
    out!(
        "{:<20} {:>6} {:>6}  {:<12} groups",
        "user",
        "uid",
        "gid",
        "role"
    );
    for u in &users {
        let role = match (u.admin, u.host) {
            (true, true) => "admin,host",
            (true, false) => "admin",
            (false, true) => "host",
            (false, false) => "user",
        };
        let groups: Vec<String> = u.groups.iter().map(u32::to_string).collect();
        out!(
            "{:<20} {:>6} {:>6}  {:<12} {}",
            u.name,
            u.uid,
            u.gid,
            role,
            groups.join(",")
        );
    }
    Ok(())
}

/// `wormfs token create NAME [--out FILE]`.
pub async fn token_create(
    node: &str,
    name: &str,
    out: Option<PathBuf>,
    as_json: bool,
) -> anyhow::Result<()> {
    wormfs::rpc::identity::check_user_name(name).map_err(|e| anyhow::anyhow!("token name: {e}"))?;
    if let Some(p) = out.as_ref().filter(|p| p.exists()) {
        anyhow::bail!(
            "`{}` exists already: choose another file with --out, or remove it",
            p.display()
        );
    }
    let client = crate::commands::connect(node).await?;
    let token = client
        .create_token(name)
        .await
        .with_context(|| format!("make token `{name}`"))?;
    match &out {
        Some(p) => {
            wormfs::rpc::token::write_token_file(p, &token)
                .with_context(|| format!("write `{}`", p.display()))?;
            if as_json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"token": name, "file": shown(p)}))?
                );
            } else {
                out!(
                    "made token {name}; it is in {} (mode 0600), and nowhere else: the nodes keep only its hash",
                    shown(p)
                );
            }
        }
        None if as_json => out!(
            "{}",
            serde_json::to_string_pretty(&json!({"token": name, "secret": token}))?
        ),
        None => {
            out!("{token}");
            eprintln!(
                "made token {name}: shown once above, the nodes keep only its hash; send it as `Authorization: Bearer TOKEN`"
            );
        }
    }
    Ok(())
}

/// `wormfs token list`.
pub async fn token_list(node: &str, as_json: bool) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    let tokens = client.list_tokens().await.context("list tokens")?;
    if as_json {
        let rows: Vec<_> = tokens
            .iter()
            .map(|t| json!({"name": t.name, "created": t.created}))
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tokens": rows }))?
        );
        return Ok(());
    }
    out!("{:<24} created (Unix seconds)", "token");
    for t in &tokens {
        out!("{:<24} {}", t.name, t.created / 1_000_000_000);
    }
    Ok(())
}

/// `wormfs token revoke NAME`.
pub async fn token_revoke(node: &str, name: &str, as_json: bool) -> anyhow::Result<()> {
    let client = crate::commands::connect(node).await?;
    client
        .remove_token(name)
        .await
        .with_context(|| format!("revoke token `{name}`"))?;
    if as_json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({ "revoked": name }))?
        );
    } else {
        out!("revoked token {name}: every node refuses it from its next request");
    }
    Ok(())
}
