//! The heal workers in one process over real disk directories and a real SQLite file: a
//! node's `NodeFs` writes files, chunk files are damaged on disk, and the scrub and repair
//! workers (run by `HealService`, as a node runs them) find and rebuild them.

use super::*;
use crate::ids::{DiskId, FileId, NodeId};
use crate::meta::{ChunkState, LocalLog, MetaStore, MetadataLog, StripeRecord};
use crate::node::{CreateKind, NodeFs};
use crate::placement::SpreadPlacement;
use crate::policy::{PolicySet, StoragePolicy};
use crate::store::{ChunkStore, DiskChunkStore};
use crate::worker::{names, Budget, WorkerState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The store, the log and the metadata of a test node.
type Parts = (Arc<dyn ChunkStore>, Arc<dyn MetadataLog>, Arc<MetaStore>);

struct Node {
    _dir: tempfile::TempDir,
    fs: Arc<NodeFs>,
    ctx: Arc<Parts>,
}

fn node(disks: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..disks)
        .map(|i| {
            let p = dir.path().join(format!("disk{i}"));
            std::fs::create_dir(&p).unwrap();
            p
        })
        .collect();
    let ids: Vec<(DiskId, PathBuf)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (DiskId(format!("d{i}")), p.clone()))
        .collect();
    let store: Arc<dyn ChunkStore> = Arc::new(DiskChunkStore::open(&ids).unwrap());
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.sqlite")).unwrap());
    let log: Arc<dyn MetadataLog> = Arc::new(LocalLog::new(meta.clone()).unwrap());
    let policies = PolicySet::single(
        "t",
        StoragePolicy {
            k: 4,
            m: 2,
            stripe_size: 4 * 16384,
        },
    );
    let fs = Arc::new(NodeFs::new(
        NodeId("n1".into()),
        store.clone(),
        log.clone(),
        meta.clone(),
        policies,
        Arc::new(SpreadPlacement),
    ));
    Node {
        _dir: dir,
        fs,
        ctx: Arc::new((store, log, meta)),
    }
}

impl Node {
    async fn record_self(&self) {
        use crate::meta::{DiskInfo, MetadataOp, NodeInfo};
        let log = &self.ctx.1;
        log.submit(MetadataOp::UpsertNode(NodeInfo {
            id: NodeId("n1".into()),
            address: "test".into(),
        }))
        .await
        .unwrap()
        .unwrap();
        for d in self.ctx.0.disks().unwrap() {
            log.submit(MetadataOp::UpsertDisk(DiskInfo {
                id: d.disk,
                node: NodeId("n1".into()),
                path: String::new(),
                total: d.total,
                free: d.free,
            }))
            .await
            .unwrap()
            .unwrap();
        }
    }

    /// Writes `stripes` full stripes of patterned bytes as `/name`.
    async fn write(&self, name: &str, stripes: u64) -> (FileId, Vec<u8>) {
        let a = self
            .fs
            .create(FileId::ROOT, name, CreateKind::File, 0o644, 0, 0)
            .await
            .unwrap();
        let size = 4 * 16384;
        let mut all = Vec::new();
        for i in 0..stripes {
            let data: Vec<u8> = (0..size)
                .map(|b| (b as u64 * 7 + i * 13 + a.ino.0) as u8)
                .collect();
            self.fs.write_stripe(a.ino, i, data.clone()).await.unwrap();
            all.extend(data);
        }
        (a.ino, all)
    }

    async fn read(&self, ino: FileId, stripes: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..stripes {
            out.extend(self.fs.read_stripe(ino, i).await.unwrap().unwrap());
        }
        out
    }

    fn stripe(&self, ino: FileId, i: u64) -> StripeRecord {
        self.ctx.2.stripe(ino, i).unwrap().unwrap()
    }

    fn chunk_path(&self, ino: FileId, i: u64, index: u16) -> PathBuf {
        let s = self.stripe(ino, i);
        let c = s.chunks.iter().find(|c| c.index == index).unwrap();
        let layout = self.ctx.2.attr(ino).unwrap().unwrap().layout.unwrap();
        let addr = crate::engine::chunk_addr(ino, &layout, &s, index);
        self.ctx.0.chunk_file(&c.disk, &addr).unwrap()
    }

    fn service(&self, settings: HealSettings) -> HealService {
        HealService::start(HealContext {
            node: NodeId("n1".into()),
            store: self.ctx.0.clone(),
            log: self.ctx.1.clone(),
            meta: self.ctx.2.clone(),
            placement: Arc::new(SpreadPlacement),
            liveness: Arc::new(SoloNode(NodeId("n1".into()))),
            settings,
            local_disks: Vec::new(),
            open_files: None,
        })
    }
}

fn quick() -> HealSettings {
    HealSettings {
        scrub_every: None,
        deep_scrub_every: None,
        repair_every: Duration::from_millis(200),
        budget: Budget::default(),
        enabled: true,
        meta_backup_every: None,
        garbage_every: None,
        garbage_grace: Duration::from_secs(3600),
        orphan_grace: Duration::from_secs(3600),
    }
}

async fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn flip(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_scrub_finds_rot_in_data_and_parity_and_repair_rebuilds_it() {
    let n = node(7);
    n.record_self().await;
    let (ino, data) = n.write("f", 6).await;
    // rot in a data chunk, in a parity chunk, a truncated chunk and a deleted one
    flip(&n.chunk_path(ino, 0, 1), 3000);
    flip(&n.chunk_path(ino, 1, 5), 3000);
    let t = n.chunk_path(ino, 2, 4);
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::remove_file(n.chunk_path(ino, 3, 0)).unwrap();
    // the parity rot is invisible to reads: every data chunk of stripe 1 is fine
    assert_eq!(n.read(ino, 6).await, data);

    let heal = n.service(quick());
    n.fs.control_worker(names::SCRUB, "start", true, 0, 0)
        .await
        .unwrap();
    let meta = n.ctx.2.clone();
    wait_until("the deep scrub to finish", Duration::from_secs(20), || {
        let (_, s) = meta.worker(names::SCRUB).unwrap();
        s.request == 1 && s.state == WorkerState::Done
    })
    .await;
    let (_, scrub) = meta.worker(names::SCRUB).unwrap();
    // The read above found (and recorded) the two damaged data chunks; the two damaged
    // parity chunks, which no read touches, are the scrub's.
    assert!(scrub.found >= 2, "{scrub:?}");
    wait_until(
        "repair of all four stripes",
        Duration::from_secs(20),
        || {
            (0..4).all(|i| {
                let s = n.stripe(ino, i);
                s.chunks.len() == 6 && s.chunks.iter().all(|c| c.state == ChunkState::Ok)
            })
        },
    )
    .await;
    // every chunk verifies again, on distinct disks
    for i in 0..6 {
        let s = n.stripe(ino, i);
        let mut disks: Vec<_> = s.chunks.iter().map(|c| c.disk.clone()).collect();
        disks.sort();
        disks.dedup();
        assert_eq!(disks.len(), 6, "stripe {i}: {s:?}");
    }
    n.fs.control_worker(names::SCRUB, "start", true, 0, 0)
        .await
        .unwrap();
    wait_until("the second deep scrub", Duration::from_secs(20), || {
        let (_, s) = meta.worker(names::SCRUB).unwrap();
        s.request == 2 && s.state == WorkerState::Done
    })
    .await;
    let (_, again) = meta.worker(names::SCRUB).unwrap();
    assert_eq!(again.found, 0, "{again:?}");
    assert!(n.ctx.2.stripe_verified(ino, 1).unwrap() > 0);
    heal.shutdown().await;
    assert_eq!(n.read(ino, 6).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_pass_resumes_from_its_cursor_under_a_new_runner() {
    let n = node(6);
    n.record_self().await;
    for f in 0..8 {
        n.write(&format!("f{f}"), 4).await;
    }
    // slow enough to stop in the middle: 20 chunk stats a second, 6 a stripe
    let slow = HealSettings {
        budget: Budget {
            bytes_per_sec: 0,
            ops_per_sec: 20,
        },
        ..quick()
    };
    let heal = n.service(slow.clone());
    n.fs.control_worker(names::SCRUB, "start", false, 0, 0)
        .await
        .unwrap();
    let meta = n.ctx.2.clone();
    wait_until("the scrub to be under way", Duration::from_secs(20), || {
        let (_, s) = meta.worker(names::SCRUB).unwrap();
        s.state == WorkerState::Active && s.cursor.is_some() && s.done > 0
    })
    .await;
    heal.shutdown().await;
    let (_, stopped) = meta.worker(names::SCRUB).unwrap();
    assert!(
        stopped.cursor.is_some() && stopped.done < stopped.total,
        "{stopped:?}"
    );

    // the next runner (a new master) takes the pass up where it stopped
    let heal = n.service(quick());
    wait_until(
        "the resumed pass to finish",
        Duration::from_secs(20),
        || meta.worker(names::SCRUB).unwrap().1.state == WorkerState::Done,
    )
    .await;
    let (_, done) = meta.worker(names::SCRUB).unwrap();
    assert_eq!(
        done.started, stopped.started,
        "the same pass, not a new one"
    );
    assert_eq!(done.passes, stopped.passes + 1);
    assert_eq!(done.done, done.total);
    heal.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_repair_waits_and_resumes() {
    let n = node(6);
    n.record_self().await;
    let (ino, data) = n.write("f", 2).await;
    n.fs.control_worker(names::REPAIR, "pause", false, 0, 0)
        .await
        .unwrap();
    std::fs::remove_file(n.chunk_path(ino, 0, 2)).unwrap();
    let heal = n.service(HealSettings {
        scrub_every: Some(Duration::from_secs(3600)),
        ..quick()
    });
    let meta = n.ctx.2.clone();
    // the shallow scrub that runs at start finds the chunk; repair stays paused
    wait_until(
        "the scrub to record the loss",
        Duration::from_secs(20),
        || n.stripe(ino, 0).chunks[2].state == ChunkState::Missing,
    )
    .await;
    wait_until("repair to show paused", Duration::from_secs(20), || {
        meta.worker(names::REPAIR).unwrap().1.state == WorkerState::Paused
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(n.stripe(ino, 0).chunks[2].state, ChunkState::Missing);
    n.fs.control_worker(names::REPAIR, "resume", false, 0, 0)
        .await
        .unwrap();
    wait_until("the repair", Duration::from_secs(20), || {
        n.stripe(ino, 0).chunks[2].state == ChunkState::Ok
    })
    .await;
    assert!(n.chunk_path(ino, 0, 2).exists());
    heal.shutdown().await;
    assert_eq!(n.read(ino, 2).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_sweep_of_reports_agrees_with_assessing_each_stripe() {
    use crate::meta::MetadataOp;
    let n = node(7);
    n.record_self().await;
    let mut inos = Vec::new();
    for f in 0..5 {
        inos.push(n.write(&format!("f{f}"), 3).await.0);
    }
    // some damage recorded, so margins differ from stripe to stripe
    for (i, ino) in inos.iter().enumerate() {
        for c in 0..(i as u16 % 3) {
            let s = n.stripe(*ino, 1);
            n.ctx
                .1
                .submit(MetadataOp::SetChunkState {
                    ino: *ino,
                    stripe: 1,
                    generation: s.generation,
                    chunk: c,
                    state: ChunkState::Corrupt,
                })
                .await
                .unwrap()
                .unwrap();
        }
    }
    let now = n.fs.observe().unwrap();
    for lose in [
        vec![],
        vec![DiskId("d0".into())],
        vec![DiskId("d1".into()), DiskId("d2".into())],
    ] {
        let live = now.without(&[], &lose);
        let (mut degraded, mut at_risk, mut unreadable, mut stripes) = (0, 0, 0, 0);
        let mut cursor = None;
        loop {
            let page = n.ctx.2.stripes_after(cursor, 4).unwrap();
            for row in &page.rows {
                let h = assess(&row.stripe, &live);
                stripes += 1;
                degraded += u64::from(h.is_degraded());
                at_risk += u64::from(h.margin == 0);
                unreadable += u64::from(h.margin < 0);
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let r = n.fs.risk(&[], &lose, 0, 100).unwrap();
        assert_eq!(
            (r.stripes, r.degraded, r.at_risk, r.unreadable),
            (stripes, degraded, at_risk, unreadable),
            "losing {lose:?}"
        );
        assert_eq!(stripes, 15);
        // swept in two parts of the inode range (as on two threads), the sums are the same
        let mid = inos[2].0;
        let parts: Vec<_> = [0..mid, mid..u64::MAX]
            .into_iter()
            .map(|r| n.fs.risk_part(r, &live, 0, 100).unwrap())
            .collect();
        let sum = |f: fn(&crate::node::RiskReport) -> u64| {
            parts.iter().map(|p| f(&p.report)).sum::<u64>()
        };
        assert_eq!(
            (
                sum(|r| r.stripes),
                sum(|r| r.degraded),
                sum(|r| r.at_risk),
                sum(|r| r.unreadable)
            ),
            (stripes, degraded, at_risk, unreadable)
        );
        assert!(parts.iter().all(|p| p.report.stripes > 0));
    }
}
