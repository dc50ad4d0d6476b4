//! Data contracts generated from the live catalog (docs/governance.md):
//! `SELECT strata_contract('t')` and `GET /contracts/<table>` give an Open
//! Data Contract Standard v3.1.0 document that the real datacontract-cli
//! (PyPI, installed by .ci/install.d/90-datacontract.sh) lints, and whose
//! `datacontract test` against the running server over the Postgres wire
//! passes for the table it describes and fails for a table that breaks it.

#[path = "clients/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::Server;

fn datacontract() -> PathBuf {
    let p = std::env::var_os("STRATA_DATACONTRACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var("HOME").unwrap())
                .join(".cache/strata-tools/datacontract-1.2.8/bin/datacontract")
        });
    assert!(
        p.exists(),
        "datacontract-cli is missing at {}: run .ci/install.d/90-datacontract.sh (or set STRATA_DATACONTRACT)",
        p.display()
    );
    p
}

fn psql(port: u16, commands: &[&str]) -> String {
    harness::psql_ok_output(harness::psql_as(port, "admin", "adminpw", commands))
}

/// `datacontract ARGS` with the server's credentials.
fn dc(dir: &Path, args: &[&str]) -> Output {
    Command::new(datacontract())
        .args(args)
        .current_dir(dir)
        .env("DATACONTRACT_POSTGRES_USERNAME", "admin")
        .env("DATACONTRACT_POSTGRES_PASSWORD", "adminpw")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .output()
        .expect("run datacontract")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// GET `path` on the HTTP port: status and body.
fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // (axum answers with a content length; no chunked bodies here.)
    (status, body.to_string())
}

fn http_port(s: &Server) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        for l in s.stdout.lock().unwrap().iter() {
            if let Some(rest) = l.split("http listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                return addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no http port in the banner"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn generated_contracts_pass_datacontract_lint_and_test() {
    let dc_dir = tempfile::tempdir().unwrap();
    let dir = dc_dir.path();
    let data = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--user",
            "admin:adminpw",
            "--http-port",
            "0",
        ],
        &[],
    );
    let port = s.port;
    psql(
        port,
        &[
            "CREATE TABLE orders (_id BIGINT, customer TEXT, amount NUMERIC(10,2), placed TIMESTAMPTZ, paid BOOLEAN)",
            "INSERT INTO orders (_id, customer, amount, placed, paid) VALUES \
             (1, 'ada', 12.50, '2026-01-02T03:04:05Z', true), (2, 'bob', 3.00, '2026-01-03T00:00:00Z', false)",
            "COMMENT ON TABLE orders IS 'Orders placed in the shop'",
            "COMMENT ON COLUMN orders.amount IS 'What the customer pays, in euros'",
            "SECURITY LABEL FOR strata ON COLUMN orders.customer IS 'pii'",
            // The same columns, but `amount` became text and `placed` is gone.
            "CREATE TABLE orders_v2 (_id BIGINT, customer TEXT, amount TEXT, paid BOOLEAN)",
            "INSERT INTO orders_v2 (_id, customer, amount, paid) VALUES (1, 'ada', '12.50', true)",
        ],
    );

    // From SQL: the contract of one table.
    let yaml = psql(port, &["SELECT strata_contract('orders')"]);
    for want in [
        "apiVersion: \"v3.1.0\"",
        "kind: \"DataContract\"",
        "purpose: \"Orders placed in the shop\"",
        "primaryKey: true",
        "physicalType: \"numeric(10,2)\"",
        "classification: \"pii\"",
        "description: \"What the customer pays, in euros\"",
        &format!("port: {port}"),
        "property: \"latency\"",
    ] {
        assert!(yaml.contains(want), "no `{want}` in the contract:\n{yaml}");
    }
    std::fs::write(dir.join("orders.yaml"), &yaml).unwrap();
    let lint = dc(dir, &["lint", "orders.yaml"]);
    assert!(
        lint.status.success(),
        "datacontract lint failed:\n{}",
        text(&lint)
    );

    // `datacontract test` over the Postgres wire: the table meets it.
    let test = dc(dir, &["test", "orders.yaml"]);
    assert!(
        test.status.success(),
        "datacontract test failed:\n{}",
        text(&test)
    );
    assert!(
        text(&test).contains("Data contract is valid"),
        "{}",
        text(&test)
    );

    // A table that breaks it: the same contract, pointed at orders_v2.
    let broken = yaml
        .replace("name: \"orders\"", "name: \"orders_v2\"")
        .replace("physicalName: \"orders\"", "physicalName: \"orders_v2\"");
    std::fs::write(dir.join("broken.yaml"), &broken).unwrap();
    let test = dc(dir, &["test", "broken.yaml"]);
    let out = text(&test);
    assert!(
        !test.status.success(),
        "datacontract test should fail:\n{out}"
    );
    assert!(out.contains("placed") && out.contains("amount"), "{out}");

    // From the HTTP port: YAML by default, JSON on request, 404 for no table.
    let http = http_port(&s);
    let (status, body) = get(http, "/contracts/orders", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("apiVersion: \"v3.1.0\""), "{body}");
    std::fs::write(dir.join("http.yaml"), &body).unwrap();
    let lint = dc(dir, &["lint", "http.yaml"]);
    assert!(
        lint.status.success(),
        "lint of /contracts/orders:\n{}",
        text(&lint)
    );
    for (path, accept) in [
        ("/contracts/orders?format=json", None),
        ("/contracts/orders", Some("application/json")),
        ("/contracts/orders.json", None),
    ] {
        let (status, body) = get(http, path, accept);
        assert_eq!(status, 200, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["apiVersion"], "v3.1.0");
        assert_eq!(v["schema"][0]["properties"][0]["name"], "_id");
    }
    // The whole schema as one data product.
    let (status, body) = get(http, "/contracts", None);
    assert_eq!(status, 200);
    assert!(
        body.contains("name: \"orders_v2\"") && body.contains("name: \"orders\""),
        "{body}"
    );
    std::fs::write(dir.join("all.yaml"), &body).unwrap();
    let lint = dc(dir, &["lint", "all.yaml"]);
    assert!(
        lint.status.success(),
        "lint of /contracts:\n{}",
        text(&lint)
    );
    let (status, body) = get(http, "/contracts/nope", None);
    assert_eq!(status, 404);
    assert!(body.contains("table `nope` does not exist"), "{body}");
    let (status, body) = get(http, "/contracts/orders?format=xml", None);
    assert_eq!(status, 400, "{body}");

    // The contract follows the catalog: a new table shows at once.
    psql(port, &["CREATE TABLE later (_id TEXT, v DOUBLE PRECISION)"]);
    let yaml = psql(port, &["SELECT strata_contract()"]);
    assert!(
        yaml.contains("name: \"later\"") && yaml.contains("physicalType: \"double precision\""),
        "{yaml}"
    );
}
