//! Driving a [`Worker`]: steps, pause and resume, the I/O budget, backoff, and its status
//! recorded through the metadata log.

use super::record::{WorkerControl, WorkerState, WorkerStatus};
use crate::meta::{MetaStore, MetadataLog, MetadataOp, Timestamp};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Did work: this many bytes read or written and chunk operations made (for the
    /// budget). More work follows at once, budget permitting.
    Busy {
        /// Bytes read or written.
        bytes: u64,
        /// Chunk operations made.
        ops: u64,
    },
    /// Nothing to do now: the runner waits for [`Worker::idle_wait`] or a wake-up.
    Idle,
}

/// A piece of background work done in small steps.
#[async_trait]
pub trait Worker: Send {
    /// The worker's name (see [`super::names`]).
    fn name(&self) -> &'static str;

    /// Does one bounded step of work under `control` (a step takes well under a second,
    /// so pausing and stopping are prompt), and sets its status's state (active, idle or
    /// done; the runner sets paused and error). An error is recorded and the step is
    /// tried again after a backoff.
    async fn step(&mut self, control: &WorkerControl) -> Result<Step, String>;

    /// The worker's status, kept up to date by its steps.
    fn status(&mut self) -> &mut WorkerStatus;

    /// How long to wait after an idle step before stepping again.
    fn idle_wait(&self) -> Duration;
}

/// An I/O budget: at most this many bytes and chunk operations per second (0: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Bytes per second.
    pub bytes_per_sec: u64,
    /// Chunk operations per second.
    pub ops_per_sec: u64,
}

impl Budget {
    /// The operator's settings where they are set, these defaults elsewhere.
    pub fn with_control(self, c: &WorkerControl) -> Budget {
        Budget {
            bytes_per_sec: if c.bytes_per_sec > 0 {
                c.bytes_per_sec
            } else {
                self.bytes_per_sec
            },
            ops_per_sec: if c.ops_per_sec > 0 {
                c.ops_per_sec
            } else {
                self.ops_per_sec
            },
        }
    }
}

/// Paces work to a [`Budget`]: after each step, how long to wait so that the work done
/// since the window opened takes at least as long as the budget allows.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    bytes: u64,
    ops: u64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

impl Pacer {
    /// A pacer whose window opens now.
    pub fn new() -> Pacer {
        Pacer {
            start: Instant::now(),
            bytes: 0,
            ops: 0,
        }
    }

    /// Counts a step's work; returns how long to wait before the next.
    pub fn account(&mut self, bytes: u64, ops: u64, budget: Budget) -> Duration {
        let elapsed = self.start.elapsed();
        // A fresh window after a while (or a pause), so idle time is no credit for a burst.
        if elapsed > Duration::from_secs(10) {
            *self = Pacer::new();
        }
        self.bytes += bytes;
        self.ops += ops;
        let need = |done: u64, rate: u64| {
            if rate == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(done as f64 / rate as f64)
            }
        };
        let want = need(self.bytes, budget.bytes_per_sec).max(need(self.ops, budget.ops_per_sec));
        want.saturating_sub(self.start.elapsed())
    }

    /// Restarts the window (after a pause or an idle wait).
    pub fn reset(&mut self) {
        *self = Pacer::new();
    }
}

/// What a runner needs around its worker.
pub struct WorkerHost {
    /// Where the status is recorded.
    pub log: Arc<dyn MetadataLog>,
    /// Where the control is read.
    pub meta: Arc<MetaStore>,
    /// This node's name, recorded in the status.
    pub node: String,
    /// The budget when the control sets none.
    pub budget: Budget,
    /// Wakes idle workers early (e.g. the repair worker after a scrub found damage).
    pub wake: Arc<Notify>,
}

/// How often a busy worker records its status.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Runs `worker` until `stop` turns true: reads its control before every step, obeys pause
/// and budget, records its status at least once a second while it changes (and at once on
/// a change of state), and backs off (1 s doubling to 30 s) after failed steps.
pub async fn run_worker(
    mut worker: Box<dyn Worker>,
    host: Arc<WorkerHost>,
    mut stop: watch::Receiver<bool>,
) {
    let name = worker.name();
    let mut pacer = Pacer::new();
    let mut last_publish: Option<(Instant, WorkerStatus)> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            break;
        }
        let control = match host.meta.worker(name) {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::error!(worker = name, error = %e, "cannot read the worker's control");
                WorkerControl::default()
            }
        };
        let wait = if control.paused {
            worker.status().state = WorkerState::Paused;
            pacer.reset();
            Some(Duration::from_millis(200))
        } else {
            match worker.step(&control).await {
                Ok(Step::Busy { bytes, ops }) => {
                    backoff = Duration::from_secs(1);
                    let d = pacer.account(bytes, ops, host.budget.with_control(&control));
                    (!d.is_zero()).then_some(d)
                }
                Ok(Step::Idle) => {
                    backoff = Duration::from_secs(1);
                    pacer.reset();
                    Some(worker.idle_wait())
                }
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "worker step failed; backing off");
                    let s = worker.status();
                    s.state = WorkerState::Error;
                    s.message = e;
                    let d = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    Some(d)
                }
            }
        };
        publish(&mut *worker, &host, &mut last_publish, wait.is_some()).await;
        if let Some(d) = wait {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = host.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }
    // Record where it stopped, so the next master resumes from here.
    last_publish = None;
    publish(&mut *worker, &host, &mut last_publish, true).await;
}

async fn publish(
    worker: &mut dyn Worker,
    host: &WorkerHost,
    last: &mut Option<(Instant, WorkerStatus)>,
    waiting: bool,
) {
    let name = worker.name();
    let status = worker.status();
    status.node = host.node.clone();
    let differs = last.as_ref().is_none_or(|(_, s)| {
        let mut a = s.clone();
        a.updated = status.updated;
        a != *status
    });
    let state_changed = last.as_ref().is_none_or(|(_, s)| s.state != status.state);
    let due = last
        .as_ref()
        .is_none_or(|(t, _)| t.elapsed() >= PUBLISH_EVERY);
    if !(differs && (state_changed || due || waiting)) {
        return;
    }
    status.updated = Timestamp::now();
    let op = MetadataOp::SetWorkerStatus {
        name: name.to_owned(),
        status: status.clone(),
    };
    match host.log.submit(op).await {
        Ok(_) => *last = Some((Instant::now(), status.clone())),
        Err(e) => {
            tracing::debug!(worker = name, error = %e, "cannot record the worker's status yet")
        }
    }
}

debug_by_name!(WorkerHost);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_holds_work_to_the_budget() {
        let mut p = Pacer::new();
        let b = Budget {
            bytes_per_sec: 1000,
            ops_per_sec: 0,
        };
        let d = p.account(500, 1, b);
        assert!(
            d > Duration::from_millis(400) && d <= Duration::from_millis(500),
            "{d:?}"
        );
        let ops = Budget {
            bytes_per_sec: 0,
            ops_per_sec: 10,
        };
        let mut p = Pacer::new();
        assert!(p.account(1 << 30, 5, ops) > Duration::from_millis(400));
        assert_eq!(
            Pacer::new().account(1 << 30, 1000, Budget::default()),
            Duration::ZERO
        );
    }

    #[test]
    fn an_operator_setting_overrides_the_default_budget() {
        let d = Budget {
            bytes_per_sec: 100,
            ops_per_sec: 7,
        };
        let c = WorkerControl {
            bytes_per_sec: 5,
            ..Default::default()
        };
        assert_eq!(
            d.with_control(&c),
            Budget {
                bytes_per_sec: 5,
                ops_per_sec: 7
            }
        );
    }
}
