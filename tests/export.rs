//! Snapshots to files: `COPY (query) TO STDOUT (FORMAT parquet)` read back
//! by pyarrow, polars and DuckDB, written to a client file by psql's
//! `\copy` (tests/clients/python/parquet_export.py).

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
