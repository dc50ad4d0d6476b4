//! One criterion bench per scan path (issue 16), so a regression in any of
//! them shows in review: `STRATA_BENCH_SCAN_ROWS` entities (default
//! 1,000,000) with an integer, a decimal and a text column, settled by
//! `CHECKPOINT`, then a tenth of them overwritten twice (history), settled
//! again.
//!
//! - present over current segments: `count(*), sum(x)` of every row;
//! - `FOR SYSTEM_TIME AS OF` the first load, over history;
//! - filters keeping 1% and 50% of the rows (values uncorrelated with the
//!   segment order, so no batch is skipped: the filter itself is measured);
//! - a point lookup by `_id`.
//!
//! ```text
//! cargo bench --bench scan
//! STRATA_BENCH_SCAN_ROWS=200000 cargo bench --bench scan -- --quick
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use strata::{Config, Db};
use tokio::runtime::Runtime;

const BATCH: i64 = 100_000;

fn rows() -> i64 {
    std::env::var("STRATA_BENCH_SCAN_ROWS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

async fn load(db: &Db, table: &str, n: i64, filter: &str, bump: i64) {
    let mut lo = 0;
    while lo < n {
        let hi = (lo + BATCH).min(n) - 1;
        // `r` is a scrambled permutation-like value in [0, 100): the filter
        // column, uncorrelated with where rows sit in a segment.
        db.sql(&format!(
            "INSERT INTO {table} (_id, x, r, d, s) SELECT value, value + {bump}, \
             (value * 7919) % 100, CAST(value % 1000 AS DECIMAL(12, 2)), \
             'row ' || CAST(value AS VARCHAR) \
             FROM generate_series({lo}, {hi}) AS g(value) WHERE {filter}"
        ))
        .await
        .expect("load batch");
        lo = hi + 1;
    }
}

async fn ints(db: &Db, sql: &str) -> Vec<i64> {
    let b = db.sql(sql).await.expect("query");
    (0..b[0].num_columns())
        .map(|i| {
            let c =
                datafusion::arrow::compute::cast(b[0].column(i), &DataType::Int64).expect("cast");
            c.as_primitive::<Int64Type>().value(0)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let n = rows();
    let dir = tempfile::tempdir().unwrap();
    let db = rt.block_on(Db::open(Config::dir(dir.path()))).unwrap();
    rt.block_on(async {
        load(&db, "t", n, "true", 0).await;
        db.sql("CHECKPOINT").await.unwrap();
    });
    let t0 = rt.block_on(async {
        let b = db.sql("SELECT max(_system_from) FROM t").await.unwrap();
        b[0].column(0)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
            .value(0)
    });
    rt.block_on(async {
        for bump in [1, 2] {
            load(&db, "t", n, "value % 10 = 0", bump * 1_000_000_000).await;
        }
        db.sql("CHECKPOINT").await.unwrap();
    });
    let present = "SELECT count(*), sum(x) FROM t";
    let past = format!(
        "SELECT count(*), sum(x) FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '{}'",
        chrono::DateTime::from_timestamp_micros(t0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.6fZ")
    );
    let overwritten = (0..n).filter(|v| v % 10 == 0).count() as i64;
    assert_eq!(
        rt.block_on(ints(&db, present)),
        vec![n, (0..n).sum::<i64>() + overwritten * 2_000_000_000]
    );
    assert_eq!(rt.block_on(ints(&db, &past)), vec![n, (0..n).sum::<i64>()]);
    let one = "SELECT count(*), sum(x) FROM t WHERE r = 42";
    let half = "SELECT count(*), sum(x) FROM t WHERE r < 50";
    let lookup = format!("SELECT x FROM t WHERE _id = {}", n / 2);

    let mut g = c.benchmark_group(format!("scan ({n} rows)"));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for (name, sql) in [
        ("present over current segments", present),
        ("as of the first load, over history", past.as_str()),
        ("filter keeping 1%", one),
        ("filter keeping 50%", half),
        ("point lookup by _id", lookup.as_str()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(db.sql(sql)).expect("query")))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
