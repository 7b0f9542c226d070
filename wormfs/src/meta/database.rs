//! The metadata database as a whole: how durable its commits are, its `raft_state`, and
//! copies of it (a snapshot's, written out and read back in).

use super::schema;
use super::sqlite::{meta_value, sql, MetaError, MetaStore};
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

impl MetaStore {
    /// Whether each commit waits for its own fsync (`synchronous = FULL`, the default: a
    /// committed op survives power loss), or only for its write to the OS (`NORMAL`: still
    /// atomic and consistent, and a killed process loses nothing, but the last commits may
    /// be lost with the machine's power). The Raft state machine turns it off: its ops are
    /// durable in the Raft log before they are applied, and a node that lost its last
    /// applies applies them again from the log at restart; it calls [`MetaStore::sync`]
    /// before the log may forget them (a snapshot).
    pub fn set_durable_commits(&self, durable: bool) -> Result<(), MetaError> {
        let level = if durable { "FULL" } else { "NORMAL" };
        self.conn()
            .pragma_update(None, "synchronous", level)
            .map_err(sql("set synchronous"))
    }

    /// Whether each commit waits for its own fsync (see [`MetaStore::set_durable_commits`]).
    pub fn durable_commits(&self) -> Result<bool, MetaError> {
        let level: i64 = self
            .conn()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(sql("read synchronous"))?;
        Ok(level >= 2)
    }

    /// Makes every committed transaction durable: fsyncs the write-ahead log and the
    /// database file (what [`MetaStore::set_durable_commits`]`(false)` leaves to the OS).
    /// Nothing to do for a database in memory.
    pub fn sync(&self) -> Result<(), MetaError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _no_commit_meanwhile = self.conn();
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        for file in [std::path::PathBuf::from(wal), path.clone()] {
            let io = |action| {
                let path = file.clone();
                move |source| MetaError::Io {
                    action,
                    path,
                    source,
                }
            };
            match std::fs::File::open(&file) {
                Ok(f) => f.sync_all().map_err(io("sync"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("open to sync")(e)),
            }
        }
        Ok(())
    }

    /// One value of the `raft_state` table written by [`MetaStore::apply_batch`].
    pub fn raft_state(&self, key: &str) -> Result<Option<String>, MetaError> {
        self.conn()
            .query_row("SELECT value FROM raft_state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("read raft state"))
    }

    /// Writes a consistent copy of the whole database to `dest` (`VACUUM INTO`), which must
    /// not exist yet. No op is applied while the copy is made. SQLite does not fsync the
    /// copy: the caller syncs it before relying on it.
    pub fn copy_into(&self, dest: &Path) -> Result<(), MetaError> {
        let dest = dest.to_str().ok_or_else(|| {
            MetaError::Schema(format!(
                "snapshot path {} is not valid UTF-8",
                dest.display()
            ))
        })?;
        self.conn()
            .execute("VACUUM INTO ?1", [dest])
            .map(drop)
            .map_err(sql("copy database (VACUUM INTO)"))
    }

    /// Replaces the whole content of this database with the database file at `src` (a copy
    /// made by [`MetaStore::copy_into`], possibly on another node), atomically: SQLite's
    /// online backup copies every page in one write transaction, so a crash leaves the old
    /// content or the new one, never a mix. The copy is checked first (integrity, schema
    /// version) and migrated to this build's schema afterwards.
    pub fn replace_from(&self, src: &Path) -> Result<(), MetaError> {
        let source = open_copy(src)?;
        let mut conn = self.conn();
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut conn)
                .map_err(sql("start restoring database copy"))?;
            match backup
                .step(-1)
                .map_err(sql("restore database copy"))?
            {
                rusqlite::backup::StepResult::Done => {}
                other => {
                    return Err(MetaError::Schema(format!(
                        "restoring {} did not finish in one step ({other:?}); the database is unchanged",
                        src.display()
                    )))
                }
            }
        }
        drop(source);
        conn.flush_prepared_statement_cache();
        let migrated = schema::migrate(&mut conn).map_err(MetaError::Schema);
        drop(conn);
        self.users_changed();
        migrated
    }

    /// The last applied op of a database copy at `src` (see [`MetaStore::copy_into`]), after
    /// checking the copy's integrity and schema version.
    pub fn last_applied_of_copy(src: &Path) -> Result<u64, MetaError> {
        meta_value(&open_copy(src)?, "last_applied")
    }

    /// The `raft_state` table of a database copy at `src` (see [`MetaStore::copy_into`]),
    /// after checking the copy's integrity and schema version.
    pub fn raft_state_of_copy(
        src: &Path,
    ) -> Result<std::collections::BTreeMap<String, String>, MetaError> {
        let conn = open_copy(src)?;
        let mut stmt = conn
            .prepare("SELECT key, value FROM raft_state")
            .map_err(sql("read raft state of database copy"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read raft state of database copy"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read raft state of database copy"))
    }
}

/// Opens a database copy read-only and checks it: a whole, uncorrupted SQLite file whose
/// schema this build can read (and that has the `raft_state` table).
fn open_copy(src: &Path) -> Result<Connection, MetaError> {
    let conn = Connection::open_with_flags(
        src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("open database copy"))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sql("check database copy"))?;
    if check != "ok" {
        return Err(MetaError::Corrupt(format!(
            "database copy {} fails its integrity check: {check}",
            src.display()
        )));
    }
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql("read schema version of database copy"))?;
    if !(schema::RAFT_STATE_VERSION..=schema::SCHEMA_VERSION).contains(&version) {
        return Err(MetaError::Schema(format!(
            "database copy {} has schema version {version}; this build reads {}..={}",
            src.display(),
            schema::RAFT_STATE_VERSION,
            schema::SCHEMA_VERSION
        )));
    }
    Ok(conn)
}
