//! Semi and anti joins pushed below inner joins (crate::semijoin): the plan
//! of the TPC-H Q18 shape filters `orders` before the `lineitem` join, and
//! the answers equal those of formulations the rule cannot rewrite (counts
//! in scalar subqueries, planned as left joins over aggregates, or a CTE
//! joined explicitly).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use strata_query::{Database, Session};
use strata_storage::{EngineConfig, StoreLocation};

async fn open(dir: &std::path::Path) -> Arc<Database> {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.compaction.background = false;
    Database::open(c).await.unwrap()
}

async fn rows(s: &mut Session, sql: &str) -> Vec<RecordBatch> {
    let mut outs = s
        .execute(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    outs.pop()
        .unwrap()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn q(s: &mut Session, sql: &str) -> String {
    pretty_format_batches(&rows(s, sql).await)
        .unwrap()
        .to_string()
}

async fn count(s: &mut Session, sql: &str) -> usize {
    rows(s, sql).await.iter().map(|b| b.num_rows()).sum()
}

/// The text of the logical plan `EXPLAIN` gives for `sql`.
async fn logical_plan(s: &mut Session, sql: &str) -> String {
    let text = q(s, &format!("EXPLAIN {sql}")).await;
    let from = text.find("logical_plan").expect("a logical plan");
    let to = text.find("physical_plan").unwrap_or(text.len());
    text[from..to].to_string()
}

/// The lines of `plan` from the first holding `what` to the end, and the
/// indentation of that line.
fn below<'a>(plan: &'a str, what: &str) -> (usize, Vec<&'a str>) {
    let lines: Vec<&str> = plan.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no `{what}` in\n{plan}"));
    let indent = lines[at].find(what).unwrap();
    (indent, lines[at + 1..].to_vec())
}

/// The plan lines of the subtree under the first line holding `what`.
fn subtree<'a>(plan: &'a str, what: &str) -> Vec<&'a str> {
    let (indent, rest) = below(plan, what);
    rest.into_iter()
        .take_while(|l| l.find(|c: char| c != ' ' && c != '|').unwrap_or(0) > indent)
        .collect()
}

/// Small TPC-H-like tables: 60 customers, 600 orders (every 17th of an
/// unknown customer), 4000 line items (one with a NULL order key).
async fn setup(s: &mut Session) {
    q(
        s,
        "INSERT INTO customer (_id, c_custkey, c_name, c_nation) \
         SELECT value, value, 'c' || CAST(value AS VARCHAR), value % 5 \
         FROM generate_series(1, 60) AS g(value)",
    )
    .await;
    q(
        s,
        "INSERT INTO orders (_id, o_orderkey, o_custkey, o_totalprice, o_orderdate) \
         SELECT value, value, \
         CASE WHEN value % 17 = 0 THEN value + 1000 ELSE value % 60 + 1 END, \
         (value * 7919) % 1000, value % 30 \
         FROM generate_series(1, 600) AS g(value)",
    )
    .await;
    q(
        s,
        "INSERT INTO lineitem (_id, l_orderkey, l_quantity) \
         SELECT value, CASE WHEN value = 5 THEN NULL ELSE value % 600 + 1 END, \
         (value * 37) % 50 + 1 \
         FROM generate_series(1, 4000) AS g(value)",
    )
    .await;
}

const Q18: &str = "SELECT c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, \
     sum(l_quantity) AS total \
     FROM customer, orders, lineitem \
     WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem GROUP BY l_orderkey \
                          HAVING sum(l_quantity) > 300) \
       AND c_custkey = o_custkey AND o_orderkey = l_orderkey \
     GROUP BY c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice \
     ORDER BY o_totalprice DESC, o_orderdate, o_orderkey";

/// Q18 with the subquery as a CTE joined explicitly (an inner join).
const Q18_REFERENCE: &str = "WITH big AS (SELECT l_orderkey AS k FROM lineitem \
                          GROUP BY l_orderkey HAVING sum(l_quantity) > 300) \
     SELECT c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, \
     sum(l_quantity) AS total \
     FROM customer, orders, lineitem, big \
     WHERE o_orderkey = big.k \
       AND c_custkey = o_custkey AND o_orderkey = l_orderkey \
     GROUP BY c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice \
     ORDER BY o_totalprice DESC, o_orderdate, o_orderkey";

#[tokio::test]
async fn q18_filters_orders_before_joining_lineitem() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    setup(&mut s).await;

    let plan = logical_plan(&mut s, Q18).await;
    // The semi join's left input is the orders scan itself (no join, no
    // lineitem below it) ...
    let semi = subtree(&plan, "LeftSemi Join");
    let (indent, _) = below(&plan, "LeftSemi Join");
    let first = semi.first().copied().unwrap_or_default();
    let child_indent = first.find(|c: char| c != ' ' && c != '|').unwrap_or(0);
    assert!(
        child_indent > indent,
        "nothing under the semi join:\n{plan}"
    );
    let left_input: Vec<&str> =
        {
            // The left input: the first child line and the lines under it.
            let mut v = vec![first];
            v.extend(semi[1..].iter().take_while(|l| {
                l.find(|c: char| c != ' ' && c != '|').unwrap_or(0) > child_indent
            }));
            v
        };
    let left_text = left_input.join("\n");
    assert!(
        left_text.contains("TableScan: orders") && !left_text.contains("Join"),
        "the semi join's left input is not the orders scan:\n{plan}"
    );
    // ... and both inner joins sit above it.
    let lines: Vec<&str> = plan.lines().collect();
    let semi_at = lines
        .iter()
        .position(|l| l.contains("LeftSemi Join"))
        .unwrap();
    assert!(
        lines[..semi_at]
            .iter()
            .filter(|l| l.contains("Inner Join"))
            .count()
            >= 2,
        "the semi join is not below both inner joins:\n{plan}"
    );

    let got = q(&mut s, Q18).await;
    let want = q(&mut s, Q18_REFERENCE).await;
    assert_eq!(got, want, "Q18 answered differently from its reference");
    let n = count(&mut s, Q18).await;
    assert!(
        n > 2 && n < 100,
        "{n} rows: the test data do not select a few orders"
    );
}

/// Where a case's semi or anti join must end up.
enum Expect {
    /// Below a join.
    Moves,
    /// Above every join.
    Stays,
    /// Only the answer is checked.
    Either,
}

#[tokio::test]
async fn answers_equal_formulations_the_rule_leaves_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path()).await;
    let mut s = db.session();
    setup(&mut s).await;

    use Expect::*;
    // (query, reference, where the semi/anti join must end up). The rule
    // moves only semi joins over an aggregated subquery without a filter
    // beyond their keys (`semijoin::movable`), so the cases that test where
    // it may move aggregate in the subquery.
    let cases: &[(&str, &str, Expect)] = &[
        // Anti join, key from the first table of an inner join.
        (
            "SELECT c_custkey, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey \
             WHERE NOT EXISTS (SELECT 1 FROM (SELECT l_orderkey FROM lineitem \
                                              GROUP BY l_orderkey HAVING max(l_quantity) > 45) x \
                               WHERE x.l_orderkey = o_orderkey) \
             ORDER BY o_orderkey",
            "SELECT c_custkey, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey \
             WHERE (SELECT count(*) FROM lineitem \
                    WHERE l_orderkey = o_orderkey AND l_quantity > 45) = 0 \
             ORDER BY o_orderkey",
            Moves,
        ),
        // NOT IN over a subquery without NULLs.
        (
            "SELECT c_custkey, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey \
             WHERE o_orderkey NOT IN (SELECT l_orderkey FROM lineitem \
                                      WHERE l_quantity > 45 AND l_orderkey IS NOT NULL) \
             ORDER BY o_orderkey",
            "SELECT c_custkey, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey \
             WHERE (SELECT count(*) FROM lineitem \
                    WHERE l_orderkey = o_orderkey AND l_quantity > 45) = 0 \
             ORDER BY o_orderkey",
            Either,
        ),
        // NOT IN over a subquery holding a NULL: never true, no rows.
        (
            "SELECT c_custkey, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey \
             WHERE o_orderkey NOT IN (SELECT l_orderkey FROM lineitem WHERE l_quantity > 30) \
             ORDER BY o_orderkey",
            "SELECT c_custkey, o_orderkey FROM customer JOIN orders ON c_custkey = o_custkey \
             WHERE CASE WHEN o_orderkey NOT IN \
                   (SELECT l_orderkey FROM lineitem WHERE l_quantity > 30) THEN true END \
             ORDER BY o_orderkey",
            Either,
        ),
        // Semi join whose key is from the second table of the join.
        (
            "SELECT o_orderkey, c_name FROM orders JOIN customer ON o_custkey = c_custkey \
             WHERE c_custkey IN (SELECT o_custkey FROM orders \
                                 GROUP BY o_custkey HAVING max(o_totalprice) > 990) \
             ORDER BY o_orderkey",
            "SELECT o_orderkey, c_name FROM orders JOIN customer ON o_custkey = c_custkey \
             WHERE (SELECT count(*) FROM orders o2 \
                    WHERE o2.o_custkey = c_custkey AND o2.o_totalprice > 990) > 0 \
             ORDER BY o_orderkey",
            Moves,
        ),
        // Semi join with a non-equality filter, over three tables: not
        // moved (TPC-H Q21's shape, where moving it was 4x slower).
        (
            "SELECT c_custkey, o_orderkey, l_quantity FROM customer, orders, lineitem \
             WHERE c_custkey = o_custkey AND o_orderkey = l_orderkey \
               AND EXISTS (SELECT 1 FROM lineitem l2 \
                           WHERE l2.l_orderkey = o_orderkey AND l2.l_quantity > o_orderdate + 40) \
             ORDER BY o_orderkey, l_quantity",
            "WITH k AS (SELECT DISTINCT o2.o_orderkey AS k FROM orders o2 \
                        JOIN lineitem l2 ON l2.l_orderkey = o2.o_orderkey \
                        WHERE l2.l_quantity > o2.o_orderdate + 40) \
             SELECT c_custkey, o_orderkey, l_quantity FROM customer, orders, lineitem, k \
             WHERE c_custkey = o_custkey AND o_orderkey = l_orderkey AND k.k = o_orderkey \
             ORDER BY o_orderkey, l_quantity",
            Stays,
        ),
        // Left join, key from the preserved side: may move into it.
        (
            "SELECT o_orderkey, c_name FROM orders LEFT JOIN customer ON o_custkey = c_custkey \
             WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem \
                                  GROUP BY l_orderkey HAVING max(l_quantity) > 48) \
             ORDER BY o_orderkey",
            "SELECT o_orderkey, c_name FROM orders LEFT JOIN customer ON o_custkey = c_custkey \
             WHERE (SELECT count(*) FROM lineitem \
                    WHERE l_orderkey = o_orderkey AND l_quantity > 48) > 0 \
             ORDER BY o_orderkey",
            Moves,
        ),
        // Right join, key from the preserved side: may move into it.
        (
            "SELECT o_orderkey, c_name FROM customer RIGHT JOIN orders ON o_custkey = c_custkey \
             WHERE NOT EXISTS (SELECT 1 FROM (SELECT l_orderkey FROM lineitem \
                                              GROUP BY l_orderkey HAVING max(l_quantity) > 10) x \
                               WHERE x.l_orderkey = o_orderkey) \
             ORDER BY o_orderkey",
            "SELECT o_orderkey, c_name FROM customer RIGHT JOIN orders ON o_custkey = c_custkey \
             WHERE (SELECT count(*) FROM lineitem \
                    WHERE l_orderkey = o_orderkey AND l_quantity > 10) = 0 \
             ORDER BY o_orderkey",
            Moves,
        ),
        // Left join, semi join on the null-extended side: must not move
        // (orders of unknown customers must be dropped).
        (
            "SELECT o_orderkey, c_name FROM orders LEFT JOIN customer \
               ON o_custkey = c_custkey AND c_nation < 3 \
             WHERE EXISTS (SELECT 1 FROM (SELECT c_custkey FROM customer c2 WHERE c2.c_nation = 1 \
                                          GROUP BY c_custkey) x \
                           WHERE x.c_custkey = customer.c_custkey) \
             ORDER BY o_orderkey",
            "SELECT o_orderkey, c_name FROM orders LEFT JOIN customer \
               ON o_custkey = c_custkey AND c_nation < 3 \
             WHERE (SELECT count(*) FROM customer c2 WHERE c2.c_custkey = customer.c_custkey \
                    AND c2.c_nation = 1) > 0 \
             ORDER BY o_orderkey",
            Stays,
        ),
        // Left join, anti join on the null-extended side: must not move
        // (orders of unknown customers must be kept).
        (
            "SELECT o_orderkey, c_name FROM orders LEFT JOIN customer \
               ON o_custkey = c_custkey AND c_nation < 3 \
             WHERE NOT EXISTS (SELECT 1 FROM (SELECT c_custkey FROM customer c2 \
                                              WHERE c2.c_nation = 1 GROUP BY c_custkey) x \
                               WHERE x.c_custkey = customer.c_custkey) \
             ORDER BY o_orderkey",
            "SELECT o_orderkey, c_name FROM orders LEFT JOIN customer \
               ON o_custkey = c_custkey AND c_nation < 3 \
             WHERE (SELECT count(*) FROM customer c2 WHERE c2.c_custkey = customer.c_custkey \
                    AND c2.c_nation = 1) = 0 \
             ORDER BY o_orderkey",
            Stays,
        ),
        // A semi join over a subquery that does not aggregate: not moved.
        (
            "SELECT o_orderkey, c_name FROM orders JOIN customer ON o_custkey = c_custkey \
             WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem WHERE l_quantity > 48) \
             ORDER BY o_orderkey",
            "SELECT o_orderkey, c_name FROM orders JOIN customer ON o_custkey = c_custkey \
             WHERE (SELECT count(*) FROM lineitem \
                    WHERE l_orderkey = o_orderkey AND l_quantity > 48) > 0 \
             ORDER BY o_orderkey",
            Stays,
        ),
    ];
    for (sql, reference, expect) in cases {
        let got = q(&mut s, sql).await;
        let want = q(&mut s, reference).await;
        assert_eq!(got, want, "{sql}\nanswered differently from\n{reference}");
        let plan = logical_plan(&mut s, sql).await;
        let lines: Vec<&str> = plan.lines().collect();
        let semi_at = lines
            .iter()
            .position(|l| l.contains("LeftSemi Join") || l.contains("LeftAnti Join"))
            .unwrap_or_else(|| panic!("no semi or anti join in\n{plan}"));
        let joins_above = lines[..semi_at]
            .iter()
            .filter(|l| l.contains(" Join:"))
            .count();
        match expect {
            Stays => assert_eq!(joins_above, 0, "the semi join moved:\n{plan}"),
            Moves => assert!(joins_above > 0, "the semi join did not move:\n{plan}"),
            Either => {}
        }
    }

    // The cases are not vacuous.
    for (sql, min) in [
        (cases[0].0, 100),
        (cases[1].0, 100),
        (cases[3].0, 5),
        (cases[4].0, 20),
        (cases[5].0, 10),
        (cases[6].0, 50),
        (cases[7].0, 5),
        (cases[8].0, 100),
    ] {
        let n = count(&mut s, sql).await;
        assert!(n >= min, "{n} rows from {sql}");
    }
    assert_eq!(count(&mut s, cases[2].0).await, 0);
}
