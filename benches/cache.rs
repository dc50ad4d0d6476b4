//! Warmed prepared point lookups on a remote store behind the disk cache vs
//! a local directory.
//!
//! The remote store is `strata_storage::LatencyStore`: an in-memory object
//! store that waits 20 ms (`STRATA_BENCH_LATENCY_MS`) before every request,
//! a stand-in for S3. Both databases load `STRATA_BENCH_ROWS` rows (default
//! 100,000, flushed every 25,000 into segments), are reopened (so segments
//! come back through the store, the remote one through a fresh cache
//! directory), warmed with a lookup per segment, then measured with the same
//! prepared statement `SELECT … WHERE _id = $1` on one session. The setup
//! also prints the time to reopen the remote database with an empty and with
//! a warm cache directory.
//!
//! ```text
//! cargo bench --bench cache
//! cargo bench --bench cache -- --quick
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::common::ScalarValue;
use strata::{CompactionConfig, Config, Db, Session};
use strata_storage::LatencyStore;
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
            "INSERT INTO orders (_id, customer, status, amount) \
             SELECT value, value % 1000, CASE value % 2 WHEN 0 THEN 'new' ELSE 'paid' END, (value % 997) * 1.25 \
             FROM generate_series({lo}, {hi}) AS g(value)"
        ))
        .await
        .expect("load batch");
        lo = hi + 1;
    }
    db.flush().await.unwrap();
}

const LOOKUP: &str = "SELECT _id, customer, status, amount FROM orders WHERE _id = $1";

async fn lookup(session: &mut Session, id: i64) -> usize {
    let outs = session
        .execute(LOOKUP, &[ScalarValue::Int64(Some(id))])
        .await
        .unwrap();
    let batches = outs.into_iter().last().unwrap().collect().await.unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

fn bench_cache(c: &mut Criterion) {
    let rows = env_or("STRATA_BENCH_ROWS", 100_000);
    let flush_rows = env_or("STRATA_BENCH_FLUSH_ROWS", 25_000) as usize;
    let latency = Duration::from_millis(env_or("STRATA_BENCH_LATENCY_MS", 20) as u64);
    let rt = Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let local_dir = tmp.path().join("local");
    let store = LatencyStore::memory(latency);
    // No background compaction: both databases keep the same level-0
    // segments (a background merge racing the end of the load made the two
    // layouts differ, 1 segment locally against 4 remotely).
    let no_compaction = CompactionConfig {
        background: false,
        ..Default::default()
    };
    let local = || {
        Config::dir(&local_dir)
            .with_flush_rows(flush_rows)
            .with_compaction(no_compaction.clone())
    };
    let remote = |cache: &str| {
        Config::location(store.location("latency://bench"))
            .with_flush_rows(flush_rows)
            .with_cache_dir(tmp.path().join(cache))
            .with_compaction(no_compaction.clone())
    };

    rt.block_on(async {
        load(&Db::open(local()).await.unwrap(), rows).await;
        load(&Db::open(remote("unused")).await.unwrap(), rows).await;
    });

    let open = |config: Config| {
        let t = Instant::now();
        let db = rt.block_on(Db::open(config)).unwrap();
        (db, t.elapsed())
    };
    let (local_db, local_open) = open(local());
    let (cold_db, cold_open) = open(remote("cache"));
    // Warm: one lookup per segment loads every segment.
    let warm = |db: &Db| {
        rt.block_on(async {
            let mut s = db.session();
            let t = Instant::now();
            for id in (0..rows).step_by(flush_rows.max(1)) {
                assert_eq!(lookup(&mut s, id).await, 1, "lookup {id}");
            }
            t.elapsed()
        })
    };
    let local_warm = warm(&local_db);
    let cold_warm = warm(&cold_db);
    drop(cold_db);
    let (remote_db, warm_open) = open(remote("cache"));
    let remote_warm = warm(&remote_db);
    let stats = remote_db
        .database()
        .engine()
        .storage()
        .cache_stats()
        .unwrap();
    println!(
        "cache: {rows} rows, {latency:?} per request; open+warm: local {local_open:.2?}+{local_warm:.2?}, \
         remote with an empty cache {cold_open:.2?}+{cold_warm:.2?}, remote with a warm cache {warm_open:.2?}+{remote_warm:.2?}"
    );
    let segments = |db: &Db| db.database().engine().table_stats("orders").map(|(_, n)| n);
    println!(
        "cache: segments of orders: local {:?}, remote {:?}",
        segments(&local_db),
        segments(&remote_db)
    );
    println!(
        "cache: {} files, {} bytes, {} hits, {} misses, {} store requests in all",
        stats.files,
        stats.used_bytes,
        stats.hits,
        stats.misses,
        store.requests()
    );

    let mut g = c.benchmark_group("cache");
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    for (name, db) in [("local_dir", &local_db), ("remote_20ms_cached", &remote_db)] {
        let session = Arc::new(tokio::sync::Mutex::new(db.session()));
        let next = AtomicI64::new(0);
        g.bench_function(format!("prepared_point_lookup/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let id = next.fetch_add(7919, Ordering::Relaxed) % rows;
                let mut s = session.lock().await;
                black_box(lookup(&mut s, id).await)
            })
        });
    }
    g.finish();
    let requests = store.requests();
    rt.block_on(async {
        let mut s = remote_db.session();
        lookup(&mut s, 1).await;
    });
    println!(
        "cache: store requests during one warmed lookup: {}",
        store.requests() - requests
    );
}

criterion_group!(benches, bench_cache);
criterion_main!(benches);
