//! Compaction and collection: segments stay few, the present never opens
//! history, answers are unchanged by compaction at every coordinate, and
//! collection leaves exactly what the manifests in their grace period need.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMicrosecondType};
use strata_storage::manifest::Manifest;
use strata_storage::{
    Coordinate, Engine, EngineConfig, Op, OpKind, StoreLocation, TestClock, Tier, TimeSelector,
    TxRequest, OPEN,
};

fn put(ids: &[i64], v: i64) -> Op {
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(vec![v; ids.len()])),
    ];
    Op {
        kind: OpKind::Put,
        table: "t".into(),
        batch: RecordBatch::try_new(schema, cols).unwrap(),
    }
}

fn tx(ops: Vec<Op>) -> TxRequest {
    TxRequest {
        ops,
        system_time: None,
        read_at: None,
    }
}

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(StoreLocation::Local(dir.to_path_buf()));
    c.clock = Arc::new(TestClock::new(1_000_000_000_000, 1_000_000));
    c.compaction.background = false;
    c.compaction.target_bytes = 256 << 10;
    c
}

fn tiers(engine: &Engine) -> String {
    let latest = engine.latest_system_time();
    let _ = latest;
    let scan = engine.scan("t", Coordinate::all(), None).unwrap().unwrap();
    scan.segments
        .iter()
        .map(|(s, _)| format!("{}/{}:{}", s.meta.tier.name(), s.meta.level, s.meta.rows))
        .collect::<Vec<_>>()
        .join(" ")
}

type Row = (i64, Option<i64>, i64, i64, i64, i64);

/// Every row a scan returns, sorted.
async fn rows(engine: &Engine, coord: Coordinate) -> Vec<Row> {
    let Some(scan) = engine.scan("t", coord, None).unwrap() else {
        return Vec::new();
    };
    let mut batches = scan.live.clone();
    for i in 0..scan.segments.len() {
        batches.extend(scan.segment(i).await.unwrap());
    }
    let mut out = Vec::new();
    for b in batches {
        let id = b
            .column_by_name("_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let v = b
            .column_by_name("v")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let ts = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
        };
        let (vf, vt, sf, st) = (
            ts("_valid_from"),
            ts("_valid_to"),
            ts("_system_from"),
            ts("_system_to"),
        );
        let open = |a: &arrow::array::TimestampMicrosecondArray, i: usize| {
            if a.is_null(i) {
                OPEN
            } else {
                a.value(i)
            }
        };
        for i in 0..b.num_rows() {
            out.push((
                id.value(i),
                (!v.is_null(i)).then(|| v.value(i)),
                open(&vf, i),
                open(&vt, i),
                open(&sf, i),
                open(&st, i),
            ));
        }
    }
    out.sort();
    out
}

fn coords(engine: &Engine, times: &[i64]) -> Vec<Coordinate> {
    let latest = engine.latest_system_time();
    let mut v = vec![
        Coordinate::all(),
        Coordinate::as_of(latest, latest),
        Coordinate {
            system: TimeSelector::AsOf(latest),
            valid: TimeSelector::All,
        },
    ];
    for &t in times {
        v.push(Coordinate::as_of(t, t));
        v.push(Coordinate {
            system: TimeSelector::AsOf(t),
            valid: TimeSelector::All,
        });
    }
    v
}

fn segment_count(engine: &Engine) -> usize {
    engine.table_stats("t").unwrap().1
}

#[tokio::test]
async fn segments_grow_like_the_log_of_the_data_and_answers_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    // A target size the data never reaches: only the policy's levels count.
    let big = |d: &Path| {
        let mut c = config(d);
        c.compaction.target_bytes = 1 << 30;
        c
    };
    let engine = Engine::open(big(dir.path())).await.unwrap();
    let mut times = Vec::new();
    let mut counts = Vec::new();
    let mut model = std::collections::BTreeMap::new();
    for flush in 0..1000i64 {
        // 20 new entities, and 10 overwrites of older ones (history).
        let new: Vec<i64> = (flush * 20..flush * 20 + 20).collect();
        let old: Vec<i64> = (0..10)
            .map(|k| (flush * 7 + k * 13) % (flush * 20 + 1))
            .collect();
        let info = engine
            .commit(tx(vec![put(&new, flush), put(&old, -flush)]))
            .await
            .unwrap();
        for id in &new {
            model.insert(*id, flush);
        }
        for id in &old {
            model.insert(*id, -flush);
        }
        if flush % 97 == 0 {
            times.push(info.system_time);
        }
        engine.flush().await.unwrap();
        // What the background task does after a flush.
        engine.compact(false).await.unwrap();
        if [9, 99, 999].contains(&flush) {
            counts.push(segment_count(&engine));
        }
    }
    eprintln!(
        "segments after 10 / 100 / 1000 flushes: {counts:?}; {}",
        tiers(&engine)
    );
    // Logarithmic: at most fanout - 1 segments per level and tier (three
    // compacted tiers, plus level 0), levels = log4(flushes).
    let levels = |n: f64| n.log(4.0).ceil() as usize;
    for (n, c) in [(10.0, counts[0]), (100.0, counts[1]), (1000.0, counts[2])] {
        assert!(
            c <= 3 * (3 * levels(n)) + 3,
            "{n} flushes: {counts:?} {}",
            tiers(&engine)
        );
    }
    // The present is every entity's last write.
    let latest = engine.latest_system_time();
    let present: Vec<(i64, i64)> = rows(&engine, Coordinate::as_of(latest, latest))
        .await
        .iter()
        .map(|r| (r.0, r.1.unwrap()))
        .collect();
    assert_eq!(present, model.into_iter().collect::<Vec<_>>());
    // A forced compaction changes no answer at any coordinate.
    let mut before = Vec::new();
    for c in coords(&engine, &times) {
        before.push((c, rows(&engine, c).await));
    }
    engine.checkpoint().await.unwrap();
    for (c, want) in &before {
        assert_eq!(&rows(&engine, *c).await, want, "at {c:?}");
    }
    // Reopen: the same answers from the compacted segments.
    let all = rows(&engine, Coordinate::all()).await;
    drop(engine);
    let engine = Engine::open(big(dir.path())).await.unwrap();
    assert_eq!(rows(&engine, Coordinate::all()).await, all);
}

#[tokio::test]
async fn checkpoint_separates_current_from_history_and_the_present_skips_history() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).await.unwrap();
    let ids: Vec<i64> = (0..5000).collect();
    let first = engine.commit(tx(vec![put(&ids, 0)])).await.unwrap();
    engine.checkpoint().await.unwrap();
    let present_before = rows(
        &engine,
        Coordinate::as_of(first.system_time, first.system_time),
    )
    .await;
    let mut times = vec![first.system_time];
    for round in 1..=10 {
        let info = engine.commit(tx(vec![put(&ids, round)])).await.unwrap();
        times.push(info.system_time);
        engine.flush().await.unwrap();
    }
    let before: Vec<(Coordinate, Vec<Row>)> = {
        let mut v = Vec::new();
        for c in coords(&engine, &times) {
            v.push((c, rows(&engine, c).await));
        }
        v
    };
    engine.checkpoint().await.unwrap();
    for (c, want) in &before {
        assert_eq!(&rows(&engine, *c).await, want, "at {c:?}");
    }
    // At the present: only current segments, holding exactly the current
    // rows (the valid-time past of each entity is in `bounded` segments,
    // superseded rectangles in `history`).
    let latest = engine.latest_system_time();
    let scan = engine
        .scan("t", Coordinate::as_of(latest, latest), None)
        .unwrap()
        .unwrap();
    assert!(!scan.segments.is_empty());
    for (seg, del) in &scan.segments {
        assert_eq!(seg.meta.tier, Tier::Current, "{}", seg.meta.path);
        assert_eq!(del.count(), 0);
    }
    let current_rows: u64 = scan.segments.iter().map(|(s, _)| s.meta.rows).sum();
    assert_eq!(current_rows, 5000);
    // As of the first load, valid now: what was believed then about now,
    // read from the first round's history segment only.
    let t0 = times[0];
    let c = Coordinate::as_of(t0, latest);
    let scan = engine.scan("t", c, None).unwrap().unwrap();
    assert!(
        scan.segments
            .iter()
            .all(|(s, _)| s.meta.tier == Tier::History),
        "{}",
        tiers(&engine)
    );
    let read: u64 = scan.segments.iter().map(|(s, _)| s.meta.rows).sum();
    assert_eq!(read, 5000, "{}", tiers(&engine));
    let old = rows(&engine, c).await;
    assert_eq!(old.len(), 5000);
    assert!(old.iter().all(|r| r.1 == Some(0)));
    // As of the first load, valid then: from `bounded` segments, never current ones.
    let c = Coordinate::as_of(t0, t0);
    let scan = engine.scan("t", c, None).unwrap().unwrap();
    assert!(scan
        .segments
        .iter()
        .all(|(s, _)| s.meta.tier != Tier::Current));
    let old = rows(&engine, c).await;
    assert_eq!(old.len(), 5000);
    assert!(old.iter().all(|r| r.1 == Some(0)));
    // The first load's own answer then, with `_system_to` now closed.
    assert_eq!(
        present_before
            .iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        old.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>()
    );
}

/// Every object under `dir`, as store paths.
fn objects(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test]
async fn collection_keeps_what_manifests_in_grace_need_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.gc.grace = Duration::from_secs(3600);
    cfg.gc.log_retention = Duration::ZERO;
    let engine = Engine::open(cfg).await.unwrap();
    let ids: Vec<i64> = (0..300).collect();
    for round in 0..12 {
        engine.commit(tx(vec![put(&ids, round)])).await.unwrap();
        engine.flush().await.unwrap();
    }
    // A query planned before the compaction ...
    let latest = engine.latest_system_time();
    let early = engine
        .scan("t", Coordinate::as_of(latest, latest), None)
        .unwrap()
        .unwrap();
    let before = objects(dir.path());
    let all_before = rows(&engine, Coordinate::all()).await;
    engine.checkpoint().await.unwrap();
    // ... finishes with the right answer: within the grace period nothing it
    // reads was deleted.
    let mut n = early.live.iter().map(|b| b.num_rows()).sum::<usize>();
    for i in 0..early.segments.len() {
        n += early.segment(i).await.unwrap().map_or(0, |b| b.num_rows());
    }
    assert_eq!(n, 300);
    let after = objects(dir.path());
    assert!(before
        .iter()
        .filter(|p| p.starts_with("tables/"))
        .all(|p| after.contains(p)));
    drop(engine);

    // After the grace period (zero now): only the newest manifest's objects
    // remain, and the log after its watermark (none: it covers everything).
    let mut cfg = config(dir.path());
    cfg.gc.grace = Duration::ZERO;
    cfg.gc.log_retention = Duration::ZERO;
    let engine = Engine::open(cfg).await.unwrap();
    let report = engine.collect_garbage().await.unwrap();
    assert!(report.objects_deleted > 0, "{report:?}");
    let store = objects(dir.path());
    let m = Manifest::load_latest(engine.storage()).await.unwrap();
    let mut expect: BTreeSet<String> = BTreeSet::new();
    expect.insert(format!("manifest/{:020}.json", m.version));
    for tm in m.tables.values() {
        for se in &tm.segments {
            expect.insert(se.meta.path.clone());
            expect.insert(se.meta.bloom_path.clone());
            if let Some(p) = &se.deleted_path {
                expect.insert(p.clone());
            }
        }
    }
    for seq in m.log_seq + 1..=engine.applied_seq() {
        expect.insert(format!("log/{seq:020}"));
    }
    assert_eq!(store, expect);
    let latest = engine.latest_system_time();
    assert_eq!(
        rows(&engine, Coordinate::as_of(latest, latest)).await.len(),
        300
    );
    assert_eq!(rows(&engine, Coordinate::all()).await, all_before);
}

/// A backlog of level-0 flushes (a bulk load outrunning compaction) is
/// merged a bounded piece at a time: each merge takes the oldest flushes
/// that fit `max_job_bytes` (at least two), not the whole backlog decoded
/// at once, and no answer changes.
#[tokio::test]
async fn a_level_zero_backlog_is_merged_in_bounded_pieces() {
    // The bound follows the memory budget unless set.
    let mut c = config(Path::new("/unused"));
    assert_eq!(c.compaction_job_bytes(), None);
    c.memory_limit = Some(1 << 30);
    assert_eq!(c.compaction_job_bytes(), Some(128 << 20));
    c.compaction.max_job_bytes = Some(5);
    assert_eq!(c.compaction_job_bytes(), Some(5));
    // So does the segment size: at most an eighth of the budget.
    c.compaction.target_bytes = 100 << 20;
    assert_eq!(c.compaction_target_bytes(), 100 << 20);
    c.memory_limit = Some(512 << 20);
    assert_eq!(c.compaction_target_bytes(), 64 << 20);

    let (unbounded, _) = level_zero_backlog(None).await;
    let (bounded, engine) = level_zero_backlog(Some(1)).await;
    // Without a bound the ten flushes merge at once (then history runs);
    // with one, merges of two flushes until fewer than the fan-out (4)
    // are left, then the same.
    assert!(
        bounded >= unbounded + 3,
        "{bounded} merges with a bound, {unbounded} without: {}",
        tiers(&engine)
    );
}

/// Ten level-0 flushes, compacted by the background policy: the number
/// of merges, and the engine (answers checked before and after, and after
/// a CHECKPOINT).
async fn level_zero_backlog(max_job_bytes: Option<u64>) -> (usize, Arc<Engine>) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.compaction.target_bytes = 1 << 30;
    c.compaction.max_job_bytes = max_job_bytes;
    let engine = Engine::open(c).await.unwrap();
    let mut times = Vec::new();
    for flush in 0..10i64 {
        let new: Vec<i64> = (flush * 300..flush * 300 + 300).collect();
        let old: Vec<i64> = (0..50)
            .map(|k| (k * 37 + flush) % (flush * 300 + 1))
            .collect();
        let info = engine
            .commit(tx(vec![put(&new, flush), put(&old, -flush)]))
            .await
            .unwrap();
        times.push(info.system_time);
        engine.flush().await.unwrap();
    }
    let level0 = |e: &Engine| {
        let scan = e.scan("t", Coordinate::all(), None).unwrap().unwrap();
        scan.segments
            .iter()
            .filter(|(s, _)| s.meta.tier == Tier::L0)
            .count()
    };
    assert_eq!(level0(&engine), 10, "{}", tiers(&engine));
    let mut before = Vec::new();
    for c in coords(&engine, &times) {
        before.push((c, rows(&engine, c).await));
    }
    let merges = engine.compact(false).await.unwrap();
    assert!(level0(&engine) < 4, "{}", tiers(&engine));
    for (c, want) in &before {
        assert_eq!(&rows(&engine, *c).await, want, "at {c:?}");
    }
    engine.checkpoint().await.unwrap();
    assert_eq!(level0(&engine), 0, "{}", tiers(&engine));
    for (c, want) in &before {
        assert_eq!(&rows(&engine, *c).await, want, "after CHECKPOINT, at {c:?}");
    }
    (merges, engine)
}

fn erase(ids: &[i64]) -> Op {
    let schema = Arc::new(Schema::new(vec![Field::new("_id", DataType::Int64, false)]));
    let cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec()))];
    Op {
        kind: OpKind::Erase,
        table: "t".into(),
        batch: RecordBatch::try_new(schema, cols).unwrap(),
    }
}

/// A read planned before an ERASE rewrote its segments still answers (no
/// "segment listed in the manifest is missing"); the replaced objects go
/// once that reader is done, so the erased bytes still end up gone.
#[tokio::test]
async fn a_read_planned_before_an_erase_purge_finishes_and_the_bytes_go_after() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path())).await.unwrap();
        let ids: Vec<i64> = (1..=100).collect();
        engine.commit(tx(vec![put(&ids, 1)])).await.unwrap();
        engine.flush().await.unwrap();
        // Retires rows of the first segment: it has deleted rows, so an
        // erase of one of its entities rewrites it.
        engine.commit(tx(vec![put(&ids[..10], 2)])).await.unwrap();
        engine.flush().await.unwrap();
    }
    // Reopened: no segment file is open yet.
    let engine = Engine::open(config(dir.path())).await.unwrap();
    let planned = engine.scan("t", Coordinate::all(), None).unwrap().unwrap();
    let before = objects(dir.path());
    engine.commit(tx(vec![erase(&[50])])).await.unwrap();
    let mut n = 0;
    for i in 0..planned.segments.len() {
        let b = planned
            .segment(i)
            .await
            .unwrap_or_else(|e| panic!("segment {i} of a read planned before the erase: {e}"));
        n += b.map_or(0, |b| b.num_rows());
    }
    // As planned, every rectangle: 90 untouched, 30 from the 10 overwritten
    // (each first version is kept whole and split into its parts).
    assert_eq!(n, 120);
    // While the read holds them, the replaced segment files stay.
    let replaced: Vec<String> = before
        .iter()
        .filter(|p| p.ends_with(".arrow") && !objects(dir.path()).contains(*p))
        .cloned()
        .collect();
    assert!(replaced.is_empty(), "deleted under a reader: {replaced:?}");
    drop(planned);
    // Then they go: no object of the store still holds entity 50's row.
    let gone = |dir: &Path| {
        let now = objects(dir);
        before
            .iter()
            .filter(|p| p.ends_with(".arrow") && p.starts_with("tables/"))
            .any(|p| !now.contains(p))
    };
    for _ in 0..100 {
        if gone(dir.path()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(dir.path()), "no replaced segment was deleted");
    let now = engine.scan("t", Coordinate::all(), None).unwrap().unwrap();
    let mut n = 0;
    for i in 0..now.segments.len() {
        n += now.segment(i).await.unwrap().map_or(0, |b| b.num_rows());
    }
    // Entity 50 (one rectangle) is gone.
    assert_eq!(n, 120 - 1);
}
