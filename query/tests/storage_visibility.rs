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
