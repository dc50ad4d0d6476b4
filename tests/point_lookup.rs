//! Point lookups (`SELECT … FROM t WHERE _id = …`) are answered without the
//! planner (query/src/fastpath.rs). Every such query here is run both ways —
//! the fast path and DataFusion — over live rows, segments, history, deleted
//! and erased entities, and the answers must be identical, column names and
//! types included. The counter shows which ones took the fast path.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::ScalarValue;
use strata::{Config, Db};
use strata_query::{Output, Session};

async fn run(
    s: &mut Session,
    sql: &str,
    params: &[ScalarValue],
) -> Result<(String, Vec<String>), String> {
    let out = s.execute(sql, params).await.map_err(|e| e.to_string())?;
    let Some(Output::Rows { schema, stream }) = out.into_iter().last() else {
        return Err("not a query".into());
    };
    let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream)
        .await
        .map_err(|e| e.to_string())?;
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    let text = pretty_format_batches(&batches).unwrap().to_string();
    // Row order is unspecified: compare sorted lines.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    Ok((fields.join(", "), lines))
}

/// Run `sql` both ways; assert equal answers; return whether it took the fast path.
async fn both(db: &Db, sql: &str, params: &[ScalarValue]) -> bool {
    let mut fast = db.session();
    let mut planned = db.session();
    planned.set_fast_path(false);
    let before = db.database().point_lookups();
    let a = run(&mut fast, sql, params).await;
    let used = db.database().point_lookups() > before;
    let b = run(&mut planned, sql, params).await;
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "fast path and planner disagree on {sql} {params:?}"),
        (Err(x), Err(y)) => assert_eq!(x, y, "different errors for {sql}"),
        _ => panic!("fast path {a:?} vs planner {b:?} for {sql} {params:?}"),
    }
    used
}

#[tokio::test]
async fn point_lookups_answer_like_the_planner() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::dir(dir.path()).with_test_clock(1_577_836_800_000_000, 86_400_000_000);
    let db = Db::open(cfg).await.unwrap();
    let setup = [
        "INSERT INTO items (_id, name, qty, price) VALUES (1, 'ant', 3, 1.5), (2, 'bee', 4, 2.5), (3, 'cat', 5, 3.5)",
        ".flush",
        "UPDATE items SET qty = 30 WHERE _id = 1",
        "INSERT INTO items (_id, name, qty, _valid_from, _valid_to) VALUES (4, 'dog', 1, TIMESTAMP '2019-01-01', TIMESTAMP '2030-01-01')",
        "DELETE FROM items WHERE _id = 2",
        ".flush",
        "UPDATE items SET qty = 300, note = 'late' WHERE _id = 1",
        "INSERT INTO docs (_id, body) VALUES ('a', 'first'), ('b', 'second')",
        "UPDATE docs SET body = 'first, edited' WHERE _id = 'a'",
        "ERASE FROM docs WHERE _id = 'b'",
    ];
    for s in setup {
        if s == ".flush" {
            db.flush().await.unwrap();
        } else {
            db.sql(s).await.unwrap();
        }
    }
    let fast = [
        "SELECT * FROM items WHERE _id = 1",
        "SELECT * FROM items WHERE _id = 2",
        "SELECT * FROM items WHERE _id = 3",
        "SELECT * FROM items WHERE _id = 4",
        "SELECT * FROM items WHERE _id = 99",
        "SELECT name, qty AS how_many, note FROM items WHERE 1 = _id",
        "SELECT i.qty AS q, i.* FROM items AS i WHERE i._id = 1",
        "SELECT items.qty FROM public.items WHERE items._id = 3",
        "SELECT _id, qty, _valid_from, _valid_to, _system_from, _system_to FROM items WHERE _id = 1",
        "SELECT * FROM items FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-02 12:00:00' WHERE _id = 1",
        "SELECT qty, _system_from FROM items FOR ALL SYSTEM_TIME WHERE _id = 1",
        "SELECT qty, _valid_from FROM items FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 4",
        "SELECT * FROM items FOR VALID_TIME AS OF TIMESTAMP '2018-06-01' WHERE _id = 4",
        "SELECT * FROM items FOR ALL SYSTEM_TIME AS x WHERE x._id = 2",
        "SETTING DEFAULT SYSTEM_TIME AS OF TIMESTAMP '2020-01-01 12:00:00' SELECT * FROM items WHERE _id = 1",
        "SELECT * FROM docs WHERE _id = 'a'",
        "SELECT body FROM docs FOR ALL SYSTEM_TIME WHERE _id = 'a'",
        "SELECT * FROM docs FOR ALL SYSTEM_TIME WHERE _id = 'b'",
        "SELECT * FROM items WHERE _id = '1'",
    ];
    for sql in fast {
        assert!(
            both(&db, sql, &[]).await,
            "expected the fast path for {sql}"
        );
    }
    // Parameters, typed as a client would send them.
    let p = |v: ScalarValue| vec![v];
    for params in [
        p(ScalarValue::Int64(Some(1))),
        p(ScalarValue::Int32(Some(3))),
        p(ScalarValue::Int64(Some(2))),
        p(ScalarValue::Utf8(Some("1".into()))),
    ] {
        assert!(both(&db, "SELECT * FROM items WHERE _id = $1", &params).await);
    }
    assert!(
        both(
            &db,
            "SELECT body FROM docs WHERE _id = $1",
            &p(ScalarValue::Utf8(Some("a".into())))
        )
        .await
    );
    // Shapes and keys the planner answers (still the same answers).
    for (sql, params) in [
        ("SELECT qty + 1 FROM items WHERE _id = 1", vec![]),
        ("SELECT * FROM items WHERE _id = 1 AND qty > 0", vec![]),
        ("SELECT * FROM items WHERE _id = '01'", vec![]),
        (
            "SELECT * FROM items WHERE _id = $1",
            p(ScalarValue::Int64(None)),
        ),
        (
            "SELECT * FROM items WHERE _id = $1",
            p(ScalarValue::Utf8(Some("01".into()))),
        ),
        ("SELECT nope FROM items WHERE _id = 1", vec![]),
        ("SELECT name, * FROM items WHERE _id = 1", vec![]),
        ("SELECT * FROM nope WHERE _id = 1", vec![]),
        ("SELECT * FROM docs WHERE _id = 1", vec![]),
    ] {
        assert!(
            !both(&db, sql, &params).await,
            "expected the planner for {sql}"
        );
    }
    // Inside a transaction with writes, reads see them (planner path).
    let mut s = db.session();
    s.execute("BEGIN", &[]).await.unwrap();
    s.execute("UPDATE items SET qty = 7 WHERE _id = 3", &[])
        .await
        .unwrap();
    let (_, rows) = run(&mut s, "SELECT qty FROM items WHERE _id = 3", &[])
        .await
        .unwrap();
    assert!(rows.iter().any(|l| l.contains("| 7 ")), "{rows:?}");
    s.execute("ROLLBACK", &[]).await.unwrap();
    // After a restart (everything from segments and the replayed log).
    drop(db);
    let cfg = Config::dir(dir.path()).with_test_clock(1_577_836_800_000_000, 86_400_000_000);
    let db = Db::open(cfg).await.unwrap();
    for sql in fast {
        assert!(
            both(&db, sql, &[]).await,
            "expected the fast path for {sql} after reopen"
        );
    }
}

/// `INSERT … VALUES` with literal and parameter rows is built without the
/// planner; the rows and column types written must be the planner's.
#[tokio::test]
async fn literal_inserts_store_what_the_planner_would() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Config::dir(dir.path())).await.unwrap();
    let cases: Vec<(&str, Vec<ScalarValue>)> = vec![
        ("(_id, a, b, c, d) VALUES (1, 'x', 1.5, true, NULL)", vec![]),
        (
            "(_id, a, b) VALUES (2, -7, -2.25), (3, 9223372036854775807, 1e3)",
            vec![],
        ),
        ("(_id, a, b) VALUES (4, NULL, 'y'), (5, 'z', NULL)", vec![]),
        (
            "(_id, a, b) VALUES ($1, $2, $3)",
            vec![
                ScalarValue::Int64(Some(6)),
                ScalarValue::Utf8(Some("p".into())),
                ScalarValue::Float64(Some(0.5)),
            ],
        ),
        (
            "(_id, a) VALUES ($1, ($2))",
            vec![
                ScalarValue::Int32(Some(7)),
                ScalarValue::Boolean(Some(false)),
            ],
        ),
        ("(_id, a) VALUES (8, 1), (9, 2.5)", vec![]),
        ("(_id, a) VALUES (10, -9223372036854775808)", vec![]),
    ];
    for (i, (tail, params)) in cases.iter().enumerate() {
        let mut fast = db.session();
        let mut planned = db.session();
        planned.set_fast_path(false);
        let a = fast
            .execute(&format!("INSERT INTO fast{i} {tail}"), params)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let b = planned
            .execute(&format!("INSERT INTO slow{i} {tail}"), params)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(a.is_ok(), b.is_ok(), "{tail}: fast {a:?} vs planner {b:?}");
        if a.is_err() {
            continue;
        }
        let sf = db
            .database()
            .engine()
            .table_schema(&format!("fast{i}"))
            .unwrap();
        let ss = db
            .database()
            .engine()
            .table_schema(&format!("slow{i}"))
            .unwrap();
        let types = |t: &strata_storage::schema::TableSchema| {
            t.columns
                .iter()
                .map(|f| format!("{}:{}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
        };
        assert_eq!(types(&sf), types(&ss), "column types for {tail}");
        let (_, fa) = run(&mut fast, &format!("SELECT * FROM fast{i}"), &[])
            .await
            .unwrap();
        let (_, sa) = run(&mut fast, &format!("SELECT * FROM slow{i}"), &[])
            .await
            .unwrap();
        assert_eq!(fa, sa, "rows for {tail}");
    }
}

/// An entity's history in order (`… WHERE _id = 1 ORDER BY _system_from`)
/// is sorted by the fast path itself; rows come out in the planner's order
/// (keys chosen so that no two rows tie), NULLs as the largest value unless
/// `NULLS FIRST / LAST` says otherwise. ORDER BY anything else is planned.
#[tokio::test]
async fn entity_history_in_order_answers_like_the_planner() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::dir(dir.path()).with_test_clock(1_577_836_800_000_000, 86_400_000_000);
    let db = Db::open(cfg).await.unwrap();
    for s in [
        "INSERT INTO acct (_id, bal) VALUES (1, 10), (2, 20)",
        ".flush",
        "UPDATE acct SET bal = 11 WHERE _id = 1",
        "UPDATE acct FOR PORTION OF VALID_TIME FROM TIMESTAMP '2030-01-01' TO TIMESTAMP '2031-01-01' \
         SET bal = 12 WHERE _id = 1",
        ".flush",
        "UPDATE acct SET bal = NULL WHERE _id = 1",
        "DELETE FROM acct WHERE _id = 2",
    ] {
        if s == ".flush" {
            db.flush().await.unwrap();
        } else {
            db.sql(s).await.unwrap();
        }
    }
    // In order, not sorted: the order is the answer.
    async fn ordered(s: &mut Session, sql: &str) -> String {
        let out = s.execute(sql, &[]).await.unwrap();
        let Some(Output::Rows { schema, stream }) = out.into_iter().last() else {
            panic!("{sql}: not a query");
        };
        let b: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream).await.unwrap();
        let mut out = schema
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ");
        for b in &b {
            for r in 0..b.num_rows() {
                let row: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect();
                out.push('\n');
                out.push_str(&row.join(" | "));
            }
        }
        out
    }
    let history = "FROM acct FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = 1";
    let fast = [
        format!("SELECT bal, _valid_from, _valid_to, _system_from, _system_to {history} ORDER BY _system_from, _valid_from"),
        format!("SELECT bal, _valid_from, _system_from {history} ORDER BY _system_from DESC, _valid_from DESC"),
        format!("SELECT bal AS b, _valid_from AS vf, _system_from AS sf {history} ORDER BY sf, vf"),
        format!("SELECT bal, _valid_from, _system_from {history} ORDER BY acct._system_from, acct._valid_from"),
        format!("SELECT bal, _valid_to, _system_from, _valid_from {history} ORDER BY _valid_to NULLS FIRST, _system_from, _valid_from"),
        format!("SELECT bal, _valid_to, _system_from, _valid_from {history} ORDER BY _valid_to DESC NULLS LAST, _system_from DESC, _valid_from"),
        "SELECT bal FROM acct WHERE _id = 1 ORDER BY bal".to_string(),
        "SELECT * FROM acct WHERE _id = 2 ORDER BY bal DESC".to_string(),
        format!("SELECT bal, _system_from, _valid_from {history} ORDER BY bal NULLS FIRST, _system_from, _valid_from"),
    ];
    for sql in &fast {
        let mut planned = db.session();
        planned.set_fast_path(false);
        let before = db.database().point_lookups();
        let a = ordered(&mut db.session(), sql).await;
        assert!(
            db.database().point_lookups() > before,
            "expected the fast path for {sql}"
        );
        let b = ordered(&mut planned, sql).await;
        assert_eq!(a, b, "fast path and planner disagree on {sql}");
        // The history really has several rows to order.
        if sql.contains("ALL VALID_TIME") {
            assert!(a.lines().count() >= 5, "{sql}\n{a}");
        }
    }
    // A sort key that is not a selected column: the planner's.
    for sql in [
        format!("SELECT bal {history} ORDER BY _system_from"),
        format!("SELECT bal {history} ORDER BY bal + 1"),
    ] {
        let before = db.database().point_lookups();
        ordered(&mut db.session(), &sql).await;
        assert_eq!(
            db.database().point_lookups(),
            before,
            "expected the planner for {sql}"
        );
    }
}
