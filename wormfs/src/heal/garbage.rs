//! The garbage worker: on every node, walks its own disks' chunk folders and removes what
//! no metadata refers to once it is older than a grace time: chunk files of no stripe (an
//! unconfirmed write, a repair cut short, a delete that failed), temporary files of writes
//! cut short, and chunk folders left empty. The grace time covers writes in flight, whose
//! chunks exist before their stripe commits, and a metadata replica a little behind.

use super::service::HealContext;
use crate::ids::{ChunkKey, DiskId};
use crate::store::{ChunkAddr, ChunkFolder, INDEX_FILE_NAME};
use crate::worker::{Step, Worker, WorkerControl, WorkerState, WorkerStatus};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The name of a node's garbage worker: `garbage@NODE` (one per node).
pub fn garbage_worker_name(node: &crate::ids::NodeId) -> String {
    format!("{}@{node}", crate::worker::names::GARBAGE)
}

/// What one pass over one disk removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Chunk files looked at.
    pub chunks: u64,
    /// Chunk files removed (no stripe refers to them).
    pub removed: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Temporary files removed.
    pub temps: u64,
    /// Empty chunk folders removed.
    pub folders: u64,
    /// Index files rewritten without the records of deleted chunks.
    pub indexes: u64,
}

fn older_than(path: &Path, grace: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= grace)
}

/// One pass over the disk `disk` at `root` (blocking).
pub fn sweep_disk(
    ctx: &HealContext,
    disk: &DiskId,
    root: &Path,
    grace: Duration,
) -> Result<Swept, String> {
    let mut out = Swept::default();
    let list = |p: &Path| -> Result<Vec<PathBuf>, String> {
        match std::fs::read_dir(p) {
            Ok(rd) => Ok(rd.filter_map(Result::ok).map(|e| e.path()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("list {}: {e}", p.display())),
        }
    };
    for top in list(root)? {
        let is_top = top
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=1000).contains(&n));
        if !is_top {
            continue;
        }
        for dir in list(&top)? {
            let Some(folder) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| ChunkFolder::try_from(n.to_owned()).ok())
            else {
                continue;
            };
            let mut left = 0;
            for file in list(&dir)? {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if name == INDEX_FILE_NAME {
                    continue;
                }
                if let Some(key) = ChunkKey::parse_file_name(&name) {
                    out.chunks += 1;
                    if referenced(ctx, disk, &key)? || !older_than(&file, grace) {
                        left += 1;
                        continue;
                    }
                    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
                    let addr = ChunkAddr {
                        folder: folder.clone(),
                        key,
                    };
                    match ctx.store.delete_chunk(disk, &addr) {
                        Ok(_) => {
                            out.removed += 1;
                            out.bytes += size;
                            tracing::info!(chunk = %key, %disk, "removed a chunk no stripe refers to");
                        }
                        Err(e) => return Err(format!("remove chunk {key} on {disk}: {e}")),
                    }
                } else if name.ends_with(".tmp") && name.starts_with('.') {
                    if older_than(&file, grace) && std::fs::remove_file(&file).is_ok() {
                        out.temps += 1;
                    } else {
                        left += 1;
                    }
                } else {
                    left += 1; // not ours: left alone
                }
            }
            let index = dir.join(INDEX_FILE_NAME);
            if left == 0 && (!index.exists() || older_than(&index, grace)) {
                let _ = std::fs::remove_file(&index);
                if std::fs::remove_dir(&dir).is_ok() {
                    out.folders += 1;
                }
            } else if left > 0 {
                match ctx.store.compact_index(disk, &folder) {
                    Ok(true) => out.indexes += 1,
                    Ok(false) => {}
                    Err(e) => return Err(format!("compact the index of {}: {e}", dir.display())),
                }
            }
        }
    }
    Ok(out)
}

/// Removes the entries of [`super::ORPHAN_DIR`] (files unlinked while a mount had them
/// open, whose mount crashed before the last close), with their chunks: one no client has
/// open once unchanged for `closed_grace`, one whose openness is not known once unchanged
/// for `grace`; one a live client has open stays. Run by the master only. Returns how many
/// it removed.
pub async fn sweep_orphans(
    ctx: &HealContext,
    grace: Duration,
    closed_grace: Duration,
) -> Result<u64, String> {
    use crate::meta::{MetadataOp, Timestamp};
    let e = |e: crate::meta::MetaError| e.to_string();
    let Some(dir) = ctx
        .meta
        .lookup(crate::ids::FileId::ROOT, super::ORPHAN_DIR)
        .map_err(e)?
    else {
        return Ok(0);
    };
    let now = Timestamp::now().0;
    let mut removed = 0;
    for entry in ctx.meta.readdir(dir.ino).map_err(e)? {
        let Some(attr) = ctx.meta.attr(entry.ino).map_err(e)? else {
            continue;
        };
        let changed = attr.ctime.0.max(attr.mtime.0);
        let open = match &ctx.open_files {
            Some(o) => o.is_open(entry.ino.0).await,
            None => None,
        };
        let wait = match open {
            Some(true) => continue, // a live mount still reads or writes it
            Some(false) => closed_grace,
            None => grace,
        };
        if now.saturating_sub(changed) < wait.as_nanos() as i64 {
            continue;
        }
        let op = MetadataOp::Unlink {
            parent: dir.ino,
            name: entry.name.clone(),
            time: Timestamp::now(),
        };
        match ctx.log.submit(op).await {
            Ok(Ok(applied)) => {
                removed += 1;
                tracing::info!(name = %entry.name, "removed a file a crashed mount left unlinked but open");
                let store = ctx.store.clone();
                let garbage = applied.garbage;
                let _ = tokio::task::spawn_blocking(move || {
                    for g in garbage {
                        let _ = store.delete_chunk(&g.disk, &g.addr());
                    }
                })
                .await;
            }
            Ok(Err(_)) => {} // gone meanwhile (its mount closed it)
            Err(err) => return Err(err.to_string()),
        }
    }
    Ok(removed)
}

/// True unless the metadata says chunk `key` on `disk` is garbage: the chunk is kept when
/// metadata places it there, when it is newer than what this metadata replica knows of its
/// stripe (a write this replica has not seen yet), and when its file is newer than the
/// replica's inode numbers. It is garbage when its file was deleted, or its stripe has a
/// newer generation or keeps this shard elsewhere; a stripe the replica does not know in an
/// existing file counts as garbage only past the grace time (checked by the caller).
fn referenced(ctx: &HealContext, disk: &DiskId, key: &ChunkKey) -> Result<bool, String> {
    let e = |e: crate::meta::MetaError| e.to_string();
    if key.file.0 >= ctx.meta.next_ino().map_err(e)? {
        return Ok(true);
    }
    Ok(
        match ctx
            .meta
            .chunk_place(key.file, key.stripe, key.index)
            .map_err(e)?
        {
            Some((generation, d)) => {
                (generation == key.generation && &d == disk) || generation < key.generation
            }
            None => ctx
                .meta
                .stripe(key.file, key.stripe)
                .map_err(e)?
                .is_some_and(|s| s.generation < key.generation),
        },
    )
}

/// Sweeps this node's disks every `every`, one disk a step.
pub struct GarbageWorker {
    ctx: Arc<HealContext>,
    disks: Vec<(DiskId, PathBuf)>,
    name: &'static str,
    status: WorkerStatus,
    next: usize,
    last_pass: Option<std::time::Instant>,
    started: std::time::Instant,
    every: Duration,
    grace: Duration,
}

impl GarbageWorker {
    /// The garbage worker of this node over its own `disks`.
    pub fn new(
        ctx: Arc<HealContext>,
        disks: Vec<(DiskId, PathBuf)>,
        every: Duration,
        grace: Duration,
    ) -> GarbageWorker {
        let name: &'static str = Box::leak(garbage_worker_name(&ctx.node).into_boxed_str());
        let status = ctx.meta.worker(name).map(|(_, s)| s).unwrap_or_default();
        GarbageWorker {
            ctx,
            disks,
            name,
            status,
            next: 0,
            last_pass: None,
            started: std::time::Instant::now(),
            every,
            grace,
        }
    }
}

#[async_trait]
impl Worker for GarbageWorker {
    fn name(&self) -> &'static str {
        self.name
    }

    fn status(&mut self) -> &mut WorkerStatus {
        &mut self.status
    }

    fn idle_wait(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn step(&mut self, _control: &WorkerControl) -> Result<Step, String> {
        if self.next == 0 {
            // Not before the node has run for a grace time: a replica that was stopped a
            // while catches up first, so it does not judge chunks by stale metadata.
            let settling = self.started.elapsed() < self.grace;
            if settling
                || self.last_pass.is_some_and(|t| t.elapsed() < self.every)
                || self.disks.is_empty()
            {
                if self.status.state != WorkerState::Done {
                    self.status.state = WorkerState::Idle;
                }
                return Ok(Step::Idle);
            }
            let passes = self.status.passes;
            let finished = self.status.finished;
            let orphans = if self.ctx.liveness.is_master() {
                sweep_orphans(
                    &self.ctx,
                    self.ctx.settings.orphan_grace,
                    self.ctx.settings.garbage_grace,
                )
                .await?
            } else {
                0
            };
            self.status = WorkerStatus {
                state: WorkerState::Active,
                passes,
                finished,
                total: self.disks.len() as u64,
                started: crate::meta::Timestamp::now(),
                removed: orphans,
                ..Default::default()
            };
        }
        let (disk, root) = self.disks[self.next].clone();
        let (ctx, grace) = (self.ctx.clone(), self.grace);
        let swept = tokio::task::spawn_blocking(move || sweep_disk(&ctx, &disk, &root, grace))
            .await
            .map_err(|e| format!("garbage task failed: {e}"))??;
        let st = &mut self.status;
        st.done += 1;
        st.found += swept.chunks;
        st.removed += swept.removed + swept.temps + swept.folders + swept.indexes;
        st.bytes += swept.bytes;
        self.next += 1;
        if self.next == self.disks.len() {
            self.next = 0;
            self.last_pass = Some(std::time::Instant::now());
            st.state = WorkerState::Done;
            st.passes += 1;
            st.finished = crate::meta::Timestamp::now();
        }
        Ok(Step::Busy {
            bytes: swept.bytes,
            ops: swept.chunks.max(1),
        })
    }
}

debug_by_name!(GarbageWorker);
