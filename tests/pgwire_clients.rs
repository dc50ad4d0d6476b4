//! Real Postgres clients and tools against `strata serve`: psql's catalog
//! commands, psycopg 3, asyncpg, SQLAlchemy 2 + pandas, the PostgreSQL JDBC
//! driver, node-postgres, and the catalog queries DBeaver, Metabase and
//! Grafana send when they connect. Each client runs a script under
//! tests/clients/ that exits non-zero on its first failed check.
//! The clients are installed by .ci/install.d/20-clients.sh.

#[path = "clients/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::Server;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Run a client program against `s`; panic with its output if it fails.
fn run_client(s: &Server, mut cmd: Command, what: &str) -> String {
    cmd.env("STRATA_PORT", s.port.to_string())
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run the {what} client ({e}); install the clients with `bash -c '. .ci/install.d/20-clients.sh'` (see docs/clients.md)"
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{what} client failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{stdout}");
    stdout
}

fn python(s: &Server, script: &str) -> String {
    let dir = clients_dir().join("python");
    let mut cmd = Command::new("python3");
    cmd.arg(dir.join(script)).env("PYTHONPATH", &dir);
    run_client(s, cmd, script)
}

#[test]
fn psql_catalog_commands() {
    let s = Server::start();
    s.psql_ok(&[
        "CREATE TABLE people (_id BIGINT, name TEXT, age BIGINT, score DOUBLE PRECISION, born DATE, tags TEXT[], price NUMERIC(10,2))",
        "INSERT INTO people (_id, name, age) VALUES (1, 'ada', 36)",
        "INSERT INTO pets (_id, kind) VALUES (1, 'cat')",
    ]);
    let list = s.psql_ok(&["\\dt"]);
    assert_eq!(
        list.trim(),
        "public|people|table|strata\npublic|pets|table|strata",
        "\\dt"
    );
    let dbs = s.psql_ok(&["\\l"]);
    assert!(dbs.starts_with("strata|strata|UTF8|"), "\\l: {dbs}");
    let schemas = s.psql_ok(&["\\dn"]);
    assert_eq!(schemas.trim(), "public|strata", "\\dn");
    let d = s.psql_ok(&["\\d people"]);
    assert_eq!(
        d.trim(),
        "_id|bigint||not null|\nname|text|||\nage|bigint|||\nscore|double precision|||\nborn|date|||\ntags|text[]|||\nprice|numeric(10,2)|||",
        "\\d people"
    );
    // A column added by a later write shows up at once.
    s.psql_ok(&["INSERT INTO pets (_id, kind, legs) VALUES (2, 'dog', 4)"]);
    let d = s.psql_ok(&["\\d pets"]);
    assert_eq!(
        d.trim(),
        "_id|bigint||not null|\nkind|text|||\nlegs|bigint|||",
        "\\d pets"
    );
    let d = s.psql_ok(&["\\d pg_catalog.pg_namespace"]);
    assert!(
        d.starts_with("oid|oid|||\nnspname|name|||"),
        "\\d pg_namespace: {d}"
    );
    // Unknown relation: psql finds nothing to describe.
    let o = s.psql(&["\\d nosuch"]);
    assert!(String::from_utf8_lossy(&o.stdout).trim().is_empty());

    // Keys and indexes: every table's primary key is `_id`, index `<table>_pkey`.
    let d = psql_aligned(&s, "\\d people");
    assert!(
        d.contains("Indexes:\n    \"people_pkey\" PRIMARY KEY, btree (_id)\n"),
        "\\d people: {d}"
    );
    let d = psql_aligned(&s, "\\d+ people");
    for want in [
        "Table \"public.people\"",
        "Storage",
        " _id    | bigint           |           | not null |         | plain    |",
        " tags   | text[]           |           |          |         | extended |",
        "Indexes:\n    \"people_pkey\" PRIMARY KEY, btree (_id)\n",
        "Access method: heap",
    ] {
        assert!(d.contains(want), "\\d+ people lacks {want:?}:\n{d}");
    }
    let di = s.psql_ok(&["\\di"]);
    assert_eq!(
        di.trim(),
        "public|people_pkey|index|strata|people\npublic|pets_pkey|index|strata|pets",
        "\\di"
    );
    let d = psql_aligned(&s, "\\d pets_pkey");
    for want in [
        "Index \"public.pets_pkey\"",
        " _id    | bigint | yes  | _id",
        "primary key, btree, for table \"public.pets\"",
    ] {
        assert!(d.contains(want), "\\d pets_pkey lacks {want:?}:\n{d}");
    }
    // A table created later has its index at once.
    s.psql_ok(&["CREATE TABLE later (_id TEXT, v BIGINT)"]);
    let di = s.psql_ok(&["\\di later*"]);
    assert_eq!(
        di.trim(),
        "public|later_pkey|index|strata|later",
        "\\di later*"
    );
}

/// psql's default (aligned, with headers and footers) output of one command.
fn psql_aligned(s: &Server, command: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(s.port.to_string())
        .args(["-U", "strata", "-d", "strata", "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "psql -c {command:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn psycopg3_client() {
    let s = Server::start();
    let out = python(&s, "psycopg_client.py");
    assert!(out.contains("psycopg: all checks passed"));
}

#[test]
fn asyncpg_client() {
    let s = Server::start();
    let out = python(&s, "asyncpg_client.py");
    assert!(out.contains("asyncpg: all checks passed"));
}

#[test]
fn sqlalchemy_and_pandas_client() {
    let s = Server::start();
    let out = python(&s, "sqlalchemy_client.py");
    assert!(out.contains("sqlalchemy + pandas: all checks passed"));
}

#[test]
fn node_postgres_client() {
    let dir = clients_dir().join("node");
    assert!(
        dir.join("node_modules/pg/package.json").exists(),
        "node-postgres is not installed in {}: run `npm ci` there (or .ci/install.d/20-clients.sh)",
        dir.display()
    );
    let s = Server::start();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("client.js")).current_dir(&dir);
    let out = run_client(&s, cmd, "node-postgres");
    assert!(out.contains("node-postgres: all checks passed"));
}

#[test]
fn jdbc_client() {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    assert!(
        jar.exists(),
        "the PostgreSQL JDBC driver is missing: apt-get install libpostgresql-jdbc-java (or run .ci/install.d/20-clients.sh)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = clients_dir().join("java/StrataJdbc.java");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(tmp.path())
        .arg("-cp")
        .arg(jar)
        .arg(&src)
        .output()
        .expect("run javac (apt-get install default-jdk-headless)");
    assert!(
        javac.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let s = Server::start();
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}:{}", tmp.path().display(), jar.display()))
        .arg("StrataJdbc");
    let out = run_client(&s, cmd, "JDBC");
    assert!(out.contains("jdbc: all checks passed"));
}

/// The statements of a fixture: separated by lines holding only `;`-ended
/// statements; `-- expect: N+` after a statement asks for at least N rows.
fn fixture(name: &str) -> Vec<(String, String, usize)> {
    let text = std::fs::read_to_string(clients_dir().join("sql").join(name)).unwrap();
    let mut out = Vec::new();
    let mut label = String::new();
    let mut cur = String::new();
    let mut min_rows = 0;
    for line in text.lines() {
        let t = line.trim();
        if let Some(l) = t.strip_prefix("-- tool:") {
            label = l.trim().to_string();
            continue;
        }
        if let Some(n) = t.strip_prefix("-- expect:") {
            min_rows = n.trim().trim_end_matches('+').parse().unwrap();
            continue;
        }
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            out.push((label.clone(), std::mem::take(&mut cur), min_rows));
            min_rows = 0;
        }
    }
    assert!(
        cur.trim().is_empty(),
        "unterminated statement in {name}: {cur}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbeaver_metabase_grafana_catalog_queries() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE orders (_id BIGINT, customer TEXT, total NUMERIC(10,2), placed TIMESTAMPTZ, paid BOOLEAN);
         INSERT INTO orders (_id, customer, total, placed, paid) VALUES (1, 'ada', 12.50, CAST('2024-01-01T00:00:00Z' AS TIMESTAMPTZ), true)",
    )
    .await
    .unwrap();
    let stmts = fixture("tool_catalog_queries.sql");
    assert!(stmts.len() >= 25, "fixture has {} statements", stmts.len());
    for (tool, sql, min_rows) in stmts {
        // Tools send these through the extended protocol (JDBC, pgx) or as
        // simple queries; run each both ways.
        let rows = match c.query(sql.as_str(), &[]).await {
            Ok(r) => r.len(),
            Err(e) => panic!("{tool}: extended protocol failed: {e:?}\n{sql}"),
        };
        assert!(
            rows >= min_rows,
            "{tool}: {rows} rows, wanted at least {min_rows}\n{sql}"
        );
        let simple = c.simple_query(sql.as_str()).await;
        assert!(
            simple.is_ok(),
            "{tool}: simple protocol failed: {simple:?}\n{sql}"
        );
    }
}
