//! [`LockService`]: the [`LockTable`] on the master, reached from any node.
//!
//! A call arriving at a node that is not the master is forwarded to the master
//! ([`LockAuthority::forward`]). The master confirms with a majority that it still is the
//! master before it grants or renews anything ([`LockAuthority::confirm`]), so a deposed
//! master that has not heard of its successor cannot hand out a lock the successor may also
//! grant. When this node becomes master (a new term), it starts an empty table with a grace
//! period for the sessions the metadata records (see the module above).

use super::{Denied, Held, LockKind, LockTable, SessionId};
use crate::meta::{MetaStore, MetadataLog, MetadataOp, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One call to the lock service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockCall {
    /// The client's session, qualified by the user that authenticated it.
    pub session: SessionId,
    /// The client's name (`user@host pid N`), shown to whoever a lock refuses.
    pub client: String,
    /// What to do.
    pub op: LockOp,
    /// Open locks the session gave up since its last call (file, `OpenRead` or
    /// `OpenWrite`), dropped before `op`.
    #[serde(default)]
    pub closes: Vec<(u64, LockKind)>,
}

/// What a [`LockCall`] asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LockOp {
    /// Take a lock.
    Acquire(Held),
    /// Renew the session; during a grace period, take back the listed locks.
    Keep(Vec<Held>),
    /// Drop the session's open lock of this kind on a file.
    Close {
        /// The file.
        ino: u64,
        /// `OpenRead` or `OpenWrite`.
        kind: LockKind,
    },
    /// Unlock a byte range of one owner.
    Unlock {
        /// The file.
        ino: u64,
        /// The lock owner.
        owner: u64,
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Drop every range lock of one owner on a file.
    ReleaseOwner {
        /// The file.
        ino: u64,
        /// The lock owner.
        owner: u64,
    },
    /// Which lock would refuse this one (`F_GETLK`).
    Test(Held),
    /// The client stops: drop the session and its locks.
    End,
    /// Nothing but the call's `closes`.
    Closes,
}

/// The answer to a [`LockCall`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockAnswer {
    /// Done (granted, released, or nothing would refuse the tested lock).
    Done,
    /// Not granted (or, for a test, the lock that would refuse it).
    Denied(Denied),
    /// The session is renewed: the lease, and the listed locks it does not hold.
    Kept {
        /// Milliseconds the session lives without another renewal.
        lease_ms: u64,
        /// Locks the client listed that are gone.
        lost: Vec<Held>,
    },
    /// The node asked is not the master (the caller asks again).
    NotMaster,
    /// No master could answer.
    Unavailable(String),
}

/// What the lock service needs from the cluster: who the master is, and a way to it.
#[async_trait]
pub trait LockAuthority: Send + Sync {
    /// The term in which this node believes it is the master, or `None`.
    fn master_term(&self) -> Option<u64>;
    /// Confirms with a majority, now, that this node is still the master.
    async fn confirm(&self) -> bool;
    /// Sends `call` to the master and returns its answer (`NotMaster` or an error when
    /// there is none to send it to; the caller retries).
    async fn forward(&self, call: &LockCall) -> Result<LockAnswer, String>;
}

/// The authority of a node on its own: always the master.
#[derive(Debug)]
pub struct SoloAuthority;

#[async_trait]
impl LockAuthority for SoloAuthority {
    fn master_term(&self) -> Option<u64> {
        Some(0)
    }

    async fn confirm(&self) -> bool {
        true
    }

    async fn forward(&self, _call: &LockCall) -> Result<LockAnswer, String> {
        Ok(LockAnswer::NotMaster)
    }
}

struct State {
    term: Option<u64>,
    table: LockTable,
    /// Sessions the metadata records.
    recorded: HashSet<SessionId>,
}

/// The cluster's lock service as one node runs it.
pub struct LockService {
    lease: Duration,
    read_locks: bool,
    authority: Arc<dyn LockAuthority>,
    log: Arc<dyn MetadataLog>,
    meta: Arc<MetaStore>,
    state: tokio::sync::Mutex<State>,
}

/// How long a call waits for a master before it gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl LockService {
    /// A service with leases of `lease`; `read_locks` false lets writers ignore readers.
    pub fn new(
        lease: Duration,
        read_locks: bool,
        authority: Arc<dyn LockAuthority>,
        log: Arc<dyn MetadataLog>,
        meta: Arc<MetaStore>,
    ) -> LockService {
        LockService {
            lease,
            read_locks,
            authority,
            log,
            meta,
            state: tokio::sync::Mutex::new(State {
                term: None,
                table: LockTable::new(Instant::now(), lease, read_locks, []),
                recorded: HashSet::new(),
            }),
        }
    }

    /// The lease.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Answers `call` here when this node is the master, else at the master.
    pub async fn call(&self, call: LockCall) -> LockAnswer {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let mut why = String::from("no master is elected");
        loop {
            let answer = if self.authority.master_term().is_some() {
                self.serve(call.clone()).await
            } else {
                match self.authority.forward(&call).await {
                    Ok(a) => a,
                    Err(e) => {
                        why = e;
                        LockAnswer::NotMaster
                    }
                }
            };
            if answer != LockAnswer::NotMaster {
                return answer;
            }
            if tokio::time::Instant::now() >= deadline {
                return LockAnswer::Unavailable(format!(
                    "no master answered the lock call within {CALL_TIMEOUT:?}: {why}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Answers `call` as the master (a call forwarded from another node arrives here).
    pub async fn serve(&self, call: LockCall) -> LockAnswer {
        let Some(term) = self.authority.master_term() else {
            return LockAnswer::NotMaster;
        };
        let grants = matches!(call.op, LockOp::Acquire(_) | LockOp::Keep(_));
        if grants && !self.authority.confirm().await {
            return LockAnswer::NotMaster;
        }
        let mut st = self.state.lock().await;
        if st.term != Some(term) {
            // A new term: whatever an earlier master granted is unknown here.
            let recorded = match self.meta.lock_sessions() {
                Ok(s) => s,
                Err(e) => return LockAnswer::Unavailable(format!("read lock sessions: {e}")),
            };
            let ids: HashSet<SessionId> = recorded.into_iter().map(|(id, _)| id).collect();
            tracing::info!(
                term,
                sessions = ids.len(),
                "lock service starts; recorded sessions may take back their locks for one lease"
            );
            st.table = LockTable::new(Instant::now(), self.lease, self.read_locks, ids.clone());
            st.recorded = ids;
            st.term = Some(term);
        }
        let now = Instant::now();
        for &(ino, kind) in &call.closes {
            st.table.close(&call.session, ino, kind);
        }
        let answer = match call.op.clone() {
            LockOp::Acquire(h) => {
                if let Some(left) = st.table.grace_left(now) {
                    LockAnswer::Denied(Denied::Grace { left })
                } else if let Err(e) = self.record(&mut st, &call).await {
                    LockAnswer::Unavailable(e)
                } else {
                    st.table.keep(now, &call.session, &call.client, &[]);
                    match st.table.acquire(now, &call.session, &h) {
                        Ok(()) => LockAnswer::Done,
                        Err(d) => LockAnswer::Denied(d),
                    }
                }
            }
            LockOp::Keep(held) => {
                // A session the metadata does not know cannot hold a lock any master granted.
                let known = st.recorded.contains(&call.session);
                if let Err(e) = self.record(&mut st, &call).await {
                    LockAnswer::Unavailable(e)
                } else {
                    let mut lost = st.table.keep(
                        now,
                        &call.session,
                        &call.client,
                        if known { &held } else { &[] },
                    );
                    if !known {
                        lost = held;
                    }
                    LockAnswer::Kept {
                        lease_ms: self.lease.as_millis() as u64,
                        lost,
                    }
                }
            }
            LockOp::Close { ino, kind } => {
                st.table.close(&call.session, ino, kind);
                LockAnswer::Done
            }
            LockOp::Unlock {
                ino,
                owner,
                start,
                end,
            } => {
                st.table.unlock(&call.session, ino, owner, start, end);
                LockAnswer::Done
            }
            LockOp::ReleaseOwner { ino, owner } => {
                st.table.release_owner(&call.session, ino, owner);
                LockAnswer::Done
            }
            LockOp::Test(h) => match st.table.conflict(&call.session, &h) {
                Some(d) => LockAnswer::Denied(d),
                None => LockAnswer::Done,
            },
            LockOp::Closes => LockAnswer::Done,
            LockOp::End => {
                st.table.drop_session(&call.session);
                st.recorded.remove(&call.session);
                self.forget(vec![call.session.clone()]);
                LockAnswer::Done
            }
        };
        let ended = st.table.take_ended(now);
        if !ended.is_empty() {
            for id in &ended {
                st.recorded.remove(id);
            }
            tracing::info!(sessions = ?ended, "lock sessions expired; their locks are free");
            self.forget(ended);
        }
        answer
    }

    /// Records the call's session in the metadata before it may hold anything.
    async fn record(
        &self,
        st: &mut tokio::sync::MutexGuard<'_, State>,
        call: &LockCall,
    ) -> Result<(), String> {
        if st.recorded.contains(&call.session) {
            return Ok(());
        }
        let op = MetadataOp::OpenLockSession {
            id: call.session.clone(),
            client: call.client.clone(),
            opened: Timestamp::now(),
        };
        match self.log.submit(op).await {
            Ok(Ok(_)) => {
                st.recorded.insert(call.session.clone());
                Ok(())
            }
            Ok(Err(r)) => Err(format!("record the lock session: {r}")),
            Err(e) => Err(format!("record the lock session: {e}")),
        }
    }

    /// Forgets ended sessions in the metadata, in the background (nothing waits on it: a
    /// session left recorded only makes a future grace period wait for it).
    fn forget(&self, ids: Vec<SessionId>) {
        let log = self.log.clone();
        tokio::spawn(async move {
            if let Err(e) = log.submit(MetadataOp::CloseLockSessions(ids)).await {
                tracing::debug!("forget ended lock sessions: {e}");
            }
        });
    }

    /// True when a live session has `ino` open (only meaningful on the master, outside a
    /// grace period; `None` otherwise).
    pub async fn is_open(&self, ino: u64) -> Option<bool> {
        let st = self.state.lock().await;
        let now = Instant::now();
        let term = self.authority.master_term()?;
        if st.term != Some(term) || st.table.in_grace(now) {
            return None;
        }
        Some(st.table.is_open(now, ino))
    }
}

#[async_trait]
impl crate::heal::OpenFiles for LockService {
    async fn is_open(&self, ino: u64) -> Option<bool> {
        LockService::is_open(self, ino).await
    }
}

debug_by_name!(LockService);
