//! docs/notebooks/flight_sql.ipynb runs headless (nbclient, python3
//! kernel) against a fresh `strata serve --test-clock …` and every cell
//! succeeds; its plot is written. Install the Python packages with
//! .ci/install.d/40-flight.sh.

#[path = "clients/harness.rs"]
mod harness;
#[path = "support/notebook.rs"]
mod notebook;

use std::process::Command;

use harness::Server;

#[test]
fn time_travel_notebook_runs_headless() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--test-clock",
            "2024-01-01T00:00:00Z,1d",
        ],
        &[],
    );
    let port = s.flight_port();
    let nb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/notebooks/flight_sql.ipynb"
    );
    let o = Command::new("python3")
        .args(["-c", notebook::RUNNER, nb, out.path().to_str().unwrap()])
        .env("STRATA_FLIGHT_URI", format!("grpc://127.0.0.1:{port}"))
        .env("STRATA_NOTEBOOK_OUT", out.path())
        .env("MPLBACKEND", "Agg")
        .env_remove("STRATA_FLIGHT_USER")
        .output()
        .expect("run python3 (install the client with .ci/install.d/40-flight.sh)");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "the notebook failed ({}); if a module is missing, run .ci/install.d/40-flight.sh\n\
         stdout:\n{stdout}\nstderr:\n{stderr}",
        o.status
    );
    assert!(stdout.contains("executed"), "{stdout}");
    let png = out.path().join("acme_over_system_time.png");
    let bytes = std::fs::read(&png).expect("the notebook saved its plot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
        "a real PNG"
    );
    // The executed notebook shows the deterministic answers.
    let executed = std::fs::read_to_string(out.path().join("executed.ipynb")).unwrap();
    assert!(
        executed.contains("as of 2024-01-03"),
        "third commit at day 3"
    );
}
