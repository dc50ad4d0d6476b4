//! Bulk load and read back after a restart: count, point lookups and a
//! GROUP BY must give exactly the loaded data, from segments and the live
//! index alike.
//!
//! 100,000 rows by default (fast enough for a debug build);
//! `STRATA_MILLION_ROWS=1000000 cargo test --release --test million` for the
//! full million.

use std::collections::BTreeMap;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use strata::{Config, Db};

const BATCH: i64 = 10_000;

fn rows() -> i64 {
    std::env::var("STRATA_MILLION_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn ints(batches: &[RecordBatch], col: usize) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let c = cast(b.column(col), &DataType::Int64).unwrap();
        let a = c.as_primitive::<Int64Type>();
        out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
    }
    out
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = cast(b.column(col), &DataType::Utf8).unwrap();
        let a = c.as_string::<i32>();
        out.extend((0..a.len()).map(|i| a.value(i).to_string()));
    }
    out
}

/// The row the load writes for `id` (before updates): (grp, val, name).
fn loaded(id: i64) -> (i64, i64, String) {
    (id % 100, id * 2, format!("n{id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_restart_and_query() {
    let n = rows();
    assert!(
        n % BATCH == 0 && n >= BATCH,
        "STRATA_MILLION_ROWS must be a multiple of {BATCH}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = || Config::dir(dir.path()).with_flush_rows((n as usize / 4).max(1));

    // Load in 10k-row INSERT … SELECT transactions.
    let started = Instant::now();
    {
        let db = Db::open(config()).await.unwrap();
        let mut lo = 0;
        while lo < n {
            let hi = lo + BATCH - 1;
            db.sql(&format!(
                "INSERT INTO m (_id, grp, val, name) \
                 SELECT value, value % 100, value * 2, concat('n', value) FROM generate_series({lo}, {hi}) AS g(value)"
            ))
            .await
            .unwrap();
            lo += BATCH;
        }
        // New versions of every 1000th entity: the old rows (some in segments) must stop being current.
        db.sql(&format!(
            "INSERT INTO m (_id, grp, val, name) SELECT value, value % 100, -1, 'updated' FROM generate_series(0, {}, 1000) AS g(value)",
            n - 1
        ))
        .await
        .unwrap();
        let (live, segments) = db.database().engine().table_stats("m").unwrap();
        println!(
            "loaded {n} rows in {:.2?} ({live} live rows, {segments} segments)",
            started.elapsed()
        );
        assert!(
            segments >= 2,
            "the load should have flushed segments ({segments})"
        );
    }
    let updated = |id: i64| id % 1000 == 0;

    // Restart.
    let db = Db::open(config()).await.unwrap();
    let t = Instant::now();

    let b = db.sql("SELECT count(*) FROM m").await.unwrap();
    assert_eq!(ints(&b, 0), vec![Some(n)], "count after restart");

    let b = db
        .sql("SELECT count(DISTINCT _id), min(_id), max(_id) FROM m")
        .await
        .unwrap();
    assert_eq!(
        (ints(&b, 0), ints(&b, 1), ints(&b, 2)),
        (vec![Some(n)], vec![Some(0)], vec![Some(n - 1)])
    );

    // Point lookups: first, last, updated, inside each load batch, missing.
    let mut probes: Vec<i64> = vec![0, 1, 999, 1000, 1001, n / 2, n - 1000, n - 1];
    probes.extend((0..n / BATCH).map(|k| k * BATCH + 4321));
    for id in probes {
        let b = db
            .sql(&format!(
                "SELECT _id, grp, val, name FROM m WHERE _id = {id}"
            ))
            .await
            .unwrap();
        let (g, v, name) = loaded(id);
        let (v, name) = if updated(id) {
            (-1, "updated".to_string())
        } else {
            (v, name)
        };
        assert_eq!(ints(&b, 0), vec![Some(id)], "point lookup {id}");
        assert_eq!(
            (ints(&b, 1), ints(&b, 2), strings(&b, 3)),
            (vec![Some(g)], vec![Some(v)], vec![name]),
            "point lookup {id}"
        );
    }
    for missing in [-1, n, n + 12345] {
        let b = db
            .sql(&format!("SELECT _id FROM m WHERE _id = {missing}"))
            .await
            .unwrap();
        assert!(ints(&b, 0).is_empty(), "_id {missing} does not exist");
    }
    let b = db
        .sql("SELECT _id FROM m WHERE _id IN (5, 50000000, 17, 3) ORDER BY _id")
        .await
        .unwrap();
    assert_eq!(ints(&b, 0), vec![Some(3), Some(5), Some(17)]);

    // GROUP BY against a brute-force model.
    let mut model: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new(); // grp -> (count, sum, max)
    for id in 0..n {
        let (g, v, _) = loaded(id);
        let v = if updated(id) { -1 } else { v };
        let e = model.entry(g).or_insert((0, 0, i64::MIN));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.max(v);
    }
    let b = db
        .sql("SELECT grp, count(*), sum(val), max(val) FROM m GROUP BY grp ORDER BY grp")
        .await
        .unwrap();
    let (g, c, s, m) = (ints(&b, 0), ints(&b, 1), ints(&b, 2), ints(&b, 3));
    assert_eq!(g.len(), 100);
    for i in 0..g.len() {
        let grp = g[i].unwrap();
        assert_eq!(
            (c[i].unwrap(), s[i].unwrap(), m[i].unwrap()),
            model[&grp],
            "group {grp}"
        );
    }
    let b = db
        .sql("SELECT count(*) FROM m WHERE name = 'updated'")
        .await
        .unwrap();
    assert_eq!(ints(&b, 0), vec![Some(n / 1000)]);
    println!("queries after restart checked in {:.2?}", t.elapsed());
}
