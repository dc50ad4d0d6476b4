//! The HTTP port (`strata serve --http-port`): `/health` answers JSON, and
//! `/metrics` is scraped and parsed by the Prometheus Python client's own
//! parser (`prometheus_client.parser`), whose counters follow what the test
//! did over the Postgres wire.

#[path = "clients/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use harness::Server;

/// The HTTP port from the startup banner.
fn http_port(s: &Server) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = s.stdout.lock().unwrap().clone();
        for l in &lines {
            if let Some(rest) = l.split("http listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                assert!(addr.starts_with("127.0.0.1:"), "{addr}");
                return addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `http listening on` line in the banner: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET `path` with Python's urllib (a client of its own); (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let script = format!(
        r#"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:{port}{path}", timeout=10)
    print(r.status); print(r.headers.get("Content-Type")); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.headers.get("Content-Type")); sys.stdout.write(e.read().decode())
"#
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let mut lines = out.splitn(3, '\n');
    let status = lines.next().unwrap().trim().parse().unwrap();
    let _content_type = lines.next().unwrap();
    (status, lines.next().unwrap_or("").to_string())
}

/// Scrape `/metrics` and parse it with prometheus_client's parser: each
/// sample as `name{labels}` → value.
fn scrape(port: u16) -> HashMap<String, f64> {
    let script = format!(
        r#"
import urllib.request
from prometheus_client.parser import text_string_to_metric_families
r = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=10)
assert r.headers.get("Content-Type").startswith("text/plain; version=0.0.4"), r.headers.get("Content-Type")
for fam in text_string_to_metric_families(r.read().decode()):
    for s in fam.samples:
        labels = ",".join(f"{{k}}={{v}}" for k, v in sorted(s.labels.items()))
        print(f"{{s.name}}{{{{{{labels}}}}}} {{s.value!r}}")
"#
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the Prometheus parser refused /metrics: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn health_and_metrics_follow_what_clients_do() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--http-port",
            "0",
        ],
        &[],
    );
    let port = http_port(&s);

    let (status, body) = get(port, "/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["role"], "writer", "{body}");
    let (status, body) = get(port, "/nope");
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");

    let before = scrape(port);
    assert_eq!(before["strata_up{}"], 1.0);
    s.psql_ok(&[
        "CREATE TABLE acct (_id BIGINT, owner TEXT)",
        "INSERT INTO acct (_id, owner) VALUES (1, 'ann')",
        "INSERT INTO acct (_id, owner) VALUES (2, 'bob')",
        "INSERT INTO acct (_id, owner) VALUES (3, 'cy')",
        "SELECT count(*) FROM acct",
        "CHECKPOINT",
    ]);
    assert!(!s.psql(&["SELECT * FROM no_such_table"]).status.success());
    let after = scrape(port);
    let delta = |k: &str| after[k] - before.get(k).copied().unwrap_or(0.0);
    assert!(delta("strata_commits_total{}") >= 3.0, "{after:?}");
    assert_eq!(
        after["strata_commit_duration_seconds_count{}"],
        after["strata_commits_total{}"]
    );
    assert_eq!(
        after["strata_commit_duration_seconds_bucket{le=+Inf}"],
        after["strata_commits_total{}"]
    );
    assert!(after["strata_commit_duration_seconds_sum{}"] > 0.0);
    assert!(delta("strata_statements_total{}") >= 6.0, "{after:?}");
    assert!(delta("strata_statement_errors_total{}") >= 1.0, "{after:?}");
    assert!(
        delta("strata_postgres_connections_total{}") >= 2.0,
        "{after:?}"
    );
    // The checkpoint flushed the table into a segment.
    assert!(
        after
            .iter()
            .any(|(k, v)| k.starts_with("strata_segments{table=acct,") && *v >= 1.0),
        "{after:?}"
    );
    assert!(after["strata_latest_system_time_seconds{}"] > 1.0e9);
    let (_, body) = get(port, "/health");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        health["seconds_since_latest_commit"].as_f64().unwrap() >= 0.0,
        "{body}"
    );
}
