//! Who a request comes from: the node's copy of the users (read from the replicated
//! metadata, cached until a user op is applied), the [`Caller`] each request acts as, and the
//! interceptor that checks every call of an authenticated connection against the users as
//! they are now (a removed user, or one whose key was rotated, is refused at its next call
//! on a connection opened before).

use super::tls::{KeyLookup, Session};
use crate::meta::{MetaStore, UserRecord};
pub use crate::node::Caller;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tonic::{Request, Status};

pub use super::{ACT_GID_HEADER, ACT_GROUPS_HEADER, ACT_UID_HEADER};

/// The users as the node's metadata has them, cached.
pub struct Users {
    meta: Arc<MetaStore>,
    cache: RwLock<(u64, Arc<HashMap<String, UserRecord>>)>,
}

impl Users {
    /// The users of `meta`.
    pub fn new(meta: Arc<MetaStore>) -> Users {
        Users {
            meta,
            cache: RwLock::new((0, Arc::new(HashMap::new()))),
        }
    }

    /// Every user, as of the last applied op.
    pub fn current(&self) -> Arc<HashMap<String, UserRecord>> {
        let epoch = self.meta.users_epoch();
        {
            let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if c.0 == epoch {
                return c.1.clone();
            }
        }
        match self.meta.users() {
            Ok(list) => {
                let map: Arc<HashMap<_, _>> =
                    Arc::new(list.into_iter().map(|u| (u.name.clone(), u)).collect());
                *self.cache.write().unwrap_or_else(|e| e.into_inner()) = (epoch, map.clone());
                map
            }
            Err(e) => {
                // keep refusing safely: an unreadable users table admits no one new
                tracing::error!("cannot read the users: {e}");
                Arc::new(HashMap::new())
            }
        }
    }
}

impl KeyLookup for Users {
    fn key_of(&self, name: &str) -> Option<[u8; 32]> {
        self.current().get(name).map(|u| u.key)
    }
}

/// Refuses a caller that is not an admin, naming what needed one.
pub fn require_admin(caller: &Caller, what: &str) -> Result<(), Status> {
    if caller.admin {
        return Ok(());
    }
    Err(super::status_with_errno(
        crate::errno::EPERM,
        format!(
            "{what} needs an admin identity; user `{}` is not an admin (see `wormfs user add --admin`)",
            caller.user
        ),
    ))
}

/// The caller of a request the [`Authenticator`] let through.
pub fn caller_of<T>(r: &Request<T>) -> Result<Caller, Status> {
    r.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("the request came without an authenticated session"))
}

fn header_u32(r: &Request<()>, name: &str) -> Result<Option<u32>, Status> {
    match r.metadata().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("header {name} is not a number"))),
    }
}

/// Checks each call's session against the users as they are now and attaches its
/// [`Caller`].
#[derive(Clone)]
pub struct Authenticator {
    users: Arc<Users>,
}

impl Authenticator {
    /// An authenticator over `users`.
    pub fn new(users: Arc<Users>) -> Authenticator {
        Authenticator { users }
    }

    fn caller(&self, r: &Request<()>) -> Result<Caller, Status> {
        let Some(session) = r.extensions().get::<Session>() else {
            return Err(Status::unauthenticated(
                "this node accepts only TLS-PSK connections with a WormFS identity",
            ));
        };
        let users = self.users.current();
        let refuse = |why: String| {
            tracing::warn!(
                "refused call from {} as user `{}`: {why}",
                session.peer,
                session.user
            );
            let mut status = Status::unauthenticated(format!("user `{}`: {why}", session.user));
            status
                .metadata_mut()
                .insert(super::ERRNO_METADATA, crate::errno::EACCES.into());
            status
        };
        let Some(user) = users.get(&session.user) else {
            return Err(refuse("the user was removed".into()));
        };
        if user.key != session.key {
            return Err(refuse(
                "the user's key was rotated; use its new identity file".into(),
            ));
        }
        let mut caller = Caller {
            user: user.name.clone(),
            uid: user.uid,
            gid: user.gid,
            groups: user.groups.clone(),
            admin: user.admin,
        };
        // a trusted host (or an admin) acts as the caller its mount names; a personal
        // identity always acts as itself
        if user.host || user.admin {
            if let Some(uid) = header_u32(r, ACT_UID_HEADER)? {
                caller.uid = uid;
                caller.gid = header_u32(r, ACT_GID_HEADER)?.unwrap_or(uid);
                caller.groups = match r.metadata().get(ACT_GROUPS_HEADER) {
                    None => Vec::new(),
                    Some(v) => v
                        .to_str()
                        .ok()
                        .and_then(|t| {
                            t.split(',')
                                .filter(|g| !g.is_empty())
                                .map(|g| g.parse().ok())
                                .collect::<Option<Vec<u32>>>()
                        })
                        .ok_or_else(|| {
                            Status::invalid_argument(format!(
                                "header {ACT_GROUPS_HEADER} is not a list of numbers"
                            ))
                        })?,
                };
            }
        }
        Ok(caller)
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut r: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(&r)?;
        r.extensions_mut().insert(caller);
        Ok(r)
    }
}

debug_by_name!(Authenticator, Users);
