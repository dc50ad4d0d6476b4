//! Roles and privileges (docs/governance.md), as users meet them: an
//! administrator creates roles and grants with psql, and a role with SELECT
//! on one table reads it and is refused (42501) everywhere else, on the
//! Postgres wire (psql, tokio-postgres, JDBC) and on Flight SQL alike.
//! REVOKE takes effect for the next statement of an open session, and
//! grants survive a restart.

#[path = "clients/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use harness::Server;
use tokio_postgres::error::SqlState;

use harness::{psql_as as psql, psql_ok_output as ok, psql_refused as refused};

fn start(dir: &Path) -> Server {
    Server::start_with(
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--user",
            "admin:adminpw",
            "--flight-port",
            "0",
        ],
        &[],
    )
}

async fn pg(port: u16, user: &str, password: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user={user} password={password} dbname=strata connect_timeout=10"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn insufficient(e: tokio_postgres::Error) -> String {
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{db:?}");
    db.message().to_string()
}

async fn flight(
    s: &Server,
    user: &str,
    password: &str,
) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let ch =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", s.flight_port()))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connect to Flight SQL");
    let mut c = FlightSqlServiceClient::new(ch);
    c.handshake(user, password).await.expect("handshake");
    c
}

async fn flight_rows(
    c: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> Result<usize, tonic::Status> {
    let info = c
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut n = 0;
    for ep in info.endpoint {
        let stream = c
            .do_get(ep.ticket.unwrap())
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let b: Vec<arrow::record_batch::RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        n += b.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_reads_what_it_was_granted_and_nothing_else_on_both_wires() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start(tmp.path());
    let port = s.port;
    ok(psql(
        port,
        "admin",
        "adminpw",
        &[
            "CREATE TABLE accounts (_id BIGINT, owner TEXT, balance BIGINT)",
            "INSERT INTO accounts (_id, owner, balance) VALUES (1, 'ada', 100), (2, 'bob', 50)",
            "CREATE TABLE secrets (_id BIGINT, s TEXT)",
            "INSERT INTO secrets (_id, s) VALUES (1, 'launch code')",
            "CREATE ROLE readers",
            "CREATE USER alice WITH PASSWORD 'alicepw' IN ROLE readers",
            "CREATE USER bob PASSWORD 'bobpw'",
            "GRANT USAGE ON SCHEMA public TO readers",
            "GRANT SELECT ON accounts TO readers",
            "GRANT INSERT, ERASE ON TABLE accounts TO bob",
        ],
    ));

    // alice reads accounts (through her role), now and in the past.
    assert_eq!(
        ok(psql(
            port,
            "alice",
            "alicepw",
            &["SELECT owner FROM accounts ORDER BY _id"]
        )),
        "ada\nbob\n"
    );
    assert_eq!(
        ok(psql(
            port,
            "alice",
            "alicepw",
            &["SELECT count(*) FROM accounts FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01Z'"],
        )),
        "0\n"
    );
    ok(psql(port, "alice", "alicepw", &["COPY accounts TO STDOUT"]));

    // …and is refused everything else, with 42501 naming table and privilege.
    for (sql, table, privilege) in [
        ("SELECT * FROM secrets", "secrets", "SELECT"),
        (
            "SELECT * FROM accounts WHERE _id IN (SELECT _id FROM secrets)",
            "secrets",
            "SELECT",
        ),
        (
            "SELECT * FROM secrets FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01'",
            "secrets",
            "SELECT",
        ),
        ("COPY secrets TO STDOUT", "secrets", "SELECT"),
        (
            "INSERT INTO accounts (_id, owner) VALUES (3, 'eve')",
            "accounts",
            "INSERT",
        ),
        ("UPDATE accounts SET balance = 0", "accounts", "UPDATE"),
        ("DELETE FROM accounts WHERE _id = 1", "accounts", "DELETE"),
        ("ERASE FROM accounts WHERE _id = 1", "accounts", "ERASE"),
        ("COPY (SUBSCRIBE TO secrets) TO STDOUT", "secrets", "SELECT"),
        (
            "BEGIN; DECLARE c CURSOR FOR SUBSCRIBE TO secrets; FETCH 1 c",
            "secrets",
            "SELECT",
        ),
    ] {
        let e = refused(psql(port, "alice", "alicepw", &[sql]));
        assert!(
            e.contains(&format!("permission denied for table {table}")) && e.contains(privilege),
            "{sql}: {e}"
        );
    }
    let e = refused(psql(
        port,
        "alice",
        "alicepw",
        &["CREATE TABLE mine (_id BIGINT)"],
    ));
    assert!(e.contains("needs a superuser"), "{e}");
    let e = refused(psql(
        port,
        "alice",
        "alicepw",
        &["GRANT SELECT ON secrets TO alice"],
    ));
    assert!(e.contains("permission denied"), "{e}");
    let e = refused(psql(
        port,
        "alice",
        "alicepw",
        &[r#"SELECT * FROM "strata$roles""#],
    ));
    assert!(e.contains("needs a superuser"), "{e}");
    let e = refused(psql(
        port,
        "admin",
        "adminpw",
        &[r#"INSERT INTO "strata$grants" (_id) VALUES ('x')"#],
    ));
    assert!(
        e.contains("CREATE ROLE, ALTER ROLE, GRANT and REVOKE"),
        "{e}"
    );

    // bob may insert and erase, not read; a failed write changes nothing.
    ok(psql(
        port,
        "bob",
        "bobpw",
        &["INSERT INTO accounts (_id, owner, balance) VALUES (3, 'cy', 7)"],
    ));
    let e = refused(psql(port, "bob", "bobpw", &["SELECT * FROM accounts"]));
    assert!(e.contains("SELECT"), "{e}");
    // ERASE with a WHERE reads the table: it needs SELECT too, as in Postgres.
    let e = refused(psql(
        port,
        "bob",
        "bobpw",
        &["ERASE FROM accounts WHERE _id = 3"],
    ));
    assert!(e.contains("SELECT"), "{e}");
    assert_eq!(
        ok(psql(
            port,
            "admin",
            "adminpw",
            &["SELECT count(*) FROM accounts"]
        )),
        "3\n"
    );

    // Wrong passwords and NOLOGIN roles do not get in.
    let e = refused(psql(port, "alice", "wrong", &["SELECT 1"]));
    assert!(e.contains("password authentication failed"), "{e}");
    let e = refused(psql(port, "readers", "whatever", &["SELECT 1"]));
    assert!(e.contains("not permitted to log in"), "{e}");

    // Flight SQL: the same privileges.
    let mut f = flight(&s, "alice", "alicepw").await;
    assert_eq!(
        flight_rows(&mut f, "SELECT * FROM accounts").await.unwrap(),
        3
    );
    let e = flight_rows(&mut f, "SELECT * FROM secrets")
        .await
        .unwrap_err();
    assert!(
        e.message().contains("permission denied for table secrets"),
        "{e}"
    );
    let e = f
        .execute_update("INSERT INTO accounts (_id) VALUES (9)".into(), None)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("permission denied for table accounts"),
        "{e}"
    );
    let info = f
        .execute("SELECT * FROM accounts".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();

    // REVOKE applies to the next statement of an open session, and to a
    // ticket handed out before it.
    let alice = pg(port, "alice", "alicepw").await;
    alice.simple_query("SELECT * FROM accounts").await.unwrap();
    ok(psql(
        port,
        "admin",
        "adminpw",
        &["REVOKE SELECT ON accounts FROM readers"],
    ));
    let e = insufficient(
        alice
            .simple_query("SELECT * FROM accounts")
            .await
            .unwrap_err(),
    );
    assert!(e.contains("accounts"), "{e}");
    let e = insufficient(
        alice
            .query("SELECT * FROM accounts WHERE _id = $1", &[&1i64])
            .await
            .unwrap_err(),
    );
    assert!(e.contains("accounts"), "{e}");
    let Err(e) = f.do_get(ticket).await else {
        panic!("a ticket from before the REVOKE must be refused")
    };
    assert!(e.to_string().contains("permission denied"), "{e}");
    ok(psql(
        port,
        "admin",
        "adminpw",
        &["GRANT SELECT ON ALL TABLES IN SCHEMA public TO alice"],
    ));
    alice.simple_query("SELECT * FROM secrets").await.unwrap();

    // What tools see: \du, \dp, has_table_privilege, information_schema.
    let du = ok(psql(port, "admin", "adminpw", &["\\du"]));
    assert!(
        du.contains("alice|") && du.contains("readers|Cannot login"),
        "{du}"
    );
    assert!(du.contains("admin|Superuser"), "{du}");
    let dp = ok(psql(port, "admin", "adminpw", &["\\dp accounts"]));
    assert!(dp.contains("alice=r/admin"), "{dp}");
    assert!(dp.contains("bob=aE/admin"), "{dp}");
    assert_eq!(
        ok(psql(
            port,
            "alice",
            "alicepw",
            &["SELECT has_table_privilege('accounts', 'SELECT'), has_table_privilege('accounts', 'INSERT'), has_table_privilege('bob', 'accounts', 'insert')"]
        )),
        "t|f|t\n"
    );
    assert_eq!(
        ok(psql(
            port,
            "admin",
            "adminpw",
            &["SELECT grantee, privilege_type FROM information_schema.table_privileges WHERE table_name = 'accounts' ORDER BY 1, 2"]
        )),
        "alice|SELECT\nbob|ERASE\nbob|INSERT\n"
    );
    let members = ok(psql(
        port,
        "admin",
        "adminpw",
        &["SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"],
    ));
    assert_eq!(members, "readers|alice\n");
    // The reserved tables are nowhere in the catalog.
    let tables = ok(psql(
        port,
        "admin",
        "adminpw",
        &["SELECT relname FROM pg_class WHERE relname LIKE 'strata%'"],
    ));
    assert_eq!(tables, "");

    // Grants and passwords survive a restart.
    drop(alice);
    drop(f);
    s.terminate(Duration::from_secs(30)).expect("server stops");
    let s = start(tmp.path());
    let port = s.port;
    ok(psql(
        port,
        "alice",
        "alicepw",
        &["SELECT count(*) FROM secrets"],
    ));
    let e = refused(psql(port, "alice", "alicepw", &["DELETE FROM secrets"]));
    assert!(e.contains("DELETE"), "{e}");
    let e = refused(psql(port, "bob", "bobpw", &["SELECT * FROM accounts"]));
    assert!(e.contains("permission denied for table accounts"), "{e}");

    // A role's password can be changed by the role itself; DROP ROLE takes
    // its grants with it.
    ok(psql(
        port,
        "alice",
        "alicepw",
        &["ALTER ROLE alice PASSWORD 'newpw'"],
    ));
    refused(psql(port, "alice", "alicepw", &["SELECT 1"]));
    ok(psql(port, "alice", "newpw", &["SELECT 1"]));
    let e = refused(psql(
        port,
        "alice",
        "newpw",
        &["ALTER ROLE alice SUPERUSER"],
    ));
    assert!(e.contains("permission denied"), "{e}");
    ok(psql(port, "admin", "adminpw", &["DROP ROLE alice"]));
    let e = refused(psql(port, "alice", "newpw", &["SELECT 1"]));
    assert!(e.contains("password authentication failed"), "{e}");
    let left = ok(psql(
        port,
        "admin",
        "adminpw",
        &["SELECT count(*) FROM information_schema.table_privileges WHERE grantee = 'alice'"],
    ));
    assert_eq!(left, "0\n");

    // JDBC's getTablePrivileges reads relacl.
    jdbc_table_privileges(port);
}

fn jdbc_table_privileges(port: u16) {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    assert!(
        jar.exists(),
        "the PostgreSQL JDBC driver is missing: apt-get install libpostgresql-jdbc-java (or run .ci/install.d/20-clients.sh)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/java/StrataGrants.java");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(tmp.path())
        .arg("-cp")
        .arg(jar)
        .arg(&src)
        .output()
        .expect("run javac");
    assert!(
        javac.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{}", tmp.path().display(), jar.display()))
        .arg("StrataGrants")
        .env("STRATA_PORT", port.to_string())
        .output()
        .expect("run java");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "JDBC failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accounts bob INSERT"), "{stdout}");
    assert!(!stdout.contains("accounts alice"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_statements_explain_their_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    let port = s.port;
    ok(psql(
        port,
        "admin",
        "adminpw",
        &["CREATE TABLE t (_id BIGINT)", "CREATE ROLE r"],
    ));
    for (sql, says) in [
        ("CREATE ROLE r", "already exists"),
        ("CREATE ROLE public", "reserved"),
        ("GRANT SELECT ON nope TO r", "does not exist"),
        (
            "GRANT SELECT ON t TO nobody",
            "role \"nobody\" does not exist",
        ),
        (
            "GRANT TRUNCATE ON t TO r",
            "grant SELECT, INSERT, UPDATE, DELETE, ERASE or ALL",
        ),
        ("GRANT r TO r", "circle"),
        ("DROP ROLE nobody", "does not exist"),
        ("DROP ROLE admin", "cannot be dropped"),
        ("CREATE ROLE x WITH FLY", "unknown role option"),
        ("SET ROLE r", "SET ROLE is not supported"),
        (
            "REVOKE USAGE ON SCHEMA public FROM r",
            "every role may use schema public",
        ),
        (
            "GRANT USAGE ON SCHEMA other TO r",
            "schema `other` does not exist",
        ),
    ] {
        let e = refused(psql(port, "admin", "adminpw", &[sql]));
        assert!(e.contains(says), "{sql}: {e}");
    }
    ok(psql(
        port,
        "admin",
        "adminpw",
        &["DROP ROLE IF EXISTS nobody"],
    ));
    // In a transaction block, a grant to a role created in the same block works.
    ok(psql(
        port,
        "admin",
        "adminpw",
        &["BEGIN; CREATE USER carol PASSWORD 'c'; GRANT SELECT ON t TO carol; COMMIT"],
    ));
    ok(psql(port, "carol", "c", &["SELECT * FROM t"]));
}

/// The audit trail (docs/governance.md): logins and failed logins, DDL,
/// role and privilege statements, ERASE and refused statements, with role,
/// client address and time; readable only by roles granted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_lists_what_the_test_did() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    let port = s.port;
    ok(psql(
        port,
        "admin",
        "adminpw",
        &[
            "CREATE TABLE t (_id BIGINT, x TEXT)",
            "INSERT INTO t (_id, x) VALUES (1, 'a'), (2, 'b')",
            "CREATE USER alice PASSWORD 'alicepw'",
            "CREATE USER auditor PASSWORD 'auditorpw'",
            "GRANT SELECT ON t TO alice",
            "GRANT SELECT ON strata_audit TO auditor",
            "ERASE FROM t WHERE _id = 2",
            "REVOKE SELECT ON t FROM alice",
        ],
    ));
    refused(psql(port, "alice", "wrongpw", &["SELECT 1"]));
    refused(psql(port, "alice", "alicepw", &["SELECT * FROM t"]));
    // Not granted: the trail is not readable.
    let e = refused(psql(
        port,
        "alice",
        "alicepw",
        &["SELECT * FROM strata_audit"],
    ));
    assert!(
        e.contains("permission denied for table strata_audit"),
        "{e}"
    );

    // Events are committed in the background: wait for the last one.
    let query = "SELECT event, role, coalesce(statement, '') FROM strata_audit \
                 WHERE client LIKE '127.0.0.1:%' ORDER BY at, event";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let trail = loop {
        let out = ok(psql(port, "auditor", "auditorpw", &[query]));
        if out.contains("denied|alice|SELECT") && out.contains("strata_audit") {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audit trail so far:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in [
        "login|admin|",
        "ddl|admin|CREATE TABLE t",
        "role|admin|CREATE USER alice PASSWORD '***'",
        "grant|admin|GRANT SELECT ON t TO alice",
        "grant|admin|GRANT SELECT ON strata_audit TO auditor",
        "erase|admin|ERASE FROM t WHERE _id = 2",
        "revoke|admin|REVOKE SELECT ON t FROM alice",
        "login_failed|alice|",
        "login|alice|",
        "denied|alice|SELECT * FROM t",
        "denied|alice|SELECT * FROM strata_audit",
    ] {
        assert!(
            trail.contains(want),
            "no `{want}` in the audit trail:\n{trail}"
        );
    }
    assert!(
        !trail.contains("alicepw"),
        "a password in the audit trail:\n{trail}"
    );
    // Order: the grant before the refused read, the failed login before it.
    let at = |w: &str| trail.find(w).unwrap();
    assert!(
        at("revoke|admin") < at("denied|alice|SELECT * FROM t"),
        "{trail}"
    );
    // The trail keeps the refusal's reason.
    let why = ok(psql(
        port,
        "admin",
        "adminpw",
        &["SELECT detail FROM strata_audit WHERE event = 'denied' AND statement = 'SELECT * FROM t'"],
    ));
    assert!(why.contains("has no SELECT privilege"), "{why}");
    // Nobody writes it but the server.
    let e = refused(psql(
        port,
        "admin",
        "adminpw",
        &["DELETE FROM strata_audit"],
    ));
    assert!(
        e.contains("permission denied") || e.contains("not supported"),
        "{e}"
    );
}
