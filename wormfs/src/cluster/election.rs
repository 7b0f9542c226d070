//! When a node starts an election: WormFS decides it, not openraft's timer.
//!
//! openraft 0.9 has no pre-vote, and its own timer has two faults for a storage cluster:
//!
//! - A follower that returns from a freeze (a stopped process, a stalled VM, a partition)
//!   campaigns at once with a higher term. The master then sees that term, in the vote
//!   request or in the follower's next append-entries answer, and steps down, although it
//!   was healthy and every other node still followed it.
//! - After the master dies, a follower waits the leader lease (the largest election timeout)
//!   *plus* its election timeout before campaigning: 25–30 s with the default 10 s.
//!
//! So openraft's elections are turned off (`Config::enable_elect`), and each voter runs
//! [`drive_elections`]: it campaigns only when it has heard nothing from a master for its
//! election timeout (a random time between the configured timeout and 1.2 times it), and
//! only after a *pre-vote*: a majority of the voters, itself included, must say they have
//! not heard from a master either ([`PREVOTE`]). A returning follower's pre-vote is refused
//! by the master and by every follower that still hears it, so it never raises the term,
//! and it takes the master's next heartbeat instead.
//!
//! The pre-vote also checks the log, as Raft's does: it is refused to a node whose log is
//! behind the voter's. Without that check, a node whose log was behind (cut off while the
//! others wrote) passed the pre-vote once the master died, campaigned, and lost every real
//! vote; but each of its campaigns put its own vote at a new term, and a peer campaigning
//! at the same term gave up on seeing it (openraft orders same-term votes by node id), so
//! in the in-process fault schedules a cluster went 40 s and more without a master.
//!
//! Safety stays openraft's: the real vote still checks the log and the leader lease.
//!
//! A node that starts with a vote but no Raft log (its log was lost, or forgotten because
//! the metadata database fell behind the compacted log: see [`crate::raft::open_storage`])
//! may have acknowledged entries it no longer holds; its vote could then elect a node that
//! lacks them, and lose committed metadata. It *abstains* ([`Contact::abstain`]): it grants
//! no vote or pre-vote and does not campaign until it has applied the commit index of the
//! first master that reaches it. A node that lost its vote too looks new, and Raft cannot
//! tell: docs/architecture.md says how to bring one back safely.

use super::serve_json;
use crate::ids::NodeId;
use crate::net::{Transport, TransportError};
use crate::raft::{LogId, Raft, RaftNodeId, SqliteLogStore};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Protocol of the pre-vote: "would you vote for a new master now?".
pub const PREVOTE: &str = "raft/prevote";

/// The election timing a node derives from its configured election timeout.
#[derive(Clone, Copy, Debug)]
pub struct ElectionTiming {
    /// Silence from the master after which a follower may campaign (the low end of the
    /// random election timeout).
    pub timeout: Duration,
    /// openraft's leader lease: a follower refuses a real vote this long after the last
    /// message of its master; a peer grants a pre-vote only after it.
    pub lease: Duration,
}

impl ElectionTiming {
    /// The timing for a configured election timeout.
    pub fn new(election_timeout: Duration) -> ElectionTiming {
        ElectionTiming {
            timeout: election_timeout,
            lease: election_timeout * 9 / 10,
        }
    }

    /// The openraft settings (milliseconds) that give this timing: openraft's lease is its
    /// `election_timeout_max`; its own election timer is off, so the minimum only has to be
    /// valid (above the heartbeat interval, below the maximum).
    pub fn openraft_timeouts(&self) -> (u64, u64) {
        let max = self.lease.as_millis().max(3) as u64;
        ((max * 8 / 9).max(2).min(max - 1), max)
    }

    /// A random election timeout between `timeout` and 1.2 × `timeout`.
    fn pick(&self, salt: u64) -> Duration {
        let spread = self.timeout.as_millis() as u64 / 5;
        self.timeout + Duration::from_millis(jitter(salt) % spread.max(1))
    }
}

/// When this node last heard from a master (an append-entries or snapshot it accepted) or
/// granted a vote: the start of the silence an election waits out.
#[derive(Debug)]
pub struct Contact {
    last: Mutex<Instant>,
    abstain: Mutex<Abstain>,
}

/// Whether a node that started without a Raft log still abstains from elections.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Abstain {
    /// It votes.
    No,
    /// It waits for a master's first message.
    UntilContact,
    /// It waits to apply this log index (the commit index of the master's first message).
    UntilApplied(u64),
}

impl Default for Contact {
    fn default() -> Contact {
        Contact {
            last: Mutex::new(Instant::now()),
            abstain: Mutex::new(Abstain::No),
        }
    }
}

impl Contact {
    /// Makes this node abstain from elections (no vote, no pre-vote, no campaign) until it
    /// has caught up with a master: see the module documentation.
    pub fn abstain(&self) {
        tracing::warn!(
            "this node has a Raft vote but no log (lost or forgotten): it takes no part in \
             elections until it has caught up with a master"
        );
        *self.abstain.lock().unwrap_or_else(|e| e.into_inner()) = Abstain::UntilContact;
    }

    /// Records that this node is the master: it holds every committed entry, so it no
    /// longer abstains.
    pub fn leads(&self) {
        *self.abstain.lock().unwrap_or_else(|e| e.into_inner()) = Abstain::No;
    }

    /// Records that a master this node accepted had committed up to `committed`: an
    /// abstaining node votes again once it has applied that far.
    pub fn master_committed(&self, committed: Option<u64>) {
        let mut a = self.abstain.lock().unwrap_or_else(|e| e.into_inner());
        if *a == Abstain::UntilContact {
            *a = Abstain::UntilApplied(committed.unwrap_or(0));
        }
    }

    /// Whether this node, having applied up to `applied`, still abstains from elections.
    pub fn abstains(&self, applied: Option<u64>) -> bool {
        let mut a = self.abstain.lock().unwrap_or_else(|e| e.into_inner());
        match *a {
            Abstain::No => false,
            Abstain::UntilContact => true,
            Abstain::UntilApplied(target) => {
                if applied.is_some_and(|i| i >= target) || target == 0 {
                    tracing::info!(
                        applied = target,
                        "caught up with the master: this node votes in elections again"
                    );
                    *a = Abstain::No;
                    false
                } else {
                    true
                }
            }
        }
    }

    /// Records contact now.
    pub fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// How long since the last contact.
    pub fn quiet(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// A pre-vote request.
#[derive(Debug, Serialize, Deserialize)]
pub struct PreVote {
    /// The candidate's Raft id.
    pub candidate: RaftNodeId,
    /// The term it would campaign in (for the log: the pre-vote does not compare terms,
    /// the real vote does).
    pub term: u64,
    /// The id of the last entry of its log, when `log_sent` (a node before this field
    /// existed sends neither, and its pre-vote is not checked against the log).
    #[serde(default)]
    pub last_log: Option<LogId>,
    /// Whether `last_log` was sent.
    #[serde(default)]
    pub log_sent: bool,
}

/// A pre-vote answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    /// Whether this node would vote.
    pub granted: bool,
    /// Why not, for the candidate's log.
    pub reason: String,
}

/// Answers pre-votes on `transport`: granted unless this node is a master that a majority
/// acknowledged within the lease, a follower that heard from its master within it, or a
/// node whose log (`log`) is ahead of the candidate's.
pub fn serve_prevote(
    transport: &dyn Transport,
    raft: Raft,
    log: SqliteLogStore,
    contact: Arc<Contact>,
    timing: ElectionTiming,
) {
    serve_json(transport, PREVOTE, "pre-vote", move |req: PreVote| {
        let (raft, log, contact) = (raft.clone(), log.clone(), contact.clone());
        async move {
            let mut answer = prevote_answer(&raft, &contact, &timing);
            if answer.granted && req.log_sent {
                match last_log_id(&log).await {
                    Ok(mine) if req.last_log < mine => {
                        answer = PreVoteAnswer {
                            granted: false,
                            reason: format!(
                                "your log ends at {}, mine at {}: you cannot win a vote",
                                show(req.last_log),
                                show(mine)
                            ),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        answer = PreVoteAnswer {
                            granted: false,
                            reason: format!("I cannot read my Raft log: {e}"),
                        }
                    }
                }
            }
            if !answer.granted {
                tracing::debug!(
                    candidate = req.candidate,
                    "pre-vote refused: {}",
                    answer.reason
                );
            }
            answer
        }
    });
}

/// The last log id of `log`, read off the async threads.
async fn last_log_id(log: &SqliteLogStore) -> Result<Option<LogId>, String> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.last_log_id().map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

fn show(id: Option<LogId>) -> String {
    id.map_or_else(|| "the start".to_owned(), |l| l.to_string())
}

fn prevote_answer(raft: &Raft, contact: &Contact, timing: &ElectionTiming) -> PreVoteAnswer {
    let m = raft.metrics().borrow().clone();
    let refuse = |reason: String| PreVoteAnswer {
        granted: false,
        reason,
    };
    if contact.abstains(m.last_applied.map(|l| l.index)) {
        return refuse(
            "I started without my Raft log and have not caught up with a master yet".into(),
        );
    }
    if m.state.is_leader() {
        if let Some(ms) = m.millis_since_quorum_ack {
            if Duration::from_millis(ms) < timing.lease {
                return refuse(format!(
                    "I am the master and a majority acknowledged me {ms} ms ago"
                ));
            }
        }
        return PreVoteAnswer {
            granted: true,
            reason: String::new(),
        };
    }
    let quiet = contact.quiet();
    if m.current_leader.is_some() && quiet < timing.lease {
        return refuse(format!(
            "I heard from the master {} ms ago",
            quiet.as_millis()
        ));
    }
    PreVoteAnswer {
        granted: true,
        reason: String::new(),
    }
}

/// Runs this node's elections (see the module documentation) until the task is dropped.
pub async fn drive_elections(
    raft: Raft,
    log: SqliteLogStore,
    raft_id: RaftNodeId,
    transport: Arc<dyn Transport>,
    contact: Arc<Contact>,
    timing: ElectionTiming,
) {
    let step = (timing.timeout / 10).max(Duration::from_millis(10));
    let mut wait = timing.pick(raft_id);
    let mut attempt: u64 = 0;
    loop {
        tokio::time::sleep(step).await;
        let m = raft.metrics().borrow().clone();
        if m.state.is_leader() {
            contact.touch();
            contact.leads();
            continue;
        }
        let membership = m.membership_config.membership().clone();
        let voters: Vec<RaftNodeId> = membership.voter_ids().collect();
        if !voters.contains(&raft_id) {
            continue;
        }
        if voters.len() == 1 {
            // the only voter needs nobody's word
            let _ = raft.trigger().elect().await;
            continue;
        }
        if contact.abstains(m.last_applied.map(|l| l.index)) || contact.quiet() < wait {
            continue;
        }
        attempt += 1;
        let term = m.current_term + 1;
        let Ok(last_log) = last_log_id(&log).await else {
            continue;
        };
        let req = match serde_json::to_vec(&PreVote {
            candidate: raft_id,
            term,
            last_log,
            log_sent: true,
        }) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let peers: Vec<NodeId> = voters
            .iter()
            .filter(|id| **id != raft_id)
            .filter_map(|id| membership.get_node(id))
            .map(|n| NodeId(n.name.clone()))
            .collect();
        let calls = peers.iter().enumerate().map(|(i, node)| {
            let t = transport.clone();
            let req = req.clone();
            async move {
                let answer =
                    tokio::time::timeout(timing.lease / 2, t.request(node, PREVOTE, req)).await;
                let (granted, reason) = match answer {
                    Ok(Ok(body)) => match serde_json::from_slice::<PreVoteAnswer>(&body) {
                        Ok(a) => (a.granted, a.reason),
                        Err(e) => (false, format!("unreadable answer: {e}")),
                    },
                    // a node too old to know the pre-vote votes as openraft would
                    Ok(Err(TransportError::NoHandler { .. })) => (true, String::new()),
                    Ok(Err(e)) => (false, e.to_string()),
                    Err(_) => (false, "no answer".into()),
                };
                (i, granted, reason)
            }
        });
        // counted as they come: a peer cut off by the network (whose request hangs rather
        // than fails) does not hold up a majority that has answered
        let mut pending: futures::stream::FuturesUnordered<_> = calls.collect();
        let mut answers: Vec<(usize, bool, String)> = Vec::new();
        let mut granted = 1;
        while granted * 2 <= voters.len() {
            let Some(a) = futures::StreamExt::next(&mut pending).await else {
                break;
            };
            granted += usize::from(a.1);
            answers.push(a);
        }
        if granted * 2 > voters.len() {
            tracing::info!(
                term,
                silent_ms = contact.quiet().as_millis() as u64,
                "no master heard from; a majority agrees: starting an election"
            );
            let _ = raft.trigger().elect().await;
            contact.touch();
            wait = timing.pick(raft_id ^ attempt);
        } else {
            let reasons: Vec<String> = answers
                .iter()
                .filter(|(_, g, _)| !g)
                .map(|(i, _, r)| format!("{}: {r}", peers[*i]))
                .collect();
            // tried again at the next step while the silence lasts: a dead master leaves
            // every follower silent from about the same time, so the others agree soon
            tracing::debug!(?reasons, "no election: the pre-vote found no majority");
        }
    }
}

/// A pseudo-random number from `salt` and the clock (no need for a random crate here).
fn jitter(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
