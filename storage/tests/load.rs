//! Bulk load (storage/src/load.rs): rows written straight into segments
//! must read exactly as the same rows committed the ordinary way, at every
//! coordinate, after later updates, deletes and erases, after compaction,
//! on a node following the log and after a restart;
//! a repeated `_id`, a table that holds rows and a small load are refused
//! or handed back with nothing written; a change feed replays a load.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMicrosecondType};
use strata_storage::feed::FeedStart;
use strata_storage::{
    Coordinate, Engine, EngineConfig, LoadOutcome, Op, OpKind, StoreLocation, TimeSelector,
    TxRequest, OPEN,
};

const N: i64 = 120_000;

fn ts(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

/// Rows `from..to`: `v = 10 * id`; every 7th row has a closed valid
/// period (the bounded tier), the others none given.
fn rows_batch(from: i64, to: i64) -> RecordBatch {
    let ids: Vec<i64> = (from..to).collect();
    let vf: Vec<Option<i64>> = ids
        .iter()
        .map(|i| (i % 7 == 0).then_some(1_000_000 + i))
        .collect();
    let vt: Vec<Option<i64>> = ids
        .iter()
        .map(|i| (i % 7 == 0).then_some(5_000_000 + i))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("_valid_from", vf_type(), true),
        Field::new("_valid_to", vf_type(), true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i * 10).collect::<Vec<_>>(),
            )),
            ts(vf),
            ts(vt),
        ],
    )
    .unwrap()
}

fn vf_type() -> DataType {
    DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()))
}

fn batches() -> Vec<RecordBatch> {
    (0..N)
        .step_by(10_000)
        .map(|s| rows_batch(s, (s + 10_000).min(N)))
        .collect()
}

fn put(ids: &[i64], v: i64) -> Op {
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    Op {
        kind: OpKind::Put,
        table: "t".into(),
        batch: RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from(vec![v; ids.len()])),
            ],
        )
        .unwrap(),
    }
}

fn id_op(kind: OpKind, id: i64) -> Op {
    let schema = Arc::new(Schema::new(vec![Field::new("_id", DataType::Int64, false)]));
    Op {
        kind,
        table: "t".into(),
        batch: RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))]).unwrap(),
    }
}

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.compaction.background = false;
    // Small segments: the load is written in several chunks.
    c.compaction.target_bytes = 1 << 20;
    c
}

async fn at(e: &Engine, ops: Vec<Op>, t: i64) {
    e.commit(TxRequest {
        ops,
        system_time: Some(t),
        read_at: None,
    })
    .await
    .unwrap();
}

type Row = (i64, Option<i64>, i64, i64, i64, i64);

/// Every row a scan returns at `coord`, sorted.
async fn read(e: &Engine, coord: Coordinate) -> Vec<Row> {
    let Some(scan) = e.scan("t", coord, None).unwrap() else {
        return Vec::new();
    };
    let mut batches = scan.live.clone();
    for i in 0..scan.segments.len() {
        batches.extend(scan.segment(i).await.unwrap());
    }
    let mut out = Vec::new();
    for b in batches {
        let id = b
            .column_by_name("_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let v = b
            .column_by_name("v")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let t = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
        };
        let (vf, vt, sf, st) = (
            t("_valid_from"),
            t("_valid_to"),
            t("_system_from"),
            t("_system_to"),
        );
        let o =
            |a: &TimestampMicrosecondArray, i: usize| if a.is_null(i) { OPEN } else { a.value(i) };
        for i in 0..b.num_rows() {
            out.push((
                id.value(i),
                v.is_valid(i).then(|| v.value(i)),
                o(&vf, i),
                o(&vt, i),
                o(&sf, i),
                o(&st, i),
            ));
        }
    }
    out.sort();
    out
}

fn coords(times: &[i64]) -> Vec<Coordinate> {
    let mut v = vec![Coordinate::all()];
    for &t in times {
        v.push(Coordinate::as_of(t, t));
        v.push(Coordinate::as_of(t, 1_000_000 + 14));
        v.push(Coordinate {
            system: TimeSelector::AsOf(t),
            valid: TimeSelector::All,
        });
    }
    v
}

async fn same(a: &Engine, b: &Engine, times: &[i64], when: &str) {
    for c in coords(times) {
        let (x, y) = (read(a, c.clone()).await, read(b, c.clone()).await);
        assert_eq!(x.len(), y.len(), "{when}: row counts differ at {c:?}");
        assert!(x == y, "{when}: rows differ at {c:?}");
    }
}

async fn bulk(e: &Engine, input: Vec<RecordBatch>) -> LoadOutcome {
    let mut load = e
        .begin_load("t")
        .await
        .unwrap()
        .expect("the table is empty");
    for b in input {
        load.push(b).await.unwrap();
    }
    load.commit().await.unwrap()
}

fn files_under(dir: &Path, sub: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(sub)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_reads_as_the_same_rows_committed_the_ordinary_way() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Engine::open(config(da.path())).await.unwrap();
    let b = Engine::open(config(db.path())).await.unwrap();
    // A second node on the load's store, opened before it.
    let follower = Engine::open(config(da.path())).await.unwrap();
    let LoadOutcome::Loaded { rows, commit } = bulk(&a, batches()).await else {
        panic!("not loaded")
    };
    assert_eq!(rows, N as u64);
    let t0 = commit.system_time;
    at(
        &b,
        batches()
            .into_iter()
            .map(|batch| Op {
                kind: OpKind::Put,
                table: "t".into(),
                batch,
            })
            .collect(),
        t0,
    )
    .await;
    let segs = a.scan("t", Coordinate::all(), None).unwrap().unwrap();
    assert!(segs.live.is_empty(), "a load goes around the live index");
    assert!(
        segs.segments.len() >= 4,
        "several chunks, current and bounded: {}",
        segs.segments.len()
    );
    assert!(files_under(da.path(), "tables")
        .iter()
        .any(|f| f.contains("-bounded")));
    same(&a, &b, &[t0 - 1, t0, t0 + 1], "after the load").await;
    assert_eq!(read(&a, Coordinate::as_of(t0 - 1, t0 - 1)).await, vec![]);

    // A node following the log applies the load's record; a restart reads
    // the manifest the load published.
    assert_eq!(follower.catch_up().await.unwrap(), 1);
    same(&follower, &b, &[t0 - 1, t0, t0 + 1], "followed").await;
    drop(follower);
    let a2 = Engine::open(config(da.path())).await.unwrap();
    same(&a2, &b, &[t0 - 1, t0, t0 + 1], "reopened after the load").await;
    drop(a2);

    // Later writes resolve against the loaded rows like against any.
    let (t1, t2, t3) = (t0 + 1_000, t0 + 2_000, t0 + 3_000);
    for e in [&a, &b] {
        at(e, vec![put(&[5, 14, N + 1], -1)], t1).await;
        at(e, vec![id_op(OpKind::Delete, 6), put(&[21], -2)], t2).await;
        at(e, vec![id_op(OpKind::Erase, 7)], t3).await;
    }
    let times = [t0, t1, t2, t3, t3 + 1];
    same(&a, &b, &times, "after updates, a delete and an erase").await;
    assert!(
        read(&a, Coordinate::all()).await.iter().all(|r| r.0 != 7),
        "erased"
    );
    a.checkpoint().await.unwrap();
    b.checkpoint().await.unwrap();
    same(&a, &b, &times, "after a checkpoint").await;
    drop(a);
    let a3 = Engine::open(config(da.path())).await.unwrap();
    same(&a3, &b, &times, "reopened from the manifest").await;
    // The table holds rows now: no second bulk load.
    assert!(a3.begin_load("t").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_loads_nothing_and_leaves_no_objects() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).await.unwrap();
    // Within one chunk, and across chunks.
    for input in [vec![rows_batch(0, 70_000), rows_batch(69_999, 70_000)], {
        let mut v = batches();
        v.push(rows_batch(3, 4));
        v
    }] {
        assert!(matches!(bulk(&e, input).await, LoadOutcome::Repeated));
        assert!(read(&e, Coordinate::all()).await.is_empty());
        assert_eq!(files_under(dir.path(), "tables"), Vec::<String>::new());
    }
    // The table is still empty: a load of unique ids goes through.
    assert!(matches!(
        bulk(&e, batches()).await,
        LoadOutcome::Loaded { .. }
    ));
    assert_eq!(read(&e, Coordinate::all()).await.len(), N as usize);
}

#[tokio::test]
async fn a_small_load_is_handed_back_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).await.unwrap();
    let LoadOutcome::Small(back) = bulk(&e, vec![rows_batch(0, 100)]).await else {
        panic!("a small load is not written as segments")
    };
    assert_eq!(back, vec![rows_batch(0, 100)]);
    assert!(files_under(dir.path(), "tables").is_empty());
    assert_eq!(e.applied_seq(), 0, "nothing committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_feed_replays_a_load_until_its_segments_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path())).await.unwrap();
    let LoadOutcome::Loaded { commit, .. } = bulk(&e, batches()).await else {
        panic!("not loaded")
    };
    let mut feed = e.change_feed("t", FeedStart::Beginning).await.unwrap();
    let mut got: Vec<(i64, i64, Option<i64>, Option<i64>)> = Vec::new();
    while let Some(b) = feed.try_next().await.unwrap() {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        assert!(col("_op")
            .as_string::<i32>()
            .iter()
            .all(|o| o == Some("put")));
        let (id, v) = (col("_id"), col("v"));
        let (vf, vt) = (col("_valid_from"), col("_valid_to"));
        let (vf, vt) = (
            vf.as_primitive::<TimestampMicrosecondType>(),
            vt.as_primitive::<TimestampMicrosecondType>(),
        );
        for r in 0..b.num_rows() {
            got.push((
                id.as_primitive::<Int64Type>().value(r),
                v.as_primitive::<Int64Type>().value(r),
                vf.is_valid(r).then(|| vf.value(r)),
                vt.is_valid(r).then(|| vt.value(r)),
            ));
        }
    }
    got.sort();
    let want: Vec<_> = (0..N)
        .map(|i| {
            if i % 7 == 0 {
                (i, i * 10, Some(1_000_000 + i), Some(5_000_000 + i))
            } else {
                (i, i * 10, Some(commit.system_time), None)
            }
        })
        .collect();
    assert!(
        got == want,
        "the feed gives every loaded row once, as loaded"
    );
    // An erase rewrites the segment holding entity 8: the load is no longer
    // replayable, and the feed says so instead of leaking erased values.
    e.commit(TxRequest {
        ops: vec![id_op(OpKind::Erase, 8)],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut again = e.change_feed("t", FeedStart::Beginning).await.unwrap();
    let err = again.try_next().await.unwrap_err().to_string();
    assert!(err.contains("cannot replay that load"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_is_refused_when_another_node_wrote_the_table_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let a = Engine::open(config(dir.path())).await.unwrap();
    let b = Engine::open(config(dir.path())).await.unwrap();
    let mut load = a.begin_load("t").await.unwrap().expect("empty");
    for batch in batches() {
        load.push(batch).await.unwrap();
    }
    // Node B (its own writer lock) puts a row into the table meanwhile.
    b.commit(TxRequest {
        ops: vec![put(&[N + 5], 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = load.commit().await.unwrap_err().to_string();
    assert!(
        err.contains("another node committed while the bulk load ran"),
        "{err}"
    );
    // Nothing of the load is left, and B's row is there for both.
    assert!(
        files_under(dir.path(), "tables")
            .iter()
            .all(|f| !f.starts_with("load-")),
        "{:?}",
        files_under(dir.path(), "tables")
    );
    a.catch_up().await.unwrap();
    assert_eq!(read(&a, Coordinate::all()).await.len(), 1);
    assert_eq!(read(&b, Coordinate::all()).await.len(), 1);
}
