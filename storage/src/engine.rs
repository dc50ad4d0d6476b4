//! The storage engine of one node: opens the latest manifest and replays the
//! log, commits transactions (group commit over conditional log writes),
//! applies them to the tables, flushes segments, and serves scans.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::entity::{check_id_column, hash_column, EntityId};
use crate::error::{Error, Result};
use crate::log::{log_path, LogRecord, Op, OpKind, Transaction};
use crate::manifest::{
    manifest_path, table_dir, Manifest, SegmentEntryManifest, TableManifest, FORMAT_VERSION,
};
use crate::schema::{
    adapt_array, normalize_array, timestamp_type, TableSchema, ID, SYSTEM_FROM, SYSTEM_TO,
    VALID_FROM, VALID_TO,
};
use crate::segment::{self, Bloom, Segment, SegmentData};
use crate::store::{CreateOutcome, FaultHook, Storage, StoreLocation};
use crate::table::{
    output_schema, scan_segment, valid_columns, DeletionVector, SegmentEntry, TableState,
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
    /// The process memory budget in bytes (`--memory-limit`); `None`: no limit.
    pub memory_limit: Option<usize>,
    /// The disk cache of a remote store (`--cache-dir`, `--cache-size`).
    pub cache: crate::cache::CacheConfig,
}

impl EngineConfig {
    pub fn new(location: StoreLocation) -> Self {
        EngineConfig {
            location,
            clock: Arc::new(SystemClock),
            flush_rows: 1_000_000,
            fault: None,
            memory_limit: None,
            cache: Default::default(),
        }
    }
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
}

struct Pending {
    tx: TxRequest,
    reply: oneshot::Sender<Result<CommitInfo>>,
}

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<String, TableState>,
    applied_seq: u64,
    last_system_time: Micros,
    manifest_version: u64,
}

impl State {
    fn live_rows(&self) -> usize {
        self.tables.values().map(|t| t.live.rects.len()).sum()
    }
}

pub struct Engine {
    storage: Storage,
    clock: Arc<dyn Clock>,
    flush_rows: usize,
    state: RwLock<State>,
    /// Held by whoever changes `state`: the group-commit leader, a flush, a catch-up.
    writer: tokio::sync::Mutex<()>,
    queue: Mutex<Vec<Pending>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("storage", &self.storage.describe())
            .finish()
    }
}

/// A consistent view of one table for a scan: live rows already materialized,
/// segments to read (pruned by metadata) with their deletion vectors.
#[derive(Debug, Clone)]
pub struct TableScan {
    pub schema: SchemaRef,
    pub table_schema: TableSchema,
    pub coord: Coordinate,
    pub ids: Option<Arc<Vec<(u64, EntityId)>>>,
    pub live: Vec<RecordBatch>,
    pub segments: Vec<(Arc<Segment>, Arc<DeletionVector>)>,
    /// User columns the query reads (`None`: all). Segment rows are filtered
    /// on these only; the others come back as NULL.
    pub columns: Option<Arc<Vec<String>>>,
    storage: Storage,
}

impl TableScan {
    /// Visible rows of segment `i`.
    pub async fn segment(&self, i: usize) -> Result<Option<RecordBatch>> {
        let (seg, del) = &self.segments[i];
        let data = seg.load(&self.storage).await?;
        scan_segment(
            &self.table_schema,
            &self.schema,
            &data,
            del,
            &self.coord,
            self.ids.as_deref().map(|v| v.as_slice()),
            self.columns.as_deref().map(|v| v.as_slice()),
        )
    }
}

impl Engine {
    pub async fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        let mut storage = Storage::open_with_cache(&config.location, &config.cache)?;
        if let Some(f) = &config.fault {
            storage = storage.with_fault_hook(f.clone());
        }
        let engine = Engine {
            storage,
            clock: config.clock,
            flush_rows: config.flush_rows.max(1),
            state: RwLock::new(State::default()),
            writer: tokio::sync::Mutex::new(()),
            queue: Mutex::new(Vec::new()),
        };
        let _w = engine.writer.lock().await;
        engine.reload().await?;
        drop(_w);
        Ok(Arc::new(engine))
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Rebuild in-memory state from the latest manifest and the log after it.
    /// Caller holds `writer`.
    async fn reload(&self) -> Result<()> {
        let m = Manifest::load_latest(&self.storage).await?;
        let mut tables = BTreeMap::new();
        for (name, tm) in &m.tables {
            let mut t = TableState::new(name);
            t.schema = TableSchema {
                columns: tm.columns.clone(),
            };
            for se in &tm.segments {
                let bloom_bytes =
                    self.storage
                        .get(&se.meta.bloom_path)
                        .await?
                        .ok_or_else(|| Error::Corrupt {
                            path: se.meta.bloom_path.clone(),
                            reason: "bloom filter listed in the manifest is missing".into(),
                        })?;
                let bloom = Bloom::from_bytes(&se.meta.bloom_path, &bloom_bytes)?;
                let rows = se.meta.rows as usize;
                let deleted = match &se.deleted_path {
                    Some(p) => {
                        let b = self.storage.get(p).await?.ok_or_else(|| Error::Corrupt {
                            path: p.clone(),
                            reason: "deletion vector listed in the manifest is missing".into(),
                        })?;
                        DeletionVector::from_bytes(rows, &b).ok_or_else(|| Error::Corrupt {
                            path: p.clone(),
                            reason: "bad deletion vector".into(),
                        })?
                    }
                    None => DeletionVector::with_rows(rows),
                };
                t.segments.push(SegmentEntry {
                    seg: Arc::new(Segment::new(se.meta.clone(), bloom)),
                    deleted: Arc::new(deleted),
                    deleted_path: se.deleted_path.clone(),
                    dirty: false,
                });
            }
            tables.insert(name.clone(), t);
        }
        {
            let mut s = self.state.write();
            *s = State {
                tables,
                applied_seq: m.log_seq,
                last_system_time: m.last_system_time,
                manifest_version: m.version,
            };
        }
        self.catch_up_locked().await?;
        Ok(())
    }

    /// Apply log records written since we last looked (by this or another node).
    pub async fn catch_up(&self) -> Result<u64> {
        let _w = self.writer.lock().await;
        self.catch_up_locked().await
    }

    async fn catch_up_locked(&self) -> Result<u64> {
        let mut n = 0;
        loop {
            let seq = self.state.read().applied_seq + 1;
            let path = log_path(seq);
            let Some(bytes) = self.storage.get(&path).await? else {
                return Ok(n);
            };
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

    /// Segments that applying `ops` will read.
    fn segments_needed<'a>(&self, ops: impl Iterator<Item = &'a Op>) -> Vec<Arc<Segment>> {
        let s = self.state.read();
        let mut to_load = Vec::new();
        for op in ops {
            if let Some(t) = s.tables.get(&op.table) {
                to_load.extend(segments_needed_by(t, op));
            }
        }
        to_load
    }

    /// Load the segments a record's events need, then apply it atomically.
    async fn apply_record(&self, rec: &LogRecord) -> Result<()> {
        let to_load = self.segments_needed(rec.txs.iter().flat_map(|t| t.ops.iter()));
        for seg in to_load {
            seg.load(&self.storage).await?;
        }
        let mut s = self.state.write();
        for tx in &rec.txs {
            for op in &tx.ops {
                let t = s
                    .tables
                    .entry(op.table.clone())
                    .or_insert_with(|| TableState::new(&op.table));
                t.apply(op, tx.system_time)?;
            }
            s.last_system_time = tx.system_time;
        }
        s.applied_seq = rec.seq;
        Ok(())
    }

    /// Commit a transaction: durable in the log when this returns `Ok`.
    /// Concurrent callers share log writes (group commit).
    pub async fn commit(&self, tx: TxRequest) -> Result<CommitInfo> {
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

    async fn commit_group(&self, batch: Vec<Pending>) {
        let mut pending = batch;
        loop {
            if let Err(e) = self.catch_up_locked().await {
                return fail_all(pending, &e);
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
            for p in pending {
                let t = match p.tx.system_time {
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
                let mut scratch = schemas.clone();
                match prepare_ops(&mut scratch, &p.tx.ops, t) {
                    Ok(ops) => {
                        schemas = scratch;
                        last = t;
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
                txs: accepted.iter().map(|(_, t)| t.clone()).collect(),
            };
            let bytes = match rec.encode() {
                Ok(b) => b,
                Err(e) => return fail_all(accepted.into_iter().map(|(p, _)| p).collect(), &e),
            };
            match self.storage.create(&log_path(seq), bytes).await {
                Ok(CreateOutcome::Created) => {}
                Ok(CreateOutcome::AlreadyExists) => {
                    // Another node took this sequence number: catch up and retry.
                    pending = accepted
                        .into_iter()
                        .map(|(mut p, _)| {
                            p.tx.ops.shrink_to_fit();
                            p
                        })
                        .collect();
                    continue;
                }
                Err(e) => return fail_all(accepted.into_iter().map(|(p, _)| p).collect(), &e),
            }
            let applied = self.apply_record(&rec).await;
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
            for (p, t) in accepted {
                let r = match &applied {
                    Ok(()) => Ok(CommitInfo {
                        seq,
                        system_time: t.system_time,
                    }),
                    Err(e) => Err(Error::Internal(format!(
                        "committed at seq {seq} but applying failed: {e}"
                    ))),
                };
                let _ = p.reply.send(r);
            }
            if applied.is_ok() && self.state.read().live_rows() >= self.flush_rows {
                if let Err(e) = self.flush_locked().await {
                    tracing::warn!("flush failed (will retry on a later commit): {e}");
                }
            }
            return;
        }
    }

    /// Write the live index out as segments and publish a new manifest.
    pub async fn flush(&self) -> Result<()> {
        let _w = self.writer.lock().await;
        self.flush_locked().await
    }

    async fn flush_locked(&self) -> Result<()> {
        let version;
        let mut new_segments: Vec<(String, SegmentEntry)> = Vec::new();
        let mut new_dels: Vec<(String, usize, String)> = Vec::new();
        // Objects to write before the manifest. Gathered under the state lock and
        // written after releasing it: a parking_lot guard must not be held across
        // an `.await` (it made `commit` and `flush` futures `!Send`).
        let mut writes: Vec<(String, bytes::Bytes)> = Vec::new();
        // Another node may flush the same manifest version at the same time (only
        // one manifest create wins): file names unique to this attempt keep the
        // loser from overwriting the winner's segments, blooms and deletion vectors.
        let tag = flush_tag();
        let mut manifest;
        {
            let s = self.state.read();
            version = s.manifest_version + 1;
            manifest = Manifest {
                format: FORMAT_VERSION,
                version,
                log_seq: s.applied_seq,
                last_system_time: s.last_system_time,
                tables: BTreeMap::new(),
            };
            for (name, t) in &s.tables {
                let dir = table_dir(name);
                let mut tm = TableManifest {
                    columns: t.schema.columns.clone(),
                    segments: vec![],
                };
                for (i, e) in t.segments.iter().enumerate() {
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
                        new_dels.push((name.clone(), i, p.clone()));
                        deleted_path = Some(p);
                    }
                    tm.segments.push(SegmentEntryManifest {
                        meta: e.seg.meta.clone(),
                        deleted_path,
                        deleted_rows: e.deleted.count() as u64,
                    });
                }
                if let Some(batch) = t.flush_batch()? {
                    let path = format!("{dir}/seg-{version:010}-{tag}.arrow");
                    let bloom_path = format!("{dir}/seg-{version:010}-{tag}.bloom");
                    let (bytes, meta, bloom) = segment::encode(&path, &bloom_path, &batch)?;
                    writes.push((path.clone(), bytes));
                    writes.push((bloom_path.clone(), bloom.to_bytes()));
                    tm.segments.push(SegmentEntryManifest {
                        meta: meta.clone(),
                        deleted_path: None,
                        deleted_rows: 0,
                    });
                    let seg = Segment::with_data(
                        meta,
                        bloom,
                        SegmentData {
                            batch: batch.clone(),
                        },
                    );
                    new_segments.push((
                        name.clone(),
                        SegmentEntry {
                            deleted: Arc::new(DeletionVector::with_rows(batch.num_rows())),
                            seg: Arc::new(seg),
                            deleted_path: None,
                            dirty: false,
                        },
                    ));
                }
                manifest.tables.insert(name.clone(), tm);
            }
        }
        for (path, data) in writes {
            self.storage.put(&path, data).await?;
        }
        match self
            .storage
            .create(&manifest_path(version), manifest.to_bytes())
            .await?
        {
            CreateOutcome::Created => {}
            CreateOutcome::AlreadyExists => {
                // Another node published this version: adopt its view.
                return self.reload().await;
            }
        }
        let mut s = self.state.write();
        for (table, i, p) in new_dels {
            if let Some(t) = s.tables.get_mut(&table) {
                t.segments[i].deleted_path = Some(p);
                t.segments[i].dirty = false;
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
        let mut old_objects: Vec<String> = Vec::new();
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
            let data = e.seg.load(&self.storage).await?;
            let keep: Vec<u32> = (0..data.batch.num_rows())
                .filter(|&r| !e.deleted.contains(r))
                .map(|r| r as u32)
                .collect();
            old_objects.push(e.seg.meta.path.clone());
            old_objects.push(e.seg.meta.bloom_path.clone());
            if let Some(p) = &e.deleted_path {
                old_objects.push(p.clone());
            }
            if keep.is_empty() {
                rewritten.push((table, i, None));
                continue;
            }
            let idx = arrow::array::UInt32Array::from(keep);
            let batch = arrow::compute::take_record_batch(&data.batch, &idx)?;
            let dir = table_dir(&table);
            let path = format!("{dir}/seg-{version:010}-{tag}-p{n}.arrow");
            let bloom_path = format!("{dir}/seg-{version:010}-{tag}-p{n}.bloom");
            let (bytes, meta, bloom) = segment::encode(&path, &bloom_path, &batch)?;
            self.storage.put(&path, bytes).await?;
            self.storage.put(&bloom_path, bloom.to_bytes()).await?;
            let rows = batch.num_rows();
            rewritten.push((
                table,
                i,
                Some(SegmentEntry {
                    seg: Arc::new(Segment::with_data(meta, bloom, SegmentData { batch })),
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
            for p in old_objects {
                self.storage.delete(&p).await?;
            }
        }
        // Earlier manifests carry the erased rows' column statistics (and
        // name deleted segments): only the latest is ever read, so drop them.
        let current = manifest_path(self.state.read().manifest_version);
        for p in self.storage.list("manifest").await? {
            if p < current {
                self.storage.delete(&p).await?;
            }
        }
        // 3. The log.
        for seq in 1..=upto_seq {
            let path = log_path(seq);
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

    pub fn table_names(&self) -> Vec<String> {
        self.state.read().tables.keys().cloned().collect()
    }

    pub fn table_schema(&self, table: &str) -> Option<TableSchema> {
        self.state
            .read()
            .tables
            .get(table)
            .map(|t| t.schema.clone())
    }

    /// Rows in the live index and segments per table (for stats and tests).
    pub fn table_stats(&self, table: &str) -> Option<(usize, usize)> {
        self.state
            .read()
            .tables
            .get(table)
            .map(|t| (t.live.alive, t.segments.len()))
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
        self.scan_state(t, coord, ids).map(Some)
    }

    fn scan_state(
        &self,
        t: &TableState,
        coord: Coordinate,
        ids: Option<Vec<EntityId>>,
    ) -> Result<TableScan> {
        let schema = output_schema(&t.schema);
        let ids: Option<Arc<Vec<(u64, EntityId)>>> =
            ids.map(|v| Arc::new(v.into_iter().map(|i| (i.hash(), i)).collect()));
        let live = t.scan_live(&coord, ids.as_deref().map(|v| v.as_slice()), &schema)?;
        let segments = t
            .segments
            .iter()
            .filter(|e| {
                let m = &e.seg.meta;
                coord.system.may_match(m.system_from_min, m.system_to_max)
                    && coord.valid.may_match(m.valid_from_min, m.valid_to_max)
                    && e.deleted.count() < m.rows as usize
                    && ids
                        .as_ref()
                        .is_none_or(|ids| ids.iter().any(|(h, _)| e.seg.may_contain(*h)))
            })
            .map(|e| (e.seg.clone(), e.deleted.clone()))
            .collect();
        Ok(TableScan {
            schema,
            table_schema: t.schema.clone(),
            coord,
            ids,
            live,
            segments,
            columns: None,
            storage: self.storage.clone(),
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
        for op in ops.iter().filter(|op| op.table == table) {
            for seg in segments_needed_by(&state, op) {
                seg.load(&self.storage).await?;
            }
        }
        for op in ops.iter().filter(|op| op.table == table) {
            state.apply(op, t)?;
        }
        self.scan_state(&state, coord, ids).map(Some)
    }
}

/// Segments of `t` that applying `op` reads: those with open rectangles of
/// the entities written, and for an erase every segment holding the entity.
fn segments_needed_by(t: &TableState, op: &Op) -> Vec<Arc<Segment>> {
    if op.kind == OpKind::CreateTable {
        return vec![];
    }
    let Some(ids) = op.batch.column_by_name(ID) else {
        return vec![];
    };
    let iids = hash_column(ids.as_ref());
    if op.kind == OpKind::Erase {
        // An erase marks rows in every segment holding the entity, including
        // segments of closed rectangles only, which `segments_to_load` skips.
        t.segments
            .iter()
            .filter(|e| e.seg.loaded().is_none() && iids.iter().any(|&h| e.seg.may_contain(h)))
            .map(|e| e.seg.clone())
            .collect()
    } else {
        t.segments_to_load(&iids)
    }
}

/// A name component unique to one flush attempt (time, process, counter).
fn flush_tag() -> String {
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

fn fail_all(pending: Vec<Pending>, e: &Error) {
    for p in pending {
        let _ = p.reply.send(Err(Error::Conflict(format!(
            "transaction not committed: {e}"
        ))));
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
fn prepare_ops(
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
            OpKind::Put | OpKind::CreateTable => schema.merged(&op.table, &user)?,
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
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
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
