//! `strata serve` end to end: the real binary, the real psql, and
//! tokio-postgres for the extended protocol (prepared statements, typed and
//! untyped parameters, binary results).

#[path = "clients/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use harness::Server;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

const PEOPLE: &str = "CREATE TABLE people (_id BIGINT, name TEXT, age BIGINT, score DOUBLE PRECISION, active BOOLEAN, born DATE, seen TIMESTAMPTZ)";
const PEOPLE_ROWS: &str = "INSERT INTO people (_id, name, age, score, active, born, seen) VALUES \
    (1, 'ada', 36, 1.5, true, DATE '1815-12-10', TIMESTAMP '2020-01-01 10:00:00'), \
    (2, 'bob', 40, 2.25, false, DATE '1990-05-01', TIMESTAMP '2021-06-30 23:59:59.5'), \
    (3, 'cy', NULL, NULL, NULL, NULL, NULL)";

fn setup(s: &Server) {
    s.psql_ok(&[PEOPLE, PEOPLE_ROWS]);
}

#[test]
fn banner_says_where_it_listens_and_where_data_lives() {
    let s = Server::start();
    let lines = s.stdout.lock().unwrap().clone();
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("postgres listening on 127.0.0.1:{}", s.port)),
        "{text}"
    );
    let dir = std::fs::canonicalize(&s.dir).unwrap();
    assert!(
        text.contains(&dir.display().to_string()),
        "the banner names the data directory: {text}"
    );
}

#[test]
fn psql_creates_inserts_and_queries() {
    let s = Server::start();
    let out = s.psql_ok(&[PEOPLE, PEOPLE_ROWS]);
    assert!(out.contains("CREATE TABLE") || out.is_empty(), "{out}");
    let out =
        s.psql_ok(&["SELECT _id, name, age, score, active, born, seen FROM people ORDER BY _id"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "1|ada|36|1.5|t|1815-12-10|2020-01-01 10:00:00+00",
            "2|bob|40|2.25|f|1990-05-01|2021-06-30 23:59:59.5+00",
            "3|cy|||||",
        ],
        "{out}"
    );
    let out = s.psql_ok(&["SELECT count(*) FROM people WHERE age > 37"]);
    assert_eq!(out.trim(), "1");
}

#[test]
fn psql_sees_errors_with_sqlstate() {
    let s = Server::start();
    let o = s.psql(&["SELECT * FROM nosuchtable"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("42P01"),
        "SQLSTATE 42P01 for an unknown table: {err}"
    );
    let o = s.psql(&["SELEC 1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("42601"), "syntax error: {err}");
}

#[test]
fn psql_client_settings_and_functions() {
    let s = Server::start();
    let out = s.psql_ok(&[
        "SET application_name = 'tests'",
        "SHOW application_name",
        "SET DateStyle TO 'ISO, MDY'",
        "SHOW datestyle",
        "SET extra_float_digits = 3",
        "SET search_path TO public",
        "SET TIME ZONE 'UTC'",
        "SHOW TimeZone",
        "SHOW transaction isolation level",
        "SELECT version()",
        "SELECT current_schema(), current_database(), current_user",
        "SELECT current_setting('application_name')",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "tests");
    assert_eq!(lines[1], "ISO, MDY");
    assert_eq!(lines[2], "UTC");
    assert_eq!(lines[3], "read committed");
    assert!(lines[4].starts_with("PostgreSQL 16"), "{out}");
    assert_eq!(lines[5], "public|strata|strata");
    assert_eq!(lines[6], "tests");
    // An empty query and a comment are fine.
    s.psql_ok(&[";", "-- nothing"]);
}

#[test]
fn psql_prepare_and_execute() {
    let s = Server::start();
    setup(&s);
    let out = s.psql_ok(&[
        "PREPARE by_id AS SELECT name FROM people WHERE _id = $1",
        "EXECUTE by_id(2)",
        "EXECUTE by_id('3')",
        "PREPARE ins (BIGINT, TEXT) AS INSERT INTO people (_id, name) VALUES ($1, $2)",
        "EXECUTE ins(4, 'dee')",
        "SELECT name FROM people WHERE _id = 4",
        "DEALLOCATE ALL",
    ]);
    assert_eq!(
        out.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        vec!["bob", "cy", "dee"],
        "{out}"
    );
}

#[test]
fn psql_transactions() {
    let s = Server::start();
    setup(&s);
    s.psql_ok(&["BEGIN; INSERT INTO people (_id, name) VALUES (10, 'x'); ROLLBACK"]);
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM people"]).trim(), "3");
    s.psql_ok(&["BEGIN; INSERT INTO people (_id, name) VALUES (10, 'x'); COMMIT"]);
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM people"]).trim(), "4");
    // An error inside a transaction aborts it: later statements fail until ROLLBACK.
    let o = s.psql(&[
        "BEGIN; INSERT INTO people (_id, name) VALUES (11, 'y'); SELECT * FROM nope; COMMIT",
    ]);
    assert!(!o.status.success());
    assert_eq!(s.psql_ok(&["SELECT count(*) FROM people"]).trim(), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_typed_and_untyped_parameters() {
    let s = Server::start();
    setup(&s);
    let c = s.client().await;

    // Untyped `$1` compared with `_id`: inferred as int8.
    let st = c
        .prepare("SELECT name FROM people WHERE _id = $1")
        .await
        .unwrap();
    assert_eq!(st.params(), &[Type::INT8]);
    assert_eq!(st.columns()[0].type_(), &Type::TEXT);
    let rows = c.query(&st, &[&2i64]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "bob");

    // Typed in Parse.
    let st = c
        .prepare_typed("SELECT name FROM people WHERE _id = $1", &[Type::INT8])
        .await
        .unwrap();
    let rows = c.query(&st, &[&1i64]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "ada");

    // Text parameter.
    let rows = c
        .query("SELECT _id FROM people WHERE name = $1", &[&"cy"])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 3);

    // Several parameters of different types, one unused portal of results.
    let rows = c
        .query(
            "SELECT name FROM people WHERE age >= $1 AND score < $2 AND active = $3 ORDER BY _id",
            &[&30i64, &2.0f64, &true],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>(),
        vec!["ada"]
    );

    // Parameters in INSERT take the column types.
    let n = c
        .execute(
            "INSERT INTO people (_id, name, age, seen) VALUES ($1, $2, $3, $4)",
            &[
                &5i64,
                &"eve",
                &50i64,
                &"2022-02-02T02:02:02Z".parse::<DateTime<Utc>>().unwrap(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = c
        .query_one(
            "SELECT name, age, seen FROM people WHERE _id = $1",
            &[&5i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "eve");
    assert_eq!(row.get::<_, i64>(1), 50);
    assert_eq!(
        row.get::<_, DateTime<Utc>>(2),
        "2022-02-02T02:02:02Z".parse::<DateTime<Utc>>().unwrap()
    );

    // An untyped parameter nothing constrains is text, as in Postgres.
    let st = c.prepare("SELECT $1").await.unwrap();
    assert_eq!(st.params(), &[Type::TEXT]);
    assert_eq!(
        c.query_one(&st, &[&"hi"])
            .await
            .unwrap()
            .get::<_, String>(0),
        "hi"
    );
    // A cast says the type.
    let st = c.prepare("SELECT $1::BIGINT + 1").await.unwrap();
    assert_eq!(st.params(), &[Type::INT8]);
    assert_eq!(
        c.query_one(&st, &[&41i64]).await.unwrap().get::<_, i64>(0),
        42
    );

    // Settings through the extended protocol.
    c.execute("SET application_name = 'ext'", &[])
        .await
        .unwrap();
    assert_eq!(
        c.query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "ext"
    );

    // The same prepared statement, many times.
    let st = c
        .prepare("SELECT count(*) FROM people WHERE _id <= $1")
        .await
        .unwrap();
    for (i, want) in [(1i64, 1i64), (2, 2), (3, 3), (4, 3), (5, 4)] {
        let n: i64 = c.query_one(&st, &[&i]).await.unwrap().get(0);
        assert_eq!(n, want, "ids <= {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_of_each_type() {
    let s = Server::start();
    setup(&s);
    let c = s.client().await;
    let row = c
        .query_one(
            "SELECT _id, name, age, score, active, born, seen FROM people WHERE _id = 2",
            &[],
        )
        .await
        .unwrap();
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::FLOAT8,
            Type::BOOL,
            Type::DATE,
            Type::TIMESTAMPTZ
        ]
    );
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, &str>(1), "bob");
    assert_eq!(row.get::<_, i64>(2), 40);
    assert_eq!(row.get::<_, f64>(3), 2.25);
    assert!(!row.get::<_, bool>(4));
    assert_eq!(
        row.get::<_, NaiveDate>(5),
        NaiveDate::from_ymd_opt(1990, 5, 1).unwrap()
    );
    assert_eq!(
        row.get::<_, DateTime<Utc>>(6),
        "2021-06-30T23:59:59.5Z".parse::<DateTime<Utc>>().unwrap()
    );

    let row = c
        .query_one(
            "SELECT name, age, score, active FROM people WHERE _id = 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(1), None);
    assert_eq!(row.get::<_, Option<f64>>(2), None);
    assert_eq!(row.get::<_, Option<bool>>(3), None);

    // Arrays and bytea.
    let row = c
        .query_one("SELECT [1, 2, NULL], X'00ff'", &[])
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::INT8_ARRAY);
    assert_eq!(
        row.get::<_, Vec<Option<i64>>>(0),
        vec![Some(1), Some(2), None]
    );
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![0u8, 255]);

    // Text format of the same values through the simple protocol.
    let msgs = c
        .simple_query("SELECT score, born, seen FROM people WHERE _id = 2")
        .await
        .unwrap();
    let SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("{msgs:?}")
    };
    assert_eq!(r.get(0), Some("2.25"));
    assert_eq!(r.get(1), Some("1990-05-01"));
    assert_eq!(r.get(2), Some("2021-06-30 23:59:59.5+00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_roll_back_and_commit() {
    let s = Server::start();
    setup(&s);
    let mut c = s.client().await;
    let tx = c.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO people (_id, name) VALUES ($1, $2)",
        &[&20i64, &"tmp"],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    let tx = c.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO people (_id, name) VALUES ($1, $2)",
        &[&21i64, &"kept"],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);

    // A failed statement aborts the transaction (25P02 after it), and the
    // connection is usable again after ROLLBACK.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.query("SELECT * FROM nope", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_undo_part_of_a_transaction() {
    let s = Server::start();
    setup(&s);
    let mut c = s.client().await;
    let mut tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO people (_id, name) VALUES (30, 'kept')", &[])
        .await
        .unwrap();
    {
        // tokio-postgres's nested transaction: SAVEPOINT … ROLLBACK TO SAVEPOINT.
        let sp = tx.savepoint("sp1").await.unwrap();
        sp.execute("INSERT INTO people (_id, name) VALUES (31, 'undone')", &[])
            .await
            .unwrap();
        let e = sp.query("SELECT * FROM nope", &[]).await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
        sp.rollback().await.unwrap();
    }
    // The failure was inside the savepoint: the transaction goes on.
    tx.execute("INSERT INTO people (_id, name) VALUES (32, 'after')", &[])
        .await
        .unwrap();
    {
        let sp = tx.savepoint("sp2").await.unwrap();
        sp.execute(
            "INSERT INTO people (_id, name) VALUES (33, 'released')",
            &[],
        )
        .await
        .unwrap();
        sp.commit().await.unwrap(); // RELEASE SAVEPOINT
    }
    tx.commit().await.unwrap();
    let ids: Vec<i64> = c
        .query("SELECT _id FROM people WHERE _id >= 30 ORDER BY _id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![30, 32, 33]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate() {
    let s = Server::start();
    let c = s.client().await;
    let e = c
        .query("SELECT * FROM nosuchtable WHERE x = $1", &[&1i64])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    let e = c
        .simple_query("SELECT * FROM nosuchtable")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e:?}");
    let e = c.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR), "{e:?}");
    // The connection still works.
    let n: i64 = c.query_one("SELECT 1 + 1", &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_do_not_take_the_server_down() {
    let s = Server::start();
    for junk in [
        &b"\x00\x00\x00\x08garbage!!"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xff; 64][..],
        b"Q\x00\x00\x00\x05x",
    ] {
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = t.write_all(junk);
        let mut buf = [0u8; 256];
        let _ = t.read(&mut buf);
    }
    // A client that connects properly and then sends junk mid-session.
    {
        let c = s.client().await;
        c.simple_query("SELECT 1").await.unwrap();
    }
    let c = s.client().await;
    let rows = c.simple_query("SELECT 42").await.unwrap();
    assert!(
        matches!(&rows[1], SimpleQueryMessage::Row(r) if r.get(0) == Some("42")),
        "{rows:?}"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut s = Server::start();
    s.psql_ok(&["SELECT 1"]);
    let status = s
        .terminate(Duration::from_secs(10))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(s
        .stdout
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("stopped")));
}

#[test]
fn env_vars_and_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("strata.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"from-config\"\npg_port = 1\nlisten = \"127.0.0.1\"\n",
    )
    .unwrap();
    // The environment overrides the file's port; the file gives the data directory.
    let s = Server::start_with(
        &["--config", cfg.to_str().unwrap()],
        &[("STRATA_PG_PORT", "0")],
    );
    s.psql_ok(&["INSERT INTO t (_id) VALUES (1)"]);
    assert!(
        tmp.path().join("from-config").exists(),
        "data directory relative to the config file"
    );
    let text = s.stdout.lock().unwrap().join("\n");
    assert!(text.contains("from-config"), "{text}");
}

#[test]
fn two_servers_on_one_store_see_each_others_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Server::start_in(tmp.path());
    let b = Server::start_in(tmp.path());
    a.psql_ok(&["INSERT INTO shared (_id, v) VALUES (1, 'from a')"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = b.psql(&["SELECT v FROM shared"]);
        if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("from a") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b never saw a's write: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_have_postgres_names_and_types() {
    let s = Server::start();
    setup(&s);
    let c = s.client().await;
    let st = c.prepare("SELECT count(*), 1 + 1, name, CAST(age AS TEXT), CAST(1.5 AS DECIMAL(5,2)) FROM people GROUP BY name, age").await.unwrap();
    let names: Vec<&str> = st.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["count", "?column?", "name", "age", "numeric"]);
    assert_eq!(st.columns()[4].type_(), &Type::NUMERIC);
    let msgs = c.simple_query("SELECT count(*) FROM people").await.unwrap();
    let SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("{msgs:?}")
    };
    assert_eq!(r.columns()[0].name(), "count");
    assert_eq!(r.get(0), Some("3"));

    // Text forms of numeric, interval, time, bytea, arrays.
    let msgs = c
        .simple_query("SELECT CAST(12.5 AS DECIMAL(6,2)), INTERVAL '1 day 2 hours', CAST('12:30:00.25' AS TIME), X'00ff', ['a', 'b c', NULL]")
        .await
        .unwrap();
    let SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("{msgs:?}")
    };
    let got: Vec<Option<&str>> = (0..5).map(|i| r.get(i)).collect();
    assert_eq!(
        got,
        vec![
            Some("12.50"),
            Some("1 day 02:00:00"),
            Some("12:30:00.25"),
            Some("\\x00ff"),
            Some("{a,\"b c\",NULL}")
        ]
    );

    // Binary time.
    let row = c
        .query_one("SELECT CAST('12:30:00.25' AS TIME)", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, chrono::NaiveTime>(0),
        chrono::NaiveTime::from_hms_milli_opt(12, 30, 0, 250).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_queries_with_parameters() {
    let s = Server::start();
    let c = s.client().await;
    c.simple_query("INSERT INTO t (_id, v) VALUES (1, 'one')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between: DateTime<Utc> = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.simple_query("UPDATE t SET v = 'uno' WHERE _id = 1")
        .await
        .unwrap();

    // The parameter of FOR SYSTEM_TIME AS OF is described as timestamptz.
    let st = c
        .prepare("SELECT v FROM t FOR SYSTEM_TIME AS OF $1 WHERE _id = $2")
        .await
        .unwrap();
    assert_eq!(st.params(), &[Type::TIMESTAMPTZ, Type::INT8]);
    let rows = c.query(&st, &[&between, &1i64]).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>(),
        vec!["one"]
    );
    let rows = c
        .query("SELECT v FROM t WHERE _id = $1", &[&1i64])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "uno");
    let n = c
        .query("SELECT v FROM t FOR VALID_TIME ALL", &[])
        .await
        .unwrap()
        .len();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() {
    let s = Server::start();
    let c = s.client().await;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let q = tokio::spawn(async move {
        c.simple_query("SELECT sum(value) FROM range(100000000000)")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), q)
        .await
        .expect("the query ends after the cancel")
        .unwrap();
    let e = r.expect_err("a canceled query fails");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The server is fine.
    let c = s.client().await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_parameters_of_each_type() {
    let s = Server::start();
    setup(&s);
    let c = s.client().await;
    let born = NaiveDate::from_ymd_opt(1990, 5, 1).unwrap();
    let rows = c
        .query(
            "SELECT name FROM people WHERE born = $1 AND active = $2 AND score = $3 AND name = $4",
            &[&born, &false, &2.25f64, &"bob"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // Typed as the client says, though the column is int8.
    let st = c
        .prepare_typed("SELECT name FROM people WHERE _id = $1", &[Type::INT4])
        .await
        .unwrap();
    assert_eq!(
        c.query_one(&st, &[&3i32])
            .await
            .unwrap()
            .get::<_, String>(0),
        "cy"
    );
    // Arrays and bytea as parameters.
    let row = c
        .query_one(
            "SELECT $1::BIGINT[], $2::BYTEA",
            &[&vec![Some(1i64), None, Some(3)], &vec![1u8, 2, 3]],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Vec<Option<i64>>>(0),
        vec![Some(1), None, Some(3)]
    );
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![1u8, 2, 3]);
    // NULL parameters.
    let rows = c
        .query("SELECT name FROM people WHERE age = $1", &[&None::<i64>])
        .await
        .unwrap();
    assert!(rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_fetch_in_pages_and_big_results_stream() {
    let s = Server::start();
    let mut c = s.client().await;
    let tx = c.transaction().await.unwrap();
    let portal = tx
        .bind("SELECT value FROM range(10) ORDER BY value", &[])
        .await
        .unwrap();
    let mut got = vec![];
    loop {
        let page = tx.query_portal(&portal, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        got.extend(page.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    tx.commit().await.unwrap();

    let n = c
        .query(
            "SELECT value, 'row ' || CAST(value AS TEXT) FROM range(200000)",
            &[],
        )
        .await
        .unwrap()
        .len();
    assert_eq!(n, 200_000);
}
