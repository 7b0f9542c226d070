//! The `users` table: applying [`MetadataOp::PutUser`] / [`MetadataOp::RemoveUser`] and
//! reading users back; and the `lock_sessions` of the clients they run.
//!
//! [`MetadataOp::PutUser`]: super::MetadataOp::PutUser
//! [`MetadataOp::RemoveUser`]: super::MetadataOp::RemoveUser

use super::apply::{done, Cached};
use super::op::{OpReply, Refusal};
use super::sqlite::{sql, MetaError, MetaStore};
use super::types::{Timestamp, UserRecord};
use rusqlite::{params, Connection, OptionalExtension, Row};

type Res = Result<OpReply, MetaError>;

fn groups_text(groups: &[u32]) -> String {
    groups
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn put_user(c: &Connection, u: &UserRecord, replace: bool) -> Res {
    let exists = c
        .query_row_cached("SELECT 1 FROM users WHERE name = ?1", [&u.name], |_| Ok(()))
        .optional()
        .map_err(sql("look up user"))?
        .is_some();
    if exists && !replace {
        return Ok(Err(Refusal::Exists(format!("user `{}`", u.name))));
    }
    if !exists && replace {
        return Ok(Err(Refusal::NotFound(format!("user `{}`", u.name))));
    }
    c.exec(
        "INSERT OR REPLACE INTO users (name, key, uid, gid, groups, admin, host, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            u.name,
            &u.key[..],
            u.uid,
            u.gid,
            groups_text(&u.groups),
            u.admin,
            u.host,
            u.created.0
        ],
    )
    .map_err(sql("record user"))?;
    done()
}

pub(super) fn remove_user(c: &Connection, name: &str) -> Res {
    let n = c
        .exec("DELETE FROM users WHERE name = ?1", [name])
        .map_err(sql("remove user"))?;
    if n == 0 {
        return Ok(Err(Refusal::NotFound(format!("user `{name}`"))));
    }
    done()
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<(UserRecord, Vec<u8>, String)> {
    Ok((
        UserRecord {
            name: r.get(0)?,
            key: [0; 32],
            uid: r.get(2)?,
            gid: r.get(3)?,
            groups: Vec::new(),
            admin: r.get(5)?,
            host: r.get(6)?,
            created: Timestamp(r.get(7)?),
        },
        r.get(1)?,
        r.get(4)?,
    ))
}

fn finish((mut u, key, groups): (UserRecord, Vec<u8>, String)) -> Result<UserRecord, MetaError> {
    u.key = key.as_slice().try_into().map_err(|_| {
        MetaError::Corrupt(format!(
            "user `{}` has a key of {} bytes, not 32",
            u.name,
            key.len()
        ))
    })?;
    u.groups = groups
        .split(',')
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.parse()
                .map_err(|_| MetaError::Corrupt(format!("user `{}` has group `{g}`", u.name)))
        })
        .collect::<Result<_, _>>()?;
    Ok(u)
}

pub(super) fn open_lock_session(c: &Connection, id: &str, client: &str, opened: Timestamp) -> Res {
    c.exec(
        "INSERT OR REPLACE INTO lock_sessions (id, client, opened) VALUES (?1, ?2, ?3)",
        params![id, client, opened.0],
    )
    .map_err(sql("record lock session"))?;
    done()
}

pub(super) fn close_lock_sessions(c: &Connection, ids: &[String]) -> Res {
    for id in ids {
        c.exec("DELETE FROM lock_sessions WHERE id = ?1", [id])
            .map_err(sql("forget lock session"))?;
    }
    done()
}

impl MetaStore {
    /// The recorded lock sessions: (id, client).
    pub fn lock_sessions(&self) -> Result<Vec<(String, String)>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, client FROM lock_sessions ORDER BY id")
            .map_err(sql("list lock sessions"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("list lock sessions"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("list lock sessions"))?;
        Ok(rows)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, key, uid, gid, groups, admin, host, created FROM users ORDER BY name",
            )
            .map_err(sql("list users"))?;
        let rows = stmt
            .query_map([], user_row)
            .map_err(sql("list users"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("list users"))?;
        rows.into_iter().map(finish).collect()
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, MetaError> {
        let row = self
            .conn()
            .query_row_cached(
                "SELECT name, key, uid, gid, groups, admin, host, created FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
            .map_err(sql("read user"))?;
        row.map(finish).transpose()
    }
}
