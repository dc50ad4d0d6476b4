//! Crash test: a writer process commits numbered transactions and prints each
//! acknowledged id right after its commit returns; the test kills it with
//! SIGKILL at a random moment, reopens the directory and checks that
//!
//! - every acknowledged transaction is fully present (all of its rows, in
//!   every table it wrote);
//! - no transaction is partially visible;
//! - what is present is a prefix of the transaction order (the writer is
//!   sequential), at most one transaction past the last acknowledged one
//!   (committed, killed before it could print).
//!
//! The writer is this test binary run again with `STRATA_CRASH_CHILD` set
//! (the `writer_child` test does the work then). Every round continues in the
//! same directory from where the previous one stopped; a small flush
//! threshold makes segment flushes and manifest writes happen throughout.
//!
//! `STRATA_CRASH_ROUNDS` changes the number of rounds (default 24),
//! `STRATA_CRASH_SEED` replays a run's kill delays.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use rand::{Rng, SeedableRng};
use strata::{Config, Db};

const CHILD_DIR: &str = "STRATA_CRASH_CHILD";
const CHILD_START: &str = "STRATA_CRASH_START";
const FLUSH_ROWS: usize = 64;

/// The shape of transaction `k`: how it is written and how many rows it puts
/// into `crash_rows` (`other` = it also writes one row into `crash_other`).
struct Shape {
    rows: i64,
    other: bool,
}

fn shape(k: i64) -> Shape {
    match k % 5 {
        // One row, autocommit.
        0 => Shape {
            rows: 1,
            other: false,
        },
        // Multi-row VALUES, autocommit.
        1 => Shape {
            rows: 2 + k % 4,
            other: false,
        },
        // BEGIN; two INSERTs into two tables; COMMIT.
        2 => Shape {
            rows: 3,
            other: true,
        },
        // INSERT … SELECT of a larger batch, autocommit (crosses flush thresholds).
        3 => Shape {
            rows: 20 + k % 17,
            other: false,
        },
        // BEGIN; one-row INSERTs into both tables; COMMIT.
        _ => Shape {
            rows: 1,
            other: true,
        },
    }
}

/// SQL for transaction `k`. `crash_rows` rows: `_id = k*1000 + j`, with the
/// transaction id and its row count in every row.
fn tx_sql(k: i64) -> String {
    let s = shape(k);
    let n = s.rows;
    let values = |rows: i64| {
        (0..rows)
            .map(|j| format!("({}, {k}, {j}, {n}, 'tx {k} row {j}')", k * 1000 + j))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match k % 5 {
        0 | 1 => format!("INSERT INTO crash_rows (_id, tx, j, n, note) VALUES {}", values(n)),
        3 => format!(
            "INSERT INTO crash_rows (_id, tx, j, n, note) \
             SELECT {k} * 1000 + value, {k}, value, {n}, concat('tx {k} row ', value) FROM generate_series(0, {}) AS g(value)",
            n - 1
        ),
        _ => format!(
            "BEGIN; INSERT INTO crash_rows (_id, tx, j, n, note) VALUES {}; \
             INSERT INTO crash_other (_id, tx) VALUES ({k}, {k}); COMMIT",
            values(n)
        ),
    }
}

/// The writer. Does nothing unless started by `crash_recovery`.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let start: i64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let db = Db::open(Config::dir(&dir).with_flush_rows(FLUSH_ROWS))
            .await
            .expect("child: open");
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {start}").unwrap();
        out.flush().unwrap();
        let mut session = db.session();
        for k in start.. {
            let sql = tx_sql(k);
            let outs = session
                .execute(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("child: tx {k}: {e}\n{sql}"));
            for o in outs {
                o.collect().await.expect("child: collect");
            }
            // The commit has returned: acknowledge.
            writeln!(out, "ACK {k}").unwrap();
            out.flush().unwrap();
        }
    });
}

fn int_col(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = cast(
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}")),
        &DataType::Int64,
    )
    .unwrap();
    let a = c.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

async fn query_ints(db: &Db, sql: &str, cols: &[&str]) -> Vec<Vec<Option<i64>>> {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for b in &batches {
        let cs: Vec<_> = cols.iter().map(|c| int_col(b, c)).collect();
        for i in 0..b.num_rows() {
            rows.push(cs.iter().map(|c| c[i]).collect());
        }
    }
    rows
}

/// Reopen `dir` and check it against the acknowledged transactions.
/// Returns the next transaction id to write.
async fn verify(dir: &Path, acked: &[i64], start: i64, round: usize) -> i64 {
    let db = Db::open(Config::dir(dir).with_flush_rows(FLUSH_ROWS))
        .await
        .expect("reopen after kill");
    let tables = db.database().engine().table_names();
    if !tables.contains(&"crash_rows".to_string()) {
        assert!(
            acked.is_empty(),
            "round {round}: no table after acknowledged transactions {acked:?}"
        );
        return 0;
    }
    // tx -> (row count, declared n, distinct j)
    let rows = query_ints(
        &db,
        "SELECT tx, count(*) AS c, min(n) AS n_min, max(n) AS n_max, count(DISTINCT j) AS dj, \
         min(j) AS j_min, max(j) AS j_max FROM crash_rows GROUP BY tx ORDER BY tx",
        &["tx", "c", "n_min", "n_max", "dj", "j_min", "j_max"],
    )
    .await;
    let mut present: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &rows {
        let [tx, c, n_min, n_max, dj, j_min, j_max] = r.as_slice() else {
            unreachable!()
        };
        let (tx, c) = (tx.unwrap(), c.unwrap());
        let want = shape(tx).rows;
        assert_eq!(
            (c, n_min.unwrap(), n_max.unwrap(), dj.unwrap(), j_min.unwrap(), j_max.unwrap()),
            (want, want, want, want, 0, want - 1),
            "round {round}: transaction {tx} is partially visible (or duplicated): {c} rows of {want}"
        );
        present.insert(tx, c);
    }
    let others: Vec<i64> = if tables.contains(&"crash_other".to_string()) {
        query_ints(&db, "SELECT tx FROM crash_other ORDER BY tx", &["tx"])
            .await
            .into_iter()
            .map(|r| r[0].unwrap())
            .collect()
    } else {
        vec![]
    };
    for &tx in &others {
        assert!(
            shape(tx).other,
            "round {round}: crash_other holds tx {tx}, which never writes it"
        );
        assert!(
            present.contains_key(&tx),
            "round {round}: tx {tx} is in crash_other but not in crash_rows (partial)"
        );
    }
    for &tx in present.keys() {
        if shape(tx).other {
            assert!(
                others.contains(&tx),
                "round {round}: tx {tx} is in crash_rows but not in crash_other (partial)"
            );
        }
    }
    // Sequential writer: a prefix of the order.
    let max = present.keys().next_back().copied().unwrap_or(-1);
    let expected_prefix: Vec<i64> = (0..=max).collect();
    let got: Vec<i64> = present.keys().copied().collect();
    assert_eq!(
        got, expected_prefix,
        "round {round}: the committed transactions are not a prefix of the order"
    );
    for &k in acked {
        assert!(
            present.contains_key(&k),
            "round {round}: acknowledged transaction {k} is missing after the crash"
        );
    }
    // A transaction may be durable without its ACK line (killed in between): at most one past the last ack.
    let last_acked = acked.iter().copied().max().unwrap_or(start - 1);
    assert!(
        max <= last_acked + 1,
        "round {round}: transaction {max} is present but the writer only got to {last_acked}"
    );
    // Point lookups go through the entity hash (live index and segments).
    for &k in acked.iter().rev().take(3).chain(acked.first()) {
        let id = k * 1000;
        let r = query_ints(
            &db,
            &format!("SELECT _id, tx FROM crash_rows WHERE _id = {id}"),
            &["_id", "tx"],
        )
        .await;
        assert_eq!(
            r,
            vec![vec![Some(id), Some(k)]],
            "round {round}: point lookup of _id {id}"
        );
    }
    max + 1
}

#[test]
fn crash_recovery() {
    let rounds: usize = std::env::var("STRATA_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let seed: u64 = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("crash test: {rounds} rounds, STRATA_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut next: i64 = 0;
    let mut total_acked = 0usize;
    let mut killed_while_writing = 0usize;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut ready = false;
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("ACK ") {
                    acked.push(k.trim().parse::<i64>().unwrap());
                } else if line.starts_with("READY ") {
                    ready = true;
                }
            }
            (ready, acked)
        });
        // Mostly while it writes; now and then while it opens (recovery of the recovery).
        let delay = if round % 6 == 5 {
            rng.random_range(1..60)
        } else {
            rng.random_range(150..700)
        };
        std::thread::sleep(Duration::from_millis(delay));
        let exited_early = child.try_wait().unwrap();
        child.kill().expect("SIGKILL the writer");
        child.wait().unwrap();
        let (ready, acked) = reader.join().unwrap();
        if let Some(status) = exited_early {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("round {round}: the writer exited by itself ({status}) before the kill:\n{err}");
        }
        if let Some(&first) = acked.first() {
            assert_eq!(
                first, next,
                "round {round}: writer did not start where asked"
            );
            killed_while_writing += 1;
        }
        total_acked += acked.len();
        let after = rt.block_on(verify(dir.path(), &acked, next, round));
        println!(
            "round {round:2}: killed after {delay:3} ms (ready: {ready}), acknowledged {:4} (tx {next}..), next tx {after}",
            acked.len()
        );
        assert!(
            after >= next,
            "round {round}: transactions disappeared: had up to {next}, now {after}"
        );
        next = after;
    }
    let segments: usize = std::fs::read_dir(dir.path().join("tables"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path()).ok())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".arrow"))
                .count()
        })
        .sum();
    println!(
        "crash test: {total_acked} acknowledged transactions over {rounds} rounds ({killed_while_writing} killed mid-write), \
         {next} transactions present, {segments} segment files, {:.1?}",
        started.elapsed()
    );
    assert!(
        killed_while_writing >= rounds / 2,
        "the writer was rarely killed while writing: make the delays longer"
    );
    assert!(
        total_acked >= rounds,
        "too few transactions acknowledged to mean anything"
    );
}
