//! The storage engine of one node: opens the latest manifest and replays the
//! log, commits transactions (group commit over conditional log writes),
//! applies them to the tables, flushes segments, and serves scans.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::compaction::CompactionConfig;
use crate::entity::{check_id_column, hash_column, EntityId};
use crate::error::{Error, Result};
use crate::gc::GcConfig;
use crate::log::{log_path, LogRecord, Op, OpKind, Transaction};
use crate::manifest::{
    manifest_path, table_dir, Manifest, SegmentEntryManifest, TableManifest, FORMAT_VERSION,
};
use crate::reader::OpenFiles;
use crate::schema::{
    adapt_array, normalize_array, timestamp_type, TableSchema, ID, SYSTEM_FROM, SYSTEM_TO,
    VALID_FROM, VALID_TO,
};
use crate::segment::{self, Segment, SegmentFile};
use crate::store::{CreateOutcome, FaultHook, Storage, StoreLocation};
use crate::table::{
    batch_may_match, scan_batch, valid_columns, DeletionVector, PieceSel, SegFiles, SegmentEntry,
    TableState,
};
use crate::temporal::Coordinate;
use crate::time::{fmt_micros, Clock, Micros, SystemClock, OPEN};

/// How to open an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub location: StoreLocation,
    pub clock: Arc<dyn Clock>,
    /// Flush the live index to segments once it holds this many rectangles.
    pub flush_rows: usize,
    pub fault: Option<Arc<dyn FaultHook>>,
    /// The process memory budget in bytes (`--memory-limit`); the storage
    /// engine takes shares of it for the live index and open segment files.
    pub memory_limit: Option<usize>,
    pub compaction: CompactionConfig,
    pub gc: GcConfig,
    /// The disk cache of a remote store (`--cache-dir`, `--cache-size`).
    pub cache: crate::cache::CacheConfig,
    /// A node that only reads (`strata serve --role reader`): commits and
    /// flushes are refused, nothing runs in the background, and nothing is
    /// ever written to the store. It follows the log and adopts the
    /// manifests writer nodes publish.
    pub read_only: bool,
}

impl EngineConfig {
    pub fn new(location: StoreLocation) -> Self {
        EngineConfig {
            location,
            clock: Arc::new(SystemClock),
            flush_rows: 1_000_000,
            fault: None,
            memory_limit: None,
            compaction: CompactionConfig::default(),
            gc: GcConfig::default(),
            cache: Default::default(),
            read_only: false,
        }
    }

    /// Bytes the live index may hold before it is flushed: a quarter of the budget.
    pub fn live_budget(&self) -> usize {
        self.memory_limit
            .map(|m| m / 4)
            .unwrap_or(1 << 30)
            .max(1 << 20)
    }

    /// Bytes of input one level-0 merge may take: what the compaction
    /// settings say, else an eighth of the budget (at least 16 MiB), else
    /// no bound.
    pub fn compaction_job_bytes(&self) -> Option<u64> {
        self.compaction
            .max_job_bytes
            .or_else(|| self.memory_limit.map(|m| (m as u64 / 8).max(16 << 20)))
    }

    /// Target size of a compacted segment: the setting, at most an eighth
    /// of the memory budget (at least 8 MiB). A merge maps its inputs (up
    /// to `fanout` segments of half the target) while it writes outputs of
    /// the target size, so a small budget gets smaller segments.
    pub fn compaction_target_bytes(&self) -> u64 {
        let t = self.compaction.target_bytes;
        match self.memory_limit {
            Some(m) => t.min((m as u64 / 8).max(8 << 20)),
            None => t,
        }
    }

    /// Bytes of segment files kept open (mapped) at once: a quarter of the budget.
    pub fn open_files_budget(&self) -> usize {
        self.memory_limit
            .map(|m| m / 4)
            .unwrap_or(1 << 30)
            .max(16 << 20)
    }
}

/// A summary of what opening the engine read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub millis: u64,
    pub bytes_read: u64,
    pub objects_read: u64,
    pub log_records_replayed: u64,
    pub segments: u64,
}

/// What a committed transaction got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    pub seq: u64,
    pub system_time: Micros,
}

/// A transaction to commit.
#[derive(Debug, Clone, Default)]
pub struct TxRequest {
    pub ops: Vec<Op>,
    /// `BEGIN READ WRITE WITH (SYSTEM_TIME = …)`.
    pub system_time: Option<Micros>,
    /// The system time of the snapshot the writes were computed from (an
    /// UPDATE or DELETE read the rows it rewrites there). The commit is
    /// refused (`Error::Conflict`, SQLSTATE 40001) if a transaction that
    /// committed after it wrote one of the same entities: first committer
    /// wins (`crate::conflict`). `None`: blind writes (INSERT, COPY,
    /// ingest), last writer wins.
    pub read_at: Option<Micros>,
}

/// How long a node commits without looking for a newer manifest: far
/// below any log retention (default 24 h, at least the grace period).
const MANIFEST_STALE: std::time::Duration = std::time::Duration::from_secs(60);

struct Pending {
    tx: TxRequest,
    reply: oneshot::Sender<Result<CommitInfo>>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) tables: BTreeMap<String, TableState>,
    pub(crate) applied_seq: u64,
    pub(crate) last_system_time: Micros,
    pub(crate) manifest_version: u64,
}

impl State {
    fn live_rows(&self) -> usize {
        self.tables.values().map(|t| t.live.rects.len()).sum()
    }
    fn live_bytes(&self) -> usize {
        self.tables.values().map(|t| t.live.bytes).sum()
    }
}

pub struct Engine {
    pub(crate) storage: Storage,
    clock: Arc<dyn Clock>,
    flush_rows: usize,
    live_budget: usize,
    read_only: bool,
    pub(crate) state: RwLock<State>,
    /// Held by whoever changes `state`: the group-commit leader, a flush, a catch-up.
    pub(crate) writer: tokio::sync::Mutex<()>,
    queue: Mutex<Vec<Pending>>,
    pub(crate) open_files: Arc<OpenFiles>,
    pub(crate) compaction: CompactionConfig,
    /// Recent writes, for first-committer-wins checks.
    history: Mutex<crate::conflict::WriteHistory>,
    pub(crate) gc: GcConfig,
    /// One compaction at a time on this node.
    pub(crate) compacting: tokio::sync::Mutex<()>,
    /// Wakes the background compaction task (after a flush).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Bumped by every erase: a compaction that started before one is discarded
    /// (its output could hold the erased bytes).
    pub(crate) erase_epoch: std::sync::atomic::AtomicU64,
    /// Own erases between applying their record and finishing its purge
    /// (the log is being rewritten): change feeds wait (crate::feed).
    pub(crate) purging: AtomicU64,
    /// The applied log seq, for change feeds waiting for the next record.
    pub(crate) applied_watch: tokio::sync::watch::Sender<u64>,
    /// Records applied recently, kept while change feeds are open so that
    /// a feed that keeps up reads no log object (crate::feed).
    pub(crate) recent: Mutex<std::collections::VecDeque<Arc<LogRecord>>>,
    /// Open change feeds.
    pub(crate) feeds: std::sync::atomic::AtomicUsize,
    /// When this node last looked for a newer manifest (see `commit_group`).
    manifest_checked: Mutex<std::time::Instant>,
    /// Set when this node's last commit saw no record by another node: the
    /// next commit writes `log/<applied + 1>` without first reading it
    /// (one round trip, not two). The conditional create still catches a
    /// record written meanwhile (`LogWrite::Taken`: catch up and retry).
    sole_writer: std::sync::atomic::AtomicBool,
    /// The highest log seq this node acknowledged as committed. Above
    /// `applied_seq` only when a commit was durable but applying it here
    /// failed (a read fault): reads catch up first (`apply_acknowledged`).
    acked_seq: AtomicU64,
    open_report: Mutex<OpenReport>,
    pub(crate) counters: EngineCounters,
}

/// One segment as the `strata_segments` system table shows it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub table: String,
    pub tier: &'static str,
    pub level: u32,
    pub rows: u64,
    pub dead_rows: u64,
    pub bytes: u64,
    pub batches: u32,
    pub path: String,
    pub system_from_min: Micros,
    pub system_to_max: Micros,
    /// Its file is open (mapped) now.
    pub open: bool,
}

/// Counters for operators (system tables).
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub compactions: std::sync::atomic::AtomicU64,
    pub compactions_discarded: std::sync::atomic::AtomicU64,
    pub objects_collected: std::sync::atomic::AtomicU64,
    pub log_records_collected: std::sync::atomic::AtomicU64,
    /// Log creates that found their seq taken by another node's record.
    pub races_lost: std::sync::atomic::AtomicU64,
    /// Empty records this node created to claim the next seq after losing
    /// a race (see `Engine::write_log`).
    pub knocks: std::sync::atomic::AtomicU64,
    /// Transactions this node committed, and commits that failed.
    pub commits: std::sync::atomic::AtomicU64,
    pub commit_failures: std::sync::atomic::AtomicU64,
    /// Commit latency (from `Engine::commit` to its answer), µs in all and
    /// a count per bucket of [`COMMIT_BUCKETS`].
    pub commit_micros: std::sync::atomic::AtomicU64,
    pub commit_buckets: [std::sync::atomic::AtomicU64; COMMIT_BUCKETS.len()],
}

/// Upper bounds (seconds) of the commit latency histogram's buckets.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Commits for operators (`/metrics`): counts, and latency as a histogram.
#[derive(Debug, Clone)]
pub struct CommitMetrics {
    pub commits: u64,
    pub failures: u64,
    pub seconds_sum: f64,
    /// (upper bound in seconds, commits at or under it), cumulative.
    pub buckets: Vec<(f64, u64)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("storage", &self.storage.describe())
            .finish()
    }
}

/// What a scan pruned and read (shown by `EXPLAIN ANALYZE`).
#[derive(Debug, Default)]
pub struct ScanMetrics {
    pub segments_total: AtomicU64,
    pub segments_pruned: AtomicU64,
    pub segments_read: AtomicU64,
    pub batches_pruned: AtomicU64,
    pub batches_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub live_rows: AtomicU64,
}

impl ScanMetrics {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A consistent view of one table for a scan: live rows already materialized,
/// segments to read (pruned by metadata) with their deletion vectors.
#[derive(Debug, Clone)]
pub struct TableScan {
    pub schema: SchemaRef,
    pub table_schema: Arc<TableSchema>,
    pub coord: Coordinate,
    pub ids: Option<Arc<Vec<(u64, EntityId)>>>,
    pub live: Vec<RecordBatch>,
    pub segments: Vec<(Arc<Segment>, Arc<DeletionVector>)>,
    /// User columns the query reads (`None`: all). Segment rows are filtered
    /// on these only; the others come back as NULL.
    pub columns: Option<Arc<Vec<String>>>,
    /// Which rows by their piece flag (all, only pieces, or none of them).
    pub pieces: PieceSel,
    /// Predicates on user columns that every row the query keeps satisfies:
    /// batches (and segments) whose statistics rule them out are skipped
    /// unread ([`crate::prune`]). Rows of the batches read are not filtered
    /// by them; the query's own filter does that.
    pub predicates: Arc<Vec<crate::prune::ColumnPredicate>>,
    pub metrics: Arc<ScanMetrics>,
    storage: Storage,
    files: Arc<OpenFiles>,
}

/// The scans of a read at a past system time: the rows that cannot merge,
/// at the read's coordinate, and, if the table may hold pieces, the pieces
/// over all of valid time, for the merge.
#[derive(Debug)]
pub struct PastScans {
    pub whole: TableScan,
    pub pieces: Option<TableScan>,
}

impl TableScan {
    /// Open segment `i`'s file (memory-mapped; through the cache for remote stores).
    pub async fn open_segment(&self, i: usize) -> Result<Arc<SegmentFile>> {
        self.files.open(&self.storage, &self.segments[i].0).await
    }

    /// The batches of segment `i` that may hold visible rows (by batch statistics).
    pub fn batches(&self, i: usize, file: &SegmentFile) -> Vec<usize> {
        let del = &self.segments[i].1;
        let ids = self.ids.as_deref().map(|v| v.as_slice());
        let keep: Vec<usize> = (0..file.num_batches())
            .filter(|&b| {
                batch_may_match(file, b, del, &self.coord, ids, self.pieces)
                    && crate::prune::batch_may_match(file, b, &self.predicates)
            })
            .collect();
        self.metrics
            .batches_pruned
            .fetch_add((file.num_batches() - keep.len()) as u64, Ordering::Relaxed);
        keep
    }

    /// Use `predicates` to skip data: segments whose manifest statistics
    /// rule them out are dropped from the scan now (counted as pruned), and
    /// batches are tested as they are read.
    pub fn with_predicates(mut self, predicates: Vec<crate::prune::ColumnPredicate>) -> Self {
        if predicates.is_empty() {
            return self;
        }
        let before = self.segments.len();
        self.segments.retain(|(seg, _)| {
            crate::prune::segment_may_match(&seg.meta.columns, seg.meta.rows, &predicates)
        });
        self.metrics
            .segments_pruned
            .fetch_add((before - self.segments.len()) as u64, Ordering::Relaxed);
        self.predicates = Arc::new(predicates);
        self
    }

    /// Visible rows of batch `b` of segment `i`.
    pub fn read_batch(
        &self,
        i: usize,
        file: &SegmentFile,
        b: usize,
    ) -> Result<Option<RecordBatch>> {
        self.metrics.batches_read.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes_read
            .fetch_add(file.batch_bytes(b) as u64, Ordering::Relaxed);
        scan_batch(
            &self.table_schema,
            &self.schema,
            file,
            b,
            &self.segments[i].1,
            &self.coord,
            self.ids.as_deref().map(|v| v.as_slice()),
            self.columns.as_deref().map(|v| v.as_slice()),
            self.pieces,
        )
    }

    /// Visible rows of segment `i`, batch by batch.
    pub fn segment_stream(
        self: &Arc<Self>,
        i: usize,
    ) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
        use futures::StreamExt;
        let scan = self.clone();
        let opened = async move {
            let file = scan.open_segment(i).await?;
            scan.metrics.segments_read.fetch_add(1, Ordering::Relaxed);
            let batches = scan.batches(i, &file);
            Ok::<_, Error>((scan, file, batches))
        };
        futures::stream::once(opened)
            .flat_map(move |r| match r {
                Err(e) => futures::stream::iter(vec![Err(e)]).boxed(),
                Ok((scan, file, batches)) => futures::stream::iter(batches)
                    .filter_map(move |b| {
                        let r = scan.read_batch(i, &file, b).transpose();
                        async move { r }
                    })
                    .boxed(),
            })
            .boxed()
    }

    /// Visible rows of segment `i` as one batch (for point lookups: few rows).
    pub async fn segment(&self, i: usize) -> Result<Option<RecordBatch>> {
        let file = self.open_segment(i).await?;
        self.metrics.segments_read.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        for b in self.batches(i, &file) {
            if let Some(x) = self.read_batch(i, &file, b)? {
                out.push(x);
            }
        }
        Ok(match out.len() {
            0 => None,
            1 => out.pop(),
            _ => Some(arrow::compute::concat_batches(&self.schema, &out)?),
        })
    }
}

impl Engine {
    pub async fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let started = std::time::Instant::now();
        let mut storage = Storage::open_with_cache(&config.location, &config.cache)?;
        if let Some(f) = &config.fault {
            storage = storage.with_fault_hook(f.clone());
        }
        let engine = Engine {
            storage,
            clock: config.clock.clone(),
            flush_rows: config.flush_rows.max(1),
            live_budget: config.live_budget(),
            read_only: config.read_only,
            state: RwLock::new(State::default()),
            writer: tokio::sync::Mutex::new(()),
            queue: Mutex::new(Vec::new()),
            open_files: Arc::new(OpenFiles::new(config.open_files_budget())),
            compaction: CompactionConfig {
                max_job_bytes: config.compaction_job_bytes(),
                target_bytes: config.compaction_target_bytes(),
                ..config.compaction.clone()
            },
            gc: config.gc.clone(),
            history: Mutex::new(Default::default()),
            compacting: tokio::sync::Mutex::new(()),
            wake: Arc::new(tokio::sync::Notify::new()),
            erase_epoch: AtomicU64::new(0),
            purging: AtomicU64::new(0),
            applied_watch: tokio::sync::watch::Sender::new(0),
            recent: Mutex::new(Default::default()),
            feeds: Default::default(),
            manifest_checked: Mutex::new(std::time::Instant::now()),
            sole_writer: std::sync::atomic::AtomicBool::new(false),
            acked_seq: AtomicU64::new(0),
            open_report: Mutex::new(OpenReport::default()),
            counters: EngineCounters::default(),
        };
        let _w = engine.writer.lock().await;
        let mut report = engine.reload().await?;
        drop(_w);
        report.millis = started.elapsed().as_millis() as u64;
        *engine.open_report.lock() = report;
        let engine = Arc::new(engine);
        if engine.compaction.background && !engine.read_only {
            crate::compaction::spawn_background(&engine);
        }
        Ok(engine)
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// What opening read (time, bytes, objects, log records replayed).
    pub fn open_report(&self) -> OpenReport {
        *self.open_report.lock()
    }

    /// Bytes of segment files open (mapped) now.
    pub fn open_file_bytes(&self) -> usize {
        self.open_files.open_bytes()
    }

    /// Rebuild in-memory state from the latest manifest and the log after it.
    /// Reads the manifest, the deletion vectors it names and the log tail;
    /// segment files and bloom filters are read when first needed.
    /// Caller holds `writer`.
    pub(crate) async fn reload(&self) -> Result<OpenReport> {
        let mut report = OpenReport::default();
        let (m, mbytes) = Manifest::load_latest_sized(&self.storage).await?;
        report.bytes_read += mbytes as u64;
        report.objects_read += 1;
        let mut tables = BTreeMap::new();
        for (name, tm) in &m.tables {
            let mut t = TableState::new(name);
            t.set_schema(TableSchema {
                columns: tm.columns.clone(),
            });
            for se in &tm.segments {
                let rows = se.meta.rows as usize;
                let deleted = match &se.deleted_path {
                    Some(p) => {
                        let b = self.storage.get(p).await?.ok_or_else(|| Error::Corrupt {
                            path: p.clone(),
                            reason: "deletion vector listed in the manifest is missing".into(),
                        })?;
                        report.bytes_read += b.len() as u64;
                        report.objects_read += 1;
                        DeletionVector::from_bytes(rows, &b).ok_or_else(|| Error::Corrupt {
                            path: p.clone(),
                            reason: "bad deletion vector".into(),
                        })?
                    }
                    None => DeletionVector::with_rows(rows),
                };
                report.segments += 1;
                t.segments.push(SegmentEntry {
                    seg: Arc::new(Segment::new(se.meta.clone())),
                    deleted: Arc::new(deleted),
                    deleted_path: se.deleted_path.clone(),
                    dirty: false,
                });
            }
            tables.insert(name.clone(), t);
        }
        let applied_before = self.state.read().applied_seq;
        let fresh = RwLock::new(State {
            tables,
            applied_seq: m.log_seq,
            last_system_time: m.last_system_time,
            manifest_version: m.version,
        });
        // Replay, off to the side, the records past the manifest this node
        // had applied already, then swap: queries running meanwhile keep
        // the old state, and never see one that went back in time (rows
        // acknowledged and seen, then gone until the replay ends). Their
        // writes are in the conflict history already.
        for seq in m.log_seq + 1..=applied_before {
            let path = log_path(seq);
            let bytes = self
                .storage
                .get(&path)
                .await?
                .ok_or_else(|| Error::Corrupt {
                    path: path.clone(),
                    reason:
                        "a log record this node applied is missing while it adopts a newer manifest"
                            .into(),
                })?;
            report.bytes_read += bytes.len() as u64;
            report.objects_read += 1;
            report.log_records_replayed += 1;
            let rec = LogRecord::decode(&path, &bytes)?;
            let files = self
                .files_for_in(&fresh, rec.txs.iter().flat_map(|t| t.ops.iter()))
                .await?;
            apply_to(&fresh, &rec, &files)?;
        }
        *self.state.write() = fresh.into_inner();
        // The records the manifest covers are not applied here; if we had
        // not applied them before either (at open, or far behind), their
        // writes are not in the conflict history: a snapshot older than the
        // manifest cannot be checked any more. Adopting a newer manifest
        // while caught up keeps the history whole.
        if m.log_seq > applied_before {
            self.history.lock().forget_until(m.last_system_time);
        }
        let (n, bytes) = self.catch_up_counted().await?;
        report.log_records_replayed += n;
        report.objects_read += n;
        report.bytes_read += bytes;
        Ok(report)
    }

    /// Apply log records written since we last looked (by this or another
    /// node). If the live index is then over its budget, adopt a newer
    /// manifest another node published (its segments hold what our live
    /// index would flush), else flush it ourselves (not on a read-only
    /// node): a node that only follows the log stays within its budget.
    pub async fn catch_up(&self) -> Result<u64> {
        let _w = self.writer.lock().await;
        let n = self.catch_up_locked().await?;
        if self.live_over_budget() && !self.adopt_newer_manifest_locked().await? && !self.read_only
        {
            self.flush_locked().await?;
        }
        Ok(n)
    }

    /// Wait until this node has applied the commit at system time `t` (made
    /// here or on another node), catching up with the log meanwhile; false
    /// if `timeout` passed first. Read-your-writes across nodes.
    pub async fn wait_for_system_time(
        &self,
        t: Micros,
        timeout: std::time::Duration,
    ) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.latest_system_time() >= t {
                return Ok(true);
            }
            self.catch_up().await?;
            if self.latest_system_time() >= t {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Make sure every commit this node acknowledged is applied here, so
    /// that a read after an acknowledged commit sees it. Costs an atomic
    /// load unless applying an own commit failed (a read fault while
    /// committing); then it catches up with the log, and errs (the read
    /// should be retried) if that fails too.
    pub async fn apply_acknowledged(&self) -> Result<()> {
        let acked = self.acked_seq.load(Ordering::SeqCst);
        if acked <= self.applied_seq() {
            return Ok(());
        }
        self.catch_up().await?;
        let applied = self.applied_seq();
        if applied < acked {
            return Err(Error::Internal(format!(
                "this node acknowledged the commit at log seq {acked} but the log ends at {applied}"
            )));
        }
        Ok(())
    }

    /// Whether this node refuses writes (`EngineConfig::read_only`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Adopt the newest manifest if another node published one after ours
    /// (a flush or a compaction): the segments it names replace ours and
    /// what the live index held that it covers. Costs one GET when there
    /// is none. Nodes call this now and then so that they stop reading
    /// segments a compaction elsewhere replaced well before collection
    /// deletes them (the grace period). Returns whether it adopted one.
    pub async fn adopt_newer_manifest(&self) -> Result<bool> {
        let _w = self.writer.lock().await;
        self.adopt_newer_manifest_locked().await
    }

    async fn adopt_newer_manifest_locked(&self) -> Result<bool> {
        *self.manifest_checked.lock() = std::time::Instant::now();
        let next = self.state.read().manifest_version + 1;
        if self.storage.get(&manifest_path(next)).await?.is_none() {
            return Ok(false);
        }
        self.reload().await?;
        // Its segments may be ready to merge (a compactor node's work).
        self.wake.notify_one();
        Ok(true)
    }

    /// `Error::ReadOnly` on a read-only node, saying what `what` could not do.
    pub fn check_writable(&self, what: &str) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly(format!(
                "cannot {what}: this node is read-only (strata serve --role reader); send writes to a writer node"
            )));
        }
        Ok(())
    }

    pub(crate) async fn catch_up_locked(&self) -> Result<u64> {
        Ok(self.catch_up_counted().await?.0)
    }

    /// Catch up; returns records applied and bytes read.
    async fn catch_up_counted(&self) -> Result<(u64, u64)> {
        let mut n = 0;
        let mut bytes_read = 0u64;
        loop {
            let seq = self.state.read().applied_seq + 1;
            let path = log_path(seq);
            let Some(bytes) = self.storage.get(&path).await? else {
                return Ok((n, bytes_read));
            };
            bytes_read += bytes.len() as u64;
            let rec = LogRecord::decode(&path, &bytes)?;
            if rec.seq != seq {
                return Err(Error::Corrupt {
                    path,
                    reason: format!("record says seq {}", rec.seq),
                });
            }
            self.apply_record(&rec).await?;
            n += 1;
        }
    }

    /// Open the segment files that applying `ops` to the current state reads.
    async fn files_for<'a>(&self, ops: impl Iterator<Item = &'a Op> + Clone) -> Result<SegFiles> {
        self.files_for_in(&self.state, ops).await
    }

    /// [`Engine::files_for`] against `state` (the engine's, or one being
    /// rebuilt by [`Engine::reload`]).
    async fn files_for_in<'a>(
        &self,
        state: &RwLock<State>,
        ops: impl Iterator<Item = &'a Op> + Clone,
    ) -> Result<SegFiles> {
        // Bloom filters first, so that only segments that may hold the entities are opened.
        let candidates: Vec<Arc<Segment>> = {
            let s = state.read();
            let mut v = Vec::new();
            for op in ops.clone() {
                if let Some(t) = s.tables.get(&op.table) {
                    v.extend(segments_needed_by(t, op));
                }
            }
            v
        };
        for seg in &candidates {
            seg.load_bloom(&self.storage).await?;
        }
        let needed: Vec<Arc<Segment>> = {
            let s = state.read();
            let mut v = Vec::new();
            for op in ops {
                if let Some(t) = s.tables.get(&op.table) {
                    v.extend(segments_needed_by(t, op));
                }
            }
            v
        };
        let mut files = SegFiles::new();
        for seg in needed {
            if !files.contains_key(&seg.meta.path) {
                let f = self.open_files.open(&self.storage, &seg).await?;
                files.insert(seg.meta.path.clone(), f);
            }
        }
        Ok(files)
    }

    /// Open the segments a record's events need, then apply it atomically.
    async fn apply_record(&self, rec: &LogRecord) -> Result<()> {
        let files = self
            .files_for(rec.txs.iter().flat_map(|t| t.ops.iter()))
            .await?;
        self.apply_with_files(rec, &files)
    }

    /// [`Engine::apply_record`] for a record this node just wrote: a failed
    /// read of the segment files it needs is retried (with backoff) before
    /// anything is applied.
    async fn apply_own_record(&self, rec: &LogRecord) -> Result<()> {
        let mut delay = RETRY_DELAY;
        let mut attempt = 1;
        let files = loop {
            match self
                .files_for(rec.txs.iter().flat_map(|t| t.ops.iter()))
                .await
            {
                Ok(f) => break f,
                Err(e) if attempt >= RETRIES => return Err(e),
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        };
        self.apply_with_files(rec, &files)
    }

    fn apply_with_files(&self, rec: &LogRecord, files: &SegFiles) -> Result<()> {
        apply_to(&self.state, rec, files)?;
        {
            let mut h = self.history.lock();
            for tx in &rec.txs {
                h.record_ops(tx.system_time, &tx.ops);
            }
        }
        let erases = rec
            .txs
            .iter()
            .any(|t| t.ops.iter().any(|o| o.kind == OpKind::Erase));
        if erases {
            self.erase_epoch.fetch_add(1, Ordering::SeqCst);
        }
        crate::feed::applied(self, rec, erases);
        self.applied_watch.send_replace(rec.seq);
        Ok(())
    }

    /// Commit a transaction: durable in the log when this returns `Ok`.
    /// Concurrent callers share log writes (group commit).
    pub async fn commit(&self, tx: TxRequest) -> Result<CommitInfo> {
        self.check_writable("commit a transaction")?;
        let started = std::time::Instant::now();
        let r = self.commit_inner(tx).await;
        let c = &self.counters;
        match &r {
            Ok(_) => {
                let us = started.elapsed().as_micros() as u64;
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.commit_micros.fetch_add(us, Ordering::Relaxed);
                let secs = us as f64 / 1e6;
                if let Some(i) = COMMIT_BUCKETS.iter().position(|b| secs <= *b) {
                    c.commit_buckets[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                c.commit_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    /// A clock reading, used up (the next commit gets a later one).
    pub(crate) fn clock_now_us(&self) -> Micros {
        self.clock.now_us()
    }

    /// Bytes the live index may hold before a flush.
    pub(crate) fn live_budget_bytes(&self) -> usize {
        self.live_budget
    }

    /// The engine clock's time now (the system time a commit starting now
    /// would about get), without using a reading up.
    pub fn clock_now(&self) -> Micros {
        self.clock.peek_us()
    }

    /// Commit counts and latency since this node started.
    pub fn commit_metrics(&self) -> CommitMetrics {
        let c = &self.counters;
        let mut total = 0;
        let buckets = COMMIT_BUCKETS
            .iter()
            .zip(&c.commit_buckets)
            .map(|(b, n)| {
                total += n.load(Ordering::Relaxed);
                (*b, total)
            })
            .collect();
        CommitMetrics {
            commits: c.commits.load(Ordering::Relaxed),
            failures: c.commit_failures.load(Ordering::Relaxed),
            seconds_sum: c.commit_micros.load(Ordering::Relaxed) as f64 / 1e6,
            buckets,
        }
    }

    async fn commit_inner(&self, tx: TxRequest) -> Result<CommitInfo> {
        let (reply, mut rx) = oneshot::channel();
        self.queue.lock().push(Pending { tx, reply });
        // Either another leader commits our transaction (answer on `rx`), or we
        // get the writer lock and lead a group. A follower must not wait for the
        // lock once answered: it would queue behind later leaders' log writes,
        // and its next transaction would end up alone in a log object.
        tokio::select! {
            biased;
            r = &mut rx => return r.map_err(|_| Error::Internal("commit leader went away".into()))?,
            _w = self.writer.lock() => {
                let batch = std::mem::take(&mut *self.queue.lock());
                if !batch.is_empty() {
                    self.commit_group(batch).await;
                }
            }
        }
        rx.await
            .map_err(|_| Error::Internal("commit leader went away".into()))?
    }

    /// Commit one transaction with the writer lock already held (a bulk
    /// load holds it from choosing its system time to its commit).
    pub(crate) async fn commit_locked(&self, tx: TxRequest) -> Result<CommitInfo> {
        let (reply, rx) = oneshot::channel();
        self.commit_group(vec![Pending { tx, reply }]).await;
        rx.await
            .map_err(|_| Error::Internal("commit leader went away".into()))?
    }

    /// Why a transaction holding a bulk load (`OpKind::Load`) may not commit
    /// now: its rows were written as segments on the promise that the table
    /// held no versions, so it must be alone in its transaction and the
    /// table must still be empty (another node may have written to it) and
    /// untouched by the transactions accepted before it in this group.
    fn refuse_load(&self, ops: &[Op], accepted: &[(Pending, Transaction)]) -> Option<Error> {
        let load = ops.iter().find(|o| o.kind == OpKind::Load)?;
        if ops.len() != 1 {
            return Some(Error::Invalid(
                "a bulk load must be the only event of its transaction".into(),
            ));
        }
        let touched = accepted
            .iter()
            .any(|(_, t)| t.ops.iter().any(|o| o.table == load.table));
        let holds = self
            .state
            .read()
            .tables
            .get(&load.table)
            .is_some_and(|t| t.holds_versions());
        (touched || holds).then(|| {
            Error::Invalid(format!(
                "table `{}` was written to while the bulk load ran (by another node?); \
                 nothing was loaded: load again",
                load.table
            ))
        })
    }

    async fn commit_group(&self, batch: Vec<Pending>) {
        let mut pending = batch;
        // A node that has not looked for a newer manifest for a long time
        // (a process paused past the log retention) may be following a log
        // whose next records collection deleted: it would take a sequence
        // number that is already past. Adopting the newest manifest first
        // puts it back on the live log. Serving nodes look every 2 s anyway.
        if self.manifest_checked.lock().elapsed() >= MANIFEST_STALE {
            if let Err(e) = self.adopt_newer_manifest_locked().await {
                return fail_all(pending, &e);
            }
        }
        // Alone on the log lately: write first (a create that succeeds at
        // `applied + 1` proves nothing newer exists, so what this group was
        // validated against was current), catch up only if it is taken.
        let mut look_first = !self.sole_writer.load(Ordering::Relaxed);
        // Whether this group saw a record by another node.
        let mut others = false;
        // Races for a seq this group lost.
        let mut losses = 0u32;
        loop {
            // Nothing is written yet: a failed read is retried, and if it
            // keeps failing the group is known not committed.
            let mut delay = RETRY_DELAY;
            let mut attempt = 1;
            while look_first {
                match self.catch_up_locked().await {
                    Ok(n) => {
                        others |= n > 0;
                        break;
                    }
                    Err(e) if attempt >= RETRIES => return fail_all(pending, &e),
                    Err(_) => {}
                }
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            // Assign system times and validate each transaction on its own.
            let (seq, mut last, mut schemas) = {
                let s = self.state.read();
                let schemas: HashMap<String, TableSchema> = s
                    .tables
                    .iter()
                    .map(|(k, v)| (k.clone(), v.schema.clone()))
                    .collect();
                (s.applied_seq + 1, s.last_system_time, schemas)
            };
            let mut accepted: Vec<(Pending, Transaction)> = Vec::new();
            // Entities written by transactions accepted so far in this group.
            let mut group_writes: HashMap<u64, Micros> = HashMap::new();
            // Keys of accepted writes matter to later transactions of this
            // group only if one of them read before writing.
            let any_reader = pending.iter().any(|p| p.tx.read_at.is_some());
            for p in pending {
                let t = match p.tx.system_time {
                    Some(t) if t <= last && p.tx.ops.iter().any(|o| o.kind == OpKind::Load) => {
                        let e = Error::Invalid(
                            "another node committed while the bulk load ran (its rows carry the \
                             system time at which it started, now in the past); nothing was loaded: \
                             load again"
                                .into(),
                        );
                        let _ = p.reply.send(Err(e));
                        continue;
                    }
                    Some(t) if t <= last => {
                        let e = Error::Invalid(format!(
                            "system time {} is not after the last committed transaction's system time {}; pin a later time",
                            fmt_micros(t),
                            fmt_micros(last)
                        ));
                        let _ = p.reply.send(Err(e));
                        continue;
                    }
                    Some(t) => t,
                    None => self.clock.now_us().max(last.saturating_add(1)),
                };
                if t == OPEN {
                    // i64::MAX stands for ∞; as a system time it would also overflow `last + 1`.
                    let e = Error::Invalid(format!(
                        "system time {} is the open bound (∞); pin an earlier time",
                        fmt_micros(t)
                    ));
                    let _ = p.reply.send(Err(e));
                    continue;
                }
                if let Some(e) = self.refuse_load(&p.tx.ops, &accepted) {
                    let _ = p.reply.send(Err(e));
                    continue;
                }
                let mut scratch = schemas.clone();
                match prepare_ops(&mut scratch, &p.tx.ops, t) {
                    Ok(ops) => {
                        // Keys of the normalized events (`_id` checked and
                        // widened by `prepare_ops`).
                        let keys = if any_reader {
                            crate::conflict::write_keys(&ops)
                        } else {
                            Vec::new()
                        };
                        if let Some(read_at) = p.tx.read_at {
                            let why = self.history.lock().conflict(read_at, &keys, &group_writes);
                            if let Some(why) = why {
                                let _ = p.reply.send(Err(Error::Conflict(why)));
                                continue;
                            }
                        }
                        schemas = scratch;
                        last = t;
                        for k in keys {
                            group_writes.insert(k, t);
                        }
                        accepted.push((
                            p,
                            Transaction {
                                system_time: t,
                                ops,
                            },
                        ));
                    }
                    Err(e) => {
                        let _ = p.reply.send(Err(e));
                    }
                }
            }
            if accepted.is_empty() {
                return;
            }
            let rec = LogRecord {
                seq,
                // New for every attempt: a record at `seq` carrying it is ours.
                nonce: crate::log::new_nonce(),
                txs: accepted.iter().map(|(_, t)| t.clone()).collect(),
            };
            let bytes = match rec.encode() {
                Ok(b) => b,
                Err(e) => return fail_all(accepted.into_iter().map(|(p, _)| p).collect(), &e),
            };
            // Knock (claim the seq after a taken one) from the second race
            // this group loses: the first loss may be a one-off; two in a
            // row mean another node is writing back to back.
            match self.write_log(seq, &rec.nonce, bytes, losses >= 1).await {
                Ok(LogWrite::Ours) => self.sole_writer.store(!others, Ordering::Relaxed),
                Ok(LogWrite::Taken {
                    other,
                    next,
                    knocked,
                }) => {
                    // Another node took this sequence number: apply its
                    // record (read back already), and our knock after it,
                    // then retry at once at the next seq. Reading the log
                    // first would cost the round trips in which the other
                    // node takes the next seq too. If applying fails, the
                    // retry catches up first.
                    others = true;
                    losses += 1;
                    self.counters.races_lost.fetch_add(1, Ordering::Relaxed);
                    self.sole_writer.store(false, Ordering::Relaxed);
                    look_first = !self.apply_taken(seq, &other, next.as_ref(), knocked).await;
                    pending = accepted
                        .into_iter()
                        .map(|(mut p, _)| {
                            p.tx.ops.shrink_to_fit();
                            p
                        })
                        .collect();
                    continue;
                }
                Err(LogWriteError::NotCommitted(kind, reason)) => {
                    for (p, _) in accepted {
                        let _ = p.reply.send(Err(Error::NotCommitted {
                            kind,
                            reason: reason.clone(),
                        }));
                    }
                    return;
                }
                Err(LogWriteError::Unknown(reason)) => {
                    // Nothing applied: if the record did land, the next
                    // catch-up (of this node or any other) applies it.
                    tracing::warn!("commit outcome unknown at seq {seq}: {reason}");
                    for (p, _) in accepted {
                        let _ = p.reply.send(Err(Error::CommitUnknown {
                            reason: reason.clone(),
                        }));
                    }
                    return;
                }
            }
            // Durable now. Applying reads the segment files the events touch
            // (retried; a node that cannot apply the record applies it at its
            // next catch-up: it is in the log either way).
            let erases = rec
                .txs
                .iter()
                .any(|t| t.ops.iter().any(|o| o.kind == OpKind::Erase));
            // Change feeds must not read the log between applying an erase
            // and the end of its purge (they would replay erased values).
            let _purging = erases.then(|| crate::feed::Purging::start(self));
            let applied = self.apply_own_record(&rec).await;
            // ERASE removes the bytes, not only the visibility: purge now,
            // before acknowledging, so that an acknowledged erase is gone from
            // segments and log. A purge that fails leaves the erase logically
            // done (every reader skips the rows) and is logged.
            let erased: Vec<&Op> = rec
                .txs
                .iter()
                .flat_map(|t| t.ops.iter())
                .filter(|o| o.kind == OpKind::Erase)
                .collect();
            if applied.is_ok() && !erased.is_empty() {
                let erased: Vec<Op> = erased.into_iter().cloned().collect();
                if let Err(e) = self.purge_locked(&erased, seq).await {
                    tracing::warn!(
                        "erase committed at seq {seq} but purging its bytes failed: {e}"
                    );
                }
            }
            // The record is in the log: the transactions are committed,
            // whether or not this node could apply them yet. Answering an
            // error would invite a retry that commits them twice. A node
            // that could not apply them catches up before its next read
            // (`apply_acknowledged`) or commit, so read-your-writes holds.
            if let Err(e) = &applied {
                tracing::warn!(
                    "committed at seq {seq} but applying it here failed (the next read catches up): {e}"
                );
            }
            self.acked_seq.fetch_max(seq, Ordering::SeqCst);
            for (p, t) in accepted {
                let _ = p.reply.send(Ok(CommitInfo {
                    seq,
                    system_time: t.system_time,
                }));
            }
            if applied.is_ok() && self.live_over_budget() {
                if let Err(e) = self.flush_locked().await {
                    tracing::warn!("flush failed (will retry on a later commit): {e}");
                }
            }
            return;
        }
    }

    /// After losing the race for `seq`: apply the record that took it
    /// (`other`, as read back), the one after it if read (`next`), and our
    /// knock at `seq + 2` if `knocked` and `next` was there. True if this
    /// node is then current through what it applied, so that its next try
    /// can go straight to the following seq. (With `next` absent, that
    /// try is `seq + 1`, in front of its own knock.)
    async fn apply_taken(
        &self,
        seq: u64,
        other: &bytes::Bytes,
        next: Option<&bytes::Bytes>,
        knocked: bool,
    ) -> bool {
        if self.state.read().applied_seq + 1 != seq {
            return false;
        }
        let mut records = vec![(seq, other)];
        records.extend(next.map(|b| (seq + 1, b)));
        for (sq, bytes) in records {
            let rec = match LogRecord::decode(&log_path(sq), bytes) {
                Ok(r) if r.seq == sq => r,
                _ => return false,
            };
            if self.apply_record(&rec).await.is_err() {
                return false;
            }
        }
        if knocked && next.is_some() {
            let empty = LogRecord {
                seq: seq + 2,
                nonce: [0; crate::log::NONCE_LEN],
                txs: Vec::new(),
            };
            if self.apply_record(&empty).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Create `log/<seq>` holding `bytes` (our record, with `nonce`) and
    /// settle the outcome. A create that fails with an error (a timeout, a
    /// dropped connection: it may have reached the store) or says
    /// `AlreadyExists` (another node's record, or our own: a store client
    /// that retried our request after a lost response gets 412) is settled
    /// by reading the record back: our nonce means the group committed,
    /// another means the seq is taken. Absent after an error, the same
    /// create is retried (with backoff); still absent after the last
    /// attempt, the group is known not committed. If the read-back keeps
    /// failing, the outcome is unknown.
    ///
    /// `knock`: if the create finds the seq taken, then in the same round
    /// trip as the read-back, also read seq + 1 and claim seq + 2 with an
    /// empty record (a "knock"). A node that keeps losing the race to a
    /// busy writer cannot win the next seq: the winner creates it as soon
    /// as its last create returns, always a little before the loser learns
    /// it lost. Two ahead, the loser's create lands first; it then holds
    /// every record up to its knock and writes its own next, a round trip
    /// before the busy writer has read the knock. A knock holds nothing,
    /// so one left after a gap (nobody wrote seq + 1 yet: the next writer
    /// fills it) or by a node that then failed is harmless.
    async fn write_log(
        &self,
        seq: u64,
        nonce: &crate::log::Nonce,
        bytes: bytes::Bytes,
        knock: bool,
    ) -> std::result::Result<LogWrite, LogWriteError> {
        let path = log_path(seq);
        let mut knock = knock;
        let mut delay = RETRY_DELAY;
        let mut last: Option<Error> = None;
        for attempt in 0..RETRIES {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            // `taken`: the store said the record exists (a lost race, or our
            // own earlier attempt that reached it).
            let taken = match self.storage.create(&path, bytes.clone()).await {
                Ok(CreateOutcome::Created) => return Ok(LogWrite::Ours),
                Ok(CreateOutcome::AlreadyExists) => {
                    last = Some(Error::Internal(format!(
                        "`{path}` existed, then could not be found"
                    )));
                    true
                }
                Err(e) => {
                    last = Some(e);
                    false
                }
            };
            let write_error = last.as_ref().map(|e| e.to_string()).unwrap_or_default();
            let (read_back, next, knocked) = if knock && taken {
                knock = false;
                let empty = LogRecord {
                    seq: seq + 2,
                    nonce: crate::log::new_nonce(),
                    txs: Vec::new(),
                };
                let knock_write = async {
                    match empty.encode() {
                        // An error leaves the knock unknown: harmless (it
                        // holds nothing), so it is simply not counted on.
                        Ok(b) => matches!(
                            self.storage.create(&log_path(seq + 2), b).await,
                            Ok(CreateOutcome::Created)
                        ),
                        Err(_) => false,
                    }
                };
                let next = async { self.storage.get(&log_path(seq + 1)).await.ok().flatten() };
                tokio::join!(self.log_writer(&path), next, knock_write)
            } else {
                (self.log_writer(&path).await, None, false)
            };
            if knocked {
                self.counters.knocks.fetch_add(1, Ordering::Relaxed);
            }
            match read_back {
                Ok(Some((n, _))) if n == *nonce => return Ok(LogWrite::Ours),
                Ok(Some((_, other))) => {
                    return Ok(LogWrite::Taken {
                        other,
                        next,
                        knocked,
                    })
                }
                // Not there: the write did not land; try it again.
                Ok(None) => {}
                Err(e) => {
                    return Err(LogWriteError::Unknown(format!(
                    "writing `{path}` failed ({write_error}) and reading it back failed too ({e})"
                )))
                }
            }
        }
        let e = last.unwrap_or_else(|| Error::Internal("no attempt made".into()));
        Err(LogWriteError::NotCommitted(
            e.kind(),
            format!(
                "writing `{path}` failed {RETRIES} times, last: {e}; it is not in the log, so the \
                 transaction is known not to be committed"
            ),
        ))
    }

    /// The writer nonce of the record at `path` (`None`: no record), read
    /// with retries.
    async fn log_writer(&self, path: &str) -> Result<Option<(crate::log::Nonce, bytes::Bytes)>> {
        let mut delay = RETRY_DELAY;
        let mut attempt = 0;
        loop {
            let e = match self.storage.get(path).await {
                Ok(None) => return Ok(None),
                Ok(Some(b)) => return LogRecord::writer_of(path, &b).map(|(_, n)| Some((n, b))),
                Err(e) => e,
            };
            attempt += 1;
            if attempt >= RETRIES {
                return Err(e);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Create manifest `version` holding `bytes`, settling an ambiguous
    /// outcome like [`Engine::write_log`]: `Created` if the stored manifest
    /// is byte for byte ours (written by us, whatever the create said),
    /// `AlreadyExists` if another one is there. An error if it stays
    /// absent or cannot be read: nothing was published by us that we know
    /// of (a manifest of ours that landed anyway is adopted by the reload
    /// of a later flush, which finds the version taken).
    async fn create_manifest(&self, version: u64, bytes: bytes::Bytes) -> Result<CreateOutcome> {
        let path = manifest_path(version);
        let mut delay = RETRY_DELAY;
        let mut last = None;
        for attempt in 0..RETRIES {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            match self.storage.create(&path, bytes.clone()).await {
                Ok(CreateOutcome::Created) => return Ok(CreateOutcome::Created),
                Ok(CreateOutcome::AlreadyExists) => {}
                Err(e) => last = Some(e),
            }
            match self.storage.get(&path).await {
                Ok(Some(b)) if b == bytes => return Ok(CreateOutcome::Created),
                Ok(Some(_)) => return Ok(CreateOutcome::AlreadyExists),
                Ok(None) => {}
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::Internal(format!("`{path}` existed, then could not be found"))
        }))
    }

    fn live_over_budget(&self) -> bool {
        let s = self.state.read();
        s.live_rows() >= self.flush_rows || s.live_bytes() >= self.live_budget
    }

    /// Write the live index out as segments and publish a new manifest.
    pub async fn flush(&self) -> Result<()> {
        self.check_writable("flush (CHECKPOINT)")?;
        let _w = self.writer.lock().await;
        self.flush_locked().await
    }

    /// Flush (writer lock held): the live index becomes one level-0 segment
    /// per table, dirty deletion vectors are written, then the next manifest
    /// version is created. Also the way any change of the segment lists
    /// (compaction, purge) is published: the manifest always records the
    /// deletion vectors as of its `log_seq`.
    pub(crate) async fn flush_locked(&self) -> Result<()> {
        let version;
        let mut new_segments: Vec<(String, SegmentEntry)> = Vec::new();
        let mut new_dels: Vec<(String, String, String)> = Vec::new();
        // Objects to write before the manifest. Gathered under the state lock and
        // written after releasing it: a parking_lot guard must not be held across
        // an `.await` (it made `commit` and `flush` futures `!Send`).
        let mut writes: Vec<(String, bytes::Bytes)> = Vec::new();
        let mut sinks: Vec<(String, crate::store::ObjectSink)> = Vec::new();
        // Another node may flush the same manifest version at the same time (only
        // one manifest create wins): file names unique to this attempt keep the
        // loser from overwriting the winner's segments, blooms and deletion vectors.
        let tag = flush_tag();
        let mut manifest;
        let mut flushed_any = false;
        {
            let s = self.state.read();
            version = s.manifest_version + 1;
            manifest = Manifest {
                format: FORMAT_VERSION,
                version,
                log_seq: s.applied_seq,
                last_system_time: s.last_system_time,
                created_at: wall_clock_micros(),
                tables: BTreeMap::new(),
            };
            for (name, t) in &s.tables {
                let dir = table_dir(name);
                let mut tm = TableManifest {
                    columns: t.schema.columns.clone(),
                    segments: vec![],
                };
                for e in t.segments.iter() {
                    let mut deleted_path = e.deleted_path.clone();
                    if e.dirty {
                        let stem = e
                            .seg
                            .meta
                            .path
                            .rsplit('/')
                            .next()
                            .unwrap_or("seg")
                            .trim_end_matches(".arrow")
                            .to_string();
                        let p = format!("{dir}/{stem}.del-{version:010}-{tag}");
                        writes.push((p.clone(), bytes::Bytes::from(e.deleted.to_bytes())));
                        new_dels.push((name.clone(), e.seg.meta.path.clone(), p.clone()));
                        deleted_path = Some(p);
                    }
                    tm.segments.push(SegmentEntryManifest {
                        meta: e.seg.meta.clone(),
                        deleted_path,
                        deleted_rows: e.deleted.count() as u64,
                    });
                }
                let path = format!("{dir}/seg-{version:010}-{tag}.arrow");
                let bloom_path = format!("{dir}/seg-{version:010}-{tag}.bloom");
                // Encoded straight into the new object (on a local store):
                // the flush holds no copy of the file.
                let sink = || self.storage.sink(&path);
                if let Some((sink, meta, bloom)) = t.flush_encode(sink, &path, &bloom_path)? {
                    let rows = meta.rows as usize;
                    sinks.push((path.clone(), sink));
                    writes.push((bloom_path.clone(), bloom.to_bytes()));
                    tm.segments.push(SegmentEntryManifest {
                        meta: meta.clone(),
                        deleted_path: None,
                        deleted_rows: 0,
                    });
                    new_segments.push((
                        name.clone(),
                        SegmentEntry {
                            deleted: Arc::new(DeletionVector::with_rows(rows)),
                            seg: Arc::new(Segment::with_bloom(meta, bloom)),
                            deleted_path: None,
                            dirty: false,
                        },
                    ));
                    flushed_any = true;
                }
                manifest.tables.insert(name.clone(), tm);
            }
        }
        for (path, sink) in sinks {
            self.storage.finish_sink(&path, sink).await?;
        }
        for (path, data) in writes {
            self.storage.put(&path, data).await?;
        }
        match self.create_manifest(version, manifest.to_bytes()).await? {
            CreateOutcome::Created => {}
            CreateOutcome::AlreadyExists => {
                // Another node published this version: adopt its view.
                self.reload().await?;
                return Ok(());
            }
        }
        let mut s = self.state.write();
        for (table, seg_path, p) in new_dels {
            if let Some(t) = s.tables.get_mut(&table) {
                if let Some(e) = t.segments.iter_mut().find(|e| e.seg.meta.path == seg_path) {
                    e.deleted_path = Some(p);
                    e.dirty = false;
                }
            }
        }
        for t in s.tables.values_mut() {
            t.clear_live();
        }
        for (table, e) in new_segments {
            s.tables
                .get_mut(&table)
                .expect("table vanished during flush")
                .segments
                .push(e);
        }
        s.manifest_version = version;
        drop(s);
        if flushed_any {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Delete every manifest older than this node's current one: they carry
    /// erased rows' column statistics and name replaced segments; only the
    /// latest is ever read after an erase.
    async fn drop_earlier_manifests(&self) -> Result<()> {
        let current = manifest_path(self.state.read().manifest_version);
        for p in self.storage.list("manifest").await? {
            if p < current {
                self.storage.delete(&p).await?;
            }
        }
        Ok(())
    }

    /// Remove erased entities' bytes from storage (writer lock held):
    /// 1. flush, so the live index (which holds the only in-memory copies of
    ///    rows retired from segments) is in segments and the manifest's
    ///    watermark covers the erase;
    /// 2. rewrite every segment with rows marked deleted among the erased
    ///    entities' rows, without its deleted rows (they are all superseded
    ///    by newer rectangles or erased), publish a manifest, and delete the
    ///    old segment, bloom and deletion-vector objects;
    /// 3. rewrite the log records up to the erase without the erased
    ///    entities' rows (the erase event itself, which names the `_id`,
    ///    stays).
    async fn purge_locked(&self, erased: &[Op], upto_seq: u64) -> Result<()> {
        self.flush_locked().await?;
        // Erased entities per table.
        let mut ids: HashMap<String, Vec<EntityId>> = HashMap::new();
        for op in erased {
            if let Some(col) = op.batch.column_by_name(ID) {
                let v = ids.entry(op.table.clone()).or_default();
                for r in 0..col.len() {
                    v.push(crate::entity::id_at(col.as_ref(), r));
                }
            }
        }
        // 2. Segments.
        let tag = flush_tag();
        let mut rewritten: Vec<(String, usize, Option<SegmentEntry>)> = Vec::new();
        // Per replaced segment: a handle that tells whether a reader still
        // holds it, and its objects.
        let mut old_objects: Vec<(std::sync::Weak<Segment>, Vec<String>)> = Vec::new();
        let version = self.state.read().manifest_version + 1;
        let candidates: Vec<(String, usize, SegmentEntry)> = {
            let s = self.state.read();
            let mut out = Vec::new();
            for (table, list) in &ids {
                let Some(t) = s.tables.get(table) else {
                    continue;
                };
                for (i, e) in t.segments.iter().enumerate() {
                    if e.deleted.count() > 0 && list.iter().any(|id| e.seg.may_contain(id.hash())) {
                        out.push((table.clone(), i, e.clone()));
                    }
                }
            }
            out
        };
        for (n, (table, i, e)) in candidates.into_iter().enumerate() {
            let file = self.open_files.open(&self.storage, &e.seg).await?;
            let mut parts: Vec<RecordBatch> = Vec::new();
            // Piece flags follow the kept rows (row numbers in the output).
            let mut pieces: Vec<u32> = Vec::new();
            let mut kept = 0u32;
            for b in 0..file.num_batches() {
                let base = file.batch_offset(b);
                let rows = file.stats[b].rows as usize;
                let keep: Vec<u32> = (0..rows)
                    .filter(|&r| !e.deleted.contains(base + r))
                    .map(|r| r as u32)
                    .collect();
                let is_piece = file.piece_mask(b);
                for &r in &keep {
                    if is_piece[r as usize] {
                        pieces.push(kept);
                    }
                    kept += 1;
                }
                if keep.is_empty() {
                    continue;
                }
                let batch = file.decode(b, None)?;
                let idx = arrow::array::UInt32Array::from(keep);
                // A copy: the new segment must not point into the old file's bytes.
                let taken = arrow::compute::take_record_batch(&batch, &idx)?;
                parts.push(taken);
            }
            let mut objects = vec![e.seg.meta.path.clone(), e.seg.meta.bloom_path.clone()];
            if let Some(p) = &e.deleted_path {
                objects.push(p.clone());
            }
            old_objects.push((Arc::downgrade(&e.seg), objects));
            if parts.is_empty() {
                rewritten.push((table, i, None));
                continue;
            }
            let dir = table_dir(&table);
            let path = format!("{dir}/seg-{version:010}-{tag}-p{n}.arrow");
            let bloom_path = format!("{dir}/seg-{version:010}-{tag}-p{n}.bloom");
            let schema = parts[0].schema();
            let all = arrow::compute::concat_batches(&schema, &parts)?;
            let (bytes, meta, bloom) = segment::encode(
                &path,
                &bloom_path,
                e.seg.meta.tier,
                e.seg.meta.level,
                &all,
                &pieces,
            )?;
            self.storage.put(&path, bytes).await?;
            self.storage.put(&bloom_path, bloom.to_bytes()).await?;
            let rows = all.num_rows();
            rewritten.push((
                table,
                i,
                Some(SegmentEntry {
                    seg: Arc::new(Segment::with_bloom(meta, bloom)),
                    deleted: Arc::new(DeletionVector::with_rows(rows)),
                    deleted_path: None,
                    dirty: false,
                }),
            ));
        }
        if !rewritten.is_empty() {
            {
                let mut s = self.state.write();
                // Highest index first, so removals keep the others' positions.
                rewritten.sort_by(|a, b| (&a.0, b.1).cmp(&(&b.0, a.1)));
                for (table, i, entry) in rewritten {
                    let t = s
                        .tables
                        .get_mut(&table)
                        .expect("table vanished during purge");
                    match entry {
                        Some(e) => t.segments[i] = e,
                        None => {
                            t.segments.remove(i);
                        }
                    }
                }
            }
            // Publish the rewritten segment list (a flush with an empty live index).
            self.flush_locked().await?;
            if self.state.read().manifest_version != version {
                // Another writer published this version first and we adopted
                // its manifest, which may still name the old objects: keep
                // them (the erase stays logically complete; a later purge or
                // collection removes them).
                tracing::warn!(
                    "erase purge lost a manifest race; its old segments are kept for now"
                );
                return Ok(());
            }
            // Earlier manifests first (a crash after must not leave one
            // naming deleted objects), then the replaced objects.
            self.drop_earlier_manifests().await?;
            // A query that planned before the erase may not have opened a
            // replaced segment yet: its objects go once no reader holds the
            // segment (at most the grace period later). Deleting a mapped
            // file would not free its bytes before the reader is done either.
            let mut deferred = Vec::new();
            for (seg, objects) in old_objects {
                if seg.strong_count() > 0 {
                    deferred.push((seg, objects));
                    continue;
                }
                for p in objects {
                    self.storage.delete(&p).await?;
                }
            }
            if !deferred.is_empty() {
                let storage = self.storage.clone();
                let grace = self.gc.grace;
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    while !deferred.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        let over = started.elapsed() >= grace;
                        let mut left = Vec::new();
                        for (seg, objects) in deferred {
                            if seg.strong_count() > 0 && !over {
                                left.push((seg, objects));
                                continue;
                            }
                            for p in objects {
                                if let Err(e) = storage.delete(&p).await {
                                    tracing::warn!(
                                        "erase purge could not delete {p}: {e} (collection will)"
                                    );
                                }
                            }
                        }
                        deferred = left;
                    }
                });
            }
        }
        self.drop_earlier_manifests().await?;
        // 3. The log.
        for path in self.storage.list("log").await? {
            let Some(seq) = crate::log::seq_of(&path) else {
                continue;
            };
            if seq > upto_seq {
                continue;
            }
            let Some(bytes) = self.storage.get(&path).await? else {
                continue;
            };
            let mut rec = LogRecord::decode(&path, &bytes)?;
            let mut changed = false;
            for tx in &mut rec.txs {
                for op in &mut tx.ops {
                    if !matches!(op.kind, OpKind::Put | OpKind::Delete) {
                        continue;
                    }
                    let (Some(list), Some(col)) = (ids.get(&op.table), op.batch.column_by_name(ID))
                    else {
                        continue;
                    };
                    let keep: Vec<u32> = (0..col.len())
                        .filter(|&r| {
                            !list
                                .iter()
                                .any(|id| crate::entity::id_equals(col.as_ref(), r, id))
                        })
                        .map(|r| r as u32)
                        .collect();
                    if keep.len() != col.len() {
                        let idx = arrow::array::UInt32Array::from(keep);
                        op.batch = arrow::compute::take_record_batch(&op.batch, &idx)?;
                        changed = true;
                    }
                }
            }
            if changed {
                self.storage.put(&path, rec.encode()?).await?;
            }
        }
        Ok(())
    }

    /// The system time of the latest committed transaction (0 if none).
    pub fn latest_system_time(&self) -> Micros {
        self.state.read().last_system_time
    }

    pub fn applied_seq(&self) -> u64 {
        self.state.read().applied_seq
    }

    /// The user tables (without the database's own, see
    /// [`crate::schema::is_reserved`]).
    pub fn table_names(&self) -> Vec<String> {
        self.state
            .read()
            .tables
            .keys()
            .filter(|t| !crate::schema::is_reserved(t))
            .cloned()
            .collect()
    }

    /// Is there a table called `table` (reserved ones included)?
    /// Does `table` hold any version (a bulk load needs it not to)?
    pub fn table_holds_versions(&self, table: &str) -> bool {
        self.state
            .read()
            .tables
            .get(table)
            .is_some_and(|t| t.holds_versions())
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.state.read().tables.contains_key(table)
    }

    /// The system time of the last change this node applied to each of
    /// `tables` since it opened (0: none; `None`: no such table), under one
    /// read of the engine's state (the role cache checks six per statement).
    pub fn tables_last_write<const N: usize>(&self, tables: [&str; N]) -> [Option<Micros>; N] {
        let s = self.state.read();
        tables.map(|t| s.tables.get(t).map(|t| t.last_write))
    }

    pub fn table_schema(&self, table: &str) -> Option<TableSchema> {
        self.state
            .read()
            .tables
            .get(table)
            .map(|t| t.schema.clone())
    }

    /// A table's scan output schema (its columns, then the four temporal
    /// ones), shared: no copy of the columns.
    pub fn table_output_schema(&self, table: &str) -> Option<SchemaRef> {
        self.state.read().tables.get(table).map(|t| t.schemas().1)
    }

    /// The longest text among a column's segment statistics (each
    /// segment's least and greatest value, in bytes), or `None` when a
    /// segment holding non-NULL values of it has no text bounds, or the
    /// table has no segment. A hint, not a bound: a longer value may sort
    /// between the two (`'A' < 'Apple' < 'B'`), and the live index is not
    /// looked at. The planner groups by such a column as a packed
    /// integer when this is short (crate `strata_query`'s `text_keys`).
    pub fn text_stat_len(&self, table: &str, column: &str) -> Option<usize> {
        let s = self.state.read();
        let t = s.tables.get(table)?;
        let mut longest = None;
        for e in &t.segments {
            let m = &e.seg.meta;
            let Some(c) = m.columns.iter().find(|c| c.name == column) else {
                // Added after this segment was written: NULL here.
                if m.columns.is_empty() {
                    return None;
                }
                continue;
            };
            if c.null_count >= m.rows {
                continue;
            }
            let (Some(lo), Some(hi)) = (
                c.min.as_ref().and_then(|v| v.as_str()),
                c.max.as_ref().and_then(|v| v.as_str()),
            ) else {
                return None;
            };
            longest = Some(longest.unwrap_or(0).max(lo.len()).max(hi.len()));
        }
        longest
    }

    /// Every segment of every table, for the `strata_segments` system table.
    pub fn segments_info(&self) -> Vec<SegmentInfo> {
        let s = self.state.read();
        let mut out = Vec::new();
        for (name, t) in &s.tables {
            for e in &t.segments {
                let m = &e.seg.meta;
                out.push(SegmentInfo {
                    table: name.clone(),
                    tier: m.tier.name(),
                    level: m.level,
                    rows: m.rows,
                    dead_rows: e.deleted.count() as u64,
                    bytes: m.bytes,
                    batches: m.batches,
                    path: m.path.clone(),
                    system_from_min: m.bounds.system_from_min,
                    system_to_max: m.bounds.system_to_max,
                    open: e.seg.opened().is_some(),
                });
            }
        }
        out
    }

    /// Compactions published and discarded, objects and log records collected.
    pub fn storage_counters(&self) -> [(&'static str, u64); 4] {
        let c = &self.counters;
        [
            ("compactions", c.compactions.load(Ordering::Relaxed)),
            (
                "compactions_discarded",
                c.compactions_discarded.load(Ordering::Relaxed),
            ),
            (
                "objects_collected",
                c.objects_collected.load(Ordering::Relaxed),
            ),
            (
                "log_records_collected",
                c.log_records_collected.load(Ordering::Relaxed),
            ),
        ]
    }

    /// Races for a log seq this node lost, and the empty records
    /// ("knocks") it created to claim the next one (see `Engine::write_log`).
    pub fn commit_races(&self) -> (u64, u64) {
        (
            self.counters.races_lost.load(Ordering::Relaxed),
            self.counters.knocks.load(Ordering::Relaxed),
        )
    }

    /// Rows in the live index and segments per table (for stats and tests).
    pub fn table_stats(&self, table: &str) -> Option<(usize, usize)> {
        self.state
            .read()
            .tables
            .get(table)
            .map(|t| (t.live.alive, t.segments.len()))
    }

    /// Load the bloom filters (once; they stay in memory) of `table`'s
    /// segments whose hash range may hold one of `ids`, so that a lookup of
    /// those entities reads only the segments that may hold them. Opening a
    /// database reads no bloom filter; lookups load them as they need them.
    pub async fn load_blooms_for(&self, table: &str, ids: &[EntityId]) -> Result<()> {
        let hashes: Vec<u64> = ids.iter().map(|i| i.hash()).collect();
        let missing: Vec<Arc<Segment>> = {
            let s = self.state.read();
            let Some(t) = s.tables.get(table) else {
                return Ok(());
            };
            t.segments
                .iter()
                .filter(|e| {
                    !e.seg.bloom_loaded()
                        && hashes.iter().any(|h| e.seg.meta.bounds.may_contain(*h))
                })
                .map(|e| e.seg.clone())
                .collect()
        };
        for seg in missing {
            seg.load_bloom(&self.storage).await?;
        }
        Ok(())
    }

    /// A consistent scan of `table` at `coord`, optionally for a few entities only.
    pub fn scan(
        &self,
        table: &str,
        coord: Coordinate,
        ids: Option<Vec<EntityId>>,
    ) -> Result<Option<TableScan>> {
        let s = self.state.read();
        let Some(t) = s.tables.get(table) else {
            return Ok(None);
        };
        self.scan_state(t, coord, ids, PieceSel::All).map(Some)
    }

    /// Could a read of `table` at a past system time have pieces to merge
    /// (rows of files written before the view columns, see [`PastScans`])?
    pub fn may_hold_pieces(&self, table: &str) -> bool {
        self.state
            .read()
            .tables
            .get(table)
            .is_some_and(|t| t.may_hold_pieces())
    }

    /// The scans of a read of `table` at `coord`, a past system time (one
    /// consistent state): see [`PastScans`]. `merge_coord` is the pieces'
    /// coordinate (the same system time, all valid time).
    pub fn scan_past(
        &self,
        table: &str,
        coord: Coordinate,
        merge_coord: Coordinate,
        ids: Option<Vec<EntityId>>,
    ) -> Result<Option<PastScans>> {
        let s = self.state.read();
        let Some(t) = s.tables.get(table) else {
            return Ok(None);
        };
        self.past_scans(t, coord, merge_coord, ids).map(Some)
    }

    fn past_scans(
        &self,
        t: &TableState,
        coord: Coordinate,
        merge_coord: Coordinate,
        ids: Option<Vec<EntityId>>,
    ) -> Result<PastScans> {
        if !t.may_hold_pieces() {
            return Ok(PastScans {
                whole: self.scan_state(t, coord, ids, PieceSel::All)?,
                pieces: None,
            });
        }
        Ok(PastScans {
            whole: self.scan_state(t, coord, ids.clone(), PieceSel::Without)?,
            pieces: Some(self.scan_state(t, merge_coord, ids, PieceSel::Only)?),
        })
    }

    fn scan_state(
        &self,
        t: &TableState,
        coord: Coordinate,
        ids: Option<Vec<EntityId>>,
        sel: PieceSel,
    ) -> Result<TableScan> {
        let (table_schema, schema) = t.schemas();
        // Sorted by hash and without repeats: `id_rows` walks them in step
        // with a batch's sorted hashes, and `_id IN (1, 1)` is one row.
        let ids: Option<Arc<Vec<(u64, EntityId)>>> = ids.map(|v| {
            let mut v: Vec<(u64, EntityId)> = v.into_iter().map(|i| (i.hash(), i)).collect();
            v.sort_unstable();
            v.dedup();
            Arc::new(v)
        });
        let live = t.scan_live(&coord, ids.as_deref().map(|v| v.as_slice()), &schema, sel)?;
        let segments: Vec<(Arc<Segment>, Arc<DeletionVector>)> = t
            .segments
            .iter()
            .filter(|e| {
                e.seg.meta.bounds.may_match(&coord)
                    && match sel {
                        PieceSel::All => true,
                        PieceSel::Only => e.seg.meta.may_hold_pieces(),
                        PieceSel::Without => e.seg.meta.may_hold_whole(),
                    }
                    && e.deleted.count() < e.seg.meta.rows as usize
                    && ids
                        .as_ref()
                        .is_none_or(|ids| ids.iter().any(|(h, _)| e.seg.may_contain(*h)))
            })
            .map(|e| (e.seg.clone(), e.deleted.clone()))
            .collect();
        let metrics = ScanMetrics::default();
        metrics
            .segments_total
            .store(t.segments.len() as u64, Ordering::Relaxed);
        metrics.segments_pruned.store(
            (t.segments.len() - segments.len()) as u64,
            Ordering::Relaxed,
        );
        metrics.live_rows.store(
            live.iter().map(|b| b.num_rows() as u64).sum(),
            Ordering::Relaxed,
        );
        Ok(TableScan {
            schema,
            table_schema,
            coord,
            ids,
            live,
            segments,
            columns: None,
            pieces: sel,
            predicates: Arc::new(Vec::new()),
            metrics: Arc::new(metrics),
            storage: self.storage.clone(),
            files: self.open_files.clone(),
        })
    }

    /// The system time an open transaction's writes would get if it committed
    /// now: its pinned time, else the next clock reading (not used up).
    pub fn provisional_system_time(&self, pinned: Option<Micros>) -> Micros {
        pinned.unwrap_or_else(|| {
            let last = self.state.read().last_system_time;
            self.clock.peek_us().max(last.saturating_add(1))
        })
    }

    /// Validate and normalize `pending` (an open transaction's writes) at
    /// system time `t`, the way commit will, and return the table schemas as
    /// they would be after it, with the prepared events for `scan_with`.
    pub fn prepare_pending(
        &self,
        pending: &[Op],
        t: Micros,
    ) -> Result<(HashMap<String, TableSchema>, Vec<Op>)> {
        let mut schemas: HashMap<String, TableSchema> = {
            let s = self.state.read();
            s.tables
                .iter()
                .map(|(k, v)| (k.clone(), v.schema.clone()))
                .collect()
        };
        let ops = prepare_ops(&mut schemas, pending, t)?;
        Ok((schemas, ops))
    }

    /// A scan of `table` that also sees `prepared` (an open transaction's
    /// writes, from `prepare_pending` at `t`), applied at system time `t` on a
    /// private copy of the table's state (the shared state is not touched).
    /// Used for reads inside `BEGIN … COMMIT`: a transaction sees its own
    /// earlier writes.
    pub async fn scan_with(
        &self,
        table: &str,
        coord: Coordinate,
        ids: Option<Vec<EntityId>>,
        prepared: &[Op],
        t: Micros,
    ) -> Result<Option<TableScan>> {
        if !prepared.iter().any(|op| op.table == table) {
            return self.scan(table, coord, ids);
        }
        let state = self.state_with(table, prepared, t).await?;
        self.scan_state(&state, coord, ids, PieceSel::All).map(Some)
    }

    /// [`Engine::scan_past`] that also sees `prepared`, like [`Engine::scan_with`].
    pub async fn scan_past_with(
        &self,
        table: &str,
        coord: Coordinate,
        merge_coord: Coordinate,
        ids: Option<Vec<EntityId>>,
        prepared: &[Op],
        t: Micros,
    ) -> Result<Option<PastScans>> {
        if !prepared.iter().any(|op| op.table == table) {
            return self.scan_past(table, coord, merge_coord, ids);
        }
        let state = self.state_with(table, prepared, t).await?;
        self.past_scans(&state, coord, merge_coord, ids).map(Some)
    }

    /// A private copy of `table`'s state with `prepared` applied at `t`.
    async fn state_with(&self, table: &str, prepared: &[Op], t: Micros) -> Result<TableState> {
        let ops = prepared;
        // A private copy: segments it needs are loaded into their shared
        // (immutable) objects, which a flush meanwhile cannot invalidate.
        let mut state = {
            let s = self.state.read();
            s.tables
                .get(table)
                .cloned()
                .unwrap_or_else(|| TableState::new(table))
        };
        let mut files = SegFiles::new();
        for op in ops.iter().filter(|op| op.table == table) {
            for seg in segments_needed_by(&state, op) {
                seg.load_bloom(&self.storage).await?;
            }
            for seg in segments_needed_by(&state, op) {
                if !files.contains_key(&seg.meta.path) {
                    let f = self.open_files.open(&self.storage, &seg).await?;
                    files.insert(seg.meta.path.clone(), f);
                }
            }
        }
        for op in ops.iter().filter(|op| op.table == table) {
            state.apply(op, t, &files)?;
        }
        Ok(state)
    }
}

/// Segments of `t` that applying `op` reads: those with open rectangles of
/// the entities written, and for an erase every segment holding the entity.
fn segments_needed_by(t: &TableState, op: &Op) -> Vec<Arc<Segment>> {
    if matches!(op.kind, OpKind::CreateTable | OpKind::Load) {
        return vec![];
    }
    let Some(ids) = op.batch.column_by_name(ID) else {
        return vec![];
    };
    let iids = hash_column(ids.as_ref());
    // An erase marks rows in every segment holding the entity, including
    // segments of closed rectangles only.
    t.segments_needed(&iids, op.kind == OpKind::Erase)
}

/// Wall-clock time in microseconds (manifest creation times for collection).
pub(crate) fn wall_clock_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as Micros)
        .unwrap_or(0)
}

/// A name component unique to one flush attempt (time, process, counter).
pub(crate) fn flush_tag() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut buf = Vec::with_capacity(28);
    buf.extend_from_slice(&nanos.to_le_bytes());
    buf.extend_from_slice(&std::process::id().to_le_bytes());
    buf.extend_from_slice(
        &COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buf))
}

/// Attempts of a log or manifest write (and of a read settling one).
const RETRIES: u32 = 6;
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(5);
const MAX_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// How a log write settled.
enum LogWrite {
    /// Our record is at the seq: the group committed.
    Ours,
    /// Another writer's record is at the seq (its bytes, as read back):
    /// ours is not in the log. With a knock (see [`Engine::write_log`]):
    /// `next`, the record at seq + 1 if it was there when read, and
    /// `knocked`, whether our empty record claimed seq + 2.
    Taken {
        other: bytes::Bytes,
        next: Option<bytes::Bytes>,
        knocked: bool,
    },
}

enum LogWriteError {
    /// Known not in the log: `Error::NotCommitted` of this kind and reason.
    NotCommitted(crate::error::ErrorKind, String),
    /// May or may not be in the log.
    Unknown(String),
}

/// Apply a log record's events to `state` (its tables, last system time
/// and applied sequence number); `files`: the segment files they read.
fn apply_to(state: &RwLock<State>, rec: &LogRecord, files: &SegFiles) -> Result<()> {
    let mut s = state.write();
    for tx in &rec.txs {
        for op in &tx.ops {
            let t = s
                .tables
                .entry(op.table.clone())
                .or_insert_with(|| TableState::new(&op.table));
            t.apply(op, tx.system_time, files)?;
        }
        s.last_system_time = tx.system_time;
    }
    s.applied_seq = rec.seq;
    Ok(())
}

fn fail_all(pending: Vec<Pending>, e: &Error) {
    for p in pending {
        let _ = p.reply.send(Err(Error::NotCommitted {
            kind: e.kind(),
            reason: e.to_string(),
        }));
    }
}

/// Convert a written `_valid_from` / `_valid_to` column to UTC microseconds,
/// refusing (not nulling) values that are not timestamps.
fn valid_time_array(name: &str, c: &ArrayRef) -> Result<ArrayRef> {
    let hint = "give a timestamp such as TIMESTAMP '2024-01-01 00:00:00Z' (NULL for an open bound)";
    match c.data_type() {
        DataType::Null
        | DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Date64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => {}
        other => {
            return Err(Error::Invalid(format!(
                "`{name}` must be a timestamp, not {}: {hint}",
                crate::schema::type_name(other)
            )))
        }
    }
    let opts = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(c, &timestamp_type(), &opts).map_err(|e| {
        Error::Invalid(format!(
            "`{name}` has a value that is not a timestamp ({e}): {hint}"
        ))
    })
}

/// Validate and normalize a transaction's events against the table schemas
/// (which it updates), so that applying them cannot fail.
pub(crate) fn prepare_ops(
    schemas: &mut HashMap<String, TableSchema>,
    ops: &[Op],
    t: Micros,
) -> Result<Vec<Op>> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if op.table.is_empty() {
            return Err(Error::Invalid("table name must not be empty".into()));
        }
        let schema = schemas.entry(op.table.clone()).or_default();
        let batch = &op.batch;
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = f.name().as_str();
            if name == SYSTEM_FROM || name == SYSTEM_TO {
                return Err(Error::Invalid(format!(
                    "cannot write `{name}`: system time columns are assigned by the database"
                )));
            }
            if name == crate::schema::IID {
                return Err(Error::Invalid(
                    "`_iid` is reserved for the entity hash".into(),
                ));
            }
            if name == segment::VIEW_FROM || name == segment::VIEW_ONLY {
                return Err(Error::Invalid(format!(
                    "`{name}` is reserved for storage (the rows reads at a past system time show); \
                     choose another column name"
                )));
            }
            let c = if name == VALID_FROM || name == VALID_TO {
                valid_time_array(name, c)?
            } else {
                normalize_array(c)?
            };
            // Keep a uuid / json / jsonb tag the writer gave the column.
            let tag = crate::schema::SqlType::of(f);
            fields.push(crate::schema::tagged(
                Field::new(name, c.data_type().clone(), true),
                tag,
            ));
            cols.push(c);
        }
        let user: Vec<Field> = fields
            .iter()
            .filter(|f| f.name() != VALID_FROM && f.name() != VALID_TO)
            .cloned()
            .collect();
        if op.kind != OpKind::CreateTable {
            let idx = fields.iter().position(|f| f.name() == ID).ok_or_else(|| {
                Error::Invalid(format!(
                    "every row written to `{}` needs an `_id` column",
                    op.table
                ))
            })?;
            check_id_column(&op.table, &cols[idx])?;
        }
        let merged = match op.kind {
            OpKind::Put | OpKind::CreateTable | OpKind::Load => schema.merged(&op.table, &user)?,
            OpKind::Delete | OpKind::Erase => {
                let id_field: Vec<Field> =
                    user.iter().filter(|f| f.name() == ID).cloned().collect();
                schema.merged(&op.table, &id_field)?
            }
        };
        // Bring values into the column types (an integer into a DOUBLE column, …).
        for (i, f) in fields.iter_mut().enumerate() {
            if let Some(j) = merged.index_of(f.name()) {
                let target = merged.columns[j].data_type();
                if target != f.data_type() && f.data_type() != &DataType::Null {
                    cols[i] = adapt_array(&cols[i], target).map_err(|e| Error::TypeConflict {
                        table: op.table.clone(),
                        column: f.name().clone(),
                        existing: crate::schema::type_name(target),
                        offered: format!("{} ({e})", crate::schema::type_name(f.data_type())),
                    })?;
                    *f = Field::new(f.name(), target.clone(), true);
                }
            }
        }
        // uuid / json / jsonb columns: every value must be valid, and is
        // stored normalized; the log keeps the column's tag.
        for (i, f) in fields.iter_mut().enumerate() {
            let Some(j) = merged.index_of(f.name()) else {
                continue;
            };
            if let Some(tag) = crate::schema::SqlType::of(&merged.columns[j]) {
                if f.data_type() == &DataType::Utf8 {
                    let what = format!("column `{}` of table `{}`", f.name(), op.table);
                    cols[i] = tag.conform_array(&cols[i], &what)?;
                    *f = tag.field(f.name());
                }
            }
        }
        *schema = merged;
        // A load's segment list rides in the schema metadata.
        let metadata = if op.kind == OpKind::Load {
            batch.schema().metadata().clone()
        } else {
            Default::default()
        };
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new_with_metadata(fields, metadata)),
            cols,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        if matches!(op.kind, OpKind::Put | OpKind::Delete) {
            valid_columns(&batch, t)?;
        }
        out.push(Op {
            kind: op.kind,
            table: op.table.clone(),
            batch,
        });
    }
    Ok(out)
}
