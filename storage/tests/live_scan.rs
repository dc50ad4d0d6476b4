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

/// (`_id`, `v`, `w`, `_system_from`) of every row the live part of a scan
/// returns, and how many batches it came in.
fn live_rows(engine: &Engine, coord: Coordinate) -> (usize, Vec<(i64, i64, Option<String>, i64)>) {
    let scan = engine.scan("t", coord, None).unwrap().unwrap();
    assert!(scan.segments.is_empty(), "nothing was flushed");
    let mut rows = Vec::new();
    for b in &scan.live {
        assert_eq!(b.schema(), scan.schema, "the scan's schema");
        let id = b.column_by_name("_id").unwrap().as_primitive::<Int64Type>();
        let v = b.column_by_name("v").unwrap().as_primitive::<Int64Type>();
        let w = b.column_by_name("w").unwrap().as_string::<i32>();
        let sf = b
            .column_by_name("_system_from")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        for r in 0..b.num_rows() {
            rows.push((
                id.value(r),
                v.value(r),
                w.is_valid(r).then(|| w.value(r).to_string()),
                sf.value(r),
            ));
        }
    }
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
