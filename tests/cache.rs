//! The disk cache under a whole database: a store that adds 20 ms to every
//! request, segments and blooms cached on first use, `strata_cache` showing
//! it, and a reopened node finding its cache again (hits, nothing fetched).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use object_store::memory::InMemory;
use strata::{Config, Db};
use strata_storage::LatencyStore;

fn i64_at(b: &[RecordBatch], col: &str) -> i64 {
    let c = b[0].column_by_name(col).unwrap();
    c.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}

async fn cache_row(db: &Db) -> Vec<RecordBatch> {
    db.sql("SELECT * FROM strata_cache").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_cached_and_found_again_after_reopen() {
    let inner = Arc::new(InMemory::new());
    let store = Arc::new(LatencyStore::new(inner, Duration::from_millis(20)));
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let config = || {
        Config::location(store.location("latency://bench"))
            .with_cache_dir(&cache_dir)
            .with_cache_size(64 << 20)
    };
    {
        let db = Db::open(config()).await.unwrap();
        db.sql("INSERT INTO t (_id, v) SELECT value, value * 2 FROM generate_series(1, 5000)")
            .await
            .unwrap();
        db.flush().await.unwrap();
    }
    // A fresh node: blooms and the segment come from the store, once.
    {
        let db = Db::open(config()).await.unwrap();
        let b = db
            .sql("SELECT CAST(sum(v) AS BIGINT) AS s FROM t")
            .await
            .unwrap();
        assert_eq!(i64_at(&b, "s"), 5000 * 5001);
        let b = cache_row(&db).await;
        assert_eq!(b[0].num_rows(), 1);
        let dir = b[0].column_by_name("dir").unwrap();
        let dir = dir.as_any().downcast_ref::<StringArray>().unwrap().value(0);
        assert_eq!(dir, cache_dir.display().to_string());
        assert_eq!(i64_at(&b, "limit_bytes"), 64 << 20);
        // The segment (a scan needs no bloom filter: those load on first lookup).
        assert!(i64_at(&b, "misses") >= 1, "segment fetched");
        assert_eq!(i64_at(&b, "files"), i64_at(&b, "misses"));
        assert!(i64_at(&b, "used_bytes") > 0);
        assert_eq!(i64_at(&b, "used_bytes"), i64_at(&b, "fetched_bytes"));
    }
    // Reopened: everything it needs is on local disk.
    let db = Db::open(config()).await.unwrap();
    let b = db
        .sql("SELECT CAST(sum(v) AS BIGINT) AS s FROM t WHERE _id > 10")
        .await
        .unwrap();
    assert_eq!(i64_at(&b, "s"), 5000 * 5001 - 110);
    let b = cache_row(&db).await;
    assert_eq!(i64_at(&b, "misses"), 0);
    assert_eq!(i64_at(&b, "fetched_bytes"), 0);
    assert!(i64_at(&b, "hits") >= 1);
    let rate = b[0].column_by_name("hit_rate").unwrap();
    assert_eq!(
        rate.as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .value(0),
        1.0
    );
}
