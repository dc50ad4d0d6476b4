//! Smoke mode of the side-by-side benchmark harness (benches/harness/run.py):
//! TPC-H at SF 0.01 with one iteration, the bitemporal stream, point lookups
//! and ingest, against this build's `strata` binary, a throwaway PostgreSQL
//! cluster and DuckDB. Fails if any answer differs between the three systems
//! or any section crashes. Needs python3 with duckdb, duckdb-extension-tpch,
//! psycopg and pyarrow, and PostgreSQL's server binaries
//! (.ci/install.d/50-bench.sh installs them).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn bench_harness_smoke() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("tempdir");
    let json = out.path().join("results.json");
    let mut cmd = Command::new("python3");
    cmd.current_dir(&root)
        .arg("benches/harness/run.py")
        .args(["--sf", "0.01", "--iterations", "1", "--seconds", "1"])
        .args(["--timeout", "60", "--no-build", "--no-install"])
        .args(["--strata-bin", env!("CARGO_BIN_EXE_strata")])
        .arg("--cache-dir")
        .arg(out.path().join("cache"))
        .arg("--json")
        .arg(&json);
    // The embedded lookup example, when `cargo test` built it next to us.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent().and_then(|d| d.parent()) {
            let emb = dir.join("examples").join("bench_embedded");
            if emb.exists() {
                cmd.arg("--embedded-bin").arg(emb);
            }
        }
    }
    for k in ["STRATA_BIN", "STRATA_EMBEDDED_BIN"] {
        cmd.env_remove(k);
    }
    let res = cmd.output().expect("run python3 benches/harness/run.py");
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "benchmark harness smoke run failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        res.status
    );
    // Every section ran and produced numbers.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("results json"))
            .expect("results are JSON");
    let tpch = j["tpch"].as_object().expect("TPC-H results");
    assert_eq!(tpch.len(), 22, "all 22 TPC-H queries ran: {stdout}");
    let strata_ran = tpch
        .values()
        .filter(|r| r["strata"]["median"].is_number())
        .count();
    assert!(strata_ran > 0, "Strata answered no TPC-H query: {stdout}");
    assert!(
        j["bitemporal"]["queries"]
            .as_object()
            .map_or(0, |q| q.len())
            >= 8,
        "bitemporal queries ran: {stdout}"
    );
    // The all-active sweep (N = 10 … 5,000 contracts) ran on Strata; the
    // harness exits non-zero if an answer differed from DuckDB's.
    let sweep = j["bitemporal"]["all_active"]
        .as_object()
        .expect("all-active sweep results");
    assert_eq!(sweep.len(), 4, "all-active sweep: {stdout}");
    assert!(
        sweep.values().all(|r| r["strata"]["median"].is_number()),
        "Strata answered every all-active query: {stdout}"
    );
    assert!(
        j["lookups"]["now"]["1"]["strata"]["ops"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "Strata point lookups ran: {stdout}"
    );
    assert!(
        j["ingest"]["1"]["strata"]["ops"].as_u64().unwrap_or(0) > 0,
        "Strata single-row inserts ran: {stdout}"
    );
}

/// `strata import` (the harness's bulk path for Strata): CSV with --id, an
/// Arrow IPC file with its own `_id`, and clear errors for bad input.
#[test]
fn strata_import_csv_arrow_and_errors() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let strata = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("STRATA_DATA_DIR")
            .output()
            .expect("run strata");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let csv = tmp.path().join("people.csv");
    std::fs::write(&csv, "k,name,score\n1,ada,1.5\n2,bob,2.25\n3,cy,3\n").unwrap();
    let csv_s = csv.to_str().unwrap();

    let (ok, _, err) = strata(&["import", "--table", "people", csv_s]);
    assert!(
        !ok && err.contains("no `_id` column") && err.contains("--id"),
        "{err}"
    );
    let (ok, _, err) = strata(&["import", "--table", "people", "--id", "nope", csv_s]);
    assert!(
        !ok && err.contains("`nope`") && err.contains("k, name, score"),
        "{err}"
    );
    let (ok, _, err) = strata(&["import", "--table", "people", "--id", "k", "/no/such.csv"]);
    assert!(!ok && err.contains("cannot open /no/such.csv"), "{err}");

    let (ok, out, err) = strata(&["import", "--table", "people", "--id", "k", csv_s]);
    assert!(
        ok && out.contains("imported 3 rows into people"),
        "{out}{err}"
    );

    let arrow_path = tmp.path().join("more.arrow");
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("k", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![3, 4])),
            Arc::new(Int64Array::from(vec![3, 4])),
            Arc::new(StringArray::from(vec!["cyd", "dee"])),
        ],
    )
    .unwrap();
    let f = std::fs::File::create(&arrow_path).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let (ok, out, err) = strata(&[
        "import",
        "--table",
        "people",
        "--batch-rows",
        "1",
        arrow_path.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("imported 2 rows"), "{out}{err}");

    let (ok, out, err) = strata(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT _id, name FROM people ORDER BY _id",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        ["_id,name", "1,ada", "2,bob", "3,cyd", "4,dee"],
        "{out}"
    );

    // Into a table that holds rows, a transaction also ends at a sixteenth
    // of --memory-limit (1 MiB of 16MiB here): eight 20,000-row batches of
    // ~2.3 MB are eight commits, not one of the default 500,000 rows.
    let big_path = tmp.path().join("big.arrow");
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("pad", DataType::Utf8, false),
    ]));
    let f = std::fs::File::create(&big_path).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &schema).unwrap();
    for b in 0..8i64 {
        let ids: Vec<i64> = (b * 20_000..(b + 1) * 20_000).collect();
        let pad: Vec<String> = ids.iter().map(|i| format!("{i:0>100}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(pad)),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
    }
    w.finish().unwrap();
    let (ok, _, err) = strata(&[
        "sql",
        "-c",
        "INSERT INTO big (_id, pad) VALUES (-1, 'seed')",
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = strata(&[
        "import",
        "--table",
        "big",
        "--memory-limit",
        "16MiB",
        big_path.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("imported 160000 rows"), "{out}{err}");
    let (ok, out, err) = strata(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n, count(DISTINCT _system_from) AS commits FROM big WHERE _id >= 0",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().nth(1), Some("160000,8"), "{out}");

    // Into an empty table: one bulk load, one commit, written straight
    // into current-tier segments (several, under the budget), none of it
    // through the live index.
    let (ok, out, err) = strata(&[
        "import",
        "--table",
        "bulk",
        "--memory-limit",
        "16MiB",
        big_path.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("imported 160000 rows"), "{out}{err}");
    let (ok, out, err) = strata(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n, count(DISTINCT _system_from) AS commits, min(pad) AS lo FROM bulk",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().nth(1),
        Some(format!("160000,1,{:0>100}", 0).as_str()),
        "{out}"
    );
    let (ok, out, err) = strata(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT tier, count(*) AS segments, sum(rows) AS n FROM strata_segments WHERE table_name = 'bulk' GROUP BY tier",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((cells[0], cells[2]), ("current", "160000"), "{out}");
    assert!(cells[1].parse::<u32>().unwrap() >= 2, "{out}");

    // A repeated `_id` in the input: loaded the ordinary way (the later
    // row is the current version), with a note saying so.
    let dup_path = tmp.path().join("dup.arrow");
    let f = std::fs::File::create(&dup_path).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &schema).unwrap();
    for b in 0..2i64 {
        let ids: Vec<i64> = (0..70_000).collect();
        let pad: Vec<String> = ids.iter().map(|_| format!("v{b}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(pad)),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
    }
    w.finish().unwrap();
    let (ok, out, err) = strata(&["import", "--table", "dup", dup_path.to_str().unwrap()]);
    assert!(ok && out.contains("imported 140000 rows"), "{out}{err}");
    assert!(err.contains("occurs more than once"), "{err}");
    let (ok, out, err) = strata(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n, min(pad) AS v FROM dup",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().nth(1), Some("70000,v1"), "{out}");
}
