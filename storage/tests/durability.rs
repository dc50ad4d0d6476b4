//! Durability and refusal behaviour of the engine on a local directory:
//! group commit, the segment file format, corrupted log objects, pinned
//! system times and type conflicts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use arrow::ipc::reader::FileReader;
use strata_storage::time::fmt_micros;
use strata_storage::{
    CommitInfo, Coordinate, Engine, EngineConfig, EntityId, ErrorKind, Op, OpKind, StoreLocation,
    TxRequest, OPEN,
};

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A put of `_id` plus named columns.
fn put(table: &str, ids: &[i64], cols: Vec<(&str, ArrayRef)>) -> Op {
    let mut fields = vec![Field::new("_id", DataType::Int64, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec()))];
    for (name, a) in cols {
        fields.push(Field::new(name, a.data_type().clone(), true));
        arrays.push(a);
    }
    Op {
        kind: OpKind::Put,
        table: table.into(),
        batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap(),
    }
}

fn ints(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

fn tx(ops: Vec<Op>) -> TxRequest {
    TxRequest {
        ops,
        system_time: None,
        read_at: None,
    }
}

async fn open_local(dir: &Path) -> Arc<Engine> {
    Engine::open(EngineConfig::new(StoreLocation::Local(dir.to_path_buf())))
        .await
        .expect("open")
}

/// Log objects (`log/<seq:020>`) in a local data directory.
fn log_objects(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join("log")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    v.sort();
    v
}

fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_with_ext(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// (id, v, vf, vt, sf, st) of every row a scan returns; open bounds come back NULL and map to OPEN.
async fn rows(
    engine: &Engine,
    table: &str,
    coord: Coordinate,
) -> Vec<(i64, Option<i64>, i64, i64, i64, i64)> {
    let Some(scan) = engine.scan(table, coord, None).unwrap() else {
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
            .map(|c| c.as_primitive::<Int64Type>().clone());
        let ts = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
        };
        let (vf, vt, sf, st) = (
            ts("_valid_from"),
            ts("_valid_to"),
            ts("_system_from"),
            ts("_system_to"),
        );
        let open =
            |a: &TimestampMicrosecondArray, r: usize| if a.is_null(r) { OPEN } else { a.value(r) };
        for r in 0..b.num_rows() {
            out.push((
                id.value(r),
                v.as_ref().and_then(|v| (!v.is_null(r)).then(|| v.value(r))),
                vf.value(r),
                open(&vt, r),
                sf.value(r),
                open(&st, r),
            ));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------- (a) group commit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_grouped_and_survive_reopen() {
    const TASKS: i64 = 50;
    const PER_TASK: i64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_local(dir.path()).await;

    let mut handles = Vec::new();
    for task in 0..TASKS {
        let e = engine.clone();
        handles.push(tokio::spawn(async move {
            let mut out: Vec<(i64, CommitInfo)> = Vec::new();
            for j in 0..PER_TASK {
                let id = task * PER_TASK + j;
                let info = e
                    .commit(tx(vec![put("t", &[id], vec![("v", ints(&[id * 10]))])]))
                    .await
                    .unwrap();
                out.push((id, info));
            }
            out
        }));
    }
    let mut infos: BTreeMap<i64, CommitInfo> = BTreeMap::new();
    for h in handles {
        let out = h.await.unwrap();
        // One task's commits are ordered: later commits have later sequence numbers and times.
        for w in out.windows(2) {
            assert!(
                w[0].1.seq < w[1].1.seq && w[0].1.system_time < w[1].1.system_time,
                "{out:?}"
            );
        }
        infos.extend(out);
    }
    let n_tx = (TASKS * PER_TASK) as usize;
    assert_eq!(infos.len(), n_tx);

    // Every transaction has its own system time, and they increase with the sequence number.
    let times: BTreeSet<i64> = infos.values().map(|i| i.system_time).collect();
    assert_eq!(times.len(), n_tx, "two transactions share a system time");
    let mut by_seq: Vec<CommitInfo> = infos.values().copied().collect();
    by_seq.sort_by_key(|i| (i.seq, i.system_time));
    for w in by_seq.windows(2) {
        assert!(
            w[0].system_time < w[1].system_time,
            "system time does not follow the log order: {w:?}"
        );
    }

    let logs = log_objects(dir.path());
    let seqs: BTreeSet<u64> = infos.values().map(|i| i.seq).collect();
    assert!(
        logs.len() < n_tx,
        "group commit: expected fewer log objects than the {n_tx} transactions, found {}",
        logs.len()
    );
    // With 50 writers in flight, groups should be large. (Before followers
    // stopped waiting for the writer lock, this was ~150 objects for 200
    // transactions: almost every commit alone.)
    assert!(
        logs.len() <= n_tx / 4,
        "group commit is not grouping: {} log objects for {n_tx} transactions from {TASKS} concurrent writers",
        logs.len()
    );
    assert_eq!(
        logs.len(),
        seqs.len(),
        "every log object holds at least one acknowledged transaction"
    );
    assert_eq!(engine.applied_seq(), logs.len() as u64);
    assert_eq!(*seqs.iter().next_back().unwrap(), logs.len() as u64);
    let last = engine.latest_system_time();
    assert_eq!(last, *times.iter().next_back().unwrap());
    eprintln!("{n_tx} transactions in {} log objects", logs.len());

    drop(engine);
    let engine = open_local(dir.path()).await;
    assert_eq!(engine.applied_seq(), logs.len() as u64);
    assert_eq!(engine.latest_system_time(), last);
    let got = rows(&engine, "t", Coordinate::as_of(last, last)).await;
    assert_eq!(got.len(), n_tx);
    for (id, v, vf, vt, sf, st) in got {
        let info = infos[&id];
        assert_eq!(v, Some(id * 10));
        assert_eq!(
            (vf, vt, sf, st),
            (info.system_time, OPEN, info.system_time, OPEN),
            "row {id}"
        );
    }
}

// ---------------------------------------------------------------- (b) segment format

#[tokio::test]
async fn flushed_segment_is_a_plain_arrow_ipc_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_local(dir.path()).await;
    let names: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("c")]));
    engine
        .commit(tx(vec![put(
            "t",
            &[1, 2, 3],
            vec![("v", ints(&[10, 20, 30])), ("name", names)],
        )]))
        .await
        .unwrap();
    // Override id 2 from now on: its open rectangle is split into a closed and an open part.
    engine
        .commit(tx(vec![put("t", &[2], vec![("v", ints(&[21]))])]))
        .await
        .unwrap();
    let expected = rows(&engine, "t", Coordinate::all()).await;
    assert_eq!(expected.len(), 5);
    engine.flush().await.unwrap();
    assert_eq!(
        engine.table_stats("t"),
        Some((0, 1)),
        "one segment, empty live index"
    );
    assert_eq!(
        rows(&engine, "t", Coordinate::all()).await,
        expected,
        "flush changed what a scan returns"
    );

    let mut segs = Vec::new();
    files_with_ext(&dir.path().join("tables"), "arrow", &mut segs);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let mut blooms = Vec::new();
    files_with_ext(&dir.path().join("tables"), "bloom", &mut blooms);
    assert_eq!(blooms.len(), 1, "{blooms:?}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("manifest"))
            .unwrap()
            .count(),
        1
    );

    let reader = FileReader::try_new(std::fs::File::open(&segs[0]).unwrap(), None)
        .expect("an Arrow IPC file");
    let schema = reader.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "_iid",
            "_valid_from",
            "_valid_to",
            "_system_from",
            "_system_to",
            "_id",
            "v",
            "name",
            "_view_from",
            "_view_only"
        ],
        "documented column order"
    );
    let types: Vec<DataType> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::UInt64,
            ts_type(),
            ts_type(),
            ts_type(),
            ts_type(),
            DataType::Int64,
            DataType::Int64,
            DataType::Utf8,
            ts_type(),
            DataType::Boolean
        ]
    );
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let batch = arrow::compute::concat_batches(&schema, &batches).unwrap();
    // The five rectangles, and id 2's first version kept whole (view-only)
    // for reads as of the time before the override.
    assert_eq!(batch.num_rows(), 6);
    let view_only = batch.column(9).as_boolean();
    assert_eq!(view_only.true_count(), 1);

    let iid = batch.column(0).as_primitive::<UInt64Type>();
    let ts = |i: usize| batch.column(i).as_primitive::<TimestampMicrosecondType>();
    let id = batch.column(5).as_primitive::<Int64Type>();
    let v = batch.column(6).as_primitive::<Int64Type>();
    let name = batch.column(7).as_string::<i32>();
    for c in 1..5 {
        assert_eq!(
            ts(c).null_count(),
            0,
            "segment temporal columns store open bounds as i64::MAX, not NULL"
        );
    }
    let mut from_file = Vec::new();
    for r in 0..batch.num_rows() {
        assert_eq!(
            iid.value(r),
            EntityId::Int(id.value(r)).hash(),
            "`_iid` is the entity hash of `_id`"
        );
        if r > 0 {
            assert!(
                iid.value(r - 1) <= iid.value(r),
                "rows are sorted by `_iid`"
            );
        }
        let want_name = match id.value(r) {
            1 => Some("a"),
            2 => None,
            _ => Some("c"),
        };
        assert_eq!((!name.is_null(r)).then(|| name.value(r)), want_name);
        if view_only.value(r) {
            assert_eq!((id.value(r), v.value(r)), (2, 20), "the overridden version");
            assert_eq!(ts(2).value(r), OPEN, "whole: its valid period as written");
            assert!(ts(4).value(r) != OPEN, "closed at the override");
            continue;
        }
        from_file.push((
            id.value(r),
            Some(v.value(r)),
            ts(1).value(r),
            ts(2).value(r),
            ts(3).value(r),
            ts(4).value(r),
        ));
    }
    from_file.sort();
    assert_eq!(
        from_file, expected,
        "segment rows are the rectangles the engine returns"
    );
}

// ---------------------------------------------------------------- (c) corruption

async fn open_result(dir: &Path) -> Result<Arc<Engine>, strata_storage::Error> {
    let dir = dir.to_path_buf();
    // In a task of its own, so that a panic is reported as such rather than aborting the test.
    tokio::spawn(async move { Engine::open(EngineConfig::new(StoreLocation::Local(dir))).await })
        .await
        .expect("Engine::open panicked on a corrupted store")
}

#[tokio::test]
async fn corrupted_log_object_fails_open_with_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open_local(dir.path()).await;
        for i in 0..3 {
            engine
                .commit(tx(vec![put("t", &[i], vec![("v", ints(&[i]))])]))
                .await
                .unwrap();
        }
    }
    let logs = log_objects(dir.path());
    assert_eq!(logs.len(), 3);
    let victim = &logs[1];
    let orig = std::fs::read(victim).unwrap();
    let n = orig.len();

    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for pos in [0, 7, 8, 16, 20, 30, n / 2, n - 5, n - 4, n - 1] {
        let mut b = orig.clone();
        b[pos] ^= 0xFF;
        variants.push((format!("byte {pos} of {n} flipped"), b));
    }
    variants.push(("truncated by 3 bytes".into(), orig[..n - 3].to_vec()));
    variants.push(("truncated to half".into(), orig[..n / 2].to_vec()));
    variants.push(("empty".into(), Vec::new()));

    for (what, bytes) in variants {
        std::fs::write(victim, &bytes).unwrap();
        match open_result(dir.path()).await {
            Ok(_) => panic!("{what}: Engine::open accepted a corrupted log object"),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::Corrupt,
                    "{what}: wrong error kind for {e}"
                );
                let msg = e.to_string();
                assert!(
                    msg.contains("log/00000000000000000002"),
                    "{what}: error does not name the object: {msg}"
                );
            }
        }
    }

    // Restored, the store opens again with everything in it.
    std::fs::write(victim, &orig).unwrap();
    let engine = open_result(dir.path())
        .await
        .expect("open after restoring the log object");
    assert_eq!(engine.applied_seq(), 3);
    assert_eq!(rows(&engine, "t", Coordinate::all()).await.len(), 3);
}

#[tokio::test]
async fn truncated_manifest_fails_open_with_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open_local(dir.path()).await;
        engine
            .commit(tx(vec![put("t", &[1], vec![("v", ints(&[1]))])]))
            .await
            .unwrap();
        engine.flush().await.unwrap();
    }
    let m = dir.path().join("manifest").join(format!("{:020}.json", 1));
    let orig = std::fs::read(&m).unwrap();
    std::fs::write(&m, &orig[..orig.len() / 2]).unwrap();
    let e = open_result(dir.path())
        .await
        .expect_err("a truncated manifest must not open");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

// ---------------------------------------------------------------- (d) pinned system time

#[tokio::test]
async fn pinning_a_system_time_not_after_the_last_commit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_local(dir.path()).await;
    // 2100-01-01T00:00:00Z: far ahead of the wall clock.
    let t1: i64 = 4_102_444_800_000_000;
    let info = engine
        .commit(TxRequest {
            ops: vec![put("t", &[1], vec![("v", ints(&[1]))])],
            system_time: Some(t1),
            read_at: None,
        })
        .await
        .unwrap();
    assert_eq!(info.system_time, t1);
    let logs_before = log_objects(dir.path()).len();

    for (pin, pin_text) in [
        (t1 - 1_000_000, "2099-12-31T23:59:59.000000Z"),
        (t1, "2100-01-01T00:00:00.000000Z"),
    ] {
        let e = engine
            .commit(TxRequest {
                ops: vec![put("t", &[2], vec![("v", ints(&[2]))])],
                system_time: Some(pin),
                read_at: None,
            })
            .await
            .expect_err("a pinned time not after the last commit must be refused");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        let msg = e.to_string();
        assert_eq!(fmt_micros(pin), pin_text);
        assert!(
            msg.contains(pin_text),
            "message lacks the pinned time {pin_text}: {msg}"
        );
        assert!(
            msg.contains("2100-01-01T00:00:00.000000Z"),
            "message lacks the last commit time: {msg}"
        );
        assert_eq!(engine.latest_system_time(), t1);
        assert_eq!(
            log_objects(dir.path()).len(),
            logs_before,
            "a refused transaction wrote a log object"
        );
    }
    assert_eq!(rows(&engine, "t", Coordinate::all()).await.len(), 1);

    // The clock is behind the last commit: the next unpinned commit takes the last time + 1µs.
    let info = engine
        .commit(tx(vec![put("t", &[3], vec![("v", ints(&[3]))])]))
        .await
        .unwrap();
    assert_eq!(info.system_time, t1 + 1);
    let info = engine
        .commit(TxRequest {
            ops: vec![put("t", &[4], vec![("v", ints(&[4]))])],
            system_time: Some(t1 + 10),
            read_at: None,
        })
        .await
        .unwrap();
    assert_eq!(info.system_time, t1 + 10);

    drop(engine);
    let engine = open_local(dir.path()).await;
    assert_eq!(engine.latest_system_time(), t1 + 10);
    let e = engine
        .commit(TxRequest {
            ops: vec![put("t", &[5], vec![("v", ints(&[5]))])],
            system_time: Some(t1 + 5),
            read_at: None,
        })
        .await
        .expect_err("the last commit time survives a reopen");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let ids: Vec<i64> = rows(&engine, "t", Coordinate::all())
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(ids, [1, 3, 4]);
}

// ---------------------------------------------------------------- (e) type conflicts

fn texts(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_conflict_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_local(dir.path()).await;
    engine
        .commit(tx(vec![put("t", &[1], vec![("v", ints(&[5]))])]))
        .await
        .unwrap();
    let schema_before = engine.table_schema("t").unwrap();
    let seq = engine.applied_seq();
    let last = engine.latest_system_time();

    let check_nothing_left = |engine: &Engine, what: &str| {
        assert_eq!(engine.applied_seq(), seq, "{what}: the log moved");
        assert_eq!(
            engine.latest_system_time(),
            last,
            "{what}: the system time moved"
        );
        assert_eq!(
            log_objects(dir.path()).len(),
            seq as usize,
            "{what}: a log object was written"
        );
        assert_eq!(engine.table_names(), ["t"], "{what}: a table appeared");
        assert_eq!(
            engine.table_schema("t").unwrap(),
            schema_before,
            "{what}: the schema changed"
        );
    };

    // BIGINT column, TEXT value.
    let e = engine
        .commit(tx(vec![put("t", &[2], vec![("v", texts(&["x"]))])]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    let msg = e.to_string();
    for part in ["`t`", "`v`", "BIGINT", "TEXT"] {
        assert!(
            msg.contains(part),
            "type conflict message lacks {part}: {msg}"
        );
    }
    check_nothing_left(&engine, "single op");

    // The conflict comes after ops that alone would create a table and a column.
    let e = engine
        .commit(tx(vec![
            put("u", &[1], vec![("a", ints(&[1]))]),
            put("t", &[3], vec![("w", ints(&[1]))]),
            put("t", &[3], vec![("v", texts(&["y"]))]),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    check_nothing_left(&engine, "multi op");

    // Both types inside one transaction, on a new table.
    let e = engine
        .commit(tx(vec![
            put("t2", &[1], vec![("c", ints(&[1]))]),
            put("t2", &[2], vec![("c", texts(&["z"]))]),
        ]))
        .await
        .unwrap_err();
    let msg = e.to_string();
    for part in ["`t2`", "`c`", "BIGINT", "TEXT"] {
        assert!(
            msg.contains(part),
            "type conflict message lacks {part}: {msg}"
        );
    }
    check_nothing_left(&engine, "same transaction");

    // In a group commit, the conflicting transaction fails alone.
    let mut handles = Vec::new();
    for i in 10..30i64 {
        let e = engine.clone();
        handles.push(tokio::spawn(async move {
            let v = if i == 20 { texts(&["bad"]) } else { ints(&[i]) };
            (i, e.commit(tx(vec![put("t", &[i], vec![("v", v)])])).await)
        }));
    }
    for h in handles {
        let (i, r) = h.await.unwrap();
        match r {
            Ok(_) => assert_ne!(i, 20, "the conflicting transaction committed"),
            Err(e) => {
                assert_eq!(i, 20, "a valid transaction failed: {e}");
                assert_eq!(e.kind(), ErrorKind::Invalid);
            }
        }
    }
    let want: Vec<i64> = std::iter::once(1)
        .chain((10..30).filter(|&i| i != 20))
        .collect();
    let ids =
        |r: Vec<(i64, Option<i64>, i64, i64, i64, i64)>| r.iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(ids(rows(&engine, "t", Coordinate::all()).await), want);
    assert_eq!(engine.table_schema("t").unwrap(), schema_before);

    // Nothing of the refused transactions is in the log.
    drop(engine);
    let engine = open_local(dir.path()).await;
    assert_eq!(engine.table_names(), ["t"]);
    assert_eq!(engine.table_schema("t").unwrap(), schema_before);
    assert_eq!(ids(rows(&engine, "t", Coordinate::all()).await), want);
}

// ---------------------------------------------------------------- two nodes, one store

/// Two engines on one directory take turns writing and flushing. Log writes
/// serialize through conditional creates; both nodes flush manifest versions
/// the other one may already have published. Everyone must end up with the
/// same rectangles, and so must a node opened afterwards.
#[tokio::test]
async fn two_nodes_on_one_directory_agree() {
    let dir = tempfile::tempdir().unwrap();
    let a = open_local(dir.path()).await;
    let b = open_local(dir.path()).await;
    let mut last_value: BTreeMap<i64, i64> = BTreeMap::new();
    let mut seqs = Vec::new();
    for i in 0..24i64 {
        let w = if i % 2 == 0 { &a } else { &b };
        let id = i % 5;
        let info = w
            .commit(tx(vec![put("t", &[id], vec![("v", ints(&[i]))])]))
            .await
            .unwrap();
        seqs.push(info.seq);
        last_value.insert(id, i);
        if i % 3 == 2 {
            w.flush().await.unwrap();
        }
    }
    assert_eq!(
        seqs,
        (1..=24).collect::<Vec<u64>>(),
        "one dense log across both nodes"
    );
    a.catch_up().await.unwrap();
    b.catch_up().await.unwrap();
    let fresh = open_result(dir.path())
        .await
        .expect("open after two nodes wrote");
    let ra = rows(&a, "t", Coordinate::all()).await;
    let rb = rows(&b, "t", Coordinate::all()).await;
    let rf = rows(&fresh, "t", Coordinate::all()).await;
    assert_eq!(ra, rb, "the two nodes disagree");
    assert_eq!(ra, rf, "a freshly opened node disagrees");
    let now = fresh.latest_system_time();
    let current: BTreeMap<i64, i64> = rows(&fresh, "t", Coordinate::as_of(now, now))
        .await
        .into_iter()
        .map(|r| (r.0, r.1.unwrap()))
        .collect();
    assert_eq!(current, last_value);
    // Every object is written once: flushes of the same manifest version by
    // two nodes must not share file names.
    let mut segs = Vec::new();
    files_with_ext(&dir.path().join("tables"), "arrow", &mut segs);
    for s in &segs {
        let batches: Vec<RecordBatch> = FileReader::try_new(std::fs::File::open(s).unwrap(), None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!batches.is_empty());
    }
}

/// `OPEN` (i64::MAX) means ∞ and cannot be a transaction's system time; a pin
/// there must be refused, not poison every later commit.
#[tokio::test]
async fn pinning_the_open_bound_as_system_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_local(dir.path()).await;
    engine
        .commit(tx(vec![put("t", &[1], vec![("v", ints(&[1]))])]))
        .await
        .unwrap();
    let last = engine.latest_system_time();
    // An explicit `_valid_from`, so that the default period [T, ∞) does not refuse it by accident.
    let from: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("UTC"));
    let op = put("t", &[2], vec![("_valid_from", from), ("v", ints(&[2]))]);
    let r = engine
        .commit(TxRequest {
            ops: vec![op],
            system_time: Some(OPEN),
            read_at: None,
        })
        .await;
    match r {
        Ok(info) => {
            // Accepted: then the engine must still be able to commit after it, in order.
            let next = engine
                .commit(tx(vec![put("t", &[3], vec![("v", ints(&[3]))])]))
                .await;
            panic!("pinning i64::MAX was accepted ({info:?}); the next commit gave {next:?}");
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{e}"),
    }
    assert_eq!(engine.latest_system_time(), last);
    let info = engine
        .commit(tx(vec![put("t", &[3], vec![("v", ints(&[3]))])]))
        .await
        .unwrap();
    assert!(info.system_time > last);
    assert_eq!(rows(&engine, "t", Coordinate::all()).await.len(), 2);
}

/// A column added after a flush: older segments lack it and read it as NULL,
/// before and after a reopen.
#[tokio::test]
async fn columns_added_after_a_flush_read_as_null_from_older_segments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_local(dir.path()).await;
    let t1 = engine
        .commit(tx(vec![put("t", &[1, 2], vec![("v", ints(&[1, 2]))])]))
        .await
        .unwrap()
        .system_time;
    engine.flush().await.unwrap();
    let t2 = engine
        .commit(tx(vec![put("t", &[1], vec![("w", texts(&["x"]))])]))
        .await
        .unwrap()
        .system_time;
    engine.flush().await.unwrap();

    async fn state(engine: &Engine, s: i64) -> Vec<(i64, Option<i64>, Option<String>)> {
        let scan = engine
            .scan("t", Coordinate::as_of(s, s), None)
            .unwrap()
            .unwrap();
        let names: Vec<&str> = scan
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "_id",
                "v",
                "w",
                "_valid_from",
                "_valid_to",
                "_system_from",
                "_system_to"
            ],
            "scan schema: table columns in order, then the temporal columns"
        );
        let mut batches = scan.live.clone();
        for i in 0..scan.segments.len() {
            batches.extend(scan.segment(i).await.unwrap());
        }
        let mut out = Vec::new();
        for b in batches {
            let id = b.column(0).as_primitive::<Int64Type>();
            let v = b.column(1).as_primitive::<Int64Type>();
            let w = b.column(2).as_string::<i32>();
            for r in 0..b.num_rows() {
                out.push((
                    id.value(r),
                    (!v.is_null(r)).then(|| v.value(r)),
                    (!w.is_null(r)).then(|| w.value(r).to_string()),
                ));
            }
        }
        out.sort();
        out
    }
    let before = [(1, Some(1), None), (2, Some(2), None)];
    let after = [(1, None, Some("x".to_string())), (2, Some(2), None)];
    assert_eq!(state(&engine, t1).await, before);
    assert_eq!(state(&engine, t2).await, after);
    drop(engine);
    let engine = open_local(dir.path()).await;
    assert_eq!(engine.table_stats("t"), Some((0, 2)));
    assert_eq!(state(&engine, t1).await, before);
    assert_eq!(state(&engine, t2).await, after);
}

/// Fails every write to the log with the given OS error.
#[derive(Debug)]
struct FailLogWrites(i32);

impl strata_storage::FaultHook for FailLogWrites {
    fn before_write(&self, path: &str) -> std::io::Result<()> {
        if path.starts_with("log/") {
            Err(std::io::Error::from_raw_os_error(self.0))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_failed_commit_keeps_its_cause_not_conflict() {
    // ENOSPC: the disk is full; EIO: any other I/O error.
    for (errno, kind) in [(28, ErrorKind::Full), (5, ErrorKind::Unavailable)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = EngineConfig::new(StoreLocation::Local(tmp.path().to_path_buf()));
        cfg.fault = Some(Arc::new(FailLogWrites(errno)));
        let engine = Engine::open(cfg).await.expect("open");
        let e = engine
            .commit(tx(vec![put("t", &[1], vec![("v", ints(&[1]))])]))
            .await
            .expect_err("the log write fails");
        assert_eq!(e.kind(), kind, "{e}");
        assert_ne!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("transaction not committed"), "{e}");
    }
}

#[test]
fn a_data_directory_that_cannot_be_written_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("data");
    let e = strata_storage::store::Storage::open(&StoreLocation::Local(dir.clone()))
        .expect_err("cannot create a directory under a file");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("is not writable") && msg.contains(&dir.display().to_string()),
        "{msg}"
    );
}
