//! The Raft log, the vote and the log pointers in their own SQLite file.

use super::error::{blocking, json, sql, RaftStoreError};
use super::types::{Entry, LogId, LogState, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The log database's schema version (`PRAGMA user_version`).
const LOG_SCHEMA_VERSION: u32 = 1;

const LOG_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS log (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        log_id TEXT NOT NULL,
        entry TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS store (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
";

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log store over SQLite (`raft-log.db`, WAL, `synchronous = FULL`): entries by
/// index (serde_json), the vote, the committed log id (written with the next append, see
/// `save_committed`) and the last purged log id.
///
/// Cheap to clone: clones share one connection, which also makes a clone the log reader
/// openraft's replication tasks use. The newest entries are also kept in memory (up to
/// 1,024 entries or 16 MiB), so a master's replication reads what it just appended without
/// a blocking task, a query and a decode per follower per op.
#[derive(Clone)]
pub struct SqliteLogStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The committed log id openraft saved last, when the database does not hold it yet: it
    /// is written in the transaction of the next append (or purge, or when the store
    /// closes), not in one of its own. See `save_committed`.
    committed: Mutex<Option<Option<LogId>>>,
    /// The newest entries as the database holds them; changed only while `conn` is locked.
    tail: Mutex<Tail>,
}

/// How many of the newest entries a [`Tail`] keeps at most.
const TAIL_ENTRIES: usize = 1024;
/// How many bytes of encoded entries a [`Tail`] keeps at most.
const TAIL_BYTES: usize = 16 << 20;

/// The newest entries of the log, in memory: a contiguous run of indexes that always ends
/// at the database's last entry (every change to the database's log changes it the same way,
/// under the same lock), or nothing. A read that starts inside it is answered from it; any
/// other goes to the database.
#[derive(Default)]
struct Tail {
    /// The entries with the length of their encoding, by ascending index, without gaps.
    entries: VecDeque<(Entry, usize)>,
    /// The sum of the encoded lengths.
    bytes: usize,
}

impl Tail {
    /// `entries` were written (`INSERT OR REPLACE`) in one transaction. `db_last` tells the
    /// database's last index after it, asked only when the tail is empty (it then begins
    /// with these entries if they end the database's log, and stays empty otherwise).
    fn appended(
        &mut self,
        entries: Vec<(Entry, usize)>,
        db_last: impl FnOnce() -> Result<Option<u64>, RaftStoreError>,
    ) -> Result<(), RaftStoreError> {
        if self.entries.is_empty() {
            let contiguous = entries
                .windows(2)
                .all(|w| w[1].0.log_id.index == w[0].0.log_id.index + 1);
            let last = entries.last().map(|(e, _)| e.log_id.index);
            if last.is_none() || !contiguous || db_last()? != last {
                return Ok(());
            }
        }
        for (entry, len) in entries {
            let index = entry.log_id.index;
            let (Some((first, _)), Some((last, _))) = (self.entries.front(), self.entries.back())
            else {
                self.bytes += len;
                self.entries.push_back((entry, len));
                continue;
            };
            let (first, last) = (first.log_id.index, last.log_id.index);
            if index < first {
                // a row before the tail: the tail still mirrors the log's end
            } else if index <= last {
                // one row replaced in place, as INSERT OR REPLACE does
                let slot = &mut self.entries[(index - first) as usize];
                self.bytes = self.bytes - slot.1 + len;
                *slot = (entry, len);
            } else {
                if index != last + 1 {
                    // past the log's end with a gap: the log now ends here
                    self.clear();
                }
                self.bytes += len;
                self.entries.push_back((entry, len));
            }
        }
        while self.entries.len() > TAIL_ENTRIES || self.bytes > TAIL_BYTES {
            self.pop_front();
        }
        Ok(())
    }

    /// The entries from `index` on were removed.
    fn truncated(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= index)
        {
            let (_, len) = self.entries.pop_back().expect("a last entry");
            self.bytes -= len;
        }
    }

    /// The entries up to `index` were removed.
    fn purged(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= index)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, len)) = self.entries.pop_front() {
            self.bytes -= len;
        }
    }

    fn clear(&mut self) {
        *self = Tail::default();
    }

    /// The entries from `lo` to `hi` (inclusive) the database holds, when the tail begins at
    /// or before `lo`; `None` when only the database can tell.
    fn read(&self, lo: u64, hi: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let skip = usize::try_from(lo.checked_sub(first)?).ok()?;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take_while(|(e, _)| e.log_id.index <= hi)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

impl SqliteLogStore {
    /// Opens (creating if needed) the log database at `path`.
    pub fn open(path: &Path) -> Result<SqliteLogStore, RaftStoreError> {
        let conn = Connection::open(path).map_err(sql("open"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("set synchronous"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("set busy timeout"))?;
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql("read schema version"))?;
        if version > LOG_SCHEMA_VERSION {
            return Err(RaftStoreError::LogSchema {
                found: version,
                supported: LOG_SCHEMA_VERSION,
            });
        }
        conn.execute_batch(LOG_SCHEMA)
            .map_err(sql("create tables"))?;
        conn.pragma_update(None, "user_version", LOG_SCHEMA_VERSION)
            .map_err(sql("record schema version"))?;
        Ok(SqliteLogStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                conn: Mutex::new(conn),
                committed: Mutex::new(None),
                tail: Mutex::default(),
            }),
        })
    }

    /// The log database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The last purged and the committed log ids, read directly (before Raft starts).
    pub fn purged_and_committed(&self) -> Result<(Option<LogId>, Option<LogId>), RaftStoreError> {
        let conn = self.inner.lock();
        let purged = read_value(&conn, LAST_PURGED, "read last purged log id")?;
        let committed = match self.inner.pending_committed() {
            Some(pending) => pending,
            None => {
                read_value::<Option<LogId>>(&conn, COMMITTED, "read committed log id")?.flatten()
            }
        };
        Ok((purged, committed))
    }

    /// The id of the last entry in the log (or of the last purged one), read directly: what
    /// a pre-vote compares (see [`crate::cluster::PreVote`]).
    pub fn last_log_id(&self) -> Result<Option<LogId>, RaftStoreError> {
        Ok(log_state(&self.inner.lock())?.last_log_id)
    }

    /// The ids of the entries this log holds up to its committed one, read directly (for
    /// tests that compare nodes' logs).
    #[cfg(test)]
    pub(crate) fn committed_log_ids(&self) -> Result<Vec<LogId>, RaftStoreError> {
        let (_, committed) = self.purged_and_committed()?;
        let conn = self.inner.lock();
        let Some(committed) = committed else {
            return Ok(Vec::new());
        };
        let mut stmt = conn
            .prepare("SELECT log_id FROM log WHERE idx <= ?1 ORDER BY idx")
            .map_err(sql("read log ids"))?;
        let rows = stmt
            .query_map(params![sql_index(committed.index)], |r| {
                r.get::<_, String>(0)
            })
            .map_err(sql("read log ids"))?;
        rows.map(|row| {
            let text = row.map_err(sql("read log ids"))?;
            serde_json::from_str::<LogId>(&text).map_err(json("decode a log id"))
        })
        .collect()
    }

    /// Whether this log holds a vote but no entry (none kept, none purged): its entries
    /// were lost or forgotten, and this node may once have acknowledged entries it no longer
    /// holds. Read directly, before Raft starts.
    pub fn has_vote_but_no_log(&self) -> Result<bool, RaftStoreError> {
        let conn = self.inner.lock();
        let vote: Option<Vote> = read_value(&conn, VOTE, "read vote")?;
        let state = log_state(&conn)?;
        Ok(vote.is_some_and(|v| v.leader_id().term > 0) && state.last_log_id.is_none())
    }

    /// Forgets every entry and the purged and committed log ids, keeping the vote: the log
    /// of a node whose state machine fell behind what the log still holds, which then
    /// catches up from the master's snapshot (see [`super::open_storage`]).
    pub fn forget_entries(&self) -> Result<(), RaftStoreError> {
        let mut conn = self.inner.lock();
        self.inner.take_committed();
        self.inner.tail().clear();
        let tx = conn
            .transaction()
            .map_err(sql("begin forgetting the log"))?;
        tx.execute("DELETE FROM log", [])
            .map_err(sql("forget log entries"))?;
        tx.execute(
            "DELETE FROM store WHERE key IN (?1, ?2)",
            params![COMMITTED, LAST_PURGED],
        )
        .map_err(sql("forget log pointers"))?;
        tx.commit().map_err(sql("commit forgetting the log"))
    }

    /// Runs `f` on the connection in a blocking task.
    async fn with_conn<T, F>(&self, action: &'static str, f: F) -> Result<T, RaftStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, RaftStoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(action, move || f(&mut inner.lock())).await
    }

    /// Runs `f` on the connection in a blocking task, with the store: a change to the log
    /// locks the [`Tail`] (`Inner::tail`) after its transaction, to change it the same way
    /// while the connection is still locked. Reads of the tail wait for that step only, not
    /// for the transaction and its fsync.
    async fn changing_log<T, F>(&self, action: &'static str, f: F) -> Result<T, RaftStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, RaftStoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(action, move || f(&mut inner.lock(), &inner)).await
    }

    /// Whether a read starting at `lo` is answered from the tail (for tests).
    #[cfg(test)]
    pub(crate) fn tail_answers(&self, lo: u64) -> bool {
        self.inner.tail().read(lo, lo).is_some()
    }

    /// Entries from `lo` to `hi` read from the database alone, past the tail (for tests
    /// that compare the two).
    #[cfg(test)]
    pub(crate) fn read_from_database(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<Entry>, RaftStoreError> {
        read_entries(&self.inner.lock(), sql_index(lo), sql_index(hi))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Option<Option<LogId>>> {
        self.committed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The saved committed log id the database does not hold yet, taken to be written.
    fn take_committed(&self) -> Option<Option<LogId>> {
        self.pending().take()
    }

    /// The saved committed log id the database does not hold yet.
    fn pending_committed(&self) -> Option<Option<LogId>> {
        *self.pending()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // a clean close keeps the last committed id (a crash may lose it: see save_committed)
        if let Some(committed) = self.take_committed() {
            if let Err(e) =
                write_value(&self.lock(), COMMITTED, &committed, "save committed log id")
            {
                tracing::warn!("the Raft log's committed id was not saved at close: {e}");
            }
        }
    }
}

fn read_value<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, RaftStoreError> {
    let text: Option<String> = conn
        .query_row("SELECT value FROM store WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql(what))?;
    text.map(|t| serde_json::from_str(&t).map_err(json(what)))
        .transpose()
}

fn write_value<T: serde::Serialize>(
    conn: &Connection,
    key: &str,
    value: &T,
    what: &'static str,
) -> Result<(), RaftStoreError> {
    let text = serde_json::to_string(value).map_err(json(what))?;
    conn.execute(
        "INSERT INTO store (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, text],
    )
    .map(drop)
    .map_err(sql(what))
}

/// A log index as SQLite's signed integer (indexes beyond `i64::MAX` do not occur).
fn sql_index(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

/// The inclusive SQL bounds of a range of log indexes; `None` when it is empty.
fn sql_bounds(range: &impl RangeBounds<u64>) -> Option<(i64, i64)> {
    let lo = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (lo <= hi).then(|| (sql_index(lo), sql_index(hi)))
}

fn read_entries(conn: &Connection, lo: i64, hi: i64) -> Result<Vec<Entry>, RaftStoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx")
        .map_err(sql("read log entries"))?;
    let rows = stmt
        .query_map(params![lo, hi], |r| r.get::<_, String>(0))
        .map_err(sql("read log entries"))?;
    rows.map(|row| {
        let text = row.map_err(sql("read log entries"))?;
        serde_json::from_str(&text).map_err(json("decode log entry"))
    })
    .collect()
}

fn log_state(conn: &Connection) -> Result<LogState, RaftStoreError> {
    let last_purged: Option<LogId> = read_value(conn, LAST_PURGED, "read last purged log id")?;
    let last: Option<String> = conn
        .query_row(
            "SELECT log_id FROM log ORDER BY idx DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("read last log id"))?;
    let last = last
        .map(|t| serde_json::from_str::<LogId>(&t).map_err(json("decode last log id")))
        .transpose()?;
    Ok(LogState {
        last_log_id: last.or(last_purged),
        last_purged_log_id: last_purged,
    })
}

/// Appends `entries` and, in the same transaction, the committed log id when one is given;
/// returns the length of each entry's encoding.
fn append_entries(
    conn: &mut Connection,
    entries: &[Entry],
    committed: Option<Option<LogId>>,
) -> Result<Vec<usize>, RaftStoreError> {
    let mut lens = Vec::with_capacity(entries.len());
    let tx = conn.transaction().map_err(sql("begin append"))?;
    if let Some(committed) = committed {
        write_value(&tx, COMMITTED, &committed, "save committed log id")?;
    }
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO log (idx, term, log_id, entry) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql("append log entries"))?;
        for entry in entries {
            let log_id = serde_json::to_string(&entry.log_id).map_err(json("encode log id"))?;
            let text = serde_json::to_string(entry).map_err(json("encode log entry"))?;
            lens.push(text.len());
            stmt.execute(params![
                sql_index(entry.log_id.index),
                sql_index(entry.log_id.leader_id.term),
                log_id,
                text
            ])
            .map_err(sql("append log entries"))?;
        }
    }
    tx.commit().map_err(sql("commit appended entries"))?;
    Ok(lens)
}

fn logs_err(verb: ErrorVerb) -> impl FnOnce(RaftStoreError) -> StorageError {
    move |e| e.into_storage(ErrorSubject::Logs, verb)
}

fn vote_err(verb: ErrorVerb) -> impl FnOnce(RaftStoreError) -> StorageError {
    move |e| e.into_storage(ErrorSubject::Vote, verb)
}

impl RaftLogReader<TypeConfig> for SqliteLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((lo, hi)) = sql_bounds(&range) else {
            return Ok(Vec::new());
        };
        // bounds as sql_bounds made them: not negative
        if let Some(entries) = self.inner.tail().read(lo as u64, hi as u64) {
            return Ok(entries);
        }
        self.with_conn("read log entries", move |c| read_entries(c, lo, hi))
            .await
            .map_err(logs_err(ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for SqliteLogStore {
    type LogReader = SqliteLogStore;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        self.with_conn("read log state", |c| log_state(c))
            .await
            .map_err(logs_err(ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.with_conn("save vote", move |c| {
            write_value(c, VOTE, &vote, "save vote")
        })
        .await
        .map_err(vote_err(ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.with_conn("read vote", |c| read_value(c, VOTE, "read vote"))
            .await
            .map_err(vote_err(ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory and written with the next append (or purge, or at close), not in a
        // transaction and an fsync of its own: every apply is durable in the state machine
        // before it returns, so a committed id lost in a crash only means that entries the
        // state machine already holds are not re-applied at start (openraft asks for no
        // more). One blocking task, one transaction and one fsync less per metadata op on
        // every node.
        *self.inner.pending() = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(pending) = self.inner.pending_committed() {
            return Ok(pending);
        }
        self.with_conn("read committed log id", |c| {
            Ok(read_value::<Option<LogId>>(c, COMMITTED, "read committed log id")?.flatten())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let committed = self.inner.take_committed();
        let result = self
            .changing_log("append log entries", move |c, inner| {
                let lens = append_entries(c, &entries, committed)?;
                inner
                    .tail()
                    .appended(entries.into_iter().zip(lens).collect(), || {
                        Ok(log_state(c)?.last_log_id.map(|l| l.index))
                    })
            })
            .await;
        match result {
            Ok(()) => {
                // committed with synchronous = FULL: durable now
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.changing_log("truncate log", move |c, inner| {
            c.execute("DELETE FROM log WHERE idx >= ?1", [sql_index(log_id.index)])
                .map_err(sql("truncate log"))?;
            inner.tail().truncated(log_id.index);
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let committed = self.inner.take_committed();
        self.changing_log("purge log", move |c, inner| {
            let tx = c.transaction().map_err(sql("begin purge"))?;
            if let Some(committed) = committed {
                write_value(&tx, COMMITTED, &committed, "save committed log id")?;
            }
            write_value(&tx, LAST_PURGED, &log_id, "save last purged log id")?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [sql_index(log_id.index)])
                .map_err(sql("purge log"))?;
            tx.commit().map_err(sql("commit purge"))?;
            inner.tail().purged(log_id.index);
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}

debug_by_name!(SqliteLogStore);
