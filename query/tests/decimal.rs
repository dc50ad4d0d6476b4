//! Decimal `+ - *` (crate::overflow, `DecimalArith`): planned as Strata's
//! fast functions where the result type is DataFusion's, with the same
//! answers, the same column names, and the same overflow error past
//! `i128`.

use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use strata_query::{Database, Session};
use strata_storage::{EngineConfig, StoreLocation};

async fn open(dir: &std::path::Path) -> Arc<Database> {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.compaction.background = false;
    Database::open(c).await.unwrap()
}

async fn q(s: &mut Session, sql: &str) -> Result<String, String> {
    let mut outs = s.execute(sql, &[]).await.map_err(|e| e.to_string())?;
    let b = outs
        .pop()
        .unwrap()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(pretty_format_batches(&b).unwrap().to_string())
}

#[tokio::test]
async fn decimal_arithmetic_is_planned_fast_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(
        &mut s,
        "CREATE TABLE t (_id BIGINT, price NUMERIC(15,2), disc NUMERIC(15,2), big NUMERIC(38,0))",
    )
    .await
    .unwrap();
    q(
        &mut s,
        "INSERT INTO t (_id, price, disc, big) VALUES \
         (1, 1000.50, 0.05, 10), (2, 99999999.99, 0.10, NULL), (3, NULL, 0.01, 1), \
         (4, -12.34, 0.00, 99999999999999999999999999999999999999)",
    )
    .await
    .unwrap();
    let sql = "SELECT _id, price * (1 - disc) AS net, price + disc, price - disc, \
               sum(price * (1 - disc) * (1 + disc)) OVER () AS total FROM t ORDER BY _id";
    let plan = q(&mut s, &format!("EXPLAIN {sql}")).await.unwrap();
    assert!(plan.contains("strata_decimal_mul"), "{plan}");
    assert!(plan.contains("strata_decimal_sub"), "{plan}");
    let got = q(&mut s, sql).await.unwrap();
    // 1000.50 * 0.95 * 1.05 + 99999999.99 * 0.90 * 1.10 - 12.34
    // = 997.99875 + 98999999.9901 - 12.34 = 99000985.64885
    let want = "\
+-----+---------------+------------------+------------------+-----------------+
| _id | net           | t.price + t.disc | t.price - t.disc | total           |
+-----+---------------+------------------+------------------+-----------------+
| 1   | 950.4750      | 1000.55          | 1000.45          | 99000985.648850 |
| 2   | 89999999.9910 | 100000000.09     | 99999999.89      | 99000985.648850 |
| 3   |               |                  |                  | 99000985.648850 |
| 4   | -12.3400      | -12.34           | -12.34           | 99000985.648850 |
+-----+---------------+------------------+------------------+-----------------+";
    assert_eq!(got.trim(), want, "{got}");
    // Past what i128 holds: the same overflow error as DataFusion's kernel.
    let err = q(&mut s, "SELECT big * big FROM t WHERE _id = 4")
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("overflow"), "{err}");
    assert_eq!(
        q(&mut s, "SELECT big * 3 AS x FROM t WHERE _id = 1")
            .await
            .unwrap()
            .lines()
            .nth(3)
            .map(|l| l.trim().to_string()),
        Some("| 30 |".to_string())
    );
}

/// `sum(bigint)` is numeric as in PostgreSQL (crate::numeric_sum): its
/// argument is widened by Strata's own function now, not arrow's checked
/// cast. Same type, same name, no wrapping past 2^63, NULLs skipped,
/// window sums and constant arguments too.
#[tokio::test]
async fn bigint_sums_are_numeric_with_their_names_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    q(&mut s, "CREATE TABLE b (_id BIGINT, x BIGINT)")
        .await
        .unwrap();
    q(
        &mut s,
        "INSERT INTO b (_id, x) VALUES (1, 9223372036854775807), (2, 9223372036854775807), \
         (3, NULL), (4, -9223372036854775808), (5, 5)",
    )
    .await
    .unwrap();
    let got = q(
        &mut s,
        "SELECT sum(x), sum(x) FILTER (WHERE _id < 3) AS two, sum(CAST(7 AS BIGINT)) AS seven, \
         arrow_typeof(sum(x)) AS t FROM b",
    )
    .await
    .unwrap();
    assert!(got.contains("| sum(b.x)"), "{got}");
    assert!(
        got.contains("| 9223372036854775811 | 18446744073709551614 | 35    | Decimal128(38, 0) |"),
        "{got}"
    );
    let got = q(
        &mut s,
        "SELECT _id, sum(x) OVER (ORDER BY _id) AS run FROM b ORDER BY _id",
    )
    .await
    .unwrap();
    assert!(got.contains("| 2   | 18446744073709551614 |"), "{got}");
    // A sum over a subquery's sum: the outer argument was a bigint when
    // it was rewritten and is numeric by the time it runs.
    let got = q(
        &mut s,
        "SELECT sum(s) AS total FROM (SELECT _id % 2 AS k, sum(x) AS s FROM b GROUP BY _id % 2) q",
    )
    .await
    .unwrap();
    assert!(got.contains("| 9223372036854775811 |"), "{got}");
    let plan = q(&mut s, "EXPLAIN SELECT sum(x) FROM b").await.unwrap();
    assert!(plan.contains("strata_bigint_as_numeric"), "{plan}");
}
