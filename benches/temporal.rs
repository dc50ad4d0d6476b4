//! Time travel cost: the same queries as of a past system time and at the
//! present, on a table where every entity has ten versions.
//!
//! Loads `STRATA_BENCH_ENTITIES` entities (default 100,000) and then nine
//! rounds of updates of every entity (ten versions each, one transaction of
//! 10,000 rows at a time, so 1,000,000 versions by default) into a temporary
//! directory, reopens it, and measures
//!
//! - `count(*)` + `sum(v)` over the table, now and `FOR SYSTEM_TIME AS OF` the
//!   end of round 3 (a past system time, when version 4 was current);
//! - a point lookup `WHERE _id = …`, now and as of the same past time.
//!
//! ```text
//! cargo bench --bench temporal                # full criterion run
//! cargo bench --bench temporal -- --quick     # quick estimate
//! STRATA_BENCH_ENTITIES=20000 cargo bench --bench temporal -- --quick
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use strata::{Config, Db};
use tokio::runtime::Runtime;

const BATCH: i64 = 10_000;
const VERSIONS: i64 = 10;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Version `round` of every entity: v = id * 10 + round.
async fn write_round(db: &Db, entities: i64, round: i64) {
    let mut lo = 0;
    while lo < entities {
        let hi = (lo + BATCH).min(entities) - 1;
        db.sql(&format!(
            "INSERT INTO prices (_id, v, sku) \
             SELECT value, value * {VERSIONS} + {round}, concat('sku-', value) \
             FROM generate_series({lo}, {hi}) AS g(value)"
        ))
        .await
        .expect("load batch");
        lo = hi + 1;
    }
}

fn count_sum(batches: &[datafusion::arrow::array::RecordBatch]) -> (i64, i64) {
    let b = &batches[0];
    (
        b.column(0).as_primitive::<Int64Type>().value(0),
        b.column(1).as_primitive::<Int64Type>().value(0),
    )
}

fn bench_temporal(c: &mut Criterion) {
    let entities = env_or("STRATA_BENCH_ENTITIES", 100_000);
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = || Config::dir(dir.path()).with_flush_rows(250_000);

    let started = Instant::now();
    let past = rt.block_on(async {
        let db = Db::open(config()).await.unwrap();
        let mut past = 0;
        for round in 0..VERSIONS {
            write_round(&db, entities, round).await;
            if round == 3 {
                past = db.database().engine().latest_system_time();
            }
        }
        db.flush().await.unwrap();
        past
    });
    println!(
        "temporal: {entities} entities × {VERSIONS} versions loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let past_ts = chrono::DateTime::from_timestamp_micros(past)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let db = rt.block_on(Db::open(config())).unwrap();

    let now_sql = "SELECT count(*), sum(v) FROM prices";
    let past_sql =
        format!("SELECT count(*), sum(v) FROM prices FOR SYSTEM_TIME AS OF TIMESTAMP '{past_ts}'");
    // Correctness first: every entity once, at its latest / round-3 version.
    let n = entities;
    let ids_sum = n * (n - 1) / 2;
    let (cnt, sum) = count_sum(&rt.block_on(db.sql(now_sql)).unwrap());
    assert_eq!((cnt, sum), (n, ids_sum * VERSIONS + n * (VERSIONS - 1)));
    let (cnt, sum) = count_sum(&rt.block_on(db.sql(&past_sql)).unwrap());
    assert_eq!((cnt, sum), (n, ids_sum * VERSIONS + n * 3));

    let mut g = c.benchmark_group("temporal");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("scan_count_sum_now", |b| {
        b.iter(|| black_box(rt.block_on(db.sql(now_sql)).unwrap()))
    });
    g.bench_function("scan_count_sum_as_of_past", |b| {
        b.iter(|| black_box(rt.block_on(db.sql(&past_sql)).unwrap()))
    });
    let next = AtomicI64::new(0);
    g.bench_function("point_lookup_now", |b| {
        b.iter(|| {
            let id = next.fetch_add(7919, Ordering::Relaxed).rem_euclid(n);
            let r = rt
                .block_on(db.sql(&format!("SELECT v FROM prices WHERE _id = {id}")))
                .unwrap();
            assert_eq!(
                r[0].column(0).as_primitive::<Int64Type>().value(0),
                id * VERSIONS + VERSIONS - 1
            );
        })
    });
    g.bench_function("point_lookup_as_of_past", |b| {
        b.iter(|| {
            let id = next.fetch_add(7919, Ordering::Relaxed).rem_euclid(n);
            let r = rt
                .block_on(db.sql(&format!(
                    "SELECT v FROM prices FOR SYSTEM_TIME AS OF TIMESTAMP '{past_ts}' WHERE _id = {id}"
                )))
                .unwrap();
            assert_eq!(r[0].column(0).as_primitive::<Int64Type>().value(0), id * VERSIONS + 3);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_temporal);
criterion_main!(benches);
