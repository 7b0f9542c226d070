//! The cluster's file locks, as the master keeps them: pure logic over a clock the caller
//! passes in, so every rule is tested without a network.
//!
//! Two kinds of lock, both held by a client *session* (one per mount) and both leases:
//!
//! * **Open locks** (the design's read/write locks): opening a file for write takes its
//!   write lock, exclusive of other sessions' writers and, when read locks are on, of their
//!   readers; opening for read takes a read lock, which conflicts with other sessions'
//!   writers only when read locks are on. Read opens are recorded either way (they tell
//!   the garbage worker a file is still open).
//! * **Range locks** (`fcntl` record locks, and `flock` as a lock on the whole file): shared
//!   or exclusive byte ranges per lock owner, split and merged as POSIX says.
//!
//! A session lives while its client renews it ([`LockTable::keep`], one call for all its
//! locks); one lease after its last renewal it and its locks are gone. A new master starts
//! with an empty table and a *grace period* of one lease: clients reclaim what they hold
//! through their renewals, and nothing new is granted until the grace ends, so no lock the
//! old master granted can be granted again to someone else.

#[cfg(feature = "node")]
mod service;

#[cfg(feature = "node")]
pub use service::{LockAnswer, LockAuthority, LockCall, LockOp, LockService, SoloAuthority};

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A client session's id (random, chosen by the client).
pub type SessionId = String;

/// Which lock a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockKind {
    /// Open for read.
    OpenRead,
    /// Open for write.
    OpenWrite,
    /// A shared byte range.
    RangeRead,
    /// An exclusive byte range.
    RangeWrite,
}

/// A held lock, as a client lists it when it renews (reclaims) its session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Held {
    /// The file.
    pub ino: u64,
    /// The lock.
    pub kind: LockKind,
    /// The lock owner (range locks; 0 for open locks).
    pub owner: u64,
    /// First byte (range locks).
    pub start: u64,
    /// Last byte, inclusive (range locks; `u64::MAX`: to the end).
    pub end: u64,
    /// The process that took it (range locks, for `F_GETLK`).
    pub pid: u32,
}

impl Held {
    /// The open lock of `ino` (`OpenRead` or `OpenWrite`).
    pub fn open(ino: u64, kind: LockKind) -> Held {
        Held {
            ino,
            kind,
            owner: 0,
            start: 0,
            end: u64::MAX,
            pid: 0,
        }
    }

    /// A byte-range lock of `owner`: exclusive when `write`, else shared.
    pub fn range(ino: u64, owner: u64, start: u64, end: u64, write: bool, pid: u32) -> Held {
        Held {
            ino,
            kind: if write {
                LockKind::RangeWrite
            } else {
                LockKind::RangeRead
            },
            owner,
            start,
            end,
            pid,
        }
    }
}

/// A range lock in the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeLock {
    /// Its session.
    pub session: SessionId,
    /// Its owner within the session.
    pub owner: u64,
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive.
    pub end: u64,
    /// Exclusive.
    pub write: bool,
    /// The process that took it.
    pub pid: u32,
}

/// Why a lock was not granted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Denied {
    /// Another session holds a conflicting lock: its client's name.
    Conflict {
        /// The client holding it.
        holder: String,
        /// The conflicting range lock, for a range request.
        range: Option<RangeLock>,
    },
    /// A new master is still taking back the locks the old one granted.
    Grace {
        /// Time left.
        left: Duration,
    },
    /// The session is unknown or expired: the client must renew it first.
    NoSession,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Conflict { holder, .. } => write!(f, "locked by {holder}"),
            Denied::Grace { left } => write!(
                f,
                "a new master is taking back the cluster's locks for {} ms more",
                left.as_millis()
            ),
            Denied::NoSession => write!(f, "the lock session is unknown or expired"),
        }
    }
}

#[derive(Debug)]
struct Session {
    client: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct FileLocks {
    /// Open locks: session → (readers, writer).
    opens: HashMap<SessionId, (bool, bool)>,
    ranges: Vec<RangeLock>,
}

impl FileLocks {
    fn is_empty(&self) -> bool {
        self.opens.is_empty() && self.ranges.is_empty()
    }
}

/// The lock table of the master.
#[derive(Debug)]
pub struct LockTable {
    lease: Duration,
    read_locks: bool,
    grace_until: Instant,
    /// Recorded sessions not yet back since the table started.
    expected: HashSet<SessionId>,
    /// Sessions that expired (or never came back), to forget in the metadata.
    ended: Vec<SessionId>,
    sessions: HashMap<SessionId, Session>,
    files: HashMap<u64, FileLocks>,
}

impl LockTable {
    /// An empty table whose grace period starts at `now`: it lasts one lease, or until
    /// every session in `expected` (those that may hold locks an earlier master granted)
    /// has renewed.
    pub fn new(
        now: Instant,
        lease: Duration,
        read_locks: bool,
        expected: impl IntoIterator<Item = SessionId>,
    ) -> LockTable {
        LockTable {
            lease,
            read_locks,
            grace_until: now + lease,
            expected: expected.into_iter().collect(),
            ended: Vec::new(),
            sessions: HashMap::new(),
            files: HashMap::new(),
        }
    }

    /// Sessions that expired, or were expected and did not come back within the grace
    /// period, since the last call.
    pub fn take_ended(&mut self, now: Instant) -> Vec<SessionId> {
        self.expire(now);
        if !self.expected.is_empty() && now >= self.grace_until {
            self.ended.extend(self.expected.drain());
        }
        std::mem::take(&mut self.ended)
    }

    /// The lease.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The time left of the grace period, while it runs.
    pub fn grace_left(&self, now: Instant) -> Option<Duration> {
        self.in_grace(now).then(|| self.grace_until - now)
    }

    /// True while the grace period runs.
    pub fn in_grace(&self, now: Instant) -> bool {
        now < self.grace_until && !self.expected.is_empty()
    }

    /// Renews `session` (creating it) until one lease from `now`, and during the grace
    /// period takes back the locks it lists. Returns the listed locks it does not hold (lost
    /// with an expired session, or taken by another session since).
    pub fn keep(&mut self, now: Instant, session: &str, client: &str, held: &[Held]) -> Vec<Held> {
        self.expire(now);
        self.sessions.insert(
            session.to_owned(),
            Session {
                client: client.to_owned(),
                expires: now + self.lease,
            },
        );
        let reclaim = self.in_grace(now);
        self.expected.remove(session);
        let mut lost = Vec::new();
        for h in held {
            if self.holds(session, h) || (reclaim && self.grant(session, h).is_ok()) {
                continue;
            }
            lost.push(h.clone());
        }
        lost
    }

    fn holds(&self, session: &str, h: &Held) -> bool {
        let Some(f) = self.files.get(&h.ino) else {
            return false;
        };
        match h.kind {
            LockKind::OpenRead => f.opens.get(session).is_some_and(|o| o.0),
            LockKind::OpenWrite => f.opens.get(session).is_some_and(|o| o.1),
            LockKind::RangeRead | LockKind::RangeWrite => {
                let write = h.kind == LockKind::RangeWrite;
                // covered by this owner's locks of the same kind
                let mut mine: Vec<&RangeLock> = f
                    .ranges
                    .iter()
                    .filter(|r| r.session == session && r.owner == h.owner && r.write == write)
                    .collect();
                mine.sort_by_key(|r| r.start);
                let mut at = h.start;
                for r in mine {
                    if r.start > at {
                        break;
                    }
                    if r.end >= h.end {
                        return true;
                    }
                    at = at.max(r.end.saturating_add(1));
                }
                false
            }
        }
    }

    /// Forgets sessions whose lease ran out, with their locks.
    pub fn expire(&mut self, now: Instant) {
        let gone: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.drop_session(&id);
            self.ended.push(id);
        }
    }

    /// Removes `session` and every lock it holds (a client that stopped cleanly).
    pub fn drop_session(&mut self, session: &str) {
        self.sessions.remove(session);
        self.files.retain(|_, f| {
            f.opens.remove(session);
            f.ranges.retain(|r| r.session != session);
            !f.is_empty()
        });
    }

    fn client(&self, session: &str) -> String {
        self.sessions
            .get(session)
            .map(|s| s.client.clone())
            .unwrap_or_else(|| format!("session {session}"))
    }

    fn check_session(&mut self, now: Instant, session: &str) -> Result<(), Denied> {
        self.expire(now);
        if !self.sessions.contains_key(session) {
            return Err(Denied::NoSession);
        }
        if self.in_grace(now) {
            return Err(Denied::Grace {
                left: self.grace_until - now,
            });
        }
        Ok(())
    }

    /// Takes lock `h` for `session` (open locks: read or write on the file; range locks:
    /// the range, replacing this owner's locks on it).
    pub fn acquire(&mut self, now: Instant, session: &str, h: &Held) -> Result<(), Denied> {
        self.check_session(now, session)?;
        self.grant(session, h)
    }

    fn grant(&mut self, session: &str, h: &Held) -> Result<(), Denied> {
        if let Some(conflict) = self.conflict(session, h) {
            return Err(conflict);
        }
        let f = self.files.entry(h.ino).or_default();
        match h.kind {
            LockKind::OpenRead => f.opens.entry(session.to_owned()).or_default().0 = true,
            LockKind::OpenWrite => f.opens.entry(session.to_owned()).or_default().1 = true,
            LockKind::RangeRead | LockKind::RangeWrite => {
                Self::unlock_range(f, session, h.owner, h.start, h.end);
                f.ranges.push(RangeLock {
                    session: session.to_owned(),
                    owner: h.owner,
                    start: h.start,
                    end: h.end,
                    write: h.kind == LockKind::RangeWrite,
                    pid: h.pid,
                });
                Self::merge(f, session, h.owner);
            }
        }
        Ok(())
    }

    /// The lock of another session that `h` would conflict with.
    pub fn conflict(&self, session: &str, h: &Held) -> Option<Denied> {
        let f = self.files.get(&h.ino)?;
        match h.kind {
            LockKind::OpenRead | LockKind::OpenWrite => {
                let write = h.kind == LockKind::OpenWrite;
                // a writer excludes other writers, and readers when read locks are on; a
                // reader is excluded by other writers only when read locks are on
                f.opens
                    .iter()
                    .filter(|(s, _)| s.as_str() != session)
                    .find(|(_, &(r, w))| {
                        if write {
                            w || (self.read_locks && r)
                        } else {
                            self.read_locks && w
                        }
                    })
                    .map(|(s, _)| Denied::Conflict {
                        holder: self.client(s),
                        range: None,
                    })
            }
            LockKind::RangeRead | LockKind::RangeWrite => {
                let write = h.kind == LockKind::RangeWrite;
                f.ranges
                    .iter()
                    .find(|r| {
                        (r.session != session || r.owner != h.owner)
                            && (r.write || write)
                            && r.start <= h.end
                            && h.start <= r.end
                    })
                    .map(|r| Denied::Conflict {
                        holder: self.client(&r.session),
                        range: Some(r.clone()),
                    })
            }
        }
    }

    /// Drops `session`'s open lock of `kind` on `ino` (the last such open closed).
    pub fn close(&mut self, session: &str, ino: u64, kind: LockKind) {
        if let Some(f) = self.files.get_mut(&ino) {
            if let Some(o) = f.opens.get_mut(session) {
                match kind {
                    LockKind::OpenRead => o.0 = false,
                    LockKind::OpenWrite => o.1 = false,
                    _ => {}
                }
                if !o.0 && !o.1 {
                    f.opens.remove(session);
                }
            }
            if f.is_empty() {
                self.files.remove(&ino);
            }
        }
    }

    /// Unlocks `start..=end` of `owner`'s range locks on `ino` (a range may split in two).
    pub fn unlock(&mut self, session: &str, ino: u64, owner: u64, start: u64, end: u64) {
        if let Some(f) = self.files.get_mut(&ino) {
            Self::unlock_range(f, session, owner, start, end);
            if f.is_empty() {
                self.files.remove(&ino);
            }
        }
    }

    /// Drops every range lock of `owner` on `ino` (the owner closed the file).
    pub fn release_owner(&mut self, session: &str, ino: u64, owner: u64) {
        self.unlock(session, ino, owner, 0, u64::MAX);
    }

    fn unlock_range(f: &mut FileLocks, session: &str, owner: u64, start: u64, end: u64) {
        let mut kept = Vec::with_capacity(f.ranges.len() + 1);
        for r in f.ranges.drain(..) {
            if r.session != session || r.owner != owner || r.end < start || r.start > end {
                kept.push(r);
                continue;
            }
            if r.start < start {
                kept.push(RangeLock {
                    end: start - 1,
                    ..r.clone()
                });
            }
            if r.end > end {
                kept.push(RangeLock {
                    start: end + 1,
                    ..r
                });
            }
        }
        f.ranges = kept;
    }

    /// Joins this owner's adjacent or overlapping ranges of the same kind.
    fn merge(f: &mut FileLocks, session: &str, owner: u64) {
        let (mut mine, others): (Vec<RangeLock>, Vec<RangeLock>) = f
            .ranges
            .drain(..)
            .partition(|r| r.session == session && r.owner == owner);
        mine.sort_by_key(|r| (r.write, r.start));
        let mut merged: Vec<RangeLock> = Vec::with_capacity(mine.len());
        for r in mine {
            match merged.last_mut() {
                Some(last) if last.write == r.write && r.start <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end);
                }
                _ => merged.push(r),
            }
        }
        f.ranges = others;
        f.ranges.extend(merged);
    }

    /// True when some live session has `ino` open (read or write).
    pub fn is_open(&self, now: Instant, ino: u64) -> bool {
        self.files.get(&ino).is_some_and(|f| {
            f.opens.keys().any(|s| {
                self.sessions
                    .get(s)
                    .is_some_and(|session| session.expires > now)
            })
        })
    }

    /// Every lock `session` holds, as it would list them to renew.
    pub fn held(&self, session: &str) -> Vec<Held> {
        let mut out = Vec::new();
        for (&ino, f) in &self.files {
            if let Some(&(r, w)) = f.opens.get(session) {
                for (on, kind) in [(r, LockKind::OpenRead), (w, LockKind::OpenWrite)] {
                    if on {
                        out.push(Held::open(ino, kind));
                    }
                }
            }
            for r in f.ranges.iter().filter(|r| r.session == session) {
                out.push(Held::range(ino, r.owner, r.start, r.end, r.write, r.pid));
            }
        }
        out
    }

    /// True when `session` holds a range lock of `owner` on `ino`.
    pub fn has_ranges(&self, session: &str, ino: u64, owner: u64) -> bool {
        self.files.get(&ino).is_some_and(|f| {
            f.ranges
                .iter()
                .any(|r| r.session == session && r.owner == owner)
        })
    }

    /// Forgets `h` for `session` (a lock the master says is lost).
    pub fn forget(&mut self, session: &str, h: &Held) {
        match h.kind {
            LockKind::OpenRead | LockKind::OpenWrite => self.close(session, h.ino, h.kind),
            LockKind::RangeRead | LockKind::RangeWrite => {
                self.unlock(session, h.ino, h.owner, h.start, h.end)
            }
        }
    }

    /// How many sessions and files with locks the table holds.
    pub fn counts(&self) -> (usize, usize) {
        (self.sessions.len(), self.files.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    fn open(ino: u64, write: bool) -> Held {
        let kind = if write {
            LockKind::OpenWrite
        } else {
            LockKind::OpenRead
        };
        Held::open(ino, kind)
    }

    fn range(ino: u64, owner: u64, start: u64, end: u64, write: bool) -> Held {
        Held::range(ino, owner, start, end, write, 42)
    }

    /// A table past its grace with sessions `a` and `b`.
    fn table(read_locks: bool) -> (LockTable, Instant) {
        let t0 = Instant::now();
        let mut t = LockTable::new(t0, LEASE, read_locks, []);
        let now = t0 + LEASE;
        t.keep(now, "a", "mount A", &[]);
        t.keep(now, "b", "mount B", &[]);
        (t, now)
    }

    #[test]
    fn a_writer_excludes_other_writers_and_with_read_locks_readers() {
        let (mut t, now) = table(true);
        t.acquire(now, "a", &open(1, true)).unwrap();
        // the same session may open again, for read or write
        t.acquire(now, "a", &open(1, true)).unwrap();
        t.acquire(now, "a", &open(1, false)).unwrap();
        let e = t.acquire(now, "b", &open(1, true)).unwrap_err();
        assert_eq!(
            e,
            Denied::Conflict {
                holder: "mount A".into(),
                range: None
            }
        );
        assert!(t.acquire(now, "b", &open(1, false)).is_err());
        // another file is free
        t.acquire(now, "b", &open(2, true)).unwrap();
        // a reader keeps writers out
        t.close("a", 1, LockKind::OpenWrite);
        assert!(
            t.acquire(now, "b", &open(1, true)).is_err(),
            "a still reads"
        );
        t.close("a", 1, LockKind::OpenRead);
        t.acquire(now, "b", &open(1, true)).unwrap();
    }

    #[test]
    fn without_read_locks_readers_and_writers_ignore_each_other_but_opens_are_known() {
        let (mut t, now) = table(false);
        t.acquire(now, "a", &open(1, false)).unwrap();
        t.acquire(now, "b", &open(1, true)).unwrap();
        t.acquire(now, "a", &open(1, false)).unwrap();
        assert!(
            t.acquire(now, "a", &open(1, true)).is_err(),
            "writers still exclude writers"
        );
        assert!(t.is_open(now, 1));
        t.close("a", 1, LockKind::OpenRead);
        t.close("b", 1, LockKind::OpenWrite);
        assert!(!t.is_open(now, 1));
    }

    #[test]
    fn a_session_not_renewed_loses_its_locks_after_one_lease() {
        let (mut t, now) = table(true);
        t.acquire(now, "a", &open(1, true)).unwrap();
        t.keep(now + LEASE / 2, "b", "mount B", &[]);
        assert!(t.acquire(now + LEASE / 2, "b", &open(1, true)).is_err());
        // a renews until 1.5 leases; b renews and takes the lock after that
        t.keep(now + LEASE / 2, "a", "mount A", &[open(1, true)]);
        let later = now + LEASE + LEASE / 2;
        t.keep(later, "b", "mount B", &[]);
        t.acquire(later, "b", &open(1, true)).unwrap();
        // a comes back: its lock is reported lost
        let lost = t.keep(later, "a", "mount A", &[open(1, true)]);
        assert_eq!(lost, vec![open(1, true)]);
        assert_eq!(
            t.acquire(later, "zz", &open(3, true)),
            Err(Denied::NoSession)
        );
    }

    #[test]
    fn a_new_master_grants_nothing_new_until_the_old_locks_are_reclaimed() {
        let t0 = Instant::now();
        let mut t = LockTable::new(t0, LEASE, true, ["a".to_string(), "c".to_string()]);
        // b arrives first and asks for a new lock during the grace: refused
        t.keep(t0, "b", "mount B", &[]);
        assert!(matches!(
            t.acquire(t0, "b", &open(1, true)),
            Err(Denied::Grace { .. })
        ));
        // a reclaims what the old master granted it
        let lost = t.keep(
            t0 + Duration::from_secs(3),
            "a",
            "mount A",
            &[open(1, true)],
        );
        assert!(lost.is_empty());
        // c does not come back: the grace runs its whole lease, then c is ended
        assert!(t.in_grace(t0 + Duration::from_secs(3)));
        assert!(t.take_ended(t0 + Duration::from_secs(3)).is_empty());
        let after = t0 + LEASE;
        // (b, renewed last at t0, expired too)
        let mut ended = t.take_ended(after);
        ended.sort();
        assert_eq!(ended, vec!["b".to_string(), "c".to_string()]);
        t.keep(after, "b", "mount B", &[]);
        assert!(t.acquire(after, "b", &open(1, true)).is_err());
        t.acquire(after, "b", &open(2, true)).unwrap();
    }

    #[test]
    fn the_grace_ends_as_soon_as_every_recorded_session_is_back() {
        let t0 = Instant::now();
        let mut t = LockTable::new(t0, LEASE, true, ["a".to_string()]);
        t.keep(t0, "b", "mount B", &[]);
        assert!(t.in_grace(t0));
        t.keep(t0 + Duration::from_millis(10), "a", "mount A", &[]);
        t.acquire(t0 + Duration::from_millis(20), "b", &open(1, true))
            .unwrap();
        // a table with nothing recorded has no grace at all
        let mut fresh = LockTable::new(t0, LEASE, true, []);
        fresh.keep(t0, "b", "mount B", &[]);
        fresh.acquire(t0, "b", &open(1, true)).unwrap();
    }

    #[test]
    fn range_locks_split_merge_and_conflict_as_posix_says() {
        let (mut t, now) = table(true);
        t.acquire(now, "a", &range(1, 7, 0, 99, true)).unwrap();
        // another owner of the same session conflicts too (different processes)
        assert!(t.acquire(now, "a", &range(1, 8, 50, 60, false)).is_err());
        let e = t
            .acquire(now, "b", &range(1, 1, 99, 120, false))
            .unwrap_err();
        match e {
            Denied::Conflict { range: Some(r), .. } => {
                assert_eq!((r.start, r.end, r.pid), (0, 99, 42))
            }
            other => panic!("{other:?}"),
        }
        // unlocking the middle splits the lock; the hole is free
        t.unlock("a", 1, 7, 40, 59);
        t.acquire(now, "b", &range(1, 1, 40, 59, true)).unwrap();
        assert!(t.acquire(now, "b", &range(1, 1, 39, 40, true)).is_err());
        // the owner's own locks never conflict; adjacent ones merge
        t.acquire(now, "a", &range(1, 7, 100, 199, true)).unwrap();
        assert!(t.holds("a", &range(1, 7, 60, 199, true)));
        // shared locks coexist
        t.acquire(now, "a", &range(2, 7, 0, 9, false)).unwrap();
        t.acquire(now, "b", &range(2, 1, 5, 20, false)).unwrap();
        // release on close drops every range of the owner
        t.release_owner("a", 1, 7);
        // b's own 40..59 never conflicts with b's owner 1, and a's locks are gone
        t.acquire(now, "b", &range(1, 1, 0, u64::MAX, true))
            .unwrap();
        assert!(t.holds("b", &range(1, 1, 0, u64::MAX, true)));
    }
}
