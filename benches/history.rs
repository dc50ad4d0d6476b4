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
//! ```text
//! cargo bench --bench history                          # full criterion run
//! STRATA_BENCH_ENTITIES=200000 cargo bench --bench history -- --quick
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
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
    (
        b[0].column(0).as_primitive::<Int64Type>().value(0),
        b[0].column(1).as_primitive::<Int64Type>().value(0),
    )
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

criterion_group!(benches, bench);
criterion_main!(benches);
