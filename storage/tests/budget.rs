//! The storage engine's shares of the memory budget: the live index
//! flushes when it would pass its share (a quarter), and open segment files
//! are kept within theirs (a quarter): the oldest are closed as new ones
//! open, once no reader holds them.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use strata_storage::{Coordinate, Engine, EngineConfig, Op, OpKind, StoreLocation, TxRequest};

/// `n` rows from `first` on, each with `pad` bytes of text.
fn put(first: i64, n: i64, pad: usize) -> TxRequest {
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("pad", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (first..first + n).collect();
    let text = "x".repeat(pad);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(vec![text.as_str(); n as usize])),
    ];
    TxRequest {
        ops: vec![Op {
            kind: OpKind::Put,
            table: "t".into(),
            batch: RecordBatch::try_new(schema, cols).unwrap(),
        }],
        system_time: None,
        read_at: None,
    }
}

fn config(dir: &Path, memory_limit: usize) -> EngineConfig {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.compaction.background = false;
    c.memory_limit = Some(memory_limit);
    c
}

async fn count(engine: &Engine) -> usize {
    let scan = engine.scan("t", Coordinate::all(), None).unwrap().unwrap();
    let mut n: usize = scan.live.iter().map(|b| b.num_rows()).sum();
    for i in 0..scan.segments.len() {
        n += scan.segment(i).await.unwrap().map_or(0, |b| b.num_rows());
    }
    n
}

#[tokio::test]
async fn the_live_index_flushes_at_its_share_of_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB: the live index may hold 4 MiB. Far below the row threshold
    // (a million rectangles), so only the byte budget can flush it.
    let c = config(dir.path(), 16 << 20);
    assert_eq!(c.live_budget(), 4 << 20);
    let engine = Engine::open(c).await.unwrap();
    // 40 transactions of 5,000 rows: ~100 bytes of values and ~180 bytes
    // of index per row, ~1.4 MB per transaction, 56 MB in all.
    for k in 0..40 {
        engine.commit(put(k * 5_000, 5_000, 40)).await.unwrap();
        let (live, _) = engine.table_stats("t").unwrap();
        // Flushed before it holds more than its share plus one transaction.
        assert!(live <= 20_000, "{live} rows live after transaction {k}");
    }
    let (live, segments) = engine.table_stats("t").unwrap();
    assert!(segments >= 10, "{segments} segments, {live} rows live");
    assert_eq!(count(&engine).await, 200_000);
}

#[tokio::test]
async fn open_segment_files_stay_within_their_share_of_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB: open files may map 16 MiB.
    let c = config(dir.path(), 64 << 20);
    assert_eq!(c.open_files_budget(), 16 << 20);
    let engine = Engine::open(c).await.unwrap();
    // 30 segments of ~1.3 MB (10,000 rows of ~120 bytes): ~40 MB in all.
    for k in 0..30 {
        engine.commit(put(k * 10_000, 10_000, 100)).await.unwrap();
        engine.flush().await.unwrap();
    }
    let total: u64 = engine.segments_info().iter().map(|s| s.bytes).sum();
    assert!(total > 32 << 20, "only {total} bytes of segments");
    // A full scan reads every segment; afterwards at most the budget is
    // mapped (the oldest were closed as later ones opened).
    assert_eq!(count(&engine).await, 300_000);
    let open = engine.open_file_bytes();
    assert!(open <= 16 << 20, "{open} bytes of segment files open");
    assert!(open > 0);
    let open_now = engine.segments_info().iter().filter(|s| s.open).count();
    assert!(open_now < 30, "all {open_now} segments still open");
    // Closed files open again on demand: a second scan answers the same.
    assert_eq!(count(&engine).await, 300_000);
}
