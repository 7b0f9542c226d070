//! The metrics of a node over a memory store and a real SQLite file, scraped and read back
//! with a Prometheus text-format parser.

use super::{MeteredStore, Metrics};
use crate::ids::{ChunkKey, DiskId, FileId, NodeId};
use crate::meta::{LocalLog, MetaStore, MetadataLog};
use crate::node::{CreateKind, NodeFs};
use crate::placement::SpreadPlacement;
use crate::policy::{PolicySet, StoragePolicy};
use crate::store::{ChunkAddr, ChunkFolder, ChunkStore, MemoryChunkStore};
use std::sync::Arc;

const STRIPE: usize = 2 * 16384;

/// The value of the series `name` whose labels include every pair of `labels`, summed over
/// the series that match; `None` when none does.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the metrics parse as Prometheus text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_the_disks_the_data_and_the_chunk_operations_moving() {
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<(DiskId, u64)> = (0..3).map(|i| (DiskId(format!("d{i}")), 1 << 30)).collect();
    let memory = Arc::new(MemoryChunkStore::new(&disks));
    let metrics = Metrics::new();
    let store: Arc<dyn ChunkStore> = Arc::new(MeteredStore::new(memory.clone(), metrics.clone()));
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.sqlite")).unwrap());
    let log: Arc<dyn MetadataLog> = Arc::new(LocalLog::new(meta.clone()).unwrap());
    let policy = StoragePolicy {
        k: 2,
        m: 1,
        stripe_size: STRIPE as u64,
    };
    let fs = Arc::new(NodeFs::new(
        NodeId("n1".into()),
        store.clone(),
        log,
        meta,
        PolicySet::single("t", policy),
        Arc::new(SpreadPlacement),
    ));

    let before = parse(&metrics.render(&fs, None));
    for d in ["d0", "d1", "d2"] {
        assert_eq!(
            value(&before, "wormfs_disk_capacity_bytes", &[("disk", d)]),
            Some((1u64 << 30) as f64),
            "{d}"
        );
        assert_eq!(
            value(&before, "wormfs_disk_healthy", &[("disk", d)]),
            Some(1.0)
        );
    }
    assert_eq!(value(&before, "wormfs_inodes", &[]), Some(1.0), "the root");
    assert_eq!(value(&before, "wormfs_cluster_is_master", &[]), Some(1.0));
    assert_eq!(value(&before, "wormfs_chunk_operations_total", &[]), None);
    let applied_before = value(&before, "wormfs_metadata_applied_index", &[]).unwrap();
    for w in ["scrub", "repair"] {
        assert!(
            value(&before, "wormfs_worker_state", &[("worker", w)]).is_some(),
            "worker {w} is listed"
        );
    }

    let a = fs
        .create(FileId::ROOT, "movie", CreateKind::File, 0o644, 0, 0)
        .await
        .unwrap();
    for s in 0..2u64 {
        fs.write_stripe(a.ino, s, vec![s as u8 + 1; STRIPE])
            .await
            .unwrap();
    }
    let back = fs.read_stripe(a.ino, 0).await.unwrap();
    assert_eq!(back, Some(vec![1; STRIPE]));
    // a chunk asked of a disk that does not hold it
    let nowhere = ChunkAddr {
        folder: ChunkFolder::for_path("/nowhere"),
        key: ChunkKey {
            file: FileId(999),
            stripe: 0,
            generation: 1,
            index: 0,
        },
    };
    assert!(store.read_chunk(&DiskId("d0".into()), &nowhere).is_err());

    let after = parse(&metrics.render(&fs, None));
    // 2 stripes of 3 chunks, one per disk
    assert_eq!(
        value(&after, "wormfs_chunk_operations_total", &[("op", "put")]),
        Some(6.0)
    );
    for d in ["d0", "d1", "d2"] {
        assert_eq!(
            value(
                &after,
                "wormfs_chunk_operations_total",
                &[("op", "put"), ("disk", d)]
            ),
            Some(2.0),
            "{d}"
        );
    }
    let written = value(
        &after,
        "wormfs_chunk_io_bytes_total",
        &[("direction", "written")],
    )
    .unwrap();
    assert!(
        written >= (2 * STRIPE) as f64 * 1.5,
        "2 stripes of 2+1 chunks: {written} bytes"
    );
    assert!(
        value(
            &after,
            "wormfs_chunk_io_bytes_total",
            &[("direction", "read")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(
            &after,
            "wormfs_chunk_errors_total",
            &[("disk", "d0"), ("op", "read"), ("kind", "missing")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&after, "wormfs_inodes", &[]), Some(2.0));
    assert_eq!(
        value(&after, "wormfs_stored_bytes", &[]),
        Some((2 * STRIPE) as f64)
    );
    assert!(value(&after, "wormfs_metadata_applied_index", &[]).unwrap() > applied_before);
    // the chunks took space on each disk
    assert!(
        value(&after, "wormfs_disk_free_bytes", &[]).unwrap()
            < value(&before, "wormfs_disk_free_bytes", &[]).unwrap()
    );
}

#[test]
fn client_bytes_and_grpc_calls_are_counted_by_kind() {
    let metrics = Metrics::new();
    metrics.client_bytes(true, 100);
    metrics.client_bytes(true, 50);
    metrics.client_bytes(false, 7);
    metrics.grpc_call("Create", "0", 0.002);
    metrics.grpc_call("Create", "0", 0.004);
    metrics.grpc_call("Create", "6", 0.001);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
    let s = parse(&text);
    assert_eq!(
        value(&s, "wormfs_client_bytes_total", &[("direction", "read")]),
        Some(150.0)
    );
    assert_eq!(
        value(&s, "wormfs_client_bytes_total", &[("direction", "written")]),
        Some(7.0)
    );
    assert_eq!(
        value(
            &s,
            "wormfs_grpc_requests_total",
            &[("method", "Create"), ("code", "0")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "wormfs_grpc_requests_total",
            &[("method", "Create"), ("code", "6")]
        ),
        Some(1.0)
    );
    let count = s
        .samples
        .iter()
        .find(|x| x.metric == "wormfs_grpc_request_duration_seconds")
        .map(|x| match &x.value {
            prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
            _ => None,
        });
    assert_eq!(count, Some(Some(3.0)), "every call is in the histogram");
}
