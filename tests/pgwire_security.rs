//! Login security of `strata serve`'s Postgres listener: SCRAM-SHA-256
//! passwords (psql and tokio-postgres), TLS with a certificate made at test
//! time by the openssl CLI, plaintext refused when TLS is required, and
//! certificate checks failing cleanly on the client. After each failure the
//! server keeps serving.

#[path = "clients/certs.rs"]
mod certs;
#[path = "clients/harness.rs"]
mod harness;

use std::process::{Command, Output};

use certs::make_certs;
use harness::Server;
use tokio_postgres::error::SqlState;

/// psql with a full connection string and an optional password.
fn psql(conninfo: &str, password: Option<&str>, sql: &str) -> Output {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-w",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        sql,
    ])
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGPASSWORD")
    .env_remove("PGSSLMODE")
    .env_remove("PGSERVICE")
    .env_remove("PGOPTIONS")
    .env("PGPASSFILE", "/nonexistent");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.output().expect("run psql")
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "psql failed: {}\n{}",
        out,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "psql should have failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn conninfo(port: u16, user: &str, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} dbname=strata {extra}")
}

async fn connect(
    port: u16,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user={user} password={password} dbname=strata connect_timeout=10"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passwords_with_psql_and_tokio_postgres() {
    let dir = data_dir();
    // bob is configured by a stored SCRAM verifier, not his password.
    let verifier =
        strata::auth::ScramVerifier::derive("b0b-pw", b"some salt bytes!", 4096).to_string();
    let bob = format!("bob:{verifier}");
    let s = Server::start_with(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--user",
            "alice:s3cret",
            "--user",
            &bob,
        ],
        &[],
    );
    let port = s.port;

    // Right password: psql via PGPASSWORD.
    let out = ok(&psql(
        &conninfo(port, "alice", ""),
        Some("s3cret"),
        "SELECT 40 + 2",
    ));
    assert_eq!(out.trim(), "42");
    let out = ok(&psql(
        &conninfo(port, "bob", ""),
        Some("b0b-pw"),
        "SELECT current_user",
    ));
    assert_eq!(out.trim(), "bob");

    // Wrong password, unknown user, no password: clean errors.
    let err = fails(&psql(
        &conninfo(port, "alice", ""),
        Some("wrong"),
        "SELECT 1",
    ));
    assert!(
        err.contains("password authentication failed for user \"alice\""),
        "{err}"
    );
    let err = fails(&psql(
        &conninfo(port, "mallory", ""),
        Some("s3cret"),
        "SELECT 1",
    ));
    assert!(
        err.contains("password authentication failed for user \"mallory\""),
        "{err}"
    );
    let err = fails(&psql(
        &conninfo(port, "alice", "connect_timeout=5"),
        None,
        "SELECT 1",
    ));
    assert!(err.contains("password"), "{err}");

    // tokio-postgres: SQLSTATE 28P01.
    for (user, pw) in [("alice", "wrong"), ("bob", "s3cret"), ("nobody", "x")] {
        let Err(e) = connect(port, user, pw).await else {
            panic!("{user}: login must fail")
        };
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{user}: {e}");
    }
    let c = connect(port, "alice", "s3cret")
        .await
        .expect("right password");
    let r = c
        .query_one("SELECT $1::BIGINT * 2", &[&21i64])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 42);
    let c = connect(port, "bob", "b0b-pw").await.expect("verifier user");
    c.simple_query("CREATE TABLE t (_id BIGINT)").await.unwrap();

    // Still serving after all the failures.
    let out = ok(&psql(
        &conninfo(port, "alice", ""),
        Some("s3cret"),
        "SELECT count(*) FROM t",
    ));
    assert_eq!(out.trim(), "0");
}

#[test]
fn tls_works_and_bad_certificates_fail_cleanly() {
    let (_certs, ca, crt, key, other_ca) = make_certs();
    let dir = data_dir();
    let s = Server::start_with(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--user",
            "alice:s3cret",
        ],
        &[],
    );
    let port = s.port;
    let pw = Some("s3cret");
    // sslmode=require: encrypted, password checked inside TLS.
    let out = ok(&psql(
        &conninfo(port, "alice", "sslmode=require"),
        pw,
        "\\conninfo",
    ));
    assert!(out.contains("SSL connection"), "{out}");
    let out = ok(&psql(
        &conninfo(port, "alice", "sslmode=require"),
        pw,
        "SELECT 1",
    ));
    assert_eq!(out.trim(), "1");
    // SCRAM with channel binding to the TLS certificate (SCRAM-SHA-256-PLUS).
    let out = ok(&psql(
        &conninfo(port, "alice", "sslmode=require channel_binding=require"),
        pw,
        "SELECT 6",
    ));
    assert_eq!(out.trim(), "6");
    let err = fails(&psql(
        &conninfo(port, "alice", "sslmode=require channel_binding=require"),
        Some("wrong"),
        "SELECT 1",
    ));
    assert!(err.contains("password authentication failed"), "{err}");
    // Without channel binding, still SCRAM.
    let out = ok(&psql(
        &conninfo(port, "alice", "sslmode=require channel_binding=disable"),
        pw,
        "SELECT 7",
    ));
    assert_eq!(out.trim(), "7");
    // verify-full with the right CA and host name.
    let good = format!(
        "host=localhost hostaddr=127.0.0.1 port={port} user=alice dbname=strata sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let out = ok(&psql(&good, pw, "SELECT 2"));
    assert_eq!(out.trim(), "2");
    // The certificate is for "localhost", not "127.0.0.1".
    let err = fails(&psql(
        &conninfo(
            port,
            "alice",
            &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        ),
        pw,
        "SELECT 1",
    ));
    assert!(err.contains("does not match host name"), "{err}");
    // Signed by a CA the client does not trust.
    let err = fails(&psql(
        &format!(
            "host=localhost hostaddr=127.0.0.1 port={port} user=alice dbname=strata sslmode=verify-ca sslrootcert={}",
            other_ca.display()
        ),
        pw,
        "SELECT 1",
    ));
    assert!(err.contains("certificate verify failed"), "{err}");
    // Plaintext is still allowed (TLS not required), with the password.
    let out = ok(&psql(
        &conninfo(port, "alice", "sslmode=disable"),
        pw,
        "SELECT 3",
    ));
    assert_eq!(out.trim(), "3");
    // Still serving.
    let out = ok(&psql(&good, pw, "SELECT 4"));
    assert_eq!(out.trim(), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_when_tls_is_required() {
    let (_certs, _ca, crt, key, _) = make_certs();
    let dir = data_dir();
    let s = Server::start_with(
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-required",
            "--auth",
            "trust",
        ],
        &[],
    );
    let port = s.port;
    let err = fails(&psql(
        &conninfo(port, "strata", "sslmode=disable"),
        None,
        "SELECT 1",
    ));
    assert!(err.contains("requires TLS"), "{err}");
    let Err(e) = connect(port, "strata", "x").await else {
        panic!("plaintext must be refused")
    };
    assert_eq!(
        e.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{e}"
    );
    // sslmode=prefer (psql's default) upgrades to TLS and works.
    let out = ok(&psql(&conninfo(port, "strata", ""), None, "\\conninfo"));
    assert!(out.contains("SSL connection"), "{out}");
    let out = ok(&psql(
        &conninfo(port, "strata", "sslmode=require"),
        None,
        "SELECT 5",
    ));
    assert_eq!(out.trim(), "5");
}

#[test]
fn a_bad_certificate_file_stops_the_server_with_a_clear_message() {
    let dir = data_dir();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--pg-port",
            "0",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--tls-cert",
            bogus.to_str().unwrap(),
            "--tls-key",
            bogus.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("TLS certificate") && err.contains("bogus.pem"),
        "{err}"
    );
}
