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
//! Collection in a writer only finds something once what its own
//! compactions superseded is older than the grace period, so every fourth
//! round lets the writer run past it (kills after 1.2–2.5 s; otherwise
//! 150–700 ms, and every sixth round under 60 ms, during the open).
//!
//! After every kill, before anything reopens the directory, every manifest
//! still in the store (the newest and the older ones collection keeps for
//! their grace period) must name only objects that exist; after reopening,
//! the newest one too, and every other one that collection does not remove
//! meanwhile. To show that the kills land amid compactions and collections,
//! the writer reports its storage counters (compactions published, objects
//! and log records collected) while it runs, and the parent compares the
//! store before and after each writer's life: compacted segments that
//! appeared, objects and manifests that collection deleted, and objects
//! written but not yet published when the kill came. The test requires at
//! least one compaction and one collection before a kill (with 3 rounds or
//! more). The node reopened for checking runs on a runtime of its own that
//! is shut down before the next writer starts, so only the writer touches
//! the store while it runs.
//!
//! `crash_recovery` runs on a local directory. `crash_recovery_s3` runs the
//! same rounds on a real S3-compatible server (moto, started by the test;
//! see `tests/support/s3.rs`): the writer and the reopened node open a
//! prefix of its bucket (through a disk cache, the writer's kept across its
//! lives like a restarted node's, the checking node's fresh every round), and
//! the store snapshots list that prefix. Existence checks of the objects a
//! manifest names go to the store itself (uncached), never to a cache.
//! Opening takes longer on S3 (every request is a round trip to the
//! server), so there the kill delays count from the writer's READY, except
//! in the rounds meant to kill it while it opens; and moto serves one request
//! at a time, so fewer rounds run. The two tests take turns (a lock), so each
//! writer has the machine's cores to itself as the delays assume.
//!
//! `STRATA_CRASH_ROUNDS` changes the number of rounds on a directory (default
//! 24), `STRATA_CRASH_S3_ROUNDS` on S3 (default 8), `STRATA_CRASH_SEED`
//! replays a run's kill delays.

#[path = "support/s3.rs"]
mod s3;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use rand::{Rng, SeedableRng};
use strata::{Config, Db, StoreLocation};
use strata_storage::manifest::Manifest;
use strata_storage::store::Storage;

/// The writer's store directory (on S3: its cache directory); set, it
/// makes `writer_child` the writer.
const CHILD_DIR: &str = "STRATA_CRASH_CHILD";
const CHILD_START: &str = "STRATA_CRASH_START";
/// On S3: the server's endpoint and the store's prefix in its bucket.
const CHILD_S3_ENDPOINT: &str = "STRATA_CRASH_S3_ENDPOINT";
const CHILD_S3_PREFIX: &str = "STRATA_CRASH_S3_PREFIX";
const FLUSH_ROWS: usize = 64;
const WRITERS: i64 = 3;
/// The writers write in bursts: `BURST_MS` of every `CYCLE_MS` (counted
/// from READY), all at once, then pause together. Under unbroken writes the
/// background task stays in compaction (new flushes keep giving it work)
/// and collection, which waits for compaction, does not run for seconds;
/// the pauses let compaction settle and collection run, so kills land in
/// flushes, compactions and collections alike.
const BURST_MS: u128 = 300;
const CYCLE_MS: u128 = 500;

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
async fn writer(db: &Db, w: i64, first: i64, ready: Instant) {
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
        let phase = ready.elapsed().as_millis() % CYCLE_MS;
        if phase >= BURST_MS {
            tokio::time::sleep(Duration::from_millis((CYCLE_MS - phase) as u64)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// The writer's settings: small flushes, and compaction and collection
/// running all the time (small target segments, a one-second grace period
/// and collection interval, no log retention), so that kills land during
/// flushes, compactions and collections.
fn child_config(location: StoreLocation, cache: Option<&Path>) -> Config {
    let c = Config::location(location);
    let c = match cache {
        Some(dir) => c.with_cache_dir(dir),
        None => c,
    };
    c.with_flush_rows(FLUSH_ROWS)
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
/// early, nothing published before it was written). `storage` has no
/// cache: an object must be in the store, not just in a node's cache.
async fn check_manifest_objects(storage: &Storage, round: usize) {
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

/// What the store holds: every object under `tables/` (with its modification
/// time, µs) and every manifest (with its modification time and contents;
/// `None` if collection deleted it between listing and reading).
#[derive(Default)]
struct Snapshot {
    objects: HashMap<String, i64>,
    manifests: BTreeMap<String, (i64, Option<Manifest>)>,
}

impl Snapshot {
    /// Manifests first, then the objects: an object a listed manifest names
    /// can only be missing from the listing if it was deleted (or never
    /// written).
    async fn take(storage: &Storage) -> Snapshot {
        let mut manifests = BTreeMap::new();
        let listed = storage
            .list_with_meta("manifest")
            .await
            .expect("list manifests");
        for (path, modified, _) in listed.into_iter().filter(|(p, _, _)| p.ends_with(".json")) {
            let m = storage
                .get(&path)
                .await
                .expect("read a manifest")
                .map(|b| Manifest::parse(&path, &b).expect("parse a manifest"));
            manifests.insert(path, (modified, m));
        }
        let objects = storage
            .list_with_meta("tables")
            .await
            .expect("list objects")
            .into_iter()
            .map(|(p, modified, _)| (p, modified))
            .collect();
        Snapshot { objects, manifests }
    }

    /// Every object some present manifest names.
    fn named(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for m in self.manifests.values().filter_map(|(_, m)| m.as_ref()) {
            for tm in m.tables.values() {
                for se in &tm.segments {
                    out.insert(se.meta.path.as_str());
                    out.insert(se.meta.bloom_path.as_str());
                    out.extend(se.deleted_path.as_deref());
                }
            }
        }
        out
    }

    /// "manifest … names missing object …" for every present manifest.
    fn incomplete(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, (_, m)) in &self.manifests {
            let Some(m) = m else { continue };
            for (table, tm) in &m.tables {
                for se in &tm.segments {
                    let mut paths = vec![&se.meta.path, &se.meta.bloom_path];
                    paths.extend(se.deleted_path.as_ref());
                    for p in paths.into_iter().filter(|p| !self.objects.contains_key(*p)) {
                        out.push(format!(
                            "manifest {path} (version {}) of table {table} names missing object {p}",
                            m.version
                        ));
                    }
                }
            }
        }
        out
    }

    /// Objects under `tables/` by kind: segments (and blooms) a flush wrote,
    /// segments (and blooms) a compaction wrote, deletion vectors.
    fn kind(path: &str) -> usize {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name.contains(".del-") {
            2
        } else if name.starts_with("seg-") {
            0
        } else {
            1
        }
    }
}

/// After a kill, nothing touches the store: every manifest in it must be
/// complete (a crash must never leave one naming a deleted or unwritten
/// object, whatever the grace period).
fn check_all_manifests_quiet(snap: &Snapshot, round: usize) {
    let bad = snap.incomplete();
    if bad.is_empty() {
        return;
    }
    let version = |p: &str| {
        p.trim_start_matches("manifest/")
            .trim_end_matches(".json")
            .parse::<u64>()
            .unwrap_or(0)
    };
    let incomplete: BTreeSet<u64> = bad
        .iter()
        .map(|b| version(b.split(' ').nth(1).unwrap()))
        .collect();
    let present: Vec<u64> = snap.manifests.keys().map(|p| version(p)).collect();
    panic!(
        "round {round}: after the kill, {} of the {} manifests in the store (versions {}..={}) \
         name missing objects: versions {incomplete:?}\n{}",
        incomplete.len(),
        present.len(),
        present.first().unwrap(),
        present.last().unwrap(),
        bad.join("\n")
    );
}

/// With the reopened node running (its collection may be deleting an
/// expired manifest and its objects right now): every manifest must name
/// only existing objects, except one that collection removes within a few
/// seconds.
async fn check_all_manifests_live(db: &Db, round: usize) {
    let storage = db.database().engine().storage();
    let mut bad = Vec::new();
    for _ in 0..50 {
        bad = Snapshot::take(storage).await.incomplete();
        if bad.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "round {round}: after reopening, manifests name missing objects:\n{}",
        bad.join("\n")
    );
}

/// What the writer reported and what the store shows about its life.
#[derive(Default)]
struct RoundActivity {
    /// Compactions published before the kill (as far as reported).
    compactions: u64,
    compactions_discarded: u64,
    /// Collections that deleted something, and what they deleted.
    collections: u64,
    objects_collected: u64,
    log_records_collected: u64,
    /// How long before the kill the last compaction / collection was reported.
    last_compaction_ago: Option<Duration>,
    last_collection_ago: Option<Duration>,
}

/// Between `before` (the store as the writer found it) and `after` (as the
/// kill left it): [flush, compaction, deletion-vector] objects that
/// appeared; objects and manifests that disappeared; and the objects this
/// writer wrote after the newest manifest that no manifest names (a flush
/// or compaction in progress at the kill).
struct StoreDelta {
    added: [usize; 3],
    deleted_objects: usize,
    deleted_manifests: usize,
    unpublished: [usize; 3],
}

fn store_delta(before: &Snapshot, after: &Snapshot) -> StoreDelta {
    let mut added = [0; 3];
    for p in after
        .objects
        .keys()
        .filter(|p| !before.objects.contains_key(*p))
    {
        added[Snapshot::kind(p)] += 1;
    }
    let deleted_objects = before
        .objects
        .keys()
        .filter(|p| !after.objects.contains_key(*p))
        .count();
    let deleted_manifests = before
        .manifests
        .keys()
        .filter(|p| !after.manifests.contains_key(*p))
        .count();
    let newest_at = after
        .manifests
        .values()
        .map(|(t, _)| *t)
        .max()
        .unwrap_or(i64::MIN);
    let named = after.named();
    let mut unpublished = [0; 3];
    // `>=`: S3 lists modification times in whole seconds, so an object
    // written after the newest manifest can show that manifest's time.
    for (p, &t) in &after.objects {
        if t >= newest_at && !named.contains(p.as_str()) && !before.objects.contains_key(p) {
            unpublished[Snapshot::kind(p)] += 1;
        }
    }
    StoreDelta {
        added,
        deleted_objects,
        deleted_manifests,
        unpublished,
    }
}

/// The writer process. Does nothing unless started by `crash_recovery`.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
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
        let config = match std::env::var(CHILD_S3_ENDPOINT) {
            Ok(endpoint) => {
                let prefix = std::env::var(CHILD_S3_PREFIX).expect("child: S3 prefix");
                child_config(s3::location_for(&endpoint, &prefix), Some(&dir))
            }
            Err(_) => child_config(StoreLocation::Local(dir), None),
        };
        let db = Db::open(config).await.expect("child: open");
        println!("\nREADY");
        let ready = Instant::now();
        // Report the storage counters whenever they change, so the parent
        // knows how many compactions and collections ran before the kill.
        let engine = db.database().engine().clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let c = engine.storage_counters().map(|(_, v)| v);
                if last != Some(c) {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "STAT {} {} {} {}", c[0], c[1], c[2], c[3]).unwrap();
                    out.flush().unwrap();
                    last = Some(c);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let writers = (0..WRITERS).map(|w| writer(&db, w, starts[w as usize], ready));
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

/// Reopen the store and check it against the acknowledged transactions.
/// `next` is each writer's next transaction index before the round; returns
/// the new one.
async fn verify(
    target: &Target,
    next: &[i64],
    acked: &[i64],
    round: usize,
) -> (Vec<i64>, std::sync::Weak<strata_storage::engine::Engine>) {
    // A fresh cache every round: queries must find what they read in the store.
    let cache = tempfile::tempdir().unwrap();
    let config = child_config(target.location(), target.is_s3().then_some(cache.path()));
    let db = Db::open(config).await.expect("reopen after kill");
    let engine = std::sync::Arc::downgrade(db.database().engine());
    check_manifest_objects(&target.uncached(), round).await;
    check_all_manifests_live(&db, round).await;
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
    (after, engine)
}

/// The writer's reported counters, as of the kill.
fn activity(stats: &[(Instant, [u64; 4])], killed_at: Instant) -> RoundActivity {
    let mut a = RoundActivity::default();
    let mut prev = [0u64; 4];
    for &(at, c) in stats {
        let ago = Some(killed_at.saturating_duration_since(at));
        if c[0] > prev[0] {
            a.last_compaction_ago = ago;
        }
        if c[2] > prev[2] || c[3] > prev[3] {
            a.collections += 1;
            a.last_collection_ago = ago;
        }
        prev = c;
    }
    [
        a.compactions,
        a.compactions_discarded,
        a.objects_collected,
        a.log_records_collected,
    ] = prev;
    a
}

/// Sums over the rounds of what the writers did before their kills.
#[derive(Default)]
struct Totals {
    rounds_compacted: usize,
    rounds_collected: usize,
    compactions: u64,
    compactions_discarded: u64,
    collections: u64,
    objects_collected: u64,
    log_records_collected: u64,
    compacted_objects: usize,
    flushed_objects: usize,
    deleted_objects: usize,
    deleted_manifests: usize,
    kills_mid_compaction: usize,
    kills_mid_flush: usize,
}

impl Totals {
    /// Add one round; returns its line.
    fn add(&mut self, a: &RoundActivity, d: &StoreDelta) -> String {
        self.rounds_compacted += (a.compactions > 0) as usize;
        self.rounds_collected += (a.collections > 0) as usize;
        self.compactions += a.compactions;
        self.compactions_discarded += a.compactions_discarded;
        self.collections += a.collections;
        self.objects_collected += a.objects_collected;
        self.log_records_collected += a.log_records_collected;
        self.flushed_objects += d.added[0];
        self.compacted_objects += d.added[1];
        self.deleted_objects += d.deleted_objects;
        self.deleted_manifests += d.deleted_manifests;
        self.kills_mid_flush += (d.unpublished[0] > 0) as usize;
        self.kills_mid_compaction += (d.unpublished[1] > 0) as usize;
        let ago = |d: Option<Duration>| match d {
            Some(d) => format!(" (last {} ms before the kill)", d.as_millis()),
            None => String::new(),
        };
        let mut in_progress = Vec::new();
        if d.unpublished[1] > 0 {
            in_progress.push(format!("a compaction ({} files written)", d.unpublished[1]));
        }
        if d.unpublished[0] > 0 || d.unpublished[2] > 0 {
            in_progress.push(format!(
                "a flush ({} files written)",
                d.unpublished[0] + d.unpublished[2]
            ));
        }
        format!(
            "writer: {} compactions published{}, {} collections deleting {} objects and {} log records{}; \
             store: +{} flushed, +{} compacted, +{} deletion vectors, -{} objects, -{} manifests; \
             unpublished at the kill: {}",
            a.compactions,
            ago(a.last_compaction_ago),
            a.collections,
            a.objects_collected,
            a.log_records_collected,
            ago(a.last_collection_ago),
            d.added[0],
            d.added[1],
            d.added[2],
            d.deleted_objects,
            d.deleted_manifests,
            if in_progress.is_empty() {
                "nothing".to_string()
            } else {
                in_progress.join(", ")
            }
        )
    }

    fn summary(&self) -> String {
        format!(
            "writers published {} compactions ({} discarded) in {} rounds and ran {} collections \
             (deleting {} objects, {} log records) in {} rounds before their kills; \
             the store gained {} flushed and {} compacted objects and lost {} objects and {} manifests \
             while writers ran; {} kills left a compaction's output unpublished, {} a flush's",
            self.compactions,
            self.compactions_discarded,
            self.rounds_compacted,
            self.collections,
            self.objects_collected,
            self.log_records_collected,
            self.rounds_collected,
            self.flushed_objects,
            self.compacted_objects,
            self.deleted_objects,
            self.deleted_manifests,
            self.kills_mid_compaction,
            self.kills_mid_flush
        )
    }
}

/// Where a crash test's store lives.
enum Target {
    Dir(tempfile::TempDir),
    S3 {
        srv: s3::S3Server,
        prefix: String,
        /// The writer's disk cache, kept across its lives.
        cache: tempfile::TempDir,
    },
}

impl Target {
    fn is_s3(&self) -> bool {
        matches!(self, Target::S3 { .. })
    }

    fn location(&self) -> StoreLocation {
        match self {
            Target::Dir(dir) => StoreLocation::Local(dir.path().into()),
            Target::S3 { srv, prefix, .. } => srv.location(prefix),
        }
    }

    /// The store with no disk cache, for looking at what it really holds.
    fn uncached(&self) -> Storage {
        let no_cache = strata_storage::CacheConfig {
            dir: None,
            size: Some(0),
        };
        Storage::open_with_cache(&self.location(), &no_cache).expect("open the store")
    }

    /// Point a writer process at the store.
    fn child_env(&self, cmd: &mut Command) {
        match self {
            Target::Dir(dir) => {
                cmd.env(CHILD_DIR, dir.path());
            }
            Target::S3 { srv, prefix, cache } => {
                cmd.env(CHILD_DIR, cache.path())
                    .env(CHILD_S3_ENDPOINT, srv.endpoint())
                    .env(CHILD_S3_PREFIX, prefix);
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Dir(dir) => dir.path().display().to_string(),
            Target::S3 { srv, prefix, .. } => format!("{} on {}", srv.url(prefix), srv.endpoint()),
        }
    }
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The two tests take turns: each writer's kill delays assume it has the
/// machine to itself.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn crash_recovery() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    run_crash_test(Target::Dir(dir), env_or("STRATA_CRASH_ROUNDS", 24));
}

#[test]
fn crash_recovery_s3() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let srv = s3::S3Server::start();
    let prefix = srv.fresh_prefix("crash");
    let target = Target::S3 {
        srv,
        prefix,
        cache: tempfile::tempdir().unwrap(),
    };
    run_crash_test(target, env_or("STRATA_CRASH_S3_ROUNDS", 8));
}

fn run_crash_test(target: Target, rounds: usize) {
    let seed: u64 = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!(
        "crash test on {}: {rounds} rounds, {WRITERS} concurrent writers, STRATA_CRASH_SEED={seed}",
        target.describe()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // For looking at the store between rounds (no engine runs on it).
    let io_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storage = io_rt.block_on(async { target.uncached() });
    // The store as the next writer finds it.
    let mut before = Snapshot::default();
    let mut t = Totals::default();
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
        let mut cmd = Command::new(&exe);
        cmd.args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_START, &starts)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        target.child_env(&mut cmd);
        let mut child = cmd.spawn().expect("spawn writer");
        let spawned_at = Instant::now();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut ready = None;
            let mut acked = Vec::new();
            let mut stats: Vec<(Instant, [u64; 4])> = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("ACK ") {
                    acked.push(k.trim().parse::<i64>().unwrap());
                } else if let Some(c) = line.strip_prefix("STAT ") {
                    let c: Vec<u64> = c.split(' ').map(|v| v.parse().unwrap()).collect();
                    stats.push((Instant::now(), [c[0], c[1], c[2], c[3]]));
                } else if line == "READY" {
                    ready = Some(Instant::now());
                    let _ = ready_tx.send(());
                }
            }
            (ready, acked, stats)
        });
        // Mostly while it writes; now and then while it opens (recovering a
        // recovery); and every fourth round after more than the grace
        // period, when what its own compactions superseded is collectable,
        // so that it is collecting when killed.
        let while_opening = round % 6 == 5;
        let delay = if while_opening {
            rng.random_range(1..60)
        } else if round % 4 == 2 {
            rng.random_range(1200..2500)
        } else {
            rng.random_range(150..700)
        };
        // On S3 opening takes a while: count from READY (the writer's
        // stderr says why if it never comes).
        if target.is_s3() && !while_opening {
            let _ = ready_rx.recv_timeout(Duration::from_secs(60));
        }
        std::thread::sleep(Duration::from_millis(delay));
        let exited_early = child.try_wait().unwrap();
        child.kill().expect("SIGKILL the writer");
        let killed_at = Instant::now();
        child.wait().unwrap();
        let (ready_at, acked, stats) = reader.join().unwrap();
        let ready = ready_at.is_some();
        // Where in the writers' cycle the kill came (as the parent saw READY).
        let phase = match ready_at {
            Some(at)
                if killed_at.saturating_duration_since(at).as_millis() % CYCLE_MS >= BURST_MS =>
            {
                "in a pause"
            }
            Some(_) => "in a burst",
            None => "while opening",
        };
        if let Some(status) = exited_early {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("round {round}: the writer exited by itself ({status}) before the kill:\n{err}");
        }
        if !acked.is_empty() {
            killed_while_writing += 1;
        }
        total_acked += acked.len();
        // Before anything reopens the store: every manifest in it is complete.
        let killed = io_rt.block_on(Snapshot::take(&storage));
        check_all_manifests_quiet(&killed, round);
        let activity = activity(&stats, killed_at);
        let delta = store_delta(&before, &killed);
        // A runtime of its own for the reopened node, shut down once the
        // node is gone (its background task holds it while compacting or
        // collecting, and ends when it finds it gone), so that only the
        // writer touches the store while it runs and nothing is cancelled
        // half-way.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (after, engine) = rt.block_on(verify(&target, &next, &acked, round));
        let closing = Instant::now();
        while engine.strong_count() > 0 {
            assert!(
                closing.elapsed() < Duration::from_secs(30),
                "round {round}: the reopened node is still alive 30 s after it was dropped"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(rt);
        before = io_rt.block_on(Snapshot::take(&storage));
        println!(
            "round {round:2}: killed after {delay:4} ms{} (ready: {ready}, {phase}), {:4} acknowledged, per-writer next {next:?} -> {after:?}",
            if target.is_s3() && !while_opening {
                format!(" past READY ({} ms after the start)", killed_at.duration_since(spawned_at).as_millis())
            } else {
                String::new()
            },
            acked.len()
        );
        println!("          {}", t.add(&activity, &delta));
        next = after;
    }
    let (segments, logs) = io_rt.block_on(async {
        let tables = storage.list("tables").await.expect("list tables");
        let logs = storage.list("log").await.expect("list the log");
        (
            tables.iter().filter(|p| p.ends_with(".arrow")).count(),
            logs.len(),
        )
    });
    println!(
        "crash test: {total_acked} acknowledged over {rounds} rounds ({killed_while_writing} killed mid-write), \
         {} transactions present, {logs} log objects, {segments} segment files, {:.1?}",
        next.iter().sum::<i64>(),
        started.elapsed()
    );
    println!("crash test: {}", t.summary());
    // (Long rounds, where collection finds something, start at round 2.)
    assert!(
        rounds < 3 || t.rounds_compacted >= 1 && t.compacted_objects >= 1,
        "no compaction was published before any kill: kills never landed amid compactions"
    );
    assert!(
        rounds < 3 || t.rounds_collected >= 1 && t.deleted_objects >= 1,
        "no collection deleted anything before any kill: kills never landed amid collections"
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
