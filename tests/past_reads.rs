//! Reads at a past system time are filters, not merges.
//!
//! A write that cuts a version (a `FOR PORTION OF` change, or a plain
//! `UPDATE`, which changes a row from now on) retires the version's
//! rectangle; storage keeps that rectangle whole, closed at the write, as a
//! **view-only** row, and gives every row the system time from which it
//! belongs to the state read at a past time (`_view_from`). A read `FOR
//! SYSTEM_TIME AS OF S` keeps the rows whose view holds `S`: each version
//! whole, as it was known at `S`, with no sort or merge, so a past read
//! costs what a read at the present costs. `FOR ALL SYSTEM_TIME` shows the
//! decomposition, without the view-only rows. These tests check the plans
//! and the answers across the live index, a flush, compaction and a
//! restart (the view columns live in the segment files).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use strata::{Config, Db};

/// Day k of the test clock (transaction k commits at 2020-01-01 + k days).
fn day(k: i64) -> String {
    let t = chrono::DateTime::from_timestamp(1_577_836_800 + k * 86_400, 0).unwrap();
    t.format("TIMESTAMP '%Y-%m-%d %H:%M:%SZ'").to_string()
}

fn config(dir: &std::path::Path) -> Config {
    Config::dir(dir).with_test_clock(1_577_836_800_000_000, 86_400_000_000)
}

async fn text(db: &Db, sql: &str) -> String {
    let b: Vec<RecordBatch> = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&b).unwrap().to_string()
}

async fn plan(db: &Db, sql: &str) -> String {
    text(db, &format!("EXPLAIN {sql}")).await
}

#[tokio::test]
async fn a_table_whose_versions_were_never_split_reads_its_past_without_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(config(dir.path())).await.unwrap();
    // Day 0: create; day 1: load; days 2-4: overwrite every row over its
    // whole valid period (no version is split), and add new entities.
    db.sql("CREATE TABLE h (_id BIGINT, x BIGINT)")
        .await
        .unwrap();
    db.sql("INSERT INTO h (_id, x) SELECT value, value FROM generate_series(1, 100) AS g(value)")
        .await
        .unwrap();
    for round in 1..=3 {
        db.sql(&format!("UPDATE h FOR ALL VALID_TIME SET x = x + {round}"))
            .await
            .unwrap();
        db.sql(&format!(
            "INSERT INTO h (_id, x) VALUES ({}, 1)",
            1000 + round
        ))
        .await
        .unwrap();
    }
    db.sql("CHECKPOINT").await.unwrap();
    let past = format!(
        "SELECT count(*), sum(x) FROM h FOR SYSTEM_TIME AS OF {}",
        day(1)
    );
    let p = plan(&db, &past).await;
    assert!(!p.contains("MergePiecesExec"), "no merge expected:\n{p}");
    assert!(text(&db, &past).await.contains("| 100      | 5050 "));
    // Still without a merge after a restart.
    drop(db);
    let db = Db::open(config(dir.path())).await.unwrap();
    let p = plan(&db, &past).await;
    assert!(!p.contains("MergePiecesExec"), "no merge expected:\n{p}");
    assert!(text(&db, &past).await.contains("| 100      | 5050 "));
}

#[tokio::test]
async fn a_version_cut_by_a_later_write_reads_whole_without_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(config(dir.path())).await.unwrap();
    db.sql("CREATE TABLE acct (_id BIGINT, balance BIGINT)")
        .await
        .unwrap();
    // Day 1.
    db.sql(
        "INSERT INTO acct (_id, balance, _valid_from) VALUES \
         (1, 100, DATE '2019-01-01'), (2, 7, DATE '2019-01-01'), (3, 9, DATE '2019-01-01')",
    )
    .await
    .unwrap();
    db.flush().await.unwrap();
    // Day 2: entity 1's version is split at dates learned only now.
    db.sql(
        "UPDATE acct FOR PORTION OF VALID_TIME FROM DATE '2019-04-01' TO DATE '2019-07-01' \
         SET balance = 0 WHERE _id = 1",
    )
    .await
    .unwrap();
    // Day 3: entity 2 overwritten whole.
    db.sql("UPDATE acct SET balance = 8 WHERE _id = 2")
        .await
        .unwrap();
    let past = format!(
        "SELECT _id, balance, _valid_from, _valid_to FROM acct \
         FOR SYSTEM_TIME AS OF {} FOR ALL VALID_TIME ORDER BY _id",
        day(1)
    );
    let want = "\
+-----+---------+----------------------+-----------+
| _id | balance | _valid_from          | _valid_to |
+-----+---------+----------------------+-----------+
| 1   | 100     | 2019-01-01T00:00:00Z |           |
| 2   | 7       | 2019-01-01T00:00:00Z |           |
| 3   | 9       | 2019-01-01T00:00:00Z |           |
+-----+---------+----------------------+-----------+";
    let check = |label: &str, got: String| {
        assert_eq!(got, want, "{label}");
    };
    // In the live index: a filter, no merge.
    let p = plan(&db, &past).await;
    assert!(!p.contains("MergePiecesExec"), "no merge expected:\n{p}");
    check("live", text(&db, &past).await);
    // The version shows as it was known on day 1, until its first change
    // (day 2, 2020-01-03).
    let to = text(
        &db,
        &format!(
            "SELECT _system_from, _system_to FROM acct FOR SYSTEM_TIME AS OF {} \
             FOR ALL VALID_TIME WHERE _id = 1",
            day(1)
        ),
    )
    .await;
    assert!(
        to.contains("| 2020-01-02T00:00:00Z | 2020-01-03T00:00:00Z |") && to.lines().count() == 5,
        "{to}"
    );
    // The decomposition has no view-only row: entity 1's three pieces of
    // the first version (one of them closed) and day 2's change.
    let decomposition =
        "SELECT count(*) FROM acct FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 1";
    assert!(
        text(&db, decomposition).await.contains("| 4 "),
        "{}",
        text(&db, decomposition).await
    );
    // In a level-0 segment, then in compacted segments.
    db.flush().await.unwrap();
    check("flushed", text(&db, &past).await);
    assert!(text(&db, decomposition).await.contains("| 4 "));
    db.sql("CHECKPOINT").await.unwrap();
    check("compacted", text(&db, &past).await);
    assert!(text(&db, decomposition).await.contains("| 4 "));
    // The view columns are in the files: the same after a restart.
    drop(db);
    let db = Db::open(config(dir.path())).await.unwrap();
    check("reopened", text(&db, &past).await);
    let p = plan(&db, &past).await;
    assert!(!p.contains("MergePiecesExec"), "no merge expected:\n{p}");
    assert!(text(&db, decomposition).await.contains("| 4 "));
    // At the present the pieces show (day 2's view).
    let now = text(
        &db,
        "SELECT count(*) FROM acct FOR ALL VALID_TIME WHERE _id = 1",
    )
    .await;
    assert!(now.contains("| 3 "), "{now}");
    // Overwrite entity 1 whole (day 4): day 1 still reads as one version,
    // and day 3 as day 1's two pieces (not adjacent) around day 2's change.
    db.sql("UPDATE acct FOR ALL VALID_TIME SET balance = 5 WHERE _id = 1")
        .await
        .unwrap();
    db.sql("CHECKPOINT").await.unwrap();
    check("after a later overwrite", text(&db, &past).await);
    let at3 = text(
        &db,
        &format!(
            "SELECT balance, _valid_from, _valid_to FROM acct FOR SYSTEM_TIME AS OF {} \
             FOR ALL VALID_TIME WHERE _id = 1 ORDER BY _valid_from",
            day(3)
        ),
    )
    .await;
    assert_eq!(
        at3,
        "\
+---------+----------------------+----------------------+
| balance | _valid_from          | _valid_to            |
+---------+----------------------+----------------------+
| 100     | 2019-01-01T00:00:00Z | 2019-04-01T00:00:00Z |
| 0       | 2019-04-01T00:00:00Z | 2019-07-01T00:00:00Z |
| 100     | 2019-07-01T00:00:00Z |                      |
+---------+----------------------+----------------------+"
    );
}

#[tokio::test]
async fn an_entity_written_twice_in_one_transaction_reads_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(config(dir.path())).await.unwrap();
    db.sql("CREATE TABLE p (_id BIGINT, v BIGINT)")
        .await
        .unwrap();
    // Day 1: two adjacent periods of entity 1 with equal values, one
    // statement; entity 2 once.
    db.sql(
        "INSERT INTO p (_id, v, _valid_from, _valid_to) VALUES \
         (1, 5, DATE '2019-01-01', DATE '2019-02-01'), \
         (1, 5, DATE '2019-02-01', DATE '2019-03-01'), \
         (2, 6, DATE '2019-01-01', DATE '2019-03-01')",
    )
    .await
    .unwrap();
    db.sql("CHECKPOINT").await.unwrap();
    // Day 2: a later change, so day 1 is in the past.
    db.sql("UPDATE p FOR ALL VALID_TIME SET v = 7 WHERE _id = 2")
        .await
        .unwrap();
    let past = format!(
        "SELECT _id, v, _valid_from, _valid_to FROM p FOR SYSTEM_TIME AS OF {} \
         FOR ALL VALID_TIME ORDER BY _id, _valid_from",
        day(1)
    );
    // The two rows the transaction wrote are two rows, as the present
    // showed them on day 1: no later transaction cut them.
    let want = "\
+-----+---+----------------------+----------------------+
| _id | v | _valid_from          | _valid_to            |
+-----+---+----------------------+----------------------+
| 1   | 5 | 2019-01-01T00:00:00Z | 2019-02-01T00:00:00Z |
| 1   | 5 | 2019-02-01T00:00:00Z | 2019-03-01T00:00:00Z |
| 2   | 6 | 2019-01-01T00:00:00Z | 2019-03-01T00:00:00Z |
+-----+---+----------------------+----------------------+";
    let p = plan(&db, &past).await;
    assert!(!p.contains("MergePiecesExec"), "no merge expected:\n{p}");
    assert_eq!(text(&db, &past).await, want);
    // A point lookup (the fast path) agrees.
    let one = text(
        &db,
        &format!(
            "SELECT v, _valid_from FROM p FOR SYSTEM_TIME AS OF {} FOR ALL VALID_TIME \
             WHERE _id = 1 ORDER BY _valid_from",
            day(1)
        ),
    )
    .await;
    assert_eq!(one.lines().count(), 6, "{one}");
}
