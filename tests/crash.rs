//! Crash test: a writer process commits numbered transactions and prints each
//! acknowledged id right after its commit returns; the test kills it with
//! SIGKILL at a random moment, reopens the directory and checks that
//!
//! - every acknowledged transaction is fully present (all of its rows, in
//!   every table it wrote);
//! - no transaction is partially visible (nor duplicated);
//! - per writer, what is present is a prefix of its transaction order, at
//!   most one transaction past its last acknowledged one (committed, killed
//!   before it could print).
//!
//! The writer process is this test binary run again with `STRATA_CRASH_CHILD`
//! set (the `writer_child` test does the work then). It runs `WRITERS`
//! sessions concurrently on one `strata::Db` (so commits share log writes:
//! group commit); writer `w` commits transactions `k = i * WRITERS + w` for
//! i = 0, 1, 2, … Transactions are single-row and multi-row autocommit
//! INSERTs, an INSERT … SELECT of a larger batch, and BEGIN … COMMIT blocks
//! writing two tables. Every round continues in the same directory from where
//! the previous one stopped; a small flush threshold makes segment flushes
//! and manifest writes happen throughout, and background compaction (small
//! target segments) and collection (one-second grace period) run all the
//! time, so kills also land in the middle of compactions and collections.
//! After every kill the newest manifest must name only objects that exist.
//!
//! `STRATA_CRASH_ROUNDS` changes the number of rounds (default 24),
//! `STRATA_CRASH_SEED` replays a run's kill delays.

use std::collections::BTreeSet;
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
const WRITERS: i64 = 3;

/// How many rows transaction `k` puts into `crash_rows`, and whether it also
/// writes one row into `crash_other` (in the same transaction).
fn shape(k: i64) -> (i64, bool) {
    match k % 5 {
        0 => (1, false),
        1 => (2 + k % 4, false),
        2 => (3, true),
        3 => (20 + k % 17, false),
        _ => (1, true),
    }
}

/// SQL for transaction `k`. `crash_rows` rows: `_id = k*1000 + j`, each
/// carrying the transaction id and its row count.
fn tx_sql(k: i64) -> String {
    let (n, _) = shape(k);
    let values = (0..n)
        .map(|j| format!("({}, {k}, {j}, {n}, 'tx {k} row {j}')", k * 1000 + j))
        .collect::<Vec<_>>()
        .join(", ");
    match k % 5 {
        // Single-row / multi-row VALUES, autocommit.
        0 | 1 => format!("INSERT INTO crash_rows (_id, tx, j, n, note) VALUES {values}"),
        // INSERT … SELECT of a larger batch (crosses flush thresholds), autocommit.
        3 => format!(
            "INSERT INTO crash_rows (_id, tx, j, n, note) \
             SELECT {k} * 1000 + value, {k}, value, {n}, concat('tx {k} row ', value) FROM generate_series(0, {}) AS g(value)",
            n - 1
        ),
        // BEGIN; two tables; COMMIT.
        _ => format!(
            "BEGIN; INSERT INTO crash_rows (_id, tx, j, n, note) VALUES {values}; \
             INSERT INTO crash_other (_id, tx) VALUES ({k}, {k}); COMMIT"
        ),
    }
}

/// One writer: its transactions in order, each acknowledged on stdout.
async fn writer(db: &Db, w: i64, first: i64) {
    let mut session = db.session();
    for i in first.. {
        let k = i * WRITERS + w;
        let sql = tx_sql(k);
        let outs = session
            .execute(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("child: tx {k}: {e}\n{sql}"));
        for o in outs {
            o.collect().await.expect("child: collect");
        }
        // The commit has returned: acknowledge (one write per line, so lines stay whole).
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {k}").unwrap();
        out.flush().unwrap();
        drop(out);
        tokio::task::yield_now().await;
    }
}

/// The writer's settings: small flushes, and compaction and collection
/// running all the time (small target segments, a one-second grace period
/// and collection interval, no log retention), so that kills land during
/// flushes, compactions and collections.
fn child_config(dir: &Path) -> Config {
    Config::dir(dir)
        .with_flush_rows(FLUSH_ROWS)
        .with_compaction(strata::CompactionConfig {
            target_bytes: 64 << 10,
            fanout: 2,
            background: true,
            max_job_bytes: None,
        })
        .with_gc(strata::GcConfig {
            grace: Duration::from_millis(1000),
            log_retention: Duration::ZERO,
            interval: Duration::from_millis(200),
        })
}

/// Every object the newest manifest names must exist (nothing collected too
/// early, nothing published before it was written).
async fn check_manifest_objects(db: &Db, round: usize) {
    let storage = db.database().engine().storage();
    let m = strata_storage::manifest::Manifest::load_latest(storage)
        .await
        .expect("read the newest manifest");
    for (table, tm) in &m.tables {
        for se in &tm.segments {
            let mut paths = vec![se.meta.path.clone(), se.meta.bloom_path.clone()];
            paths.extend(se.deleted_path.clone());
            for p in paths {
                assert!(
                    storage.get(&p).await.expect("read object").is_some(),
                    "round {round}: manifest {} of table {table} names missing object {p}",
                    m.version
                );
            }
        }
    }
}

/// The writer process. Does nothing unless started by `crash_recovery`.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let starts: Vec<i64> = std::env::var(CHILD_START)
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let db = Db::open(child_config(Path::new(&dir)))
            .await
            .expect("child: open");
        println!("\nREADY");
        let writers = (0..WRITERS).map(|w| writer(&db, w, starts[w as usize]));
        futures::future::join_all(writers).await;
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

async fn query_ints(db: &Db, sql: &str, cols: &[&str]) -> Vec<Vec<i64>> {
    let batches = db.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for b in &batches {
        let cs: Vec<_> = cols.iter().map(|c| int_col(b, c)).collect();
        for i in 0..b.num_rows() {
            rows.push(
                cs.iter()
                    .map(|c| c[i].unwrap_or_else(|| panic!("NULL in {sql}")))
                    .collect(),
            );
        }
    }
    rows
}

/// Reopen `dir` and check it against the acknowledged transactions. `next`
/// is each writer's next transaction index before the round; returns the
/// new one.
async fn verify(dir: &Path, next: &[i64], acked: &[i64], round: usize) -> Vec<i64> {
    let db = Db::open(child_config(dir))
        .await
        .expect("reopen after kill");
    check_manifest_objects(&db, round).await;
    let tables = db.database().engine().table_names();
    let mut present = BTreeSet::new();
    if tables.iter().any(|t| t == "crash_rows") {
        let rows = query_ints(
            &db,
            "SELECT tx, count(*) AS c, min(n) AS n_min, max(n) AS n_max, count(DISTINCT j) AS dj, \
             min(j) AS j_min, max(j) AS j_max FROM crash_rows GROUP BY tx ORDER BY tx",
            &["tx", "c", "n_min", "n_max", "dj", "j_min", "j_max"],
        )
        .await;
        for r in &rows {
            let (tx, want) = (r[0], shape(r[0]).0);
            assert_eq!(
                &r[1..],
                &[want, want, want, want, 0, want - 1],
                "round {round}: transaction {tx} is partially visible or duplicated: \
                 [rows, min n, max n, distinct j, min j, max j] should be all its {want} rows"
            );
            present.insert(tx);
        }
    }
    let others: BTreeSet<i64> = if tables.iter().any(|t| t == "crash_other") {
        query_ints(&db, "SELECT tx FROM crash_other", &["tx"])
            .await
            .into_iter()
            .map(|r| r[0])
            .collect()
    } else {
        BTreeSet::new()
    };
    for &tx in &others {
        assert!(
            shape(tx).1,
            "round {round}: crash_other holds tx {tx}, which never writes it"
        );
        assert!(
            present.contains(&tx),
            "round {round}: tx {tx} is in crash_other but not in crash_rows (partial)"
        );
    }
    for &tx in &present {
        if shape(tx).1 {
            assert!(
                others.contains(&tx),
                "round {round}: tx {tx} is in crash_rows but not in crash_other (partial)"
            );
        }
    }
    for &k in acked {
        assert!(
            present.contains(&k),
            "round {round}: acknowledged transaction {k} is missing after the crash"
        );
    }
    // Per writer: a prefix of its order, at most one past its last acknowledgement.
    let mut after = Vec::new();
    for w in 0..WRITERS {
        let mine: Vec<i64> = present
            .iter()
            .filter(|&&k| k % WRITERS == w)
            .map(|&k| k / WRITERS)
            .collect();
        let n = mine.len() as i64;
        assert_eq!(
            mine,
            (0..n).collect::<Vec<_>>(),
            "round {round}: writer {w}'s transactions are not a prefix of its order"
        );
        let last_acked = acked
            .iter()
            .filter(|&&k| k % WRITERS == w)
            .map(|&k| k / WRITERS)
            .max()
            .unwrap_or(next[w as usize] - 1);
        assert!(
            n >= next[w as usize],
            "round {round}: writer {w} had {} transactions, now {n}",
            next[w as usize]
        );
        assert!(
            n - 1 <= last_acked + 1,
            "round {round}: writer {w} has transaction {} present, but got only to {last_acked}",
            n - 1
        );
        after.push(n);
    }
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
            vec![vec![id, k]],
            "round {round}: point lookup of _id {id}"
        );
    }
    after
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
    println!("crash test: {rounds} rounds, {WRITERS} concurrent writers, STRATA_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut next: Vec<i64> = vec![0; WRITERS as usize];
    let mut total_acked = 0usize;
    let mut killed_while_writing = 0usize;
    for round in 0..rounds {
        let starts = next
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut child = Command::new(&exe)
            .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, &starts)
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
                } else if line == "READY" {
                    ready = true;
                }
            }
            (ready, acked)
        });
        // Mostly while it writes; now and then while it opens (recovering a recovery).
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
        if !acked.is_empty() {
            killed_while_writing += 1;
        }
        total_acked += acked.len();
        let after = rt.block_on(verify(dir.path(), &next, &acked, round));
        println!(
            "round {round:2}: killed after {delay:3} ms (ready: {ready}), {:4} acknowledged, per-writer next {next:?} -> {after:?}",
            acked.len()
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
    let logs = std::fs::read_dir(dir.path().join("log"))
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "crash test: {total_acked} acknowledged over {rounds} rounds ({killed_while_writing} killed mid-write), \
         {} transactions present, {logs} log objects, {segments} segment files, {:.1?}",
        next.iter().sum::<i64>(),
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
