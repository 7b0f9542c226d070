//! The user calls of the gRPC service: list, add, rotate, remove. Admin identities only.

use super::proto;
use super::session::{require_admin, Caller};
use crate::meta::{MetadataOp, Refusal, Timestamp, UserRecord};
use crate::node::{FsError, NodeFs};
use tonic::Status;

fn info(u: &UserRecord) -> proto::UserInfo {
    proto::UserInfo {
        name: u.name.clone(),
        uid: u.uid,
        gid: u.gid,
        groups: u.groups.clone(),
        admin: u.admin,
        host: u.host,
        created: u.created.0,
    }
}

fn refusal(r: Refusal) -> Status {
    super::status_with_errno(r.errno(), r.to_string())
}

fn fs_status(what: &str, e: impl Into<FsError>) -> Status {
    let e: FsError = e.into();
    super::status_with_errno(e.errno(), format!("{what}: {e}"))
}

/// Every user.
pub(super) fn list(fs: &NodeFs, caller: &Caller) -> Result<proto::UsersReply, Status> {
    require_admin(caller, "listing users")?;
    let users = fs.meta().users().map_err(|e| fs_status("list users", e))?;
    Ok(proto::UsersReply {
        users: users.iter().map(info).collect(),
    })
}

/// Adds a user, or gives one a new key; returns the key once.
pub(super) async fn put(
    fs: &NodeFs,
    caller: &Caller,
    r: proto::PutUserRequest,
) -> Result<proto::PutUserReply, Status> {
    require_admin(caller, "adding or rotating users")?;
    let want = r
        .user
        .ok_or_else(|| Status::invalid_argument("user: name the user"))?;
    super::identity::check_user_name(&want.name).map_err(Status::invalid_argument)?;
    let key = super::identity::new_key().map_err(|e| Status::internal(e.to_string()))?;
    let user = if r.rotate {
        let Some(old) = fs
            .meta()
            .user(&want.name)
            .map_err(|e| fs_status("read user", e))?
        else {
            return Err(super::status_with_errno(
                crate::errno::ENOENT,
                format!("no user `{}` to rotate", want.name),
            ));
        };
        UserRecord {
            key,
            created: Timestamp::now(),
            ..old
        }
    } else {
        UserRecord {
            name: want.name,
            key,
            uid: want.uid,
            gid: want.gid,
            groups: want.groups,
            admin: want.admin,
            host: want.host,
            created: Timestamp::now(),
        }
    };
    let reply = proto::PutUserReply {
        user: Some(info(&user)),
        key: key.to_vec(),
    };
    let name = user.name.clone();
    fs.log()
        .submit(MetadataOp::PutUser {
            user,
            replace: r.rotate,
        })
        .await
        .map_err(|e| fs_status("record user", e))?
        .map_err(refusal)?;
    tracing::info!(user = %name, by = %caller.user, rotate = r.rotate, "user key issued");
    Ok(reply)
}

/// Removes a user; its connections are refused at their next call. The last admin stays.
pub(super) async fn remove(fs: &NodeFs, caller: &Caller, name: String) -> Result<(), Status> {
    require_admin(caller, "removing users")?;
    let users = fs.meta().users().map_err(|e| fs_status("list users", e))?;
    let Some(user) = users.iter().find(|u| u.name == name) else {
        return Err(super::status_with_errno(
            crate::errno::ENOENT,
            format!("no user `{name}`"),
        ));
    };
    if user.admin && users.iter().filter(|u| u.admin).count() == 1 {
        return Err(super::status_with_errno(
            crate::errno::EPERM,
            format!("`{name}` is the last admin: add another admin first, or nobody could manage the cluster"),
        ));
    }
    fs.log()
        .submit(MetadataOp::RemoveUser(name.clone()))
        .await
        .map_err(|e| fs_status("remove user", e))?
        .map_err(refusal)?;
    tracing::info!(user = %name, by = %caller.user, "user removed");
    Ok(())
}

/// Every admin API token, by name (never the tokens).
pub(super) fn list_tokens(fs: &NodeFs, caller: &Caller) -> Result<proto::TokensReply, Status> {
    require_admin(caller, "listing API tokens")?;
    let tokens = fs
        .meta()
        .tokens()
        .map_err(|e| fs_status("list tokens", e))?;
    Ok(proto::TokensReply {
        tokens: tokens
            .into_iter()
            .map(|t| proto::TokenInfo {
                name: t.name,
                created: t.created.0,
            })
            .collect(),
    })
}

/// Records a token by name and hash.
pub(super) async fn put_token(
    fs: &NodeFs,
    caller: &Caller,
    r: proto::PutTokenRequest,
) -> Result<(), Status> {
    require_admin(caller, "making API tokens")?;
    super::identity::check_user_name(&r.name)
        .map_err(|e| Status::invalid_argument(format!("token name: {e}")))?;
    if r.hash.len() != 64
        || !r
            .hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(Status::invalid_argument(
            "hash: send the token's SHA-256 as 64 lowercase hex digits",
        ));
    }
    fs.log()
        .submit(MetadataOp::PutToken {
            name: r.name.clone(),
            hash: r.hash,
            created: Timestamp::now(),
        })
        .await
        .map_err(|e| fs_status("record token", e))?
        .map_err(refusal)?;
    tracing::info!(token = %r.name, by = %caller.user, "API token added");
    Ok(())
}

/// Revokes a token: every node refuses it from its next request.
pub(super) async fn remove_token(fs: &NodeFs, caller: &Caller, name: String) -> Result<(), Status> {
    require_admin(caller, "revoking API tokens")?;
    fs.log()
        .submit(MetadataOp::RemoveToken(name.clone()))
        .await
        .map_err(|e| fs_status("revoke token", e))?
        .map_err(refusal)?;
    tracing::info!(token = %name, by = %caller.user, "API token revoked");
    Ok(())
}
