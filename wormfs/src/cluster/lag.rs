//! How far a follower is behind its master, as the follower can tell: the commit indexes
//! its master sent it (with each append-entries, and a snapshot's last entry), and when it
//! learned of each. A follower normally applies a commit milliseconds after it learns of
//! it; one that still has not after [`STALE_AFTER`] is behind (a snapshot install that
//! keeps failing, a disk that stalls) and must not answer clients from its old copy of the
//! metadata (see [`crate::rpc::fresh`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a follower may know of a commit it has not applied before it counts as behind.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// What a follower knows of its master's commits (see the module documentation).
#[derive(Debug, Default)]
pub struct Lag {
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    /// The highest commit index learned, and when.
    latest: Option<(u64, Instant)>,
    /// The oldest commit index learned and not yet applied, and when it was learned.
    pending: Option<(u64, Instant)>,
    /// Whether the node has said it is behind (said once, and once when it caught up).
    said: bool,
}

/// A follower that is behind: what it knows and what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    /// A commit index of the master this node has not applied.
    pub committed: u64,
    /// How long the node has known of it.
    pub for_: Duration,
    /// The last index this node applied.
    pub applied: u64,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this node has applied the metadata up to {} and has known for {:.1} s that the \
             master committed up to {}: it is catching up, ask another node",
            self.applied,
            self.for_.as_secs_f64(),
            self.committed
        )
    }
}

impl Lag {
    /// Records that the master has committed up to `committed`, learned `now`, when this
    /// node has applied up to `applied`.
    pub fn learned(&self, committed: u64, applied: u64, now: Instant) {
        let mut k = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if k.latest.is_none_or(|(l, _)| committed > l) {
            k.latest = Some((committed, now));
        }
        if k.pending.is_none() && applied < committed {
            k.pending = Some((committed, now));
        }
    }

    /// Whether this node, having applied up to `applied`, is behind at `now`.
    pub fn behind(&self, applied: u64, now: Instant) -> Option<Behind> {
        let mut k = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if k.pending.is_some_and(|(p, _)| applied >= p) {
            // that one is applied; the newest one learned since, if not, is the next
            k.pending = k.latest.filter(|(l, _)| applied < *l);
        }
        let behind = k
            .pending
            .map(|(committed, at)| Behind {
                committed,
                for_: now.saturating_duration_since(at),
                applied,
            })
            .filter(|b| b.for_ >= STALE_AFTER);
        match (&behind, k.said) {
            (Some(b), false) => {
                tracing::warn!("{b}; it refuses clients until it has caught up");
                k.said = true;
            }
            (None, true) => {
                tracing::info!(applied, "this node has caught up with its master");
                k.said = false;
            }
            _ => {}
        }
        behind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_is_behind_only_when_a_commit_it_knows_stays_unapplied() {
        let lag = Lag::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // nothing learned: not behind
        assert_eq!(lag.behind(0, at(10_000)), None);
        // learns of 10 having applied 5; applies it soon: never behind
        lag.learned(10, 5, at(0));
        assert_eq!(lag.behind(5, at(1_000)), None);
        assert_eq!(lag.behind(10, at(5_000)), None);
        // steady writes: each commit applied within a second of learning it, although
        // the node is never fully caught up at the moment it checks
        for i in 0..10u64 {
            let t = 10_000 + i * 1_000;
            lag.learned(20 + i, 19 + i, at(t));
            assert_eq!(lag.behind(19 + i, at(t + 500)), None, "step {i}");
        }
        // learns of 100 and applies nothing more (a stuck snapshot install)
        lag.learned(100, 29, at(30_000));
        assert_eq!(lag.behind(29, at(31_000)), None);
        let b = lag.behind(29, at(32_500)).expect("behind after 2 s");
        assert_eq!((b.committed, b.applied), (100, 29));
        assert!(b.to_string().contains("ask another node"), "{b}");
        // it applies 100 while it learned of 150 a second ago: not behind yet
        lag.learned(150, 29, at(32_600));
        assert_eq!(lag.behind(100, at(33_000)), None);
        // and 150 stays unapplied: behind, counted from when 150 was learned
        let b = lag.behind(100, at(34_700)).expect("behind");
        assert_eq!(b.committed, 150);
        assert_eq!(b.for_, Duration::from_millis(2_100));
        assert_eq!(lag.behind(150, at(35_000)), None);
    }
}
