//! Several `strata serve` nodes on one bucket of a real S3-compatible
//! server (moto, see `tests/support/s3.rs`): no lost update across nodes,
//! each node sees the others' commits quickly, a killed node loses nothing
//! acknowledged and rejoins, and the roles (reader, compactor) behave.
//!
//! Each node gets its own disk cache directory, as nodes on one machine must.

#[path = "clients/harness.rs"]
mod harness;
#[path = "support/s3.rs"]
mod s3;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::Server;
use s3::S3Server;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The tests here start three or four servers and an S3 server each, and
/// one measures visibility delays: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `strata serve --store-url URL` with its own cache directory under `caches`.
fn node(srv: &S3Server, url: &str, caches: &Path, name: &str, args: &[&str]) -> Server {
    let cache = caches.join(name);
    let env = srv.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("STRATA_CACHE_DIR", cache.to_str().unwrap()));
    let mut all = vec!["--store-url", url];
    all.extend_from_slice(args);
    Server::start_with(&all, &env)
}

/// A running `strata serve --role compactor`, killed when dropped.
struct Compactor(std::process::Child);

impl Drop for Compactor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `strata serve --role compactor` opens no client port: wait for its banner.
fn compactor(srv: &S3Server, url: &str, cache: &Path) -> Compactor {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(["serve", "--role", "compactor", "--store-url", url])
        .env("STRATA_CACHE_DIR", cache)
        .stdout(std::process::Stdio::piped());
    for (k, v) in srv.env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start strata serve --role compactor");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let c = Compactor(child);
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert!(
        first.contains("compacting (--role compactor)"),
        "compactor banner: {first:?}"
    );
    std::thread::spawn(move || for _ in lines {});
    c
}

/// The first column of the first row of a simple query, as text.
async fn text(c: &Client, sql: &str) -> String {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("").to_string();
        }
    }
    panic!("{sql}: no row")
}

/// Make `c` wait for the commit at `t` (read your writes across nodes).
async fn read_after(c: &Client, t: &str) {
    c.batch_execute(&format!(
        "SET strata.read_after = '{t}'; SET strata.read_after_timeout = '10s'"
    ))
    .await
    .unwrap();
    // The wait happens before the next statement.
    c.batch_execute("SELECT 1").await.unwrap();
}

/// 300 `n = n + 1` updates of one row, spread over three nodes (two
/// clients each), each retried on 40001 until acknowledged: n ends at 300
/// on every node. Without first-committer-wins across nodes, two nodes
/// that read the same n both write n + 1 and one increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_no_update() {
    let _one = ONE_AT_A_TIME.lock().await;
    let srv = S3Server::start();
    let url = srv.url(&srv.fresh_prefix("counter"));
    let caches = tempfile::tempdir().unwrap();
    let nodes: Vec<Server> = (0..3)
        .map(|i| node(&srv, &url, caches.path(), &format!("n{i}"), &[]))
        .collect();
    let setup = nodes[0].client().await;
    setup
        .batch_execute("INSERT INTO counter (_id, n) VALUES (1, 0)")
        .await
        .unwrap();
    let created = text(&setup, "SHOW strata.last_commit").await;
    const CLIENTS_PER_NODE: usize = 2;
    const UPDATES: usize = 300;
    let remaining = Arc::new(Mutex::new(UPDATES));
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for _ in 0..CLIENTS_PER_NODE {
            let c = n.client().await;
            read_after(&c, &created).await;
            let remaining = remaining.clone();
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut refused) = (0usize, 0usize);
                let mut last = String::new();
                loop {
                    {
                        let mut r = remaining.lock().unwrap();
                        if *r == 0 {
                            break;
                        }
                        *r -= 1;
                    }
                    loop {
                        match c
                            .execute("UPDATE counter SET n = n + 1 WHERE _id = 1", &[])
                            .await
                        {
                            Ok(1) => break,
                            Ok(k) => panic!("node {i}: UPDATE touched {k} rows"),
                            Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                                refused += 1
                            }
                            Err(e) => panic!("node {i}: {e:?}"),
                        }
                    }
                    acked += 1;
                    last = text(&c, "SHOW strata.last_commit").await;
                }
                (i, acked, refused, last)
            }));
        }
    }
    let mut acked = 0;
    let mut refused = 0;
    let mut latest = created.clone();
    let mut per_node = [0usize; 3];
    for t in tasks {
        let (i, a, r, last) = t.await.unwrap();
        acked += a;
        refused += r;
        per_node[i] += a;
        latest = latest.max(last);
    }
    println!(
        "{acked} updates acknowledged ({per_node:?} per node), {refused} refused with 40001 and retried"
    );
    assert_eq!(acked, UPDATES);
    assert!(per_node.iter().all(|&a| a > 0), "{per_node:?}");
    assert!(
        refused > 0,
        "no update ever raced another: the test shows nothing"
    );
    // Every node, once it has applied the last acknowledged commit, has them all.
    for (i, n) in nodes.iter().enumerate() {
        let c = n.client().await;
        read_after(&c, &latest).await;
        assert_eq!(
            text(&c, "SELECT n FROM counter WHERE _id = 1").await,
            UPDATES.to_string(),
            "node {i}"
        );
        // And the history holds each increment once: versions 0..=300.
        assert_eq!(
            text(
                &c,
                "SELECT count(DISTINCT n) FROM counter FOR ALL SYSTEM_TIME WHERE _id = 1"
            )
            .await,
            (UPDATES + 1).to_string(),
            "node {i}"
        );
    }
}

/// Three nodes insert 1,000 distinct rows each, concurrently; a watcher
/// on every node lists the table every 50 ms. Every acknowledged row must
/// show up on all three within 1 s of its acknowledgement (nodes follow
/// the shared log every 100 ms by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_each_others_rows_within_a_second() {
    let _one = ONE_AT_A_TIME.lock().await;
    let srv = S3Server::start();
    let url = srv.url(&srv.fresh_prefix("visibility"));
    let caches = tempfile::tempdir().unwrap();
    let nodes: Vec<Server> = (0..3)
        .map(|i| node(&srv, &url, caches.path(), &format!("n{i}"), &[]))
        .collect();
    let setup = nodes[0].client().await;
    setup
        .batch_execute("INSERT INTO seen (_id, node) VALUES (-1, -1)")
        .await
        .unwrap();
    let created = text(&setup, "SHOW strata.last_commit").await;
    // first_seen[node][id]
    let first_seen: Arc<Mutex<Vec<BTreeMap<i64, Instant>>>> =
        Arc::new(Mutex::new(vec![BTreeMap::new(); 3]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut watchers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let c = n.client().await;
        read_after(&c, &created).await;
        c.batch_execute("SET strata.read_after = ''").await.unwrap();
        let first_seen = first_seen.clone();
        let stop = stop.clone();
        watchers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = c.query("SELECT _id FROM seen", &[]).await.unwrap();
                let now = Instant::now();
                {
                    let mut fs = first_seen.lock().unwrap();
                    for r in rows {
                        fs[i].entry(r.get::<_, i64>(0)).or_insert(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    const ROWS: i64 = 1000;
    const PER_COMMIT: i64 = 10;
    let mut writers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let c = n.client().await;
        writers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for k in 0..ROWS / PER_COMMIT {
                let ids: Vec<i64> = (0..PER_COMMIT)
                    .map(|j| i as i64 * ROWS + k * PER_COMMIT + j)
                    .collect();
                let values: Vec<String> = ids.iter().map(|id| format!("({id}, {i})")).collect();
                c.batch_execute(&format!(
                    "INSERT INTO seen (_id, node) VALUES {}",
                    values.join(", ")
                ))
                .await
                .unwrap();
                let at = Instant::now();
                acks.extend(ids.into_iter().map(|id| (id, at)));
            }
            acks
        }));
    }
    let mut acks: Vec<(i64, Instant)> = Vec::new();
    for w in writers {
        acks.extend(w.await.unwrap());
    }
    // Let the watchers see the last rows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in watchers {
        w.await.unwrap();
    }
    let fs = first_seen.lock().unwrap();
    let mut worst = Duration::ZERO;
    let mut lags = Vec::new();
    for (id, acked) in &acks {
        for (node, seen) in fs.iter().enumerate() {
            let at = seen
                .get(id)
                .unwrap_or_else(|| panic!("row {id} never seen on node {node}"));
            let lag = at.saturating_duration_since(*acked);
            worst = worst.max(lag);
            lags.push(lag);
            assert!(
                lag <= Duration::from_secs(1),
                "row {id} showed up on node {node} {lag:?} after its acknowledgement"
            );
        }
    }
    lags.sort();
    println!(
        "{} rows x 3 nodes: visible after p50 {:?}, p99 {:?}, max {worst:?} (watchers poll every 50 ms)",
        acks.len(),
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100]
    );
    assert_eq!(acks.len() as i64, 3 * ROWS);
}

/// kill -9 of each node in turn while all three write (small flushes, so
/// flushes and compactions run all the time): nothing acknowledged is
/// lost, the other nodes keep acknowledging while one is down, and the
/// killed node rejoins from the bucket and has everything.
///
/// In 2 of about 10 CI runs on 2026-12-05 (ignored since), one node,
/// though it had applied the last acknowledged commit
/// (`strata.read_after`), lacked one acknowledged row from the last second
/// of writes; one cause (queries saw a node's state go back while it
/// adopted a manifest) was fixed then, the other was not found, and it has
/// not shown again in 50 runs since under a loaded machine (2026-12-06).
/// If it fails that way, the test prints (DEBUG) whether the row shows up
/// 3 s later and how many versions of it the node has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_and_rejoins() {
    let _one = ONE_AT_A_TIME.lock().await;
    let srv = S3Server::start();
    let url = srv.url(&srv.fresh_prefix("kill"));
    let caches = tempfile::tempdir().unwrap();
    let args = ["--flush-rows", "40"];
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| node(&srv, &url, caches.path(), &format!("n{i}"), &args))
        .collect();
    nodes[0]
        .client()
        .await
        .batch_execute("INSERT INTO k (_id, node) VALUES (-1, -1)")
        .await
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<i64>>> = Default::default();
    let latest: Arc<Mutex<String>> = Default::default();
    let next_id = Arc::new(std::sync::atomic::AtomicI64::new(0));
    for victim in 0..3 {
        // Writers on every node for a while; then kill the victim mid-write.
        let mut writers = Vec::new();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (i, n) in nodes.iter().enumerate() {
            let c = n.client().await;
            let (acked, latest, next_id, stop) =
                (acked.clone(), latest.clone(), next_id.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut mine = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sql = format!(
                        "INSERT INTO k (_id, node) VALUES ({id}, {i}), ({}, {i})",
                        -id - 2
                    );
                    match c.batch_execute(&sql).await {
                        Ok(()) => {
                            acked.lock().unwrap().insert(id);
                            mine += 1;
                            // The row follows the RowDescription message:
                            // reading only the first message recorded
                            // nothing, so the final check did not wait for
                            // the last commits and raced the nodes' catch-up.
                            if let Ok(t) = c.simple_query("SHOW strata.last_commit").await {
                                let row = t.iter().find_map(|m| match m {
                                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                                    _ => None,
                                });
                                if let Some(t) = row {
                                    let mut l = latest.lock().unwrap();
                                    if t > *l {
                                        *l = t;
                                    }
                                }
                            }
                        }
                        // The victim's connections break when it dies.
                        Err(_) => break,
                    }
                }
                (i, mine)
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500 + 500 * victim as u64)).await;
        let before_kill = acked.lock().unwrap().len();
        nodes[victim].child.kill().unwrap();
        nodes[victim].child.wait().unwrap();
        // The others keep acknowledging while the victim is down (given up
        // to 3 s: under CI load a debug node can be slow for a while).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let mut after_kill = acked.lock().unwrap().len();
        for _ in 0..20 {
            if after_kill > before_kill + 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            after_kill = acked.lock().unwrap().len();
        }
        assert!(
            after_kill > before_kill + 5,
            "round {victim}: the surviving nodes stopped acknowledging ({before_kill} -> {after_kill})"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            let (i, mine) = w.await.unwrap();
            assert!(mine > 0 || i == victim, "node {i} acknowledged nothing");
        }
        // The victim rejoins from the bucket.
        nodes[victim] = node(&srv, &url, caches.path(), &format!("n{victim}"), &args);
        println!(
            "round {victim}: killed node {victim} with {before_kill} rows acknowledged, {after_kill} a second later; restarted"
        );
    }
    // Every acknowledged row (both of its rows: no partial transaction) on every node.
    let latest = latest.lock().unwrap().clone();
    assert!(
        !latest.is_empty(),
        "no commit position recorded: the check below would not wait for the last commits"
    );
    let acked = acked.lock().unwrap().clone();
    for (i, n) in nodes.iter().enumerate() {
        let c = n.client().await;
        read_after(&c, &latest).await;
        let rows = c.query("SELECT _id FROM k", &[]).await.unwrap();
        let present: BTreeSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
        let missing: Vec<i64> = acked
            .iter()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            let s = text(&c, "SHOW strata.read_after").await;
            let m = text(&c, "SELECT max(_system_from) FROM k").await;
            println!(
                "DEBUG node {i} missing {missing:?}; latest {latest}; read_after {s}; max sf {m}"
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            let rows = c.query("SELECT _id FROM k", &[]).await.unwrap();
            let again: BTreeSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
            println!(
                "DEBUG after 3 s still missing: {:?}",
                missing
                    .iter()
                    .filter(|id| !again.contains(id))
                    .collect::<Vec<_>>()
            );
            let all = text(
                &c,
                &format!(
                    "SELECT count(*) FROM k FOR ALL SYSTEM_TIME WHERE _id = {}",
                    missing[0]
                ),
            )
            .await;
            println!("DEBUG versions of it in all system time: {all}");
        }
        assert!(
            missing.is_empty(),
            "node {i}: {} acknowledged rows lost: {missing:?}",
            missing.len()
        );
        for id in &acked {
            assert!(
                present.contains(&(-id - 2)),
                "node {i}: transaction {id} only half there"
            );
        }
        for id in present.iter().filter(|&&id| id >= 0) {
            assert!(
                present.contains(&(-id - 2)),
                "node {i}: transaction {id} only half there"
            );
        }
        println!(
            "node {i}: {} rows, all {} acknowledged present",
            present.len(),
            acked.len()
        );
    }
}

/// A reader node answers queries and refuses writes (25006) and never
/// writes to the bucket; a compactor node opens no client port and merges
/// the segments writers flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_compactor_roles() {
    let _one = ONE_AT_A_TIME.lock().await;
    let srv = S3Server::start();
    let prefix = srv.fresh_prefix("roles");
    let url = srv.url(&prefix);
    let caches = tempfile::tempdir().unwrap();
    let writer = node(
        &srv,
        &url,
        caches.path(),
        "w",
        &["--no-compaction", "--flush-rows", "20"],
    );
    let reader = node(&srv, &url, caches.path(), "r", &["--role", "reader"]);
    let _compactor = compactor(&srv, &url, &caches.path().join("c"));
    let w = writer.client().await;
    for k in 0..10 {
        let values: Vec<String> = (0..25).map(|j| format!("({}, {j})", k * 25 + j)).collect();
        w.batch_execute(&format!(
            "INSERT INTO r (_id, v) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    }
    let t = text(&w, "SHOW strata.last_commit").await;
    let r = reader.client().await;
    read_after(&r, &t).await;
    assert_eq!(text(&r, "SELECT count(*) FROM r").await, "250");
    let e = r
        .batch_execute("INSERT INTO r (_id, v) VALUES (1000, 1)")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{e:?}"
    );
    let e = r
        .batch_execute("BEGIN; UPDATE r SET v = 0 WHERE _id = 1")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{e:?}"
    );
    r.batch_execute("ROLLBACK").await.unwrap();
    // The writer flushed level-0 segments; the compactor merges them.
    let storage = strata_storage::store::Storage::open(&srv.location(&prefix)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = strata_storage::manifest::Manifest::load_latest(&storage)
            .await
            .unwrap();
        let levels: Vec<u32> = m
            .tables
            .get("r")
            .map(|t| t.segments.iter().map(|s| s.meta.level).collect())
            .unwrap_or_default();
        if levels.iter().any(|&l| l > 0) {
            println!("compacted: segment levels {levels:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no compaction by the compactor node within 30 s: levels {levels:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The reader still answers (it adopts the compactor's manifest).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(text(&r, "SELECT count(*) FROM r").await, "250");
}
