//! Snapshots to files: `COPY (query) TO STDOUT (FORMAT parquet)` read back
//! by pyarrow, polars and DuckDB, written to a client file by psql's
//! `\copy` (tests/clients/python/parquet_export.py); server-side `COPY …
//! TO 'file' (FORMAT parquet)` and Delta Lake exports under
//! `--export-root`, read by pyarrow, polars and the `deltalake` package
//! (tests/clients/python/delta_export.py).

#[path = "clients/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;

use harness::Server;

#[test]
fn parquet_exports_read_back_by_pyarrow_polars_and_duckdb() {
    let s = Server::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python");
    let out = Command::new("python3")
        .arg(dir.join("parquet_export.py"))
        .env("PYTHONPATH", &dir)
        .env("STRATA_PORT", s.port.to_string())
        .env_remove("PGPASSWORD")
        .output()
        .expect("run python3 (pyarrow, polars, duckdb: .ci/install.d/40-flight.sh, 50-bench.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("parquet export: all checks passed"),
        "parquet_export.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

#[test]
fn server_side_parquet_and_delta_exports_read_by_deltalake() {
    let root = tempfile::tempdir().unwrap();
    let root_dir = root.path().to_str().unwrap();
    let data = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--export-root",
            root_dir,
        ],
        &[],
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python");
    let out = Command::new("python3")
        .arg(dir.join("delta_export.py"))
        .env("PYTHONPATH", &dir)
        .env("STRATA_PORT", s.port.to_string())
        .env("STRATA_EXPORT_DIR", root_dir)
        .env_remove("PGPASSWORD")
        .output()
        .expect("run python3 (deltalake, polars, pyarrow: .ci/install.d/40-flight.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("delta export: all checks passed"),
        "delta_export.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// Without `--export-root` the server writes no file, and says how to.
#[test]
fn server_side_copy_is_off_without_an_export_root() {
    let s = Server::start();
    let out = s.psql(&[
        "INSERT INTO t (_id, v) VALUES (1, 'one')",
        "COPY t TO 't.parquet' (FORMAT parquet)",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--export-root") && stderr.contains("\\copy"),
        "{stderr}"
    );
    // An export root that cannot be a directory stops the server with a clear error.
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--pg-port",
            "0",
            "--flight-port",
            "0",
            "--data-dir",
        ])
        .arg(s.dir.join("second"))
        .arg("--export-root")
        .arg(file.path().join("sub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--export-root"),
        "{stderr}"
    );
}
