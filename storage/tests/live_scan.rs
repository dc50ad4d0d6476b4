//! Reading the live index: rows written by many small transactions come
//! back as a few large batches (not one per commit), with the same values,
//! versions and temporal columns, across a column added midway.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMicrosecondType};
use strata_storage::{Coordinate, Engine, EngineConfig, Op, OpKind, StoreLocation, TxRequest};

/// One row: `_id`, `v`, and (once the column exists) `w`.
fn put(id: i64, v: i64, w: Option<&str>) -> TxRequest {
    let mut fields = vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![id])),
        Arc::new(Int64Array::from(vec![v])),
    ];
    if let Some(w) = w {
        fields.push(Field::new("w", DataType::Utf8, true));
        cols.push(Arc::new(StringArray::from(vec![w])));
    }
    TxRequest {
        ops: vec![Op {
            kind: OpKind::Put,
            table: "t".into(),
            batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap(),
        }],
        system_time: None,
        read_at: None,
    }
}

/// A scanned row: (`_id`, `v`, `w`, `_system_from`, `_valid_from`).
type Row = (i64, i64, Option<String>, i64, i64);

/// The rows of one scan output batch (checked against the scan's schema).
fn rows_of(b: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Vec<Row> {
    assert_eq!(&b.schema(), schema, "the scan's schema");
    let id = b.column_by_name("_id").unwrap().as_primitive::<Int64Type>();
    let v = b.column_by_name("v").unwrap().as_primitive::<Int64Type>();
    let w = b.column_by_name("w").unwrap().as_string::<i32>();
    let ts = |c: &str| {
        b.column_by_name(c)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .clone()
    };
    let (sf, vf) = (ts("_system_from"), ts("_valid_from"));
    (0..b.num_rows())
        .map(|r| {
            (
                id.value(r),
                v.value(r),
                w.is_valid(r).then(|| w.value(r).to_string()),
                sf.value(r),
                vf.value(r),
            )
        })
        .collect()
}

/// (`_id`, `v`, `w`, `_system_from`) of every row the live part of a scan
/// returns, and how many batches it came in.
fn live_rows(engine: &Engine, coord: Coordinate) -> (usize, Vec<(i64, i64, Option<String>, i64)>) {
    let scan = engine.scan("t", coord, None).unwrap().unwrap();
    assert!(scan.segments.is_empty(), "nothing was flushed");
    let mut rows: Vec<_> = scan
        .live
        .iter()
        .flat_map(|b| rows_of(b, &scan.schema))
        .map(|(id, v, w, sf, _)| (id, v, w, sf))
        .collect();
    rows.sort();
    (scan.live.len(), rows)
}

#[tokio::test]
async fn many_small_commits_are_read_back_as_few_batches() {
    let engine = Engine::open(EngineConfig::new(StoreLocation::Memory))
        .await
        .unwrap();
    // 600 rows in 600 commits; `w` appears at commit 300; ids 0..100 are
    // written again later (their first versions end in system time).
    let mut current: BTreeMap<i64, (i64, Option<String>, i64)> = BTreeMap::new();
    let mut all = Vec::new();
    for k in 0..600i64 {
        let (id, v) = if k < 500 { (k, k) } else { (k - 500, k) };
        let w = (k >= 300).then(|| format!("w{k}"));
        let info = engine.commit(put(id, v, w.as_deref())).await.unwrap();
        current.insert(id, (v, w.clone(), info.system_time));
        all.push((id, v, w, info.system_time));
    }
    all.sort();

    let (batches, rows) = live_rows(&engine, Coordinate::as_of(i64::MAX - 1, i64::MAX - 1));
    assert_eq!(batches, 1, "600 live rows come back in one batch");
    let want: Vec<_> = current
        .into_iter()
        .map(|(id, (v, w, sf))| (id, v, w, sf))
        .collect();
    assert!(
        rows == want,
        "the current rows: {} rows, {} wanted",
        rows.len(),
        want.len()
    );
    assert!(
        rows.iter().any(|r| r.2.is_none()),
        "rows from before `w` have NULL there"
    );

    // Over all of both axes, a rewritten id's first version shows twice:
    // as it was believed for all of valid time (until the rewrite, in
    // system time) and, still current, for the valid time before it.
    let mut want = all.clone();
    want.extend(all.iter().filter(|r| r.0 < 100 && r.1 < 500).cloned());
    want.sort();
    let (batches, rows) = live_rows(&engine, Coordinate::all());
    assert_eq!(batches, 1);
    assert!(
        rows == want,
        "every rectangle: {} rows, {} wanted",
        rows.len(),
        want.len()
    );
}

/// The rows a scan's segments return (the live index must be empty), sorted.
async fn segment_rows(engine: &Engine, coord: Coordinate, ids: Option<Vec<i64>>) -> Vec<Row> {
    let ids = ids.map(|v| v.into_iter().map(strata_storage::EntityId::Int).collect());
    let scan = engine.scan("t", coord, ids).unwrap().unwrap();
    assert!(scan.live.is_empty(), "everything was flushed");
    let mut rows = Vec::new();
    for i in 0..scan.segments.len() {
        if let Some(b) = scan.segment(i).await.unwrap() {
            rows.extend(rows_of(&b, &scan.schema));
        }
    }
    rows.sort();
    rows
}

#[tokio::test]
async fn lookups_by_id_in_segments_match_the_whole_scan() {
    let engine = Engine::open(EngineConfig::new(StoreLocation::Memory))
        .await
        .unwrap();
    // Two segments: the first without `w`; ids 0..100 rewritten in the
    // second, so their versions span both files.
    for k in 0..600i64 {
        if k == 300 {
            engine.flush().await.unwrap();
        }
        let (id, v) = if k < 500 { (k, k) } else { (k - 500, k) };
        let w = (k >= 300).then(|| format!("w{k}"));
        engine.commit(put(id, v, w.as_deref())).await.unwrap();
    }
    engine.flush().await.unwrap();
    let sets: Vec<Vec<i64>> = vec![
        vec![7],
        vec![450],
        vec![3, 250, 499, 77],
        (0..120).collect(),
        vec![1000],
    ];
    for coord in [
        Coordinate::as_of(i64::MAX - 1, i64::MAX - 1),
        Coordinate::all(),
    ] {
        let all = segment_rows(&engine, coord, None).await;
        assert!(all.iter().any(|r| r.2.is_none()) && all.iter().any(|r| r.2.is_some()));
        for ids in &sets {
            let want: Vec<_> = all.iter().filter(|r| ids.contains(&r.0)).cloned().collect();
            let got = segment_rows(&engine, coord, Some(ids.clone())).await;
            assert_eq!(got, want, "lookup of {ids:?} at {coord:?}");
            // Read again: the batch is kept decoded, same answer.
            assert_eq!(segment_rows(&engine, coord, Some(ids.clone())).await, want);
        }
    }
}
