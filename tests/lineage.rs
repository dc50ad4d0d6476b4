//! OpenLineage run events (`serve --openlineage-url`): a load (COPY FROM
//! STDIN) and a server-side export (COPY TO 'file') each send a START and a
//! COMPLETE event naming their datasets, and a failed export a FAIL event,
//! POSTed to an HTTP collector the test runs.

#[path = "clients/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::Server;
use serde_json::Value;

/// An HTTP server that keeps every POSTed JSON body.
fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/lineage", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    keep.lock().unwrap().push(v);
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, got)
}

fn psql(port: u16, sql: &str, stdin: Option<&str>) -> std::process::Output {
    let mut c = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-U", "admin", "-d", "strata", "-c", sql])
        .env("PGPASSWORD", "adminpw")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    c.wait_with_output().unwrap()
}

#[test]
fn loads_and_exports_send_openlineage_run_events() {
    let (url, got) = collector();
    let data = tempfile::tempdir().unwrap();
    let exports = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--user",
            "admin:adminpw",
            "--export-root",
            exports.path().to_str().unwrap(),
            "--openlineage-url",
            &url,
        ],
        &[],
    );
    let port = s.port;
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok(psql(
        port,
        "CREATE TABLE orders (_id BIGINT, amount BIGINT)",
        None,
    ));
    ok(psql(
        port,
        "COPY orders FROM STDIN",
        Some("1\t10\n2\t20\n3\t30\n\\.\n"),
    ));
    ok(psql(
        port,
        "COPY (SELECT * FROM orders WHERE amount > 10) TO 'big.parquet' (FORMAT parquet)",
        None,
    ));
    let failed = psql(
        port,
        "COPY (SELECT * FROM orders WHERE nope > 1) TO 'bad.parquet' (FORMAT parquet)",
        None,
    );
    assert!(!failed.status.success());

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let v = got.lock().unwrap().clone();
        if v.len() >= 6 {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events so far: {v:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let of =
        |job: &str| -> Vec<&Value> { events.iter().filter(|e| e["job"]["name"] == job).collect() };
    let pg = format!("postgres://127.0.0.1:{port}");

    // The load: START then COMPLETE, one run, writing strata.public.orders.
    let load = of("load.orders");
    assert_eq!(load.len(), 2, "{events:#?}");
    assert_eq!(load[0]["eventType"], "START");
    assert_eq!(load[1]["eventType"], "COMPLETE");
    assert_eq!(load[0]["run"]["runId"], load[1]["run"]["runId"]);
    let out = &load[1]["outputs"][0];
    assert_eq!(out["namespace"], pg.as_str());
    assert_eq!(out["name"], "strata.public.orders");
    assert_eq!(out["facets"]["schema"]["fields"][1]["name"], "amount");
    assert_eq!(load[1]["run"]["facets"]["strata_rows"]["rows"], 3);
    assert_eq!(load[1]["run"]["facets"]["strata_role"]["role"], "admin");
    for e in &events {
        assert_eq!(
            e["schemaURL"],
            "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
        );
        assert!(e["eventTime"].as_str().unwrap().ends_with('Z'), "{e}");
        assert_eq!(e["job"]["namespace"], "strata");
    }

    // The export: reads orders, writes the file; 2 rows.
    let export = of("export.big.parquet");
    assert_eq!(export.len(), 2, "{events:#?}");
    let complete = export
        .iter()
        .find(|e| e["eventType"] == "COMPLETE")
        .expect("COMPLETE");
    assert_eq!(complete["inputs"][0]["name"], "strata.public.orders");
    assert_eq!(complete["outputs"][0]["namespace"], "file");
    assert!(
        complete["outputs"][0]["name"]
            .as_str()
            .unwrap()
            .ends_with("big.parquet"),
        "{complete}"
    );
    assert_eq!(complete["run"]["facets"]["strata_rows"]["rows"], 2);
    // The failed export: FAIL with the error.
    let failed = of("export.bad.parquet");
    let fail = failed
        .iter()
        .find(|e| e["eventType"] == "FAIL")
        .expect("FAIL");
    assert!(
        fail["run"]["facets"]["errorMessage"]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{fail}"
    );
}
