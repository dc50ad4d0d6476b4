//! What the storage engine pruned and read is visible to operators:
//! `EXPLAIN ANALYZE` reports segments and batches pruned and read, and
//! `CHECKPOINT` settles the segments into tiers.

use datafusion::arrow::util::pretty::pretty_format_batches;
use strata_query::{Database, Session};
use strata_storage::{EngineConfig, StoreLocation, TestClock};

const DAY: i64 = 86_400_000_000;
const Y2020: i64 = 1_577_836_800_000_000;

async fn db(dir: &std::path::Path) -> Session {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.clock = std::sync::Arc::new(TestClock::new(Y2020, DAY));
    c.compaction.background = false;
    Database::open(c).await.unwrap().session()
}

async fn q(s: &mut Session, sql: &str) -> String {
    let mut outs = s
        .execute(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let b = outs.pop().unwrap().collect().await.unwrap();
    pretty_format_batches(&b).unwrap().to_string()
}

/// The value of metric `name` in the StrataScanExec line of an EXPLAIN ANALYZE.
fn metric(plan: &str, name: &str) -> u64 {
    let line = plan
        .lines()
        .find(|l| l.contains("StrataScanExec"))
        .unwrap_or_else(|| panic!("no StrataScanExec in\n{plan}"));
    let at = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[at + name.len() + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn explain_analyze_reports_pruning_and_checkpoint_settles_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = db(dir.path()).await;
    q(
        &mut s,
        "INSERT INTO t (_id, x) SELECT value, value FROM generate_series(1, 1000) AS g(value)",
    )
    .await;
    q(&mut s, "CHECKPOINT").await;
    for round in 1..=3 {
        q(
            &mut s,
            &format!("UPDATE t SET x = x + {round} WHERE _id <= 500"),
        )
        .await;
        q(&mut s, "CHECKPOINT").await;
    }
    // At the present: the history of the updates is never opened.
    let plan = q(&mut s, "EXPLAIN ANALYZE SELECT count(*), sum(x) FROM t").await;
    assert!(
        metric(&plan, "segments_total") > metric(&plan, "segments_read"),
        "{plan}"
    );
    assert!(metric(&plan, "segments_pruned") >= 1, "{plan}");
    assert!(metric(&plan, "batches_read") >= 1, "{plan}");
    assert!(metric(&plan, "bytes_read") > 0, "{plan}");
    assert_eq!(
        q(&mut s, "SELECT count(*) AS n, sum(x) AS s FROM t").await,
        q(&mut s, "SELECT 1000 AS n, 500500 + 500 * 6 AS s").await
    );
    // A point lookup reads one batch of one segment at most per tier.
    let plan = q(
        &mut s,
        "EXPLAIN ANALYZE SELECT x FROM t WHERE _id = 7 AND x > 0",
    )
    .await;
    assert!(metric(&plan, "batches_read") <= 1, "{plan}");
    // strata_segments shows the tiers: the present's rows in `current`.
    assert_eq!(
        q(&mut s, "SELECT sum(rows) AS r FROM strata_segments WHERE table_name = 't' AND tier = 'current'").await,
        q(&mut s, "SELECT 1000 AS r").await
    );
    assert_eq!(
        q(
            &mut s,
            "SELECT count(*) AS n FROM strata_segments WHERE table_name = 't' AND tier = 'l0'"
        )
        .await,
        q(&mut s, "SELECT 0 AS n").await
    );
    // CHECKPOINT is a statement with a tag, and refuses arguments.
    let mut outs = s.execute("CHECKPOINT", &[]).await.unwrap();
    match outs.pop().unwrap() {
        strata_query::Output::Command { tag, .. } => assert_eq!(tag, "CHECKPOINT"),
        other => panic!("{other:?}"),
    }
    let e = s
        .execute("CHECKPOINT now", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("CHECKPOINT takes no arguments"), "{e}");
}

/// `count(*)` of `from` where `pred` holds, as a number.
async fn count(s: &mut Session, from: &str, pred: &str) -> String {
    q(s, &format!("SELECT count(*) AS n FROM {from} WHERE {pred}")).await
}

/// Filters on user columns skip segments and batches by their min/max and
/// null counts, and never change an answer: every predicate's count equals
/// the count of `(pred) IS TRUE`, which the statistics cannot use — over
/// NULLs, a NaN, text, decimals, timestamps, at the present and in the past,
/// over level-0 flushes and over compacted tiers.
///
/// Rows inside a segment are ordered by entity hash, so user values that
/// arrive together (here: each flush holds one range of `x`) are pruned a
/// segment at a time; inside a compacted segment a range spans every batch.
#[tokio::test]
async fn user_column_statistics_skip_segments_and_never_change_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = EngineConfig::new(StoreLocation::Local(dir.path().to_path_buf()));
    c.clock = std::sync::Arc::new(TestClock::new(Y2020, DAY));
    c.compaction.background = false;
    let db = Database::open(c).await.unwrap();
    let mut s = db.session();
    // 200 000 rows in four flushes of 50 000, each column ordered with
    // `_id` except `m` (NULL from 150 001 on) and `f` (one NaN).
    for k in 0..4 {
        q(
            &mut s,
            &format!(
                "INSERT INTO t (_id, x, s, f, n, m, ts) SELECT value, value, \
                 'k' || lpad(CAST(value AS VARCHAR), 6, '0'), \
                 CASE WHEN value = 100000 THEN CAST('NaN' AS DOUBLE) ELSE value * 0.5 END, \
                 CAST(value AS DECIMAL(10, 2)), \
                 CASE WHEN value > 150000 THEN NULL ELSE value END, \
                 to_timestamp(value * 60) \
                 FROM generate_series({}, {}) AS g(value)",
                k * 50_000 + 1,
                (k + 1) * 50_000
            ),
        )
        .await;
        db.engine().flush().await.unwrap();
    }
    // A range at the end reads one flush of four; one outside every value
    // opens none; so does a text equality and an IS NOT NULL over the flush
    // where `m` is all NULL.
    let plan = q(
        &mut s,
        "EXPLAIN ANALYZE SELECT count(*) FROM t WHERE x > 190000",
    )
    .await;
    assert_eq!(metric(&plan, "segments_read"), 1, "{plan}");
    assert_eq!(metric(&plan, "segments_pruned"), 3, "{plan}");
    let plan = q(
        &mut s,
        "EXPLAIN ANALYZE SELECT count(*) FROM t WHERE x > 500000",
    )
    .await;
    assert_eq!(metric(&plan, "segments_read"), 0, "{plan}");
    assert_eq!(metric(&plan, "batches_read"), 0, "{plan}");
    let plan = q(
        &mut s,
        "EXPLAIN ANALYZE SELECT count(*) FROM t WHERE s = 'k131073'",
    )
    .await;
    assert_eq!(metric(&plan, "segments_read"), 1, "{plan}");
    let plan = q(
        &mut s,
        "EXPLAIN ANALYZE SELECT count(*) FROM t WHERE m > 0 AND x > 150000",
    )
    .await;
    assert_eq!(metric(&plan, "segments_read"), 0, "{plan}");

    let preds = [
        "x > 190000",
        "x >= 196608",
        "x < 10",
        "x <= 0",
        "x = 65536",
        "x = 65537",
        "x = -3",
        "x BETWEEN 65530 AND 65540",
        "x IN (1, 131073, -7)",
        "x IN (-500, 500000)",
        "5 > x",
        "x > -1",
        "x IS NULL",
        "x IS NOT NULL",
        "_id > 199000",
        "s > 'k190000'",
        "s = 'k000007'",
        "s < 'k'",
        "s >= 'l'",
        "f > 1e9",
        "f < 0",
        "f = 50000.5",
        "f >= 99000",
        "n < 5",
        "n > 199990",
        "n = 123.00",
        "n BETWEEN 1.5 AND 3.5",
        "m IS NULL",
        "m IS NOT NULL",
        "m > 160000",
        "m < 3",
        "m = 20",
        "ts < TIMESTAMP '1970-01-01 00:10:00+00'",
        "ts > TIMESTAMP '1970-05-01 00:00:00+00'",
        "x > 100 AND s < 'k000200'",
    ];
    let check = |s: &mut Session, from: String| {
        let mut s = std::mem::replace(s, db.session());
        async move {
            for p in preds {
                let pruned = count(&mut s, &from, p).await;
                let whole = count(&mut s, &from, &format!("({p}) IS TRUE")).await;
                assert_eq!(pruned, whole, "FROM {from} WHERE {p}");
            }
            s
        }
    };
    s = check(&mut s, "t".into()).await;
    let before = q(&mut s, "SELECT max(_system_from) AS t FROM t").await;
    let before = before
        .lines()
        .nth(3)
        .unwrap()
        .trim_matches(|c| c == '|' || c == ' ')
        .to_string();
    q(&mut s, "UPDATE t SET x = -x, m = NULL WHERE _id <= 10").await;
    q(&mut s, "CHECKPOINT").await;
    let past = format!("t FOR SYSTEM_TIME AS OF TIMESTAMP '{before}'");
    for from in [
        "t".to_string(),
        past.clone(),
        "t FOR ALL SYSTEM_TIME".to_string(),
    ] {
        s = check(&mut s, from).await;
    }
    // Spot checks of the answers themselves.
    assert_eq!(
        count(&mut s, "t", "f > 1e9").await,
        q(&mut s, "SELECT 1 AS n").await
    );
    assert_eq!(
        count(&mut s, "t", "x < 0").await,
        q(&mut s, "SELECT 10 AS n").await
    );
    assert_eq!(
        count(&mut s, &past, "x < 0").await,
        q(&mut s, "SELECT 0 AS n").await
    );
    assert_eq!(
        count(&mut s, "t", "m IS NULL").await,
        q(&mut s, "SELECT 50010 AS n").await
    );
}
