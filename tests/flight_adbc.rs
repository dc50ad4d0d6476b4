//! The ADBC Flight SQL driver (Python: adbc-driver-flightsql with pyarrow,
//! pandas and polars) against a real `strata serve`: runs
//! tests/clients/python/flight_adbc_test.py and fails on its failure.
//! Install the Python packages with .ci/install.d/40-flight.sh.

#[path = "clients/harness.rs"]
mod harness;

use std::process::Command;

use harness::Server;

#[test]
fn adbc_flight_sql_driver_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--test-clock",
            "2020-01-01T00:00:00Z,1d",
            "--user",
            "alice:s3cret",
        ],
        &[],
    );
    let port = s.flight_port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python/flight_adbc_test.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .env("STRATA_FLIGHT_URI", format!("grpc://127.0.0.1:{port}"))
        .env("STRATA_FLIGHT_USER", "alice")
        .env("STRATA_FLIGHT_PASSWORD", "s3cret")
        .output()
        .expect("run python3 (install the client with .ci/install.d/40-flight.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the ADBC client failed ({}); if a module is missing, run .ci/install.d/40-flight.sh\n\
         stdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");
}
