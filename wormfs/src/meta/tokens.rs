//! The `admin_tokens` table: applying [`MetadataOp::PutToken`] /
//! [`MetadataOp::RemoveToken`], and finding a token by its hash.
//!
//! [`MetadataOp::PutToken`]: super::MetadataOp::PutToken
//! [`MetadataOp::RemoveToken`]: super::MetadataOp::RemoveToken

use super::apply::{done, Cached};
use super::op::{OpReply, Refusal};
use super::sqlite::{sql, MetaError, MetaStore};
use super::types::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

type Res = Result<OpReply, MetaError>;

/// An admin API token as the metadata keeps it: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its name.
    pub name: String,
    /// When it was made.
    pub created: Timestamp,
}

pub(super) fn put_token(c: &Connection, name: &str, hash: &str, created: Timestamp) -> Res {
    let taken = c
        .query_row_cached(
            "SELECT name FROM admin_tokens WHERE name = ?1 OR hash = ?2",
            params![name, hash],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql("look up token"))?;
    if let Some(n) = taken {
        return Ok(Err(Refusal::Exists(format!("token `{n}`"))));
    }
    c.exec(
        "INSERT INTO admin_tokens (name, hash, created) VALUES (?1, ?2, ?3)",
        params![name, hash, created.0],
    )
    .map_err(sql("record token"))?;
    done()
}

pub(super) fn remove_token(c: &Connection, name: &str) -> Res {
    let n = c
        .exec("DELETE FROM admin_tokens WHERE name = ?1", [name])
        .map_err(sql("remove token"))?;
    if n == 0 {
        return Ok(Err(Refusal::NotFound(format!("token `{name}`"))));
    }
    done()
}

impl MetaStore {
    /// Every admin API token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, created FROM admin_tokens ORDER BY name")
            .map_err(sql("list tokens"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TokenRecord {
                    name: r.get(0)?,
                    created: Timestamp(r.get(1)?),
                })
            })
            .map_err(sql("list tokens"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("list tokens"))?;
        Ok(rows)
    }

    /// The name of the token whose SHA-256 (lowercase hex) is `hash`, if there is one.
    pub fn token_named_by_hash(&self, hash: &str) -> Result<Option<String>, MetaError> {
        self.conn()
            .query_row_cached(
                "SELECT name FROM admin_tokens WHERE hash = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("look up token"))
    }
}
