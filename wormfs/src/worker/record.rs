//! What the metadata keeps of each background worker: the operator's control (written by
//! commands) and the worker's status with its cursor (written by the master that runs it).
//! Both travel through the metadata log, so every node can show them and a new master
//! resumes a worker where the old one stopped.

use crate::ids::FileId;
use crate::meta::Timestamp;
use serde::{Deserialize, Serialize};

/// What a worker is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Working.
    Active,
    /// Nothing to do until something changes or its schedule comes.
    #[default]
    Idle,
    /// Paused by an operator.
    Paused,
    /// Its last run finished.
    Done,
    /// Its last step failed; it backs off and tries again.
    Error,
}

impl WorkerState {
    /// The state's name as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Idle => "idle",
            WorkerState::Paused => "paused",
            WorkerState::Done => "done",
            WorkerState::Error => "error",
        }
    }
}

/// A position in the walk over every stripe of every file: the last stripe handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// The file.
    pub ino: FileId,
    /// The stripe index.
    pub stripe: u64,
}

/// An operator's settings for one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerControl {
    /// Paused: the worker does nothing until resumed.
    pub paused: bool,
    /// The number of the last run asked for (a scrub pass); a worker serves each once.
    pub request: u64,
    /// The run asked for reads and verifies every chunk (deep scrub), not only a stat.
    pub deep: bool,
    /// I/O budget in bytes per second (0: the node's configured default).
    pub bytes_per_sec: u64,
    /// Budget in chunk operations per second (0: the node's configured default).
    pub ops_per_sec: u64,
}

/// A worker's progress, as the master running it last recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerStatus {
    /// What it is doing.
    pub state: WorkerState,
    /// The node running it.
    pub node: String,
    /// Runs (passes) finished.
    pub passes: u64,
    /// The run request being served, or the last one served.
    pub request: u64,
    /// The current or last run is deep.
    pub deep: bool,
    /// Where the current run is; `None` before the first stripe.
    pub cursor: Option<Cursor>,
    /// Items done in the current run (stripes checked, stripes repaired).
    pub done: u64,
    /// Items in the current run, as counted at its start.
    pub total: u64,
    /// Bytes read or written in the current run.
    pub bytes: u64,
    /// Damaged chunks found (scrub) in the current run.
    pub found: u64,
    /// Chunks written (repair) in the current run.
    pub repaired: u64,
    /// Items that failed in the current run.
    pub failed: u64,
    /// Files and folders removed (garbage) in the current run.
    pub removed: u64,
    /// Chunks that could not be checked (their node did not answer).
    pub skipped: u64,
    /// Stripes missing a chunk or with a chunk on an offline, removed or failed place.
    pub degraded: u64,
    /// Stripes one more loss away from unreadable (margin 0).
    pub at_risk: u64,
    /// Stripes with fewer than `k` good chunks.
    pub unreadable: u64,
    /// Stripes waiting for repair.
    pub queued: u64,
    /// When `degraded`, `at_risk` and `unreadable` were counted (repair's last sweep).
    pub counted: Timestamp,
    /// When the current run started.
    pub started: Timestamp,
    /// When this status was written.
    pub updated: Timestamp,
    /// When the last run finished.
    pub finished: Timestamp,
    /// When the last deep run finished (scrub; the first is scheduled from the first run).
    pub deep_finished: Timestamp,
    /// The last error, if the worker is in [`WorkerState::Error`] or an item failed.
    pub message: String,
}

impl WorkerStatus {
    /// Bytes per second over the current run, from its start to `updated`.
    pub fn rate(&self) -> u64 {
        let secs = (self.updated.0 - self.started.0) as f64 / 1e9;
        if secs <= 0.0 {
            0
        } else {
            (self.bytes as f64 / secs) as u64
        }
    }

    /// Seconds left in the current run at its rate so far, when known.
    pub fn eta_secs(&self) -> Option<u64> {
        if self.state != WorkerState::Active || self.done == 0 || self.total <= self.done {
            return None;
        }
        let secs = (self.updated.0 - self.started.0) as f64 / 1e9;
        let per_item = secs / self.done as f64;
        Some((per_item * (self.total - self.done) as f64).ceil() as u64)
    }
}

/// The names of the workers every node knows.
pub mod names {
    /// The scrub: shallow (stat every chunk) or deep (read and verify every chunk and the
    /// parity).
    pub const SCRUB: &str = "scrub";
    /// The repair: rebuilds lost chunks and re-spreads crowded stripes, riskiest first.
    pub const REPAIR: &str = "repair";
    /// The garbage collector of one node's disks, named `garbage@NODE`.
    pub const GARBAGE: &str = "garbage";
}
