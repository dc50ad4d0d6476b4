//! Load: 64 concurrent tokio-postgres connections doing prepared point
//! lookups and single-row inserts against `strata serve` for
//! `STRATA_LOAD_SECS` seconds (default 30); then every acknowledged insert
//! must be there, with zero errors. Prints throughput and p50/p99 latency.

#[path = "clients/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::Server;

const CONNECTIONS: usize = 64;
const PRELOADED: i64 = 1000;
/// Inserted ids start here (preloaded rows are 0..PRELOADED).
const ID_BASE: i64 = 1_000_000_000;

struct Report {
    lookups: u64,
    inserted: Vec<i64>,
    latencies_us: Vec<u32>,
    errors: Vec<String>,
}

async fn worker(port: u16, n: usize, until: Instant) -> Report {
    let mut r = Report {
        lookups: 0,
        inserted: vec![],
        latencies_us: vec![],
        errors: vec![],
    };
    let (c, conn) = match tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=strata dbname=strata connect_timeout=30"),
        tokio_postgres::NoTls,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            r.errors.push(format!("connect: {e}"));
            return r;
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let lookup = match c.prepare("SELECT v, n FROM kv WHERE _id = $1").await {
        Ok(s) => s,
        Err(e) => {
            r.errors.push(format!("prepare lookup: {e}"));
            return r;
        }
    };
    let insert = match c
        .prepare("INSERT INTO kv (_id, v, n) VALUES ($1, $2, $3)")
        .await
    {
        Ok(s) => s,
        Err(e) => {
            r.errors.push(format!("prepare insert: {e}"));
            return r;
        }
    };
    let mut i: u64 = 0;
    let mut next_id = ID_BASE + (n as i64) * 10_000_000;
    while Instant::now() < until {
        i += 1;
        let t = Instant::now();
        // One insert for every four lookups.
        if i.is_multiple_of(5) {
            let id = next_id;
            next_id += 1;
            match c
                .execute(&insert, &[&id, &format!("w{n}-{i}"), &(i as i64)])
                .await
            {
                Ok(1) => r.inserted.push(id),
                Ok(k) => r.errors.push(format!("insert {id} reported {k} rows")),
                Err(e) => r.errors.push(format!("insert {id}: {e}")),
            }
        } else {
            let id = ((i as i64) * 7919 + n as i64) % PRELOADED;
            match c.query(&lookup, &[&id]).await {
                Ok(rows) if rows.len() == 1 => {
                    let v: String = rows[0].get(0);
                    if v != format!("v{id}") {
                        r.errors.push(format!("lookup {id}: got {v}"));
                    }
                    r.lookups += 1;
                }
                Ok(rows) => r.errors.push(format!("lookup {id}: {} rows", rows.len())),
                Err(e) => r.errors.push(format!("lookup {id}: {e}")),
            }
        }
        r.latencies_us
            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_connections_of_lookups_and_inserts() {
    let secs: u64 = std::env::var("STRATA_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let s = Server::start();
    let c = s.client().await;
    c.simple_query("CREATE TABLE kv (_id BIGINT, v TEXT, n BIGINT)")
        .await
        .unwrap();
    let values: Vec<String> = (0..PRELOADED)
        .map(|i| format!("({i}, 'v{i}', {i})"))
        .collect();
    c.simple_query(&format!(
        "INSERT INTO kv (_id, v, n) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();

    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|n| tokio::spawn(worker(s.port, n, until)))
        .collect();
    let mut lookups = 0u64;
    let mut inserted = vec![];
    let mut lat = vec![];
    let mut errors = vec![];
    for t in tasks {
        let r = t.await.expect("worker");
        lookups += r.lookups;
        inserted.extend(r.inserted);
        lat.extend(r.latencies_us);
        errors.extend(r.errors);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let ops = lookups + inserted.len() as u64;
    println!(
        "load: {CONNECTIONS} connections, {elapsed:.1} s: {ops} ops ({lookups} lookups, {} inserts), {:.0} ops/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        inserted.len(),
        ops as f64 / elapsed,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(lookups > 0 && !inserted.is_empty(), "some work was done");

    // Every acknowledged insert is there, and nothing else.
    let count: i64 = c
        .query_one("SELECT count(*) FROM kv", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, PRELOADED + inserted.len() as i64);
    let got: BTreeSet<i64> = c
        .query("SELECT _id FROM kv WHERE _id >= $1", &[&ID_BASE])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: BTreeSet<i64> = inserted.iter().copied().collect();
    assert_eq!(want.len(), inserted.len(), "ids are unique");
    assert_eq!(got, want);
}
