//! Commits over a slow object store (issue 12).
//!
//! The store is `strata_storage::LatencyStore`: an in-memory object store
//! that waits `STRATA_BENCH_LATENCY_MS` (default 50) before every request, a
//! stand-in for S3 one region away. Measured, on an embedded `strata::Db`:
//!
//! 1. one client, `STRATA_BENCH_COMMITS` (default 100) sequential
//!    single-row autocommit `INSERT`s, then as many `UPDATE … WHERE _id = $1`
//!    (which read the row first, so they commit with a read snapshot and
//!    are checked for conflicts): p50/p90/p99 commit latency, in ms and in
//!    round trips, and the store requests per commit by kind;
//! 2. `STRATA_BENCH_CLIENTS` (default 16) clients, each a session in its own
//!    tokio task, inserting for `STRATA_BENCH_SECONDS` (default 10):
//!    transactions/s, p50/p99 latency and transactions per log record
//!    (group commit);
//! 3. the same clients split over two nodes (two `Db`s on one shared store),
//!    which race for the same log sequence numbers: what cross-node
//!    contention costs (`STRATA_BENCH_TWO_NODES=0` skips it).
//!
//! ```text
//! cargo bench --bench commit_latency
//! STRATA_BENCH_LATENCY_MS=20 STRATA_BENCH_SECONDS=5 cargo bench --bench commit_latency
//! ```

use std::time::{Duration, Instant};

use datafusion::common::ScalarValue;
use strata::{CompactionConfig, Config, Db, Session};
use strata_storage::LatencyStore;
use tokio::runtime::Runtime;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

const INSERT: &str = "INSERT INTO bench (_id, v) VALUES ($1, $2)";
const UPDATE: &str = "UPDATE bench SET v = $2 WHERE _id = $1";

async fn run(session: &mut Session, sql: &str, id: i64, v: &str) {
    let outs = session
        .execute(
            sql,
            &[
                ScalarValue::Int64(Some(id)),
                ScalarValue::Utf8(Some(v.into())),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{sql} ({id}): {e}"));
    for o in outs {
        o.collect().await.unwrap();
    }
}

fn counts(db: &Db) -> [(&'static str, u64); 6] {
    db.database().engine().storage().request_counts()
}

fn applied_seq(db: &Db) -> u64 {
    db.database().engine().applied_seq()
}

/// Requests since `before`, summed over `dbs`, by kind.
fn delta(dbs: &[&Db], before: &[[(&'static str, u64); 6]]) -> Vec<(&'static str, u64)> {
    let mut out: Vec<(&'static str, u64)> = before[0].iter().map(|(k, _)| (*k, 0)).collect();
    for (db, b) in dbs.iter().zip(before) {
        for (i, (now, then)) in counts(db).iter().zip(b).enumerate() {
            out[i].1 += now.1 - then.1;
        }
    }
    out
}

fn per_commit(d: &[(&'static str, u64)], commits: u64) -> String {
    let parts: Vec<String> = d
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{:.2} {k}", *n as f64 / commits as f64))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" + ")
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    name: String,
    commits: u64,
    tx_s: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    per_record: f64,
    requests: String,
}

fn print_table(rows: &[Row], rtt: Duration) {
    let r = ms(rtt);
    println!();
    println!(
        "| workload | commits | tx/s | p50 ms (round trips) | p90 ms (rt) | p99 ms (rt) | tx per log record | store requests per commit |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.2} | {} |",
            row.name,
            row.commits,
            row.tx_s,
            ms(row.p50),
            ms(row.p50) / r,
            ms(row.p90),
            ms(row.p90) / r,
            ms(row.p99),
            ms(row.p99) / r,
            row.per_record,
            row.requests
        );
    }
    println!();
}

/// One client: `n` sequential autocommit statements `sql` on ids `0..n`.
async fn one_client(db: &Db, name: &str, sql: &str, n: u64, value: &str) -> Row {
    let mut s = db.session();
    let before = [counts(db)];
    let seq0 = applied_seq(db);
    let mut lat = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for id in 0..n as i64 {
        let t = Instant::now();
        run(&mut s, sql, id, value).await;
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    lat.sort();
    let d = delta(&[db], &before);
    let records = applied_seq(db) - seq0;
    Row {
        name: name.into(),
        commits: n,
        tx_s: n as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 0.5),
        p90: pct(&lat, 0.9),
        p99: pct(&lat, 0.99),
        per_record: n as f64 / records.max(1) as f64,
        requests: per_commit(&d, n),
    }
}

/// `clients` clients spread round-robin over `dbs`, each in its own task,
/// inserting fresh ids for `secs`.
async fn many_clients(dbs: &[&Db], name: &str, clients: u64, secs: u64, base: i64) -> Row {
    let before: Vec<_> = dbs.iter().map(|d| counts(d)).collect();
    // Records written: the log's growth as seen by the first node after a catch-up.
    dbs[0].catch_up().await.unwrap();
    let seq0 = applied_seq(dbs[0]);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let db = dbs[c as usize % dbs.len()].clone();
        let node = c as usize % dbs.len();
        tasks.push(tokio::spawn(async move {
            let mut s = db.session();
            let mut lat = Vec::new();
            let mut id = base + c as i64 * 10_000_000;
            while Instant::now() < deadline {
                let t = Instant::now();
                run(&mut s, INSERT, id, "many").await;
                lat.push(t.elapsed());
                id += 1;
            }
            (node, lat)
        }));
    }
    let mut lat = Vec::new();
    let mut per_node = vec![Vec::new(); dbs.len()];
    for t in tasks {
        let (node, l) = t.await.unwrap();
        per_node[node].extend_from_slice(&l);
        lat.extend(l);
    }
    if dbs.len() > 1 {
        for (i, l) in per_node.iter_mut().enumerate() {
            l.sort();
            println!(
                "commit_latency: {name}: node {i}: {} commits, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.len(),
                ms(pct(l, 0.5)),
                ms(pct(l, 0.99)),
                ms(l.last().copied().unwrap_or_default())
            );
        }
    }
    let elapsed = start.elapsed();
    let d = delta(dbs, &before);
    dbs[0].catch_up().await.unwrap();
    let records = applied_seq(dbs[0]) - seq0;
    lat.sort();
    let n = lat.len() as u64;
    Row {
        name: name.into(),
        commits: n,
        tx_s: n as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 0.5),
        p90: pct(&lat, 0.9),
        p99: pct(&lat, 0.99),
        per_record: n as f64 / records.max(1) as f64,
        requests: per_commit(&d, n),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let latency = Duration::from_millis(env_or("STRATA_BENCH_LATENCY_MS", 50));
    let n = env_or("STRATA_BENCH_COMMITS", 100);
    let clients = env_or("STRATA_BENCH_CLIENTS", 16);
    let secs = env_or("STRATA_BENCH_SECONDS", 10);
    let two_nodes = env_or("STRATA_BENCH_TWO_NODES", 1) != 0;

    let rt = Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = LatencyStore::memory(latency);
    // No background compaction: its requests would be counted against commits.
    let config = |cache: &str| {
        Config::location(store.location("latency://bench"))
            .with_cache_dir(tmp.path().join(cache))
            .with_compaction(CompactionConfig {
                background: false,
                ..Default::default()
            })
    };

    rt.block_on(async {
        let db = Db::open(config("a")).await.unwrap();
        // Create the table (its first commit) outside the measurement.
        run(&mut db.session(), INSERT, -1, "setup").await;

        let mut rows = Vec::new();
        rows.push(one_client(&db, "1 client, INSERT", INSERT, n, "one").await);
        rows.push(one_client(&db, "1 client, UPDATE … WHERE _id = k", UPDATE, n, "two").await);
        println!("commit_latency: 1 client done");
        rows.push(
            many_clients(
                &[&db],
                &format!("{clients} clients, INSERT, 1 node"),
                clients,
                secs,
                1_000_000_000,
            )
            .await,
        );
        println!("commit_latency: {clients} clients done");
        if two_nodes {
            let other = Db::open(config("b")).await.unwrap();
            rows.push(
                many_clients(
                    &[&db, &other],
                    &format!("{clients} clients, INSERT, 2 nodes ({} each)", clients / 2),
                    clients,
                    secs,
                    2_000_000_000,
                )
                .await,
            );
            println!("commit_latency: 2 nodes done");
        }
        println!(
            "commit_latency: {latency:?} per store request (1 round trip); {} store requests in all",
            store.requests()
        );
        print_table(&rows, latency);
    });
}
