//! End-to-end checks of the temporal SQL surface through the session layer:
//! each temporal clause must change what is read.

use datafusion::arrow::util::pretty::pretty_format_batches;
use strata_query::{Database, Session};
use strata_storage::{EngineConfig, StoreLocation, TestClock};

const DAY: i64 = 86_400_000_000;
const Y2020: i64 = 1_577_836_800_000_000;

async fn db() -> Session {
    let mut c = EngineConfig::new(StoreLocation::Memory);
    c.clock = std::sync::Arc::new(TestClock::new(Y2020, DAY));
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

async fn err(s: &mut Session, sql: &str) -> String {
    match s.execute(sql, &[]).await {
        Ok(_) => panic!("expected an error from {sql}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn clauses_change_results() {
    let mut s = db().await;
    q(
        &mut s,
        "INSERT INTO acc (_id, owner, bal) VALUES (1, 'ada', 100), (2, 'bob', 50)",
    )
    .await; // 2020-01-01
    q(&mut s, "UPDATE acc SET bal = 90 WHERE _id = 1").await; // 2020-01-02
    q(&mut s, "UPDATE acc FOR PORTION OF VALID_TIME FROM DATE '2020-03-01' TO DATE '2020-06-01' SET bal = 0 WHERE _id = 2").await; // 2020-01-03
    let all = q(&mut s, "SELECT _id, bal, _valid_from, _valid_to, _system_from, _system_to FROM acc FOR ALL SYSTEM_TIME FOR ALL VALID_TIME ORDER BY _id, _system_from, _valid_from").await;
    println!("{all}");
    assert_eq!(all.lines().count(), 4 + 7, "{all}");
    let past = q(&mut s, "SELECT _id, bal FROM acc FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01 12:00:00Z' ORDER BY _id").await;
    assert!(past.contains("| 1   | 100 |"), "{past}");
    let now = q(&mut s, "SELECT _id, bal FROM acc ORDER BY _id").await;
    assert!(
        now.contains("| 1   | 90  |") && now.contains("| 2   | 50  |"),
        "{now}"
    );
    let april = q(
        &mut s,
        "SELECT _id, bal FROM acc FOR VALID_TIME AS OF DATE '2020-04-01' ORDER BY _id",
    )
    .await;
    assert!(april.contains("| 2   | 0   |"), "{april}");
    let setting = q(&mut s, "SETTING DEFAULT VALID_TIME AS OF DATE '2020-04-01' SELECT a._id, a.bal FROM acc AS a WHERE a._id = 2").await;
    assert!(setting.contains("| 2   | 0   |"), "{setting}");
    let between = q(&mut s, "SELECT count(*) AS n FROM acc FOR VALID_TIME BETWEEN DATE '2020-03-01' AND DATE '2020-03-01' WHERE _id = 2").await;
    assert!(between.contains("| 1 |"), "{between}");
    let from_to = q(&mut s, "SELECT count(*) AS n FROM acc FOR VALID_TIME FROM DATE '2020-02-01' TO DATE '2020-03-01' WHERE _id = 2").await;
    assert!(from_to.contains("| 1 |"), "{from_to}");
    q(&mut s, "DELETE FROM acc WHERE _id = 1").await;
    let after = q(&mut s, "SELECT _id FROM acc ORDER BY _id").await;
    assert!(!after.contains("| 1   |"), "{after}");
    assert!(err(&mut s, "ASSERT (SELECT count(*) FROM acc) = 5")
        .await
        .contains("assertion failed"));
    q(&mut s, "ASSERT (SELECT count(*) FROM acc) = 1").await;
    q(&mut s, "ERASE FROM acc WHERE _id = 2").await;
    let gone = q(
        &mut s,
        "SELECT count(*) AS n FROM acc FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 2",
    )
    .await;
    assert!(gone.contains("| 0 |"), "{gone}");
    let e = err(
        &mut s,
        "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2019-01-01Z')",
    )
    .await;
    assert!(e.contains("2019-01-01") && e.contains("2020-01-0"), "{e}");
    // A refused pin leaves a failed transaction block until the client ends it.
    let e = err(&mut s, "INSERT INTO acc (_id) VALUES (6)").await;
    assert!(e.contains("current transaction is aborted"), "{e}");
    q(&mut s, "ROLLBACK").await;
    q(&mut s, "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2021-01-01Z'); INSERT INTO acc (_id) VALUES (5); COMMIT").await;
    let pinned = q(&mut s, "SELECT _id, _system_from FROM acc WHERE _id = 5").await;
    assert!(pinned.contains("2021-01-01T00:00:00Z"), "{pinned}");
}

#[tokio::test]
async fn failed_assert_aborts_transaction() {
    let mut s = db().await;
    q(&mut s, "INSERT INTO t (_id, v) VALUES (1, 1)").await;
    s.execute("BEGIN", &[]).await.unwrap();
    s.execute("INSERT INTO t (_id, v) VALUES (2, -1)", &[])
        .await
        .unwrap();
    assert!(s
        .execute("ASSERT (SELECT count(*) FROM t) = 5", &[])
        .await
        .is_err());
    assert!(s.execute("COMMIT", &[]).await.is_err());
    let n = q(&mut s, "SELECT count(*) AS n FROM t").await;
    assert!(n.contains("| 1 |"), "{n}");
}
