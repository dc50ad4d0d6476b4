//! The `strata sql` command line: one statement per process, data kept in a
//! directory between processes, the three output formats, and errors.

use std::path::Path;
use std::process::{Command, Output};

fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("sql")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_STORE_URL")
        .env_remove("STRATA_TEST_CLOCK")
        .env_remove("STRATA_FLUSH_ROWS")
        .output()
        .expect("run the strata binary")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = strata(dir, args);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(
        o.status.success(),
        "strata {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        o.status
    );
    stdout
}

/// An RFC 3339-ish UTC timestamp as the CSV / JSON writers print it.
fn looks_like_timestamp(s: &str) -> bool {
    let s = s.trim().trim_matches('"');
    s.len() >= 19
        && s.as_bytes()[4] == b'-'
        && s.as_bytes()[7] == b'-'
        && (s.as_bytes()[10] == b'T' || s.as_bytes()[10] == b' ')
        && s[..4].parse::<u32>().is_ok_and(|y| y >= 2020)
}

#[test]
fn insert_then_read_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(d, &["-c", "INSERT INTO t (_id, name) VALUES (1, 'a')"]);
    assert!(
        out.contains("INSERT 0 1"),
        "table format prints the command tag: {out}"
    );

    // CSV: header, then the row with both times set.
    let csv = ok(
        d,
        &[
            "--format",
            "csv",
            "-c",
            "SELECT _id, name, _valid_from, _system_from FROM t",
        ],
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "header and one row: {csv}");
    assert_eq!(lines[0], "_id,name,_valid_from,_system_from");
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(&cells[..2], &["1", "a"], "{csv}");
    assert!(looks_like_timestamp(cells[2]), "_valid_from set: {csv}");
    assert!(looks_like_timestamp(cells[3]), "_system_from set: {csv}");
    // Default valid time starts at the transaction's system time.
    assert_eq!(
        cells[2], cells[3],
        "valid time defaults to [system time, ∞): {csv}"
    );

    // JSON: an array of objects; open bounds are NULL (omitted or null).
    let json = ok(
        d,
        &[
            "--format",
            "json",
            "-c",
            "SELECT _id, name, _system_from, _valid_to FROM t",
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("bad JSON {json}: {e}"));
    let rows = v.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["_id"], 1);
    assert_eq!(rows[0]["name"], "a");
    assert!(
        looks_like_timestamp(rows[0]["_system_from"].as_str().unwrap_or("")),
        "{json}"
    );
    assert!(
        rows[0].get("_valid_to").is_none_or(|x| x.is_null()),
        "open _valid_to is NULL: {json}"
    );

    // Table: a box with the header and the row.
    let table = ok(d, &["--format", "table", "-c", "SELECT _id, name FROM t"]);
    assert!(table.contains("| _id | name |"), "{table}");
    assert!(table.contains("| 1   | a    |"), "{table}");
    assert!(table.contains("+-----+------+"), "{table}");

    // Default format is table; SELECT * hides the temporal columns.
    let star = ok(d, &["-c", "SELECT * FROM t"]);
    assert!(star.contains("| _id | name |"), "{star}");
    assert!(
        !star.contains("_valid_from") && !star.contains("_system_from"),
        "{star}"
    );
}

#[test]
fn writes_accumulate_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["-c", "INSERT INTO t (_id, n) VALUES (1, 10), (2, 20)"]);
    ok(d, &["-c", "INSERT INTO t (_id, n) VALUES (3, 30)"]);
    ok(d, &["-c", "INSERT INTO t (_id, n) VALUES (2, 22)"]);
    let csv = ok(
        d,
        &["--format", "csv", "-c", "SELECT _id, n FROM t ORDER BY _id"],
    );
    assert_eq!(csv, "_id,n\n1,10\n2,22\n3,30\n");
    // Several statements in one -c: each runs, in order.
    let out = ok(
        d,
        &[
            "--format",
            "csv",
            "-c",
            "INSERT INTO t (_id, n) VALUES (4, 40); SELECT count(*) AS c FROM t",
        ],
    );
    assert_eq!(out, "c\n4\n");
    // SQL from stdin when there is no -c and stdin is not a terminal.
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["sql", "--format", "csv", "--data-dir"])
        .arg(d)
        .stdin(std::fs::File::open(write_tmp(d, "q.sql", "SELECT sum(n) AS s FROM t;\n")).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "s\n102\n");
}

fn write_tmp(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.parent().unwrap().join(format!(
        "{}-{name}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn test_clock_makes_times_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "--test-clock",
            "2020-01-01T00:00:00Z,1d",
            "-c",
            "INSERT INTO t (_id) VALUES (1)",
        ],
    );
    let csv = ok(
        d,
        &[
            "--format",
            "csv",
            "-c",
            "SELECT _id, _valid_from, _valid_to, _system_from, _system_to FROM t",
        ],
    );
    assert_eq!(csv, "_id,_valid_from,_valid_to,_system_from,_system_to\n1,2020-01-01T00:00:00Z,,2020-01-01T00:00:00Z,\n");
}

#[test]
fn bad_statements_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &["-c", "INSERT INTO people (_id, name) VALUES (1, 'ada')"],
    );
    for (sql, needle) in [
        ("SELEKT 1", "syntax error"),
        ("SELECT * FROM peeple", "did you mean `people`"),
        ("INSERT INTO people (name) VALUES ('x')", "_id"),
        ("INSERT INTO people (_id, name) VALUES (2, 3)", "TEXT"),
    ] {
        let o = strata(d, &["-c", sql]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "`{sql}` should fail; stdout: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            stderr.contains("error"),
            "`{sql}`: stderr says error: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "`{sql}`: stderr mentions `{needle}`: {stderr}"
        );
    }
    // Nothing of the failed writes is visible.
    let csv = ok(
        d,
        &["--format", "csv", "-c", "SELECT _id, name FROM people"],
    );
    assert_eq!(csv, "_id,name\n1,ada\n");
    // Bad flags are refused too.
    let o = strata(d, &["--format", "xml", "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(!o.stderr.is_empty());
}

/// A query with no rows still prints the header line (CSV) / the column box (table).
#[test]
fn empty_result_keeps_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["-c", "INSERT INTO t (_id, v) VALUES (1, 'a')"]);
    let csv = ok(
        d,
        &[
            "--format",
            "csv",
            "-c",
            "SELECT _id, v FROM t WHERE v = 'zz'",
        ],
    );
    assert_eq!(csv, "_id,v\n");
    let table = ok(d, &["-c", "SELECT _id, v FROM t WHERE _id = 5"]);
    assert!(table.contains("| _id | v |"), "{table}");
    let json = ok(
        d,
        &[
            "--format",
            "json",
            "-c",
            "SELECT _id, v FROM t WHERE v = 'zz'",
        ],
    );
    assert_eq!(json.trim(), "[]");
}

/// `strata sql` with `input` piped to stdin.
fn piped(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("sql")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_STORE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn piped_input_takes_the_shells_backslash_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // What `printf 'SELECT 1;\n\\q\n' | strata sql` sends.
    let o = piped(d, &["--format", "csv"], "SELECT 1 AS one;\n\\q\n");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "one\n1\n");
    // \q stops the script; \dt lists tables; a statement may span lines.
    let o = piped(
        d,
        &["--format", "csv"],
        "INSERT INTO piped (_id) VALUES (1);\n\\dt\nSELECT count(*)\n  AS n FROM piped;\n\\q\nSELECT 'not run';\n",
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout, "table_name\npiped\nn\n1\n", "{stdout}");
    // An unknown command is an error (exit status 1) that names the known ones.
    let o = piped(d, &[], "\\x\nSELECT 1;\n");
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("unknown command \\x") && stderr.contains("\\q"),
        "{stderr}"
    );
    // A last statement without `;` still runs.
    let o = piped(d, &["--format", "csv"], "SELECT 2 AS two");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "two\n2\n");
}

#[test]
fn a_second_server_on_a_taken_flight_port_says_which_flag_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    // Take a port, then ask a server to use it for Flight SQL.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--pg-port",
            "0",
            "--flight-port",
            &port,
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("STRATA_FLIGHT_PORT")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("port {port} is already in use"))
            && stderr.contains("--flight-port"),
        "{stderr}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--pg-port", &port, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--pg-port"), "{stderr}");
    // `serve --help` names both listeners and both flags.
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout).to_string();
    for w in [
        "Flight SQL",
        "--flight-port",
        "--pg-port",
        "--statement-timeout",
    ] {
        assert!(help.contains(w), "{w} missing from serve --help:\n{help}");
    }
}
