//! Embedded point lookups for the side-by-side harness (benches/harness/run.py):
//! opens a Strata data directory with `strata::Db` and runs one parameterized
//! query (`$1` = a key) from N concurrent tasks for a fixed time, then prints
//! one JSON line: {"ops", "seconds", "p50_us", "p99_us", "rows"}.
//!
//! cargo build --release --example bench_embedded
//! bench_embedded --data-dir DIR --sql 'SELECT * FROM orders WHERE _id = $1' \
//!     --keys 1,2,3 --clients 8 --seconds 5

use std::time::{Duration, Instant};

use datafusion::common::ScalarValue;

fn arg(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .ok_or_else(|| format!("missing {name} VALUE"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let dir = arg(&args, "--data-dir")?;
    let sql = arg(&args, "--sql")?;
    let keys: Vec<i64> = arg(&args, "--keys")?
        .split(',')
        .map(|k| {
            k.trim()
                .parse::<i64>()
                .map_err(|e| format!("bad key `{k}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Err("--keys needs at least one key".into());
    }
    let clients: usize = arg(&args, "--clients")?
        .parse()
        .map_err(|e| format!("--clients: {e}"))?;
    let seconds: f64 = arg(&args, "--seconds")?
        .parse()
        .map_err(|e| format!("--seconds: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let db = strata::Db::open(strata::Config::dir(&dir))
            .await
            .map_err(|e| e.to_string())?;
        // warm up: load the segments the lookups touch
        for k in keys.iter().take(100) {
            db.sql_with_params(&sql, &[ScalarValue::Int64(Some(*k))])
                .await
                .map_err(|e| e.to_string())?;
        }
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let db = db.clone();
            let sql = sql.clone();
            let keys = keys.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut rows = 0usize;
                let mut i = c * 7919;
                while Instant::now() < deadline {
                    let k = keys[i % keys.len()];
                    i += 1;
                    let t = Instant::now();
                    let b = db
                        .sql_with_params(&sql, &[ScalarValue::Int64(Some(k))])
                        .await
                        .map_err(|e| e.to_string())?;
                    lat.push(t.elapsed().as_micros() as u64);
                    rows += b.iter().map(|b| b.num_rows()).sum::<usize>();
                }
                Ok::<_, String>((lat, rows))
            }));
        }
        let mut lat = Vec::new();
        let mut rows = 0;
        for t in tasks {
            let (l, r) = t.await.map_err(|e| e.to_string())??;
            lat.extend(l);
            rows += r;
        }
        let el = start.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| -> u64 {
            if lat.is_empty() {
                return 0;
            }
            let i = ((p / 100.0 * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i]
        };
        println!(
            "{{\"ops\": {}, \"seconds\": {el:.3}, \"p50_us\": {}, \"p99_us\": {}, \"rows\": {rows}}}",
            lat.len(),
            pct(50.0),
            pct(99.0)
        );
        Ok(())
    })
}
