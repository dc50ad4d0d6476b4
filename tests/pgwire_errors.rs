//! Wrong answers and wrong error codes over the Postgres wire (issue 17):
//! a refused pinned transaction stays a failed block, arithmetic overflow
//! and storage faults carry Postgres's SQLSTATEs.

#[path = "clients/harness.rs"]
mod harness;

use harness::Server;
use std::io::Write as _;
use std::process::Command;
use tokio_postgres::error::SqlState;

/// psql running a script file (as `psql -f`, errors do not stop it).
fn psql_script(s: &Server, script: &str) -> (String, String) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(script.as_bytes()).unwrap();
    let o = Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "VERBOSITY=verbose"])
        .args(["-h", "127.0.0.1", "-p", &s.port.to_string()])
        .args(["-U", "strata", "-d", "strata", "-f"])
        .arg(f.path())
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql");
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn psql_script_after_a_refused_pin_writes_nothing() {
    let s = Server::start();
    s.psql_ok(&[
        "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2030-01-01 00:00:00Z')",
        "INSERT INTO acct (_id, balance) VALUES (1, 100)",
        "COMMIT",
    ]);
    // The pin is before the last transaction: refused. The script goes on
    // sending what it meant for the block.
    let (out, err) = psql_script(
        &s,
        "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2029-01-01 00:00:00Z');\n\
         INSERT INTO acct (_id, balance) VALUES (2, 200);\n\
         UPDATE acct SET balance = 0 WHERE _id = 1;\n\
         COMMIT;\n\
         SELECT 'after', count(*) FROM acct FOR ALL SYSTEM_TIME FOR ALL VALID_TIME;\n",
    );
    assert!(
        err.contains("22023") && err.contains("cannot pin system time"),
        "{err}"
    );
    assert_eq!(err.matches("25P02").count(), 2, "{err}");
    // COMMIT of the failed block answers ROLLBACK; afterwards autocommit again.
    assert!(out.contains("ROLLBACK"), "{out}");
    assert!(out.contains("after|1"), "{out}\n{err}");
    assert_eq!(
        s.psql_ok(&["SELECT _id, balance FROM acct FOR ALL SYSTEM_TIME FOR ALL VALID_TIME"])
            .trim(),
        "1|100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_refused_pin_is_a_failed_block() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2030-01-01 00:00:00Z');
         INSERT INTO acct (_id, balance) VALUES (1, 100); COMMIT",
    )
    .await
    .unwrap();
    let e = c
        .batch_execute("BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2029-01-01 00:00:00Z')")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INVALID_PARAMETER_VALUE), "{e:?}");
    let e = c
        .execute(
            "INSERT INTO acct (_id, balance) VALUES ($1, $2)",
            &[&2i64, &200i64],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{e:?}"
    );
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{e:?}"
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM acct FOR ALL SYSTEM_TIME FOR ALL VALID_TIME",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Out of the block: autocommit again.
    c.execute(
        "INSERT INTO acct (_id, balance) VALUES ($1, $2)",
        &[&3i64, &300i64],
    )
    .await
    .unwrap();
}

/// A Parse the connection refuses itself fails the open block, and the
/// session (which keeps the block's state) says why in every 25P02 after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_parse_fails_the_block_with_its_reason() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("BEGIN").await.unwrap();
    let e = c.prepare("SELECT 1; SELECT 2").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR), "{e:?}");
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{e:?}"
    );
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("current transaction is aborted") && msg.contains("prepared statement"),
        "{msg}"
    );
    // COMMIT of the failed block answers ROLLBACK, and autocommit is back.
    let tags = c.simple_query("COMMIT").await.unwrap();
    assert!(tags
        .iter()
        .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    let one: i64 = c.query_one("SELECT 1::bigint", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_and_division_by_zero_have_postgres_sqlstates() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("INSERT INTO accounts (_id, balance) VALUES (1, -10)")
        .await
        .unwrap();
    let e = c
        .query("SELECT 9223372036854775807 + 1", &[])
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
        "{e:?}"
    );
    let msg = e.as_db_error().unwrap().message();
    assert!(msg.contains("bigint out of range"), "{msg}");
    let e = c
        .execute(
            "UPDATE accounts SET balance = balance * $1 WHERE _id = 1",
            &[&9223372036854775807i64],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
        "{e:?}"
    );
    let b: i64 = c
        .query_one("SELECT balance FROM accounts WHERE _id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(b, -10, "nothing written");
    let e = c.query("SELECT 1 / 0", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO), "{e:?}");
}

/// A path under a regular file: no process (not even root) can create it.
fn unwritable_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    (tmp, file.join("data"))
}

#[test]
fn serve_and_sql_refuse_a_data_directory_they_cannot_write() {
    let (_tmp, dir) = unwritable_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--pg-port",
            "0",
            "--flight-port",
            "0",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(
        err.contains("not writable") || err.contains("cannot create"),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["sql", "-c", "SELECT 1", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("is not writable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_reach_the_disk_is_an_io_error_not_a_conflict() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("INSERT INTO t (_id, v) VALUES (1, 1)")
        .await
        .unwrap();
    // The log directory becomes a regular file: the next commit cannot write.
    let log = s.dir.join("log");
    std::fs::remove_dir_all(&log).unwrap();
    std::fs::write(&log, b"in the way").unwrap();
    let e = c
        .batch_execute("INSERT INTO t (_id, v) VALUES (2, 2)")
        .await
        .unwrap_err();
    let code = e.code().cloned();
    assert_ne!(code, Some(SqlState::T_R_SERIALIZATION_FAILURE), "{e:?}");
    assert_eq!(code, Some(SqlState::IO_ERROR), "{e:?}");
    let msg = e.as_db_error().unwrap().message();
    assert!(msg.contains("transaction not committed"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_names_fold_alike_on_every_wire_path() {
    use futures::SinkExt;
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE Ärger (_id BIGINT, Größe BIGINT)")
        .await
        .unwrap();
    // COPY with unquoted names folds as queries do (only A-Z lowered).
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY ÄRGER (_id, Größe) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\t10\n2\t20\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    // Extended protocol, a prepared statement and the result column's name.
    let rows = c
        .query("SELECT Größe FROM Ärger WHERE _id = $1", &[&2i64])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 20);
    assert_eq!(rows[0].columns()[0].name(), "größe");
    c.batch_execute("PREPARE Größer AS SELECT count(*) FROM Ärger WHERE größe > $1")
        .await
        .unwrap();
    let n: i64 = c.query_one("EXECUTE größer(15)", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    let t: String = c
        .query_one(
            "SELECT relname::text FROM pg_catalog.pg_class WHERE relname = 'Ärger'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "Ärger");
}

/// A setting whose value holds a NUL is refused: reported back in a
/// ParameterStatus (a C string), it broke the client's connection (found
/// by the fuzz test: `SET DateStyle = U&'\0000'`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_with_a_nul_is_an_error_and_the_connection_lives() {
    let s = Server::start();
    let c = s.client().await;
    for q in ["SET DateStyle = U&'\\0000'", "SET TimeZone = U&'UTC\\0000'"] {
        let e = c.batch_execute(q).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE),
            "{q}: {e:?}"
        );
    }
    assert!(!c.is_closed());
    let one: i64 = c.query_one("SELECT 1::bigint", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
