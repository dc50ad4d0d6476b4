//! History does not slow the present (issue "Storage that outgrows the
//! node"): load `STRATA_BENCH_ENTITIES` entities (default 1,000,000), then
//! overwrite every one of them 10 times (11× the rectangles), and measure
//! `SELECT count(*), sum(x)`
//!
//! - at the present, right after the first load (settled by `CHECKPOINT`);
//! - at the present after the overwrites and a `CHECKPOINT`;
//! - `FOR SYSTEM_TIME AS OF` the first load's time, after the overwrites.
//!
//! The same run is repeated on a second database whose compaction is off (only
//! flushes, as before compaction existed), to show how the present grew
//! with history then.
//!
//! A second group, `flushes`, loads the same rows in one flush or in 1,000
//! and compares the present's query time (segments stay few).
//!
//! ```text
//! cargo bench --bench history                          # full criterion run
//! cargo bench --bench history -- flushes               # only the flush-count group
//! STRATA_BENCH_ENTITIES=200000 cargo bench --bench history -- --quick
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use strata::{CompactionConfig, Config, Db};
use tokio::runtime::Runtime;

const BATCH: i64 = 100_000;
const OVERWRITES: i64 = 10;

fn entities() -> i64 {
    std::env::var("STRATA_BENCH_ENTITIES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

async fn write_round(db: &Db, n: i64, round: i64) {
    let mut lo = 0;
    while lo < n {
        let hi = (lo + BATCH).min(n) - 1;
        db.sql(&format!(
            "INSERT INTO h (_id, x) SELECT value, value + {round} \
             FROM generate_series({lo}, {hi}) AS g(value)"
        ))
        .await
        .expect("load batch");
        lo = hi + 1;
    }
}

async fn count_sum(db: &Db, sql: &str) -> (i64, i64) {
    let b = db.sql(sql).await.expect("query");
    // sum(bigint) is NUMERIC (as in PostgreSQL): read both columns as BIGINT.
    let int = |i: usize| {
        let c = datafusion::arrow::compute::cast(b[0].column(i), &DataType::Int64).expect("cast");
        c.as_primitive::<Int64Type>().value(0)
    };
    (int(0), int(1))
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let n = entities();
    for compaction in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::dir(dir.path());
        if !compaction {
            cfg = cfg.with_compaction(CompactionConfig {
                background: false,
                ..Default::default()
            });
        }
        let db = rt.block_on(Db::open(cfg)).unwrap();
        let settle = |db: &Db| {
            rt.block_on(async {
                if compaction {
                    db.sql("CHECKPOINT").await.unwrap();
                } else {
                    db.flush().await.unwrap();
                }
            })
        };
        let label = if compaction {
            "compaction"
        } else {
            "no compaction"
        };
        rt.block_on(write_round(&db, n, 0));
        settle(&db);
        let t0: i64 = rt.block_on(async {
            let b = db.sql("SELECT max(_system_from) FROM h").await.unwrap();
            b[0].column(0)
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .value(0)
        });
        let present = "SELECT count(*), sum(x) FROM h";
        let mut g = c.benchmark_group(format!("history ({label}, {n} entities)"));
        g.sample_size(10).measurement_time(Duration::from_secs(10));
        g.bench_function("present after first load", |b| {
            b.iter(|| black_box(rt.block_on(count_sum(&db, present))))
        });
        for round in 1..=OVERWRITES {
            rt.block_on(write_round(&db, n, round));
        }
        settle(&db);
        assert_eq!(
            rt.block_on(count_sum(&db, present)),
            (n, (0..n).map(|v| v + OVERWRITES).sum())
        );
        g.bench_function("present after 10 overwrites", |b| {
            b.iter(|| black_box(rt.block_on(count_sum(&db, present))))
        });
        let past = format!(
            "SELECT count(*), sum(x) FROM h FOR SYSTEM_TIME AS OF TIMESTAMP '{}'",
            chrono::DateTime::from_timestamp_micros(t0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S%.6fZ")
        );
        assert_eq!(rt.block_on(count_sum(&db, &past)), (n, (0..n).sum()));
        g.bench_function("as of the first load after 10 overwrites", |b| {
            b.iter(|| black_box(rt.block_on(count_sum(&db, &past))))
        });
        g.finish();
    }
}

/// Segments stay few: the same `STRATA_BENCH_FLUSH_ENTITIES` rows (default
/// 1,000,000) loaded in one flush, or in `STRATA_BENCH_FLUSHES` (default
/// 1,000) small flushes, with compaction (settled by `CHECKPOINT`) and without
/// it. The query at the present should take the same time after one flush as
/// after a thousand when compaction is on.
fn bench_flushes(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let rows = std::env::var("STRATA_BENCH_FLUSH_ENTITIES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000i64);
    let flushes = std::env::var("STRATA_BENCH_FLUSHES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000i64);
    let present = "SELECT count(*), sum(x) FROM h";
    let mut g = c.benchmark_group(format!("flushes ({rows} rows)"));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (label, n_flushes, compaction) in [
        ("1 flush", 1, true),
        ("many flushes, compaction", flushes, true),
        ("many flushes, no compaction", flushes, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::dir(dir.path());
        if !compaction {
            cfg = cfg.with_compaction(CompactionConfig {
                background: false,
                ..Default::default()
            });
        }
        let db = rt.block_on(Db::open(cfg)).unwrap();
        let per = rows / n_flushes;
        rt.block_on(async {
            for f in 0..n_flushes {
                let (lo, hi) = (f * per, (f + 1) * per - 1);
                db.sql(&format!(
                    "INSERT INTO h (_id, x) SELECT value, value FROM generate_series({lo}, {hi}) AS g(value)"
                ))
                .await
                .expect("load");
                db.flush().await.unwrap();
            }
            if compaction {
                db.sql("CHECKPOINT").await.unwrap();
            }
        });
        let n = per * n_flushes;
        assert_eq!(rt.block_on(count_sum(&db, present)), (n, (0..n).sum()));
        let segs = rt.block_on(async {
            let b = db
                .sql("SELECT count(*) FROM strata_segments WHERE table_name = 'h'")
                .await
                .unwrap();
            b[0].column(0).as_primitive::<Int64Type>().value(0)
        });
        eprintln!("flushes: {label}: {n_flushes} flushes of {per} rows -> {segs} segments");
        g.bench_function(
            format!("present, {label} ({n_flushes} flushes, {segs} segments)"),
            |b| b.iter(|| black_box(rt.block_on(count_sum(&db, present)))),
        );
    }
    g.finish();
}

criterion_group!(benches, bench, bench_flushes);
criterion_main!(benches);
