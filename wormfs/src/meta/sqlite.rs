//! The SQLite metadata store: applies [`MetadataOp`]s, one transaction each, and answers
//! reads.

use super::apply::{apply_op, Cached};
use super::op::{MetadataOp, OpReply};
use super::schema;
use super::types::{
    Attr, ChunkLocation, ChunkRecord, ChunkState, DirEntry, DiskInfo, FileKind, FileLayout,
    NodeInfo, StripeRecord, Timestamp,
};
use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use crate::store::ChunkFolder;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// A metadata store failure (not a refusal): the store cannot be trusted to go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// SQLite failed.
    #[error("metadata database: {action}: {source}")]
    Sqlite {
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The schema cannot be brought up to date.
    #[error("metadata database schema: {0}")]
    Schema(String),
    /// An op was applied out of order.
    #[error(
        "op {seq} arrives after op {last_applied} was applied; ops must be applied in order once"
    )]
    OutOfOrder {
        /// The op's sequence number.
        seq: u64,
        /// The last applied.
        last_applied: u64,
    },
    /// A row holds a value no writer produces.
    #[error("metadata database holds an invalid value: {0}")]
    Corrupt(String),
    /// A file of the database could not be synced.
    #[error("metadata database: {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS's error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> MetaError {
    move |source| MetaError::Sqlite { action, source }
}

/// File and chunk metadata in one SQLite database file.
pub struct MetaStore {
    conn: Mutex<Connection>,
    /// The database file, for extra read-only connections (`None` in memory).
    pub(super) path: Option<std::path::PathBuf>,
    /// Bumped each time the users may have changed (see [`MetaStore::users_epoch`]).
    users_epoch: std::sync::atomic::AtomicU64,
}

impl MetaStore {
    /// Opens (creating if needed) the database at `path` and migrates it to the current
    /// schema. WAL mode with `synchronous = FULL`: a committed op survives power loss.
    pub fn open(path: &Path) -> Result<MetaStore, MetaError> {
        let conn = Connection::open(path).map_err(sql("open"))?;
        let mut store = Self::setup(conn)?;
        store.path = Some(path.to_owned());
        Ok(store)
    }

    /// A database in memory, for tests of logic above the store.
    pub fn open_in_memory() -> Result<MetaStore, MetaError> {
        Self::setup(Connection::open_in_memory().map_err(sql("open"))?)
    }

    fn setup(mut conn: Connection) -> Result<MetaStore, MetaError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("set synchronous"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("set busy timeout"))?;
        // Room for every statement an op runs (see `apply::Cached`).
        conn.set_prepared_statement_cache_capacity(256);
        schema::migrate(&mut conn).map_err(MetaError::Schema)?;
        Ok(MetaStore {
            conn: Mutex::new(conn),
            path: None,
            users_epoch: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Runs `f` on a read-only connection of its own (a consistent snapshot that does not
    /// hold up writers), or on the store's connection for a database in memory.
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        match &self.path {
            Some(p) => {
                let c = Connection::open_with_flags(
                    p,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql("open a reader"))?;
                c.execute_batch("BEGIN").map_err(sql("begin read"))?;
                let out = f(&c);
                let _ = c.execute_batch("COMMIT");
                out
            }
            None => f(&self.conn()),
        }
    }

    /// A number that changes each time the users may have changed (a user op applied, the
    /// database replaced by a snapshot): a cache of users is current while it is the same.
    pub fn users_epoch(&self) -> u64 {
        self.users_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(super) fn users_changed(&self) {
        self.users_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What applying the op submitted under `request` (a [`MetadataOp::Once`] id) gave,
    /// if this copy has applied it and still keeps the id: see `apply::once`.
    pub fn request_reply(&self, request: &str) -> Result<Option<super::Applied>, MetaError> {
        let stored: Option<String> = self
            .conn()
            .query_row("SELECT reply FROM requests WHERE id = ?1", [request], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("read a request id"))?;
        stored
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| {
                    MetaError::Corrupt(format!("the stored reply to request {request}: {e}"))
                })
            })
            .transpose()
    }

    /// The sequence number of the last applied op (0 for none).
    pub fn last_applied(&self) -> Result<u64, MetaError> {
        meta_value(&self.conn(), "last_applied")
    }

    /// Applies op number `seq` in one transaction with the new last-applied number. `seq`
    /// must be greater than [`MetaStore::last_applied`]. A refusal leaves the state as it was
    /// (but consumes `seq`).
    pub fn apply(&self, seq: u64, op: &MetadataOp) -> Result<OpReply, MetaError> {
        let mut conn = self.conn();
        let mut tx = conn.transaction().map_err(sql("begin"))?;
        let last_applied = meta_value(&tx, "last_applied")?;
        if seq <= last_applied {
            return Err(MetaError::OutOfOrder { seq, last_applied });
        }
        let reply = apply_in(&mut tx, op)?;
        set_meta_value(&tx, "last_applied", seq)?;
        tx.commit().map_err(sql("commit"))?;
        drop(conn);
        if op.changes_users() {
            self.users_changed();
        }
        Ok(reply)
    }

    /// Applies a batch of numbered entries in ONE transaction, together with `state`
    /// (key/value pairs written to the `raft_state` table, e.g. the replicated log's last
    /// applied log id and membership). Either all of it is committed or none of it.
    ///
    /// Each entry is `(seq, op)`; an entry without an op (a Raft blank or membership entry)
    /// only advances [`MetaStore::last_applied`]. Sequence numbers must increase, starting
    /// above the last applied one; the one exception is sequence 0 without an op on a store
    /// that has applied nothing (Raft's first log entry has index 0 and carries membership).
    /// The reply of each entry is `None` for an entry without an op.
    pub fn apply_batch(
        &self,
        entries: &[(u64, Option<&MetadataOp>)],
        state: &[(&str, &str)],
    ) -> Result<Vec<Option<OpReply>>, MetaError> {
        let mut conn = self.conn();
        let mut tx = conn.transaction().map_err(sql("begin"))?;
        let mut last_applied = meta_value(&tx, "last_applied")?;
        let mut replies = Vec::with_capacity(entries.len());
        for &(seq, op) in entries {
            let first_blank = seq == 0 && last_applied == 0 && op.is_none();
            if seq <= last_applied && !first_blank {
                return Err(MetaError::OutOfOrder { seq, last_applied });
            }
            replies.push(match op {
                Some(op) => Some(apply_in(&mut tx, op)?),
                None => None,
            });
            last_applied = seq;
        }
        if !entries.is_empty() {
            set_meta_value(&tx, "last_applied", last_applied)?;
        }
        for (key, value) in state {
            tx.execute(
                "INSERT INTO raft_state (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(sql("write raft state"))?;
        }
        tx.commit().map_err(sql("commit"))?;
        drop(conn);
        if entries
            .iter()
            .any(|(_, op)| op.is_some_and(MetadataOp::changes_users))
        {
            self.users_changed();
        }
        Ok(replies)
    }

    /// An inode's attributes.
    pub fn attr(&self, ino: FileId) -> Result<Option<Attr>, MetaError> {
        read_attr(&self.conn(), ino)
    }

    /// The inode named `name` in directory `parent`.
    pub fn lookup(&self, parent: FileId, name: &str) -> Result<Option<Attr>, MetaError> {
        let conn = self.conn();
        match lookup_ino(&conn, parent, name)? {
            Some(ino) => read_attr(&conn, ino),
            None => Ok(None),
        }
    }

    /// The inode at an absolute path.
    pub fn lookup_path(&self, path: &str) -> Result<Option<Attr>, MetaError> {
        let conn = self.conn();
        let mut ino = FileId::ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            match lookup_ino(&conn, ino, part)? {
                Some(next) => ino = next,
                None => return Ok(None),
            }
        }
        read_attr(&conn, ino)
    }

    /// The entries of a directory, by name (without `.` and `..`).
    pub fn readdir(&self, dir: FileId) -> Result<Vec<DirEntry>, MetaError> {
        self.readdir_after(dir, "", u64::MAX)
    }

    /// At most `limit` entries of a directory whose names sort after `after` (bytewise, as
    /// the listing is ordered; `""` for the first), by name.
    pub fn readdir_after(
        &self,
        dir: FileId,
        after: &str,
        limit: u64,
    ) -> Result<Vec<DirEntry>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT d.name, d.ino, i.kind FROM dentries d JOIN inodes i ON i.ino = d.ino
                 WHERE d.parent = ?1 AND d.name > ?2 ORDER BY d.name LIMIT ?3",
            )
            .map_err(sql("list directory"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![dir.0 as i64, after, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(sql("list directory"))?;
        rows.map(|r| {
            let (name, ino, kind) = r.map_err(sql("list directory"))?;
            Ok(DirEntry {
                name,
                ino: FileId(ino as u64),
                kind: kind_from(kind)?,
            })
        })
        .collect()
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: FileId) -> Result<Option<String>, MetaError> {
        self.conn()
            .query_row(
                "SELECT target FROM inodes WHERE ino = ?1",
                [ino.0 as i64],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(sql("read link"))
    }

    /// One extended attribute's value.
    pub fn xattr(&self, ino: FileId, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.conn()
            .query_row_cached(
                "SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2",
                params![ino.0 as i64, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read xattr"))
    }

    /// The names of an inode's extended attributes.
    pub fn xattr_names(&self, ino: FileId) -> Result<Vec<String>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name FROM xattrs WHERE ino = ?1 ORDER BY name")
            .map_err(sql("list xattrs"))?;
        let rows = stmt
            .query_map([ino.0 as i64], |r| r.get(0))
            .map_err(sql("list xattrs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list xattrs"))
    }

    /// Every stripe of a file with its chunks, in order.
    pub fn stripes(&self, ino: FileId) -> Result<Vec<StripeRecord>, MetaError> {
        read_stripes(&self.conn(), ino, ALL_STRIPES)
    }

    /// One stripe of a file.
    pub fn stripe(&self, ino: FileId, index: u64) -> Result<Option<StripeRecord>, MetaError> {
        Ok(read_stripes(&self.conn(), ino, index..index.saturating_add(1))?.pop())
    }

    /// A file's stripes whose index is in `range`, in order (holes are missing).
    pub fn stripes_in(
        &self,
        ino: FileId,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<StripeRecord>, MetaError> {
        read_stripes(&self.conn(), ino, range)
    }

    /// A path of an inode (the first, for an inode with several links); `None` when the
    /// inode is not reachable from the root.
    pub fn path_of(&self, ino: FileId) -> Result<Option<String>, MetaError> {
        path_of(&self.conn(), ino)
    }

    /// A directory's own policy override.
    pub fn dir_policy(&self, dir: FileId) -> Result<Option<String>, MetaError> {
        self.conn()
            .query_row(
                "SELECT policy FROM dir_policies WHERE ino = ?1",
                [dir.0 as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read directory policy"))
    }

    /// The policy override set on the directory at `path`, if any (for
    /// [`crate::policy::PolicySet::resolve`]).
    pub fn dir_policy_at(&self, path: &str) -> Result<Option<String>, MetaError> {
        match self.lookup_path(path)? {
            Some(a) if a.kind == FileKind::Directory => self.dir_policy(a.ino),
            _ => Ok(None),
        }
    }

    /// True when metadata places at least one chunk on `disk`.
    pub fn has_chunks_on(&self, disk: &DiskId) -> Result<bool, MetaError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM chunks WHERE disk = ?1 LIMIT 1",
                [&disk.0],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(sql("look for chunks on a disk"))
    }

    /// Every chunk metadata places on `disk`: the disk → chunks reverse index.
    pub fn chunks_on_disk(&self, disk: &DiskId) -> Result<Vec<ChunkLocation>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT c.ino, c.stripe, c.chunk, c.generation, c.node, c.disk, i.folder
                 FROM chunks c JOIN inodes i ON i.ino = c.ino WHERE c.disk = ?1 ORDER BY c.ino, c.stripe, c.chunk",
            )
            .map_err(sql("list chunks of disk"))?;
        let rows = stmt
            .query_map([&disk.0], location_row)
            .map_err(sql("list chunks of disk"))?;
        rows.map(|r| r.map_err(sql("list chunks of disk"))?)
            .collect()
    }

    /// Every storage node.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, address FROM nodes ORDER BY id")
            .map_err(sql("list nodes"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(NodeInfo {
                    id: NodeId(r.get(0)?),
                    address: r.get(1)?,
                })
            })
            .map_err(sql("list nodes"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list nodes"))
    }

    /// Every disk.
    pub fn disks(&self) -> Result<Vec<DiskInfo>, MetaError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, node, path, total, free FROM disks ORDER BY id")
            .map_err(sql("list disks"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DiskInfo {
                    id: DiskId(r.get(0)?),
                    node: NodeId(r.get(1)?),
                    path: r.get(2)?,
                    total: r.get::<_, i64>(3)? as u64,
                    free: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(sql("list disks"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list disks"))
    }

    /// Number of inodes and bytes in regular files (at most `u64::MAX`), for `statfs`:
    /// counters that triggers keep (schema migrations 5 and 10), not a count of the inodes.
    pub fn usage(&self) -> Result<(u64, u64), MetaError> {
        let conn = self.conn();
        let high = u128::from(meta_value(&conn, "file_bytes_hi")?);
        let low = u128::from(meta_value(&conn, "file_bytes_lo")?);
        let bytes = u64::try_from((high << 32) + low).unwrap_or(u64::MAX);
        Ok((meta_value(&conn, "inodes")?, bytes))
    }
}

/// Applies `op` inside `tx` under a savepoint: a refusal rolls back whatever the op wrote.
fn apply_in(tx: &mut rusqlite::Transaction<'_>, op: &MetadataOp) -> Result<OpReply, MetaError> {
    let sp = tx.savepoint().map_err(sql("savepoint"))?;
    let reply = apply_op(&sp, op)?;
    if reply.is_ok() {
        sp.commit().map_err(sql("release savepoint"))?;
    }
    // a dropped savepoint rolls back: a refusal changes nothing
    Ok(reply)
}

pub(crate) fn meta_value(conn: &Connection, key: &str) -> Result<u64, MetaError> {
    conn.query_row_cached("SELECT value FROM meta WHERE key = ?1", [key], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v as u64)
    .map_err(sql("read meta value"))
}

pub(crate) fn set_meta_value(conn: &Connection, key: &str, value: u64) -> Result<(), MetaError> {
    conn.exec(
        "UPDATE meta SET value = ?2 WHERE key = ?1",
        params![key, value as i64],
    )
    .map(drop)
    .map_err(sql("write meta value"))
}

fn kind_from(code: i64) -> Result<FileKind, MetaError> {
    FileKind::from_code(code).ok_or_else(|| MetaError::Corrupt(format!("inode kind {code}")))
}

pub(crate) fn lookup_ino(
    conn: &Connection,
    parent: FileId,
    name: &str,
) -> Result<Option<FileId>, MetaError> {
    conn.prepare_cached("SELECT ino FROM dentries WHERE parent = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![parent.0 as i64, name], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|o| o.map(|i| FileId(i as u64)))
        .map_err(sql("look up name"))
}

const ATTR_COLUMNS: &str =
    "ino, kind, perm, nlink, uid, gid, size, rdev, atime, mtime, ctime, crtime, policy, k, m, stripe_size, folder";

fn attr_row(r: &Row<'_>) -> rusqlite::Result<Result<Attr, MetaError>> {
    let kind = r.get::<_, i64>(1)?;
    let policy: Option<String> = r.get(12)?;
    let folder: Option<String> = r.get(16)?;
    let layout = match (policy, folder) {
        (Some(policy), Some(folder)) => {
            let folder = match ChunkFolder::try_from(folder) {
                Ok(f) => f,
                Err(e) => return Ok(Err(MetaError::Corrupt(e))),
            };
            Some(FileLayout {
                policy,
                k: r.get::<_, i64>(13)? as u16,
                m: r.get::<_, i64>(14)? as u16,
                stripe_size: r.get::<_, i64>(15)? as u64,
                folder,
            })
        }
        _ => None,
    };
    let kind = match kind_from(kind) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Attr {
        ino: FileId(r.get::<_, i64>(0)? as u64),
        kind,
        perm: r.get::<_, i64>(2)? as u16,
        nlink: r.get::<_, i64>(3)? as u32,
        uid: r.get::<_, i64>(4)? as u32,
        gid: r.get::<_, i64>(5)? as u32,
        size: r.get::<_, i64>(6)? as u64,
        rdev: r.get::<_, i64>(7)? as u32,
        atime: Timestamp(r.get(8)?),
        mtime: Timestamp(r.get(9)?),
        ctime: Timestamp(r.get(10)?),
        crtime: Timestamp(r.get(11)?),
        layout,
    }))
}

pub(crate) fn read_attr(conn: &Connection, ino: FileId) -> Result<Option<Attr>, MetaError> {
    let q = format!("SELECT {ATTR_COLUMNS} FROM inodes WHERE ino = ?1");
    conn.prepare_cached(&q)
        .and_then(|mut s| s.query_row([ino.0 as i64], attr_row).optional())
        .map_err(sql("read inode"))?
        .transpose()
}

fn location_row(r: &Row<'_>) -> rusqlite::Result<Result<ChunkLocation, MetaError>> {
    let key = ChunkKey {
        file: FileId(r.get::<_, i64>(0)? as u64),
        stripe: r.get::<_, i64>(1)? as u64,
        index: r.get::<_, i64>(2)? as u16,
        generation: r.get::<_, i64>(3)? as u64,
    };
    let folder: Option<String> = r.get(6)?;
    let folder = match folder.map(ChunkFolder::try_from) {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Ok(Err(MetaError::Corrupt(e))),
        None => {
            return Ok(Err(MetaError::Corrupt(format!(
                "file {} has chunks but no chunk folder",
                key.file
            ))))
        }
    };
    Ok(Ok(ChunkLocation {
        node: NodeId(r.get(4)?),
        disk: DiskId(r.get(5)?),
        folder,
        key,
    }))
}

// The queries of a file's stripes and chunks name a range of stripe indices in the key
// (`ino = ?1 AND idx >= ?2 AND idx < ?3`); the whole file is the range `ALL_STRIPES`. A
// statement that tested an optional index (`?2 IS NULL OR idx = ?2`) could not use the
// key's second column, so SQLite visited every row of the file to find one stripe: every
// stripe read and write of a file of n stripes cost O(n).

/// Every stripe index of a file.
pub(crate) const ALL_STRIPES: std::ops::Range<u64> = 0..u64::MAX;

/// A range of stripes' chunk locations.
pub(crate) const STRIPE_CHUNK_LOCATIONS: &str =
    "SELECT c.ino, c.stripe, c.chunk, c.generation, c.node, c.disk, i.folder
     FROM chunks c JOIN inodes i ON i.ino = c.ino
     WHERE c.ino = ?1 AND c.stripe >= ?2 AND c.stripe < ?3 ORDER BY c.stripe, c.chunk";
/// A range of stripes.
pub(crate) const STRIPE_RANGE: &str =
    "SELECT s.idx, s.generation, s.len, s.crc, s.k, s.m, d.data FROM stripes s
     LEFT JOIN stripe_data d ON d.ino = s.ino AND d.idx = s.idx
     WHERE s.ino = ?1 AND s.idx >= ?2 AND s.idx < ?3 ORDER BY s.idx";
/// A range of stripes' chunks.
pub(crate) const STRIPE_CHUNKS: &str =
    "SELECT stripe, chunk, node, disk, size, crc, state FROM chunks
     WHERE ino = ?1 AND stripe >= ?2 AND stripe < ?3 ORDER BY stripe, chunk";

/// Runs a query of the stripes of `ino` whose index is in `range`.
fn query_stripes<T>(
    conn: &Connection,
    sql_text: &str,
    ino: FileId,
    range: std::ops::Range<u64>,
    what: &'static str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, MetaError> {
    // Indices are stored as SQLite integers (i64); past i64::MAX there are none.
    let int = |i: u64| i64::try_from(i).unwrap_or(i64::MAX);
    conn.prepare_cached(sql_text)
        .and_then(|mut stmt| {
            stmt.query_map(params![int(ino.0), int(range.start), int(range.end)], row)?
                .collect()
        })
        .map_err(sql(what))
}

/// The chunk locations of a file's stripes whose index is in `range`.
pub(crate) fn chunk_locations(
    conn: &Connection,
    ino: FileId,
    range: std::ops::Range<u64>,
) -> Result<Vec<ChunkLocation>, MetaError> {
    query_stripes(
        conn,
        STRIPE_CHUNK_LOCATIONS,
        ino,
        range,
        "list chunks of file",
        location_row,
    )?
    .into_iter()
    .collect()
}

/// A file's stripes whose index is in `range`, with their chunks.
pub(crate) fn read_stripes(
    conn: &Connection,
    ino: FileId,
    range: std::ops::Range<u64>,
) -> Result<Vec<StripeRecord>, MetaError> {
    let mut stripes: Vec<StripeRecord> = query_stripes(
        conn,
        STRIPE_RANGE,
        ino,
        range.clone(),
        "list stripes",
        |r| {
            Ok(StripeRecord {
                index: r.get::<_, i64>(0)? as u64,
                generation: r.get::<_, i64>(1)? as u64,
                len: r.get::<_, i64>(2)? as u64,
                crc: r.get::<_, i64>(3)? as u32,
                k: r.get::<_, i64>(4)? as u16,
                m: r.get::<_, i64>(5)? as u16,
                chunks: Vec::new(),
                inline: r.get(6)?,
            })
        },
    )?;
    let rows = query_stripes(conn, STRIPE_CHUNKS, ino, range, "list chunks", |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            ChunkRecord {
                index: r.get::<_, i64>(1)? as u16,
                node: NodeId(r.get(2)?),
                disk: DiskId(r.get(3)?),
                size: r.get::<_, i64>(4)? as u64,
                crc: r.get::<_, i64>(5)? as u32,
                state: ChunkState::from_code(r.get(6)?),
            },
        ))
    })?;
    let mut i = 0;
    for (stripe, chunk) in rows {
        while i < stripes.len() && stripes[i].index < stripe {
            i += 1;
        }
        match stripes.get_mut(i) {
            Some(s) if s.index == stripe => s.chunks.push(chunk),
            _ => {
                return Err(MetaError::Corrupt(format!(
                    "chunk of file {ino} stripe {stripe} has no stripe"
                )))
            }
        }
    }
    Ok(stripes)
}

pub(crate) fn path_of(conn: &Connection, ino: FileId) -> Result<Option<String>, MetaError> {
    let mut parts = Vec::new();
    let mut cur = ino;
    while cur != FileId::ROOT {
        let row: Option<(i64, String)> = conn
            .prepare_cached(
                "SELECT parent, name FROM dentries WHERE ino = ?1 ORDER BY parent, name LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([cur.0 as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql("find path"))?;
        let Some((parent, name)) = row else {
            return Ok(None);
        };
        parts.push(name);
        cur = FileId(parent as u64);
        if parts.len() > 4096 {
            return Err(MetaError::Corrupt(format!(
                "inode {ino} is in a directory cycle"
            )));
        }
    }
    parts.reverse();
    Ok(Some(format!("/{}", parts.join("/"))))
}

debug_by_name!(MetaStore);
