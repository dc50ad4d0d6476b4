//! The Kafka sink against a real Kafka-protocol broker started here: 10,000
//! transactions from 4 writers, the Strata server killed with SIGKILL in the
//! middle and restarted, and a real Kafka client (kafka-python) that must
//! see every acknowledged transaction, in order per key, with duplicates only
//! where the envelope's position says so (tests/clients/python/kafka_sink.py).
//!
//! The broker is Tansu (crates.io `tansu`, an Apache-Kafka-protocol broker in
//! Rust), installed by `.ci/install.d/80-kafka.sh` into
//! `$HOME/.cache/strata-tools/bin`: Apache Kafka's own broker comes from the
//! Maven registry, which this machine cannot reach. `KAFKA_BROKER_BIN` names
//! another Tansu binary.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn broker_bin() -> PathBuf {
    if let Ok(b) = std::env::var("KAFKA_BROKER_BIN") {
        return PathBuf::from(b);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = Path::new(&home).join(".cache/strata-tools/bin/tansu");
    assert!(
        cached.exists(),
        "the Kafka test broker is missing: run .ci/install.d/80-kafka.sh (cargo install tansu \
         --features dynostore --root $HOME/.cache/strata-tools), or set KAFKA_BROKER_BIN"
    );
    cached
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn kafka_sink_publishes_every_transaction_across_a_kill_9() {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let _broker = Broker(
        Command::new(broker_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Kafka test broker"),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the broker did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python");
    let out = Command::new("python3")
        .arg(dir.join("kafka_sink.py"))
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_DATA", tmp.path().join("data"))
        .env("KAFKA_BROKER", format!("127.0.0.1:{port}"))
        .env_remove("PGPASSWORD")
        .output()
        .expect("run python3 (kafka-python, psycopg: .ci/install.d/80-kafka.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let mut logs = String::new();
    for e in std::fs::read_dir(tmp.path()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            logs += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    assert!(
        out.status.success() && stdout.contains("kafka sink: all checks passed"),
        "kafka_sink.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server logs\n{logs}",
        out.status
    );
}
