//! Table scans as the optimizer and the executor see them: statistics from
//! segment metadata, scans split by batch across partitions (present and
//! past coordinates alike), and join build sides chosen from the statistics.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::SchemaProvider;
use datafusion::common::stats::Precision;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use strata_query::provider::{QueryTimes, StrataSchema};
use strata_query::{Database, Session};
use strata_storage::{Coordinate, EngineConfig, StoreLocation, TestClock};

const DAY: i64 = 86_400_000_000;
const Y2020: i64 = 1_577_836_800_000_000;
/// Valid time 2100-01-01: writes are valid from the wall clock's now (the
/// test clock only moves system time), so reads look far ahead.
const Y2100: i64 = 4_102_444_800_000_000;

/// The state as of system time `s`, valid far ahead.
fn at(s: i64) -> Coordinate {
    Coordinate {
        system: strata_storage::TimeSelector::AsOf(s),
        valid: strata_storage::TimeSelector::AsOf(Y2100),
    }
}

async fn open(dir: &std::path::Path) -> Arc<Database> {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.clock = Arc::new(TestClock::new(Y2020, DAY));
    c.compaction.background = false;
    Database::open(c).await.unwrap()
}

async fn q(s: &mut Session, sql: &str) -> String {
    let mut outs = s
        .execute(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let b = outs.pop().unwrap().collect().await.unwrap();
    pretty_format_batches(&b).unwrap().to_string()
}

/// The statistics the optimizer gets for a scan of `table` (columns by name).
async fn scan_stats(
    db: &Arc<Database>,
    table: &str,
    columns: &[&str],
) -> datafusion::common::Statistics {
    let engine = db.engine().clone();
    let now = engine.latest_system_time();
    let times = Arc::new(parking_lot::RwLock::new(Arc::new(QueryTimes {
        default: at(now),
        overrides: vec![],
        pending: None,
    })));
    let schema = StrataSchema { engine, times };
    let provider = schema.table(table).await.unwrap().unwrap();
    let full = provider.schema();
    let projection: Vec<usize> = columns.iter().map(|c| full.index_of(c).unwrap()).collect();
    let ctx = SessionContext::new();
    let plan = provider
        .scan(&ctx.state(), Some(&projection), &[], None)
        .await
        .unwrap();
    let stats = datafusion::physical_plan::StatisticsContext::new()
        .compute(
            plan.as_ref(),
            &datafusion::physical_plan::StatisticsArgs::new(),
        )
        .unwrap();
    stats.as_ref().clone()
}

#[tokio::test]
async fn scans_give_the_optimizer_row_counts_and_column_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO t (_id, x, s, m) SELECT value, value * 2, 'k' || CAST(value AS VARCHAR), \
         CASE WHEN value <= 10 THEN NULL ELSE value END \
         FROM generate_series(1, 1000) AS g(value)",
    )
    .await;
    // Live rows only: the count is known, the bounds are not.
    let st = scan_stats(&db, "t", &["x"]).await;
    assert_eq!(st.num_rows, Precision::Inexact(1000));
    assert_eq!(st.column_statistics[0].min_value, Precision::Absent);

    q(&mut s, "CHECKPOINT").await;
    let st = scan_stats(&db, "t", &["_id", "x", "s", "m"]).await;
    assert_eq!(st.num_rows, Precision::Inexact(1000));
    let c = &st.column_statistics;
    assert_eq!(c[0].distinct_count, Precision::Inexact(1000));
    assert_eq!(
        c[1].min_value,
        Precision::Inexact(ScalarValue::Int64(Some(2)))
    );
    assert_eq!(
        c[1].max_value,
        Precision::Inexact(ScalarValue::Int64(Some(2000)))
    );
    assert_eq!(c[1].null_count, Precision::Inexact(0));
    let text = |p: &Precision<ScalarValue>| p.get_value().map(|v| v.to_string());
    assert_eq!(text(&c[2].min_value).as_deref(), Some("k1"));
    assert_eq!(text(&c[2].max_value).as_deref(), Some("k999"));
    assert_eq!(c[3].null_count, Precision::Inexact(10));
    // Never exact: `count(*)` and `min`/`max` are still computed from rows.
    assert_eq!(
        q(
            &mut s,
            "SELECT count(*) AS n, min(x) AS lo FROM t WHERE _id > 500"
        )
        .await,
        q(&mut s, "SELECT 500 AS n, 1002 AS lo").await,
    );

    // Deleted rows leave the count.
    q(&mut s, "DELETE FROM t WHERE _id <= 100").await;
    q(&mut s, "CHECKPOINT").await;
    let st = scan_stats(&db, "t", &["x"]).await;
    assert_eq!(st.num_rows, Precision::Inexact(900));
}

#[tokio::test]
async fn the_small_side_of_a_join_is_built_whichever_side_it_is_written_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO big (_id, k) SELECT value, value % 10 FROM generate_series(1, 50000) AS g(value)",
    )
    .await;
    q(
        &mut s,
        "INSERT INTO small (_id, name) SELECT value, 'n' || CAST(value AS VARCHAR) \
         FROM generate_series(0, 9) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    for sql in [
        "SELECT count(*) FROM big JOIN small ON big.k = small._id",
        "SELECT count(*) FROM small JOIN big ON big.k = small._id",
    ] {
        let plan = q(&mut s, &format!("EXPLAIN {sql}")).await;
        let physical = &plan[plan.find("physical_plan").unwrap()..];
        let join = physical
            .find("HashJoinExec")
            .unwrap_or_else(|| panic!("no hash join in\n{plan}"));
        let build = physical[join..]
            .find("table=")
            .map(|at| &physical[join + at + 6..])
            .unwrap();
        assert!(
            build.starts_with("small"),
            "the build side is not `small`:\n{plan}"
        );
        assert!(q(&mut s, sql).await.contains("50000"));
    }
}

/// Every row of a scan of `table` at `coord`, read as `parts` partitions:
/// (`_id`, `x`) pairs sorted, and the rows each partition returned.
async fn read_parts(
    db: &Arc<Database>,
    table: &str,
    coord: Coordinate,
    parts: usize,
) -> (Vec<(i64, i64)>, Vec<usize>) {
    let scan = Arc::new(db.engine().scan(table, coord, None).unwrap().unwrap());
    let out = Arc::new(scan.schema.project(&[0, 1]).unwrap());
    let mut rows = Vec::new();
    let mut per_part = Vec::new();
    for p in 0..parts {
        let batches: Vec<RecordBatch> = scan
            .partition_stream(p, parts, out.clone())
            .try_collect()
            .await
            .unwrap();
        let mut n = 0;
        for b in &batches {
            assert_eq!(b.schema(), out);
            let id = b.column(0).as_primitive::<Int64Type>();
            let x = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                assert!(!x.is_null(i));
                rows.push((id.value(i), x.value(i)));
            }
            n += b.num_rows();
        }
        per_part.push(n);
    }
    rows.sort_unstable();
    (rows, per_part)
}

#[tokio::test]
async fn a_scan_is_split_by_batch_and_reads_the_same_rows_at_any_coordinate() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    // 200 000 rows: one compacted segment of four batches.
    q(
        &mut s,
        "INSERT INTO t (_id, x) SELECT value, value FROM generate_series(1, 200000) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    let before = db.engine().latest_system_time();
    q(&mut s, "UPDATE t SET x = x + 1000000 WHERE _id % 3 = 0").await;
    q(&mut s, "CHECKPOINT").await;
    // And some live rows on top.
    q(&mut s, "UPDATE t SET x = -x WHERE _id <= 1000").await;
    let now = db.engine().latest_system_time();
    let segments = db.engine().scan("t", at(now), None).unwrap().unwrap();
    assert!(segments.work_units() > 2, "{}", segments.work_units());

    for (coord, expect) in [
        (at(before), 200_000),
        (at(now), 200_000),
        (Coordinate::all(), 200_000 + 66_666 * 2 + 1000 * 2),
    ] {
        let (one, _) = read_parts(&db, "t", coord, 1).await;
        let (three, per_part) = read_parts(&db, "t", coord, 3).await;
        assert_eq!(one.len(), expect, "{coord:?}");
        assert_eq!(one, three, "{coord:?}");
        assert!(per_part.iter().all(|&n| n > 0), "{coord:?}: {per_part:?}");
    }
    let (past, _) = read_parts(&db, "t", at(before), 2).await;
    assert!(past.iter().all(|&(id, x)| id == x));
    let (present, _) = read_parts(&db, "t", at(now), 2).await;
    for &(id, x) in &present {
        let mut want = if id % 3 == 0 { id + 1_000_000 } else { id };
        if id <= 1000 {
            want = -want;
        }
        assert_eq!(x, want, "_id {id}");
    }
    // The SQL answer is the same through the planner's partitions.
    assert_eq!(
        q(&mut s, "SELECT count(*) AS n, sum(x) AS s FROM t").await,
        q(
            &mut s,
            &format!(
                "SELECT CAST({} AS BIGINT) AS n, CAST({} AS BIGINT) AS s",
                present.len(),
                present.iter().map(|p| p.1).sum::<i64>()
            )
        )
        .await
    );
}

#[tokio::test]
async fn pushed_predicates_are_evaluated_in_the_scan_and_never_change_answers() {
    use strata_storage::{CmpOp, ColumnPredicate, StatValue, Test};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO t (_id, x, s, d, n, ts) SELECT value, value, \
         'k' || CAST(value % 1000 AS VARCHAR), \
         CAST(CAST(value % 100 AS DECIMAL(10, 2)) / 100 AS DECIMAL(10, 2)), \
         CASE WHEN value % 7 = 0 THEN NULL ELSE value END, \
         to_timestamp(value * 60) \
         FROM generate_series(1, 100000) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    // Some rows in the live index and some retired, so both read paths and
    // the visibility filter meet the predicates.
    let before = db.engine().latest_system_time();
    q(&mut s, "UPDATE t SET x = x + 1 WHERE _id % 1000 = 0").await;
    let as_of = format!(
        " FOR SYSTEM_TIME AS OF TIMESTAMP '{}'",
        chrono::DateTime::from_timestamp_micros(before)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.6fZ")
    );

    let plan = q(
        &mut s,
        "EXPLAIN SELECT count(*) FROM t WHERE x > 99000 AND s >= 'k5'",
    )
    .await;
    assert!(plan.contains("predicates=[x > 99000, s >= 'k5']"), "{plan}");

    // Storage hands back only rows that satisfy them (before: every row of
    // every batch its statistics could not rule out).
    let now = db.engine().latest_system_time();
    let scan = db
        .engine()
        .scan("t", at(now), None)
        .unwrap()
        .unwrap()
        .with_predicates(vec![ColumnPredicate {
            column: "x".into(),
            test: Test::Cmp(CmpOp::Gt, StatValue::Int(99_000)),
            decimal_scale: None,
        }]);
    let scan = Arc::new(scan);
    let out = Arc::new(scan.schema.project(&[0, 1]).unwrap());
    let batches: Vec<RecordBatch> = scan
        .partition_stream(0, 1, out)
        .try_collect()
        .await
        .unwrap();
    let xs: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(xs.len(), 1001, "live and segment rows above 99000");
    assert!(xs.iter().all(|&x| x > 99_000));

    // Every filter, pushed or not, gives the same answer: the same filter
    // behind a CASE (which is not pushed) is the reference.
    // Long lists: an `IN` on a column longer than the scan evaluates itself,
    // and `_id` lists found by binary search (a few) or by one merge with
    // each batch (thousands), with repeats.
    let list = |n: usize, step: usize| {
        (1..=n)
            .map(|i| (i * step % 100_003).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let long_x = format!("x IN ({})", list(40, 2_500));
    let few_ids = "_id IN (1, 1, 1000, 1000, 99999, 5)".to_string();
    let many_ids = format!("_id IN ({}, {})", list(3_000, 37), list(100, 37));
    let preds = [
        "x > 99000",
        "x <= 17",
        "x = 5000",
        "x IN (5, 1000, 1001, 200000)",
        "x BETWEEN 10 AND 20",
        "s = 'k777'",
        "s < 'k2'",
        "s IN ('k1', 'k999')",
        "n IS NULL",
        "n IS NOT NULL",
        "n > 50000",
        "n < 10",
        "d = 0.5",
        "d < 0.24",
        "d BETWEEN 0.05 AND 0.07",
        "ts >= TIMESTAMP '1970-02-01 00:00:00Z'",
        "ts < TIMESTAMP '1970-01-01 01:00:00Z' AND x > 10",
        "x > 50 AND s = 'k51' AND n IS NOT NULL",
        &long_x,
        &few_ids,
        &many_ids,
        "_id = 1 OR _id = 1000 OR _id = 99999",
        "_id IN (7, 8) OR _id = 5 OR _id = 7",
    ];
    for pred in preds {
        // At the present and as of before the update.
        for at in ["", as_of.as_str()] {
            let pushed = q(
                &mut s,
                &format!("SELECT count(*) AS n, sum(x) AS sx FROM t{at} WHERE {pred}"),
            )
            .await;
            let reference = q(
                &mut s,
                &format!(
                    "SELECT count(*) AS n, sum(x) AS sx FROM t{at} \
                     WHERE CASE WHEN {pred} THEN true ELSE false END"
                ),
            )
            .await;
            assert_eq!(pushed, reference, "{pred}{at}");
        }
    }
}

/// Rows that reached the `FilterExec` above a scan (its `selectivity=…
/// (kept/in)` metric), summed over the plan.
fn filter_input_rows(plan: &str) -> u64 {
    plan.lines()
        .filter(|l| l.contains("FilterExec"))
        .filter_map(|l| {
            let at = l.find("selectivity=")?;
            let rest = &l[at..];
            let (_, after) = rest.split_once('/')?;
            let end = after.find(')')?;
            count(&after[..end])
        })
        .sum()
}

/// A count as EXPLAIN ANALYZE prints it: `60`, or `60.00 K` (or M, B).
fn count(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, scale) = match v.split_once(' ') {
        Some((n, "K")) => (n, 1e3),
        Some((n, "M")) => (n, 1e6),
        Some((n, "B")) => (n, 1e9),
        _ => (v, 1.0),
    };
    Some((num.parse::<f64>().ok()? * scale) as u64)
}

/// `_id = a OR _id = b` (which is also what DataFusion makes of a short
/// `_id IN (a, b, c)`) is a lookup of those ids, not a scan of the table.
#[tokio::test]
async fn short_id_lists_and_or_chains_of_ids_read_only_those_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO t (_id, x) SELECT value, value * 2 FROM generate_series(1, 50000) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    q(&mut s, "UPDATE t SET x = 0 WHERE _id = 2").await;
    for (pred, rows) in [
        ("_id IN (1, 2, 40000)", 3),
        ("_id = 1 OR _id = 2 OR _id = 40000", 3),
        ("_id = 7 OR (_id = 9 OR _id = 7)", 1 + 1),
        ("_id = 1 OR _id = 777777", 1),
    ] {
        let plan = q(
            &mut s,
            &format!("EXPLAIN ANALYZE SELECT sum(x) FROM t WHERE ({pred}) AND x >= 0"),
        )
        .await;
        let read = filter_input_rows(&plan);
        assert!(
            read <= rows,
            "{pred}: the scan handed {read} rows to the filter, expected at most {rows}\n{plan}"
        );
    }
    let got = q(
        &mut s,
        "SELECT _id, x FROM t WHERE _id = 1 OR _id = 2 OR _id = 40000 ORDER BY _id",
    )
    .await;
    let got = got.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        got.ends_with("| 1 | 2 | | 2 | 0 | | 40000 | 80000 | +-------+-------+"),
        "{got}"
    );
}

/// The sum of metric `name` over the StrataScanExec lines of an EXPLAIN
/// ANALYZE.
fn scan_metric(plan: &str, name: &str) -> u64 {
    scan_metric_of(plan, "", name)
}

/// [`scan_metric`] of the scans of one table (`""`: of all).
fn scan_metric_of(plan: &str, table: &str, name: &str) -> u64 {
    let table = format!("table={table}");
    plan.lines()
        .filter(|l| l.contains("StrataScanExec") && l.contains(&table))
        .filter_map(|l| {
            let at = l.find(&format!("{name}="))?;
            let rest = &l[at + name.len() + 1..];
            let end = rest.find([',', ']']).unwrap_or(rest.len());
            count(&rest[..end])
        })
        .sum()
}

#[tokio::test]
async fn hash_joins_filter_the_scans_of_their_probe_side_without_changing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO big (_id, k, v) SELECT value, value % 1000, value \
         FROM generate_series(1, 150000) AS g(value)",
    )
    .await;
    q(
        &mut s,
        "INSERT INTO small (_id, tag) SELECT value, \
         CASE WHEN value % 200 = 7 THEN 'x' ELSE 'y' END \
         FROM generate_series(0, 999) AS g(value)",
    )
    .await;
    q(
        &mut s,
        "INSERT INTO tiny (_id, w) SELECT value, value * 10 \
         FROM generate_series(0, 9) AS g(value)",
    )
    .await;
    q(
        &mut s,
        "INSERT INTO mid (_id, g) SELECT value, value % 100 \
         FROM generate_series(0, 1999) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    let before = db.engine().latest_system_time();
    // Some rows in the live index too, and history behind them.
    q(&mut s, "UPDATE big SET v = v + 1 WHERE _id % 100 = 7").await;
    q(
        &mut s,
        "INSERT INTO big (_id, k, v) SELECT value, value % 1000, value \
         FROM generate_series(150001, 151000) AS g(value)",
    )
    .await;
    let as_of = format!(
        " FOR SYSTEM_TIME AS OF TIMESTAMP '{}'",
        chrono::DateTime::from_timestamp_micros(before)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.6fZ")
    );
    // Each query with `{k}` as the probe key: `k` may be filtered in the
    // scan; `k + 0` is computed above the scan, so the rule leaves it
    // alone, and that answer is the reference. `Filtered`: the scans must
    // have dropped rows (the build side holds 5 of 1,000 keys).
    #[derive(PartialEq)]
    enum Expect {
        Filtered,
        /// At least this many rows dropped (a scan smaller than `big`).
        AtLeast(u64),
        /// At least this many rows dropped by the scans of one table.
        TableAtLeast(&'static str, u64),
        /// Every key matches: the scan stops evaluating the filter.
        Abandoned,
        Unfiltered,
        /// Answers checked, the plan not.
        Any,
    }
    use Expect::*;
    let cases: Vec<(String, Expect)> = vec![
        // Plain inner join, the small side built: the scan is the join's
        // probe input; a hash probe there would only repeat the join's,
        // but the integer keys make a bitmap, one bit test per row.
        (
            "SELECT count(*), sum(big.v) FROM {big} JOIN {small} ON {k} = small._id \
             WHERE small.tag = 'x'"
                .into(),
            Filtered,
        ),
        // TPC-H Q17's shape: an aggregate over the big side under the join.
        (
            "SELECT count(*), sum(a.s) FROM {small} JOIN \
             (SELECT {k} AS k, sum(v) AS s, count(*) AS c FROM {big} GROUP BY {k}) a \
             ON a.k = small._id WHERE small.tag = 'x'"
                .into(),
            Filtered,
        ),
        // A semi join (again right above the scan, again a bitmap).
        (
            "SELECT count(*), sum(v) FROM {big} WHERE {k} IN \
             (SELECT _id FROM {small} WHERE tag = 'x')"
                .into(),
            Filtered,
        ),
        // The same table twice: two columns named `k` (and `v`) in one
        // join's output. Only b1's rows may be filtered (b1 is the lower
        // join's build side).
        (
            "SELECT count(*), sum(b1.v), sum(b2.v), sum(b2.k) FROM {big} b1 \
             JOIN {big} b2 ON b1._id = b2._id + 1 \
             JOIN {small} ON small._id = {k2} WHERE small.tag = 'x'"
                .into(),
            Filtered,
        ),
        // TPC-H Q11's shape: the key is a lower join's build side, read
        // under a merge of its partitions, which starts reading as soon as
        // the plan runs; the scan must wait for the upper join's keys
        // (before it did, it read `s2` whole first, and dropped nothing).
        (
            "SELECT count(*), sum(big.v) FROM {big}, {mid}, {small} \
             WHERE big.k = mid._id AND {k3} = small._id AND small.tag = 'x'"
                .into(),
            AtLeast(1980),
        ),
        // TPC-H Q5's shape: the upper join's key is `big.k`, from the
        // lower join's probe side, right under it (not filtered there);
        // `mid.g = big.k` makes the same keys a filter on `mid`, the lower
        // join's build side (2,000 rows, 100 of them with a kept key).
        (
            "SELECT count(*), sum(big.v), sum(mid._id) FROM {mid}, {big}, {small} \
             WHERE {k4} = {bk} AND {bk} = small._id AND small.tag = 'x'"
                .into(),
            TableAtLeast("mid", 1900),
        ),
        // TPC-H Q2's shape: the subquery's rows are joined on two keys,
        // one of them its aggregate's result, which cannot be followed to
        // a scan; the other, a grouping key, gets a bitmap of the outer
        // rows' keys alone. (The outer join's key is computed, so only the
        // subquery's scan can drop rows; `{k}` is computed in a derived
        // table because DataFusion cannot decorrelate `b.k + 0 = small._id`.)
        (
            "SELECT count(*), sum(big.v) FROM {small}, {big} \
             WHERE big.k + 0 = small._id AND small.tag = 'x' \
             AND big.v = (SELECT max(b.v) FROM (SELECT {k} AS k, v FROM {big}) b \
             WHERE b.k = small._id)"
                .into(),
            Filtered,
        ),
        // Three joins deep: the key comes up through one join's probe side
        // from another's build side.
        (
            "SELECT count(*), sum(b2.v), sum(tiny.w) FROM {small} JOIN \
             ({tiny} JOIN ({big} b1 JOIN {big} b2 ON b1._id = b2._id + 1) \
             ON tiny._id = b2.v % 10) ON small._id = {k2} WHERE small.tag = 'x'"
                .into(),
            Any,
        ),
        // Outer joins: the preserved side's rows must all stay.
        (
            "SELECT count(*), sum(big.v), count(small._id) FROM {big} LEFT JOIN {small} \
             ON {k} = small._id AND small.tag = 'x'"
                .into(),
            Unfiltered,
        ),
        // ... but the other side's rows without a match are not output.
        (
            "SELECT count(*), count(big.v) FROM {small} LEFT JOIN {big} \
             ON {k} = small._id WHERE small.tag = 'x'"
                .into(),
            Filtered,
        ),
        // Anti joins keep exactly the rows without a match.
        (
            "SELECT count(*), sum(v) FROM {big} WHERE NOT EXISTS \
             (SELECT 1 FROM {small} WHERE small._id = {k} AND small.tag = 'x')"
                .into(),
            Unfiltered,
        ),
        // Every key of `big` is on the build side: nothing to drop.
        (
            "SELECT count(*), sum(a.s) FROM {small} JOIN \
             (SELECT {k} AS k, sum(v) AS s FROM {big} GROUP BY {k}) a \
             ON a.k = small._id"
                .into(),
            Abandoned,
        ),
        // A limit between the scan and the join: not filtered below it.
        (
            "SELECT count(*) FROM {small} JOIN \
             (SELECT {k} AS k FROM {big} ORDER BY v LIMIT 3000) l ON l.k = small._id \
             WHERE small.tag = 'x'"
                .into(),
            Unfiltered,
        ),
    ];
    for (shape, expect) in &cases {
        for time in ["", as_of.as_str()] {
            let with_time = |sql: String| {
                sql.replace("{big} b", &format!("big{time} b"))
                    .replace("{tiny}", &format!("tiny{time} AS tiny"))
                    .replace("{big}", &format!("big{time} AS big"))
                    .replace("{small}", &format!("small{time} AS small"))
                    .replace("{mid}", &format!("mid{time} AS mid"))
            };
            let direct = with_time(
                shape
                    .replace("{k}", "k")
                    .replace("{k2}", "b1.k")
                    .replace("{k3}", "mid.g")
                    .replace("{k4}", "mid.g")
                    .replace("{bk}", "big.k"),
            );
            let reference = with_time(
                shape
                    .replace("{k}", "k + 0")
                    .replace("{k2}", "b1.k + 0")
                    .replace("{k3}", "mid.g + 0")
                    .replace("{k4}", "mid.g + 0")
                    .replace("{bk}", "(big.k + 0)"),
            );
            let got = q(&mut s, &direct).await;
            let want = q(&mut s, &reference).await;
            assert_eq!(got, want, "{direct}\nagainst\n{reference}");
            let plan = q(&mut s, &format!("EXPLAIN ANALYZE {direct}")).await;
            let pruned = scan_metric(&plan, "rows_pruned_by_dynamic_filters");
            let abandoned = scan_metric(&plan, "dynamic_filters_abandoned");
            if time.is_empty() {
                match expect {
                    Filtered => assert!(
                        pruned > 10_000 && abandoned == 0,
                        "the join's keys did not filter the scan \
                         ({pruned} rows dropped, {abandoned} filters abandoned):\n{plan}"
                    ),
                    AtLeast(n) => assert!(
                        pruned >= *n && abandoned == 0,
                        "the join's keys did not filter the scan \
                         ({pruned} rows dropped, {abandoned} filters abandoned):\n{plan}"
                    ),
                    TableAtLeast(table, n) => {
                        let pruned = scan_metric_of(&plan, table, "rows_pruned_by_dynamic_filters");
                        assert!(
                            pruned >= *n,
                            "the join's keys did not filter {table} ({pruned} rows dropped):\n{plan}"
                        )
                    }
                    Abandoned => assert!(
                        pruned < 10_000 && abandoned > 0,
                        "a filter that drops nothing was kept:\n{plan}"
                    ),
                    Unfiltered => assert_eq!(pruned, 0, "{plan}"),
                    Any => {}
                }
            }
            let reference_plan = q(&mut s, &format!("EXPLAIN ANALYZE {reference}")).await;
            assert_eq!(
                scan_metric(&reference_plan, "rows_pruned_by_dynamic_filters"),
                0,
                "a computed key was filtered:\n{reference_plan}"
            );
        }
    }
}

/// An uncorrelated scalar subquery runs once, before the plan
/// (DataFusion's `ScalarSubqueryExec`); Strata's per-row apply is only for
/// correlated ones. Before, the apply took it too and it ran twice: TPC-H
/// Q15 read `lineitem` three times for two scans in its plan.
#[tokio::test]
async fn uncorrelated_scalar_subqueries_run_once_before_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO t (_id, g, v) SELECT value, value % 10, value \
         FROM generate_series(1, 1000) AS g(value)",
    )
    .await;
    let sql = "SELECT _id, v FROM t WHERE v = (SELECT max(v) FROM t WHERE g = 3)";
    assert!(q(&mut s, sql).await.contains("| 993 | 993 |"));
    let plan = q(&mut s, &format!("EXPLAIN ANALYZE {sql}")).await;
    assert!(plan.contains("ScalarSubqueryExec"), "{plan}");
    assert!(
        !plan.contains("StrataApply"),
        "the subquery is run twice:\n{plan}"
    );
    // In a projection, over no rows (NULL), and over several rows (21000).
    let got = q(
        &mut s,
        "SELECT (SELECT v FROM t WHERE v > 5000) IS NULL AS none",
    )
    .await;
    assert!(got.contains("| true |"), "{got}");
    let err = s
        .execute(
            "SELECT _id FROM t WHERE v = (SELECT v FROM t WHERE g = 3)",
            &[],
        )
        .await;
    let err = match err {
        Ok(mut outs) => outs.pop().unwrap().collect().await.map(|_| ()).unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.sqlstate(), "21000", "{err}");
    // A correlated one still goes through the apply, and answers alike.
    let corr =
        "SELECT count(*) FROM t WHERE v = (SELECT max(x.v) FROM t x WHERE x.g = t.g AND x.v < 500)";
    assert!(q(&mut s, corr).await.contains("| 10 "));
    let plan = q(&mut s, &format!("EXPLAIN {corr}")).await;
    assert!(
        plan.contains("StrataApply") || plan.contains("Join"),
        "{plan}"
    );
}

/// Grouping by columns of short text groups by an integer key that packs
/// them (crate `text_keys`), chosen from the segments' statistics. The key
/// is exact for every text: NULLs, empty texts and texts longer than the
/// statistics suggest (`'Apple pie'` between `''` and `'R'`) group as
/// before, at the present and over all of history.
#[tokio::test]
async fn grouping_by_short_text_packs_it_into_an_integer_key_without_changing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "INSERT INTO t (_id, f, g, h, k, w, n) SELECT value, \
         CASE value % 7 WHEN 0 THEN 'A' WHEN 1 THEN 'N' WHEN 2 THEN 'R' WHEN 3 THEN NULL \
           WHEN 4 THEN '' WHEN 5 THEN 'Apple pie' ELSE 'é' END, \
         CASE value % 3 WHEN 0 THEN 'F' WHEN 1 THEN 'O' ELSE 'FO' END, \
         CASE value % 4 WHEN 0 THEN 'MAIL' WHEN 1 THEN 'REG AIR' WHEN 2 THEN 'TRUCK' ELSE NULL END, \
         value % 5, 'customer number ' || CAST(value % 11 AS VARCHAR), value \
         FROM generate_series(1, 3000) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    // Live rows on top, with texts the statistics have not seen.
    q(
        &mut s,
        "UPDATE t SET f = CASE WHEN _id % 20 = 0 THEN 'Banana split' ELSE 'Z' END, \
         h = 'AIR FREIGHT' WHERE _id % 10 = 0",
    )
    .await;
    let cases = [
        // (grouped by columns, the same grouped by expressions)
        (
            "SELECT f, g, count(*) AS c, sum(n) AS s FROM t GROUP BY f, g ORDER BY f, g",
            "SELECT f || '' AS f, g || '' AS g, count(*) AS c, sum(n) AS s FROM t \
             GROUP BY f || '', g || '' ORDER BY f, g",
        ),
        (
            "SELECT h, count(*) AS c FROM t GROUP BY h ORDER BY h",
            "SELECT h || '' AS h, count(*) AS c FROM t GROUP BY h || '' ORDER BY h",
        ),
        (
            "SELECT f, k, g, h, max(n) AS m FROM t GROUP BY f, k, g, h ORDER BY f, k, g, h",
            "SELECT f || '' AS f, k, g || '' AS g, h || '' AS h, max(n) AS m FROM t \
             GROUP BY f || '', k, g || '', h || '' ORDER BY f, k, g, h",
        ),
        (
            "SELECT f, g, count(*) AS c FROM t GROUP BY f, g HAVING count(*) > 100 AND f <> 'N' \
             ORDER BY c, f, g",
            "SELECT f || '' AS f, g || '' AS g, count(*) AS c FROM t GROUP BY f || '', g || '' \
             HAVING count(*) > 100 AND f || '' <> 'N' ORDER BY c, f, g",
        ),
        (
            "SELECT DISTINCT f, g FROM t ORDER BY f, g",
            "SELECT f2 AS f, g2 AS g FROM (SELECT DISTINCT f || '' AS f2, g || '' AS g2 FROM t) \
             AS x ORDER BY f, g",
        ),
        (
            "SELECT f, g, count(*) AS c FROM t FOR ALL SYSTEM_TIME GROUP BY f, g ORDER BY f, g",
            "SELECT f || '' AS f, g || '' AS g, count(*) AS c FROM t FOR ALL SYSTEM_TIME \
             GROUP BY f || '', g || '' ORDER BY f, g",
        ),
    ];
    for (packed, reference) in cases {
        let plan = q(&mut s, &format!("EXPLAIN {packed}")).await;
        assert!(plan.contains("strata_text_key"), "not packed:\n{plan}");
        let plan = q(&mut s, &format!("EXPLAIN {reference}")).await;
        assert!(!plan.contains("strata_text_key"), "packed:\n{plan}");
        let got = q(&mut s, packed).await;
        assert_eq!(got, q(&mut s, reference).await, "{packed}");
        assert!(got.contains("Apple pie") || !packed.contains(" f"), "{got}");
    }
    let got = q(
        &mut s,
        "SELECT f, count(*) AS c FROM t WHERE f IN ('Banana split', 'Z', '') GROUP BY f ORDER BY f",
    )
    .await;
    assert_eq!(
        got,
        q(
            &mut s,
            "SELECT * FROM (VALUES ('', 386), ('Banana split', 150), ('Z', 150)) AS v(f, c)"
        )
        .await
    );
    // Long texts in the statistics: left to DataFusion's own grouping.
    let plan = q(&mut s, "EXPLAIN SELECT w, count(*) FROM t GROUP BY w").await;
    assert!(!plan.contains("strata_text_key"), "{plan}");
    // Grouping sets too.
    let plan = q(
        &mut s,
        "EXPLAIN SELECT f, g, count(*) FROM t GROUP BY ROLLUP (f, g)",
    )
    .await;
    assert!(!plan.contains("strata_text_key"), "{plan}");
}
