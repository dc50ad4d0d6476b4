//! Core read path at a million rows.
//!
//! Loads `STRATA_BENCH_ROWS` rows (default 1,000,000) into a temporary
//! directory in 10,000-row `INSERT … SELECT` transactions, prints the load
//! rate once, reopens the directory, then measures
//!
//! - `SELECT count(*)`,
//! - a point lookup `SELECT … WHERE _id = …` (entity hash),
//! - a `GROUP BY` aggregate over the whole table.
//!
//! ```text
//! cargo bench --bench core                 # full criterion run
//! cargo bench --bench core -- --quick      # quick estimate
//! STRATA_BENCH_ROWS=100000 cargo bench --bench core -- --quick
//! ```
//!
//! `STRATA_BENCH_FLUSH_ROWS` sets the flush threshold (default 250,000, so
//! the table is several segments).

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use strata::{Config, Db};
use tokio::runtime::Runtime;

const BATCH: i64 = 10_000;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

async fn load(db: &Db, rows: i64) {
    let mut lo = 0;
    while lo < rows {
        let hi = (lo + BATCH).min(rows) - 1;
        db.sql(&format!(
            "INSERT INTO orders (_id, customer, status, amount, note) \
             SELECT value, value % 1000, CASE value % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'done' END, \
                    (value % 997) * 1.25, concat('order ', value) \
             FROM generate_series({lo}, {hi}) AS g(value)"
        ))
        .await
        .expect("load batch");
        lo = hi + 1;
    }
}

fn row_count(batches: &[datafusion::arrow::array::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn bench_core(c: &mut Criterion) {
    let rows = env_or("STRATA_BENCH_ROWS", 1_000_000);
    let flush_rows = env_or("STRATA_BENCH_FLUSH_ROWS", 250_000) as usize;
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = || Config::dir(dir.path()).with_flush_rows(flush_rows);

    let started = Instant::now();
    rt.block_on(async {
        let db = Db::open(config()).await.unwrap();
        load(&db, rows).await;
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "core: loaded {rows} rows in {secs:.2} s = {:.0} rows/s ({} rows per transaction, flush every {flush_rows} rows)",
        rows as f64 / secs,
        BATCH
    );

    let t = Instant::now();
    let db = rt.block_on(Db::open(config())).unwrap();
    let reopen = t.elapsed();
    let t = Instant::now();
    let first = rt.block_on(db.sql("SELECT count(*) FROM orders")).unwrap();
    println!(
        "core: reopen {reopen:.2?}, first count(*) after reopen {:.2?}, {:?} (live rows, segments)",
        t.elapsed(),
        db.database().engine().table_stats("orders").unwrap()
    );
    // Sanity: the answers are right before timing them.
    let count = datafusion::arrow::compute::cast(
        first[0].column(0),
        &datafusion::arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    assert_eq!(
        count
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0),
        rows
    );
    for id in [0, rows / 2, rows - 1] {
        let r = rt
            .block_on(db.sql(&format!("SELECT _id FROM orders WHERE _id = {id}")))
            .unwrap();
        assert_eq!(row_count(&r), 1, "point lookup {id}");
    }
    let r = rt
        .block_on(db.sql("SELECT status, count(*) FROM orders GROUP BY status"))
        .unwrap();
    assert_eq!(row_count(&r), 4.min(rows as usize));

    let mut g = c.benchmark_group("core");
    g.sample_size(20).measurement_time(Duration::from_secs(5));

    g.bench_function("count_star", |b| {
        b.to_async(&rt).iter(|| async {
            let r = db.sql("SELECT count(*) FROM orders").await.unwrap();
            black_box(r)
        })
    });

    let next = AtomicI64::new(0);
    g.bench_function("point_lookup", |b| {
        b.to_async(&rt).iter(|| async {
            // A different entity each time, spread over the whole table.
            let id = next.fetch_add(7919, Ordering::Relaxed) % rows;
            let r = db
                .sql(&format!(
                    "SELECT _id, customer, status, amount FROM orders WHERE _id = {id}"
                ))
                .await
                .unwrap();
            debug_assert_eq!(row_count(&r), 1);
            black_box(r)
        })
    });

    g.bench_function("group_by", |b| {
        b.to_async(&rt).iter(|| async {
            let r = db
                .sql("SELECT status, count(*), sum(amount), avg(amount) FROM orders GROUP BY status ORDER BY status")
                .await
                .unwrap();
            debug_assert_eq!(row_count(&r), 4);
            black_box(r)
        })
    });

    g.bench_function("group_by_1000_groups", |b| {
        b.to_async(&rt).iter(|| async {
            let r = db
                .sql("SELECT customer, count(*), max(amount) FROM orders GROUP BY customer")
                .await
                .unwrap();
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_core);
criterion_main!(benches);
