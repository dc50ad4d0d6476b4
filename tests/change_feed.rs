//! The change feed (`SUBSCRIBE`, docs/sql.md) as its users read it: psycopg
//! over COPY and cursors with 4 writers and a consumer killed mid-stream
//! (tests/clients/python/change_feed.py), psql's `\copy` ended with Ctrl-C,
//! and the embedded Rust stream.

#[path = "clients/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use futures::StreamExt;
use harness::Server;

#[test]
fn psycopg_copy_and_cursor_subscribers_with_four_writers_a_kill_and_an_erase() {
    let s = Server::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python");
    let out = Command::new("python3")
        .arg(dir.join("change_feed.py"))
        .env("PYTHONPATH", &dir)
        .env("STRATA_PORT", s.port.to_string())
        .env_remove("PGPASSWORD")
        .output()
        .expect("run python3 (install psycopg: .ci/install.d/20-clients.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("change feed: all checks passed"),
        "change_feed.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

#[test]
fn psql_copy_of_a_subscription_runs_until_ctrl_c_and_keeps_what_arrived() {
    let s = Server::start();
    s.psql_ok(&[
        "CREATE TABLE events (_id BIGINT, what TEXT)",
        "INSERT INTO events (_id, what) VALUES (1, 'before')",
    ]);
    let file = s.dir.join("feed.txt");
    let mut psql = Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-p", &s.port.to_string()])
        .args(["-U", "strata", "-d", "strata", "-c"])
        .arg(format!(
            "\\copy (SUBSCRIBE TO events) TO '{}' WITH (FORMAT csv)",
            file.display()
        ))
        .env_remove("PGPASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    std::thread::sleep(Duration::from_millis(500));
    s.psql_ok(&[
        "INSERT INTO events (_id, what) VALUES (2, 'while subscribed')",
        "DELETE FROM events WHERE _id = 1",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        psql.try_wait().unwrap().is_none(),
        "the subscription ended by itself"
    );
    // Ctrl-C: psql sends a cancel request; the server ends the COPY.
    sigint(psql.id());
    let out = psql.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("canceling statement"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let ops: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].to_string(), f[3].to_string())
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("put".into(), "1".into()),
            ("put".into(), "2".into()),
            ("delete".into(), "1".into())
        ],
        "{text}"
    );
}

fn sigint(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_subscription_is_a_stream_that_waits_for_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let db = strata::Db::open(strata::Config::dir(tmp.path()))
        .await
        .unwrap();
    db.sql("INSERT INTO t (_id, v) VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let mut feed = db
        .sql_stream("SUBSCRIBE TO t WITH SNAPSHOT", &[])
        .await
        .unwrap();
    let first = feed.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 2);
    assert_eq!(
        first
            .column_by_name("_op")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "snapshot"
    );
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            db.sql("UPDATE t SET v = 'c' WHERE _id = 2").await.unwrap();
        })
    };
    let next = tokio::time::timeout(Duration::from_secs(10), feed.next())
        .await
        .expect("the commit reached the stream")
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    let id = next
        .column_by_name("_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!((next.num_rows(), id.value(0)), (1, 2));
    let v = next.column_by_name("v").unwrap().as_string::<i32>();
    assert_eq!(v.value(0), "c");
    assert!(next.column_by_name("_valid_to").unwrap().is_null(0));
    // A saved position resumes after it.
    let pos = next
        .column_by_name("_position")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    db.sql("INSERT INTO t (_id, v) VALUES (3, 'd')")
        .await
        .unwrap();
    let mut resumed = db
        .sql_stream(&format!("SUBSCRIBE TO t AFTER {pos}"), &[])
        .await
        .unwrap();
    let b = resumed.next().await.unwrap().unwrap();
    let id = b.column_by_name("_id").unwrap().as_primitive::<Int64Type>();
    assert_eq!((b.num_rows(), id.value(0)), (1, 3));
}
