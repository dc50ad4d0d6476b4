//! A node adopting a manifest another node published (every 2 s on a
//! serving node) must not let its readers see the state go back in time:
//! rows it has applied and shown must stay visible while it rebuilds its
//! state from the manifest and the log after it. (Before the rebuild was
//! done off to the side, a query in that window missed every row committed
//! after the manifest: an acknowledged row that vanished for a moment,
//! caught by tests/nodes.rs in CI.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use strata_storage::{Coordinate, Engine, EngineConfig, LatencyStore, Op, OpKind, TxRequest};

fn put(id: i64) -> Op {
    let schema = Arc::new(Schema::new(vec![Field::new("_id", DataType::Int64, false)]));
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![id]));
    Op {
        kind: OpKind::Put,
        table: "t".into(),
        batch: RecordBatch::try_new(schema, vec![ids]).unwrap(),
    }
}

async fn count(e: &Engine) -> usize {
    let s = e.latest_system_time();
    let Some(scan) = e.scan("t", Coordinate::as_of(s, s), None).unwrap() else {
        return 0;
    };
    let mut n: usize = scan.live.iter().map(|b| b.num_rows()).sum();
    for i in 0..scan.segments.len() {
        n += scan
            .segment(i)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_a_manifest_never_hides_applied_rows() {
    let store = LatencyStore::memory(Duration::from_millis(10));
    let open = || async {
        let mut cfg = EngineConfig::new(store.location("latency://adopt"));
        cfg.cache.size = Some(0);
        cfg.compaction.background = false;
        Engine::open(cfg).await.unwrap()
    };
    let a = open().await;
    let b = open().await;
    // A: ten commits, a flush (manifest covering them), ten more commits.
    for id in 0..10 {
        a.commit(TxRequest {
            ops: vec![put(id)],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    a.flush().await.unwrap();
    for id in 10..20 {
        a.commit(TxRequest {
            ops: vec![put(id)],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // B follows the log: all 20 rows, no manifest adopted yet.
    b.catch_up().await.unwrap();
    assert_eq!(count(&b).await, 20);
    // B adopts A's manifest while a reader on B counts rows without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let reader = {
        let (b, stop, lowest) = (b.clone(), stop.clone(), lowest.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                lowest.fetch_min(count(&b).await, Ordering::Relaxed);
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        b.adopt_newer_manifest().await.unwrap(),
        "no manifest to adopt"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(reads > 10, "the reader hardly ran ({reads} reads)");
    assert_eq!(
        lowest.load(Ordering::Relaxed),
        20,
        "a reader saw fewer rows while the node adopted the manifest"
    );
    assert_eq!(count(&b).await, 20);
}
