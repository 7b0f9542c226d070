//! The scrub and repair workers: each walks every stripe of every file in (file, stripe)
//! order from a cursor kept in its recorded status, so a new master resumes where the old
//! one stopped.

use super::assess::{assess, Liveness};
use super::check::{deep_check, shallow_check, StripeCheck};
use super::repair::repair_stripe;
use super::service::HealContext;
use crate::ids::FileId;
use crate::meta::{MetadataOp, StripeRow, Timestamp};
use crate::worker::{names, Cursor, Step, Worker, WorkerControl, WorkerState, WorkerStatus};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Stripes a shallow scrub step checks.
const SHALLOW_PAGE: usize = 256;
/// Stripes a deep scrub step reads.
const DEEP_PAGE: usize = 8;
/// Stripes a repair sweep step assesses.
const SWEEP_PAGE: usize = 2048;
/// How long a view of the nodes and disks is trusted.
const LIVENESS_TTL: Duration = Duration::from_secs(2);

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("worker task failed: {e}"))
}

/// A cached [`Liveness`], observed again when older than [`LIVENESS_TTL`].
struct Observed {
    at: Option<(Instant, Arc<Liveness>)>,
}

impl Observed {
    async fn get(&mut self, ctx: &Arc<HealContext>) -> Result<Arc<Liveness>, String> {
        if let Some((t, l)) = &self.at {
            if t.elapsed() < LIVENESS_TTL {
                return Ok(l.clone());
            }
        }
        let c = ctx.clone();
        let l = Arc::new(blocking(move || c.observe()).await??);
        self.at = Some((Instant::now(), l.clone()));
        Ok(l)
    }
}

fn elapsed_since(t: Timestamp) -> Duration {
    Duration::from_nanos(Timestamp::now().0.saturating_sub(t.0).max(0) as u64)
}

/// The scrub: a pass over every stripe, shallow (a stat of each chunk) or deep (read and
/// verify each chunk and the parity). Damaged chunks are recorded with `SetChunkState`,
/// which puts their stripes in the repair queue. Passes start on command (`wormfs scrub`)
/// or on the schedule of [`super::HealSettings`].
pub struct ScrubWorker {
    ctx: Arc<HealContext>,
    wake_repair: Arc<Notify>,
    repair_due: Arc<AtomicBool>,
    status: WorkerStatus,
    in_pass: bool,
    live: Observed,
}

impl ScrubWorker {
    /// The scrub, resuming the pass its recorded status shows unfinished. When it records
    /// damage it sets `repair_due` and wakes `wake_repair`, so repair looks at once.
    pub fn new(
        ctx: Arc<HealContext>,
        wake_repair: Arc<Notify>,
        repair_due: Arc<AtomicBool>,
    ) -> ScrubWorker {
        let status = ctx
            .meta
            .worker(names::SCRUB)
            .map(|(_, s)| s)
            .unwrap_or_default();
        let in_pass = matches!(
            status.state,
            WorkerState::Active | WorkerState::Paused | WorkerState::Error
        ) && status.cursor.is_some();
        if in_pass {
            tracing::info!(cursor = ?status.cursor, deep = status.deep, "resuming the scrub pass");
        }
        let mut status = status;
        if status.deep_finished.0 == 0 {
            // the first deep scrub comes one interval after the scrub first ran
            status.deep_finished = Timestamp::now();
        }
        ScrubWorker {
            ctx,
            wake_repair,
            repair_due,
            status,
            in_pass,
            live: Observed { at: None },
        }
    }

    /// Starts a pass if one is asked for or due.
    fn start_if_due(&mut self, control: &WorkerControl) -> bool {
        let s = &self.ctx.settings;
        let never_ran = self.status.finished.0 == 0;
        let (deep, request) = if control.request > self.status.request {
            (control.deep, control.request)
        } else if s
            .deep_scrub_every
            .is_some_and(|d| elapsed_since(self.status.deep_finished) >= d)
        {
            (true, self.status.request)
        } else if s
            .scrub_every
            .is_some_and(|d| never_ran || elapsed_since(self.status.finished) >= d)
        {
            (false, self.status.request)
        } else {
            return false;
        };
        let total = self.ctx.meta.count_stripes().unwrap_or(0);
        let st = &mut self.status;
        *st = WorkerStatus {
            state: WorkerState::Active,
            passes: st.passes,
            request,
            deep,
            total,
            started: Timestamp::now(),
            finished: st.finished,
            deep_finished: st.deep_finished,
            ..Default::default()
        };
        self.in_pass = true;
        tracing::info!(deep, total, "scrub pass starts");
        true
    }

    async fn record(&self, row: &StripeRow, check: &StripeCheck) {
        for f in &check.findings {
            tracing::warn!(file = %row.ino, stripe = row.stripe.index, chunk = f.index, reason = %f.reason, "scrub found a damaged chunk");
            let op = MetadataOp::SetChunkState {
                ino: row.ino,
                stripe: row.stripe.index,
                generation: row.stripe.generation,
                chunk: f.index,
                state: f.state,
            };
            if let Err(e) = self.ctx.log.submit(op).await {
                tracing::warn!(error = %e, "could not record a damaged chunk; the next pass finds it again");
            }
        }
    }
}

#[async_trait]
impl Worker for ScrubWorker {
    fn name(&self) -> &'static str {
        names::SCRUB
    }

    fn status(&mut self) -> &mut WorkerStatus {
        &mut self.status
    }

    fn idle_wait(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn step(&mut self, control: &WorkerControl) -> Result<Step, String> {
        if !self.in_pass && !self.start_if_due(control) {
            if self.status.state != WorkerState::Done {
                self.status.state = WorkerState::Idle;
            }
            return Ok(Step::Idle);
        }
        self.status.state = WorkerState::Active;
        let live = self.live.get(&self.ctx).await?;
        let deep = self.status.deep;
        // A step is about a second of the budget at most, so pausing, stopping and the
        // budget itself act promptly.
        let budget = self.ctx.settings.budget.with_control(control);
        let page = match (deep, budget.ops_per_sec) {
            (true, _) => DEEP_PAGE,
            (false, 0) => SHALLOW_PAGE,
            (false, ops) => (ops as usize / 8).clamp(1, SHALLOW_PAGE),
        };
        let (meta, cursor) = (self.ctx.meta.clone(), self.status.cursor);
        let page = blocking(move || meta.stripes_after(cursor, page))
            .await?
            .map_err(|e| e.to_string())?;
        let Some(next) = page.next else {
            let st = &mut self.status;
            st.state = WorkerState::Done;
            st.passes += 1;
            st.finished = Timestamp::now();
            st.cursor = None;
            st.done = st.done.max(st.total);
            if st.deep {
                st.deep_finished = st.finished;
            }
            self.in_pass = false;
            tracing::info!(
                deep = st.deep,
                found = st.found,
                skipped = st.skipped,
                "scrub pass finished"
            );
            return Ok(Step::Busy { bytes: 0, ops: 0 });
        };
        let (store, l) = (self.ctx.store.clone(), live.clone());
        let rows = page.rows;
        let (rows, checks) = blocking(move || {
            let checks: Vec<StripeCheck> = rows
                .iter()
                .map(|r| {
                    let f = if deep { deep_check } else { shallow_check };
                    f(store.as_ref(), r.ino, &r.layout, &r.stripe, &l)
                })
                .collect();
            (rows, checks)
        })
        .await?;
        let (mut bytes, mut ops, mut found) = (0, 0, 0);
        let mut verified: Vec<(FileId, u64, u64)> = Vec::new();
        for (row, check) in rows.iter().zip(&checks) {
            bytes += check.bytes;
            ops += check.checked;
            found += check.findings.len() as u64;
            self.status.skipped += check.skipped;
            self.record(row, check).await;
            if deep && check.verified && check.findings.is_empty() {
                verified.push((row.ino, row.stripe.index, row.stripe.generation));
            }
        }
        if !verified.is_empty() {
            let op = MetadataOp::MarkVerified {
                stripes: verified,
                time: Timestamp::now(),
            };
            if let Err(e) = self.ctx.log.submit(op).await {
                tracing::debug!(error = %e, "could not record verified chunks");
            }
        }
        if found > 0 {
            self.repair_due.store(true, Ordering::Relaxed);
            self.wake_repair.notify_waiters();
        }
        let st = &mut self.status;
        st.found += found;
        st.bytes += bytes;
        st.done += page.scanned;
        st.total = st.total.max(st.done);
        st.cursor = Some(next);
        Ok(Step::Busy { bytes, ops })
    }
}

/// Stripes a repair step rebuilds at once.
const REPAIR_AT_ONCE: usize = 4;

/// Rebuilds stripe `q` if it still needs it (blocking): `None` when it does not any more
/// (rewritten, deleted, repaired), else the new chunks and the generation they belong to.
fn rebuild(
    ctx: &HealContext,
    live: &Liveness,
    q: Queued,
) -> Result<Option<(crate::heal::Rebuilt, u64)>, String> {
    let e = |e: crate::meta::MetaError| e.to_string();
    let Some(layout) = ctx.meta.attr(q.ino).map_err(e)?.and_then(|a| a.layout) else {
        return Ok(None);
    };
    let Some(s) = ctx.meta.stripe(q.ino, q.stripe).map_err(e)? else {
        return Ok(None);
    };
    if s.chunks.is_empty() {
        return Ok(None);
    }
    let h = assess(&s, live);
    if !h.needs_repair() {
        return Ok(None);
    }
    let path = ctx
        .meta
        .path_of(q.ino)
        .map_err(e)?
        .unwrap_or_else(|| format!("/.orphan/{}", q.ino));
    let view = live.placeable(
        ctx.store
            .placement_view(&ctx.node)
            .map_err(|e| e.to_string())?,
    );
    let rebuilt = repair_stripe(
        ctx.store.as_ref(),
        ctx.placement.as_ref(),
        &view,
        live,
        (q.ino, &path, &layout),
        &s,
        &h,
    )
    .map_err(|e| e.to_string())?;
    Ok(Some((rebuilt, s.generation)))
}

/// One stripe waiting for repair: the lower its margin, the sooner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    margin: i64,
    ino: FileId,
    stripe: u64,
}

/// The repair: sweeps the metadata for stripes with lost or crowded chunks (no I/O), then
/// repairs them riskiest first (fewest spare chunks), each committed through the metadata
/// log before the copies it replaces are deleted.
pub struct RepairWorker {
    ctx: Arc<HealContext>,
    due: Arc<AtomicBool>,
    status: WorkerStatus,
    queue: Vec<Queued>,
    sweep: Option<Sweep>,
    last_sweep: Option<Instant>,
    live: Observed,
}

/// A sweep in progress.
#[derive(Default)]
struct Sweep {
    /// The operator's request (`wormfs repair start`) this sweep serves.
    request: u64,
    cursor: Option<Cursor>,
    found: Vec<Queued>,
    degraded: u64,
    at_risk: u64,
    unreadable: u64,
}

impl RepairWorker {
    /// The repair worker, keeping the counts its recorded status shows. It sweeps for work
    /// every `repair_every`, and at once when `due` is set.
    pub fn new(ctx: Arc<HealContext>, due: Arc<AtomicBool>) -> RepairWorker {
        let status = ctx
            .meta
            .worker(names::REPAIR)
            .map(|(_, s)| s)
            .unwrap_or_default();
        RepairWorker {
            ctx,
            due,
            status,
            queue: Vec::new(),
            sweep: None,
            last_sweep: None,
            live: Observed { at: None },
        }
    }

    async fn sweep_step(&mut self, request: u64) -> Result<Step, String> {
        if self.sweep.is_none() {
            // a new sweep sees the cluster as it is now: a drain or a removal just made
            // is what a sweep asked for by `wormfs repair start` must find
            self.live.at = None;
        }
        let live = self.live.get(&self.ctx).await?;
        let sweep = self.sweep.get_or_insert_with(|| Sweep {
            request,
            ..Sweep::default()
        });
        let (meta, cursor) = (self.ctx.meta.clone(), sweep.cursor);
        let page = blocking(move || meta.stripes_after(cursor, SWEEP_PAGE))
            .await?
            .map_err(|e| e.to_string())?;
        for row in &page.rows {
            let h = assess(&row.stripe, &live);
            if h.is_degraded() {
                sweep.degraded += 1;
            }
            match h.margin {
                m if m < 0 => sweep.unreadable += 1,
                0 => sweep.at_risk += 1,
                _ => {}
            }
            if h.needs_repair() && h.good >= h.k {
                sweep.found.push(Queued {
                    margin: h.margin,
                    ino: row.ino,
                    stripe: row.stripe.index,
                });
            }
        }
        match page.next {
            Some(next) => sweep.cursor = Some(next),
            None => {
                let mut done = self.sweep.take().expect("sweeping");
                done.found.sort();
                let st = &mut self.status;
                st.degraded = done.degraded;
                st.at_risk = done.at_risk;
                st.unreadable = done.unreadable;
                st.counted = Timestamp::now();
                st.request = st.request.max(done.request);
                st.queued = done.found.len() as u64;
                if !done.found.is_empty() {
                    tracing::info!(stripes = done.found.len(), "repair queue filled");
                    *st = WorkerStatus {
                        state: WorkerState::Active,
                        passes: st.passes,
                        total: done.found.len() as u64,
                        started: Timestamp::now(),
                        degraded: done.degraded,
                        at_risk: done.at_risk,
                        unreadable: done.unreadable,
                        queued: done.found.len() as u64,
                        counted: st.counted,
                        finished: st.finished,
                        request: st.request,
                        ..Default::default()
                    };
                }
                self.queue = done.found;
                self.queue.reverse(); // pop() takes the riskiest
                self.last_sweep = Some(Instant::now());
            }
        }
        Ok(Step::Busy { bytes: 0, ops: 0 })
    }

    /// Rebuilds up to [`REPAIR_AT_ONCE`] stripes at once (their reads, coding and writes
    /// overlap), then commits each.
    async fn repair_some(&mut self, batch: Vec<Queued>) -> Result<Step, String> {
        let live = self.live.get(&self.ctx).await?;
        let tasks: Vec<_> = batch
            .iter()
            .map(|q| {
                let (ctx, l, q) = (self.ctx.clone(), live.clone(), *q);
                tokio::task::spawn_blocking(move || rebuild(&ctx, &l, q))
            })
            .collect();
        let (mut bytes, mut ops) = (0, 0);
        for (q, task) in batch.into_iter().zip(tasks) {
            let outcome = task.await.map_err(|e| format!("worker task failed: {e}"))?;
            let (b, o) = self.commit(q, outcome).await?;
            bytes += b;
            ops += o;
        }
        Ok(Step::Busy { bytes, ops })
    }

    /// Commits one rebuilt stripe (or records why it was not); returns the bytes and chunk
    /// operations it took.
    async fn commit(
        &mut self,
        q: Queued,
        outcome: Result<Option<(crate::heal::Rebuilt, u64)>, String>,
    ) -> Result<(u64, u64), String> {
        let (rebuilt, generation) = match outcome {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.status.done += 1;
                return Ok((0, 1));
            }
            Err(e) => {
                tracing::warn!(file = %q.ino, stripe = q.stripe, error = %e, "stripe repair failed; tried again after the next sweep");
                self.status.failed += 1;
                self.status.done += 1;
                self.status.message = format!("file {} stripe {}: {e}", q.ino, q.stripe);
                return Ok((0, 1));
            }
        };
        let written = rebuilt.chunks.len() as u64;
        let op = MetadataOp::ReplaceChunks {
            ino: q.ino,
            stripe: q.stripe,
            generation,
            chunks: rebuilt.chunks.clone(),
        };
        let store = self.ctx.store.clone();
        crate::crash::point(crate::crash::REPAIR_CHUNKS_WRITTEN);
        match self.ctx.log.submit(op).await {
            Ok(Ok(applied)) => {
                // committed: the copies replaced are garbage now
                let garbage = applied.garbage;
                blocking(move || {
                    for g in garbage {
                        if let Err(e) = store.delete_chunk(&g.disk, &g.addr()) {
                            tracing::info!(chunk = %g.key, disk = %g.disk, error = %e, "could not delete a replaced chunk; left for the garbage collector");
                        }
                    }
                })
                .await?;
                tracing::info!(file = %q.ino, stripe = q.stripe, chunks = written, "stripe repaired");
                self.status.repaired += written;
            }
            Ok(Err(refusal)) => {
                // rewritten meanwhile: the new chunks belong to nothing
                let folder = self
                    .ctx
                    .meta
                    .attr(q.ino)
                    .ok()
                    .flatten()
                    .and_then(|a| a.layout)
                    .map(|l| l.folder);
                let chunks = rebuilt.chunks;
                blocking(move || {
                    let Some(folder) = folder else { return };
                    for c in chunks {
                        let addr = crate::store::ChunkAddr {
                            folder: folder.clone(),
                            key: crate::ids::ChunkKey {
                                file: q.ino,
                                stripe: q.stripe,
                                generation,
                                index: c.index,
                            },
                        };
                        let _ = store.delete_chunk(&c.disk, &addr);
                    }
                })
                .await?;
                tracing::info!(file = %q.ino, stripe = q.stripe, %refusal, "repair not needed any more");
            }
            Err(e) => {
                // the outcome is unknown: the new chunks may be the stripe's now, so they stay
                self.status.failed += 1;
                self.status.message = format!("file {} stripe {}: {e}", q.ino, q.stripe);
            }
        }
        self.status.done += 1;
        self.status.bytes += rebuilt.bytes;
        Ok((rebuilt.bytes, written.max(1)))
    }
}

#[async_trait]
impl Worker for RepairWorker {
    fn name(&self) -> &'static str {
        names::REPAIR
    }

    fn status(&mut self) -> &mut WorkerStatus {
        &mut self.status
    }

    fn idle_wait(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn step(&mut self, control: &WorkerControl) -> Result<Step, String> {
        if !self.queue.is_empty() {
            self.status.state = WorkerState::Active;
            let at = self.queue.len().saturating_sub(REPAIR_AT_ONCE);
            let batch: Vec<Queued> = self.queue.split_off(at).into_iter().rev().collect();
            self.status.queued = self.queue.len() as u64;
            let r = self.repair_some(batch).await;
            if self.queue.is_empty() {
                let st = &mut self.status;
                st.state = WorkerState::Done;
                st.passes += 1;
                st.finished = Timestamp::now();
                // the counts change with the repairs: sweep again soon
                self.last_sweep = None;
            }
            return r;
        }
        let due = self.due.swap(false, Ordering::Relaxed)
            || self
                .last_sweep
                .is_none_or(|t| t.elapsed() >= self.ctx.settings.repair_every);
        // `wormfs repair start` asks for a sweep now (after a removal or a drain, say)
        let asked = control.request > self.status.request;
        if self.sweep.is_some() || due || asked {
            return self.sweep_step(control.request).await;
        }
        if self.status.state != WorkerState::Done {
            self.status.state = WorkerState::Idle;
        }
        Ok(Step::Idle)
    }
}

debug_by_name!(RepairWorker, ScrubWorker);
